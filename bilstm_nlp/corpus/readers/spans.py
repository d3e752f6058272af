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

import json
import logging
import re
import sys
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ...config import MISALIGNED_POLICIES
from ...errors import ConfigError, InputFormatError
from ...text.align import align_char_span
from ...text.schemes import Span, spans_to_tags
from ..span_formats import SPAN_SHAPES, CharSpan, SpanDocument
from . import Sentence
from ._lines import BOM, excerpt
from .jsonl import json_records, json_type

logger = logging.getLogger(__name__)

SPAN_FORMATS = SPAN_SHAPES
SPAN_SCHEME = "IOB2"
_BATCH_DOCUMENTS = 256
_PEEK_BYTES = 4096
_WHITESPACE = re.compile(r"\s*")


@dataclass
class SpanReadStats:
    """What reading a span file found, beyond the sentences.

    Attributes:
        records: records in the file.
        unannotated: records holding no gold annotation, left out: Prodigy's rejected or ignored
            answers, Label Studio tasks without a submitted annotation (predictions are no gold).
        empty: records whose text holds no token (no sentence).
        spans: spans read.
        misaligned: spans with an edge inside a token (or covering only white space).
        expanded: misaligned spans widened to whole tokens (`misaligned="expand"`).
        dropped: misaligned spans left out (`misaligned="drop"`).
        first_misaligned: the error the first misaligned span gives (`file:line: span ...`),
            whatever the policy, for reports.
    """

    records: int = 0
    unannotated: int = 0
    empty: int = 0
    spans: int = 0
    misaligned: int = 0
    expanded: int = 0
    dropped: int = 0
    first_misaligned: str | None = None

    def to_dict(self) -> dict[str, int]:
        """The counts (not `first_misaligned`)."""
        counts = asdict(self)
        del counts["first_misaligned"]
        return counts


def check_misaligned_policy(policy: str) -> None:
    """Raise `ConfigError` unless `policy` is one of `MISALIGNED_POLICIES`."""
    if policy not in MISALIGNED_POLICIES:
        raise ConfigError(
            f"misaligned must be one of {', '.join(MISALIGNED_POLICIES)}, got {policy!r}"
        )


def detect_span_shape(record: Any) -> str | None:
    """The span shape of one parsed record, or None when it is no span record.

    `data` holding an object is a Label Studio task; `spans` a Prodigy/spaCy record; `label` as
    an array (or doccano's newer `entities` array) a doccano record. A `label` string is a
    text-classification record, not a span record.
    """
    if not isinstance(record, dict):
        return None
    if isinstance(record.get("data"), dict):
        return "labelstudio"
    if "spans" in record:
        return "spans"
    if isinstance(record.get("label"), list) or isinstance(record.get("entities"), list):
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
        records: Iterator[tuple[int, Any]] = _json_array_records(path)
        if shape not in (None, "labelstudio"):
            raise InputFormatError(
                f"a JSON array, but {shape} files are JSONL (one record per line)", path, 1
            )
        shape = "labelstudio"
    else:
        records = json_records(path)
    parsers = {"spans": _spans_document, "doccano": _doccano_document}
    for number, record in records:
        if shape is None:
            shape = detect_span_shape(record)
            if shape is None:
                raise InputFormatError(
                    "not a span record: expected 'spans' (Prodigy/spaCy), a 'label' array "
                    "(doccano) or a 'data' object (Label Studio), got keys "
                    f"{_keys(record)}",
                    path,
                    number,
                )
        if not isinstance(record, dict):
            raise InputFormatError(
                f"expected a JSON object (a task), got {json_type(record)}", path, number
            )
        stats.records += 1
        if shape == "labelstudio":
            document = _labelstudio_document(record, path, number, stats.records)
        else:
            document = parsers[shape](record, path, number)
        if document is None:
            stats.unannotated += 1
            continue
        _check_overlaps(document, path)
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
    documents = read_span_documents(path, shape, stats)
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


@dataclass(frozen=True)
class AlignedDocument:
    """A span document with its tokens, its spans on them and its sequences.

    Attributes:
        document: the document as read.
        tokens: `(start, end)` character offsets of its tokens (no white-space tokens).
        spans: its spans as token spans (misaligned ones widened or left out by the policy).
        bounds: the `(start, end)` token ranges of its sequences (sentences), in order.
    """

    document: SpanDocument
    tokens: list[tuple[int, int]]
    spans: list[Span]
    bounds: list[tuple[int, int]]

    def sentences(self) -> Iterator[Sentence]:
        """One `Sentence` per sequence, its tags in IOB2."""
        text = self.document.text
        words = [text[s:e] for s, e in self.tokens]
        for start, end in self.bounds:
            inside = [
                Span(s.start - start, s.end - start, s.label)
                for s in self.spans
                if start <= s.start and s.end <= end
            ]
            tags = spans_to_tags(inside, end - start, SPAN_SCHEME)
            yield Sentence(words[start:end], tags, self.document.doc_id, self.document.line)


def align_span_documents(
    documents: Iterable[SpanDocument],
    path: str | Path,
    misaligned: str = "error",
    stats: SpanReadStats | None = None,
) -> Iterator[AlignedDocument]:
    """Tokenize (where a document gives no tokens), align spans and find the sequences.

    Args:
        documents: documents of `path`, as `read_span_documents` yields them.
        path: their file, for error messages.
        misaligned: the policy for spans that cut a token (see `read_span_sentences`).
        stats: counts of misaligned, widened and dropped spans, and of empty documents.
    Returns:
        One `AlignedDocument` per document holding a token.
    """
    check_misaligned_policy(misaligned)
    aligner = _Aligner(path, misaligned, stats if stats is not None else SpanReadStats())
    batch: list[SpanDocument] = []
    for document in documents:
        batch.append(document)
        if len(batch) >= _BATCH_DOCUMENTS:
            yield from aligner.aligned(batch)
            batch = []
    yield from aligner.aligned(batch)


class _Aligner:
    """Tokenizes documents (when they give no tokens), aligns their spans and cuts sentences."""

    def __init__(self, path: str | Path, misaligned: str, stats: SpanReadStats):
        self.path, self.misaligned, self.stats = path, misaligned, stats
        self._tokenizer = None

    def aligned(self, documents: list[SpanDocument]) -> Iterator[AlignedDocument]:
        raw = [d for d in documents if d.tokens is None]
        tokenized = iter(self._tokenize([d.text for d in raw])) if raw else iter(())
        for document in documents:
            if document.tokens is None:
                sentences = next(tokenized)
                tokens = [(t.start, t.end) for sentence in sentences for t in sentence]
                breaks = _sentence_breaks(sentences)
            else:
                tokens = [(s, e) for s, e in document.tokens if not document.text[s:e].isspace()]
                breaks = []
            if not tokens:
                self.stats.empty += 1
                continue
            spans = self._token_spans(document, tokens)
            yield AlignedDocument(
                document, tokens, spans, sequence_bounds(len(tokens), breaks, spans)
            )

    def _tokenize(self, texts: list[str]) -> list[list[list[Any]]]:
        if self._tokenizer is None:
            from ...text.tokenize import Tokenizer

            self._tokenizer = Tokenizer()
        return list(self._tokenizer.pipe(texts))

    def _token_spans(self, document: SpanDocument, tokens: list[tuple[int, int]]) -> list[Span]:
        starts = [s for s, _ in tokens]
        ends = [e for _, e in tokens]
        found: list[tuple[Span, CharSpan]] = []
        for span in document.spans:
            alignment = align_char_span(starts, ends, span.start, span.end)
            if not alignment.exact:
                self.stats.misaligned += 1
                empty = alignment.start == alignment.end
                error = InputFormatError(
                    _misaligned_message(document, span, tokens, alignment.start, empty),
                    self.path,
                    document.line,
                )
                if self.stats.first_misaligned is None:
                    self.stats.first_misaligned = str(error)
                if self.misaligned == "drop":
                    self.stats.dropped += 1
                    continue
                if self.misaligned == "error" or empty:
                    raise error
                self.stats.expanded += 1
            found.append((Span(alignment.start, alignment.end, span.label), span))
        found.sort(key=lambda pair: pair[0].start)
        for (before, before_char), (after, after_char) in zip(found, found[1:], strict=False):
            if after.start < before.end:
                raise InputFormatError(
                    f"spans {_describe(document.text, before_char)} and "
                    f"{_describe(document.text, after_char)} share a token once widened to "
                    "whole tokens: a token takes one tag",
                    self.path,
                    document.line,
                )
        return [span for span, _ in found]


def _sentence_breaks(sentences: list[list[Any]]) -> list[int]:
    breaks, position = [], 0
    for sentence in sentences[:-1]:
        position += len(sentence)
        breaks.append(position)
    return breaks


def sequence_bounds(
    length: int, breaks: Sequence[int], spans: Iterable[Span]
) -> list[tuple[int, int]]:
    """The `(start, end)` token ranges of the sequences: cut at each sentence break no span
    crosses, so a span across a break joins the sentences it touches.

    Args:
        length: the document's tokens.
        breaks: token indices where a new sentence starts (ascending, inside `1..length-1`).
        spans: the document's token spans.
    """
    crossed = set()
    for span in spans:
        for cut in breaks[bisect_right(breaks, span.start) :]:
            if cut >= span.end:
                break
            crossed.add(cut)
    bounds, start = [], 0
    for cut in breaks:
        if cut not in crossed:
            bounds.append((start, cut))
            start = cut
    bounds.append((start, length))
    return bounds


def _misaligned_message(
    document: SpanDocument,
    span: CharSpan,
    tokens: list[tuple[int, int]],
    first: int,
    empty: bool,
) -> str:
    described = _describe(document.text, span)
    if empty:
        return f"span {described} covers no token, only white space"
    text = document.text
    edges = []
    start, end = tokens[first]
    if start < span.start:
        edges.append(f"starts inside token {text[start:end]!r} [{start}, {end})")
    last = first
    while last + 1 < len(tokens) and tokens[last + 1][0] < span.end:
        last += 1
    start, end = tokens[last]
    if end > span.end:
        edges.append(f"ends inside token {text[start:end]!r} [{start}, {end})")
    return (
        f"span {described} {' and '.join(edges)}: a span must start and end on token edges "
        "(--misaligned expand widens it to whole tokens, --misaligned drop leaves it out)"
    )


def _describe(text: str, span: CharSpan) -> str:
    shown = text[span.start : span.end]
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"[{span.start}, {span.end}) {shown!r} {span.label}"


def _check_overlaps(document: SpanDocument, path: str | Path) -> None:
    ordered = sorted(document.spans, key=lambda s: (s.start, s.end))
    for before, after in zip(ordered, ordered[1:], strict=False):
        if after.start < before.end:
            raise InputFormatError(
                f"spans {_describe(document.text, before)} and {_describe(document.text, after)} "
                "overlap: a token takes one tag, so spans must not overlap",
                path,
                document.line,
            )


# Record shapes


def _keys(record: Any) -> str:
    if not isinstance(record, dict):
        return json_type(record)
    names = list(record)[:8]
    return "[" + ", ".join(repr(n) for n in names) + (", ...]" if len(record) > 8 else "]")


def _text(container: dict[str, Any], path: str | Path, number: int, where: str = "") -> str:
    if "text" not in container:
        raise InputFormatError(
            f"record has no field '{where}text' (keys {_keys(container)})", path, number
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


def _spans_document(record: dict[str, Any], path: str | Path, number: int) -> SpanDocument | None:
    """Prodigy's / spaCy's `{"text", "spans": [{"start", "end", "label"}], ...}`."""
    text = _text(record, path, number)
    answer = record.get("answer")
    if answer is not None and answer != "accept":
        return None  # Prodigy: a rejected or ignored example is no annotation of the text
    if "spans" not in record:
        raise InputFormatError(f"record has no field 'spans' (keys {_keys(record)})", path, number)
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


def _doccano_document(record: dict[str, Any], path: str | Path, number: int) -> SpanDocument:
    """doccano's `{"text", "label": [[start, end, label], ...]}`, or its newer `{"text",
    "entities": [{"start_offset", "end_offset", "label"}, ...]}`."""
    text = _text(record, path, number)
    spans: list[CharSpan] = []
    if "label" in record:
        items = record["label"]
        if not isinstance(items, list):
            raise InputFormatError(
                f"field 'label' must be an array of [start, end, label], got {json_type(items)}",
                path,
                number,
            )
        for index, item in enumerate(items):
            where = f"label {index}"
            if not isinstance(item, list) or len(item) != 3:
                raise InputFormatError(
                    f"{where}: expected [start, end, label], got {excerpt(json.dumps(item))} "
                    "(a doccano text-classification export holds labels only: read it as "
                    "jsonl texts)",
                    path,
                    number,
                )
            spans.append(_char_span(text, *item, path, number, where))
    elif "entities" in record:
        items = record["entities"]
        if not isinstance(items, list):
            raise InputFormatError(
                f"field 'entities' must be an array of objects, got {json_type(items)}",
                path,
                number,
            )
        for index, item in enumerate(items):
            where = f"entity {index}"
            if not isinstance(item, dict):
                raise InputFormatError(
                    f"{where}: expected an object with start_offset, end_offset and label, got "
                    f"{json_type(item)}",
                    path,
                    number,
                )
            spans.append(
                _char_span(
                    text,
                    item.get("start_offset"),
                    item.get("end_offset"),
                    item.get("label"),
                    path,
                    number,
                    where,
                )
            )
    else:
        raise InputFormatError(
            f"record has no field 'label' (doccano's spans), keys {_keys(record)}", path, number
        )
    scores = record.get("span_scores")
    if scores is not None:
        if not isinstance(scores, list) or len(scores) != len(spans):
            raise InputFormatError(
                f"field 'span_scores' must be an array of {len(spans)} numbers (one per label)",
                path,
                number,
            )
        spans = [
            CharSpan(s.start, s.end, s.label, _score(p, "span_scores", path, number))
            for s, p in zip(spans, scores, strict=True)
        ]
    return SpanDocument(
        text=text,
        spans=spans,
        doc_id=_doc_id(record.get("id"), "id", path, number),
        line=number,
        score=_score(record.get("score"), "score", path, number),
        meta=_meta(record, ("text", "label", "entities", "tokens", "id", "score", "span_scores")),
        tokens=_tokens(record.get("tokens"), text, path, number),
    )


def _labelstudio_document(
    task: dict[str, Any], path: str | Path, number: int, task_number: int
) -> SpanDocument | None:
    """A Label Studio task: `data.text` and the regions of its first submitted annotation."""
    where = f"task {task_number}"
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
    submitted = [
        a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled", False)
    ]
    if not submitted:
        return None
    result = submitted[0].get("result", [])
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
        labels = value.get("labels")
        if not isinstance(labels, list) or len(labels) != 1:
            raise InputFormatError(
                f"{where}: result {index}: 'value.labels' must hold exactly one label, got "
                f"{excerpt(json.dumps(labels))}",
                path,
                number,
            )
        start, end = value.get("start"), value.get("end")
        start, end = _labelstudio_offsets(text, start, end, value.get("text"))
        span = _char_span(text, start, end, labels[0], path, number, f"{where}: result {index}")
        if "text" in value and value["text"] != text[span.start : span.end]:
            raise InputFormatError(
                f"{where}: result {index}: 'value.text' {value['text']!r} is not the text at "
                f"[{span.start}, {span.end}) {text[span.start : span.end]!r}",
                path,
                number,
            )
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


def _labelstudio_offsets(text: str, start: Any, end: Any, shown: Any) -> tuple[Any, Any]:
    """Offsets as Python counts them. Label Studio's front end counted UTF-16 code units in some
    versions (an emoji counts two); when the region's text matches only that reading, use it."""
    if not (_integer(start) and _integer(end) and isinstance(shown, str)):
        return start, end
    if text[start:end] == shown or text.isascii():
        return start, end
    units = _utf16_to_code_points(text)
    if start < len(units) and end < len(units) and text[units[start] : units[end]] == shown:
        return units[start], units[end]
    return start, end


def _utf16_to_code_points(text: str) -> list[int]:
    """`[i]`: the code-point offset of UTF-16 code unit i (and of the end)."""
    offsets = []
    for index, char in enumerate(text):
        offsets.append(index)
        if ord(char) > 0xFFFF:
            offsets.append(index)
    offsets.append(len(text))
    return offsets


def _json_array_records(path: str | Path) -> Iterator[tuple[int, Any]]:
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
