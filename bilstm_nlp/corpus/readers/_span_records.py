"""The record shapes of span files: Prodigy/spaCy, doccano and Label Studio records →
checked `SpanDocument`s, and the JSON-array reader for Label Studio's export.

Private to `readers.spans`. Each parser checks the fields of one record and raises
`InputFormatError` with file and line at the first problem.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ...errors import InputFormatError
from ..span_formats import CharSpan, SpanDocument, beyond_utf16_unit, utf16_to_code_point
from ._lines import BOM, excerpt
from .jsonl import json_type

_PEEK_BYTES = 4096
_WHITESPACE = re.compile(r"\s*")


def detect_span_shape(record: Any) -> str | None:
    """The span shape of one parsed record, or None when it is no span record.

    `data` holding an object is a Label Studio task; `spans` a Prodigy/spaCy record; `label` as
    an array (or doccano's newer `entities` array, or the `labels` array of lists doccano 1.x
    exported) a doccano record. A `label` string is a text-classification record, not a span
    record.
    """
    if not isinstance(record, dict):
        return None
    if isinstance(record.get("data"), dict):
        return "labelstudio"
    if "spans" in record:
        return "spans"
    if isinstance(record.get("label"), list) or isinstance(record.get("entities"), list):
        return "doccano"
    labels = record.get("labels")  # doccano 1.x; a list of strings would be classes
    if isinstance(labels, list) and all(isinstance(item, list) for item in labels):
        return "doccano"
    return None


def is_json_array_file(path: str | Path) -> bool:
    """True when the file's first non-blank character is `[` (a Label Studio JSON export).

    Raises:
        InputFormatError: the file is missing or unreadable.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(_PEEK_BYTES)
    except FileNotFoundError:
        raise InputFormatError("no such file", path) from None
    except IsADirectoryError:
        raise InputFormatError("is a directory, expected a file", path) from None
    except OSError as error:
        raise InputFormatError(f"cannot open: {error.strerror}", path) from None
    if head.startswith(BOM):
        head = head[len(BOM) :]
    return head.lstrip(b" \t\r\n").startswith(b"[")


def describe_span(text: str, span: CharSpan) -> str:
    shown = text[span.start : span.end]
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"[{span.start}, {span.end}) {shown!r} {span.label}"


def check_overlaps(document: SpanDocument, path: str | Path) -> None:
    ordered = sorted(document.spans, key=lambda s: (s.start, s.end))
    for before, after in zip(ordered, ordered[1:], strict=False):
        if after.start < before.end:
            raise InputFormatError(
                f"spans {describe_span(document.text, before)} and "
                f"{describe_span(document.text, after)} overlap: a token takes one tag, so spans "
                "must not overlap",
                path,
                document.line,
            )


def keys_of(record: Any) -> str:
    if not isinstance(record, dict):
        return json_type(record)
    names = list(record)[:8]
    return "[" + ", ".join(repr(n) for n in names) + (", ...]" if len(record) > 8 else "]")


def _text(container: dict[str, Any], path: str | Path, number: int, where: str = "") -> str:
    if "text" not in container:
        raise InputFormatError(
            f"record has no field '{where}text' (keys {keys_of(container)})", path, number
        )
    text = container["text"]
    if not isinstance(text, str):
        raise InputFormatError(
            f"field '{where}text' must be a string, got {json_type(text)}", path, number
        )
    return text


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _doc_id(value: Any, field: str, path: str | Path, number: int) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if _integer(value):
        return str(value)
    raise InputFormatError(
        f"field {field!r} must be a string or an integer, got {json_type(value)}", path, number
    )


def _char_span(
    text: str, start: Any, end: Any, label: Any, path: str | Path, number: int, where: str
) -> CharSpan:
    if not _integer(start) or not _integer(end):
        raise InputFormatError(
            f"{where}: start and end must be integers (character offsets), got "
            f"{json.dumps(start)} and {json.dumps(end)}",
            path,
            number,
        )
    if not isinstance(label, str) or not label:
        raise InputFormatError(
            f"{where}: the label must be a non-empty string, got {json.dumps(label)}", path, number
        )
    if start >= end:
        raise InputFormatError(
            f"{where}: [{start}, {end}) {label} is empty: start must be less than end",
            path,
            number,
        )
    if start < 0 or end > len(text):
        raise InputFormatError(
            f"{where}: [{start}, {end}) {label} is outside the text of {len(text)} characters",
            path,
            number,
        )
    return CharSpan(start, end, label)


def _score(value: Any, field: str, path: str | Path, number: int) -> float | None:
    if value is None:
        return None
    if not _number(value):
        raise InputFormatError(
            f"field {field!r} must be a number, got {json_type(value)}", path, number
        )
    return float(value)


def _tokens(value: Any, text: str, path: str | Path, number: int) -> list[tuple[int, int]] | None:
    """Prodigy's `tokens` list → `(start, end)` offsets, checked against the text."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise InputFormatError(
            f"field 'tokens' must be an array of token objects, got {json_type(value)}",
            path,
            number,
        )
    tokens = []
    previous_end = 0
    for index, token in enumerate(value):
        if not isinstance(token, dict) or not _integer(token.get("start")):
            raise InputFormatError(
                f"token {index}: expected an object with integer 'start' and 'end' (Prodigy's "
                f"tokens), got {excerpt(json.dumps(token))}",
                path,
                number,
            )
        start, end = token["start"], token.get("end")
        if not _integer(end) or not previous_end <= start < end <= len(text):
            raise InputFormatError(
                f"token {index}: offsets [{start}, {json.dumps(end)}) must be ascending, "
                f"non-empty and inside the text of {len(text)} characters",
                path,
                number,
            )
        if "text" in token and token["text"] != text[start:end]:
            raise InputFormatError(
                f"token {index}: its text {token['text']!r} is not the text at [{start}, {end}) "
                f"{text[start:end]!r}",
                path,
                number,
            )
        tokens.append((start, end))
        previous_end = end
    return tokens


def _meta(record: dict[str, Any], reserved: Iterable[str]) -> dict[str, Any]:
    skip = set(reserved)
    return {key: value for key, value in record.items() if key not in skip}


def parse_spans_record(
    record: dict[str, Any], path: str | Path, number: int
) -> SpanDocument | None:
    """Prodigy's / spaCy's `{"text", "spans": [{"start", "end", "label"}], ...}`."""
    text = _text(record, path, number)
    if record.get("_view_id") == "ner":
        raise InputFormatError(
            "a binary annotation (Prodigy's ner.teach, view 'ner'): it accepts or rejects one "
            "suggested span and says nothing of the other tokens, so it cannot train a tagger "
            "as a full annotation; export the dataset of ner.manual or ner.correct instead",
            path,
            number,
        )
    answer = record.get("answer")
    if answer is not None and answer != "accept":
        return None  # Prodigy: a rejected or ignored example is no annotation of the text
    if "spans" not in record:
        raise InputFormatError(
            f"record has no field 'spans' (keys {keys_of(record)})", path, number
        )
    spans_value = record["spans"]
    if not isinstance(spans_value, list):
        raise InputFormatError(
            f"field 'spans' must be an array of span objects, got {json_type(spans_value)}",
            path,
            number,
        )
    spans = []
    for index, item in enumerate(spans_value):
        where = f"span {index}"
        if not isinstance(item, dict):
            raise InputFormatError(
                f"{where}: expected an object with start, end and label, got {json_type(item)}",
                path,
                number,
            )
        span = _char_span(
            text, item.get("start"), item.get("end"), item.get("label"), path, number, where
        )
        score = _score(item.get("score"), "score", path, number)
        spans.append(CharSpan(span.start, span.end, span.label, score))
    return SpanDocument(
        text=text,
        spans=spans,
        doc_id=_doc_id(record.get("id"), "id", path, number),
        line=number,
        score=_score(record.get("score"), "score", path, number),
        meta=_meta(record, ("text", "spans", "tokens", "id", "score")),
        tokens=_tokens(record.get("tokens"), text, path, number),
    )


def parse_doccano_record(record: dict[str, Any], path: str | Path, number: int) -> SpanDocument:
    """doccano's `{"text", "label": [[start, end, label], ...]}` (`labels` in doccano 1.x), or
    its `{"text", "entities": [{"start_offset", "end_offset", "label"}, ...]}` (or `entities`
    as `[start, end, label]` lists, the intent-detection export).

    doccano counts offsets in UTF-16 code units (an emoji counts two), as its browser front end
    does; a text with such characters has its spans read in that count, unless only the count of
    code points puts them on word edges (a file written by a Python script). Spans equal in
    start, end and label are one span (a collaborative export lists each annotator's). A
    `span_scores` field stays metadata: after a round through doccano it describes spans the
    annotator may have changed, and doccano's spans are annotations, never predictions.
    """
    text = _text(record, path, number)
    field = next((f for f in ("label", "labels", "entities") if f in record), None)
    if field is None:
        raise InputFormatError(
            f"record has no field 'label' (doccano's spans), keys {keys_of(record)}", path, number
        )
    items = record[field]
    if not isinstance(items, list):
        raise InputFormatError(
            f"field {field!r} must be an array of [start, end, label], got {json_type(items)}",
            path,
            number,
        )
    raw: list[tuple[Any, Any, Any, str]] = []
    for index, item in enumerate(items):
        where = f"{'entity' if field == 'entities' else 'label'} {index}"
        if isinstance(item, dict) and field == "entities":
            raw.append((item.get("start_offset"), item.get("end_offset"), item.get("label"), where))
        elif isinstance(item, list) and len(item) == 3:
            raw.append((*item, where))
        else:
            expected = "[start, end, label]" + (
                " or an object with start_offset, end_offset and label"
                if field == "entities"
                else ""
            )
            raise InputFormatError(
                f"{where}: expected {expected}, got {excerpt(json.dumps(item))} (a doccano "
                "text-classification export holds labels only: read it as jsonl texts)",
                path,
                number,
            )
    raw = _doccano_code_points(text, raw)
    spans: list[CharSpan] = []
    seen: set[CharSpan] = set()
    for start, end, label, where in raw:
        span = _char_span(text, start, end, label, path, number, where)
        if span not in seen:
            seen.add(span)
            spans.append(span)
    return SpanDocument(
        text=text,
        spans=spans,
        doc_id=_doc_id(record.get("id"), "id", path, number),
        line=number,
        score=_score(record.get("score"), "score", path, number),
        meta=_meta(record, ("text", field, "tokens", "id", "score")),
        tokens=_tokens(record.get("tokens"), text, path, number),
    )


def _doccano_code_points(
    text: str, raw: list[tuple[Any, Any, Any, str]]
) -> list[tuple[Any, Any, Any, str]]:
    """doccano's offsets in code points: read as UTF-16 code units when the text holds a
    character beyond them (see `parse_doccano_record`)."""
    if not raw or not beyond_utf16_unit(text):
        return raw
    if not all(_integer(start) and _integer(end) for start, end, _, _ in raw):
        return raw  # `_char_span` words the error
    units = utf16_to_code_point(text)
    paired = all(
        0 <= start < len(units)
        and 0 <= end < len(units)
        and _unit_starts_char(text, units, start)
        and _unit_starts_char(text, units, end)
        for start, end, _, _ in raw
    )
    if not paired:
        return raw
    converted = [(units[start], units[end], label, where) for start, end, label, where in raw]
    as_points = all(0 <= start and end <= len(text) for start, end, _, _ in raw)
    if as_points and _word_edges(text, raw) > _word_edges(text, converted):
        return raw
    return converted


def _unit_starts_char(text: str, units: list[int], unit: int) -> bool:
    """Unit `unit` is not the second half of a surrogate pair."""
    return unit == 0 or units[unit] != units[unit - 1]


def _word_edges(text: str, spans: list[tuple[Any, Any, Any, str]]) -> int:
    """How many span edges fall between a word character and something else (or the text's end)."""

    def edge(offset: int) -> bool:
        if offset <= 0 or offset >= len(text):
            return True
        return not (text[offset - 1].isalnum() and text[offset].isalnum())

    return sum(edge(start) + edge(end) for start, end, _, _ in spans)


def parse_labelstudio_task(
    task: dict[str, Any], path: str | Path, number: int, task_number: int
) -> SpanDocument | None:
    """A Label Studio task: `data.text` and the regions of its first submitted annotation; or a
    task of the JSON-MIN export (`{"id", "text", "label": [{"start", "end", "text", "labels"}],
    "annotation_id", ...}`)."""
    where = f"task {task_number}"
    if "data" not in task and isinstance(task.get("text"), str):
        return _labelstudio_min_task(task, path, number, where)
    data = task.get("data")
    if not isinstance(data, dict):
        raise InputFormatError(
            f"{where}: field 'data' must be an object holding the text, got "
            f"{json_type(data) if 'data' in task else 'no data'}",
            path,
            number,
        )
    text = _text(data, path, number, "data.")
    annotations = task.get("annotations", task.get("completions", []))
    if not isinstance(annotations, list):
        raise InputFormatError(
            f"{where}: field 'annotations' must be an array, got {json_type(annotations)}",
            path,
            number,
        )
    # Label Studio 0.x marked a skipped task's completion `skipped`, later ones `was_cancelled`.
    submitted = [
        a
        for a in annotations
        if isinstance(a, dict) and not a.get("was_cancelled") and not a.get("skipped")
    ]
    if not submitted:
        return None
    # A reviewer's pick (`ground_truth`) over the first submitted annotation.
    chosen = next((a for a in submitted if a.get("ground_truth") is True), submitted[0])
    result = chosen.get("result", [])
    if not isinstance(result, list):
        raise InputFormatError(
            f"{where}: field 'annotations[].result' must be an array, got {json_type(result)}",
            path,
            number,
        )
    spans = []
    for index, region in enumerate(result):
        if not isinstance(region, dict):
            raise InputFormatError(
                f"{where}: result {index} must be an object, got {json_type(region)}", path, number
            )
        if region.get("type", "labels") != "labels":
            continue  # relations, choices, text areas: no spans over the text
        value = region.get("value")
        if not isinstance(value, dict):
            raise InputFormatError(f"{where}: result {index} has no 'value' object", path, number)
        span = _labelstudio_region(text, value, path, number, f"{where}: result {index}")
        score = _score(region.get("score"), "score", path, number)
        spans.append(CharSpan(span.start, span.end, span.label, score))
    doc_id = _doc_id(data.get("doc_id"), "data.doc_id", path, number)
    if doc_id is None:
        doc_id = _doc_id(task.get("id"), "id", path, number)
    return SpanDocument(
        text=text,
        spans=spans,
        doc_id=doc_id,
        line=number,
        meta=_meta(data, ("text", "tokens", "doc_id")),
        tokens=_tokens(data.get("tokens"), text, path, number),
    )


def _labelstudio_min_task(
    task: dict[str, Any], path: str | Path, number: int, where: str
) -> SpanDocument | None:
    """A JSON-MIN task: the data fields at the top, and each control's regions under the
    control's name (`label` in the NER template; any name a project gave its `<Labels>`)."""
    text = task["text"]
    names = [
        name
        for name, value in task.items()
        if name == "label" or (name not in _MIN_FIELDS and _is_region_list(value))
    ]
    if not names and "annotation_id" not in task:
        return None  # exported without an annotation
    spans = []
    for name in names:
        regions = task[name]
        if not isinstance(regions, list):
            raise InputFormatError(
                f"{where}: field {name!r} must be an array of regions, got {json_type(regions)}",
                path,
                number,
            )
        for index, value in enumerate(regions):
            if not isinstance(value, dict):
                raise InputFormatError(
                    f"{where}: {name} {index} must be an object with start, end and labels, "
                    f"got {json_type(value)}",
                    path,
                    number,
                )
            spans.append(_labelstudio_region(text, value, path, number, f"{where}: {name} {index}"))
    # The data fields are flattened into the task: `doc_id` is ours, `id` Label Studio's.
    doc_id = _doc_id(task.get("doc_id"), "doc_id", path, number)
    if doc_id is None:
        doc_id = _doc_id(task.get("id"), "id", path, number)
    return SpanDocument(
        text=text,
        spans=spans,
        doc_id=doc_id,
        line=number,
        meta=_meta(task, ("text", "id", "doc_id", *names)),
    )


# JSON-MIN's own fields beside the data and the controls' results.
_MIN_FIELDS = frozenset(
    {"text", "id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time"}
)


def _is_region_list(value: Any) -> bool:
    """A JSON-MIN control's regions over the text: objects with `start`, `end` and `labels`."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(
            isinstance(region, dict) and {"start", "end", "labels"} <= region.keys()
            for region in value
        )
    )


def _labelstudio_region(
    text: str, value: dict[str, Any], path: str | Path, number: int, where: str
) -> CharSpan:
    labels = value.get("labels")
    if not isinstance(labels, list) or len(labels) != 1:
        raise InputFormatError(
            f"{where}: 'value.labels' must hold exactly one label, got "
            f"{excerpt(json.dumps(labels))}",
            path,
            number,
        )
    start, end = _labelstudio_offsets(text, value.get("start"), value.get("end"), value.get("text"))
    span = _char_span(text, start, end, labels[0], path, number, where)
    if "text" in value and not _same_text(value["text"], text[span.start : span.end]):
        raise InputFormatError(
            f"{where}: 'value.text' {value['text']!r} is not the text at "
            f"[{span.start}, {span.end}) {text[span.start : span.end]!r}",
            path,
            number,
        )
    return span


def _labelstudio_offsets(text: str, start: Any, end: Any, shown: Any) -> tuple[Any, Any]:
    """Offsets as Python counts them. Label Studio's front end counted UTF-16 code units in some
    versions (an emoji counts two); when the region's text matches only that reading, use it."""
    if not (_integer(start) and _integer(end) and isinstance(shown, str)):
        return start, end
    if _same_text(text[start:end], shown) or text.isascii():
        return start, end
    units = utf16_to_code_point(text)
    if (
        0 <= start < len(units)
        and 0 <= end < len(units)
        and _same_text(text[units[start] : units[end]], shown)
    ):
        return units[start], units[end]
    return start, end


def _same_text(shown: Any, covered: str) -> bool:
    """A region's `text` is what its offsets cover, but Label Studio saves it with each run of
    white space as one space (label-studio#3078), while its offsets count every character."""
    return shown == covered or (
        isinstance(shown, str) and shown.split() == covered.split() and bool(covered.strip())
    )


def json_array_records(path: str | Path) -> Iterator[tuple[int, Any]]:
    """The elements of a file holding one JSON array, with the line each starts on."""
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise InputFormatError(f"cannot read: {error.strerror}", path) from None
    if raw.startswith(BOM):
        raw = raw[len(BOM) :]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise InputFormatError(
            f"not valid UTF-8: byte 0x{raw[error.start]:02x}", path, line
        ) from None
    decoder = json.JSONDecoder()
    position = _WHITESPACE.match(text, 0).end()
    if not text.startswith("[", position):
        raise InputFormatError("expected a JSON array of Label Studio tasks", path, 1)
    line, counted = 1, 0

    def line_at(offset: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, offset)
        counted = offset
        return line

    position = _WHITESPACE.match(text, position + 1).end()
    if text.startswith("]", position):
        raise InputFormatError("empty file: no tasks (the array is empty)", path, line_at(position))
    while True:
        number = line_at(position)
        start = position
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            raise InputFormatError(
                f"bad JSON at column {error.colno}: {error.msg}", path, error.lineno
            ) from None
        except RecursionError:
            raise InputFormatError("bad JSON: nested too deep to read", path, number) from None
        except ValueError:
            raise InputFormatError(
                f"bad JSON: a number of more than {sys.get_int_max_str_digits()} digits",
                path,
                number,
            ) from None
        if "\\u" in text[start:position]:
            try:
                json.dumps(value, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                raise InputFormatError(
                    "a \\u escape gives a lone UTF-16 surrogate", path, number
                ) from None
        yield number, value
        position = _WHITESPACE.match(text, position).end()
        if text.startswith(",", position):
            position = _WHITESPACE.match(text, position + 1).end()
            continue
        if text.startswith("]", position):
            rest = _WHITESPACE.match(text, position + 1).end()
            if rest != len(text):
                raise InputFormatError("text after the end of the JSON array", path, line_at(rest))
            return
        raise InputFormatError(
            "bad JSON: expected ',' or ']' after a task", path, line_at(position)
        )
