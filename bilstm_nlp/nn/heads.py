"""Heads: contextual features → scores, loss, decoding, marginals, k-best and entity confidence.

Sits after the encoder. `CRFHead` and `SoftmaxHead` share one interface so the model, training and
decoding never ask which head they hold; `SentenceHead` pools a sentence for the classifier.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..text.schemes import AllowedTransitions, split_tag
from .crf import CRF, constraint_scores, kbest_decode, marginals_from, viterbi_decode


@dataclass(frozen=True)
class EntityQuery:
    """Entities whose probability is wanted, as flat tensors (one row per entity).

    Attributes:
        batch_index: `(num_spans,)` long, the sentence in the batch.
        start: `(num_spans,)` long, first token.
        end: `(num_spans,)` long, one past the last token.
        left_excluded: `(num_spans, num_tags)` bool, tags at `start - 1` that would extend the
            entity to the left (IOB1's `I-X` start after `I-X`): the entity exists only without
            them.
        right_excluded: `(num_spans, num_tags)` bool, tags at `end` that would extend it to the
            right.
    """

    batch_index: Tensor
    start: Tensor
    end: Tensor
    left_excluded: Tensor
    right_excluded: Tensor


@dataclass(frozen=True)
class Lattice:
    """What a head's confidences are read from, computed once per batch.

    Attributes:
        alpha: `(batch, seq_len, num_tags)` CRF forward log-scores (see `CRF.forward_backward`), or
            None for the softmax head, whose confidences need nothing beyond its emissions.
        beta: `(batch, seq_len, num_tags)` CRF backward log-scores, or None.
        log_z: `(batch,)` CRF log-partition, or None.
    """

    alpha: Tensor | None = None
    beta: Tensor | None = None
    log_z: Tensor | None = None


@dataclass(frozen=True)
class EntityBoundaries:
    """What decides, per tag scheme, whether tags on a span make exactly that entity.

    Attributes:
        left: `(num_tags, num_tags)` bool; `left[first, t]` True when tag `t` just before an entity
            whose first tag is `first` would make the entity start earlier (IOB1: `I-X` after
            `I-X`).
        right: `(num_tags, num_tags)` bool; `right[last, t]` True when tag `t` just after an entity
            whose last tag is `last` would extend it (IOB1/IOB2: a following `I-X`).
        alternative_first: `(num_tags,)` long; the other tag an entity may start with (IOB1 writes
            `B-X` after an `X` entity and `I-X` elsewhere), or -1. BIOES and IOB2 spell an entity
            one way only.
    """

    left: Tensor
    right: Tensor
    alternative_first: Tensor


def entity_boundaries(scheme: str | None, tags: list[str]) -> EntityBoundaries:
    """The `EntityBoundaries` of a scheme over a tag list. BIOES needs none: B/S start and E/S end
    an entity by themselves."""
    num_tags = len(tags)
    left = torch.zeros(num_tags, num_tags, dtype=torch.bool)
    right = torch.zeros(num_tags, num_tags, dtype=torch.bool)
    alternative = torch.full((num_tags,), -1, dtype=torch.long)
    if scheme not in ("IOB1", "IOB2"):
        return EntityBoundaries(left, right, alternative)
    parts = [split_tag(tag) for tag in tags]
    for a, (a_prefix, a_type) in enumerate(parts):
        if a_prefix == "O":
            continue
        for b, (b_prefix, b_type) in enumerate(parts):
            if b_type != a_type:
                continue
            # An I-X after the entity's last token continues it, in IOB1 and IOB2.
            right[a, b] = b_prefix == "I"
            # IOB1: an entity starting with I-X starts earlier when X tags precede it.
            left[a, b] = scheme == "IOB1" and a_prefix == "I" and b_prefix in ("B", "I")
            if scheme == "IOB1" and {a_prefix, b_prefix} == {"B", "I"}:
                alternative[a] = b
    return EntityBoundaries(left, right, alternative)


def entity_log_probs(
    head: CRFHead | SoftmaxHead,
    emissions: Tensor,
    mask: Tensor,
    tag_ids: Tensor,
    spans: tuple[Tensor, Tensor, Tensor],
    boundaries: EntityBoundaries,
    lattice: Lattice | None = None,
) -> Tensor:
    """Log-probability of each entity `(batch_index, start, end)` read off the path `tag_ids`.

    For the CRF this is exact: the probability, summed over every way the scheme can write it, that
    the entity is in the predicted tags. For the softmax head: its tokens' probabilities multiplied.

    Args:
        lattice: the head's `lattice(emissions, mask)` when the caller already has it (marginals
            and entity probabilities then share one forward-backward pass).
    Returns:
        `(num_spans,)` float.
    """
    if lattice is None:
        lattice = head.lattice(emissions, mask)
    b, s, e = spans
    first, last = tag_ids[b, s], tag_ids[b, e - 1]
    query = EntityQuery(b, s, e, boundaries.left[first], boundaries.right[last])
    result = head.entity_log_probs(emissions, mask, tag_ids, query, lattice)
    if not isinstance(head, CRFHead):
        return result
    # IOB1: add the probability of the entity written with its other first tag (B-X for I-X).
    other = boundaries.alternative_first[first]
    has_other = other >= 0
    if not bool(has_other.any()):
        return result
    flipped = tag_ids.clone()
    flipped[b[has_other], s[has_other]] = other[has_other]
    other_query = EntityQuery(b, s, e, boundaries.left[other.clamp(min=0)], boundaries.right[last])
    other_result = head.entity_log_probs(emissions, mask, flipped, other_query, lattice)
    # The two spellings are disjoint events; the clamp only takes off rounding.
    return torch.where(has_other, torch.logaddexp(result, other_result).clamp(max=0.0), result)


class CRFHead(nn.Module):
    """A linear projection to tag scores and a linear-chain CRF over them."""

    def __init__(self, input_dim: int, num_tags: int, allowed: AllowedTransitions | None):
        super().__init__()
        self.projection = nn.Linear(input_dim, num_tags)
        self.crf = CRF(num_tags, allowed)

    def emissions(self, features: Tensor) -> Tensor:
        """`(batch, seq_len, input_dim)` → `(batch, seq_len, num_tags)` unnormalised scores."""
        return self.projection(features)

    def loss(self, emissions: Tensor, tag_ids: Tensor, mask: Tensor) -> Tensor:
        """Negative log-likelihood summed over the batch."""
        return self.crf(emissions, tag_ids, mask)

    def decode(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """`(batch, seq_len)` best tag ids (Viterbi)."""
        return self.crf.viterbi_decode(emissions, mask)[0]

    def lattice(self, emissions: Tensor, mask: Tensor) -> Lattice:
        """The forward-backward pass that marginals and entity probabilities are read from."""
        return Lattice(*self.crf.forward_backward(emissions, mask))

    def _alpha_beta_log_z(
        self, emissions: Tensor, mask: Tensor, lattice: Lattice | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        # The caller's lattice when it has one, else a forward-backward pass of our own.
        if lattice is None:
            lattice = self.lattice(emissions, mask)
        assert lattice.alpha is not None and lattice.beta is not None and lattice.log_z is not None
        return lattice.alpha, lattice.beta, lattice.log_z

    def marginals(self, emissions: Tensor, mask: Tensor, lattice: Lattice | None = None) -> Tensor:
        """`(batch, seq_len, num_tags)` probability of each tag at each token, in [0, 1], in the
        dtype of `emissions`."""
        marginals = marginals_from(*self._alpha_beta_log_z(emissions, mask, lattice), mask)
        return marginals.to(emissions.dtype)

    def kbest(self, emissions: Tensor, mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """The k most probable tag sequences `(batch, k, seq_len)` and their log-probabilities
        `(batch, k)` (at most 0; `-inf` for a missing path), in the dtype of `emissions`."""
        paths, scores = self.crf.kbest_decode(emissions, mask, k)
        batch, k, seq_len = paths.shape
        # The search runs in the emissions' dtype; each found path is scored again in float64,
        # since a path's score and log Z both grow with the sentence and float32 loses the digits
        # of their difference (a best path of probability 1.02 on 250 tokens).
        wide = emissions.to(torch.promote_types(emissions.dtype, torch.float64))
        log_z = self.crf.log_partition(wide, mask)
        # shape: (batch * k,) -> (batch, k)
        path_scores = self.crf.path_scores(
            wide.repeat_interleave(k, dim=0),
            paths.reshape(batch * k, seq_len),
            mask.repeat_interleave(k, dim=0),
        ).reshape(batch, k)
        log_probs = (path_scores - log_z.unsqueeze(1)).clamp(max=0.0)
        log_probs = torch.where(scores > float("-inf"), log_probs, float("-inf"))
        return paths, log_probs.to(emissions.dtype)

    def entity_log_probs(
        self,
        emissions: Tensor,
        mask: Tensor,
        tag_ids: Tensor,
        query: EntityQuery,
        lattice: Lattice | None = None,
    ) -> Tensor:
        """Exact log-probability that each queried entity is predicted: its tags on
        `[start, end)` equal `tag_ids` there, and no excluded tag stands just outside.

        From the forward vector before the span, the path's scores inside it, and the backward
        vector after it; vectorised over entities.

        Returns:
            `(num_spans,)` float, at most 0, in the dtype of `emissions`.
        """
        alpha, beta, log_z = self._alpha_beta_log_z(emissions, mask, lattice)
        # The lattice is float64 (see `CRF.forward_backward`); so is every sum below, so that a
        # long sentence's large forward and backward scores cancel without losing digits.
        dtype = emissions.dtype
        wide = emissions.to(alpha.dtype)
        start_scores, transitions, end_scores = (
            score.to(alpha.dtype) for score in self.crf.scores()
        )
        b, s, e = query.batch_index, query.start, query.end
        # Score of each step along the given path: emission plus transition into it.
        # shape: (batch, seq_len)
        step = wide.gather(2, tag_ids.unsqueeze(2)).squeeze(2)
        step[:, 1:] += transitions[tag_ids[:, :-1], tag_ids[:, 1:]]
        cumulative = step.cumsum(dim=1)
        first_tag, last_tag = tag_ids[b, s], tag_ids[b, e - 1]
        # shape: (num_spans,)
        inside = cumulative[b, e - 1] - cumulative[b, s] + wide[b, s, first_tag]
        forbidden = torch.tensor(float("-inf"), dtype=alpha.dtype, device=emissions.device)
        # Left: how the path reaches the first tag (start transition, or any allowed previous tag).
        previous = (s - 1).clamp(min=0)
        # shape: (num_spans, num_tags)
        into_first = alpha[b, previous] + transitions[:, first_tag].T
        into_first = torch.where(query.left_excluded, forbidden, into_first)
        left = torch.where(s == 0, start_scores[first_tag], torch.logsumexp(into_first, dim=1))
        # Right: how the path leaves the last tag (end transition, or any allowed next tag).
        lengths = mask.sum(dim=1)[b]
        following = e.clamp(max=emissions.shape[1] - 1)
        # shape: (num_spans, num_tags)
        out_of_last = transitions[last_tag] + wide[b, following]
        out_of_last = out_of_last + beta[b, following]
        out_of_last = torch.where(query.right_excluded, forbidden, out_of_last)
        right = torch.where(e >= lengths, end_scores[last_tag], torch.logsumexp(out_of_last, dim=1))
        # The clamp only takes off rounding: an entity is never likelier than certain.
        return (left + inside + right - log_z[b]).clamp(max=0.0).to(dtype)


class SoftmaxHead(nn.Module):
    """Independent per-token softmax; decoding may still be constrained to the scheme's valid
    sequences (Viterbi over log-probabilities with 0 / forbidden transitions)."""

    def __init__(
        self, input_dim: int, num_tags: int, allowed: AllowedTransitions | None, constrained: bool
    ):
        super().__init__()
        self.projection = nn.Linear(input_dim, num_tags)
        self.constrained = constrained and allowed is not None
        start, transitions, end = constraint_scores(allowed, num_tags)
        self.register_buffer("start_constraints", start)
        self.register_buffer("transition_constraints", transitions)
        self.register_buffer("end_constraints", end)

    def emissions(self, features: Tensor) -> Tensor:
        """`(batch, seq_len, input_dim)` → `(batch, seq_len, num_tags)` log-probabilities."""
        return torch.log_softmax(self.projection(features), dim=-1)

    def loss(self, emissions: Tensor, tag_ids: Tensor, mask: Tensor) -> Tensor:
        """Token cross-entropy summed over the batch."""
        gold = emissions.gather(2, tag_ids.unsqueeze(2)).squeeze(2)
        return -torch.where(mask, gold, torch.zeros_like(gold)).sum()

    def _constraints(self) -> tuple[Tensor, Tensor, Tensor]:
        if self.constrained:
            return self.start_constraints, self.transition_constraints, self.end_constraints
        zeros = torch.zeros_like(self.transition_constraints)
        return zeros[0], zeros, zeros[0]

    def decode(self, emissions: Tensor, mask: Tensor) -> Tensor:
        if not self.constrained:
            return emissions.argmax(dim=-1).masked_fill(~mask, 0)
        return viterbi_decode(emissions, mask, *self._constraints())[0]

    def lattice(self, emissions: Tensor, mask: Tensor) -> Lattice:
        """Nothing to precompute: the softmax head's confidences are its emissions."""
        return Lattice()

    def marginals(self, emissions: Tensor, mask: Tensor, lattice: Lattice | None = None) -> Tensor:
        return emissions.exp() * mask.unsqueeze(2)

    def kbest(self, emissions: Tensor, mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """The k best sequences and their log-probabilities (sums of token log-probabilities)."""
        return kbest_decode(emissions, mask, *self._constraints(), k)

    def entity_log_probs(
        self,
        emissions: Tensor,
        mask: Tensor,
        tag_ids: Tensor,
        query: EntityQuery,
        lattice: Lattice | None = None,
    ) -> Tensor:
        """Sum of the entity's token log-probabilities (the product of its token probabilities)."""
        # shape: (batch, seq_len)
        chosen = emissions.gather(2, tag_ids.unsqueeze(2)).squeeze(2)
        cumulative = torch.nn.functional.pad(chosen.cumsum(dim=1), (1, 0))
        b, s, e = query.batch_index, query.start, query.end
        return cumulative[b, e] - cumulative[b, s]


class SentenceHead(nn.Module):
    """Pools contextual features over a sentence (max, mean or attention) and scores the classes."""

    def __init__(self, input_dim: int, num_labels: int, pooling: str, dropout: float):
        super().__init__()
        if pooling not in ("max", "mean", "attention"):
            raise ValueError(f"pooling must be max, mean or attention, got {pooling!r}")
        self.pooling = pooling
        self.attention = nn.Linear(input_dim, 1) if pooling == "attention" else None
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(input_dim, num_labels)

    def forward(self, features: Tensor, mask: Tensor) -> Tensor:
        """`(batch, seq_len, input_dim)` → `(batch, num_labels)` log-probabilities."""
        expanded = mask.unsqueeze(2)
        if self.pooling == "max":
            pooled = features.masked_fill(~expanded, float("-inf")).max(dim=1).values
        elif self.pooling == "mean":
            pooled = (features * expanded).sum(dim=1) / mask.sum(dim=1, keepdim=True)
        else:
            # shape: (batch, seq_len)
            weights = self.attention(features).squeeze(2).masked_fill(~mask, float("-inf"))
            pooled = (torch.softmax(weights, dim=1).unsqueeze(2) * features).sum(dim=1)
        return torch.log_softmax(self.projection(self.dropout(pooled)), dim=-1)

    def loss(self, log_probs: Tensor, label_ids: Tensor) -> Tensor:
        """Cross-entropy summed over the batch."""
        return nn.functional.nll_loss(log_probs, label_ids, reduction="sum")


HEADS = {"crf": CRFHead, "softmax": SoftmaxHead}
