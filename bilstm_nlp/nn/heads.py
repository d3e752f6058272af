"""Heads: contextual features → scores, loss, decoding, marginals, k-best, entity confidence and
sequence uncertainty (the probability of the decoded path, the entropy over tag sequences).

Sits after the encoder. `CRFHead` and `SoftmaxHead` implement one interface, `TagHead`, built from
the tag list and the scheme; each keeps what the scheme decides (allowed transitions, entity
boundaries), so the model, training and decoding never ask which head they hold. `SentenceHead`
pools a sentence for the classifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..text.schemes import allowed_transitions
from ..text.schemes import entity_boundaries as scheme_boundaries
from .crf import (
    CRF,
    constraint_scores,
    kbest_decode,
    marginals_from,
    segment_log_probs,
    sequence_entropy,
    viterbi_decode,
)


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
    """`text.schemes.EntityBoundaries` as tensors (`left`, `right` bool; `alternative_first`
    long), the buffers a head decodes entity probabilities with."""

    left: Tensor
    right: Tensor
    alternative_first: Tensor


def entity_boundaries(scheme: str | None, tags: Sequence[str]) -> EntityBoundaries:
    """The `EntityBoundaries` of a scheme over a tag list (`text.schemes.entity_boundaries`)."""
    arrays = scheme_boundaries(scheme, tags)
    return EntityBoundaries(
        torch.from_numpy(arrays.left),
        torch.from_numpy(arrays.right),
        torch.from_numpy(arrays.alternative_first),
    )


@dataclass
class TeacherMarginals:
    """What teachers say about a batch: the marginals a student is distilled towards.

    Attributes:
        tags: `(batch, seq_len, num_tags)` float probability of each tag at each token.
        pairs: `(batch, seq_len - 1, num_tags, num_tags)` float probability of each pair of
            neighbouring tags (what a CRF student also matches; a softmax student ignores them).
    """

    tags: Tensor
    pairs: Tensor


def _per_row(weight: float | Tensor, dims: int) -> float | Tensor:
    """A `(batch,)` weight shaped to broadcast over a `dims`-dimensional batch tensor."""
    if isinstance(weight, Tensor):
        return weight.view(-1, *([1] * (dims - 1)))
    return weight


class TagHead(nn.Module):
    """The interface of a tagger's head: scores, loss, and everything decoding reads.

    Every tensor method takes `emissions` `(batch, seq_len, num_tags)` (the head's own
    `emissions(features)`) and `mask` `(batch, seq_len)` bool, True on real tokens, left-aligned.

    Args:
        input_dim: size of the contextual features.
        tags: the tag list; ids are positions in it.
        scheme: `"IOB1"`, `"IOB2"` or `"BIOES"`, which fixes the tag sequences that can be decoded
            and what makes an entity; None for plain labels such as POS.
    """

    def __init__(self, input_dim: int, tags: Sequence[str], scheme: str | None):
        super().__init__()
        self.projection = nn.Linear(input_dim, len(tags))
        boundaries = entity_boundaries(scheme, tags)
        # Not saved with the model: the scheme and tags rebuild them.
        self.register_buffer("boundary_left", boundaries.left, persistent=False)
        self.register_buffer("boundary_right", boundaries.right, persistent=False)
        self.register_buffer("alternative_first", boundaries.alternative_first, persistent=False)

    def emissions(self, features: Tensor) -> Tensor:
        """`(batch, seq_len, input_dim)` → `(batch, seq_len, num_tags)` tag scores."""
        return self.from_projected(self.projection(features))

    def from_projected(self, projected: Tensor) -> Tensor:
        """The tag scores of `projection`'s output `(batch, seq_len, num_tags)` (what `emissions`
        gives of the features)."""
        raise NotImplementedError

    def loss(self, emissions: Tensor, tag_ids: Tensor, mask: Tensor) -> Tensor:
        """`()` training loss of the gold `tag_ids` `(batch, seq_len)`, summed over the batch."""
        raise NotImplementedError

    def distill_loss(
        self,
        emissions: Tensor,
        tag_ids: Tensor,
        mask: Tensor,
        teacher: TeacherMarginals,
        weight: float | Tensor,
    ) -> Tensor:
        """`()` loss against a blend of the gold tags (`1 - weight`) and the teachers' marginals
        (`weight`: one share, or `(batch,)` one per sentence), summed over the batch."""
        raise NotImplementedError

    def decode(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """`(batch, seq_len)` long best tag ids, 0 at padding."""
        raise NotImplementedError

    def lattice(self, emissions: Tensor, mask: Tensor) -> Lattice:
        """What `marginals` and `entity_log_probs` read, computed once per batch."""
        raise NotImplementedError

    def marginals(self, emissions: Tensor, mask: Tensor, lattice: Lattice | None = None) -> Tensor:
        """`(batch, seq_len, num_tags)` probability of each tag at each token, in [0, 1], 0 at
        padding, in the dtype of `emissions`."""
        raise NotImplementedError

    def kbest(self, emissions: Tensor, mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """The k best tag sequences `(batch, k, seq_len)` and their log-probabilities `(batch, k)`
        (at most 0; `-inf` for a missing path), in the dtype of `emissions`."""
        raise NotImplementedError

    def entity_log_probs(
        self,
        emissions: Tensor,
        mask: Tensor,
        tag_ids: Tensor,
        spans: tuple[Tensor, Tensor, Tensor],
        lattice: Lattice | None = None,
    ) -> Tensor:
        """Log-probability of each entity read off the path `tag_ids`.

        Args:
            tag_ids: `(batch, seq_len)` long, the decoded path the entities were read from.
            spans: `(batch_index, start, end)`, each `(num_spans,)` long: the sentence, first
                token and one past the last token of each entity.
            lattice: `lattice(emissions, mask)` when the caller already has it.
        Returns:
            `(num_spans,)` float, at most 0, in the dtype of `emissions`.
        """
        raise NotImplementedError

    def path_log_probs(
        self, emissions: Tensor, mask: Tensor, tag_ids: Tensor, lattice: Lattice | None = None
    ) -> Tensor:
        """`(batch,)` float64 log-probability of each whole tag sequence `tag_ids` `(batch,
        seq_len)` (the decoded path, for least-confidence), at most 0."""
        raise NotImplementedError

    def entropy(self, emissions: Tensor, mask: Tensor, lattice: Lattice | None = None) -> Tensor:
        """`(batch,)` float64 entropy in nats of the distribution over whole tag sequences."""
        raise NotImplementedError


class CRFHead(TagHead):
    """A linear projection to tag scores and a linear-chain CRF over them; decoding, marginals,
    k-best and entity probabilities are exact under the CRF."""

    def __init__(self, input_dim: int, tags: Sequence[str], scheme: str | None):
        super().__init__(input_dim, tags, scheme)
        allowed = allowed_transitions(scheme, tags) if scheme else None
        self.crf = CRF(len(tags), allowed)

    def from_projected(self, projected: Tensor) -> Tensor:
        return projected

    def loss(self, emissions: Tensor, tag_ids: Tensor, mask: Tensor) -> Tensor:
        """Negative log-likelihood summed over the batch."""
        return self.crf(emissions, tag_ids, mask)

    def distill_loss(
        self,
        emissions: Tensor,
        tag_ids: Tensor,
        mask: Tensor,
        teacher: TeacherMarginals,
        weight: float | Tensor,
    ) -> Tensor:
        """Cross-entropy from the blend of the gold path and the teachers' distribution to the
        CRF (`CRF.expected_log_likelihood`), summed over the batch: one partition function, as the
        gold-only loss."""
        num_tags = emissions.size(2)
        gold = nn.functional.one_hot(torch.where(mask, tag_ids, 0), num_tags).to(teacher.tags.dtype)
        # shape: (batch, seq_len - 1, num_tags, num_tags)
        gold_pairs = gold[:, :-1, :, None] * gold[:, 1:, None, :]
        tags = torch.lerp(gold, teacher.tags, _per_row(weight, 3))
        pairs = torch.lerp(gold_pairs, teacher.pairs, _per_row(weight, 4))
        return -self.crf.expected_log_likelihood(emissions, tags, pairs, mask).sum()

    def decode(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Viterbi."""
        return self.crf.viterbi_decode(emissions, mask)[0]

    def lattice(self, emissions: Tensor, mask: Tensor) -> Lattice:
        """The CRF's forward-backward pass, float64."""
        return Lattice(*self.crf.forward_backward(emissions, mask))

    def _forward_backward(
        self, emissions: Tensor, mask: Tensor, lattice: Lattice | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        # The caller's lattice when it has one, else a forward-backward pass of our own.
        if lattice is None:
            lattice = self.lattice(emissions, mask)
        assert lattice.alpha is not None and lattice.beta is not None and lattice.log_z is not None
        return lattice.alpha, lattice.beta, lattice.log_z

    def marginals(self, emissions: Tensor, mask: Tensor, lattice: Lattice | None = None) -> Tensor:
        marginals = marginals_from(*self._forward_backward(emissions, mask, lattice), mask)
        return marginals.to(emissions.dtype)

    def kbest(self, emissions: Tensor, mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
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
        spans: tuple[Tensor, Tensor, Tensor],
        lattice: Lattice | None = None,
    ) -> Tensor:
        """Exact: the probability, summed over every way the scheme can write the entity, that its
        tags are on its span and no tag just outside extends it (`CRF.span_log_probs`)."""
        fb = self._forward_backward(emissions, mask, lattice)
        scores = self.crf.scores()
        b, s, e = spans
        first, last = tag_ids[b, s], tag_ids[b, e - 1]
        right = self.boundary_right[last]
        result = segment_log_probs(
            emissions, mask, tag_ids, spans, fb, scores, self.boundary_left[first], right
        )
        # IOB1: add the probability of the entity written with its other first tag (B-X for I-X).
        other = self.alternative_first[first]
        has_other = other >= 0
        if not bool(has_other.any()):
            return result
        flipped = tag_ids.clone()
        flipped[b[has_other], s[has_other]] = other[has_other]
        left = self.boundary_left[other.clamp(min=0)]
        other_result = segment_log_probs(emissions, mask, flipped, spans, fb, scores, left, right)
        # The two spellings are disjoint events; the clamp only takes off rounding.
        return torch.where(has_other, torch.logaddexp(result, other_result).clamp(max=0.0), result)

    def path_log_probs(
        self, emissions: Tensor, mask: Tensor, tag_ids: Tensor, lattice: Lattice | None = None
    ) -> Tensor:
        """Exact: the path's score minus `log Z`, both in float64 (as `kbest` scores paths)."""
        log_z = self._forward_backward(emissions, mask, lattice)[2]
        wide = emissions.to(log_z.dtype)
        return (self.crf.path_scores(wide, tag_ids, mask) - log_z).clamp(max=0.0)

    def entropy(self, emissions: Tensor, mask: Tensor, lattice: Lattice | None = None) -> Tensor:
        """Exact (`crf.sequence_entropy`), from the same forward-backward pass."""
        fb = self._forward_backward(emissions, mask, lattice)
        return sequence_entropy(emissions, mask, fb, self.crf.scores())


class SoftmaxHead(TagHead):
    """Independent per-token softmax; decoding may still be constrained to the scheme's valid
    sequences (Viterbi over log-probabilities with 0 / forbidden transitions).

    Args:
        constrained: decode only sequences the scheme allows (no effect without a scheme).
    """

    def __init__(self, input_dim: int, tags: Sequence[str], scheme: str | None, constrained: bool):
        super().__init__(input_dim, tags, scheme)
        self.constrained = constrained and bool(scheme)
        allowed = allowed_transitions(scheme, tags) if scheme else None
        start, transitions, end = constraint_scores(allowed, len(tags))
        self.register_buffer("start_constraints", start)
        self.register_buffer("transition_constraints", transitions)
        self.register_buffer("end_constraints", end)

    def from_projected(self, projected: Tensor) -> Tensor:
        """Log-probabilities."""
        return torch.log_softmax(projected, dim=-1)

    def loss(self, emissions: Tensor, tag_ids: Tensor, mask: Tensor) -> Tensor:
        """Token cross-entropy summed over the batch."""
        gold = emissions.gather(2, tag_ids.unsqueeze(2)).squeeze(2)
        return -torch.where(mask, gold, torch.zeros_like(gold)).sum()

    def distill_loss(
        self,
        emissions: Tensor,
        tag_ids: Tensor,
        mask: Tensor,
        teacher: TeacherMarginals,
        weight: float | Tensor,
    ) -> Tensor:
        """Token cross-entropy against the blend of gold tags and teacher marginals (pairs unused:
        the softmax head scores tokens independently), summed over the batch."""
        gold = nn.functional.one_hot(torch.where(mask, tag_ids, 0), emissions.size(2))
        target = torch.lerp(gold.to(teacher.tags.dtype), teacher.tags, _per_row(weight, 3))
        per_token = (target.to(emissions.dtype) * emissions).sum(2)
        return -torch.where(mask, per_token, torch.zeros_like(per_token)).sum()

    def _constraints(self) -> tuple[Tensor, Tensor, Tensor]:
        if self.constrained:
            return self.start_constraints, self.transition_constraints, self.end_constraints
        zeros = torch.zeros_like(self.transition_constraints)
        return zeros[0], zeros, zeros[0]

    def decode(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Argmax per token, or Viterbi when constrained."""
        if not self.constrained:
            return emissions.argmax(dim=-1).masked_fill(~mask, 0)
        return viterbi_decode(emissions, mask, *self._constraints())[0]

    def lattice(self, emissions: Tensor, mask: Tensor) -> Lattice:
        """Nothing to precompute: the softmax head's confidences are its emissions."""
        return Lattice()

    def marginals(self, emissions: Tensor, mask: Tensor, lattice: Lattice | None = None) -> Tensor:
        return emissions.exp() * mask.unsqueeze(2)

    def kbest(self, emissions: Tensor, mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """Log-probabilities are sums of token log-probabilities."""
        return kbest_decode(emissions, mask, *self._constraints(), k)

    def entity_log_probs(
        self,
        emissions: Tensor,
        mask: Tensor,
        tag_ids: Tensor,
        spans: tuple[Tensor, Tensor, Tensor],
        lattice: Lattice | None = None,
    ) -> Tensor:
        """The sum of the entity's token log-probabilities (the product of its token
        probabilities); tokens are independent, so the boundaries around it do not enter."""
        # shape: (batch, seq_len)
        chosen = emissions.gather(2, tag_ids.unsqueeze(2)).squeeze(2)
        # shape: (batch, seq_len + 1)
        cumulative = torch.nn.functional.pad(chosen.cumsum(dim=1), (1, 0))
        b, s, e = spans
        return cumulative[b, e] - cumulative[b, s]

    def path_log_probs(
        self, emissions: Tensor, mask: Tensor, tag_ids: Tensor, lattice: Lattice | None = None
    ) -> Tensor:
        """The sum of the path's token log-probabilities: tokens are independent."""
        # shape: (batch, seq_len)
        chosen = emissions.double().gather(2, tag_ids.unsqueeze(2)).squeeze(2)
        return torch.where(mask, chosen, 0.0).sum(1)

    def entropy(self, emissions: Tensor, mask: Tensor, lattice: Lattice | None = None) -> Tensor:
        """The sum of the token entropies: tokens are independent (constrained decoding picks a
        path, it does not change the distribution the head gives)."""
        # shape: (batch, seq_len); entr(p) = -p log p, 0 at p = 0
        token_entropy = torch.special.entr(emissions.double().exp()).sum(2)
        return torch.where(mask, token_entropy, 0.0).sum(1)


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

    def distill_loss(
        self, log_probs: Tensor, label_ids: Tensor, teacher_probs: Tensor, weight: float
    ) -> Tensor:
        """Cross-entropy from a blend of the gold labels (`1 - weight`) and the teachers'
        averaged class probabilities `(batch, num_labels)` (`weight`), summed over the batch."""
        gold = nn.functional.one_hot(label_ids, log_probs.size(1)).to(teacher_probs.dtype)
        target = torch.lerp(gold, teacher_probs, weight)
        return -(target * log_probs).sum()


HEADS = {"crf": CRFHead, "softmax": SoftmaxHead}
