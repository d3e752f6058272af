"""JSON Lines files: one JSON object per line, tagged sentences or texts with a label.

A reader of the first stage. Every record is checked for its fields and their types; the first bad
line raises `InputFormatError` with file and line. Blank lines carry no record and are passed over.
Optional fields (tags, label, id) are optional per file: either every record has one or none does.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import InputFormatError
from . import Sentence, TextExample
from ._lines import excerpt, is_blank, read_lines
from .conll import TagChecker

# A JSON escape of a UTF-16 surrogate; a lone one decodes to a string that is not valid Unicode.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def json_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """`(line, object)` for each non-blank line of a JSONL file, checked to be a JSON object.

    Raises:
        InputFormatError: a line that is not JSON or not an object, a lone UTF-16 surrogate,
            bad UTF-8 (as `read_lines`); a missing or empty file.
    """
    records = 0
    for number, line in read_lines(path):
        if is_blank(line):
            continue
        record = parse_json_line(line, path, number)
        if not isinstance(record, dict):
            raise InputFormatError(
                f"expected a JSON object, got {json_type(record)}: {excerpt(line)}", path, number
            )
        if _SURROGATE_ESCAPE.search(line):
            try:
                json.dumps(record, ensure_ascii=False).encode("utf-8")
            except RecursionError:
                raise _too_deep(line, path, number) from None
            except UnicodeEncodeError:
                raise InputFormatError(
                    f"a \\u escape gives a lone UTF-16 surrogate: {excerpt(line)}", path, number
                ) from None
        records += 1
        yield number, record
    if records == 0:
        raise InputFormatError("empty file: no sentences", path)


def parse_json_line(line: str, path: str | Path, number: int) -> Any:
    """The JSON value of one line.

    Raises:
        InputFormatError: the line is not JSON, nests too deep for the parser, or holds an integer
            of more digits than Python converts (`sys.get_int_max_str_digits()`).
    """
    try:
        return json.loads(line)
    except json.JSONDecodeError as error:
        raise InputFormatError(
            f"bad JSON at column {error.colno}: {error.msg}: {excerpt(line)}", path, number
        ) from None
    except RecursionError:
        raise _too_deep(line, path, number) from None
    except ValueError:
        # json turns digits into int() and Python refuses more than a set number of digits.
        raise InputFormatError(
            f"bad JSON: a number of more than {sys.get_int_max_str_digits()} digits: "
            f"{excerpt(line)}",
            path,
            number,
        ) from None


def _too_deep(line: str, path: str | Path, number: int) -> InputFormatError:
    return InputFormatError(
        f"bad JSON: arrays or objects nested too deep to read: {excerpt(line)}", path, number
    )


def json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "true/false"}
    if value is None:
        return "null"
    if isinstance(value, bool):
        return names[bool]
    if isinstance(value, (int, float)):
        return "a number"
    return names.get(type(value), type(value).__name__)


def _string_list(record: dict[str, Any], field: str, path: str | Path, number: int) -> list[str]:
    value = record[field]
    if not isinstance(value, list):
        raise InputFormatError(
            f"field {field!r} must be an array of strings, got {json_type(value)}", path, number
        )
    for position, item in enumerate(value):
        if not isinstance(item, str):
            raise InputFormatError(
                f"field {field!r} must hold strings, got {json_type(item)} at index {position}",
                path,
                number,
            )
        if not item:
            raise InputFormatError(
                f"field {field!r} holds an empty string at index {position}", path, number
            )
    return value


def optional_name(record: dict[str, Any], field: str, path: str | Path, number: int) -> str | None:
    # ids and labels may be strings or integers (a 0/1 label); integers become their decimal string.
    if field not in record:
        return None
    value = record[field]
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InputFormatError(
        f"field {field!r} must be a string or an integer, got {json_type(value)}", path, number
    )


def check_text_and_label(
    text: str, label: str | None, text_field: str, label_field: str | None, path, number: int
) -> None:
    """A labelled example's text and label hold something: an empty label would become a class
    named "", an empty text an example of nothing (unlabelled texts may be empty).

    Raises:
        InputFormatError: a labelled example with a blank text, or a blank label.
    """
    if label is None:
        return
    if not text.strip():
        raise InputFormatError(f"the text ({text_field!r}) is empty", path, number)
    if not label.strip():
        raise InputFormatError(
            f"the label ({label_field!r}) is empty: give every example its label", path, number
        )


class _Presence:
    """Checks that an optional field is in every record of a file or in none."""

    def __init__(self, field: str, path: str | Path):
        self.field, self.path = field, path
        self.first: tuple[bool, int] | None = None

    def check(self, record: dict[str, Any], number: int) -> None:
        present = self.field in record
        if self.first is None:
            self.first = (present, number)
        elif present != self.first[0]:
            had = "has" if self.first[0] else "lacks"
            raise InputFormatError(
                f"record {'has' if present else 'lacks'} field {self.field!r}, but the record on "
                f"line {self.first[1]} {had} it (a file is all labelled or all unlabelled)",
                self.path,
                number,
            )


def read_jsonl_tagged(path: str | Path) -> Iterator[Sentence]:
    """Tagged sentences from records `{"tokens": [...], "tags": [...]}`.

    `tokens` (non-empty strings, at least one) is required; `tags` (strings, as many as tokens) is
    optional, per file. Optional `"doc_id"` (string or integer) fills `Sentence.doc_id`; an optional
    `"id"` is checked for its type but not kept (`Sentence` has no id field; datasets ids come from
    file and line).

    Args:
        path: the file.
    Returns:
        An iterator of `Sentence`s; `line` is the record's line.
    Raises:
        InputFormatError: at the first bad line: bad JSON, not an object, a missing field, a wrong
            type, tags and tokens of different lengths, a label that fits no scheme in a
            scheme-tagged file, tags in some records only, bad UTF-8; or a missing or empty file.
    """
    checker = TagChecker(path)
    tags_presence = _Presence("tags", path)
    for number, record in json_records(path):
        if "tokens" not in record:
            raise InputFormatError("record has no field 'tokens'", path, number)
        tokens = _string_list(record, "tokens", path, number)
        if not tokens:
            raise InputFormatError(
                "field 'tokens' is empty: a sentence needs a token", path, number
            )
        tags_presence.check(record, number)
        tags: list[str] | None = None
        if "tags" in record:
            tags = _string_list(record, "tags", path, number)
            if len(tags) != len(tokens):
                raise InputFormatError(f"{len(tokens)} tokens but {len(tags)} tags", path, number)
            for tag in tags:
                checker.check(tag, number)
        optional_name(record, "id", path, number)
        doc_id = optional_name(record, "doc_id", path, number)
        yield Sentence(tokens, tags, doc_id, number)


def read_jsonl_texts(
    path: str | Path, text_field: str = "text", label_field: str = "label", id_field: str = "id"
) -> Iterator[TextExample]:
    """Texts with labels from records `{"text": "...", "label": "..."}`.

    The text field is required (a string). The label field (a string, or an integer that becomes its
    decimal string) and the id field (likewise) are optional, per file: a file without labels is
    unlabelled (`label` None).

    Args:
        path: the file.
        text_field: name of the text field.
        label_field: name of the label field.
        id_field: name of the id field.
    Returns:
        An iterator of `TextExample`s (`tokens` None); `line` is the record's line.
    Raises:
        InputFormatError: at the first bad line: bad JSON, not an object, a missing text, a wrong
            type, labels in some records only, bad UTF-8; or a missing or empty file.
    """
    label_presence = _Presence(label_field, path)
    id_presence = _Presence(id_field, path)
    for number, record in json_records(path):
        if text_field not in record:
            raise InputFormatError(f"record has no field {text_field!r}", path, number)
        text = record[text_field]
        if not isinstance(text, str):
            raise InputFormatError(
                f"field {text_field!r} must be a string, got {json_type(text)}", path, number
            )
        label_presence.check(record, number)
        id_presence.check(record, number)
        label = optional_name(record, label_field, path, number)
        check_text_and_label(text, label, text_field, label_field, path, number)
        example_id = optional_name(record, id_field, path, number)
        yield TextExample(text, None, label, example_id, number)
