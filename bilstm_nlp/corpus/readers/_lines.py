"""Line handling shared by the readers of raw bytes: the byte-order mark, line endings, and UTF-8
read leniently (bad bytes become U+FFFD and are counted, as annotation wants)."""

from __future__ import annotations

BOM = b"\xef\xbb\xbf"


def strip_line_end(raw: bytes) -> bytes:
    """`raw` without its LF and one CR before it (CR LF), the line ending of text on any system."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw


def strip_bom(raw: bytes) -> bytes:
    """`raw` without a UTF-8 byte-order mark at its start (call on a file's first bytes only)."""
    return raw[len(BOM) :] if raw.startswith(BOM) else raw


def decode_replacing(raw: bytes) -> tuple[str, int]:
    """`(text, invalid)`: UTF-8 text, bad bytes replaced by U+FFFD; `invalid` is 1 if any were."""
    try:
        return raw.decode("utf-8"), 0
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace"), 1
