"""Tests for `bilstm_nlp.nn.crf`: every algorithm against brute-force enumeration of all tag paths.

Sizes stay small (num_tags <= 5, seq_len <= 4: at most 625 paths per sequence) and scores come
from +-5 so that ties are vanishingly rare. Batches mix lengths, so padding is always exercised.
The oracle enumerates `itertools.product(range(num_tags), repeat=length)`, scored in float64.
"""

from __future__ import annotations

import functools
import itertools
import re

import pytest
import torch
from torch.func import functional_call

import bilstm_nlp.nn.crf as crf_module
from bilstm_nlp.nn.crf import (
    CRF,
    FORBIDDEN_SCORE,
    allowed_tensors,
    constraint_scores,
    kbest_decode,
    marginals_from,
    segment_log_probs,
    sequence_entropy,
    viterbi_decode,
)
from bilstm_nlp.text import schemes
from bilstm_nlp.text.schemes import AllowedTransitions


def allowed_transitions(scheme: str | None, tags: list[str]) -> AllowedTransitions:
    """The scheme's masks as the tensors the CRF keeps (schemes.py gives numpy arrays)."""
    return allowed_tensors(schemes.allowed_transitions(scheme, tags))


SIZES = [(1, 3), (2, 4), (3, 4), (4, 3), (5, 4), (5, 1)]  # (num_tags, seq_len)
SEEDS = [0, 1, 2]
DTYPES = [torch.float64, torch.float32]
NEG_INF = float("-inf")
SCHEME_TAGS = {
    "IOB1": ["O", "I-PER", "B-PER", "I-LOC", "B-LOC"],
    "IOB2": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
    "BIOES": ["O", "B-PER", "I-PER", "E-PER", "S-PER"],
}


# Oracle helpers.


@functools.cache
def all_paths(num_tags: int, length: int) -> torch.Tensor:
    """`(num_tags ** length, length)` long: every tag path of that length. Shared: do not modify."""
    paths = list(itertools.product(range(num_tags), repeat=length))
    return torch.tensor(paths, dtype=torch.long).reshape(len(paths), length)


def enumerated_scores(
    emissions: torch.Tensor, paths: torch.Tensor, scores: tuple[torch.Tensor, ...]
) -> torch.Tensor:
    """`(P,)` float64 score of each path. emissions: `(length, num_tags)`; paths: `(P, length)`."""
    start, transitions, end = (s.detach().double() for s in scores)
    emissions = emissions.detach().double()
    total = start[paths[:, 0]] + end[paths[:, -1]]
    total = total + emissions[torch.arange(paths.size(1)), paths].sum(1)
    return total + transitions[paths[:, :-1], paths[:, 1:]].sum(1)


def enumerated_marginals(paths: torch.Tensor, scores: torch.Tensor, num_tags: int) -> torch.Tensor:
    """`(length, num_tags)`: probability mass of the paths with tag j at t."""
    probs = scores.softmax(0)
    one_hot = torch.nn.functional.one_hot(paths, num_tags).double()
    return (probs[:, None, None] * one_hot).sum(0)


def logsumexp_by_tag(scores: torch.Tensor, tags: torch.Tensor, num_tags: int) -> torch.Tensor:
    """`(num_tags,)`: logsumexp of `scores` over the paths whose tag (`tags`, `(P,)`) is j."""
    one_hot = torch.nn.functional.one_hot(tags, num_tags).bool()
    return torch.where(one_hot, scores.unsqueeze(1), NEG_INF).logsumexp(0)


def path_is_allowed(paths: torch.Tensor, allowed: AllowedTransitions) -> torch.Tensor:
    """`(P,)` bool: no forbidden start, transition or end on the path."""
    ok = allowed.start[paths[:, 0]] & allowed.end[paths[:, -1]]
    return ok & allowed.transitions[paths[:, :-1], paths[:, 1:]].all(1)


def random_crf(num_tags: int, seed: int, allowed: AllowedTransitions | None = None) -> CRF:
    torch.manual_seed(seed)
    crf = CRF(num_tags, allowed)
    with torch.no_grad():
        for parameter in crf.parameters():
            parameter.uniform_(-5.0, 5.0)
    return crf


def random_batch(
    num_tags: int, seq_len: int, seed: int, batch: int = 5, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Emissions `(batch, seq_len, num_tags)` uniform in +-5 and a mixed-length bool mask."""
    generator = torch.Generator().manual_seed(1000 + seed)
    emissions = torch.rand(batch, seq_len, num_tags, generator=generator, dtype=dtype) * 10 - 5
    lengths = torch.randint(1, seq_len + 1, (batch,), generator=generator)
    lengths[0] = seq_len
    lengths[-1] = 1
    mask = torch.arange(seq_len) < lengths.unsqueeze(1)
    return emissions, mask


def random_allowed(num_tags: int, seq_len: int, seed: int) -> AllowedTransitions:
    """Random masks under which every length 1..seq_len has at least one allowed path."""
    generator = torch.Generator().manual_seed(2000 + seed)
    while True:
        allowed = AllowedTransitions(
            torch.rand(num_tags, generator=generator) < 0.6,
            torch.rand(num_tags, num_tags, generator=generator) < 0.6,
            torch.rand(num_tags, generator=generator) < 0.6,
        )
        lengths = range(1, seq_len + 1)
        if all(path_is_allowed(all_paths(num_tags, n), allowed).any() for n in lengths):
            return allowed


def lengths_of(mask: torch.Tensor) -> list[int]:
    return mask.sum(1).tolist()


def close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    tolerance = 1e-9 if dtype == torch.float64 else 2e-4
    actual, expected = actual.detach().double(), expected.detach().double()
    torch.testing.assert_close(actual, expected, atol=tolerance, rtol=tolerance)


def raw_scores(crf: CRF) -> tuple[torch.Tensor, ...]:
    return crf.start_transitions, crf.transitions, crf.end_transitions


# Brute-force oracles.


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("num_tags", "seq_len"), SIZES)
def test_log_partition_and_likelihood_match_enumeration(num_tags, seq_len, seed, dtype):
    crf = random_crf(num_tags, seed).to(dtype)
    emissions, mask = random_batch(num_tags, seq_len, seed, dtype=dtype)
    tag_ids = torch.randint(num_tags, mask.shape)
    log_z = crf.log_partition(emissions, mask)
    log_likelihood = crf.log_likelihood(emissions, tag_ids, mask)
    expected_z, expected_likelihood = [], []
    for b, length in enumerate(lengths_of(mask)):
        paths = all_paths(num_tags, length)
        expected_z.append(
            enumerated_scores(emissions[b, :length], paths, crf.scores()).logsumexp(0)
        )
        gold = enumerated_scores(emissions[b, :length], tag_ids[b : b + 1, :length], crf.scores())
        expected_likelihood.append(gold[0] - expected_z[-1])
    close(log_z, torch.stack(expected_z), dtype)
    close(log_likelihood, torch.stack(expected_likelihood), dtype)
    close(crf(emissions, tag_ids, mask), -torch.stack(expected_likelihood).sum(), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("num_tags", "seq_len"), SIZES)
def test_viterbi_matches_enumeration(num_tags, seq_len, seed, dtype):
    crf = random_crf(num_tags, seed).to(dtype)
    emissions, mask = random_batch(num_tags, seq_len, seed, dtype=dtype)
    tag_ids, best = crf.viterbi_decode(emissions, mask)
    assert tag_ids.shape == mask.shape and tag_ids.dtype == torch.long
    assert (tag_ids[~mask] == 0).all()
    expected_best = []
    for b, length in enumerate(lengths_of(mask)):
        paths = all_paths(num_tags, length)
        scores = enumerated_scores(emissions[b, :length], paths, crf.scores())
        assert tag_ids[b, :length].tolist() == paths[scores.argmax()].tolist()
        expected_best.append(scores.max())
    close(best, torch.stack(expected_best), dtype)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("num_tags", "seq_len"), SIZES)
def test_kbest_matches_enumeration(num_tags, seq_len, seed):
    crf = random_crf(num_tags, seed).double()
    emissions, mask = random_batch(num_tags, seq_len, seed)
    for k in (1, 3, num_tags**seq_len, num_tags**seq_len + 3):
        tag_ids, scores = crf.kbest_decode(emissions, mask, k)
        assert tag_ids.shape == (mask.size(0), k, seq_len) and scores.shape == (mask.size(0), k)
        assert (tag_ids.masked_select(~mask.unsqueeze(1)) == 0).all()
        for b, length in enumerate(lengths_of(mask)):
            paths = all_paths(num_tags, length)
            expected = enumerated_scores(emissions[b, :length], paths, crf.scores())
            order = expected.argsort(descending=True)[:k]
            found = len(order)
            close(scores[b, :found], expected[order], torch.float64)
            assert tag_ids[b, :found, :length].tolist() == paths[order].tolist()
            # Fewer paths than k: the rest score -inf and hold tag id 0.
            assert (scores[b, found:] == NEG_INF).all() and (tag_ids[b, found:] == 0).all()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("num_tags", "seq_len"), SIZES)
def test_kbest_first_path_is_viterbi(num_tags, seq_len, seed):
    crf = random_crf(num_tags, seed)
    emissions, mask = random_batch(num_tags, seq_len, seed, batch=16, dtype=torch.float32)
    viterbi_ids, viterbi_scores = crf.viterbi_decode(emissions, mask)
    for k in (1, 4):
        tag_ids, scores = crf.kbest_decode(emissions, mask, k)
        assert torch.equal(tag_ids[:, 0], viterbi_ids)
        torch.testing.assert_close(scores[:, 0], viterbi_scores)
        finite = scores[:, 1:] > NEG_INF
        assert (scores[:, :-1] >= scores[:, 1:])[finite].all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("num_tags", "seq_len"), SIZES)
def test_marginals_match_enumeration(num_tags, seq_len, seed, dtype):
    crf = random_crf(num_tags, seed).to(dtype)
    emissions, mask = random_batch(num_tags, seq_len, seed, dtype=dtype)
    marginals = crf.marginals(emissions, mask)
    assert marginals.shape == emissions.shape
    assert (marginals[~mask] == 0).all()
    close(marginals.sum(2)[mask], torch.ones(int(mask.sum())), dtype)
    for b, length in enumerate(lengths_of(mask)):
        paths = all_paths(num_tags, length)
        scores = enumerated_scores(emissions[b, :length], paths, crf.scores())
        close(marginals[b, :length], enumerated_marginals(paths, scores, num_tags), dtype)


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("num_tags", "seq_len"), SIZES)
def test_sequence_entropy_matches_enumeration(num_tags, seq_len, seed, dtype, constrained):
    allowed = random_allowed(num_tags, seq_len, seed) if constrained else None
    crf = random_crf(num_tags, seed, allowed).to(dtype)
    emissions, mask = random_batch(num_tags, seq_len, seed, dtype=dtype)
    entropy = crf.entropy(emissions, mask)
    assert entropy.dtype == torch.float64 and (entropy >= 0).all()
    for b, length in enumerate(lengths_of(mask)):
        paths = all_paths(num_tags, length)
        if allowed is not None:
            paths = paths[path_is_allowed(paths, allowed)]
        # -sum p log p over the allowed paths, scored with the raw parameters.
        log_probs = enumerated_scores(emissions[b, :length], paths, raw_scores(crf)).log_softmax(0)
        close(entropy[b], -(log_probs.exp() * log_probs).sum(), dtype)


def test_sequence_entropy_in_time_slices_equals_one_slice(monkeypatch):
    crf = random_crf(5, 2, allowed_transitions("BIOES", SCHEME_TAGS["BIOES"])).double()
    emissions, mask = random_batch(5, 4, 2, batch=7)
    whole = crf.entropy(emissions, mask)
    monkeypatch.setattr(crf_module, "_ENTROPY_CHUNK_ELEMENTS", 1)
    sliced = sequence_entropy(emissions, mask, crf.forward_backward(emissions, mask), crf.scores())
    torch.testing.assert_close(sliced, whole, atol=1e-12, rtol=0)
    # A certain sequence (one allowed path carrying all the mass) has entropy 0.
    sure = torch.full((1, 4, 5), -30.0, dtype=torch.float64)
    sure[0, :, 0] = 30.0
    assert float(crf.entropy(sure, torch.ones(1, 4, dtype=torch.bool)).detach()) < 1e-9


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("num_tags", "seq_len"), SIZES)
def test_forward_backward_matches_enumeration(num_tags, seq_len, seed):
    crf = random_crf(num_tags, seed).double()
    emissions, mask = random_batch(num_tags, seq_len, seed)
    alpha, beta, log_z = crf.forward_backward(emissions, mask)
    start, transitions, end = crf.scores()
    no_score = torch.zeros(num_tags, dtype=torch.float64)
    assert (alpha[~mask] == 0).all() and (beta[~mask] == 0).all()
    close(log_z, crf.log_partition(emissions, mask), torch.float64)
    for b, length in enumerate(lengths_of(mask)):
        expected_alpha, expected_beta = [], []
        for t in range(length):
            # alpha: prefixes y_0..y_t, emission at t included, no end score.
            prefixes = all_paths(num_tags, t + 1)
            prefix_scores = enumerated_scores(
                emissions[b, : t + 1], prefixes, (start, transitions, no_score)
            )
            expected_alpha.append(logsumexp_by_tag(prefix_scores, prefixes[:, t], num_tags))
            # beta: given y_t = j, the suffixes y_t..y_last without the emission at t.
            suffixes = all_paths(num_tags, length - t)
            suffix_emissions = torch.cat([torch.zeros(1, num_tags), emissions[b, t + 1 : length]])
            suffix_scores = enumerated_scores(
                suffix_emissions, suffixes, (no_score, transitions, end)
            )
            expected_beta.append(logsumexp_by_tag(suffix_scores, suffixes[:, 0], num_tags))
        close(alpha[b, :length], torch.stack(expected_alpha), torch.float64)
        close(beta[b, :length], torch.stack(expected_beta), torch.float64)
        per_position = (alpha[b, :length] + beta[b, :length]).logsumexp(1)
        close(per_position, log_z[b].expand(length), torch.float64)


def enumerated_span_log_probs(
    crf: CRF,
    emissions: torch.Tensor,
    mask: torch.Tensor,
    tag_ids: torch.Tensor,
    spans: list[tuple[int, int, int]],
    left_excluded: torch.Tensor,
    right_excluded: torch.Tensor,
) -> torch.Tensor:
    """`(num_spans,)`: log of the mass of the paths that carry `tag_ids[b, start:end]` on the span,
    no left-excluded tag at `start - 1` and no right-excluded tag at `end`, over all paths."""
    expected = []
    for i, (b, start, end) in enumerate(spans):
        length = int(mask[b].sum())
        paths = all_paths(crf.num_tags, length)
        scores = enumerated_scores(emissions[b, :length], paths, crf.scores())
        matches = (paths[:, start:end] == tag_ids[b, start:end]).all(1)
        if start > 0:
            matches &= ~left_excluded[i, paths[:, start - 1]]
        if end < length:
            matches &= ~right_excluded[i, paths[:, end]]
        expected.append(scores[matches].logsumexp(0) - scores.logsumexp(0))
    return torch.stack(expected)


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("num_tags", "seq_len"), [*SIZES, (3, 5), (5, 5)])
def test_span_log_probs_match_enumeration(num_tags, seq_len, seed, dtype, constrained):
    allowed = random_allowed(num_tags, seq_len, seed) if constrained else None
    crf = random_crf(num_tags, seed, allowed).to(dtype)
    emissions, mask = random_batch(num_tags, seq_len, seed, dtype=dtype)
    # Any path works, not only the best one; ids at padding are ignored.
    tag_ids = torch.randint(num_tags, mask.shape).masked_fill(~mask, -100)
    spans = [
        (b, start, end)
        for b, length in enumerate(lengths_of(mask))
        for start in range(length)
        for end in range(start + 1, length + 1)
    ]
    span_batch, span_start, span_end = torch.tensor(spans).unbind(1)
    generator = torch.Generator().manual_seed(seed)
    no_condition = torch.zeros(len(spans), num_tags, dtype=torch.bool)
    left_excluded = torch.rand(len(spans), num_tags, generator=generator) < 0.4
    right_excluded = torch.rand(len(spans), num_tags, generator=generator) < 0.4
    for left, right in [(None, None), (left_excluded, right_excluded)]:
        log_probs = crf.span_log_probs(
            emissions, mask, tag_ids, span_batch, span_start, span_end, left, right
        )
        assert log_probs.shape == (len(spans),) and log_probs.dtype == dtype
        expected = enumerated_span_log_probs(
            crf,
            emissions,
            mask,
            tag_ids,
            spans,
            no_condition if left is None else left,
            no_condition if right is None else right,
        )
        if constrained:
            # A segment no allowed path carries has mass exp(-1e4 * steps): 0 either way.
            possible = expected > -1000
            close(log_probs.exp()[~possible], torch.zeros(int((~possible).sum())), dtype)
            close(log_probs[possible], expected[possible], dtype)
        else:
            close(log_probs, expected, dtype)


def test_module_level_readers_of_a_shared_lattice_equal_the_methods():
    crf = random_crf(5, 1, allowed_transitions("IOB1", SCHEME_TAGS["IOB1"]))
    emissions, mask = random_batch(5, 4, 1, dtype=torch.float32)
    tag_ids, _ = crf.viterbi_decode(emissions, mask)
    spans = torch.tensor([[0, 0, 2], [0, 1, 4], [1, 0, 1]]).unbind(1)
    left = torch.tensor([[False, True, True, False, False]]).expand(3, 5)
    lattice = crf.forward_backward(emissions, mask)
    own = crf.span_log_probs(emissions, mask, tag_ids, *spans, left_excluded=left)
    shared = segment_log_probs(emissions, mask, tag_ids, spans, lattice, crf.scores(), left)
    assert torch.equal(shared, own) and shared.dtype == torch.float32
    marginals = marginals_from(*lattice, mask).float()
    assert torch.equal(marginals, crf.marginals(emissions, mask))


def test_span_of_a_whole_sequence_is_its_log_likelihood():
    crf = random_crf(5, 0)
    emissions, mask = random_batch(5, 4, 0, batch=8, dtype=torch.float32)
    tag_ids, _ = crf.viterbi_decode(emissions, mask)
    starts = torch.zeros(8, dtype=torch.long)
    log_probs = crf.span_log_probs(emissions, mask, tag_ids, torch.arange(8), starts, mask.sum(1))
    torch.testing.assert_close(log_probs, crf.log_likelihood(emissions, tag_ids, mask))


# Constraints.


@pytest.mark.parametrize("seed", [*SEEDS, 3, 4, 5])
@pytest.mark.parametrize(("num_tags", "seq_len"), [(3, 4), (4, 4), (5, 4), (5, 3)])
def test_random_constraints_match_enumeration_over_allowed_paths(num_tags, seq_len, seed):
    allowed = random_allowed(num_tags, seq_len, seed)
    crf = random_crf(num_tags, seed, allowed).double()
    emissions, mask = random_batch(num_tags, seq_len, seed, batch=6)
    log_z = crf.log_partition(emissions, mask)
    viterbi_ids, viterbi_scores = crf.viterbi_decode(emissions, mask)
    kbest_ids, kbest_scores = crf.kbest_decode(emissions, mask, num_tags**seq_len + 1)
    marginals = crf.marginals(emissions, mask)
    for b, length in enumerate(lengths_of(mask)):
        paths = all_paths(num_tags, length)
        paths = paths[path_is_allowed(paths, allowed)]
        # Allowed paths only, scored with the raw parameters: no forbidden entry is ever touched.
        scores = enumerated_scores(emissions[b, :length], paths, raw_scores(crf))
        close(log_z[b], scores.logsumexp(0), torch.float64)
        assert viterbi_ids[b, :length].tolist() == paths[scores.argmax()].tolist()
        close(viterbi_scores[b], scores.max(), torch.float64)
        order = scores.argsort(descending=True)
        found = len(order)
        assert kbest_ids[b, :found, :length].tolist() == paths[order].tolist()
        close(kbest_scores[b, :found], scores[order], torch.float64)
        assert (kbest_scores[b, found:] == NEG_INF).all() and (kbest_ids[b, found:] == 0).all()
        close(marginals[b, :length], enumerated_marginals(paths, scores, num_tags), torch.float64)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("scheme", ["IOB1", "IOB2", "BIOES"])
def test_scheme_constraints_are_never_violated(scheme, seed):
    tags = SCHEME_TAGS[scheme]
    allowed = allowed_transitions(scheme, tags)
    crf = random_crf(len(tags), seed, allowed)
    # Emissions of +-100 favour forbidden tags (I- after O and the like) by far more than the
    # transition scores can: nothing forbidden may leak through all the same.
    emissions, mask = random_batch(len(tags), 4, seed, batch=16, dtype=torch.float32)
    emissions = emissions * 20
    allowed_paths = {}
    for length in range(1, 5):
        paths = all_paths(len(tags), length)
        allowed_paths[length] = paths[path_is_allowed(paths, allowed)]
    viterbi_ids, viterbi_scores = crf.viterbi_decode(emissions, mask)
    kbest_ids, kbest_scores = crf.kbest_decode(emissions, mask, len(allowed_paths[4]) + 1)
    log_z = crf.log_partition(emissions, mask)
    for b, length in enumerate(lengths_of(mask)):
        paths = allowed_paths[length]
        found = int((kbest_scores[b] > NEG_INF).sum())
        assert found == len(paths)  # exactly the allowed paths, no forbidden one
        assert path_is_allowed(kbest_ids[b, :found, :length], allowed).all()
        assert path_is_allowed(viterbi_ids[b : b + 1, :length], allowed).all()
        scores = enumerated_scores(emissions[b, :length], paths, raw_scores(crf))
        assert viterbi_ids[b, :length].tolist() == paths[scores.argmax()].tolist()
        close(viterbi_scores[b], scores.max(), torch.float32)
        close(log_z[b], scores.logsumexp(0), torch.float32)


def test_no_allowed_path_gives_minus_infinity_and_zero_ids():
    # BIOES over B/I/E only: no one-token sequence is allowed (no tag may both start and end).
    allowed = allowed_transitions("BIOES", ["B-PER", "I-PER", "E-PER"])
    crf = random_crf(3, 0, allowed)
    emissions = torch.randn(2, 3, 3)
    mask = torch.tensor([[True, False, False], [True, True, True]])
    tag_ids, scores = crf.viterbi_decode(emissions, mask)
    assert scores[0] == NEG_INF and (tag_ids[0] == 0).all()
    assert scores[1] > NEG_INF and tag_ids[1].tolist() == [0, 1, 2]
    kbest_ids, kbest_scores = crf.kbest_decode(emissions, mask, 3)
    assert (kbest_scores[0] == NEG_INF).all() and (kbest_ids[0] == 0).all()
    assert kbest_scores[1, 0] > NEG_INF and (kbest_scores[1, 1:] == NEG_INF).all()
    assert kbest_ids[1, 0].tolist() == [0, 1, 2]

    # Only tag 2 may end, and nothing may reach it: no path at all, yet partial paths do exist.
    transitions = torch.ones(3, 3, dtype=torch.bool)
    transitions[:, 2] = False
    allowed = AllowedTransitions(
        torch.tensor([True, True, False]), transitions, torch.tensor([False, False, True])
    )
    crf = random_crf(3, 0, allowed)
    emissions = torch.tensor([[[0.0, 9.0, 0.0], [0.0, 0.0, 0.0]]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    tag_ids, scores = crf.viterbi_decode(emissions, mask)
    assert scores[0] == NEG_INF and tag_ids[0].tolist() == [0, 0]
    kbest_ids, kbest_scores = crf.kbest_decode(emissions, mask, 2)
    assert (kbest_scores == NEG_INF).all() and (kbest_ids == 0).all()


def test_constraint_scores_scores_and_buffers():
    allowed = allowed_transitions("IOB2", SCHEME_TAGS["IOB2"])  # O B-PER I-PER B-LOC I-LOC
    start, transitions, end = constraint_scores(allowed, 5)
    assert start.tolist() == [0.0, 0.0, FORBIDDEN_SCORE, 0.0, FORBIDDEN_SCORE]
    assert transitions[0, 2] == FORBIDDEN_SCORE and transitions[3, 2] == FORBIDDEN_SCORE
    assert transitions[1, 2] == 0.0 and transitions[2, 1] == 0.0 and transitions[4, 4] == 0.0
    assert (end == 0).all()
    for scores in constraint_scores(None, 5):
        assert (scores == 0).all()

    crf = random_crf(5, 0, allowed)
    crf_start, crf_transitions, crf_end = crf.scores()
    assert torch.equal(crf_transitions == FORBIDDEN_SCORE, ~allowed.transitions)
    assert torch.equal(crf_start, torch.where(allowed.start, crf.start_transitions, start))
    assert torch.equal(crf_end, crf.end_transitions)

    state = crf.state_dict()
    assert torch.equal(state["allowed_transitions"], allowed.transitions)
    assert state["allowed_start"].dtype == torch.bool and "allowed_end" in state
    unconstrained = CRF(5)
    assert unconstrained.allowed_transitions.all() and unconstrained.allowed_start.all()
    unconstrained.load_state_dict(state)
    assert torch.equal(unconstrained.allowed_transitions, allowed.transitions)
    assert torch.equal(unconstrained.transitions, crf.transitions)


def test_init_is_uniform_within_a_tenth():
    torch.manual_seed(0)
    crf = CRF(9)
    for parameter in crf.parameters():
        assert parameter.abs().max() <= 0.1
    assert crf.transitions.std() > 0.02


def test_module_level_decoders_take_any_scores():
    crf = random_crf(4, 0, random_allowed(4, 4, 0))
    emissions, mask = random_batch(4, 4, 0, batch=8, dtype=torch.float32)
    # The CRF decodes with -inf at forbidden entries.
    scores = tuple(
        torch.where(allowed, score, NEG_INF).detach()
        for allowed, score in zip(
            (crf.allowed_start, crf.allowed_transitions, crf.allowed_end),
            raw_scores(crf),
            strict=True,
        )
    )
    for actual, expected in zip(
        viterbi_decode(emissions, mask, *scores), crf.viterbi_decode(emissions, mask), strict=True
    ):
        assert torch.equal(actual, expected)
    for actual, expected in zip(
        kbest_decode(emissions, mask, *scores, 3), crf.kbest_decode(emissions, mask, 3), strict=True
    ):
        assert torch.equal(actual, expected)


# Batching, padding, gradients.


@pytest.mark.parametrize("seed", SEEDS)
def test_batched_equals_one_at_a_time(seed):
    num_tags, seq_len = 5, 4
    crf = random_crf(num_tags, seed, random_allowed(num_tags, seq_len, seed))
    emissions, mask = random_batch(num_tags, seq_len, seed, batch=12, dtype=torch.float32)
    tag_ids = torch.randint(num_tags, mask.shape)
    log_z = crf.log_partition(emissions, mask)
    log_likelihood = crf.log_likelihood(emissions, tag_ids, mask)
    viterbi_ids, viterbi_scores = crf.viterbi_decode(emissions, mask)
    kbest_ids, kbest_scores = crf.kbest_decode(emissions, mask, 5)
    marginals = crf.marginals(emissions, mask)
    alpha, beta, _ = crf.forward_backward(emissions, mask)
    for b, length in enumerate(lengths_of(mask)):
        one = emissions[b : b + 1, :length]
        one_mask = torch.ones(1, length, dtype=torch.bool)
        one_ids = tag_ids[b : b + 1, :length]
        torch.testing.assert_close(crf.log_partition(one, one_mask)[0], log_z[b])
        torch.testing.assert_close(crf.log_likelihood(one, one_ids, one_mask)[0], log_likelihood[b])
        ids, score = crf.viterbi_decode(one, one_mask)
        assert torch.equal(ids[0], viterbi_ids[b, :length])
        torch.testing.assert_close(score[0], viterbi_scores[b])
        ids, scores = crf.kbest_decode(one, one_mask, 5)
        assert torch.equal(ids[0], kbest_ids[b, :, :length])
        torch.testing.assert_close(scores[0], kbest_scores[b])
        torch.testing.assert_close(crf.marginals(one, one_mask)[0], marginals[b, :length])
        one_alpha, one_beta, _ = crf.forward_backward(one, one_mask)
        torch.testing.assert_close(one_alpha[0], alpha[b, :length])
        torch.testing.assert_close(one_beta[0], beta[b, :length])


def test_padding_content_is_ignored():
    crf = random_crf(5, 0, allowed_transitions("BIOES", SCHEME_TAGS["BIOES"]))
    emissions, mask = random_batch(5, 4, 0, batch=8, dtype=torch.float32)
    tag_ids = torch.randint(5, mask.shape)
    garbage = emissions.clone()
    garbage[~mask] = float("nan")
    garbage[~mask & (torch.arange(4) % 2 == 0)] = float("inf")
    clean_nll = crf(emissions, tag_ids, mask)
    garbage.requires_grad_(True)
    garbage_nll = crf(garbage, tag_ids.masked_fill(~mask, -100), mask)
    torch.testing.assert_close(garbage_nll, clean_nll)
    garbage_nll.backward()
    assert torch.isfinite(garbage.grad).all() and (garbage.grad[~mask] == 0).all()
    torch.testing.assert_close(crf.log_partition(garbage, mask), crf.log_partition(emissions, mask))
    torch.testing.assert_close(crf.marginals(garbage, mask), crf.marginals(emissions, mask))
    for clean, dirty in [
        (crf.viterbi_decode(emissions, mask), crf.viterbi_decode(garbage, mask)),
        (crf.kbest_decode(emissions, mask, 3), crf.kbest_decode(garbage, mask, 3)),
    ]:
        assert torch.equal(clean[0], dirty[0])
        torch.testing.assert_close(clean[1], dirty[1])


def test_backward_gives_finite_gradients_and_none_for_forbidden_entries():
    allowed = allowed_transitions("IOB2", SCHEME_TAGS["IOB2"])
    crf = random_crf(5, 0, allowed)
    emissions, mask = random_batch(5, 4, 0, batch=16, dtype=torch.float32)
    emissions.requires_grad_(True)
    viterbi_ids, _ = crf.viterbi_decode(emissions, mask)
    loss = crf(emissions, viterbi_ids, mask)
    loss.backward()
    for tensor in (emissions, *crf.parameters()):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all()
    assert (crf.transitions.grad[~allowed.transitions] == 0).all()
    assert (crf.start_transitions.grad[~allowed.start] == 0).all()
    assert crf.transitions.grad.abs().sum() > 0
    # The gradient of the NLL wrt the emissions is the marginals minus the gold one-hot.
    one_hot = torch.nn.functional.one_hot(viterbi_ids, 5).float() * mask.unsqueeze(2)
    torch.testing.assert_close(emissions.grad, crf.marginals(emissions, mask) - one_hot)


@pytest.mark.parametrize("scheme", [None, "BIOES"])
def test_gradcheck_log_likelihood(scheme):
    tags = SCHEME_TAGS["BIOES"]
    crf = random_crf(len(tags), 0, allowed_transitions(scheme, tags)).double()
    emissions, mask = random_batch(len(tags), 4, 0, batch=4)
    tag_ids, _ = crf.viterbi_decode(emissions, mask)
    names = ("start_transitions", "transitions", "end_transitions")

    def negative_log_likelihood(emissions, start, transitions, end):
        parameters = dict(zip(names, (start, transitions, end), strict=True))
        return functional_call(crf, parameters, (emissions, tag_ids, mask), strict=False)

    inputs = [emissions, *raw_scores(crf)]
    inputs = tuple(tensor.detach().clone().requires_grad_(True) for tensor in inputs)
    assert torch.autograd.gradcheck(negative_log_likelihood, inputs)
    # Per sequence, wrt the emissions; and the marginals, which confidences are read from.
    assert torch.autograd.gradcheck(lambda e: crf.log_likelihood(e, tag_ids, mask), inputs[:1])
    assert torch.autograd.gradcheck(lambda e: crf.marginals(e, mask), inputs[:1])


# The exp-space fast path and its exact fallback.


def test_underflow_falls_back_to_exact_recursion(monkeypatch):
    # Emissions +-300: sums over tags that trail the best one underflow in float32.
    num_tags, seq_len = 4, 4
    crf = random_crf(num_tags, 1, random_allowed(num_tags, seq_len, 1))
    emissions, mask = random_batch(num_tags, seq_len, 1, batch=6, dtype=torch.float32)
    emissions = (emissions * 60).requires_grad_(True)
    calls = []
    exact = crf_module._exact_vecmat
    monkeypatch.setattr(crf_module, "_exact_vecmat", lambda *a: calls.append(1) or exact(*a))
    tag_ids, _ = crf.viterbi_decode(emissions, mask)
    log_likelihood = crf.log_likelihood(emissions, tag_ids, mask)
    assert calls, "expected the exact fallback to run"
    log_likelihood.sum().backward()
    assert torch.isfinite(emissions.grad).all()
    marginals = crf.marginals(emissions, mask)
    for b, length in enumerate(lengths_of(mask)):
        paths = all_paths(num_tags, length)
        scores = enumerated_scores(emissions[b, :length], paths, crf.scores())
        gold = enumerated_scores(emissions[b, :length], tag_ids[b : b + 1, :length], crf.scores())
        expected = gold[0] - scores.logsumexp(0)
        torch.testing.assert_close(log_likelihood[b].double(), expected, atol=1e-3, rtol=1e-6)
        expected_marginals = enumerated_marginals(paths, scores, num_tags)
        close(marginals[b, :length], expected_marginals, torch.float32)


def test_underflow_fallback_keeps_marginals_exact():
    # Tag 0 may not be followed by 0 or 2. Tag 0 first and tag 2 second each lead by 100 nats, so
    # the best tag at each step is no allowed neighbour of the other: the exp-space sums of both
    # recursions underflow there, while three paths share the mass.
    transitions = torch.ones(3, 3, dtype=torch.bool)
    transitions[0] = torch.tensor([False, True, False])
    ones = torch.ones(3, dtype=torch.bool)
    crf = CRF(3, AllowedTransitions(ones, transitions, ones))
    with torch.no_grad():
        for parameter in crf.parameters():
            parameter.zero_()
    emissions = torch.tensor([[[100.0, 0.0, 0.0], [0.0, 0.0, 100.0]]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    # Paths scoring 100: (0, 1), (1, 2), (2, 2); four more score 0.
    expected = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 2.0]]) / 3
    torch.testing.assert_close(crf.marginals(emissions, mask)[0], expected)
    log_z = torch.tensor([100.0 + torch.tensor(3.0).log().item()])
    torch.testing.assert_close(crf.log_partition(emissions, mask), log_z)


@pytest.mark.parametrize(
    ("forbidden", "emissions", "padded"),
    [
        # Tag 0 leads at the first token and may not be followed by tag 2: the forward sum into
        # tag 2 at the second token trails its best term by 1,000 nats.
        ((0, 2), [[1000.0, 0.0, 0.0], [0.0, 0.0, 0.0]], False),
        # Tag 2 leads at the second token and tag 1 may not precede it: the backward sum out of
        # tag 1 at the first token does, while tags 0 and 1 tie at the first, so every forward
        # sum has its best term.
        ((1, 2), [[1000.0, 1000.0, 0.0], [0.0, 0.0, 1000.0]], False),
        # The same with a padding token after, whose own backward sums are never read.
        ((1, 2), [[1000.0, 1000.0, 0.0], [0.0, 0.0, 1000.0]], True),
    ],
    ids=["forward", "backward", "backward-padded"],
)
def test_lattice_is_exact_when_one_direction_alone_underflows(forbidden, emissions, padded):
    # Each recursion falls back to exact sums on its own underflow, and only there: alpha and
    # beta against their enumeration.
    transitions = torch.ones(3, 3, dtype=torch.bool)
    transitions[forbidden] = False
    ones = torch.ones(3, dtype=torch.bool)
    crf = CRF(3, AllowedTransitions(ones, transitions, ones))
    with torch.no_grad():
        for parameter in crf.parameters():
            parameter.zero_()
    emissions = torch.tensor([emissions + [[0.0] * 3] * padded], dtype=torch.float64)
    mask = torch.tensor([[True, True] + [False] * padded])
    start, trans, end = (score.detach().double() for score in crf.scores())
    alpha, beta, log_z = crf.forward_backward(emissions, mask)
    paths = all_paths(3, 2)
    scores = enumerated_scores(emissions[0], paths, (start, trans, end))
    for t in range(2):
        for tag in range(3):
            through = paths[:, t] == tag
            prefix = start[paths[:, 0]] + emissions[0, 0, paths[:, 0]]
            if t == 1:
                prefix = prefix + trans[paths[:, 0], paths[:, 1]] + emissions[0, 1, paths[:, 1]]
            suffix = scores - prefix
            # Prefixes (and suffixes) of the paths through `tag` at t, each counted once.
            first = {}
            for i in through.nonzero().flatten().tolist():
                key = tuple(paths[i, : t + 1].tolist())
                first.setdefault(key, prefix[i])
            expected_alpha = torch.stack(list(first.values())).logsumexp(0)
            rest = {}
            for i in through.nonzero().flatten().tolist():
                rest.setdefault(tuple(paths[i, t:].tolist()), suffix[i])
            expected_beta = torch.stack(list(rest.values())).logsumexp(0)
            torch.testing.assert_close(alpha[0, t, tag], expected_alpha, rtol=1e-12, atol=1e-9)
            torch.testing.assert_close(beta[0, t, tag], expected_beta, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(log_z[0], scores.logsumexp(0), rtol=1e-12, atol=1e-9)


def test_ordinary_scores_stay_on_the_fast_path(monkeypatch):
    monkeypatch.setattr(crf_module, "_exact_vecmat", lambda *a: pytest.fail("fell back"))
    crf = random_crf(5, 0, allowed_transitions("BIOES", SCHEME_TAGS["BIOES"]))
    emissions, mask = random_batch(5, 4, 0, batch=16, dtype=torch.float32)
    crf.marginals(emissions, mask)
    crf.log_likelihood(emissions, torch.zeros_like(mask, dtype=torch.long), mask)


def test_underflow_in_unused_positions_neither_falls_back_nor_breaks_gradients(monkeypatch):
    # One-token sequences padded to three. Tag 0 may only be followed by tag 1, which may not end,
    # so the backward sum for tag 0 past the last token is exactly 0; tag 2 may be followed by
    # nothing and leads by 200 nats, so the forward sums in the padding are 0 too. Those values
    # are never used, so no fallback, but they must not turn into NaN gradients either.
    monkeypatch.setattr(crf_module, "_exact_vecmat", lambda *a: pytest.fail("fell back"))
    transitions = torch.ones(3, 3, dtype=torch.bool)
    transitions[0] = torch.tensor([False, True, False])
    transitions[2] = False
    allowed = AllowedTransitions(
        torch.ones(3, dtype=torch.bool), transitions, torch.tensor([True, False, True])
    )
    crf = random_crf(3, 0, allowed)
    emissions = torch.randn(4, 3, 3)
    emissions[:, 0, 2] += 200.0
    emissions.requires_grad_(True)
    mask = torch.tensor([[True, False, False]] * 4)
    marginals = crf.marginals(emissions, mask)
    nll = crf(emissions, torch.zeros_like(mask, dtype=torch.long), mask)
    ((marginals * torch.randn_like(marginals)).sum() + nll).backward()
    assert emissions.grad.abs().sum() > 0
    for tensor in (emissions, *crf.parameters()):
        assert torch.isfinite(tensor.grad).all()


def test_broadcast_product_matches_matmul(monkeypatch):
    # Off the CPU the exp-space product is a broadcast sum; check it on the CPU against matmul.
    crf = random_crf(5, 0, allowed_transitions("BIOES", SCHEME_TAGS["BIOES"]))
    emissions, mask = random_batch(5, 4, 0, batch=8, dtype=torch.float32)
    alpha, beta, log_z = crf.forward_backward(emissions, mask)
    monkeypatch.setattr(crf_module, "_matmul", crf_module._broadcast_matmul)
    for expected, actual in zip(
        (alpha, beta, log_z), crf.forward_backward(emissions, mask), strict=True
    ):
        torch.testing.assert_close(actual, expected)


def test_empty_batch():
    crf = CRF(3)
    emissions = torch.zeros(0, 4, 3)
    mask = torch.zeros(0, 4, dtype=torch.bool)
    assert crf.log_partition(emissions, mask).shape == (0,)
    assert crf.viterbi_decode(emissions, mask)[0].shape == (0, 4)
    assert crf.kbest_decode(emissions, mask, 2)[1].shape == (0, 2)
    assert crf.marginals(emissions, mask).shape == (0, 4, 3)


# Validation.


@pytest.mark.parametrize(
    ("emissions", "mask", "tag_ids", "message"),
    [
        (torch.randn(2, 3), None, None, "emissions must have dimension of 3, got 2"),
        (torch.randn(2, 3, 5), None, None, "expected last dimension of emissions is 4, got 5"),
        (torch.randn(2, 0, 4), torch.ones(2, 0, dtype=torch.bool), None, "at least one timestep"),
        (torch.ones(2, 3, 4, dtype=torch.long), None, None, "emissions must be a float tensor"),
        (
            None,
            torch.ones(2, 4, dtype=torch.bool),
            None,
            "the first two dimensions of emissions and mask must match, got (2, 3) and (2, 4)",
        ),
        (
            None,
            torch.ones(2, 3, dtype=torch.uint8),
            None,
            "mask must be torch.bool, got torch.uint8",
        ),
        (
            None,
            torch.tensor([[True, True, True], [False, True, True]]),
            None,
            "mask of the first timestep must all be on",
        ),
        (
            None,
            torch.tensor([[True, False, True], [True, True, True]]),
            None,
            "mask must be left-aligned",
        ),
        (
            None,
            None,
            torch.zeros(2, 2, dtype=torch.long),
            "the first two dimensions of emissions and tag_ids must match, got (2, 3) and (2, 2)",
        ),
        (None, None, torch.zeros(2, 3), "tag_ids must be torch.long, got torch.float32"),
        (None, None, torch.full((2, 3), 4), "tag_ids must lie in [0, 4) on real tokens"),
    ],
)
def test_validation_errors(emissions, mask, tag_ids, message):
    crf = CRF(4)
    emissions = torch.randn(2, 3, 4) if emissions is None else emissions
    mask = torch.ones(2, 3, dtype=torch.bool) if mask is None else mask
    calls = []
    if tag_ids is None:
        tag_ids = torch.zeros(2, 3, dtype=torch.long)
        calls += [
            lambda: crf.log_partition(emissions, mask),
            lambda: crf.marginals(emissions, mask),
            lambda: crf.forward_backward(emissions, mask),
            lambda: crf.viterbi_decode(emissions, mask),
            lambda: crf.kbest_decode(emissions, mask, 2),
            lambda: viterbi_decode(emissions, mask, *crf.scores()),
            lambda: kbest_decode(emissions, mask, *crf.scores(), 2),
        ]
    one = torch.tensor([0])
    calls += [
        lambda: crf.log_likelihood(emissions, tag_ids, mask),
        lambda: crf(emissions, tag_ids, mask),
        lambda: crf.span_log_probs(emissions, mask, tag_ids, one, one, one + 1),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=re.escape(message)):
            call()


def test_other_validation_errors():
    crf = CRF(4)
    emissions, mask = torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.bool)
    tag_ids = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="invalid number of tags: 0"):
        CRF(0)
    ones = torch.ones(4, dtype=torch.bool)
    bad = AllowedTransitions(ones, torch.ones(4, 3, dtype=torch.bool), ones)
    with pytest.raises(ValueError, match=re.escape("allowed.transitions must have shape (4, 4)")):
        CRF(4, bad)
    with pytest.raises(ValueError, match=re.escape("allowed.start must have shape (5,)")):
        constraint_scores(allowed_transitions(None, ["a", "b", "c", "d"]), 5)
    for k in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            crf.kbest_decode(emissions, mask, k)
    start, transitions, end = crf.scores()
    with pytest.raises(ValueError, match="start and end transitions must have shape"):
        viterbi_decode(emissions, mask, start[:3], transitions, end)
    with pytest.raises(ValueError, match="transitions must be square"):
        kbest_decode(emissions, mask, start, transitions[:, :3], end, 2)
    one = torch.tensor([0])
    for span_batch, span_start, span_end, message in [
        (one + 2, one, one + 1, "span_batch must lie in [0, 2)"),
        (one, one + 1, one + 1, "spans must satisfy 0 <= start < end <= length"),
        (one, one, one + 4, "spans must satisfy 0 <= start < end <= length"),
        (one, one, torch.tensor([1, 2]), "must have the same length"),
        (one, one, torch.tensor([1.0]), "span_end must be a 1-D long tensor"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            crf.span_log_probs(emissions, mask, tag_ids, span_batch, span_start, span_end)
    wrong = torch.zeros(1, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match=re.escape("left_excluded must have shape (1, 4)")):
        crf.span_log_probs(emissions, mask, tag_ids, one, one, one + 1, left_excluded=wrong)
    with pytest.raises(ValueError, match=re.escape("right_excluded must have shape (1, 4)")):
        crf.span_log_probs(emissions, mask, tag_ids, one, one, one + 1, right_excluded=wrong)
