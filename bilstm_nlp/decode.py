"""Decoding for people: model scores → tags, entity spans with probabilities, k-best paths, labels,
and on request how unsure the model is of each sentence (what active learning ranks by).

Sits after the model. Prediction sorts sentences by length so batches hold little padding, caps the
padded tokens per batch (a 10,000-token sentence gets a batch of its own), and gives results back in
input order; an empty sentence gets an empty result, never a dropped one.

This module needs no torch: a backend scores each batch into a `ScoredBatch` (torch models in
`decode_torch.py`, imported only for them; ONNX models in `bilstm_nlp/runtime`), and everything
from there to spans and k-best lists is plain Python.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import threading
import weakref
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError
from .nn.ids import TokenEncoder
from .progress import optional_progress
from .scored import ScoredBatch
from .text.schemes import (
    BatchSpanReader,
    SchemeWriting,
    Span,
    normalize_scheme,
    normalize_written_scheme,
    spelt_bilou,
    tags_to_spans,
    written_tags,
)

if TYPE_CHECKING:
    import torch

    from .nn.model import Classifier, Tagger


@dataclass(frozen=True)
class SentenceUncertainty:
    """How unsure a tagger is of one sentence; exact under a CRF (see `tag_sentences`).

    Attributes:
        path_log_prob: log-probability of the predicted tag sequence as a whole (CRF: its score
            minus log Z; softmax: the sum of its token log-probabilities); at most 0.
        entropy: entropy in nats of the distribution over whole tag sequences (CRF: exact, from
            token and pairwise marginals; softmax: the sum of token entropies); at least 0.
        outside_probs: per token, the probability that no entity covers it (the marginal of
            the `O` tag; 0 where the tag set has no `O`); empty for models without a scheme.
    """

    path_log_prob: float
    entropy: float
    outside_probs: list[float]


@dataclass
class TaggedSentence:
    """A tagger's output for one sentence.

    Attributes:
        tokens: the input tokens.
        tags: one tag per token, in the model's output scheme (the scheme of its training file).
        tag_probs: probability of each predicted tag (CRF marginal or softmax probability).
        spans: entities or chunks with their probability (empty for plain labels such as POS).
        kbest: the k best tag sequences with their probabilities, best first (when asked for).
        uncertainty: how unsure the model is of the sentence (when asked for).
    """

    tokens: list[str]
    tags: list[str]
    tag_probs: list[float]
    spans: list[Span]
    kbest: list[tuple[list[str], float]] = field(default_factory=list)
    uncertainty: SentenceUncertainty | None = None


@dataclass
class ClassifiedSentence:
    """A classifier's output for one sentence: the label and every label's probability; an empty
    sentence has no label (None) and no probabilities (`{}`), as an empty text in `annotate`."""

    tokens: list[str]
    label: str | None
    probs: dict[str, float]


def is_onnx(model: Any) -> bool:
    """True for a model run by onnxruntime (`bilstm_nlp.runtime.backend`), False for a torch one."""
    return getattr(model, "backend", "torch") == "onnx"


_collector_lock = threading.Lock()
_collector_pauses = 0
_collector_was_enabled = False


@contextlib.contextmanager
def garbage_collection_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: a call makes tens of thousands of small objects that
    live until it returns, and each full collection they trigger rescans everything alive in the
    process (the caller's data too), which cost a quarter of annotation time. Reference counting
    still frees them; cycles wait for the end. Nested and concurrent pauses share one: the state
    the first one found comes back when the last one ends."""
    global _collector_pauses, _collector_was_enabled
    with _collector_lock:
        if _collector_pauses == 0:
            _collector_was_enabled = gc.isenabled()
            gc.disable()
        _collector_pauses += 1
    try:
        yield
    finally:
        with _collector_lock:
            _collector_pauses -= 1
            if _collector_pauses == 0 and _collector_was_enabled:
                gc.enable()


def length_batches(
    lengths: Sequence[int], batch_size: int, max_batch_tokens: int = 50_000
) -> Iterator[list[int]]:
    """Indices sorted by length, cut into batches of at most `batch_size` sentences and at most
    `max_batch_tokens` padded tokens (a single longer sentence still gets its own batch)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    current: list[int] = []
    for index in order:
        longest = max(lengths[index], 1)  # sorted, so this is the padded length
        if current and (
            len(current) >= batch_size or longest * (len(current) + 1) > max_batch_tokens
        ):
            yield current
            current = []
        current.append(index)
    if current:
        yield current


# id(model) -> (a weak reference to the model, its encoder); models need not be hashable (an
# ONNX model is a dataclass), and the entry goes when the model does.
_kept_encoders: dict[int, tuple[weakref.ref, TokenEncoder]] = {}
_kept_encoders_lock = threading.Lock()


def _encoder_for(model: Any, encoder: TokenEncoder | None) -> TokenEncoder:
    """The caller's encoder, else the one kept for the model as long as it lives: calls made one
    after another (a loop over a corpus, an evaluation each epoch) meet the same frequent words,
    and a remembered word costs a lookup instead of lower-casing and classifying its casing."""
    if encoder is not None:
        return encoder
    vocab, max_word_chars = model.vocab, model.config.max_word_chars
    key = id(model)
    with _kept_encoders_lock:
        reference, kept = _kept_encoders.get(key, (None, None))
        if (
            reference is not None
            and reference() is model
            and kept.vocab is vocab
            and kept.max_word_chars == max_word_chars
        ):
            return kept
        kept = TokenEncoder(vocab, max_word_chars)
        try:
            reference = weakref.ref(model, lambda _, key=key: _kept_encoders.pop(key, None))
        except TypeError:  # not weakly referable: nothing can tell when it goes
            return kept
        _kept_encoders[key] = (reference, kept)
        return kept


def _batches(
    token_lists: Sequence[Sequence[str]], batch_size: int
) -> Iterator[tuple[list[int], list[Sequence[str]]]]:
    """`length_batches` of the sentences: each batch's indices and token lists."""
    for indices in length_batches([len(t) for t in token_lists], batch_size):
        yield indices, [token_lists[i] for i in indices]


# Whole documents are tagged in groups of about this many batches: what is held between the
# network's pass and the memory's (ids and emissions) stays bounded on any input.
DOCUMENT_GROUP_BATCHES = 16


def _document_batches(
    model: Any,
    encoder: TokenEncoder,
    token_lists: Sequence[Sequence[str]],
    documents: Sequence[Hashable],
    batch_size: int,
    device: Any,
) -> Iterator[tuple[list[int], list[Sequence[str]], Any]]:
    """`_batches` of the sentences with their emissions made beforehand, for a model with
    document memory: groups of whole documents, each run through the network in length-sorted
    batches, then the memory taken by document over the group."""
    members: dict[Hashable, list[int]] = {}
    for index, document in enumerate(documents):
        members.setdefault(document, []).append(index)
    group: list[int] = []
    limit = DOCUMENT_GROUP_BATCHES * batch_size
    for document_indices in [*members.values(), None]:
        if document_indices is not None and (
            not group or len(group) + len(document_indices) <= limit
        ):
            group.extend(document_indices)
            continue
        # The network runs first on every batch of the group, then the memory by document.
        sentence_batches = [
            ([group[i] for i in indices], batch)
            for indices, batch in _batches([token_lists[i] for i in group], batch_size)
        ]
        if is_onnx(model):
            prepared = model.document_emissions(encoder, sentence_batches, documents)
        else:
            from .decode_torch import document_emissions

            prepared = document_emissions(model, encoder, sentence_batches, documents, device)
        for (indices, batch), ready in zip(sentence_batches, prepared, strict=True):
            yield indices, batch, ready
        group = list(document_indices or [])


def reads_documents(model: Any) -> bool:
    """Whether a tagger reads a sentence's document (`ModelConfig.doc_memory`): `tag_sentences`
    then wants `documents`."""
    config = getattr(model, "config", None)
    return bool(getattr(config, "doc_memory", False))


def tag_sentences(
    model: Tagger,
    token_lists: Sequence[Sequence[str]],
    *,
    documents: Sequence[Hashable] | None = None,
    batch_size: int = 256,
    k: int = 0,
    confidence: bool = True,
    device: str | torch.device = "cpu",
    show_progress: bool = False,
    encoder: TokenEncoder | None = None,
    uncertainty: bool = False,
    low_latency: bool = False,
    scheme: str | None = None,
) -> list[TaggedSentence]:
    """Tag pre-split sentences.

    Args:
        model: a trained tagger, or an ONNX one (`bilstm_nlp.runtime.backend.OnnxTagger`, which
            scores a batch with its `score_batch(arrays, k, confidence)`).
        token_lists: sentences as lists of tokens; empty ones are allowed.
        documents: the document of each sentence (equal keys, one document, in any order), for a
            model with document memory (`reads_documents`), which reads every occurrence of a
            word in its document; ignored by other models. None: each sentence stands alone.
        batch_size: sentences per batch.
        k: also return the k best tag sequences per sentence (0: none).
        confidence: compute tag marginals and entity probabilities (costs a forward-backward pass).
        device: where to run (torch models).
        show_progress: a rich progress bar on stderr.
        encoder: the model's token encoder (an `Annotator` keeps its own); default: the one
            kept for the model while it lives, so that what it has encoded lasts across calls.
        uncertainty: also each sentence's `SentenceUncertainty` (from the same forward-backward
            pass as the confidences; an empty sentence gets 0, 0 and no tokens); torch models.
        low_latency: a torch CRF tagger's short batches (`decode_torch.NUMPY_CRF_MAX_SENTENCES`
            sentences or fewer) run the CRF in numpy, and a batch of one sentence the network
            too, as does a document-memory tagger's call of a few short sentences
            (`decode_torch.low_latency_document_emissions`): several times faster on one
            sentence. The tags are the torch path's; the
            probabilities equal its within 1e-5 (float32 sums in another order), so they
            depend on the batching in their last digits. Off, every batch runs in torch.
        scheme: the scheme to write tags in (`IOB1`, `IOB2`, `BIOES`, `BILOU`; aliases as
            `normalize_scheme`), and to give their probabilities for; None: the training
            file's. K-best paths are written in it too; spans do not depend on it.
    Returns:
        One `TaggedSentence` per input, in input order.
    Raises:
        ConfigError: a classifier; `batch_size` below 1 or `k` below 0; `uncertainty` with an
            ONNX model (its runtime does not compute it yet); `scheme` for a model whose labels
            have no scheme (POS), or no known scheme.
    """
    if model.meta.is_classifier:
        raise ConfigError("tag_sentences needs a tagger; this is a classifier: classify_sentences")
    _check_batching(batch_size, k)
    if documents is not None and len(documents) != len(token_lists):
        raise ValueError(f"{len(documents)} documents given for {len(token_lists)} sentences")
    predicting: contextlib.AbstractContextManager
    encoder = _encoder_for(model, encoder)
    if not is_onnx(model):
        from .decode_torch import tagger_scoring

        predicting, score = tagger_scoring(
            model, encoder, k, confidence, uncertainty, device, low_latency
        )
    else:
        if uncertainty:
            raise ConfigError(
                "sentence uncertainty (select) needs a torch model folder; an ONNX export "
                "does not compute it yet"
            )
        predicting = contextlib.nullcontext()

        def score(batch: list[Sequence[str]], prepared: tuple | None = None) -> ScoredBatch:
            if prepared is not None:
                return model.score_emissions(*prepared, k, confidence)
            return model.score_batch(encoder.encode_batch(batch), k, confidence)

    results: list[TaggedSentence | None] = [None] * len(token_lists)
    labels = model.vocab.labels.items
    reader = _span_reader(tuple(labels)) if model.scheme else None
    written_scheme = _written_scheme(model, scheme)
    writing = (
        _scheme_writing(tuple(labels), normalize_scheme(written_scheme))
        if written_scheme is not None
        else None
    )
    bilou = written_scheme == "BILOU"
    with (
        garbage_collection_paused(),
        predicting,
        optional_progress(show_progress, "Tagging", len(token_lists)) as advance,
    ):
        batches: Iterator = (
            (indices, batch, None) for indices, batch in _batches(token_lists, batch_size)
        )
        # Documents of one sentence each are sentences alone: the ordinary path (and its
        # numpy network for a single sentence, as the spaCy component sends it) does.
        if (
            documents is not None
            and reads_documents(model)
            and len(set(documents)) < len(documents)
        ):
            few = None
            if low_latency and not uncertainty and not is_onnx(model):
                from .decode_torch import low_latency_document_emissions

                few = low_latency_document_emissions(model, encoder, token_lists, documents, device)
            if few is not None:
                # A few short sentences (a spaCy call on a paragraph): one at a time in numpy.
                batches = iter([([i], [token_lists[i]], e) for i, e in enumerate(few)])
            else:
                batches = _document_batches(
                    model, encoder, token_lists, documents, batch_size, device
                )
        for indices, batch, ready in batches:
            scored = score(batch) if ready is None else score(batch, ready)
            lengths = [len(tokens) for tokens in batch]
            if reader is not None:
                span_rows = reader.spans(
                    np.asarray(scored.tag_ids, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
                )
            else:
                span_rows = [[] for _ in batch]
            tag_probs = scored.tag_probs
            if writing is not None:
                shown, tag_probs = _written(writing, scored, lengths)
            else:
                shown = [
                    list(map(labels.__getitem__, row[:length]))
                    for row, length in zip(scored.tag_ids, lengths, strict=True)
                ]
            span_probs = scored.span_probabilities(span_rows) if scored.span_probabilities else None
            for row, index in enumerate(indices):
                length = lengths[row]
                spans = span_rows[row]
                if span_probs is not None:
                    spans = [
                        Span(s.start, s.end, s.label, p)
                        for s, p in zip(spans, span_probs[row], strict=True)
                    ]
                kbest = []
                # An empty sentence ran as one padding token: it has no paths of its own.
                if scored.kbest is not None and length:
                    kbest = [
                        (_present([labels[t] for t in path[:length]], written_scheme), prob)
                        for path, prob in scored.kbest[row]
                    ]
                results[index] = TaggedSentence(
                    tokens=list(token_lists[index]),
                    tags=spelt_bilou(shown[row]) if bilou else shown[row],
                    tag_probs=tag_probs[row][:length],
                    spans=spans,
                    kbest=kbest,
                    uncertainty=(
                        _sentence_uncertainty(scored.uncertainty, row, length)
                        if scored.uncertainty is not None
                        else None
                    ),
                )
            advance(len(indices))
    return results  # type: ignore[return-value]


def classify_sentences(
    model: Classifier,
    token_lists: Sequence[Sequence[str]],
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    show_progress: bool = False,
    encoder: TokenEncoder | None = None,
) -> list[ClassifiedSentence]:
    """Classify pre-split sentences: the label and every label's probability, in input order.

    Arguments as `tag_sentences`'s; an ONNX classifier scores a batch with its
    `class_probs(arrays)`.

    Raises:
        ConfigError: a tagger; `batch_size` below 1.
    """
    if not model.meta.is_classifier:
        raise ConfigError("classify_sentences needs a classifier; this is a tagger: tag_sentences")
    _check_batching(batch_size, 0)
    predicting: contextlib.AbstractContextManager
    encoder = _encoder_for(model, encoder)
    if not is_onnx(model):
        from .decode_torch import classifier_scoring

        predicting, class_probs = classifier_scoring(model, encoder, device)
    else:
        predicting = contextlib.nullcontext()

        def class_probs(batch: list[Sequence[str]]) -> list[list[float]]:
            return model.class_probs(encoder.encode_batch(batch))

    labels = model.vocab.labels.items
    results: list[ClassifiedSentence | None] = [None] * len(token_lists)
    with (
        garbage_collection_paused(),
        predicting,
        optional_progress(show_progress, "Classifying", len(token_lists)) as advance,
    ):
        for indices, batch in _batches(token_lists, batch_size):
            probs = class_probs(batch)
            for row, index in enumerate(indices):
                if not token_lists[index]:
                    results[index] = ClassifiedSentence(tokens=[], label=None, probs={})
                    continue
                best = max(range(len(labels)), key=probs[row].__getitem__)
                results[index] = ClassifiedSentence(
                    tokens=list(token_lists[index]),
                    label=labels[best],
                    probs=dict(zip(labels, probs[row], strict=True)),
                )
            advance(len(indices))
    return results  # type: ignore[return-value]


def _check_batching(batch_size: int, k: int) -> None:
    # bool is an int: True would run as batches of one.
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer of at least 1, got {batch_size!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ConfigError(f"k must be an integer of at least 0, got {k!r}")


def check_scheme(model: Any, scheme: str | None) -> None:
    """Refuse a scheme to write tags in that the model cannot be written in.

    Raises:
        ConfigError: no known scheme, or a model without one: a classifier, or a tagger of
            plain labels (POS).
    """
    if scheme is None:
        return
    normalize_written_scheme(scheme)
    if model.meta.is_classifier:
        raise ConfigError(f"--scheme {scheme}: a classifier's output has no token tags")
    if not model.scheme:
        raise ConfigError(
            f"--scheme {scheme}: this model's labels have no tag scheme (they are not "
            "O/B-/I- tags), so there is nothing to respell"
        )


def _written_scheme(model: Any, scheme: str | None) -> str | None:
    """The scheme tags are written in when it is not the model's own: `scheme` when given,
    else the training file's (a model may be trained in BIOES on an IOB1 file); None when they
    are written as the model gives them.

    Raises:
        ConfigError: see `check_scheme`.
    """
    if scheme is not None:
        check_scheme(model, scheme)
        written = normalize_written_scheme(scheme)
    elif model.scheme and model.output_scheme:
        written = model.output_scheme
    else:
        return None
    return None if written == model.scheme else written


def _present(tags: list[str], written_scheme: str | None) -> list[str]:
    """Tags in `written_scheme` (`_written_scheme`'s), or as they are."""
    if written_scheme is None:
        return tags
    return written_tags(tags_to_spans(tags), len(tags), written_scheme)


@functools.lru_cache(maxsize=16)
def _scheme_writing(labels: tuple[str, ...], scheme: str) -> SchemeWriting:
    return SchemeWriting(labels, scheme)


def _written(
    writing: SchemeWriting, scored: ScoredBatch, lengths: list[int]
) -> tuple[list[list[str]], list[list[float]]]:
    """A batch's tags written in another scheme, and the probability of each written tag (exact:
    `SchemeWriting.probabilities`, from the backend's neighbouring-pair sums; an `O` keeps the
    model's, as it is the same event)."""
    lengths_array = np.asarray(lengths, dtype=np.int64)
    written_ids = writing.written_ids(np.asarray(scored.tag_ids, dtype=np.int64), lengths_array)
    tags = [
        list(map(writing.tags.__getitem__, row[:length]))
        for row, length in zip(written_ids.tolist(), lengths, strict=True)
    ]
    if scored.neighbour_classes is None:
        return tags, scored.tag_probs
    rows, positions = np.nonzero(written_ids)
    if not len(rows):
        return tags, scored.tag_probs
    starting, ending = scored.neighbour_classes(
        rows,
        positions,
        writing.start_kinds,
        writing.end_kinds if writing.needs_ends else None,
    )
    probs = writing.probabilities(starting, ending, written_ids[rows, positions])
    # Only the entity tokens change: set them in the backend's rows (made for this batch).
    tag_probs = scored.tag_probs
    for row, position, prob in zip(rows.tolist(), positions.tolist(), probs.tolist(), strict=True):
        tag_probs[row][position] = prob
    return tags, tag_probs


@functools.lru_cache(maxsize=16)
def _span_reader(labels: tuple[str, ...]) -> BatchSpanReader:
    return BatchSpanReader(labels)


def _sentence_uncertainty(rows, row: int, length: int) -> SentenceUncertainty:
    path_log_probs, entropies, outside_rows = rows
    # An empty sentence ran as one padding token: it has no tags to be unsure of.
    if not length:
        return SentenceUncertainty(0.0, 0.0, [])
    outside = outside_rows[row][:length] if outside_rows is not None else []
    return SentenceUncertainty(path_log_probs[row], entropies[row], outside)
