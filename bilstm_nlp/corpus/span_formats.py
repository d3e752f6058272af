"""Character-offset span documents and the JSON shapes annotation tools import and export.

Annotation tools (Prodigy, spaCy's JSONL, doccano, Label Studio) hold raw text with labelled
character spans, not tokens. This module is the small typed value for one such document
(`SpanDocument` holding `CharSpan`s) and the writer of the three tool shapes; the reader that
tokenizes the text and aligns the spans to tokens is `readers/spans.py`, and `convert.py` turns
token corpora into these documents. It imports nothing but `errors`, so `select` and `convert`
share it without pulling in datasets or spaCy.

Shapes (`SPAN_SHAPES`):

- `"spans"`: JSONL, `{"text", "spans": [{"start", "end", "label", ("score")}], ("id"),
  ("score"), ...meta}`: Prodigy's and spaCy's span records.
- `"doccano"`: JSONL, `{"text", "label": [[start, end, label], ...], ("id"), ("score"),
  ("span_scores"), ...meta}`: doccano's sequence-labelling import. Offsets count UTF-16 code
  units, as doccano's browser front end does (an emoji counts two). doccano keeps keys it does
  not know as the example's metadata, so scores travel in `score` and `span_scores` (one per
  span, in the order of `label`), for the annotator to see; read back, they stay metadata.
- `"labelstudio"`: one JSON array of Label Studio tasks for the standard NER template (`<Text
  name="text" value="$text"/>` with `<Labels name="label" toName="text">`): `{"data": {"text",
  ("doc_id"), ...meta}, "annotations": [{"result": [region, ...]}]}`, each region `{"id",
  "from_name": "label", "to_name": "text", "type": "labels", "value": {"start", "end", "text",
  "labels": [label]}}`. When any span has a score or a `model_version` is given, the regions are
  written as a prediction instead (`"predictions": [{"model_version", ("score"), "result":
  [region + "score"]}]`), which Label Studio shows as pre-annotations to correct and sorts by
  `score` in its Data Manager. Label Studio assigns task ids on import, so our document id goes in
  `data.doc_id`.

A document whose tokenization is fixed (`SpanDocument.tokens`, a token corpus converted to spans)
also carries Prodigy's `tokens` list (`{"text", "start", "end", "id", "ws"}`), in every shape (in
`data` for Label Studio), and its spans Prodigy's `token_start`/`token_end` in the `spans` shape,
so readers keep those tokens rather than tokenizing the text again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._atomic import atomic_output

logger = logging.getLogger(__name__)

SPAN_SHAPES = ("spans", "doccano", "labelstudio")
# Label Studio's standard NER labeling config: the control tag and the object tag it labels.
LABELSTUDIO_FROM_NAME = "label"
LABELSTUDIO_TO_NAME = "text"
# Keys each shape writes itself; meta must not use them (they would be overwritten or misread).
RESERVED_KEYS = {
    "spans": frozenset({"text", "spans", "tokens", "id", "score"}),
    "doccano": frozenset({"text", "label", "tokens", "id", "score"}),
    "labelstudio": frozenset({"text", "tokens", "doc_id"}),
}


@dataclass(frozen=True)
class CharSpan:
    """A labelled run of characters `text[start:end]` (end exclusive).

    Attributes:
        start: offset of the first character.
        end: offset after the last character.
        label: the entity type (no scheme prefix).
        score: a model's probability for the span, written as the tool's score when set.
    """

    start: int
    end: int
    label: str
    score: float | None = None


@dataclass
class SpanDocument:
    """One raw text with labelled character spans, as annotation tools hold it.

    Attributes:
        text: the raw text the offsets point into.
        spans: the spans, in any order (writers sort them by offset).
        doc_id: the document's id, written as the shape's id field when set.
        line: 1-based line (JSONL) or record number (a Label Studio array) of the source file.
        score: a document-level score (a prediction's probability, selection uncertainty).
        meta: further fields of the record, carried through to the output record.
        tokens: the text's tokens as `(start, end)` character offsets, when the record fixes its
            tokenization (a corpus of tokens converted to spans); None lets readers tokenize the
            text as `annotate` does. Written as Prodigy's `tokens` list (`{"text", "start",
            "end", "id", "ws"}`) in every shape (in `data` for Label Studio).
    """

    text: str
    spans: list[CharSpan]
    doc_id: str | None = None
    line: int | None = None
    score: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    tokens: list[tuple[int, int]] | None = None


def span_document_record(
    document: SpanDocument, shape: str, model_version: str | None = None
) -> dict[str, Any]:
    """One JSON object for `document` in a tool's shape (see the module docstring).

    Args:
        document: the document; its spans must lie inside the text with `start < end`.
        shape: one of `SPAN_SHAPES`.
        model_version: Label Studio only: write the spans as a prediction of this model version
            (also when no span has a score). Ignored by the JSONL shapes.
    Returns:
        A JSON-able dict: a JSONL line's object, or one task of a Label Studio array.
    Raises:
        ValueError: an unknown shape, a span outside the text or empty, or a meta key the shape
            writes itself.
    """
    if shape not in SPAN_SHAPES:
        raise ValueError(f"unknown span shape {shape!r}: expected one of {', '.join(SPAN_SHAPES)}")
    clash = RESERVED_KEYS[shape] & set(document.meta)
    if clash:
        raise ValueError(f"meta key(s) {sorted(clash)} are written by the {shape} shape itself")
    spans = sorted(document.spans, key=lambda s: (s.start, s.end, s.label))
    for span in spans:
        if not 0 <= span.start < span.end <= len(document.text):
            raise ValueError(
                f"span {span} is empty or outside the text of {len(document.text)} characters"
            )
    token_records = _token_records(document) if document.tokens is not None else None
    if shape == "spans":
        return _spans_record(document, spans, token_records)
    if shape == "doccano":
        return _doccano_record(document, spans, token_records)
    return _labelstudio_task(document, spans, model_version, token_records)


def _token_records(document: SpanDocument) -> list[dict[str, Any]]:
    """Prodigy's token dicts; checks the offsets ascend inside the text."""
    text = document.text
    records = []
    previous_end = 0
    for index, (start, end) in enumerate(document.tokens or []):
        if not previous_end <= start < end <= len(text):
            raise ValueError(f"token {index} ({start}, {end}) is empty, overlaps or is outside")
        records.append(
            {
                "text": text[start:end],
                "start": start,
                "end": end,
                "id": index,
                "ws": end < len(text) and text[end].isspace(),
            }
        )
        previous_end = end
    return records


def _spans_record(
    document: SpanDocument, spans: list[CharSpan], tokens: list[dict[str, Any]] | None
) -> dict[str, Any]:
    record: dict[str, Any] = {"text": document.text}
    if tokens is not None:
        record["tokens"] = tokens
        token_at_start = {t["start"]: t["id"] for t in tokens}
        token_at_end = {t["end"]: t["id"] for t in tokens}
    record["spans"] = []
    for span in spans:
        item: dict[str, Any] = {"start": span.start, "end": span.end}
        if tokens is not None:
            # Prodigy's token indices, the last one inclusive; spans must be on token edges.
            if span.start not in token_at_start or span.end not in token_at_end:
                raise ValueError(f"span {span} does not start and end on token edges")
            item["token_start"] = token_at_start[span.start]
            item["token_end"] = token_at_end[span.end]
        item["label"] = span.label
        if span.score is not None:
            item["score"] = span.score
        record["spans"].append(item)
    if document.doc_id is not None:
        record["id"] = document.doc_id
    if document.score is not None:
        record["score"] = document.score
    record.update(document.meta)
    return record


def _doccano_record(
    document: SpanDocument, spans: list[CharSpan], tokens: list[dict[str, Any]] | None
) -> dict[str, Any]:
    units = code_point_to_utf16(document.text)
    record: dict[str, Any] = {
        "text": document.text,
        "label": [[units[span.start], units[span.end], span.label] for span in spans],
    }
    if tokens is not None:
        record["tokens"] = tokens
    if document.doc_id is not None:
        record["id"] = document.doc_id
    if document.score is not None:
        record["score"] = document.score
    # A scored document (select's output) has its span scores, `[]` when it has no spans; one
    # read from doccano carries its old ones as metadata.
    scored = document.score is not None or any(span.score is not None for span in spans)
    if scored and "span_scores" not in document.meta:
        record["span_scores"] = [span.score for span in spans]
    record.update(document.meta)
    return record


def beyond_utf16_unit(text: str) -> bool:
    """The text holds a character that UTF-16 writes as two code units (an emoji): there, a
    JavaScript tool's offsets and Python's part ways."""
    return not text.isascii() and max(text) > "\uffff"


def code_point_to_utf16(text: str) -> list[int] | range:
    """`[i]`: the UTF-16 code-unit offset of code point i (and of the end)."""
    if not beyond_utf16_unit(text):
        return range(len(text) + 1)
    offsets, unit = [], 0
    for char in text:
        offsets.append(unit)
        unit += 2 if char > "\uffff" else 1
    offsets.append(unit)
    return offsets


def utf16_to_code_point(text: str) -> list[int]:
    """`[i]`: the code-point offset of UTF-16 code unit i (and of the end)."""
    offsets = []
    for index, char in enumerate(text):
        offsets.append(index)
        if char > "\uffff":
            offsets.append(index)
    offsets.append(len(text))
    return offsets


def _labelstudio_task(
    document: SpanDocument,
    spans: list[CharSpan],
    model_version: str | None,
    tokens: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    data: dict[str, Any] = {"text": document.text}
    if tokens is not None:
        data["tokens"] = tokens
    if document.doc_id is not None:
        data["doc_id"] = document.doc_id
    data.update(document.meta)
    predicted = model_version is not None or any(span.score is not None for span in spans)
    result = []
    for index, span in enumerate(spans):
        region: dict[str, Any] = {
            "id": f"span-{index}",
            "from_name": LABELSTUDIO_FROM_NAME,
            "to_name": LABELSTUDIO_TO_NAME,
            "type": "labels",
            "value": {
                "start": span.start,
                "end": span.end,
                "text": document.text[span.start : span.end],
                "labels": [span.label],
            },
        }
        if predicted and span.score is not None:
            region["score"] = span.score
        result.append(region)
    if not predicted:
        return {"data": data, "annotations": [{"result": result}]}
    prediction: dict[str, Any] = {"model_version": model_version or "bilstm-nlp"}
    if document.score is not None:
        prediction["score"] = document.score
    prediction["result"] = result
    return {"data": data, "predictions": [prediction]}


def write_span_documents(
    documents: Iterable[SpanDocument],
    path: str | Path,
    shape: str,
    model_version: str | None = None,
) -> int:
    """Write documents to `path` in a tool's shape, atomically (a temporary file, then a rename).

    JSONL for `"spans"` and `"doccano"` (one record per line, UTF-8, no ASCII escapes); one JSON
    array for `"labelstudio"`, the file Label Studio's import takes. A crash or an error midway
    leaves any previous file at `path` as it was.

    Args:
        documents: the documents, written in order.
        path: the output file.
        shape: one of `SPAN_SHAPES`.
        model_version: Label Studio only: write predictions of this model version.
    Returns:
        The number of documents written: all of them, except that doccano's shape leaves out
        documents without text and spans (its import refuses an empty or white-space text).
    Raises:
        ValueError: as `span_document_record`.
        OutputError: the file cannot be written.
    """
    if shape not in SPAN_SHAPES:
        raise ValueError(f"unknown span shape {shape!r}: expected one of {', '.join(SPAN_SHAPES)}")
    count = textless = 0
    with atomic_output(path) as handle:
        if shape == "labelstudio":
            handle.write("[")
        for document in documents:
            if shape == "doccano" and not document.spans and not document.text.strip():
                textless += 1
                continue
            record = span_document_record(document, shape, model_version)
            line = json.dumps(record, ensure_ascii=False)
            if shape == "labelstudio":
                handle.write(("\n" if count == 0 else ",\n") + line)
            else:
                handle.write(line + "\n")
            count += 1
        if shape == "labelstudio":
            handle.write("\n]\n")
    if textless:
        logger.warning(
            "%s: %d documents without text (empty or white space only) were left out: "
            "doccano's import refuses them, and they hold nothing to annotate",
            path,
            textless,
        )
    return count
