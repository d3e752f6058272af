"""Input formats: which reader a file needs, and the readers behind one call per kind of data.

The step between the readers and `loading.py`: `detect_format` names a file's format from its
extension or first line, `read_sentences`/`read_texts` dispatch to the reader of that format,
and `parse_split_spec` reads `--dev-from-train` values. `corpus stats` uses the same calls, so its
counts agree with what training reads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..config import INPUT_FORMATS as FILE_FORMATS
from ..errors import ConfigError, InputFormatError
from .readers import Sentence, TextExample
from .readers import conll as conll_reader
from .readers import conllu as conllu_reader
from .readers import docbin as docbin_reader
from .readers import jsonl as jsonl_reader
from .readers import spans as spans_reader
from .readers import sst as sst_reader
from .readers import table as table_reader
from .readers._lines import BOM, read_lines
from .readers.spans import SPAN_FORMATS, SpanReadStats

INPUT_FORMATS = (*FILE_FORMATS, "hub")
TAGGING_FORMATS = ("conll", "conllu", "jsonl", *SPAN_FORMATS, "docbin")
TEXT_FORMATS = ("jsonl", "csv", "tsv", "sst", "docbin")
_FORMAT_BY_SUFFIX = {".conllu": "conllu", ".csv": "csv", ".spacy": "docbin"}
# A Label Studio export: a JSON array whose first element is an object (or an empty array).
_JSON_ARRAY_OF_OBJECTS = re.compile(rb"\[\s*(\{|\]\s*$)")
_SPLIT_SPEC = re.compile(r"^(first|last):([0-9]+)$")


def detect_format(path: str | Path) -> str:
    """The input format of a file: one of `config.INPUT_FORMATS` but `"hub"`.

    By extension for `.conllu`, `.csv` and `.spacy` (a DocBin); a file that opens a JSON array
    of objects is a Label Studio export (`labelstudio`); a `.jsonl` file, or one whose first
    non-blank line opens a JSON object, is JSONL, and its first record tells which:
    `spans`/`doccano`/`labelstudio` records (`readers.spans.detect_span_shape`), else `jsonl`
    (tokens and tags, or a text and a label). Otherwise by the first non-blank line: `(` and a
    digit is an SST tree, a `# ` comment or 10 tab-separated columns with an integer first is
    CoNLL-U, a `.tsv` file whose first line names `text` and `label` columns is a table, and
    anything else (but a `.json` file's) is CoNLL columns.

    Raises:
        InputFormatError: the file is missing, empty, or its first line is not valid UTF-8; a
            `.json` file holds neither a JSON array nor JSON records.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in _FORMAT_BY_SUFFIX:
        return _FORMAT_BY_SUFFIX[suffix]
    if _opens_json_array(path):
        return "labelstudio"
    first = first_content_line(path)
    if suffix == ".jsonl" or _opens_json_object(first):
        return _jsonl_kind(first)
    if suffix == ".json":
        # Read as CoNLL columns, a broken export would count its text as tokens.
        raise InputFormatError(
            "a .json file should hold a Label Studio export (a JSON array) or JSON records, "
            f"one per line; its first line is neither ({first[:40]!r}): fix it, or name its "
            "format with --input-format",
            path,
        )
    if re.match(r"[ \t]*\([0-9]", first):
        return "sst"
    fields = first.split("\t")
    if first.startswith("# ") or (len(fields) == 10 and fields[0].isdigit()):
        return "conllu"
    if suffix == ".tsv" and {"text", "label"} <= set(fields):
        return "tsv"
    return "conll"


def format_named_by_extension(path: str | Path) -> str | None:
    """`detect_format` where the file's extension decides the format (`.conllu`, `.csv`,
    `.spacy`, `.jsonl`, `.json`); None for other names, whose format is read from the content."""
    if Path(path).suffix.lower() not in (*_FORMAT_BY_SUFFIX, ".jsonl", ".json"):
        return None
    return detect_format(path)


def _opens_json_object(first: str) -> bool:
    """Whether a first line is (meant as) a JSON object: it parses as one, or its first field
    opens one with a quoted key. A CoNLL line may start with a `{` token (`{ O`)."""
    stripped = first.strip(" \t")
    if not stripped.startswith("{"):
        return False
    try:
        json.loads(stripped)
        return True
    except (ValueError, RecursionError):
        return '"' in stripped.split(maxsplit=1)[0]


def _opens_json_array(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False  # read_lines names the problem
    if head.startswith(BOM):
        head = head[len(BOM) :]
    return _JSON_ARRAY_OF_OBJECTS.match(head.lstrip(b" \t\r\n")) is not None


def _jsonl_kind(first: str) -> str:
    try:
        record = json.loads(first)
    except (ValueError, RecursionError):  # JSONDecodeError, too many digits, too deep
        return "jsonl"  # the JSONL reader reports the bad line
    return spans_reader.detect_span_shape(record) or "jsonl"


def holds_texts(path: str | Path, fmt: str) -> bool:
    """True when a file of a format that may hold either (`jsonl`, `docbin`) holds labelled
    texts rather than tagged sentences: JSONL whose first record has no `tokens`, a DocBin whose
    first document has categories and no token annotation. Formats of one kind answer by it."""
    if fmt == "jsonl":
        try:
            record = json.loads(first_content_line(Path(path)))
        except (ValueError, RecursionError):
            return False  # the tagged reader reports the bad line
        return not (isinstance(record, dict) and "tokens" in record)
    if fmt == "docbin":
        for _, doc in docbin_reader.read_docbin_docs(path):
            annotated = any(doc.has_annotation(a) for a in ("ENT_IOB", "POS", "TAG"))
            return bool(doc.cats) and not annotated
        return False
    return fmt not in TAGGING_FORMATS


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
    *,
    misaligned: str = "error",
    span_stats: SpanReadStats | None = None,
    keep_lines: bool = False,
    log: bool = True,
) -> Iterator[Sentence]:
    """Tagged sentences of a file in any tagging format (`TAGGING_FORMATS`).

    Args:
        path: the file.
        input_format: the format; default `detect_format(path)`.
        label_column: label column of a CoNLL file (default the last); only for `conll`.
        tag_field: `"upos"` or `"xpos"`, for `conllu`; for `docbin` without entities, `upos`
            prefers `token.pos_` and `xpos` takes `token.tag_`.
        misaligned: span formats: `"error"`, `"expand"` or `"drop"` for a span that cuts a token.
        span_stats: span formats: filled with the counts of records and spans, misaligned ones
            included.
        keep_lines: `conll` and `docbin`: keep the source lines (`Sentence.source_lines`), for
            `convert`.
        log: span formats: warn about widened and dropped spans and records left out.
    Returns:
        An iterator of `Sentence`s, as the format's reader yields them.
    Raises:
        ConfigError: an unknown format, one that holds texts, a bad `tag_field` or
            `misaligned`, or a `label_column` for a format without columns.
        InputFormatError: the reader's errors (file and line).
    """
    fmt = resolve_format(path, input_format, TAGGING_FORMATS, "tagged sentences")
    if label_column is not None and fmt != "conll":
        raise ConfigError(f"a label column applies to CoNLL column files, not to {fmt!r}")
    spans_reader.check_misaligned_policy(misaligned)
    if tag_field not in conllu_reader.TAG_FIELDS:
        raise ConfigError(f"tag field {tag_field!r}: expected one of upos, xpos")
    if fmt == "conll":
        return conll_reader.read_conll(path, label_column, keep_lines)
    if fmt == "conllu":
        return conllu_reader.read_conllu(path, tag_field)
    if fmt in SPAN_FORMATS:
        return spans_reader.read_span_sentences(
            path, fmt, misaligned=misaligned, stats=span_stats, log=log
        )
    if fmt == "docbin":
        return docbin_reader.read_docbin_sentences(path, tag_field, keep_lines)
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
    """Labelled texts of a file in any text format (`jsonl`, `csv`, `tsv`, `sst`, `docbin`).

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
    if fmt == "docbin":
        return docbin_reader.read_docbin_texts(path)
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
