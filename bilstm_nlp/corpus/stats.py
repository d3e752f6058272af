"""Corpus statistics: documents, sentences, tokens, labels, entities and the scheme of a file.

Reads through the same readers as `loading.py` (so counts agree with what training sees) but
straight from the file, without building datasets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..text import schemes
from .formats import detect_format, holds_texts, read_sentences, read_texts
from .loading import detect_source_scheme
from .readers import Sentence, TextExample
from .readers.spans import SPAN_FORMATS, SpanReadStats, check_misaligned_policy


@dataclass(frozen=True)
class CorpusStats:
    """Counts of one corpus file.

    Attributes:
        path: the file.
        input_format: its format.
        documents: number of documents (`-DOCSTART-`, `# newdoc`, JSONL `doc_id`, span record
            ids, DocBin `user_data["id"]`), None when the file does not say.
        sentences: sentences (tagging formats) or examples (text formats; SST-2 without neutral).
        tokens: tokens (CoNLL-U: syntactic words; SST: leaves), None for formats without tokens.
        label_counts: occurrences of each tag or label, most frequent first.
        scheme: the detected tag scheme, None for plain labels and text formats.
        entity_counts: entities (conlleval chunks) per type, most frequent first; empty without a
            scheme.
        span_counts: span files only: records, records without annotation, records without
            tokens, spans, and spans cutting a token (misaligned) with how many were widened or
            dropped (`readers.spans.SpanReadStats`).
        first_misaligned: span files only: the error the first misaligned span gives under
            `misaligned="error"` (file, line, span), or None.
    """

    path: str
    input_format: str
    documents: int | None
    sentences: int
    tokens: int | None
    label_counts: dict[str, int]
    scheme: str | None
    entity_counts: dict[str, int]
    span_counts: dict[str, int] | None = None
    first_misaligned: str | None = None

    @property
    def entities(self) -> int | None:
        """All entities, or None when the labels are no scheme tags."""
        return sum(self.entity_counts.values()) if self.scheme is not None else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of all fields plus `entities`; the span fields only for span files."""
        values = {**asdict(self), "entities": self.entities}
        if self.span_counts is None:
            del values["span_counts"], values["first_misaligned"]
        return values


def corpus_stats(
    path: str | Path,
    input_format: str | None = None,
    *,
    label_column: int | None = None,
    tag_field: str = "upos",
    sst_labels: str = "sst2",
    misaligned: str = "error",
) -> CorpusStats:
    """Document, sentence, token, label and entity counts of one corpus file.

    JSONL files count as tagged sentences when their first record has `tokens`, else as texts;
    DocBins as texts when their first document has categories and no token annotation. Span
    files also count their spans, and the spans that cut a token: under `misaligned="error"`
    those are counted (and left out of the sentence counts, as `drop` would) rather than
    stopping at the first, which `first_misaligned` names.

    Args:
        path: the file.
        input_format: its format (not `"hub"`); default `detect_format(path)`.
        label_column: CoNLL label column (default the last).
        tag_field: `"upos"`/`"xpos"` for CoNLL-U (and DocBins without entities).
        sst_labels: `"sst2"`/`"sst5"` for SST trees.
        misaligned: span files: `"error"`, `"expand"` or `"drop"`.
    Returns:
        The `CorpusStats`.
    Raises:
        ConfigError: an unknown format, `"hub"`, or a bad option.
        InputFormatError: a reader error (file and line).
    """
    fmt = input_format if input_format is not None else detect_format(path)
    if fmt == "hub":
        raise ConfigError("corpus stats reads files; load hub datasets with load_hub_tagging")
    check_misaligned_policy(misaligned)
    if holds_texts(path, fmt):
        return _text_stats(path, read_texts(path, fmt, sst_labels=sst_labels), fmt)
    if fmt not in SPAN_FORMATS:
        return _tagging_stats(path, read_sentences(path, fmt, label_column, tag_field), fmt)
    span_stats = SpanReadStats()
    policy = "drop" if misaligned == "error" else misaligned
    sentences = read_sentences(
        path, fmt, misaligned=policy, span_stats=span_stats, log=misaligned != "error"
    )
    stats = _tagging_stats(path, sentences, fmt)
    counts = span_stats.to_dict()
    if misaligned == "error":
        counts["dropped"] = 0  # counted as misaligned, not dropped: training would stop
    return replace(
        stats,
        span_counts=counts,
        first_misaligned=span_stats.first_misaligned,
    )


def _tagging_stats(path: str | Path, sentences: Iterable[Sentence], fmt: str) -> CorpusStats:
    documents: set[str] = set()
    labels: Counter[str] = Counter()
    tag_sequences: list[list[str]] = []
    count = tokens = 0
    for sentence in sentences:
        count += 1
        tokens += len(sentence.tokens)
        if sentence.doc_id is not None:
            documents.add(sentence.doc_id)
        if sentence.tags is not None:
            labels.update(sentence.tags)
            tag_sequences.append(sentence.tags)
    scheme = detect_source_scheme(tag_sequences, {"file": Path(path)}) if tag_sequences else None
    entities: Counter[str] = Counter()
    if scheme is not None:
        for tags in tag_sequences:
            entities.update(span.label for span in schemes.tags_to_spans(tags))
    return CorpusStats(
        path=str(path),
        input_format=fmt,
        documents=len(documents) if documents else None,
        sentences=count,
        tokens=tokens,
        label_counts=_by_count(labels),
        scheme=scheme,
        entity_counts=_by_count(entities),
    )


def _text_stats(path: str | Path, examples: Iterable[TextExample], fmt: str) -> CorpusStats:
    labels: Counter[str] = Counter()
    count = tokens = 0
    has_tokens = False
    for example in examples:
        count += 1
        if example.tokens is not None:
            has_tokens = True
            tokens += len(example.tokens)
        if example.label is not None:
            labels[example.label] += 1
    return CorpusStats(
        path=str(path),
        input_format=fmt,
        documents=None,
        sentences=count,
        tokens=tokens if has_tokens else None,
        label_counts=_by_count(labels),
        scheme=None,
        entity_counts={},
    )


def _by_count(counter: Counter[str]) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda item: (-item[1], item[0])))
