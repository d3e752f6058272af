"""A backend's scores of one batch of a tagger, as `decode.tag_sentences` takes them.

Below `decode` and beside nothing: the torch scorer (`decode_torch`) and the ONNX backend
(`runtime/backend`) both build a `ScoredBatch`, and `decode` reads it, so none of them imports
another for it. Plain Python, no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .text.schemes import Span

if TYPE_CHECKING:
    import numpy as np


@dataclass
class ScoredBatch:
    """What a backend computes for one batch of a tagger, rows in batch order, as Python values.

    `tag_sentences` turns it into `TaggedSentence`s, whichever backend scored it (the torch model
    here, an ONNX model in `bilstm_nlp/runtime`).

    Attributes:
        tag_ids: per row, the best tag ids (padded to the batch's length).
        tag_probs: per row, the probability of each best tag (1.0 without confidence).
        kbest: per row, the k best paths (padded tag ids) with their probabilities, those above
            0 only; None when not asked for.
        span_probabilities: given the spans read off each row's tags, their probabilities per
            row; None without confidence.
        uncertainty: per row, the path log-probability, the sequence entropy and the `O`
            marginal of each token (None for models without a scheme); None when not asked for.
        neighbour_classes: given `(rows, positions, before, after)`, p(tag at t, class of the
            pair (t - 1, t)) and of (t, t + 1) there (`crf_numpy.neighbour_class_probs`): what
            the probability of a tag written in another scheme is summed from; None without
            confidence.
    """

    tag_ids: list[list[int]]
    tag_probs: list[list[float]]
    kbest: list[list[tuple[list[int], float]]] | None
    span_probabilities: Callable[[list[list[Span]]], list[list[float]]] | None
    uncertainty: tuple[list[float], list[float], list[list[float]] | None] | None = None
    neighbour_classes: (
        Callable[
            [np.ndarray, np.ndarray, np.ndarray, np.ndarray | None],
            tuple[np.ndarray, np.ndarray | None],
        ]
        | None
    ) = None


def flatten_spans(span_rows: Sequence[Sequence[Span]]) -> tuple[list[int], list[int], list[int]]:
    """The row, start and end of every span, rows in order: how the heads take spans."""
    flat = [(row, span) for row, spans in enumerate(span_rows) for span in spans]
    return [r for r, _ in flat], [s.start for _, s in flat], [s.end for _, s in flat]


def spans_per_row(
    span_rows: Sequence[Sequence[Span]], values: Sequence[float]
) -> list[list[float]]:
    """`values`, one per span of `flatten_spans(span_rows)`, cut back into rows."""
    per_row: list[list[float]] = []
    position = 0
    for spans in span_rows:
        per_row.append(list(values[position : position + len(spans)]))
        position += len(spans)
    return per_row


def kbest_rows(
    paths: list[list[list[int]]], probs: list[list[float]]
) -> list[list[tuple[list[int], float]]]:
    """Per row, its k best paths with their probabilities, those above 0 only (a sentence has
    fewer paths than k when it is short): `ScoredBatch.kbest` from any backend's arrays."""
    return [
        [(path, prob) for path, prob in zip(row_paths, row_probs, strict=True) if prob > 0.0]
        for row_paths, row_probs in zip(paths, probs, strict=True)
    ]
