"""Decoding for people: model scores → tags, entity spans with probabilities, k-best paths, labels,
and on request how unsure the model is of each sentence (what active learning ranks by).

Sits after the model. Prediction sorts sentences by length so batches hold little padding, caps the
padded tokens per batch (a 10,000-token sentence gets a batch of its own), and gives results back in
input order; an empty sentence gets an empty result, never a dropped one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from .nn.encoding import Batch, TokenEncoder, collate
from .nn.heads import Lattice
from .nn.model import Classifier, Tagger
from .progress import optional_progress
from .text.schemes import Span, spans_to_tags, tags_to_spans


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
    """A classifier's output for one sentence: the label and every label's probability."""

    tokens: list[str]
    label: str
    probs: dict[str, float]


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


def _batches(
    model: Tagger | Classifier,
    token_lists: Sequence[Sequence[str]],
    batch_size: int,
    device: str | torch.device,
    encoder: TokenEncoder | None,
) -> Iterator[tuple[list[int], Batch]]:
    if encoder is None:
        encoder = TokenEncoder(model.vocab, model.config.max_word_chars)
    for indices in length_batches([len(t) for t in token_lists], batch_size):
        encoded = [encoder(token_lists[i]) for i in indices]
        yield indices, collate(encoded).to(device)


def tag_sentences(
    model: Tagger,
    token_lists: Sequence[Sequence[str]],
    *,
    batch_size: int = 256,
    k: int = 0,
    confidence: bool = True,
    device: str | torch.device = "cpu",
    show_progress: bool = False,
    encoder: TokenEncoder | None = None,
    uncertainty: bool = False,
) -> list[TaggedSentence]:
    """Tag pre-split sentences.

    Args:
        model: a trained tagger.
        token_lists: sentences as lists of tokens; empty ones are allowed.
        batch_size: sentences per batch.
        k: also return the k best tag sequences per sentence (0: none).
        confidence: compute tag marginals and entity probabilities (costs a forward-backward pass).
        device: where to run.
        show_progress: a rich progress bar on stderr.
        encoder: the model's token encoder, kept by the caller so that what it has encoded
            lasts across calls (an `Annotator` keeps one); default: a new one for this call.
        uncertainty: also each sentence's `SentenceUncertainty` (from the same forward-backward
            pass as the confidences; an empty sentence gets 0, 0 and no tokens).
    Returns:
        One `TaggedSentence` per input, in input order.
    """
    model.eval()
    results: list[TaggedSentence | None] = [None] * len(token_lists)
    labels = model.vocab.labels.items
    outside = labels.index("O") if model.scheme and "O" in labels else None
    confidence = confidence or uncertainty
    with (
        torch.inference_mode(),
        optional_progress(show_progress, "Tagging", len(token_lists)) as advance,
    ):
        for indices, batch in _batches(model, token_lists, batch_size, device, encoder):
            emissions = model(batch)
            mask = batch.mask
            tag_ids = model.head.decode(emissions, mask)
            # One forward-backward pass serves the marginals and the entity probabilities.
            lattice = model.head.lattice(emissions, mask) if confidence else None
            marginals = model.head.marginals(emissions, mask, lattice) if confidence else None
            tag_probs = (
                marginals.gather(2, tag_ids.unsqueeze(2)).squeeze(2)
                if marginals is not None
                else torch.ones_like(tag_ids, dtype=emissions.dtype)
            )
            uncertainty_rows = (
                _uncertainty_rows(model, emissions, mask, tag_ids, lattice, marginals, outside)
                if uncertainty
                else None
            )
            tag_rows, prob_rows = tag_ids.tolist(), tag_probs.tolist()
            kbest_rows = _kbest_rows(model, emissions, mask, k) if k > 0 else None
            tag_lists = [
                [labels[t] for t in row[: len(token_lists[i])]]
                for row, i in zip(tag_rows, indices, strict=True)
            ]
            span_rows = [tags_to_spans(tags) if model.scheme else [] for tags in tag_lists]
            span_probs = (
                _span_probabilities(model, emissions, mask, tag_ids, span_rows, lattice)
                if confidence
                else None
            )
            for row, index in enumerate(indices):
                length = len(token_lists[index])
                tags = tag_lists[row]
                spans = span_rows[row]
                if span_probs is not None:
                    spans = [
                        Span(s.start, s.end, s.label, p)
                        for s, p in zip(spans, span_probs[row], strict=True)
                    ]
                kbest = []
                # An empty sentence ran as one padding token: it has no paths of its own.
                if kbest_rows is not None and length:
                    kbest = [
                        (_present([labels[t] for t in path[:length]], model), prob)
                        for path, prob in kbest_rows[row]
                    ]
                results[index] = TaggedSentence(
                    tokens=list(token_lists[index]),
                    tags=_present(tags, model, span_rows[row]),
                    tag_probs=prob_rows[row][:length],
                    spans=spans,
                    kbest=kbest,
                    uncertainty=(
                        _sentence_uncertainty(uncertainty_rows, row, length)
                        if uncertainty_rows is not None
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

    Arguments as `tag_sentences`'s.
    """
    model.eval()
    labels = model.vocab.labels.items
    results: list[ClassifiedSentence | None] = [None] * len(token_lists)
    with (
        torch.inference_mode(),
        optional_progress(show_progress, "Classifying", len(token_lists)) as advance,
    ):
        for indices, batch in _batches(model, token_lists, batch_size, device, encoder):
            probs = model(batch).exp().tolist()
            for row, index in enumerate(indices):
                best = max(range(len(labels)), key=probs[row].__getitem__)
                results[index] = ClassifiedSentence(
                    tokens=list(token_lists[index]),
                    label=labels[best],
                    probs=dict(zip(labels, probs[row], strict=True)),
                )
            advance(len(indices))
    return results  # type: ignore[return-value]


def _present(tags: list[str], model: Tagger, spans: list[Span] | None = None) -> list[str]:
    """Tags in the scheme of the training file, whatever scheme the model was trained in.

    `spans`: `tags_to_spans(tags)` where the caller has it already."""
    if model.scheme and model.output_scheme and model.output_scheme != model.scheme:
        if spans is None:
            spans = tags_to_spans(tags)
        return spans_to_tags(spans, len(tags), model.output_scheme)
    return tags


def _kbest_rows(model: Tagger, emissions, mask, k: int) -> list[list[tuple[list[int], float]]]:
    paths, log_probs = model.head.kbest(emissions, mask, k)
    rows = []
    for sentence_paths, sentence_scores in zip(
        paths.tolist(), log_probs.exp().tolist(), strict=True
    ):
        rows.append(
            [(p, s) for p, s in zip(sentence_paths, sentence_scores, strict=True) if s > 0.0]
        )
    return rows


def _uncertainty_rows(
    model: Tagger, emissions, mask, tag_ids, lattice, marginals, outside: int | None
) -> tuple[list[float], list[float], list[list[float]] | None]:
    path_log_probs = model.head.path_log_probs(emissions, mask, tag_ids, lattice).tolist()
    entropies = model.head.entropy(emissions, mask, lattice).tolist()
    if not model.scheme:
        return path_log_probs, entropies, None
    if outside is None:
        return path_log_probs, entropies, torch.zeros_like(tag_ids, dtype=torch.float).tolist()
    return path_log_probs, entropies, marginals[:, :, outside].tolist()


def _sentence_uncertainty(rows, row: int, length: int) -> SentenceUncertainty:
    path_log_probs, entropies, outside_rows = rows
    # An empty sentence ran as one padding token: it has no tags to be unsure of.
    if not length:
        return SentenceUncertainty(0.0, 0.0, [])
    outside = outside_rows[row][:length] if outside_rows is not None else []
    return SentenceUncertainty(path_log_probs[row], entropies[row], outside)


def _span_probabilities(
    model: Tagger, emissions, mask, tag_ids, span_rows, lattice: Lattice | None
) -> list[list[float]]:
    flat = [(row, span) for row, spans in enumerate(span_rows) for span in spans]
    if not flat:
        return [[] for _ in span_rows]
    device = emissions.device
    batch_index = torch.tensor([row for row, _ in flat], device=device)
    start = torch.tensor([span.start for _, span in flat], device=device)
    end = torch.tensor([span.end for _, span in flat], device=device)
    spans = (batch_index, start, end)
    probs = model.head.entity_log_probs(emissions, mask, tag_ids, spans, lattice).exp().tolist()
    per_row: list[list[float]] = [[] for _ in span_rows]
    for (row, _), prob in zip(flat, probs, strict=True):
        per_row[row].append(prob)
    return per_row
