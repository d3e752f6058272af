"""Linear-chain CRF: log-likelihood, partition function, marginals, entropy, Viterbi and k-best
decoding.

Sits between the encoder, which gives per-token emission scores, and `heads.py`/`decode.py`, which
train on the negative log-likelihood and turn decoded tag ids into spans with confidences. Scheme
constraints come from `schemes.allowed_transitions` as bool masks; the CRF keeps them as buffers and
scores forbidden starts, transitions and ends with `FORBIDDEN_SCORE`, so training and inference see
allowed paths only. Batch-first with a left-aligned bool mask throughout; vectorised over the batch,
with Python loops over time only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..text.schemes import AllowedTransitions

FORBIDDEN_SCORE: float = -1e4
"""Score of a forbidden start, transition or end in training and partition sums.

Finite on purpose: `-inf` gives NaN gradients where a forbidden step meets a masked or unreachable
one. `exp(-1e4)` is exactly 0 in float32 and float64, so forbidden paths carry no probability mass.
`CRF` decodes with `-inf` instead, so that it never returns a forbidden path.
"""


def allowed_tensors(allowed: AllowedTransitions) -> AllowedTransitions:
    """The masks of `allowed` as bool tensors (`schemes.allowed_transitions` gives numpy arrays,
    so that the ONNX runtime needs no torch); tensors are kept on their device.

    Raises:
        ValueError: a mask is neither a tensor nor array-like.
    """

    def as_bool_tensor(mask: Any) -> Tensor:
        if isinstance(mask, Tensor):
            return mask.to(torch.bool)
        return torch.from_numpy(np.asarray(mask, dtype=bool))

    return AllowedTransitions(
        *(as_bool_tensor(m) for m in (allowed.start, allowed.transitions, allowed.end))
    )


def constraint_scores(
    allowed: AllowedTransitions | None, num_tags: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Additive scores for a constraint set: 0 where allowed, `FORBIDDEN_SCORE` where not.

    Args:
        allowed: bool masks from `schemes.allowed_transitions`, or None to allow everything.
        num_tags: number of tags; the masks must have this size.
    Returns:
        `(start, transitions, end)` float tensors of shapes `(num_tags,)`, `(num_tags, num_tags)`
        and `(num_tags,)`, on the device of the masks.
    Raises:
        ValueError: a mask has the wrong shape.
    """
    if allowed is None:
        zeros = torch.zeros(num_tags)
        return zeros, torch.zeros(num_tags, num_tags), zeros.clone()
    _check_allowed(allowed, num_tags)
    allowed = allowed_tensors(allowed)
    return (
        torch.where(allowed.start.bool(), 0.0, FORBIDDEN_SCORE),
        torch.where(allowed.transitions.bool(), 0.0, FORBIDDEN_SCORE),
        torch.where(allowed.end.bool(), 0.0, FORBIDDEN_SCORE),
    )


def viterbi_decode(
    emissions: Tensor,
    mask: Tensor,
    start_transitions: Tensor,
    transitions: Tensor,
    end_transitions: Tensor,
) -> tuple[Tensor, Tensor]:
    """Highest-scoring tag path for each sequence (Viterbi, in log space).

    Scores may hold `-inf` to forbid a step outright. The loops run over time only: the
    backtrace follows every sequence of the batch at once.

    Args:
        emissions: `(batch, seq_len, num_tags)` float, unnormalised scores from the encoder.
        mask: `(batch, seq_len)` bool, True on real tokens, left-aligned; `mask[:, 0]` all True.
        start_transitions: `(num_tags,)` score of starting with each tag.
        transitions: `(num_tags, num_tags)`; `[i, j]` scores tag i followed by tag j.
        end_transitions: `(num_tags,)` score of ending with each tag.
    Returns:
        `(tag_ids, scores)`: `(batch, seq_len)` long tag ids with 0 at padding, and `(batch,)` the
        best path scores. A sequence with no finite-scoring path gets score `-inf` and tag ids 0.
    Raises:
        ValueError: shapes or mask are invalid.
    """
    _check_scores(start_transitions, transitions, end_transitions)
    _validate(emissions, mask, transitions.size(0))
    return _viterbi(emissions, mask, start_transitions, transitions, end_transitions)


def kbest_decode(
    emissions: Tensor,
    mask: Tensor,
    start_transitions: Tensor,
    transitions: Tensor,
    end_transitions: Tensor,
    k: int,
) -> tuple[Tensor, Tensor]:
    """The `k` highest-scoring tag paths of each sequence, best first (list Viterbi).

    Keeps the `k` best partial paths ending in each tag at each step (Seshadri and Sundberg, 1994,
    "List Viterbi decoding algorithms with applications", IEEE Trans. Communications 42). Scores
    may hold `-inf` to forbid a step outright; with `k=1` this is `viterbi_decode`.

    Args:
        emissions: `(batch, seq_len, num_tags)` float, unnormalised scores from the encoder.
        mask: `(batch, seq_len)` bool, True on real tokens, left-aligned; `mask[:, 0]` all True.
        start_transitions: `(num_tags,)` score of starting with each tag.
        transitions: `(num_tags, num_tags)`; `[i, j]` scores tag i followed by tag j.
        end_transitions: `(num_tags,)` score of ending with each tag.
        k: how many paths to return per sequence, at least 1.
    Returns:
        `(tag_ids, scores)`: `(batch, k, seq_len)` long tag ids with 0 at padding, and `(batch, k)`
        path scores in descending order. Where a sequence has fewer than `k` finite-scoring paths,
        the missing ones have score `-inf` and tag ids 0.
    Raises:
        ValueError: shapes, mask or `k` are invalid.
    """
    _check_scores(start_transitions, transitions, end_transitions)
    _validate(emissions, mask, transitions.size(0))
    _check_k(k)
    return _kbest(emissions, mask, start_transitions, transitions, end_transitions, k)


def marginals_from(alpha: Tensor, beta: Tensor, log_z: Tensor, mask: Tensor) -> Tensor:
    """Tag marginals from `CRF.forward_backward`'s output; no validation (the pass did it).

    Returns:
        `(batch, seq_len, num_tags)` probabilities in the dtype of `alpha`, each in [0, 1]; rows
        sum to 1 on real tokens, 0 at padding.
    """
    # The clamp only takes off rounding: alpha + beta never exceeds log Z in exact arithmetic.
    # shape: (batch, seq_len, num_tags)
    probs = (alpha + beta - log_z[:, None, None]).clamp(max=0.0).exp()
    return torch.where(mask.unsqueeze(2), probs, 0.0)


def pair_marginals_from(
    alpha: Tensor, beta: Tensor, log_z: Tensor, emissions: Tensor, mask: Tensor, transitions: Tensor
) -> Tensor:
    """Neighbouring-pair marginals (`CRF.pair_marginals`) from a forward-backward pass's output
    and the constrained transitions (`CRF.scores()[1]`); no validation (the pass did it)."""
    wide = torch.where(mask.unsqueeze(2), emissions, 0.0).to(alpha.dtype)
    # shape: (batch, seq_len - 1, num_tags, num_tags)
    scores = (
        alpha[:, :-1, :, None]
        + transitions.to(alpha.dtype)
        + (wide[:, 1:] + beta[:, 1:])[:, :, None, :]
        - log_z[:, None, None, None]
    )
    pairs = scores.clamp(max=0.0).exp()
    return torch.where(mask[:, 1:, None, None], pairs, 0.0)


class CRF(nn.Module):
    """Linear-chain conditional random field over tag sequences (Lafferty et al., 2001).

    A path `y` over emissions `x` scores `start[y_0] + sum_t x[t, y_t] + sum_t trans[y_{t-1}, y_t]
    + end[y_last]`; `p(y | x)` is the exponential of its score over the sum of all paths'
    exponentials. As in the BiLSTM-CRF of Lample et al. (2016), the encoder gives the emissions and
    the CRF holds the transition scores. A tag scheme's constraints are kept as bool buffers; the
    likelihood, partition function and marginals use `scores()`, where forbidden steps score
    `FORBIDDEN_SCORE`, so the distribution is over allowed paths only, and decoding forbids them
    outright (`-inf`), so it never returns a forbidden path while an allowed one exists.

    Args:
        num_tags: number of tags.
        allowed: which starts, transitions and ends are allowed, or None for all.

    Attributes:
        start_transitions: `(num_tags,)` parameter, score of starting with each tag.
        transitions: `(num_tags, num_tags)` parameter; `[i, j]` scores tag i followed by tag j.
        end_transitions: `(num_tags,)` parameter, score of ending with each tag.
        allowed_start, allowed_transitions, allowed_end: bool buffers of the same shapes, saved in
            the state dict.

    References:
        Lafferty, J., McCallum, A., Pereira, F. (2001). "Conditional random fields: Probabilistic
        models for segmenting and labeling sequence data". Proc. ICML 2001, pp. 282-289.
        Lample, G., Ballesteros, M., Subramanian, S., Kawakami, K., Dyer, C. (2016). "Neural
        architectures for named entity recognition". Proc. NAACL-HLT 2016, pp. 260-270.
    """

    def __init__(self, num_tags: int, allowed: AllowedTransitions | None = None) -> None:
        if num_tags <= 0:
            raise ValueError(f"invalid number of tags: {num_tags}")
        super().__init__()
        self.num_tags = num_tags
        self.start_transitions = nn.Parameter(torch.empty(num_tags))
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))
        self.end_transitions = nn.Parameter(torch.empty(num_tags))
        if allowed is None:
            start = torch.ones(num_tags, dtype=torch.bool)
            trans = torch.ones(num_tags, num_tags, dtype=torch.bool)
            end = torch.ones(num_tags, dtype=torch.bool)
        else:
            _check_allowed(allowed, num_tags)
            allowed = allowed_tensors(allowed)
            start = allowed.start.detach().to(torch.bool).clone()
            trans = allowed.transitions.detach().to(torch.bool).clone()
            end = allowed.end.detach().to(torch.bool).clone()
        self.register_buffer("allowed_start", start)
        self.register_buffer("allowed_transitions", trans)
        self.register_buffer("allowed_end", end)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw all transition scores from uniform(-0.1, 0.1), as pytorch-crf does."""
        nn.init.uniform_(self.start_transitions, -0.1, 0.1)
        nn.init.uniform_(self.transitions, -0.1, 0.1)
        nn.init.uniform_(self.end_transitions, -0.1, 0.1)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}"

    def scores(self) -> tuple[Tensor, Tensor, Tensor]:
        """The constrained `(start, transitions, end)`: `FORBIDDEN_SCORE` where forbidden.

        Returns:
            `(num_tags,)`, `(num_tags, num_tags)` and `(num_tags,)` float tensors, differentiable
            with respect to the parameters (gradient 0 at forbidden entries).
        """
        return (
            torch.where(self.allowed_start, self.start_transitions, FORBIDDEN_SCORE),
            torch.where(self.allowed_transitions, self.transitions, FORBIDDEN_SCORE),
            torch.where(self.allowed_end, self.end_transitions, FORBIDDEN_SCORE),
        )

    def _decode_scores(self) -> tuple[Tensor, Tensor, Tensor]:
        # -inf rather than FORBIDDEN_SCORE: max-plus has no gradient to protect, and -inf guarantees
        # that no forbidden path is decoded, however large the emissions.
        forbidden = float("-inf")
        return (
            torch.where(self.allowed_start, self.start_transitions, forbidden),
            torch.where(self.allowed_transitions, self.transitions, forbidden),
            torch.where(self.allowed_end, self.end_transitions, forbidden),
        )

    def log_likelihood(self, emissions: Tensor, tag_ids: Tensor, mask: Tensor) -> Tensor:
        """Log-probability of each gold tag sequence, `log p(tag_ids | emissions)`.

        Args:
            emissions: `(batch, seq_len, num_tags)` float, unnormalised scores from the encoder.
            tag_ids: `(batch, seq_len)` long gold tag ids; values at padding are ignored.
            mask: `(batch, seq_len)` bool, True on real tokens, left-aligned; `mask[:, 0]` all True.
        Returns:
            `(batch,)` log-likelihoods (at most 0).
        Raises:
            ValueError: shapes or mask are invalid.
        """
        _validate(emissions, mask, self.num_tags, tag_ids)
        start, trans, end = self.scores()
        gold = _path_scores(emissions, tag_ids, mask, start, trans, end)
        return gold - _log_partition(emissions, mask, start, trans, end)

    def path_scores(self, emissions: Tensor, tag_ids: Tensor, mask: Tensor) -> Tensor:
        """Unnormalised score of each given path, in the dtype of `emissions`.

        Args:
            emissions: `(batch, seq_len, num_tags)` float, unnormalised scores from the encoder.
            tag_ids: `(batch, seq_len)` long tag ids; values at padding are ignored.
            mask: `(batch, seq_len)` bool, True on real tokens, left-aligned; `mask[:, 0]` all True.
        Returns:
            `(batch,)` start, emission, transition and end scores summed along each path
            (`FORBIDDEN_SCORE` for each forbidden step).
        Raises:
            ValueError: shapes or mask are invalid.
        """
        _validate(emissions, mask, self.num_tags, tag_ids)
        emissions, start, trans, end = _common_dtype(emissions, *self.scores())
        return _path_scores(emissions, tag_ids, mask, start, trans, end)

    def forward(self, emissions: Tensor, tag_ids: Tensor, mask: Tensor) -> Tensor:
        """Training loss: the negative log-likelihood summed over the batch.

        Args:
            emissions: `(batch, seq_len, num_tags)` float, unnormalised scores from the encoder.
            tag_ids: `(batch, seq_len)` long gold tag ids; values at padding are ignored.
            mask: `(batch, seq_len)` bool, True on real tokens, left-aligned; `mask[:, 0]` all True.
        Returns:
            `()` float, `-sum_b log p(tag_ids[b] | emissions[b])`.
        Raises:
            ValueError: shapes or mask are invalid.
        """
        return -self.log_likelihood(emissions, tag_ids, mask).sum()

    def log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Log of the sum of exponentiated scores of all (allowed) paths (forward algorithm).

        Args:
            emissions: `(batch, seq_len, num_tags)` float, unnormalised scores from the encoder.
            mask: `(batch, seq_len)` bool, True on real tokens, left-aligned; `mask[:, 0]` all True.
        Returns:
            `(batch,)` log-partition `log Z` of each sequence.
        Raises:
            ValueError: shapes or mask are invalid.
        """
        _validate(emissions, mask, self.num_tags)
        return _log_partition(emissions, mask, *self.scores())

    def forward_backward(self, emissions: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Forward and backward log-scores of every position and tag (Rabiner, 1989, in log space).

        Args:
            emissions: `(batch, seq_len, num_tags)` float, unnormalised scores from the encoder.
            mask: `(batch, seq_len)` bool, True on real tokens, left-aligned; `mask[:, 0]` all True.
        Returns:
            `(alpha, beta, log_z)`, float64 whatever the dtype of `emissions` (see
            `_forward_backward`). `alpha` `(batch, seq_len, num_tags)`: log-sum of the scores of
            all prefixes ending in tag j at t, emission at t included. `beta` `(batch, seq_len,
            num_tags)`: log-sum of the scores of all suffixes after t given tag j at t, emission at
            t excluded, end transition included. Both hold 0 at padding. `log_z` `(batch,)`. On
            real tokens `logsumexp(alpha[b, t] + beta[b, t]) == log_z[b]`.
        Raises:
            ValueError: shapes or mask are invalid.
        """
        _validate(emissions, mask, self.num_tags)
        return _forward_backward(emissions, mask, *self.scores())

    def marginals(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Posterior probability of each tag at each position, `p(y_t = j | emissions)`.

        Args:
            emissions: `(batch, seq_len, num_tags)` float, unnormalised scores from the encoder.
            mask: `(batch, seq_len)` bool, True on real tokens, left-aligned; `mask[:, 0]` all True.
        Returns:
            `(batch, seq_len, num_tags)` probabilities in the dtype of `emissions`, each in
            [0, 1]; rows sum to 1 on real tokens (to float64 rounding before the cast), 0 at
            padding, on sequences of any length.
        Raises:
            ValueError: shapes or mask are invalid.
        """
        _validate(emissions, mask, self.num_tags)
        marginals = marginals_from(*_forward_backward(emissions, mask, *self.scores()), mask)
        return marginals.to(emissions.dtype)

    def entropy(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Entropy of the distribution over whole tag sequences, `H(y | emissions)`, in nats.

        Exact, from one forward-backward pass (see `sequence_entropy`); forbidden paths carry no
        probability and add nothing.

        Args:
            emissions: `(batch, seq_len, num_tags)` float, unnormalised scores from the encoder.
            mask: `(batch, seq_len)` bool, True on real tokens, left-aligned; `mask[:, 0]` all True.
        Returns:
            `(batch,)` float64 entropies, at least 0.
        Raises:
            ValueError: shapes or mask are invalid.
        """
        _validate(emissions, mask, self.num_tags)
        scores = self.scores()
        return sequence_entropy(
            emissions, mask, _forward_backward(emissions, mask, *scores), scores
        )

    def pair_marginals(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Posterior probability of each pair of neighbouring tags, `p(y_t = i, y_{t+1} = j)`.

        Args:
            emissions: `(batch, seq_len, num_tags)` float, unnormalised scores from the encoder.
            mask: `(batch, seq_len)` bool, True on real tokens, left-aligned; `mask[:, 0]` all True.
        Returns:
            `(batch, seq_len - 1, num_tags, num_tags)` float64 probabilities; `[b, t]` sums to 1
            where token t + 1 is real and is 0 elsewhere. Summed over j it gives the tag marginals
            at t, over i those at t + 1.
        Raises:
            ValueError: shapes or mask are invalid.
        """
        _validate(emissions, mask, self.num_tags)
        start, trans, end = self.scores()
        lattice = _forward_backward(emissions, mask, start, trans, end)
        return pair_marginals_from(*lattice, emissions, mask, trans)

    def expected_log_likelihood(
        self, emissions: Tensor, tag_probs: Tensor, pair_probs: Tensor, mask: Tensor
    ) -> Tensor:
        """`E_q[log p(y | emissions)]` for a target distribution q over paths given by its tag and
        neighbouring-pair marginals: minus the cross-entropy from q to the CRF.

        A path's score is linear in its tags and pairs, so its expectation under q needs only q's
        marginals, and this costs what `log_likelihood` costs. With one-hot marginals (a single
        path) it equals `log_likelihood`; with a mixture of CRFs' marginals (an ensemble) it is
        exact for the mixture: what training a student on its teachers' distribution minimises
        (structure-level knowledge distillation, Wang et al., 2020).

        Args:
            emissions: `(batch, seq_len, num_tags)` float, unnormalised scores from the encoder.
            tag_probs: `(batch, seq_len, num_tags)` q's tag marginals; ignored at padding.
            pair_probs: `(batch, seq_len - 1, num_tags, num_tags)` q's marginals of the pair
                (t, t + 1); ignored where t + 1 is padding.
            mask: `(batch, seq_len)` bool, True on real tokens, left-aligned; `mask[:, 0]` all True.
        Returns:
            `(batch,)`, at most 0 when q gives no mass to forbidden steps.
        Raises:
            ValueError: shapes or mask are invalid.
        """
        _validate(emissions, mask, self.num_tags)
        batch, seq_len, num_tags = emissions.shape
        if tag_probs.shape != emissions.shape:
            raise ValueError(
                f"tag_probs must be {tuple(emissions.shape)}, got {tuple(tag_probs.shape)}"
            )
        pair_shape = (batch, seq_len - 1, num_tags, num_tags)
        if tuple(pair_probs.shape) != pair_shape:
            raise ValueError(f"pair_probs must be {pair_shape}, got {tuple(pair_probs.shape)}")
        emissions, start, trans, end = _common_dtype(emissions, *self.scores())
        real = mask.unsqueeze(2)
        tag_probs = torch.where(real, tag_probs.to(emissions.dtype), 0.0)
        pair_probs = torch.where(mask[:, 1:, None, None], pair_probs.to(emissions.dtype), 0.0)
        # Zeroed padding emissions keep inf or NaN there out of the products and their gradient.
        emitted = (tag_probs * torch.where(real, emissions, 0.0)).sum((1, 2))
        started = tag_probs[:, 0] @ start
        last = tag_probs[torch.arange(batch, device=mask.device), mask.sum(1) - 1]
        # 0 * FORBIDDEN_SCORE is 0: a target with no mass on forbidden steps pays nothing there.
        moved = (pair_probs * trans).sum((1, 2, 3))
        expected = started + emitted + moved + last @ end
        return expected - _log_partition(emissions, mask, start, trans, end)

    def viterbi_decode(self, emissions: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Best allowed path of each sequence; see the module-level `viterbi_decode`.

        Args:
            emissions: `(batch, seq_len, num_tags)` float, unnormalised scores from the encoder.
            mask: `(batch, seq_len)` bool, True on real tokens, left-aligned; `mask[:, 0]` all True.
        Returns:
            `(tag_ids, scores)`: `(batch, seq_len)` long with 0 at padding, `(batch,)` path scores
            (`-inf` and tag ids 0 for a sequence no allowed path fits).
        Raises:
            ValueError: shapes or mask are invalid.
        """
        _validate(emissions, mask, self.num_tags)
        return _viterbi(emissions, mask, *self._decode_scores())

    def kbest_decode(self, emissions: Tensor, mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """The `k` best allowed paths of each sequence; see the module-level `kbest_decode`.

        Args:
            emissions: `(batch, seq_len, num_tags)` float, unnormalised scores from the encoder.
            mask: `(batch, seq_len)` bool, True on real tokens, left-aligned; `mask[:, 0]` all True.
            k: how many paths to return per sequence, at least 1.
        Returns:
            `(tag_ids, scores)`: `(batch, k, seq_len)` long with 0 at padding, `(batch, k)` scores
            in descending order; missing paths (fewer than `k` allowed) score `-inf`, tag ids 0.
        Raises:
            ValueError: shapes, mask or `k` are invalid.
        """
        _validate(emissions, mask, self.num_tags)
        _check_k(k)
        return _kbest(emissions, mask, *self._decode_scores(), k)

    def span_log_probs(
        self,
        emissions: Tensor,
        mask: Tensor,
        tag_ids: Tensor,
        span_batch: Tensor,
        span_start: Tensor,
        span_end: Tensor,
        left_excluded: Tensor | None = None,
        right_excluded: Tensor | None = None,
    ) -> Tensor:
        """Log-probability that a segment of a sequence carries the given tags, for many segments.

        Exact marginal of the event "tags `tag_ids[b, start:end]` on `[start, end)`, no tag of
        `left_excluded` at `start - 1` and none of `right_excluded` at `end`" (an entity's tags
        and the scheme's boundaries around it). Read off the forward-backward lattice: the forward
        scores before the segment stepped into its first tag, the path's scores inside it, and the
        backward scores after it stepped out of its last tag, minus `log_z`; vectorised over
        segments, all in float64.

        Args:
            emissions: `(batch, seq_len, num_tags)` float, unnormalised scores from the encoder.
            mask: `(batch, seq_len)` bool, True on real tokens, left-aligned; `mask[:, 0]` all True.
            tag_ids: `(batch, seq_len)` long tag ids the segments are read from (a decoded path);
                values at padding are ignored.
            span_batch: `(num_spans,)` long, which sequence each segment is in.
            span_start: `(num_spans,)` long, first token of each segment.
            span_end: `(num_spans,)` long, one past the last token; `start < end <= length`.
            left_excluded: `(num_spans, num_tags)` bool, tags not allowed at `start - 1` (ignored
                where `start == 0`), or None for no condition.
            right_excluded: `(num_spans, num_tags)` bool, tags not allowed at `end` (ignored where
                `end` is the sequence's length), or None for no condition.
        Returns:
            `(num_spans,)` log-probabilities, at most 0, in the dtype of `emissions`.
        Raises:
            ValueError: shapes, mask or spans are invalid.
        """
        _validate(emissions, mask, self.num_tags, tag_ids)
        _check_spans(mask, span_batch, span_start, span_end)
        for name, excluded in [
            ("left_excluded", left_excluded),
            ("right_excluded", right_excluded),
        ]:
            if excluded is not None and excluded.shape != (span_batch.numel(), self.num_tags):
                raise ValueError(
                    f"{name} must have shape ({span_batch.numel()}, {self.num_tags}), "
                    f"got {tuple(excluded.shape)}"
                )
        scores = self.scores()
        return segment_log_probs(
            emissions,
            mask,
            tag_ids,
            (span_batch, span_start, span_end),
            _forward_backward(emissions, mask, *scores),
            scores,
            left_excluded,
            right_excluded,
        )


# Validation.


def _validate(
    emissions: Tensor, mask: Tensor, num_tags: int, tag_ids: Tensor | None = None
) -> None:
    if emissions.dim() != 3:
        raise ValueError(f"emissions must have dimension of 3, got {emissions.dim()}")
    if emissions.size(2) != num_tags:
        raise ValueError(
            f"expected last dimension of emissions is {num_tags}, got {emissions.size(2)}"
        )
    if emissions.size(1) == 0:
        raise ValueError("emissions must have at least one timestep, got seq_len 0")
    if not emissions.is_floating_point():
        raise ValueError(f"emissions must be a float tensor, got {emissions.dtype}")
    if tag_ids is not None:
        if emissions.shape[:2] != tag_ids.shape:
            raise ValueError(
                "the first two dimensions of emissions and tag_ids must match, "
                f"got {tuple(emissions.shape[:2])} and {tuple(tag_ids.shape)}"
            )
        if tag_ids.dtype != torch.long:
            raise ValueError(f"tag_ids must be torch.long, got {tag_ids.dtype}")
    if emissions.shape[:2] != mask.shape:
        raise ValueError(
            "the first two dimensions of emissions and mask must match, "
            f"got {tuple(emissions.shape[:2])} and {tuple(mask.shape)}"
        )
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be torch.bool, got {mask.dtype}")
    if not mask[:, 0].all():
        raise ValueError("mask of the first timestep must all be on")
    if (mask[:, 1:] & ~mask[:, :-1]).any():
        raise ValueError("mask must be left-aligned: no True after a False in a row")
    if tag_ids is not None and (((tag_ids < 0) | (tag_ids >= num_tags)) & mask).any():
        raise ValueError(f"tag_ids must lie in [0, {num_tags}) on real tokens")


def _check_allowed(allowed: AllowedTransitions, num_tags: int) -> None:
    expected = {"start": (num_tags,), "transitions": (num_tags, num_tags), "end": (num_tags,)}
    for name, shape in expected.items():
        got = tuple(getattr(allowed, name).shape)
        if got != shape:
            raise ValueError(f"allowed.{name} must have shape {shape}, got {got}")


def _check_scores(start: Tensor, transitions: Tensor, end: Tensor) -> None:
    num_tags = transitions.size(0) if transitions.dim() > 0 else 0
    if transitions.shape != (num_tags, num_tags):
        raise ValueError(f"transitions must be square, got {tuple(transitions.shape)}")
    if start.shape != (num_tags,) or end.shape != (num_tags,):
        raise ValueError(
            f"start and end transitions must have shape ({num_tags},), "
            f"got {tuple(start.shape)} and {tuple(end.shape)}"
        )


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def _check_spans(mask: Tensor, span_batch: Tensor, span_start: Tensor, span_end: Tensor) -> None:
    for name, span in (
        ("span_batch", span_batch),
        ("span_start", span_start),
        ("span_end", span_end),
    ):
        if span.dim() != 1 or span.dtype != torch.long:
            raise ValueError(
                f"{name} must be a 1-D long tensor, got {span.dtype} {tuple(span.shape)}"
            )
    if not span_batch.shape == span_start.shape == span_end.shape:
        raise ValueError(
            "span_batch, span_start and span_end must have the same length, got "
            f"{span_batch.numel()}, {span_start.numel()} and {span_end.numel()}"
        )
    if ((span_batch < 0) | (span_batch >= mask.size(0))).any():
        raise ValueError(f"span_batch must lie in [0, {mask.size(0)})")
    # shape: (num_spans,)
    lengths = mask.sum(1)[span_batch]
    if ((span_start < 0) | (span_start >= span_end) | (span_end > lengths)).any():
        raise ValueError("spans must satisfy 0 <= start < end <= length of their sequence")


# Scores of given paths.


def _step_scores(emissions: Tensor, tag_ids: Tensor, start: Tensor, transitions: Tensor) -> Tensor:
    """`(batch, seq_len)`: score of entering `tag_ids[b, t]` (start or transition) plus emission.

    `tag_ids` must hold valid ids everywhere, padding included.
    """
    # shape: (batch, seq_len)
    emitted = emissions.gather(2, tag_ids.unsqueeze(2)).squeeze(2)
    # shape: (batch, seq_len - 1)
    moved = transitions[tag_ids[:, :-1], tag_ids[:, 1:]]
    # shape: (batch, seq_len)
    entered = torch.cat([start[tag_ids[:, :1]], moved], dim=1)
    return entered + emitted


def _path_scores(
    emissions: Tensor,
    tag_ids: Tensor,
    mask: Tensor,
    start: Tensor,
    transitions: Tensor,
    end: Tensor,
) -> Tensor:
    """`(batch,)` score of each given path; ids at padding are ignored."""
    batch = emissions.size(0)
    # shape: (batch, seq_len)
    tag_ids = torch.where(mask, tag_ids, 0)
    # shape: (batch, seq_len)
    steps = _step_scores(emissions, tag_ids, start, transitions)
    # shape: (batch,)
    last_tags = tag_ids[torch.arange(batch, device=mask.device), mask.sum(1) - 1]
    return torch.where(mask, steps, 0.0).sum(1) + end[last_tags]


# Forward and backward recursions.
#
# The sum over previous tags, log(sum_i exp(x_i + W[i, j])), runs as a matrix product in exp space:
# x shifted by its row maximum and W by its column maximum, so every factor lies in [0, 1]. That is
# several times faster than a logsumexp over a (batch, num_tags, num_tags) tensor, and as exact
# unless a sum underflows: all allowed predecessors of a tag trail the best tag by ~70 nats in
# float32, or the tag is reachable through forbidden steps only (a tag set in which no allowed path
# reaches some tag takes the slow path on every call). Sums are clamped, so no -inf and no NaN
# gradients, and checked after the loop; if one that a real token uses underflowed, the recursion
# reruns with the exact logsumexp.


def _matmul(probs: Tensor, weight: Tensor) -> Tensor:
    # CUDA may run float32 matmuls in TF32 (set_float32_matmul_precision("high")), which would cost
    # 3 digits; off the CPU a broadcast product keeps full precision, at no cost for these sizes.
    if probs.device.type == "cpu":
        return probs @ weight
    return _broadcast_matmul(probs, weight)


def _broadcast_matmul(probs: Tensor, weight: Tensor) -> Tensor:
    # shape: (batch, num_tags, num_tags) -> (batch, num_tags)
    return (probs.unsqueeze(2) * weight).sum(1)


def _underflow_limit(dtype: torch.dtype) -> float:
    # A sum of at least tiny / eps loses nothing to terms that fall below the normal range.
    info = torch.finfo(dtype)
    return info.tiny / info.eps


def _fast_vecmat(state: Tensor, exp_weight: Tensor, addend: Tensor) -> tuple[Tensor, Tensor]:
    """`log(exp(state) @ exp_weight) + addend` and the clamped exp-space sums behind it.

    `exp_weight` is `exp(weight - column max)`; the caller folds the column max into `addend`.
    """
    # shape: (batch, 1)
    top = state.amax(1, keepdim=True)
    # shape: (batch, num_tags)
    total = _matmul((state - top).exp(), exp_weight).clamp_min(torch.finfo(state.dtype).tiny)
    return total.log() + (top + addend), total


def _exact_vecmat(state: Tensor, weight: Tensor, addend: Tensor | float) -> Tensor:
    """`log(exp(state) @ exp(weight)) + addend` by a logsumexp that cannot underflow."""
    # shape: (batch, num_tags, num_tags) -> (batch, num_tags)
    return torch.logsumexp(state.unsqueeze(2) + weight, dim=1) + addend


def _underflowed(sums: list[Tensor], used: Tensor) -> bool:
    """Whether any exp-sum whose result is used (`used`: `(batch, steps)` bool) underflowed."""
    if not sums:
        return False
    with torch.no_grad():
        # shape: (steps, batch, num_tags) -> (steps, batch)
        smallest = torch.stack(sums).amin(2)
        return bool(((smallest < _underflow_limit(smallest.dtype)) & used.t()).any())


def _common_dtype(emissions: Tensor, *scores: Tensor) -> tuple[Tensor, ...]:
    dtype = emissions.dtype
    for score in scores:
        dtype = torch.promote_types(dtype, score.dtype)
    return tuple(tensor.to(dtype) for tensor in (emissions, *scores))


def _alphas(emissions: Tensor, mask: Tensor, start: Tensor, transitions: Tensor) -> Tensor:
    """`(batch, seq_len, num_tags)` forward log-scores; padding continues the recursion."""
    # Padding never feeds a real position (masks are left-aligned), so the loop needs no mask;
    # zeroed padding emissions keep whatever the caller left there (inf, NaN) out of the gradient.
    # shape: (seq_len, batch, num_tags)
    steps = torch.where(mask.unsqueeze(2), emissions, 0.0).transpose(0, 1)
    # shape: (batch, num_tags)
    first = start + steps[0]
    # shape: (num_tags,)
    shift = transitions.amax(0)
    # shape: (num_tags, num_tags)
    exp_weight = (transitions - shift).exp()
    states, sums = [first], []
    # shape of each addend: (batch, num_tags)
    for addend in steps[1:] + shift:
        state, total = _fast_vecmat(states[-1], exp_weight, addend)
        states.append(state)
        sums.append(total)
    if _underflowed(sums, mask[:, 1:]):
        states = [first]
        for addend in steps[1:]:
            states.append(_exact_vecmat(states[-1], transitions, addend))
    # shape: (batch, seq_len, num_tags)
    return torch.stack(states, dim=1)


def _betas(emissions: Tensor, mask: Tensor, transitions: Tensor, end: Tensor) -> Tensor:
    """`(batch, seq_len, num_tags)` backward log-scores, 0 at padding."""
    batch, seq_len, num_tags = emissions.shape
    # shape: (seq_len, batch, num_tags)
    steps = torch.where(mask.unsqueeze(2), emissions, 0.0).transpose(0, 1)
    # shape: (batch, seq_len - 1, 1): True where position t + 1 is a real token
    has_next = mask[:, 1:].unsqueeze(2)
    # beta_t[i] = log sum_j exp(trans[i, j] + emission_{t+1}[j] + beta_{t+1}[j])
    # shape: (num_tags, num_tags)
    weight = transitions.t()
    # shape: (num_tags,)
    shift = weight.amax(0)
    # shape: (num_tags, num_tags)
    exp_weight = (weight - shift).exp()
    # shape: (batch, num_tags)
    last = end.expand(batch, num_tags)

    def run(fast: bool) -> tuple[list[Tensor], list[Tensor]]:
        states, sums = [last], []
        for t in range(seq_len - 2, -1, -1):
            # shape: (batch, num_tags)
            after = steps[t + 1] + states[-1]
            if fast:
                stepped, total = _fast_vecmat(after, exp_weight, shift)
                sums.append(total)
            else:
                stepped = _exact_vecmat(after, weight, 0.0)
            # The last real token takes the end score; padding too, and is zeroed below.
            states.append(torch.where(has_next[:, t], stepped, end))
        return states[::-1], sums[::-1]

    states, sums = run(fast=True)
    if _underflowed(sums, mask[:, 1:]):
        states, _ = run(fast=False)
    # shape: (batch, seq_len, num_tags)
    betas = torch.stack(states, dim=1)
    return torch.where(mask.unsqueeze(2), betas, 0.0)


def _log_partition(
    emissions: Tensor, mask: Tensor, start: Tensor, transitions: Tensor, end: Tensor
) -> Tensor:
    emissions, start, transitions, end = _common_dtype(emissions, start, transitions, end)
    batch = emissions.size(0)
    # shape: (batch, seq_len, num_tags)
    alphas = _alphas(emissions, mask, start, transitions)
    # shape: (batch, num_tags)
    last = alphas[torch.arange(batch, device=mask.device), mask.sum(1) - 1]
    # shape: (batch,)
    return torch.logsumexp(last + end, dim=1)


def _forward_backward(
    emissions: Tensor, mask: Tensor, start: Tensor, transitions: Tensor, end: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    # Always float64. Probabilities are differences of log-scores that grow with the sentence
    # (alpha + beta - log Z), and float32 keeps about 7 digits of each: around 2,500 nats, 250
    # tokens in, a rounding step is already 2e-4 nats, and marginals drifted to 1.02 there. In
    # float64 10,000 tokens stay within 1e-9. The loop's cost is per step, not per element, so
    # the wider type costs a few percent of tagging time, and training (`_log_partition`) keeps the
    # dtype of its emissions.
    emissions = emissions.to(torch.promote_types(emissions.dtype, torch.float64))
    emissions, start, transitions, end = _common_dtype(emissions, start, transitions, end)
    batch = emissions.size(0)
    # shape: (batch, seq_len, num_tags)
    alphas = _alphas(emissions, mask, start, transitions)
    # shape: (batch, num_tags)
    last = alphas[torch.arange(batch, device=mask.device), mask.sum(1) - 1]
    # shape: (batch,)
    log_z = torch.logsumexp(last + end, dim=1)
    # shape: (batch, seq_len, num_tags)
    betas = _betas(emissions, mask, transitions, end)
    return torch.where(mask.unsqueeze(2), alphas, 0.0), betas, log_z


# Segment marginals.


def segment_log_probs(
    emissions: Tensor,
    mask: Tensor,
    tag_ids: Tensor,
    spans: tuple[Tensor, Tensor, Tensor],
    lattice: tuple[Tensor, Tensor, Tensor],
    scores: tuple[Tensor, Tensor, Tensor],
    left_excluded: Tensor | None = None,
    right_excluded: Tensor | None = None,
) -> Tensor:
    """`CRF.span_log_probs` read off a lattice the caller already has; no validation.

    For callers that computed `CRF.forward_backward` once for marginals and segments alike (the
    heads, per batch), where validating again would cost more than the arithmetic on short batches.

    Args:
        emissions, mask, tag_ids, left_excluded, right_excluded: as for `CRF.span_log_probs`.
        spans: `(span_batch, span_start, span_end)`, each `(num_spans,)` long.
        lattice: `(alpha, beta, log_z)` from `CRF.forward_backward(emissions, mask)`.
        scores: `(start, transitions, end)` from `CRF.scores()`.
    Returns:
        `(num_spans,)` log-probabilities, at most 0, in the dtype of `emissions`.
    """
    alpha, beta, log_z = lattice
    # The lattice is float64 (see `_forward_backward`); so is every sum below, so that a long
    # sentence's large forward and backward scores cancel without losing digits.
    dtype = emissions.dtype
    wide = emissions.to(alpha.dtype)
    start_scores, transitions, end_scores = (score.to(alpha.dtype) for score in scores)
    b, s, e = spans
    # shape: (batch, seq_len)
    tag_ids = torch.where(mask, tag_ids, 0)
    # Each step along the path: its emission plus the transition into it (none at 0). A
    # difference of these float64 prefix sums loses nothing that matters, even where a forbidden
    # step (FORBIDDEN_SCORE) before the segment enters both.
    # shape: (batch, seq_len)
    step = wide.gather(2, tag_ids.unsqueeze(2)).squeeze(2)
    step[:, 1:] += transitions[tag_ids[:, :-1], tag_ids[:, 1:]]
    cumulative = step.cumsum(dim=1)
    # shape: (num_spans,) twice
    first_tag, last_tag = tag_ids[b, s], tag_ids[b, e - 1]
    # shape: (num_spans,)
    inside = cumulative[b, e - 1] - cumulative[b, s] + wide[b, s, first_tag]
    forbidden = torch.tensor(float("-inf"), dtype=alpha.dtype, device=emissions.device)
    # Left: how the path reaches the first tag (start score, or any allowed previous tag). Not
    # alpha at the first token: a condition on the tag before needs the sum over it spelled out.
    previous = (s - 1).clamp(min=0)
    # shape: (num_spans, num_tags)
    into_first = alpha[b, previous] + transitions[:, first_tag].T
    if left_excluded is not None:
        into_first = torch.where(left_excluded, forbidden, into_first)
    # shape: (num_spans,)
    left = torch.where(s == 0, start_scores[first_tag], torch.logsumexp(into_first, dim=1))
    # Right: how the path leaves the last tag (end score, or any allowed next tag).
    lengths = mask.sum(dim=1)[b]
    following = e.clamp(max=emissions.shape[1] - 1)
    # shape: (num_spans, num_tags)
    out_of_last = transitions[last_tag] + wide[b, following]
    out_of_last = out_of_last + beta[b, following]
    if right_excluded is not None:
        out_of_last = torch.where(right_excluded, forbidden, out_of_last)
    # shape: (num_spans,)
    right = torch.where(e >= lengths, end_scores[last_tag], torch.logsumexp(out_of_last, dim=1))
    # The clamp only takes off rounding: a segment is never likelier than certain.
    return (left + inside + right - log_z[b]).clamp(max=0.0).to(dtype)


# Sequence entropy.

# Pairwise marginals are formed a slice of time at a time, at most this many elements each.
_ENTROPY_CHUNK_ELEMENTS = 1 << 21


def sequence_entropy(
    emissions: Tensor,
    mask: Tensor,
    lattice: tuple[Tensor, Tensor, Tensor],
    scores: tuple[Tensor, Tensor, Tensor],
) -> Tensor:
    """`CRF.entropy` read off a lattice the caller already has; no validation.

    For a distribution `p(y) = exp(s(y)) / Z`, `H = -sum_y p(y) log p(y) = log Z - E_p[s(y)]`, and
    the expected score of a linear chain splits into expected starts, emissions and ends (token
    marginals) and expected transitions (pairwise marginals `p(y_{t-1} = i, y_t = j) =
    exp(alpha[t-1, i] + trans[i, j] + emissions[t, j] + beta[t, j] - log Z)`), as in the
    expectation semiring of Li and Eisner (2009, "First- and second-order expectation semirings
    with applications to minimum-risk training on translation forests", EMNLP). Forbidden steps
    have probability exactly 0 (`exp(FORBIDDEN_SCORE)` underflows), so they add nothing.

    Args:
        emissions: `(batch, seq_len, num_tags)` float.
        mask: `(batch, seq_len)` bool, True on real tokens, left-aligned.
        lattice: `(alpha, beta, log_z)` from `CRF.forward_backward(emissions, mask)` (float64).
        scores: `(start, transitions, end)` from `CRF.scores()`.
    Returns:
        `(batch,)` float64 entropies in nats, at least 0 (the clamp takes off rounding).
    """
    alpha, beta, log_z = lattice
    start, transitions, end = (score.to(alpha.dtype) for score in scores)
    batch, seq_len, num_tags = emissions.shape
    # shape: (batch, seq_len, num_tags); padding zeroed so nothing it holds enters a sum
    wide = torch.where(mask.unsqueeze(2), emissions.to(alpha.dtype), 0.0)
    # shape: (batch, seq_len, num_tags)
    marginals = marginals_from(alpha, beta, log_z, mask)
    rows = torch.arange(batch, device=mask.device)
    # shape: (batch,)
    expected = (marginals * wide).sum((1, 2)) + (marginals[:, 0] * start).sum(1)
    expected = expected + (marginals[rows, mask.sum(1) - 1] * end).sum(1)
    # shape: (batch, seq_len, num_tags): everything after a transition into tag j at t
    after = wide + beta
    step = max(1, _ENTROPY_CHUNK_ELEMENTS // max(1, batch * num_tags * num_tags))
    for first in range(1, seq_len, step):
        last = min(seq_len, first + step)
        # shape: (batch, steps, num_tags, num_tags)
        log_pairs = (
            alpha[:, first - 1 : last - 1, :, None]
            + transitions
            + after[:, first:last, None, :]
            - log_z[:, None, None, None]
        )
        pairs = log_pairs.clamp(max=0.0).exp()
        pairs = torch.where(mask[:, first:last, None, None], pairs, 0.0)
        # shape: (batch,)
        expected = expected + (pairs * transitions).sum((1, 2, 3))
    return (log_z - expected).clamp(min=0.0)


# Decoding.


def _viterbi(
    emissions: Tensor, mask: Tensor, start: Tensor, transitions: Tensor, end: Tensor
) -> tuple[Tensor, Tensor]:
    emissions, start, transitions, end = _common_dtype(emissions, start, transitions, end)
    batch, seq_len, num_tags = emissions.shape
    device = emissions.device
    # Tags before batch: the max over previous tags then runs across contiguous rows of the batch,
    # which vectorises; a max over a trailing dimension of 9 does not.
    # shape: (seq_len, num_tags, batch)
    steps = emissions.permute(1, 2, 0)
    # shape: (num_tags, num_tags, 1)
    moves = transitions.unsqueeze(2)
    # shape: (num_tags, batch)
    score = start.unsqueeze(1) + steps[0]
    scores = [score]
    for step in steps[1:]:
        # No mask in the loop: padding never feeds a real position.
        # shape: (num_tags, num_tags, batch) -> (num_tags, batch)
        score = (score.unsqueeze(1) + moves).amax(0) + step
        scores.append(score)
    # shape: (seq_len, num_tags, batch)
    stacked = torch.stack(scores)
    lengths = mask.sum(1)
    # shape: (batch, num_tags): the scores at each sequence's last real token
    last = stacked[lengths - 1, :, torch.arange(batch, device=device)]
    # shape: (batch,) twice
    best_scores, best_last = (last + end).max(1)
    # The backtrace recomputes each back-pointer for the one tag it follows instead of storing a
    # (seq_len, num_tags, batch) history: on CPU a max with indices costs several times an amax,
    # so this halves the time, and no (num_tags, num_tags, batch) step outlives its loop turn.
    # shape: (seq_len, batch): True from each sequence's last real token on
    from_last = torch.arange(seq_len, device=device).unsqueeze(1) >= lengths - 1
    tag = best_last
    tags = [tag]
    for t in range(seq_len - 2, -1, -1):
        # The same sums as in the forward pass, so the same maximum.
        # shape: (num_tags, batch) -> (batch,)
        previous = (scores[t] + transitions.index_select(1, tag)).max(0).indices
        tag = torch.where(from_last[t], best_last, previous)
        tags.append(tag)
    # shape: (batch, seq_len)
    tag_ids = torch.stack(tags[::-1], dim=1)
    found = mask & (best_scores > float("-inf")).unsqueeze(1)
    return torch.where(found, tag_ids, 0), best_scores


def _kbest(
    emissions: Tensor, mask: Tensor, start: Tensor, transitions: Tensor, end: Tensor, k: int
) -> tuple[Tensor, Tensor]:
    emissions, start, transitions, end = _common_dtype(emissions, start, transitions, end)
    batch, seq_len, num_tags = emissions.shape
    device = emissions.device
    # shape: (seq_len, batch, num_tags)
    steps = emissions.transpose(0, 1)
    # Partial paths are indexed i * k + r: the r-th best path ending in tag i.
    # shape: (num_tags, num_tags * k): [j, i * k + r] scores i -> j
    incoming = transitions.t().repeat_interleave(k, dim=1)
    # shape: (batch, num_tags, k): one path per tag so far; the missing ones score -inf
    score = torch.cat(
        [(start + steps[0]).unsqueeze(2), steps.new_full((batch, num_tags, k - 1), float("-inf"))],
        dim=2,
    )
    scores, history = [score], []
    for step in steps[1:]:
        # shape: (batch, num_tags, num_tags * k)
        extended = score.reshape(batch, 1, num_tags * k) + incoming
        # shape: (batch, num_tags, k) twice, best first
        best, previous = extended.topk(k, dim=2)
        score = best + step.unsqueeze(2)
        scores.append(score)
        history.append(previous)
    batch_ids = torch.arange(batch, device=device)
    # shape: (batch, num_tags, k)
    last = torch.stack(scores)[mask.sum(1) - 1, batch_ids]
    # shape: (batch, num_tags * k)
    final = (last + end.unsqueeze(1)).reshape(batch, num_tags * k)
    # shape: (batch, k) twice
    best_scores, position = final.topk(k, dim=1)
    tags = [position // k]
    if history:
        # shape: (num_tags * k,)
        identity = torch.arange(num_tags * k, device=device)
        # shape: (seq_len - 1, batch, num_tags * k)
        pointers = torch.where(
            mask[:, 1:].t().unsqueeze(2),
            torch.stack(history).reshape(seq_len - 1, batch, num_tags * k),
            identity,
        )
        for t in range(seq_len - 2, -1, -1):
            # shape: (batch, k)
            position = pointers[t].gather(1, position)
            tags.append(position // k)
    # shape: (batch, k, seq_len)
    tag_ids = torch.stack(tags[::-1], dim=2)
    found = mask.unsqueeze(1) & (best_scores > float("-inf")).unsqueeze(2)
    return torch.where(found, tag_ids, 0), best_scores
