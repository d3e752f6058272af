"""CoNLL column files (CoNLL-2000, CoNLL-2003, WNUT-17): a token per line, sentences between blanks.

The first reader of the flow, and home of the helpers every reader shares: `read_lines` (strict
UTF-8, 1-based line numbers, clear errors for missing files, bad bytes, NUL bytes, CR-only line
endings and lines too long to be text) and `TagChecker` (labels that are scheme tags must all fit a
scheme). Columns are split on ASCII spaces and tabs only, so a
NO-BREAK SPACE or a U+FEFF inside a word stays in the word.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ...errors import InputFormatError
from ...text.schemes import check_tag, is_entity_tagset
from . import Sentence

DOCSTART = "-DOCSTART-"
_COLUMN_SEPARATOR = re.compile(r"[ \t]+")
# Whitespace that may make up a "blank" line; WNUT-17 train separates sentences with a lone TAB.
_BLANK = " \t\r\f\v"
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
    return not line.strip(_BLANK)


class TagChecker:
    """Checks, line by line, that a file's labels are either all plain (POS) or all scheme tags.

    Whether labels are scheme tags is a property of the whole label set
    (`schemes.is_entity_tagset`), but readers stream. So the checker remembers the first plain
    label it saw; once an `O` or a prefixed tag shows the file is scheme-tagged, that remembered
    label (say `X-PER` on line 3) is reported, and every later label is checked with
    `schemes.check_tag` at its own line.

    Args:
        path: the file, for error messages.
    """

    def __init__(self, path: str | Path):
        self.path = str(path)
        self.scheme_tagged = False
        self._first_plain: tuple[str, int] | None = None
        self._checked: set[str] = set()

    def check(self, tag: str, line: int) -> None:
        """Check one label at `line`.

        Raises:
            InputFormatError: the label, or an earlier plain one, fits no tag scheme while the file
                holds scheme tags.
        """
        if tag in self._checked:
            return
        if self.scheme_tagged:
            check_tag(tag, self.path, line)
            self._checked.add(tag)
            return
        if is_entity_tagset([tag]):
            self.scheme_tagged = True
            self._checked.add(tag)
            if self._first_plain is not None:
                plain, plain_line = self._first_plain
                try:
                    check_tag(plain, self.path, plain_line)
                except InputFormatError as error:
                    raise InputFormatError(
                        f"{error.message} (the file holds scheme tags: {tag!r} on line {line})",
                        self.path,
                        plain_line,
                    ) from None
        elif self._first_plain is None:
            self._first_plain = (tag, line)


def read_conll(path: str | Path, label_column: int | None = None) -> Iterator[Sentence]:
    """Sentences of a CoNLL column file.

    Each token line holds whitespace-separated columns (spaces or tabs), the word first; every token
    line has as many columns as the first one. A blank or whitespace-only line ends a sentence.
    `-DOCSTART-` lines start a document (`doc_id` `"doc-1"`, `"doc-2"`... counting them from 1)
    and are no sentence; without them `doc_id` is None. A file of one column is unlabelled (`tags`
    None).

    Args:
        path: the file.
        label_column: index of the label column; default the last; negative counts from the end.
            Must not be the word column.
    Returns:
        An iterator of `Sentence`s; `line` is the sentence's first token line.
    Raises:
        InputFormatError: at the first bad line: a column count unlike the first token line's, a
            label column outside the columns, a label that fits no scheme in a scheme-tagged file,
            bad UTF-8; or a missing or empty file.
    """
    columns: int | None = None
    first_token_line = 0
    label_index: int | None = None
    checker = TagChecker(path)
    doc_id: str | None = None
    documents = 0
    sentences = 0
    tokens: list[str] = []
    tags: list[str] = []
    start = 0

    for number, line in read_lines(path):
        if is_blank(line):
            if tokens:
                sentences += 1
                yield Sentence(tokens, tags if label_index is not None else None, doc_id, start)
                tokens, tags = [], []
            continue
        fields = _COLUMN_SEPARATOR.split(line.strip(_BLANK))
        if fields[0] == DOCSTART:
            if tokens:
                sentences += 1
                yield Sentence(tokens, tags if label_index is not None else None, doc_id, start)
                tokens, tags = [], []
            documents += 1
            doc_id = f"doc-{documents}"
            continue
        if columns is None:
            columns, first_token_line = len(fields), number
            label_index = _label_index(label_column, columns, path, number)
        elif len(fields) != columns:
            raise InputFormatError(
                f"expected {columns} columns (as on line {first_token_line}), "
                f"got {len(fields)}: {excerpt(line)}",
                path,
                number,
            )
        if not tokens:
            start = number
        tokens.append(fields[0])
        if label_index is not None:
            tag = fields[label_index]
            checker.check(tag, number)
            tags.append(tag)
    if tokens:
        sentences += 1
        yield Sentence(tokens, tags if label_index is not None else None, doc_id, start)
    if sentences == 0:
        raise InputFormatError("empty file: no sentences", path)


def _label_index(label_column: int | None, columns: int, path: str | Path, line: int) -> int | None:
    if columns == 1:
        if label_column is not None:
            raise InputFormatError(
                f"label column {label_column} asked for, but token lines have 1 column (words)",
                path,
                line,
            )
        return None
    if label_column is None:
        return columns - 1
    if not -columns <= label_column < columns:
        raise InputFormatError(
            f"label column {label_column} is outside the {columns} columns "
            f"(0..{columns - 1}, or -{columns}..-1)",
            path,
            line,
        )
    index = label_column % columns
    if index == 0:
        raise InputFormatError(f"label column {label_column} is the word column", path, line)
    return index
