"""The torch half of decoding: a torch tagger's batch → `scored.ScoredBatch`, a classifier's →
class probabilities.

Apart from `decode.py` so that decoding (and with it tagging with an ONNX model) imports without
torch; `decode.tag_sentences` / `classify_sentences` import this module only for a torch model.
One forward pass and, when asked, one forward-backward pass per batch, as the heads give them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import Tensor

from .nn.encoding import Batch, collate
from .nn.ids import EncodedSentence
from .nn.model import Classifier, Tagger
from .scored import ScoredBatch, flatten_spans, kbest_rows, spans_per_row
from .text.schemes import Span


def tagger_scoring(
    model: Tagger, k: int, confidence: bool, uncertainty: bool, device: str | torch.device
) -> tuple[contextlib.AbstractContextManager, Callable[[list[EncodedSentence]], ScoredBatch]]:
    """The context to predict in (inference mode) and the function that scores a batch of
    encoded sentences, for `decode.tag_sentences` (arguments as there)."""
    model.eval()

    def score(encoded: list[EncodedSentence]) -> ScoredBatch:
        return score_batch(model, collate(encoded).to(device), k, confidence, uncertainty)

    return torch.inference_mode(), score


def classifier_scoring(
    model: Classifier, device: str | torch.device
) -> tuple[contextlib.AbstractContextManager, Callable[[list[EncodedSentence]], list[list[float]]]]:
    """The context to predict in and the function that gives every label's probability per
    sentence of a batch, for `decode.classify_sentences`."""
    model.eval()

    def class_probs(encoded: list[EncodedSentence]) -> list[list[float]]:
        return model(collate(encoded).to(device)).exp().tolist()

    return torch.inference_mode(), class_probs


def score_batch(
    model: Tagger, batch: Batch, k: int, confidence: bool, uncertainty: bool = False
) -> ScoredBatch:
    """Best tags, their probabilities, k-best paths, entity probabilities and (when asked) the
    uncertainty of one batch."""
    emissions = model(batch)
    mask = batch.mask
    tag_ids = model.head.decode(emissions, mask)
    confidence = confidence or uncertainty
    # One forward-backward pass serves the marginals, the entity probabilities and the
    # uncertainty.
    lattice = model.head.lattice(emissions, mask) if confidence else None
    marginals = model.head.marginals(emissions, mask, lattice) if confidence else None
    tag_probs = (
        marginals.gather(2, tag_ids.unsqueeze(2)).squeeze(2)
        if marginals is not None
        else torch.ones_like(tag_ids, dtype=emissions.dtype)
    )

    def span_probabilities(span_rows: list[list[Span]]) -> list[list[float]]:
        rows, starts, ends = flatten_spans(span_rows)
        if not rows:
            return [[] for _ in span_rows]
        device = emissions.device
        spans = tuple(torch.tensor(v, device=device) for v in (rows, starts, ends))
        log_probs = model.head.entity_log_probs(emissions, mask, tag_ids, spans, lattice)
        return spans_per_row(span_rows, log_probs.exp().tolist())

    return ScoredBatch(
        tag_ids.tolist(),
        tag_probs.tolist(),
        _kbest_rows(model, emissions, mask, k) if k > 0 else None,
        span_probabilities if confidence else None,
        _uncertainty_rows(model, emissions, mask, tag_ids, lattice, marginals)
        if uncertainty
        else None,
    )


def _kbest_rows(
    model: Tagger, emissions: Tensor, mask: Tensor, k: int
) -> list[list[tuple[list[int], float]]]:
    paths, log_probs = model.head.kbest(emissions, mask, k)
    return kbest_rows(paths.tolist(), log_probs.exp().tolist())


def _uncertainty_rows(
    model: Tagger, emissions, mask, tag_ids, lattice, marginals
) -> tuple[list[float], list[float], list[list[float]] | None]:
    labels = model.vocab.labels.items
    outside = labels.index("O") if model.scheme and "O" in labels else None
    path_log_probs = model.head.path_log_probs(emissions, mask, tag_ids, lattice).tolist()
    entropies = model.head.entropy(emissions, mask, lattice).tolist()
    if not model.scheme:
        return path_log_probs, entropies, None
    if outside is None:
        return path_log_probs, entropies, torch.zeros_like(tag_ids, dtype=torch.float).tolist()
    return path_log_probs, entropies, marginals[:, :, outside].tolist()
