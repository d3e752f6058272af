"""Span records over raw text, as annotation tools export them: Prodigy/spaCy JSONL, doccano
JSONL, Label Studio JSON. Read into `SpanDocument`s, then into tagged `Sentence`s.

A reader of the first stage. `read_span_documents` parses and checks the records of one file
(the shape is detected from its first record, see `detect_span_shape`); `read_span_sentences`
turns each document into sentences the way `annotate` sees text:

- A record that gives its tokens (Prodigy's `tokens` list, which `convert` writes) is one
  sequence of those tokens: its tokenization and segmentation are the annotator's.
- A record without tokens is tokenized and split into sentences by the same spaCy tokenizer and
  sentencizer `annotate` uses (`text.tokenize.Tokenizer`), so a model trains on the sequences it
  will later tag. A span across a sentence break joins the sentences it touches (no span is cut).

Each span is aligned to the tokens (`text.align`). A span whose edge falls inside a token is an
error naming file, line, the span's offsets and text by default (`misaligned="error"`); `"expand"`
widens it to the tokens it touches and `"drop"` leaves it out; both are counted in `SpanReadStats`
and logged. Spans become tags in IOB2, the scheme of these files; loading converts to the scheme
a model trains in.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ...errors import ConfigError, InputFormatError
from ..span_formats import SPAN_SHAPES, SpanDocument
from . import Sentence
from ._span_alignment import (
    SPAN_SCHEME,
    AlignedDocument,
    SpanReadStats,
    align_span_documents,
    check_misaligned_policy,
    sequence_bounds,
)
from ._span_records import (
    check_overlaps,
    detect_span_shape,
    is_json_array_file,
    json_array_records,
    keys_of,
    parse_doccano_record,
    parse_labelstudio_task,
    parse_spans_record,
)
from .jsonl import json_records, json_type

logger = logging.getLogger(__name__)

SPAN_FORMATS = SPAN_SHAPES
__all__ = [
    "SPAN_FORMATS",
    "SPAN_SCHEME",
    "AlignedDocument",
    "SpanReadStats",
    "align_span_documents",
    "check_misaligned_policy",
    "detect_span_shape",
    "is_json_array_file",
    "log_span_stats",
    "read_span_documents",
    "read_span_sentences",
    "sequence_bounds",
]


def read_span_documents(
    path: str | Path, shape: str | None = None, stats: SpanReadStats | None = None
) -> Iterator[SpanDocument]:
    """The annotated documents of a span file, checked.

    Label Studio files may be its JSON export (one array of tasks) or JSONL with one task per
    line; the other shapes are JSONL. Every record's text must be a string, each span's offsets
    integers with `0 <= start < end <= len(text)` and its label a non-empty string; spans must
    not overlap. Records that hold no gold annotation (see `SpanReadStats.unannotated`) are
    counted and left out. Label Studio offsets that do not match the region's `text` are tried
    as UTF-16 code units (older Label Studio versions count an emoji as two).

    Args:
        path: the file.
        shape: `"spans"`, `"doccano"` or `"labelstudio"`; default detected from the first record.
        stats: filled with the counts, when given.
    Returns:
        An iterator of `SpanDocument`s with `line` set (JSONL: the record's line; a JSON
        array: the line the task starts on).
    Raises:
        InputFormatError: at the first bad record: bad JSON or UTF-8, a record of another shape,
            a missing or mistyped field, a span out of range, empty, or overlapping another; an
            empty file.
    """
    if shape is not None and shape not in SPAN_FORMATS:
        raise ConfigError(f"span shape {shape!r}: expected one of {', '.join(SPAN_FORMATS)}")
    stats = stats if stats is not None else SpanReadStats()
    if is_json_array_file(path):
        records: Iterator[tuple[int, Any]] = json_array_records(path)
        if shape not in (None, "labelstudio"):
            raise InputFormatError(
                f"a JSON array, but {shape} files are JSONL (one record per line)", path, 1
            )
        shape = "labelstudio"
    else:
        records = json_records(path)
    parsers = {"spans": parse_spans_record, "doccano": parse_doccano_record}
    for number, record in records:
        if shape is None:
            shape = detect_span_shape(record)
            if shape is None:
                raise InputFormatError(
                    "not a span record: expected 'spans' (Prodigy/spaCy), a 'label' array "
                    "(doccano) or a 'data' object (Label Studio), got keys "
                    f"{keys_of(record)}",
                    path,
                    number,
                )
        if not isinstance(record, dict):
            raise InputFormatError(
                f"expected a JSON object (a task), got {json_type(record)}", path, number
            )
        stats.records += 1
        if shape == "labelstudio":
            document = parse_labelstudio_task(record, path, number, stats.records)
        else:
            document = parsers[shape](record, path, number)
        if document is None:
            stats.unannotated += 1
            continue
        check_overlaps(document, path)
        stats.spans += len(document.spans)
        yield document
    if stats.records == 0:
        raise InputFormatError("empty file: no records", path)


def read_span_sentences(
    path: str | Path,
    shape: str | None = None,
    *,
    misaligned: str = "error",
    stats: SpanReadStats | None = None,
    log: bool = True,
) -> Iterator[Sentence]:
    """Tagged sentences of a span file: tokens, and IOB2 tags from the aligned spans.

    See the module docstring for tokenization, sentences and alignment.

    Args:
        path: the file.
        shape: the span shape; default detected.
        misaligned: `"error"` (default), `"expand"` or `"drop"`: what a span whose edge falls
            inside a token does.
        stats: filled with the counts, when given.
        log: warn at the end about widened and dropped spans and records left out.
    Returns:
        An iterator of `Sentence`s; `doc_id` is the record's id, `line` its line.
    Raises:
        ConfigError: an unknown policy or shape.
        InputFormatError: as `read_span_documents`; a misaligned span under `"error"` (file,
            line, offsets, text and the token it cuts); spans that overlap once widened; a
            file that gives no sentence (no annotated record holds a token).
    """
    check_misaligned_policy(misaligned)
    stats = stats if stats is not None else SpanReadStats()
    documents = one_annotation_per_text(read_span_documents(path, shape, stats), stats)
    sentences = 0
    for aligned in align_span_documents(documents, path, misaligned, stats):
        for sentence in aligned.sentences():
            sentences += 1
            yield sentence
    if sentences == 0:
        raise InputFormatError(
            f"no sentence to read: of {stats.records} records, {stats.unannotated} hold no gold "
            f"annotation (rejected, ignored, not yet annotated, or predictions only) and "
            f"{stats.empty} no token",
            path,
        )
    if log:
        log_span_stats(path, stats)


def one_annotation_per_text(
    documents: Iterable[SpanDocument], stats: SpanReadStats
) -> Iterator[SpanDocument]:
    """Each text once, for training. Prodigy saves each annotator's answer to a text that
    several annotators saw (`feed_overlap`) as its own record with the text's `_input_hash`:
    answers that agree are read once; where they disagree, the first is kept and the others are
    counted for a warning (Prodigy's `review` recipe resolves them). Records without the hash
    are all read."""
    seen: dict[Any, tuple[int | None, frozenset[tuple[int, int, str]]]] = {}
    for document in documents:
        key = document.meta.get("_input_hash")
        if not isinstance(key, (int, str)):
            yield document
            continue
        spans = frozenset((s.start, s.end, s.label) for s in document.spans)
        first = seen.get(key)
        if first is None:
            seen[key] = (document.line, spans)
            yield document
        elif first[1] == spans:
            stats.repeated += 1
        else:
            stats.conflicting += 1
            if stats.first_conflict is None:
                stats.first_conflict = f"lines {first[0]} and {document.line}"


def log_span_stats(path: str | Path, stats: SpanReadStats) -> None:
    """Warn about spans widened or dropped and records left out, with their counts."""
    if stats.expanded:
        logger.warning(
            "%s: %d of %d spans cut a token and were widened to whole tokens",
            path,
            stats.expanded,
            stats.spans,
        )
    if stats.dropped:
        logger.warning(
            "%s: %d of %d spans cut a token (or covered only white space) and were dropped",
            path,
            stats.dropped,
            stats.spans,
        )
    if stats.empty:
        logger.warning(
            "%s: %d records hold no token (an empty or white-space text) and give no sentence",
            path,
            stats.empty,
        )
    if stats.unannotated:
        logger.warning(
            "%s: %d of %d records hold no gold annotation (rejected, ignored or not yet "
            "annotated) and were left out",
            path,
            stats.unannotated,
            stats.records,
        )
    if stats.repeated:
        logger.info(
            "%s: %d records repeat the annotation of a text read before (the same _input_hash "
            "and spans: annotators who agree) and were read once",
            path,
            stats.repeated,
        )
    if stats.conflicting:
        logger.warning(
            "%s: %d records annotate a text read before with other spans (the same "
            "_input_hash, first at %s): each text's first annotation was kept; resolve the "
            "others with Prodigy's review recipe",
            path,
            stats.conflicting,
            stats.first_conflict,
        )
