"""CSV and TSV tables with a header row: one text (and label) per row.

A reader of the first stage, on the standard csv module in strict mode, fed by `read_lines` so bad
UTF-8 still names its line. Quoted fields may span lines; an example's `line` is where its row
starts.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import InputFormatError
from . import TextExample
from ._lines import is_blank, read_lines
from .jsonl import check_text_and_label

DELIMITERS = {".csv": ",", ".tsv": "\t"}


def read_table(
    path: str | Path,
    delimiter: str | None = None,
    text_column: str = "text",
    label_column: str | None = "label",
    id_column: str | None = None,
) -> Iterator[TextExample]:
    """Texts with labels from a CSV/TSV file whose first row names the columns.

    Args:
        path: the file.
        delimiter: the column separator; default by extension, `,` for `.csv` and TAB for `.tsv`.
        text_column: header name of the text column (required).
        label_column: header name of the label column; when the header has no such column (or this
            is None) the file is unlabelled (`label` None).
        id_column: header name of an id column; when given, the header must have it.
    Returns:
        An iterator of `TextExample`s (`tokens` None); `line` is the row's first line.
    Raises:
        InputFormatError: a row with more or fewer columns than the header, bad quoting, a missing
            text or id column, bad UTF-8; a missing file, or one with no rows after the header; a
            delimiter that the extension does not tell.
    """
    if delimiter is None:
        delimiter = DELIMITERS.get(Path(path).suffix.lower())
        if delimiter is None:
            raise InputFormatError(
                "cannot tell the column delimiter from the extension (expected .csv or .tsv); "
                "give the delimiter",
                path,
            )
    lines = (line for _, line in read_lines(path, keep_ends=True))
    rows = csv.reader(lines, delimiter=delimiter, strict=True)
    header = _next_row(rows, path)
    while header is not None and _is_blank_row(header):
        header = _next_row(rows, path)
    if header is None:
        raise InputFormatError("empty file: no header row", path)
    header_line = rows.line_num
    if text_column not in header:
        raise InputFormatError(
            f"no column {text_column!r} in the header: {header}", path, header_line
        )
    if id_column is not None and id_column not in header:
        raise InputFormatError(
            f"no column {id_column!r} in the header: {header}", path, header_line
        )
    text_index = header.index(text_column)
    label_index = header.index(label_column) if label_column in header else None
    id_index = header.index(id_column) if id_column is not None else None
    examples = 0
    while True:
        start = rows.line_num + 1
        row = _next_row(rows, path)
        if row is None:
            break
        if _is_blank_row(row):
            continue  # a blank line holds no row
        if len(row) != len(header):
            raise InputFormatError(
                f"expected {len(header)} columns (as in the header), got {len(row)}: {row}",
                path,
                start,
            )
        examples += 1
        label = row[label_index] if label_index is not None else None
        check_text_and_label(row[text_index], label, text_column, label_column, path, start)
        yield TextExample(
            row[text_index], None, label, row[id_index] if id_index is not None else None, start
        )
    if examples == 0:
        raise InputFormatError("empty file: no rows after the header", path)


def _is_blank_row(row: list[str]) -> bool:
    return not row or (len(row) == 1 and is_blank(row[0]))


def _next_row(rows: Any, path: str | Path) -> list[str] | None:
    try:
        return next(rows)
    except StopIteration:
        return None
    except csv.Error as error:
        raise InputFormatError(f"bad CSV: {error}", path, rows.line_num) from None
