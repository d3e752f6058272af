"""Span documents → tokens, token spans and sentences: the span reader's alignment step.

Private to `readers.spans` (and `convert`, through it): tokenizes documents that give no tokens
with `annotate`'s tokenizer and sentencizer, aligns each character span to the tokens
(`text.align`) under the misaligned policy, and cuts the sequences.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ...config import MISALIGNED_POLICIES
from ...errors import ConfigError, InputFormatError
from ...text.align import align_char_span
from ...text.schemes import Span, spans_to_tags
from ..span_formats import CharSpan, SpanDocument
from . import Sentence
from ._span_records import describe_span

SPAN_SCHEME = "IOB2"
_BATCH_DOCUMENTS = 256


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
        repeated: records that repeat a text already read with the same spans (Prodigy's
            `_input_hash`: another annotator's identical answer), read once for training.
        conflicting: records that annotate a text already read with other spans; the first
            annotation of the text is the one trained on.
        first_conflict: where the first conflict is (`lines A and B`), for the warning.
    """

    records: int = 0
    unannotated: int = 0
    empty: int = 0
    spans: int = 0
    misaligned: int = 0
    expanded: int = 0
    dropped: int = 0
    first_misaligned: str | None = None
    repeated: int = 0
    conflicting: int = 0
    first_conflict: str | None = None

    def to_dict(self) -> dict[str, int]:
        """The counts (not `first_misaligned` and `first_conflict`)."""
        counts = asdict(self)
        del counts["first_misaligned"], counts["first_conflict"]
        return counts


def check_misaligned_policy(policy: str) -> None:
    """Raise `ConfigError` unless `policy` is one of `MISALIGNED_POLICIES`."""
    if policy not in MISALIGNED_POLICIES:
        raise ConfigError(
            f"misaligned must be one of {', '.join(MISALIGNED_POLICIES)}, got {policy!r}"
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
                    f"spans {describe_span(document.text, before_char)} and "
                    f"{describe_span(document.text, after_char)} share a token once widened to "
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
    described = describe_span(document.text, span)
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
