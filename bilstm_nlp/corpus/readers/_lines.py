"""Line handling shared by every reader: the byte-order mark, line endings, UTF-8.

Corpus readers take lines through `read_lines`, which refuses what is no text corpus at the first
bad line (file and line in the error); the document reader of annotation takes raw bytes and
decodes leniently (`decode_replacing`: bad bytes become U+FFFD and are counted), since every
input line must get its output.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ...errors import InputFormatError

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


# Whitespace that may make up a "blank" line; WNUT-17 train separates sentences with a lone TAB.
BLANK = " \t\r\f\v"
_EXCERPT_CHARS = 80
# The longest line a reader takes: far above any sentence, tree or record, and it bounds the memory
# one line can take (a file with no line break is read this much at a time, not whole).
MAX_LINE_BYTES = 16 * 2**20
_BLOCK_BYTES = 2**20
# A CR (run) followed by anything but LF: no text corpus holds one. CRs at the end of a line
# belong to its ending (CR LF, or CR CR LF after a double conversion).
_STRAY_CR = re.compile(rb"\r+[^\r\n]")


def excerpt(text: str) -> str:
    """`repr` of a line for an error message, shortened past 80 characters."""
    if len(text) > _EXCERPT_CHARS:
        return repr(text[:_EXCERPT_CHARS]) + "..."
    return repr(text)


def read_lines(path: str | Path, keep_ends: bool = False) -> Iterator[tuple[int, str]]:
    """The lines of a UTF-8 file with their 1-based numbers; the line source of every reader.

    Lines are split at LF only (CRs before it are dropped with it: CR LF, or CR CR LF after a
    double conversion), so U+2028 and other Unicode line separators stay inside a line. A UTF-8
    byte-order mark at the very start of the file is dropped.

    What is no text corpus is refused at the first line that shows it: a NUL byte (a binary file,
    UTF-16 text, or a sparse file of zeros), a carriage return inside a line (CR-only line endings,
    which would read as one long line), or a line longer than `MAX_LINE_BYTES`. The file is read
    in blocks of 1 MiB and at most one line is held, so a huge or sparse file fails fast in
    bounded memory.

    Args:
        path: the file.
        keep_ends: keep the line ending (`"\\n"` or `"\\r\\n"`), as the csv module wants.
    Returns:
        An iterator of `(line_number, line)`.
    Raises:
        InputFormatError: the file is missing or unreadable; or at the first line that is not
            valid UTF-8 (the message gives the bad byte and its column), holds a NUL byte or a CR
            not followed by LF, or is longer than `MAX_LINE_BYTES`.
    """
    try:
        handle = open(path, "rb")  # closed by the `with` below
    except FileNotFoundError:
        raise InputFormatError("no such file", path) from None
    except IsADirectoryError:
        raise InputFormatError("is a directory, expected a file", path) from None
    except OSError as error:
        raise InputFormatError(f"cannot open: {error.strerror}", path) from None
    with handle:
        for number, raw, ended in _raw_lines(handle, path):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                byte = raw[error.start]
                raise InputFormatError(
                    f"not valid UTF-8: byte 0x{byte:02x} at byte {error.start + 1} of the line",
                    path,
                    number,
                ) from None
            if number == 1 and line.startswith("\ufeff"):
                line = line[1:]
            if keep_ends:
                if ended:
                    line += "\n"
            else:
                line = line.rstrip("\r")
            yield number, line


def _raw_lines(handle: BinaryIO, path: str | Path) -> Iterator[tuple[int, bytes, bool]]:
    """`(line_number, line_bytes_without_lf, ended_by_lf)`, read in blocks and checked per block.

    The scans for NUL and stray CRs run over whole blocks at C speed; a partial last line is
    carried into the next block (and scanned again with it) until its LF comes, at most
    `MAX_LINE_BYTES`. The lines before a bad one are yielded first, so a reader still stops at
    the first bad line of the file, whatever is wrong with it.
    """
    number = 0
    pending = b""
    while True:
        try:
            block = handle.read(_BLOCK_BYTES)
        except OSError as error:
            raise InputFormatError(f"cannot read: {error.strerror}", path, number + 1) from None
        if not block:
            break
        if pending:
            block = pending + block
        bad = block.find(b"\0")
        if block.count(b"\r") != block.count(b"\r\n"):  # rare: only then the slower regex
            stray = _STRAY_CR.search(block, 0, bad if bad >= 0 else len(block))
            if stray is not None:
                bad = stray.start()
        lines = block.split(b"\n")
        pending = lines.pop()
        if bad >= 0:
            lines = lines[: block.count(b"\n", 0, bad)]
        for raw in lines:
            number += 1
            yield number, raw, True
        if bad >= 0:
            raise _not_text_error(block, bad, number + 1, path)
        if len(pending) > MAX_LINE_BYTES:
            raise InputFormatError(
                f"line longer than {MAX_LINE_BYTES:,} bytes, the most a reader takes: a text "
                "corpus has shorter lines (is this the right file, with LF line endings?)",
                path,
                number + 1,
            )
    if pending:
        yield number + 1, pending, False


def _not_text_error(block: bytes, position: int, number: int, path: str | Path) -> Exception:
    column = position - (block.rfind(b"\n", 0, position) + 1) + 1
    if block[position] == 0:
        return InputFormatError(
            f"NUL byte at byte {column} of the line: a binary file, UTF-16 text or a file of "
            "zeros, not a UTF-8 text corpus",
            path,
            number,
        )
    return InputFormatError(
        f"carriage return (CR) inside the line at byte {column}: CR-only (old Mac) line "
        "endings? Lines must end with LF or CR LF",
        path,
        number,
    )


def is_blank(line: str) -> bool:
    """True for an empty line or one holding only ASCII whitespace (a sentence break)."""
    return not line.strip(BLANK)
