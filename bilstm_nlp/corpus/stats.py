"""Corpus statistics: documents, sentences, tokens, labels, entities and the scheme of a file.

Reads through the same readers as `loading.py` (so counts agree with what training sees) but
straight from the file, without building datasets.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..text import schemes
from .formats import TAGGING_FORMATS, detect_format, first_content_line, read_sentences, read_texts
from .loading import detect_source_scheme
from .readers import Sentence, TextExample


@dataclass(frozen=True)
class CorpusStats:
    """Counts of one corpus file.

    Attributes:
        path: the file.
        input_format: its format.
        documents: number of documents (`-DOCSTART-`, `# newdoc`, JSONL `doc_id`), None when the
            file does not say.
        sentences: sentences (tagging formats) or examples (text formats; SST-2 without neutral).
        tokens: tokens (CoNLL-U: syntactic words; SST: leaves), None for formats without tokens.
        label_counts: occurrences of each tag or label, most frequent first.
        scheme: the detected tag scheme, None for plain labels and text formats.
        entity_counts: entities (conlleval chunks) per type, most frequent first; empty without a
            scheme.
    """

    path: str
    input_format: str
    documents: int | None
    sentences: int
    tokens: int | None
    label_counts: dict[str, int]
    scheme: str | None
    entity_counts: dict[str, int]

    @property
    def entities(self) -> int | None:
        """All entities, or None when the labels are no scheme tags."""
        return sum(self.entity_counts.values()) if self.scheme is not None else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of all fields plus `entities`."""
        return {**asdict(self), "entities": self.entities}


def corpus_stats(
    path: str | Path,
    input_format: str | None = None,
    *,
    label_column: int | None = None,
    tag_field: str = "upos",
    sst_labels: str = "sst2",
) -> CorpusStats:
    """Document, sentence, token, label and entity counts of one corpus file.

    JSONL files count as tagged sentences when their first record has `tokens`, else as texts.

    Args:
        path: the file.
        input_format: its format (not `"hub"`); default `detect_format(path)`.
        label_column: CoNLL label column (default the last).
        tag_field: `"upos"`/`"xpos"` for CoNLL-U.
        sst_labels: `"sst2"`/`"sst5"` for SST trees.
    Returns:
        The `CorpusStats`.
    Raises:
        ConfigError: an unknown format, `"hub"`, or a bad option.
        InputFormatError: a reader error (file and line).
    """
    fmt = input_format if input_format is not None else detect_format(path)
    if fmt == "hub":
        raise ConfigError("corpus stats reads files; load hub datasets with load_hub_tagging")
    if fmt in TAGGING_FORMATS and (fmt != "jsonl" or _jsonl_has_tokens(path)):
        return _tagging_stats(path, read_sentences(path, fmt, label_column, tag_field), fmt)
    return _text_stats(path, read_texts(path, fmt, sst_labels=sst_labels), fmt)


def _jsonl_has_tokens(path: str | Path) -> bool:
    line = first_content_line(Path(path))
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # JSONDecodeError, too many digits, too deep
        return True  # the tagged reader reports the bad line
    return isinstance(record, dict) and "tokens" in record


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
