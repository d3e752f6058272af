"""The linear-chain CRF in numpy, for the ONNX runtime: partition, Viterbi, marginals, k-best and
entity probabilities over the emissions an exported tagger gives.

Sits after the ONNX graph, in place of `nn/crf.py` and the CRF head, on hosts without torch: this
module imports numpy only. A torch tagger uses it too, for batches of a few sentences
(`decode_torch.NUMPY_CRF_MAX_SENTENCES`), where a numpy call costs less than a torch op's dispatch.
The definitions are exactly those of `nn/crf.py` and `nn/heads.py`
(a path scores start + emissions + transitions + end; forbidden steps score `FORBIDDEN_SCORE` in
sums and `-inf` in decoding; `alpha` includes the emission at t, `beta` excludes it and includes
the end score; an entity's probability sums every way its scheme can write it), and
`tests/test_crf_numpy.py` checks them against the torch CRF. Batch-first with a left-aligned bool
mask; vectorised over the batch, with loops over time only. Sums run in log space (logsumexp);
forward-backward, path scores and entity probabilities in float64, as the torch CRF does.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

FORBIDDEN_SCORE: float = -1e4
"""As `nn.crf.FORBIDDEN_SCORE` (a test holds them equal): the score of a forbidden step in sums."""


@dataclass(frozen=True)
class CrfArrays:
    """A trained CRF as arrays, with its scheme's constraints and entity boundaries.

    Attributes:
        start: `(num_tags,)` float32 start scores (unconstrained parameters).
        transitions: `(num_tags, num_tags)` float32; `[i, j]` scores tag i followed by tag j.
        end: `(num_tags,)` float32 end scores.
        allowed_start, allowed_transitions, allowed_end: bool masks of the same shapes.
        boundary_left, boundary_right: `(num_tags, num_tags)` bool, as `heads.EntityBoundaries`.
        alternative_first: `(num_tags,)` int64, as `heads.EntityBoundaries` (-1: none).
    """

    start: np.ndarray
    transitions: np.ndarray
    end: np.ndarray
    allowed_start: np.ndarray
    allowed_transitions: np.ndarray
    allowed_end: np.ndarray
    boundary_left: np.ndarray
    boundary_right: np.ndarray
    alternative_first: np.ndarray

    def scores(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`(start, transitions, end)` with `FORBIDDEN_SCORE` where forbidden (`CRF.scores`)."""
        return self._scores

    def decode_scores(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`(start, transitions, end)` with `-inf` where forbidden (`CRF._decode_scores`)."""
        return self._decode_scores

    # Made once per instance (the fields are fixed): a one-sentence call would otherwise spend
    # a tenth of its CRF time on these six `where`s.
    @cached_property
    def _scores(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _masked(self, np.float32(FORBIDDEN_SCORE))

    @cached_property
    def _decode_scores(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _masked(self, np.float32(-np.inf))

    @cached_property
    def chain_constants(self) -> ChainConstants:
        """`ChainConstants.of(*self.scores())`, made once."""
        return ChainConstants.of(*self.scores())


def _masked(crf: CrfArrays, forbidden: np.float32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.where(crf.allowed_start, crf.start, forbidden),
        np.where(crf.allowed_transitions, crf.transitions, forbidden),
        np.where(crf.allowed_end, crf.end, forbidden),
    )


def logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    """`log(sum(exp(x), axis))` without overflow; `-inf` where every term is `-inf`."""
    top = np.max(x, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        total = np.log(np.sum(np.exp(x - top), axis=axis))
    return total + np.squeeze(top, axis=axis)


def _lengths(mask: np.ndarray) -> np.ndarray:
    return mask.sum(axis=1)


def _validate(emissions: np.ndarray, mask: np.ndarray, num_tags: int) -> None:
    if emissions.ndim != 3:
        raise ValueError(f"emissions must have 3 dimensions, got {emissions.ndim}")
    if emissions.shape[2] != num_tags:
        raise ValueError(f"expected last dimension of emissions {num_tags}, got {emissions.shape}")
    if mask.shape != emissions.shape[:2] or mask.dtype != np.bool_:
        raise ValueError(f"mask must be bool of shape {emissions.shape[:2]}, got {mask.shape}")
    if emissions.shape[1] == 0 or not mask[:, 0].all():
        raise ValueError("mask of the first timestep must all be on")


def path_scores(
    emissions: np.ndarray,
    tag_ids: np.ndarray,
    mask: np.ndarray,
    start: np.ndarray,
    transitions: np.ndarray,
    end: np.ndarray,
) -> np.ndarray:
    """`(batch,)` score of each given path (`CRF.path_scores`), in the dtype of `emissions`.

    Args:
        emissions: `(batch, seq_len, num_tags)` float.
        tag_ids: `(batch, seq_len)` int tag ids; values at padding are ignored.
        mask: `(batch, seq_len)` bool, True on real tokens, left-aligned.
        start, transitions, end: scores, as `CrfArrays.scores()` gives them.
    """
    dtype = np.result_type(emissions.dtype, start.dtype)
    emissions = emissions.astype(dtype, copy=False)
    batch, seq_len, _ = emissions.shape
    tag_ids = np.where(mask, tag_ids, 0)
    rows = np.arange(batch)
    # shape: (batch, seq_len)
    step = np.take_along_axis(emissions, tag_ids[:, :, None], axis=2)[:, :, 0]
    step[:, 1:] += transitions[tag_ids[:, :-1], tag_ids[:, 1:]].astype(dtype)
    step = np.where(mask, step, 0.0)
    last = tag_ids[rows, _lengths(mask) - 1]
    return step.sum(axis=1) + start[tag_ids[:, 0]].astype(dtype) + end[last].astype(dtype)


def _finite_max(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    """The max over `axis`, 0 where every value is `-inf` (a shift that keeps `exp` finite)."""
    # The ufunc's own reduce: `np.max` adds a Python wrapper, a good part of a short call.
    top = np.maximum.reduce(x, axis=axis)
    return np.where(np.isfinite(top), top, 0.0)


def _exp_transitions(transitions: np.ndarray) -> tuple[np.ndarray, float]:
    """`exp(transitions - shift)` (0 where forbidden) and the shift."""
    shift = float(_finite_max(transitions))
    return np.exp(transitions - shift), shift


def _exp_steps(steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`exp(steps)` with each `(batch, t)` row divided by its max, and those maxima: all steps at
    once, so the recursions' loops hold only the per-step matrix product and rescale."""
    # shape: (batch, seq_len)
    top = _finite_max(steps, axis=2)
    return np.exp(steps - top[:, :, None]), top


def _rescale(scaled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row divided by its max (kept finite and near 1), and the log of that divisor; a row
    of zeros (no path reaches it) stays zeros."""
    # shape: (batch,); `tiny` leaves a zero row as it is, at a finite log
    divisor = np.maximum(np.maximum.reduce(scaled, axis=1), _TINY)
    return scaled / divisor[:, None], np.log(divisor)


_TINY = np.finfo(np.float64).tiny


# The forward and backward recursions run in exp space, each step one (batch x tags) x (tags x
# tags) matrix product, with every row rescaled to a max of 1 and its log-scale carried beside
# it: the log-space recursion's log-sum-exp over a (batch, tags, tags) array took a dozen times
# longer. In float64 a term is lost only if it is ~700 below the best of its row, where its
# probability is 0 anyway. Everything that does not depend on the previous step (the
# exponentiated emissions, the log-scales' running sum, the logs of the rows) is computed outside
# the loop: a short batch (one sentence in a spaCy call) costs a few numpy calls per step.


def _alphas(steps: np.ndarray, start: np.ndarray, transitions: np.ndarray) -> np.ndarray:
    """`(batch, seq_len, num_tags)` forward log-scores; padding continues the recursion (it never
    feeds a real position)."""
    batch, seq_len, num_tags = steps.shape
    exp_steps, step_top = _exp_steps(steps)
    exp_transitions, shift = _exp_transitions(transitions)
    first = start + steps[:, 0]
    first_top = _finite_max(first, axis=1)
    # shape: (batch, seq_len, num_tags) the rescaled rows; (batch, seq_len) what each step
    # adds to the log-scale
    rows = np.empty_like(steps)
    increments = np.empty((batch, seq_len))
    rows[:, 0], increments[:, 0] = _rescale(np.exp(first - first_top[:, None]))
    for t in range(1, seq_len):
        rows[:, t], increments[:, t] = _rescale(
            (rows[:, t - 1] @ exp_transitions) * exp_steps[:, t]
        )
    increments[:, 0] += first_top
    increments[:, 1:] += shift + step_top[:, 1:]
    with np.errstate(divide="ignore"):
        return np.log(rows) + np.cumsum(increments, axis=1)[:, :, None]


def _betas(
    steps: np.ndarray, mask: np.ndarray, transitions: np.ndarray, end: np.ndarray
) -> np.ndarray:
    """`(batch, seq_len, num_tags)` backward log-scores, 0 at padding."""
    batch, seq_len, num_tags = steps.shape
    exp_steps, step_top = _exp_steps(steps)
    exp_transitions, shift = _exp_transitions(transitions)
    backward = np.ascontiguousarray(exp_transitions.T)
    end_top = float(_finite_max(end))
    end_row = np.exp(end - end_top)
    # shape: (batch, seq_len, num_tags) the rescaled rows; (batch, seq_len) the log-scale of each
    rows = np.empty_like(steps)
    log_scales = np.empty((batch, seq_len))
    rows[:, -1], log_scales[:, -1] = end_row, end_top
    # Where t + 1 is padding, t is a last real token (or padding): the recursion restarts there
    # from the end score.
    restarts = ~mask[:, 1:]
    for t in range(seq_len - 2, -1, -1):
        # Scores of the tag at t + 1 and everything after it, then summed over that tag.
        stepped, log_divisor = _rescale((rows[:, t + 1] * exp_steps[:, t + 1]) @ backward)
        log_scales[:, t] = log_scales[:, t + 1] + (shift + step_top[:, t + 1] + log_divisor)
        rows[:, t] = stepped
        if restarts[:, t].any():
            rows[restarts[:, t], t] = end_row
            log_scales[restarts[:, t], t] = end_top
    with np.errstate(divide="ignore"):
        betas = np.log(rows) + log_scales[:, :, None]
    return np.where(mask[:, :, None], betas, 0.0)


def _wide(emissions: np.ndarray, mask: np.ndarray, *scores: np.ndarray) -> tuple[np.ndarray, ...]:
    # Float64, padding emissions zeroed: whatever the caller left there stays out of the sums.
    steps = np.where(mask[:, :, None], emissions.astype(np.float64), 0.0)
    return (steps, *(s.astype(np.float64) for s in scores))


def log_partition(
    emissions: np.ndarray,
    mask: np.ndarray,
    start: np.ndarray,
    transitions: np.ndarray,
    end: np.ndarray,
) -> np.ndarray:
    """`(batch,)` float64 log-sum of the exponentiated scores of all paths (forward algorithm).

    Args:
        emissions: `(batch, seq_len, num_tags)` float, unnormalised scores from the encoder.
        mask: `(batch, seq_len)` bool, True on real tokens, left-aligned; `mask[:, 0]` all True.
        start, transitions, end: scores, as `CrfArrays.scores()` gives them.
    """
    _validate(emissions, mask, transitions.shape[0])
    steps, start, transitions, end = _wide(emissions, mask, start, transitions, end)
    alphas = _alphas(steps, start, transitions)
    # shape: (batch, num_tags)
    last = alphas[np.arange(len(alphas)), _lengths(mask) - 1]
    return logsumexp(last + end, axis=1)


def forward_backward(
    emissions: np.ndarray,
    mask: np.ndarray,
    start: np.ndarray,
    transitions: np.ndarray,
    end: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forward and backward log-scores (`CRF.forward_backward`), float64.

    Returns:
        `(alpha, beta, log_z)`: `(batch, seq_len, num_tags)` twice, 0 at padding, and `(batch,)`.
    """
    _validate(emissions, mask, transitions.shape[0])
    steps, start, transitions, end = _wide(emissions, mask, start, transitions, end)
    alphas = _alphas(steps, start, transitions)
    last = alphas[np.arange(len(alphas)), _lengths(mask) - 1]
    log_z = logsumexp(last + end, axis=1)
    betas = _betas(steps, mask, transitions, end)
    return np.where(mask[:, :, None], alphas, 0.0), betas, log_z


def marginals_from(
    alpha: np.ndarray, beta: np.ndarray, log_z: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """`(batch, seq_len, num_tags)` tag marginals from `forward_backward`; 0 at padding."""
    probs = np.exp(np.minimum(alpha + beta - log_z[:, None, None], 0.0))
    return np.where(mask[:, :, None], probs, 0.0)


def neighbour_class_probs(
    lattice: tuple[np.ndarray, np.ndarray, np.ndarray],
    emissions: np.ndarray,
    transitions: np.ndarray,
    rows: np.ndarray,
    positions: np.ndarray,
    lengths: np.ndarray,
    before: np.ndarray,
    after: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """p(tag at t = b, class of the pair (tag at t - 1, b)) and p(tag at t = b, class of the pair
    (b, tag at t + 1)), at each `(row, t)`: the two halves a tag written in another scheme is
    summed from (`text.schemes.SchemeWriting`).

    Each is a vector-matrix product per position: `exp(alpha[t - 1]) @ (exp(transitions) * [class
    = k])` and its mirror over `beta[t + 1]`, shifted by their maxima, then scaled so that the
    classes of b add up to b's marginal (which they do exactly). A position where the terms of
    some tag underflowed (its likeliest neighbour forbidden next to it, the others e^-575 or
    more below) is summed again in log space.

    Args:
        lattice: `forward_backward`'s `(alpha, beta, log_z)` (a softmax head:
            `independent_class_probs`).
        emissions: `(batch, seq_len, num_tags)` the scores the lattice was made from.
        transitions: `(num_tags, num_tags)` as in the sums (`CrfArrays.scores()[1]`).
        rows, positions: `(n,)` each, real tokens.
        lengths: `(batch,)` the sentences' lengths.
        before: `(num_tags + 1, num_tags)` int, the class of (previous tag, tag), the last row
            for the sentence's start.
        after: `(num_tags, num_tags + 1)` int, the class of (tag, next tag), the last column for
            the sentence's end; None: not wanted.
    Returns:
        `(n, num_tags, classes)` float64 for `before`, and for `after` (or None).
    """
    alpha, beta, log_z = lattice
    marginals = np.exp(
        np.minimum(alpha[rows, positions] + beta[rows, positions] - log_z[rows][:, None], 0.0)
    )
    # The previous tag's forward scores (none before the first token, where the class is the
    # edge's); the score at t itself is the same for every class of b, so it cancels.
    inner = positions > 0
    previous = alpha[rows[inner], positions[inner] - 1]
    starting = _classes_of(
        previous, inner, _ClassWeights.of(transitions, before, after=False), marginals
    )
    if after is None:
        return starting, None
    # The mirror: the next tag's emission and backward scores, through transitions (b, c).
    inner = positions + 1 < lengths[rows]
    r, t = rows[inner], positions[inner] + 1
    following = emissions[r, t].astype(np.float64) + beta[r, t]
    ending = _classes_of(
        following, inner, _ClassWeights.of(transitions, after, after=True), marginals
    )
    return starting, ending


def independent_class_probs(
    log_probs: np.ndarray,
    rows: np.ndarray,
    positions: np.ndarray,
    lengths: np.ndarray,
    before: np.ndarray,
    after: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """`neighbour_class_probs` for a softmax head, whose tokens are independent: its "lattice"
    is the `(batch, seq_len, num_tags)` log-probabilities themselves (0 at padding), with no
    backward scores, partition or transitions."""
    lattice = (log_probs, np.zeros_like(log_probs), np.zeros(len(log_probs)))
    transitions = np.zeros((log_probs.shape[2],) * 2)
    return neighbour_class_probs(
        lattice, log_probs, transitions, rows, positions, lengths, before, after
    )


@dataclass(frozen=True)
class _ClassWeights:
    """What one side of `neighbour_class_probs` multiplies by, made once per model and scheme (a
    tagger calls with the same tables, a sentence at a time).

    Attributes:
        split: `(num_tags, classes * num_tags)` `exp(transitions[a, b])` split by class, side by
            side.
        transitions: `(num_tags, num_tags)` float64, for the log-space sums.
        one_hot: `(num_tags, num_tags, classes)` bool, the class of each `(a, b)`.
        at_edge: `(num_tags, classes)` one-hot class of b at the sentence's edge.
        count: the number of classes.
    """

    split: np.ndarray
    transitions: np.ndarray
    one_hot: np.ndarray
    at_edge: np.ndarray
    count: int

    @staticmethod
    def of(transitions: np.ndarray, table: np.ndarray, after: bool) -> _ClassWeights:
        """The weights of `neighbour_class_probs`'s `before` table, or (`after`) of its `after`
        table seen from the next tag's side."""
        # Looked up by identity: a tagger passes the same arrays call after call (its cached
        # scores, the scheme's tables), and an entry holds them, so their ids stay theirs.
        key = (id(transitions), id(table), after)
        entry = _CLASS_WEIGHTS.get(key)
        if entry is not None and entry[0] is transitions and entry[1] is table:
            return entry[2]
        weights = (
            _ClassWeights.make(transitions.T, table.T)
            if after
            else _ClassWeights.make(transitions, table)
        )
        if len(_CLASS_WEIGHTS) >= 16:
            del _CLASS_WEIGHTS[next(iter(_CLASS_WEIGHTS))]
        _CLASS_WEIGHTS[key] = (transitions, table, weights)
        return weights

    @staticmethod
    def make(transitions: np.ndarray, table: np.ndarray) -> _ClassWeights:
        """From `transitions[a, b]` and `table[a, b]`, whose last row is the edge's."""
        num_tags = len(transitions)
        classes = np.arange(int(table.max(initial=0)) + 1)
        # shape: (num_tags, num_tags, count)
        one_hot = table[:num_tags, :, None] == classes
        weighted = np.exp(transitions.astype(np.float64))[:, :, None] * one_hot
        split = weighted.transpose(0, 2, 1).reshape(num_tags, len(classes) * num_tags)
        at_edge = (table[num_tags, :, None] == classes).astype(np.float64)
        return _ClassWeights(split, transitions.astype(np.float64), one_hot, at_edge, len(classes))


_CLASS_WEIGHTS: dict[tuple[int, int, bool], tuple[np.ndarray, np.ndarray, _ClassWeights]] = {}


# Below this a sum of `_classes_of`'s terms may have lost precision to subnormal floats.
_FAINT = 1e-250


def _classes_of(
    neighbour: np.ndarray, inner: np.ndarray, weights: _ClassWeights, marginals: np.ndarray
) -> np.ndarray:
    """One side of `neighbour_class_probs`: `(n, num_tags, classes)` p(b, class of (a, b)), from
    the neighbours' log-scores `neighbour[m, a]` at the positions `inner` (at the others, the
    sentence's edge, b's class is the edge's) and b's marginals."""
    n, num_tags = marginals.shape
    if inner.all():
        sums = np.empty((n, num_tags, weights.count))
    else:
        sums = np.zeros((n, num_tags, weights.count))
        sums[~inner] = weights.at_edge
    if len(neighbour):
        products = np.exp(neighbour - neighbour.max(1, keepdims=True)) @ weights.split
        sums[inner] = products.reshape(-1, weights.count, num_tags).transpose(0, 2, 1)
    totals = sums.sum(2)
    if (totals < _FAINT).any():
        lost = ((totals < _FAINT) & (marginals > 0.0)).any(1)
        if lost.any():
            # A tag's every term underflowed, or its largest is subnormal (a few bits left):
            # those positions in log space, shifted per tag.
            scores = neighbour[lost[inner]][:, :, None] + weights.transitions[None]
            scaled = np.exp(scores - scores.max(1, keepdims=True))
            sums[lost] = (scaled[:, :, :, None] * weights.one_hot[None]).sum(1)
            totals = sums.sum(2)
    sums *= (marginals / np.where(totals > 0.0, totals, 1.0))[:, :, None]
    return sums


def viterbi_decode(
    emissions: np.ndarray,
    mask: np.ndarray,
    start: np.ndarray,
    transitions: np.ndarray,
    end: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Highest-scoring tag path of each sequence (`nn.crf.viterbi_decode`).

    Args:
        emissions: `(batch, seq_len, num_tags)` float.
        mask: `(batch, seq_len)` bool, True on real tokens, left-aligned; `mask[:, 0]` all True.
        start, transitions, end: scores, `-inf` to forbid (`CrfArrays.decode_scores()`).
    Returns:
        `(tag_ids, scores)`: `(batch, seq_len)` int64 with 0 at padding, and `(batch,)` in the
        dtype of `emissions`; a sequence without a finite path scores `-inf`, tag ids 0.
    """
    _validate(emissions, mask, transitions.shape[0])
    dtype = emissions.dtype
    start, transitions, end = (s.astype(dtype) for s in (start, transitions, end))
    batch, seq_len, num_tags = emissions.shape
    rows = np.arange(batch)
    # Tags before batch, as in `nn.crf._viterbi`: the max over previous tags is then an
    # element-wise max of contiguous (num_tags, batch) slabs, a fifth of the time of a max along
    # the rows of (batch, num_tags, num_tags) with its argmax at batch 256.
    # shape: (seq_len, num_tags, batch)
    steps = np.ascontiguousarray(emissions.transpose(1, 2, 0))
    # shape: (num_tags, num_tags, 1): previous tag i, next tag j
    moves = transitions[:, :, None]
    score = start[:, None] + steps[0]
    scores = [score]
    for step in steps[1:]:
        # No mask in the loop: padding never feeds a real position.
        # shape: (num_tags, num_tags, batch) -> (num_tags, batch)
        score = np.maximum.reduce(score[:, None, :] + moves, axis=0) + step
        scores.append(score)
    lengths = _lengths(mask)
    # shape: (batch, num_tags): the scores at each sequence's last real token
    last = np.stack(scores)[lengths - 1, :, rows]
    final = last + end
    best_last = final.argmax(axis=1)
    best_scores = final[rows, best_last]
    # The backtrace recomputes each back-pointer for the one tag it follows (the same sums as the
    # forward pass, so the same first maximum) instead of keeping every step's argmax.
    # shape: (seq_len, batch): True from each sequence's last real token on
    from_last = np.arange(seq_len)[:, None] >= lengths - 1
    tag = best_last
    tags = [tag]
    for t in range(seq_len - 2, -1, -1):
        # shape: (num_tags, batch) -> (batch,)
        previous = (scores[t] + transitions[:, tag]).argmax(axis=0)
        tag = np.where(from_last[t], best_last, previous)
        tags.append(tag)
    tag_ids = np.stack(tags[::-1], axis=1)
    found = mask & (best_scores > -np.inf)[:, None]
    return np.where(found, tag_ids, 0), best_scores


# One sentence without padding (a spaCy `nlp(text)` call): the same recursions over
# `(seq_len, num_tags)` arrays, each step a few numpy calls on vectors where the batch versions
# broadcast, mask and index `(batch, num_tags)` rows; a third of their time on one sentence.
# `tests/test_crf_numpy.py` holds them to the batch versions and to the torch CRF.


_RESCALE_EVERY = 4
_SMALLEST_TOP = 1e-150
"""`forward_backward_one` rescales its rows every `_RESCALE_EVERY` steps, not every step. A row
grows at most `num_tags`-fold a step (every factor is at most 1), so its max at a rescale
bounds the maxima before it from below; at `_SMALLEST_TOP` or more, nothing that matters to a
float64 probability can have underflowed in between. Below it (or no path at all), the sentence
is redone by `forward_backward`, which rescales every step."""


@dataclass(frozen=True)
class ChainConstants:
    """What `forward_backward_one` needs of a CRF's scores, whatever the sentence: made once per
    CRF (`CrfArrays.chain_constants`), they are half its work on a short sentence.

    Attributes:
        start, transitions, end: the scores, float64.
        block: `(2 * num_tags, 2 * num_tags)` the exponentiated transitions (shifted to a max of
            1) and their transpose on the diagonal: one step of both recursions.
        shift: the transitions' shift.
        end_row, end_top: the end scores exponentiated (shifted to a max of 1), and the shift.
    """

    start: np.ndarray
    transitions: np.ndarray
    end: np.ndarray
    block: np.ndarray
    shift: float
    end_row: np.ndarray
    end_top: float

    @classmethod
    def of(cls, start: np.ndarray, transitions: np.ndarray, end: np.ndarray) -> ChainConstants:
        start, transitions, end = (s.astype(np.float64) for s in (start, transitions, end))
        num_tags = len(start)
        exp_transitions, shift = _exp_transitions(transitions)
        block = np.zeros((2 * num_tags, 2 * num_tags))
        block[:num_tags, :num_tags] = exp_transitions
        block[num_tags:, num_tags:] = exp_transitions.T
        end_top = float(_finite_max(end))
        return cls(start, transitions, end, block, shift, np.exp(end - end_top), end_top)


def forward_backward_one(
    emissions: np.ndarray,
    start: np.ndarray,
    transitions: np.ndarray,
    end: np.ndarray,
    constants: ChainConstants | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """`forward_backward` of one sentence: `emissions` `(seq_len, num_tags)`, every position real;
    scores as `CrfArrays.scores()` gives them; `constants`: `ChainConstants.of` those scores,
    when the caller keeps them.

    Returns:
        `(alpha, beta, log_z)`: `(seq_len, num_tags)` float64 twice, and a float.
    """
    if emissions.ndim != 2 or len(emissions) == 0 or emissions.shape[1] != len(start):
        raise ValueError(f"expected emissions (seq_len >= 1, {len(start)}), got {emissions.shape}")
    chain = constants or ChainConstants.of(start, transitions, end)
    steps = emissions.astype(np.float64)
    seq_len, num_tags = steps.shape
    step_top = _finite_max(steps, axis=1)
    exp_steps = np.exp(steps - step_top[:, None])
    first = chain.start + steps[0]
    first_top = float(_finite_max(first))
    # Both recursions in one loop: step i moves the forward row to position i and the backward
    # row to position seq_len - 1 - i, as one (2 * num_tags) row times `chain.block`.
    # forward: (row @ E) * x[i]; backward: (row * x[p + 1]) @ E.T.
    # shape: (seq_len, 2, num_tags): what multiplies each half before and after the product
    before = np.ones((seq_len, 2, num_tags))
    before[:, 1] = exp_steps[::-1]
    after = np.ones((seq_len, 2, num_tags))
    after[:, 0] = exp_steps
    # shape: (seq_len, 2, num_tags) the rows in loop order, (seq_len, 2) what each was divided by
    rows = np.empty((seq_len, 2, num_tags))
    divisors = np.ones((seq_len, 2))
    rows[0, 0] = np.exp(first - first_top)
    rows[0, 1] = chain.end_row
    row = rows[0]
    for i in range(1, seq_len):
        row = ((row * before[i - 1]).reshape(-1) @ chain.block).reshape(2, num_tags) * after[i]
        if i % _RESCALE_EVERY == 0 or i == seq_len - 1:
            top = np.maximum.reduce(row, axis=1)
            if np.minimum.reduce(top) < _SMALLEST_TOP:
                alpha, beta, log_z = forward_backward(
                    emissions[None], np.ones((1, seq_len), dtype=bool), start, transitions, end
                )
                return alpha[0], beta[0], float(log_z[0])
            if i % _RESCALE_EVERY == 0:
                row = row / top[:, None]
                divisors[i] = top
        rows[i] = row
    increments = np.log(divisors)
    increments[0] += (first_top, chain.end_top)
    increments[1:, 0] += chain.shift + step_top[1:]
    increments[1:, 1] += chain.shift + step_top[:0:-1]
    with np.errstate(divide="ignore"):
        logs = np.log(rows) + np.cumsum(increments, axis=0)[:, :, None]
    alpha, beta = logs[:, 0], logs[::-1, 1]
    log_z = float(logsumexp(alpha[-1] + chain.end, axis=0))
    return alpha, beta, log_z


def viterbi_one(
    emissions: np.ndarray, start: np.ndarray, transitions: np.ndarray, end: np.ndarray
) -> tuple[list[int], float]:
    """`viterbi_decode` of one sentence: `emissions` `(seq_len, num_tags)`, every position real;
    scores as `CrfArrays.decode_scores()` gives them (`-inf` forbids).

    Returns:
        The best path's tag ids and its score (in the dtype of `emissions`); a sentence without
        a finite path gets tag ids 0 and `-inf`, as `viterbi_decode` gives it.
    """
    if emissions.ndim != 2 or len(emissions) == 0 or emissions.shape[1] != len(start):
        raise ValueError(f"expected emissions (seq_len >= 1, {len(start)}), got {emissions.shape}")
    dtype = emissions.dtype
    start, transitions, end = (s.astype(dtype, copy=False) for s in (start, transitions, end))
    score = start + emissions[0]
    history = []
    for step in emissions[1:]:
        # shape: (num_tags, num_tags): previous tag i, next tag j
        candidates = score[:, None] + transitions
        history.append(candidates.argmax(axis=0))
        # the value at the argmax, without indexing it (a third of the step)
        score = np.maximum.reduce(candidates, axis=0) + step
    final = score + end
    best = int(final.argmax())
    best_score = float(final[best])
    if best_score == -np.inf:
        return [0] * len(emissions), best_score
    tags = [best]
    for pointers in reversed(np.stack(history).tolist() if history else []):
        best = pointers[best]
        tags.append(best)
    return tags[::-1], best_score


def _topk(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` largest along the last axis, largest first, and their indices."""
    order = np.argsort(-x, axis=-1, kind="stable")[..., :k]
    return np.take_along_axis(x, order, axis=-1), order


def kbest_decode(
    emissions: np.ndarray,
    mask: np.ndarray,
    start: np.ndarray,
    transitions: np.ndarray,
    end: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The `k` highest-scoring paths of each sequence, best first (`nn.crf.kbest_decode`, list
    Viterbi after Seshadri and Sundberg, 1994).

    Returns:
        `(tag_ids, scores)`: `(batch, k, seq_len)` int64 with 0 at padding, and `(batch, k)`
        descending; missing paths score `-inf` with tag ids 0.
    """
    _validate(emissions, mask, transitions.shape[0])
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    dtype = emissions.dtype
    start, transitions, end = (s.astype(dtype) for s in (start, transitions, end))
    batch, seq_len, num_tags = emissions.shape
    # Partial paths are indexed i * k + r: the r-th best path ending in tag i.
    # shape: (num_tags, num_tags * k): [j, i * k + r] scores i -> j
    incoming = np.repeat(transitions.T, k, axis=1)
    # shape: (batch, num_tags, k)
    score = np.full((batch, num_tags, k), -np.inf, dtype=dtype)
    score[:, :, 0] = start + emissions[:, 0]
    scores, history = [score], []
    for t in range(1, seq_len):
        # shape: (batch, num_tags, num_tags * k)
        extended = score.reshape(batch, 1, num_tags * k) + incoming
        best, previous = _topk(extended, k)
        score = best + emissions[:, t, :, None]
        scores.append(score)
        history.append(previous)
    rows = np.arange(batch)
    lengths = _lengths(mask)
    # shape: (batch, num_tags * k)
    final = (np.stack(scores)[lengths - 1, rows] + end[None, :, None]).reshape(batch, num_tags * k)
    best_scores, position = _topk(final, k)
    tags = [position // k]
    identity = np.arange(num_tags * k)
    for t in range(seq_len - 2, -1, -1):
        # Where t + 1 is padding the path stays where it is.
        pointers = np.where(mask[:, t + 1, None], history[t].reshape(batch, -1), identity)
        position = np.take_along_axis(pointers, position, axis=1)
        tags.append(position // k)
    # shape: (batch, k, seq_len)
    tag_ids = np.stack(tags[::-1], axis=2)
    found = mask[:, None, :] & (best_scores > -np.inf)[:, :, None]
    return np.where(found, tag_ids, 0), best_scores


def kbest_log_probs(
    crf: CrfArrays, emissions: np.ndarray, mask: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The k best paths and their log-probabilities (`CRFHead.kbest`): the search in the dtype of
    `emissions`, each path scored again in float64 against the partition.

    Returns:
        `(batch, k, seq_len)` int64 paths and `(batch, k)` log-probabilities (at most 0, `-inf`
        for a missing path) in the dtype of `emissions`.
    """
    paths, search = kbest_decode(emissions, mask, *crf.decode_scores(), k)
    batch, k, seq_len = paths.shape
    scores = crf.scores()
    wide = emissions.astype(np.float64)
    log_z = log_partition(wide, mask, *scores)
    found = path_scores(
        np.repeat(wide, k, axis=0),
        paths.reshape(batch * k, seq_len),
        np.repeat(mask, k, axis=0),
        *(s.astype(np.float64) for s in scores),
    ).reshape(batch, k)
    log_probs = np.minimum(found - log_z[:, None], 0.0)
    log_probs = np.where(search > -np.inf, log_probs, -np.inf)
    return paths, log_probs.astype(emissions.dtype)


def segment_log_probs(
    emissions: np.ndarray,
    mask: np.ndarray,
    tag_ids: np.ndarray,
    spans: tuple[np.ndarray, np.ndarray, np.ndarray],
    lattice: tuple[np.ndarray, np.ndarray, np.ndarray],
    scores: tuple[np.ndarray, np.ndarray, np.ndarray],
    left_excluded: np.ndarray | None = None,
    right_excluded: np.ndarray | None = None,
) -> np.ndarray:
    """`nn.crf.segment_log_probs`: the log-probability that each span carries the tags of
    `tag_ids` there, with no excluded tag just before or after it.

    Args:
        emissions: `(batch, seq_len, num_tags)` float.
        mask: `(batch, seq_len)` bool.
        tag_ids: `(batch, seq_len)` int, the path the spans were read from.
        spans: `(span_batch, span_start, span_end)`, each `(num_spans,)` int, end exclusive.
        lattice: `(alpha, beta, log_z)` from `forward_backward`.
        scores: `CrfArrays.scores()`.
        left_excluded, right_excluded: `(num_spans, num_tags)` bool, tags not allowed just before
            or after each span, or None.
    Returns:
        `(num_spans,)` log-probabilities, at most 0, in the dtype of `emissions`.
    """
    alpha, beta, log_z = lattice
    wide = emissions.astype(np.float64)
    start_scores, transitions, end_scores = (s.astype(np.float64) for s in scores)
    b, s, e = spans
    tag_ids = np.where(mask, tag_ids, 0)
    # shape: (batch, seq_len): each step's emission plus the transition into it
    step = np.take_along_axis(wide, tag_ids[:, :, None], axis=2)[:, :, 0]
    step[:, 1:] += transitions[tag_ids[:, :-1], tag_ids[:, 1:]]
    cumulative = np.cumsum(step, axis=1)
    first_tag, last_tag = tag_ids[b, s], tag_ids[b, e - 1]
    inside = cumulative[b, e - 1] - cumulative[b, s] + wide[b, s, first_tag]
    previous = np.maximum(s - 1, 0)
    # shape: (num_spans, num_tags)
    into_first = alpha[b, previous] + transitions[:, first_tag].T
    if left_excluded is not None:
        into_first = np.where(left_excluded, -np.inf, into_first)
    left = np.where(s == 0, start_scores[first_tag], logsumexp(into_first, axis=1))
    lengths = _lengths(mask)[b]
    following = np.minimum(e, emissions.shape[1] - 1)
    out_of_last = transitions[last_tag] + wide[b, following] + beta[b, following]
    if right_excluded is not None:
        out_of_last = np.where(right_excluded, -np.inf, out_of_last)
    right = np.where(e >= lengths, end_scores[last_tag], logsumexp(out_of_last, axis=1))
    return np.minimum(left + inside + right - log_z[b], 0.0).astype(emissions.dtype)


def entity_log_probs(
    crf: CrfArrays,
    emissions: np.ndarray,
    mask: np.ndarray,
    tag_ids: np.ndarray,
    spans: tuple[np.ndarray, np.ndarray, np.ndarray],
    lattice: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> np.ndarray:
    """`CRFHead.entity_log_probs`: the probability, summed over every way the scheme can write
    the entity, that its tags are on its span and no tag just outside extends it.

    Returns:
        `(num_spans,)` log-probabilities, at most 0, in the dtype of `emissions`.
    """
    scores = crf.scores()
    b, s, e = spans
    first, last = tag_ids[b, s], tag_ids[b, e - 1]
    right = crf.boundary_right[last]
    result = segment_log_probs(
        emissions, mask, tag_ids, spans, lattice, scores, crf.boundary_left[first], right
    )
    other = crf.alternative_first[first]
    has_other = other >= 0
    if not has_other.any():
        return result
    flipped = tag_ids.copy()
    flipped[b[has_other], s[has_other]] = other[has_other]
    left = crf.boundary_left[np.maximum(other, 0)]
    other_result = segment_log_probs(emissions, mask, flipped, spans, lattice, scores, left, right)
    both = np.minimum(np.logaddexp(result, other_result), 0.0)
    return np.where(has_other, both, result).astype(emissions.dtype)
