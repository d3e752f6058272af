"""Input formats: which reader a file needs, and the readers behind one call per kind of data.

The step between the readers and `loading.py`: `detect_format` names a file's format from its
extension or first line, `read_sentences`/`read_texts` dispatch to the reader of that format,
and `parse_split_spec` reads `--dev-from-train` values. `corpus stats` uses the same calls, so its
counts agree with what training reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..config import INPUT_FORMATS as FILE_FORMATS
from ..errors import ConfigError, InputFormatError
from .readers import Sentence, TextExample
from .readers import conll as conll_reader
from .readers import conllu as conllu_reader
from .readers import jsonl as jsonl_reader
from .readers import sst as sst_reader
from .readers import table as table_reader
from .readers._lines import read_lines

INPUT_FORMATS = (*FILE_FORMATS, "hub")
TAGGING_FORMATS = ("conll", "conllu", "jsonl")
TEXT_FORMATS = ("jsonl", "csv", "tsv", "sst")
_FORMAT_BY_SUFFIX = {".conllu": "conllu", ".jsonl": "jsonl", ".csv": "csv"}
_SPLIT_SPEC = re.compile(r"^(first|last):([0-9]+)$")


def detect_format(path: str | Path) -> str:
    """The input format of a file: `"conll"`, `"conllu"`, `"jsonl"`, `"csv"`, `"tsv"` or `"sst"`.

    By extension for `.conllu`, `.jsonl` and `.csv`; otherwise by the first non-blank line: `(`
    and a digit is an SST tree, `{` a JSON line, a `# ` comment or 10 tab-separated columns with
    an integer first is CoNLL-U, a `.tsv` file whose first line names `text` and `label` columns
    is a table, and anything else is CoNLL columns.

    Raises:
        InputFormatError: the file is missing, empty, or its first line is not valid UTF-8.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in _FORMAT_BY_SUFFIX:
        return _FORMAT_BY_SUFFIX[suffix]
    first = first_content_line(path)
    if re.match(r"[ \t]*\([0-9]", first):
        return "sst"
    if first.lstrip(" \t").startswith("{"):
        return "jsonl"
    fields = first.split("\t")
    if first.startswith("# ") or (len(fields) == 10 and fields[0].isdigit()):
        return "conllu"
    if suffix == ".tsv" and {"text", "label"} <= set(fields):
        return "tsv"
    return "conll"


def first_content_line(path: Path) -> str:
    lines = read_lines(path)
    try:
        for _, line in lines:
            if not conll_reader.is_blank(line):
                return line
    finally:
        lines.close()
    raise InputFormatError("empty file: no sentences", path)


def resolve_format(
    path: str | Path, input_format: str | None, allowed: Sequence[str], kind: str
) -> str:
    fmt = input_format if input_format is not None else detect_format(path)
    if fmt not in INPUT_FORMATS:
        raise ConfigError(
            f"unknown input format {fmt!r}: expected one of {', '.join(INPUT_FORMATS)}"
        )
    if fmt not in allowed:
        raise ConfigError(
            f"input format {fmt!r} does not hold {kind} (formats for {kind}: {', '.join(allowed)})"
        )
    return fmt


def read_sentences(
    path: str | Path,
    input_format: str | None = None,
    label_column: int | None = None,
    tag_field: str = "upos",
) -> Iterator[Sentence]:
    """Tagged sentences of a file in any tagging format (`conll`, `conllu`, `jsonl`).

    Args:
        path: the file.
        input_format: the format; default `detect_format(path)`.
        label_column: label column of a CoNLL file (default the last); only for `conll`.
        tag_field: `"upos"` or `"xpos"`, for `conllu`.
    Returns:
        An iterator of `Sentence`s, as the format's reader yields them.
    Raises:
        ConfigError: an unknown format, one that holds texts, a bad `tag_field`, or a
            `label_column` for a format without columns.
        InputFormatError: the reader's errors (file and line).
    """
    fmt = resolve_format(path, input_format, TAGGING_FORMATS, "tagged sentences")
    if label_column is not None and fmt != "conll":
        raise ConfigError(f"a label column applies to CoNLL column files, not to {fmt!r}")
    if fmt == "conll":
        return conll_reader.read_conll(path, label_column)
    if fmt == "conllu":
        if tag_field not in conllu_reader.TAG_FIELDS:
            raise ConfigError(f"tag field {tag_field!r}: expected one of upos, xpos")
        return conllu_reader.read_conllu(path, tag_field)
    return jsonl_reader.read_jsonl_tagged(path)


def read_texts(
    path: str | Path,
    input_format: str | None = None,
    *,
    sst_labels: str = "sst2",
    phrases: bool = False,
    text_field: str = "text",
    label_field: str = "label",
    id_field: str | None = None,
) -> Iterator[TextExample]:
    """Labelled texts of a file in any text format (`jsonl`, `csv`, `tsv`, `sst`).

    Args:
        path: the file.
        input_format: the format; default `detect_format(path)`.
        sst_labels: `"sst2"` or `"sst5"`, for `sst`.
        phrases: for `sst`, also yield every labelled phrase of each tree (see `read_sst`).
        text_field: JSON field or table column of the text.
        label_field: JSON field or table column of the label.
        id_field: JSON field (default `"id"`) or table column (default none) of the example id.
    Returns:
        An iterator of `TextExample`s.
    Raises:
        ConfigError: an unknown format, one that holds tagged sentences, or bad `sst_labels`.
        InputFormatError: the reader's errors (file and line).
    """
    fmt = resolve_format(path, input_format, TEXT_FORMATS, "labelled texts")
    if fmt == "sst":
        if sst_labels not in sst_reader.SST_LABELS:
            raise ConfigError(f"SST labels {sst_labels!r}: expected one of sst2, sst5")
        return sst_reader.read_sst(path, sst_labels, phrases)
    if fmt == "jsonl":
        return jsonl_reader.read_jsonl_texts(path, text_field, label_field, id_field or "id")
    delimiter = "," if fmt == "csv" else "\t"
    return table_reader.read_table(path, delimiter, text_field, label_field, id_field)


def parse_split_spec(spec: str) -> tuple[str, int]:
    """`"last:1000"` → `("last", 1000)`: which end of train becomes dev, and how many sentences.

    Raises:
        ConfigError: not `first:N` or `last:N` with N ≥ 1.
    """
    match = _SPLIT_SPEC.match(spec)
    if match is None or int(match.group(2)) < 1:
        raise ConfigError(f"dev_from_train {spec!r}: expected 'last:N' or 'first:N' with N >= 1")
    return match.group(1), int(match.group(2))


# A loaded corpus: its splits and what they are
