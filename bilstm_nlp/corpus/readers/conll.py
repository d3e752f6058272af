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

from ...errors import InputFormatError
from ...text.schemes import check_tag, is_entity_tagset
from . import Sentence
from ._lines import BLANK, excerpt, is_blank, read_lines

DOCSTART = "-DOCSTART-"
_COLUMN_SEPARATOR = re.compile(r"[ \t]+")


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


def read_conll(
    path: str | Path, label_column: int | None = None, keep_lines: bool = False
) -> Iterator[Sentence]:
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
        keep_lines: fill `Sentence.source_lines` with the token lines as written and
            `Sentence.docstart` with the `-DOCSTART-` line on each document's first sentence.
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
    lines: list[str] | None = [] if keep_lines else None
    docstart: str | None = None
    start = 0

    def sentence() -> Sentence:
        nonlocal docstart
        found = Sentence(tokens, tags if label_index is not None else None, doc_id, start)
        if keep_lines:
            found.source_lines, found.docstart, docstart = lines, docstart, None
        return found

    for number, line in read_lines(path):
        if is_blank(line):
            if tokens:
                sentences += 1
                yield sentence()
                tokens, tags, lines = [], [], [] if keep_lines else None
            continue
        fields = _COLUMN_SEPARATOR.split(line.strip(BLANK))
        if fields[0] == DOCSTART:
            if tokens:
                sentences += 1
                yield sentence()
                tokens, tags, lines = [], [], [] if keep_lines else None
            documents += 1
            doc_id = f"doc-{documents}"
            docstart = line
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
        if lines is not None:
            lines.append(line)
        if label_index is not None:
            tag = fields[label_index]
            checker.check(tag, number)
            tags.append(tag)
    if tokens:
        sentences += 1
        yield sentence()
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
