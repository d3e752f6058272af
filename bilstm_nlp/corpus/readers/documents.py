"""Raw-text documents to annotate: a document per line, per file, or per JSONL record.

A reader of the first stage, for annotation rather than training: it never refuses text. Bad
UTF-8 bytes become U+FFFD (and are counted), a byte-order mark at the start of a file goes, lines
end at LF (a CR before it goes too). A JSONL line that is not an object with a string in
`text_field` is an `InputFormatError` with file and line.

Long documents: one of more than `LONG_DOCUMENT_BYTES` (a line, a file, a JSONL text) comes in
pieces of about `PIECE_BYTES` cut at white space, so memory does not grow with a document's
length. A JSONL line is parsed whole, so there memory grows with the line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from ...errors import InputFormatError
from ._lines import decode_replacing, strip_bom, strip_line_end

UNITS = ("line", "file", "jsonl")
# Read through module globals at call time, so tests can make them small.
LONG_DOCUMENT_BYTES = 1_000_000
PIECE_BYTES = 100_000


@dataclass(frozen=True)
class Piece:
    """Where a piece of a long document sits in it.

    Attributes:
        start: the document's character offset where the piece starts.
        first: the document's first piece.
        last: its last piece.
    """

    start: int
    first: bool
    last: bool


@dataclass(frozen=True)
class Document:
    """A document (or a piece of a long one) and where the input stands after it.

    Attributes:
        doc_id: its id: `name:line` for lines, the file's name for files, the JSONL id field.
        text: its text (of a piece: the piece's text).
        end_offset: input bytes read once it has been read.
        line: its (last) line number, 1-based.
        invalid: 1 if bad UTF-8 bytes were replaced in it (on a long document's last piece).
        piece: for a piece of a long document, where it sits; else None.
    """

    doc_id: Any
    text: str
    end_offset: int
    line: int
    invalid: int
    piece: Piece | None = None


def read_documents(
    handle: BinaryIO,
    name: str,
    unit: str,
    *,
    offset: int = 0,
    line: int = 0,
    text_field: str = "text",
    id_field: str = "id",
    pieces: bool = True,
) -> Iterator[Document]:
    """The documents of a binary stream, from byte `offset` (after line `line`) on.

    Args:
        handle: the input, opened in binary mode (a file, or standard input).
        name: the input's name, for ids and error messages.
        unit: `line`, `file` or `jsonl` (see the module docstring).
        offset: where to start reading (a line start; a resume), seeking there when not 0.
        line: the number of the line before `offset`.
        text_field: JSONL key of the text.
        id_field: JSONL key of the document id.
        pieces: whether long documents may come in pieces; False refuses them.
    Returns:
        An iterator of `Document`s in input order; a long document as consecutive pieces.
    Raises:
        InputFormatError: a bad JSONL line, or a long document when `pieces` is False.
    """
    if unit == "file":
        data = handle.read(LONG_DOCUMENT_BYTES + 1)
        if len(data) <= LONG_DOCUMENT_BYTES:
            text, invalid = decode_replacing(strip_bom(data))
            yield Document(name, text, len(data), 1, invalid)
            return
        _check_pieces(pieces, name, None)
        parts = _byte_pieces(data, handle.read, line_mode=False)
        yield from _piece_documents(name, parts, 0, 1, bom=True)
        return
    if offset:
        handle.seek(offset)
    while raw := handle.readline(LONG_DOCUMENT_BYTES + 1):
        line += 1
        doc_id: Any = f"{name}:{line}"
        if len(raw) > LONG_DOCUMENT_BYTES and not raw.endswith(b"\n"):
            _check_pieces(pieces, name, line)
            if unit == "jsonl":
                raw = _rest_of_line(raw, handle)
                offset += len(raw)
                text = decode_replacing(raw.rstrip(b"\r\n"))[0]
                del raw
                doc_id, text, bad = parse_jsonl_document(
                    text, doc_id, name, line, text_field, id_field
                )
                yield from _text_pieces(doc_id, text, offset, line, bad)
                continue
            parts = _byte_pieces(raw, handle.readline, line_mode=True)
            for document in _piece_documents(doc_id, parts, offset, line, bom=line == 1):
                offset = document.end_offset
                yield document
            continue
        offset += len(raw)
        raw = strip_line_end(raw)
        if line == 1:
            raw = strip_bom(raw)
        text, bad = decode_replacing(raw)
        if unit == "jsonl":
            doc_id, text, surrogate = parse_jsonl_document(
                text, doc_id, name, line, text_field, id_field
            )
            bad = bad or surrogate
        yield Document(doc_id, text, offset, line, bad)


def parse_jsonl_document(
    line_text: str, default_id: Any, name: str, line: int, text_field: str, id_field: str
) -> tuple[Any, str, int]:
    """`(doc_id, text, invalid)` of one JSONL line; a blank line is an empty document.

    `invalid` is 1 when the text held a lone surrogate (a `"\\ud800"` escape), which cannot be
    written as UTF-8 and becomes "?" (so offsets stay).

    Raises:
        InputFormatError: not strict JSON, not an object, or no string in `text_field`.
    """
    if not line_text.strip():
        return default_id, "", 0
    try:
        value = json.loads(line_text, parse_constant=_not_json, parse_float=_finite_float)
    except json.JSONDecodeError as error:
        raise InputFormatError(f"not valid JSON: {error.msg}", name, line) from None
    except _NotJson as error:
        raise InputFormatError(f"not valid JSON: {error}", name, line) from None
    except ValueError as error:  # an integer of more than 4,300 digits
        raise InputFormatError(f"not valid JSON: {error}", name, line) from None
    except RecursionError:
        raise InputFormatError("not valid JSON: nested too deeply", name, line) from None
    if not isinstance(value, dict):
        raise InputFormatError("expected a JSON object", name, line)
    if text_field not in value:
        raise InputFormatError(
            f"expected a string in {text_field!r}, found no such key", name, line
        )
    text = value[text_field]
    if not isinstance(text, str):
        found = "null" if text is None else f"a {type(text).__name__}"
        raise InputFormatError(f"expected a string in {text_field!r}, found {found}", name, line)
    invalid = 0
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", errors="replace").decode("utf-8")
        invalid = 1
    return value.get(id_field, default_id), text, invalid


class _NotJson(ValueError):
    """What Python's json module accepts but JSON does not (NaN, Infinity, 1e999)."""


def _not_json(constant: str) -> float:
    raise _NotJson(f"{constant} is not a JSON value")


def _finite_float(number: str) -> float:
    value = float(number)
    if not math.isfinite(value):
        raise _NotJson(f"{number} is too large for a JSON number")
    return value


def _check_pieces(pieces: bool, name: str, line: int | None) -> None:
    if not pieces:
        raise InputFormatError(
            f"a document of more than {LONG_DOCUMENT_BYTES:,} bytes: only a tagger writing "
            "jsonl, conll or text reads one in pieces (memory stays bounded); split it",
            name,
            line,
        )


def _rest_of_line(start: bytes, handle: BinaryIO) -> bytes:
    # A JSON object is parsed whole: a long JSONL line is read to its end.
    parts = [start]
    while not parts[-1].endswith(b"\n") and (chunk := handle.readline(PIECE_BYTES)):
        parts.append(chunk)
    return b"".join(parts)


def _byte_pieces(
    first: bytes, read: Callable[[int], bytes], line_mode: bool
) -> Iterator[tuple[bytes, bool]]:
    """A long document's bytes as `(piece, last)`, pieces of about `PIECE_BYTES` cut after a
    line break or a space (an ASCII byte never sits inside a UTF-8 sequence, so the pieces
    decode as the whole would), or between two characters in a run without any. `first` has
    been read; `read(n)` reads on (a `readline` in line mode: the document ends at a newline)."""
    buffer = first
    done = line_mode and first.endswith(b"\n")
    while True:
        while not done and len(buffer) < 2 * PIECE_BYTES:
            chunk = read(PIECE_BYTES)
            buffer += chunk
            done = not chunk or (line_mode and chunk.endswith(b"\n"))
        if done and len(buffer) <= 2 * PIECE_BYTES:
            yield buffer, True
            return
        cut = (
            max(
                buffer.rfind(b"\n", PIECE_BYTES // 2, PIECE_BYTES),
                buffer.rfind(b" ", PIECE_BYTES // 2, PIECE_BYTES),
                buffer.rfind(b"\t", PIECE_BYTES // 2, PIECE_BYTES),
            )
            + 1
        )
        if cut == 0:
            # Not inside a UTF-8 sequence: back over at most 3 continuation bytes (a character
            # is at most 4 bytes). A longer run of them is invalid UTF-8, each byte replaced
            # alone wherever the cut falls.
            cut = PIECE_BYTES
            while cut > PIECE_BYTES - 3 and buffer[cut] & 0xC0 == 0x80:
                cut -= 1
            if buffer[cut] & 0xC0 == 0x80:
                cut = PIECE_BYTES
        yield buffer[:cut], False
        buffer = buffer[cut:]


def _piece_documents(
    doc_id: Any, parts: Iterator[tuple[bytes, bool]], offset: int, line: int, bom: bool
) -> Iterator[Document]:
    start = invalid = 0
    first = True
    for raw, last in parts:
        offset += len(raw)
        if first and bom:
            raw = strip_bom(raw)
        if last:
            raw = strip_line_end(raw)
        text, bad = decode_replacing(raw)
        invalid = invalid or bad
        yield Document(
            doc_id, text, offset, line, invalid if last else 0, Piece(start, first, last)
        )
        start += len(text)
        first = False


def _text_pieces(
    doc_id: Any, text: str, offset: int, line: int, invalid: int
) -> Iterator[Document]:
    """A long JSONL text in pieces of about `PIECE_BYTES` characters, cut as `_byte_pieces`."""
    start = 0
    while True:
        if len(text) - start <= 2 * PIECE_BYTES:
            piece = Piece(start, start == 0, True)
            yield Document(doc_id, text[start:], offset, line, invalid, piece)
            return
        low, high = start + PIECE_BYTES // 2, start + PIECE_BYTES
        cut = max(text.rfind(c, low, high) for c in "\n \t") + 1 or high
        yield Document(doc_id, text[start:cut], offset, line, 0, Piece(start, start == 0, False))
        start = cut
