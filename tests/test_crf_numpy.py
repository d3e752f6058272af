"""Tests for `bilstm_nlp.runtime.crf_numpy`: the numpy CRF equals the torch CRF
(`nn/crf.py`, `CRFHead`) on random lattices, and imports without torch.

Random lattices mix lengths (1 included) in a batch, with and without scheme constraints; scores
from +-5 so that ties are vanishingly rare. The torch CRF is itself checked against enumeration
in `test_crf.py`, so equality here carries that oracle over.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from bilstm_nlp.nn.crf import FORBIDDEN_SCORE
from bilstm_nlp.nn.heads import CRFHead
from bilstm_nlp.runtime import crf_numpy
from bilstm_nlp.runtime.crf_numpy import CrfArrays
from bilstm_nlp.text.schemes import tags_to_spans

SCHEME_TAGS = {
    None: ["A", "B", "C", "D"],
    "IOB1": ["O", "I-PER", "B-PER", "I-LOC", "B-LOC"],
    "IOB2": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
    "BIOES": ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"],
}
CASES = [
    (scheme, batch, seq_len, seed)
    for scheme in SCHEME_TAGS
    for batch, seq_len in [(1, 1), (3, 1), (4, 5), (7, 9)]
    for seed in (0, 1)
]


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


def random_case(scheme: str | None, batch: int, seq_len: int, seed: int):
    """A CRF head with random transitions, emissions in +-5 and a mask of mixed lengths (>= 1)."""
    generator = torch.Generator().manual_seed(seed)
    tags = SCHEME_TAGS[scheme]
    head = CRFHead(4, tags, scheme)
    with torch.no_grad():
        for parameter in head.crf.parameters():
            parameter.copy_(torch.rand(parameter.shape, generator=generator) * 4 - 2)
    emissions = torch.rand(batch, seq_len, len(tags), generator=generator) * 10 - 5
    lengths = torch.randint(1, seq_len + 1, (batch,), generator=generator)
    lengths[0] = seq_len
    mask = torch.arange(seq_len)[None, :] < lengths[:, None]
    return head.eval(), emissions, mask


def arrays_of(head: CRFHead) -> CrfArrays:
    crf = head.crf
    return CrfArrays(
        *(
            t.detach().numpy()
            for t in (crf.start_transitions, crf.transitions, crf.end_transitions)
        ),
        *(t.numpy() for t in (crf.allowed_start, crf.allowed_transitions, crf.allowed_end)),
        head.boundary_left.numpy(),
        head.boundary_right.numpy(),
        head.alternative_first.numpy(),
    )


def test_forbidden_score_is_the_torch_crfs():
    assert crf_numpy.FORBIDDEN_SCORE == FORBIDDEN_SCORE


def test_imports_without_torch():
    code = (
        "import sys; import bilstm_nlp.runtime.crf_numpy; "
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


UNREACHABLE = -700.0
"""Log-scores below this are probability 0 in float64: the numpy recursion, which runs in exp
space, gives -inf there, torch a number near the forbidden score (-1e4)."""


def assert_log_scores_close(ours: np.ndarray, torch_scores: np.ndarray) -> None:
    reachable = torch_scores > UNREACHABLE
    np.testing.assert_allclose(ours[reachable], torch_scores[reachable], atol=1e-5)
    assert (ours[~reachable] < UNREACHABLE).all()
    assert reachable.mean() > 0.3  # the comparison covers the allowed tags


@pytest.mark.parametrize(("scheme", "batch", "seq_len", "seed"), CASES)
def test_partition_and_marginals_equal_torch(scheme, batch, seq_len, seed):
    head, emissions, mask = random_case(scheme, batch, seq_len, seed)
    crf = arrays_of(head)
    e, m = emissions.numpy(), mask.numpy()
    expected_z = head.crf.log_partition(emissions.double(), mask).numpy()
    np.testing.assert_allclose(crf_numpy.log_partition(e, m, *crf.scores()), expected_z, atol=1e-5)
    alpha, beta, log_z = crf_numpy.forward_backward(e, m, *crf.scores())
    t_alpha, t_beta, t_log_z = head.crf.forward_backward(emissions, mask)
    assert_log_scores_close(alpha, t_alpha.numpy())
    assert_log_scores_close(beta, t_beta.numpy())
    np.testing.assert_allclose(log_z, t_log_z.numpy(), atol=1e-5)
    marginals = crf_numpy.marginals_from(alpha, beta, log_z, m)
    np.testing.assert_allclose(marginals, head.marginals(emissions, mask).numpy(), atol=1e-5)
    np.testing.assert_allclose(marginals.sum(2)[m], 1.0, atol=1e-6)
    assert (marginals[~m] == 0).all()


@pytest.mark.parametrize(("scheme", "batch", "seq_len", "seed"), CASES)
def test_viterbi_equals_torch(scheme, batch, seq_len, seed):
    head, emissions, mask = random_case(scheme, batch, seq_len, seed)
    crf = arrays_of(head)
    tag_ids, scores = crf_numpy.viterbi_decode(
        emissions.numpy(), mask.numpy(), *crf.decode_scores()
    )
    t_tag_ids, t_scores = head.crf.viterbi_decode(emissions, mask)
    np.testing.assert_array_equal(tag_ids, t_tag_ids.numpy())
    np.testing.assert_allclose(scores, t_scores.numpy(), rtol=1e-6)
    assert scores.dtype == np.float32


@pytest.mark.parametrize("forbidden", ["transitions", "end"])
def test_viterbi_gives_a_sequence_without_a_finite_path_ids_0_and_minus_inf(forbidden):
    # No transition allowed: a sequence of one token keeps its path, longer ones have none. No
    # end allowed: no sequence has a path, though the forward scores and the back-pointers are
    # finite. Both decoders answer alike.
    from bilstm_nlp.nn.crf import _viterbi

    generator = np.random.default_rng(0)
    start, end = generator.normal(size=3), generator.normal(size=3)
    transitions = generator.normal(size=(3, 3))
    if forbidden == "transitions":
        transitions[:] = -np.inf
    else:
        end[:] = -np.inf
    emissions = generator.normal(size=(3, 4, 3)).astype(np.float32)
    # Tag 2 far ahead everywhere: the back-pointers lead to it, not to id 0 by chance.
    emissions[:, :, 2] += 10.0
    mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=bool)
    tag_ids, scores = crf_numpy.viterbi_decode(emissions, mask, start, transitions, end)
    without = [0, 2] if forbidden == "transitions" else [0, 1, 2]
    np.testing.assert_array_equal(tag_ids[without], 0)
    assert (scores[without] == -np.inf).all()
    if forbidden == "transitions":
        best = int(np.argmax(start + emissions[1, 0] + end))
        assert tag_ids[1].tolist() == [best, 0, 0, 0]
        assert scores[1] == pytest.approx(float((start + emissions[1, 0] + end)[best]), rel=1e-6)
    as_torch = (torch.from_numpy(a) for a in (start, transitions, end))
    t_tag_ids, t_scores = _viterbi(torch.from_numpy(emissions), torch.from_numpy(mask), *as_torch)
    np.testing.assert_array_equal(tag_ids, t_tag_ids.numpy())
    np.testing.assert_allclose(scores, t_scores.numpy(), rtol=1e-6)


@pytest.mark.parametrize("k", [1, 2, 5, 40])
@pytest.mark.parametrize(("scheme", "batch", "seq_len", "seed"), CASES[::3])
def test_kbest_equals_torch(scheme, batch, seq_len, seed, k):
    # k = 40 is more than the paths of a length-1 sequence: the missing ones are -inf, ids 0.
    head, emissions, mask = random_case(scheme, batch, seq_len, seed)
    crf = arrays_of(head)
    paths, scores = crf_numpy.kbest_decode(emissions.numpy(), mask.numpy(), *crf.decode_scores(), k)
    t_paths, t_scores = head.crf.kbest_decode(emissions, mask, k)
    np.testing.assert_array_equal(paths, t_paths.numpy())
    np.testing.assert_allclose(scores, t_scores.numpy(), rtol=1e-6)
    paths, log_probs = crf_numpy.kbest_log_probs(crf, emissions.numpy(), mask.numpy(), k)
    t_paths, t_log_probs = head.kbest(emissions, mask, k)
    np.testing.assert_array_equal(paths, t_paths.numpy())
    np.testing.assert_allclose(np.exp(log_probs), t_log_probs.exp().numpy(), atol=1e-5)
    assert (np.isinf(log_probs) == np.isinf(t_log_probs.numpy())).all()


@pytest.mark.parametrize(("scheme", "batch", "seq_len", "seed"), CASES)
def test_entity_probabilities_equal_torch(scheme, batch, seq_len, seed):
    if scheme is None:
        pytest.skip("no entities without a scheme")
    head, emissions, mask = random_case(scheme, batch, seq_len, seed)
    crf = arrays_of(head)
    tags = SCHEME_TAGS[scheme]
    checked = 0
    # Entities read off the Viterbi path and off the second-best path, as decoding reads them.
    for paths in (head.decode(emissions, mask), head.kbest(emissions, mask, 2)[0][:, -1]):
        flat = [
            (row, span)
            for row in range(paths.shape[0])
            for span in tags_to_spans([tags[t] for t in paths[row, : int(mask[row].sum())]])
        ]
        if not flat:
            continue
        spans = (
            torch.tensor([row for row, _ in flat]),
            torch.tensor([span.start for _, span in flat]),
            torch.tensor([span.end for _, span in flat]),
        )
        expected = head.entity_log_probs(emissions, mask, paths, spans).exp().numpy()
        lattice = crf_numpy.forward_backward(emissions.numpy(), mask.numpy(), *crf.scores())
        found = crf_numpy.entity_log_probs(
            crf,
            emissions.numpy(),
            mask.numpy(),
            paths.numpy(),
            tuple(s.numpy() for s in spans),
            lattice,
        )
        np.testing.assert_allclose(np.exp(found), expected, atol=1e-5)
        checked += len(flat)
    assert checked or seq_len == 1


def test_invalid_mask_is_refused():
    emissions = np.zeros((2, 3, 4), dtype=np.float32)
    mask = np.array([[True, True, False], [False, False, False]])
    zeros = np.zeros(4, dtype=np.float32)
    with pytest.raises(ValueError, match="first timestep"):
        crf_numpy.viterbi_decode(emissions, mask, zeros, np.zeros((4, 4), np.float32), zeros)


# One sentence (`viterbi_one`, `forward_backward_one`: the spaCy call's path) against the batch
# functions and the torch CRF, on every sentence length up to 40 (the rescaling windows end at
# every offset), and where the windowed rescaling must fall back.


def one_sentence_cases():
    return [
        (scheme, seq_len) for scheme in SCHEME_TAGS for seq_len in (1, 2, 3, 4, 5, 8, 9, 13, 40)
    ]


@pytest.mark.parametrize(("scheme", "seq_len"), one_sentence_cases())
def test_one_sentence_equals_the_batch_and_torch(scheme, seq_len):
    head, emissions, _ = random_case(scheme, 1, seq_len, seed=seq_len)
    crf = arrays_of(head)
    e = emissions.numpy()
    mask = np.ones((1, seq_len), dtype=bool)
    tags, score = crf_numpy.viterbi_one(e[0], *crf.decode_scores())
    batch_tags, batch_scores = crf_numpy.viterbi_decode(e, mask, *crf.decode_scores())
    assert tags == batch_tags[0].tolist()
    assert score == batch_scores[0]  # the same float32 sums in the same order
    torch_tags, _ = head.crf.viterbi_decode(emissions, torch.from_numpy(mask))
    assert tags == torch_tags[0].tolist()
    alpha, beta, log_z = crf_numpy.forward_backward_one(e[0], *crf.scores())
    kept = crf_numpy.forward_backward_one(e[0], *crf.scores(), constants=crf.chain_constants)
    for ours, with_kept in zip((alpha, beta, log_z), kept, strict=True):
        assert np.array_equal(ours, with_kept)
    b_alpha, b_beta, b_log_z = crf_numpy.forward_backward(e, mask, *crf.scores())
    assert log_z == pytest.approx(b_log_z[0], abs=1e-9)
    assert_log_scores_close(alpha, b_alpha[0])
    assert_log_scores_close(beta, b_beta[0])
    marginals = crf_numpy.marginals_from(alpha[None], beta[None], np.asarray([log_z]), mask)
    expected = head.marginals(emissions, torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(marginals, expected, atol=1e-5)


@pytest.mark.parametrize("spread", [5.0, 50.0, 400.0])
def test_one_sentence_with_extreme_emissions_equals_the_batch(spread):
    # Emissions hundreds of nats apart shrink a row by more than float64 holds between
    # rescalings: `forward_backward_one` must notice and redo the sentence step by step (it does
    # at 400 here, not at 5 or 50).
    generator = np.random.default_rng(int(spread))
    num_tags, seq_len = 9, 30
    emissions = (generator.normal(size=(seq_len, num_tags)) * spread).astype(np.float32)
    start, transitions, end = (
        generator.normal(size=shape).astype(np.float32)
        for shape in ((num_tags,), (num_tags, num_tags), (num_tags,))
    )
    transitions[generator.random((num_tags, num_tags)) < 0.3] = FORBIDDEN_SCORE
    mask = np.ones((1, seq_len), dtype=bool)
    alpha, beta, log_z = crf_numpy.forward_backward_one(emissions, start, transitions, end)
    b_alpha, b_beta, b_log_z = crf_numpy.forward_backward(
        emissions[None], mask, start, transitions, end
    )
    assert log_z == pytest.approx(b_log_z[0], rel=1e-12)
    marginals = crf_numpy.marginals_from(alpha[None], beta[None], np.asarray([log_z]), mask)
    expected = crf_numpy.marginals_from(b_alpha, b_beta, b_log_z, mask)
    np.testing.assert_allclose(marginals, expected, atol=1e-12)
    np.testing.assert_allclose(marginals.sum(axis=2), 1.0, atol=1e-9)


def test_one_sentence_without_an_allowed_path():
    # Every transition forbidden: no path of two tokens; as the batch functions give it.
    start, end = np.zeros(3, np.float32), np.zeros(3, np.float32)
    forbidden = np.full((3, 3), -np.inf, np.float32)
    emissions = np.zeros((2, 3), np.float32)
    assert crf_numpy.viterbi_one(emissions, start, forbidden, end) == ([0, 0], -np.inf)
    _, _, log_z = crf_numpy.forward_backward_one(
        emissions, start, np.full((3, 3), FORBIDDEN_SCORE, np.float32), end
    )
    expected = crf_numpy.log_partition(
        emissions[None], np.ones((1, 2), bool), start, np.full((3, 3), FORBIDDEN_SCORE), end
    )
    assert log_z == pytest.approx(expected[0], rel=1e-9)


def test_one_sentence_rejects_other_shapes():
    with pytest.raises(ValueError, match="expected emissions"):
        crf_numpy.viterbi_one(np.zeros((0, 3), np.float32), *(np.zeros(s) for s in (3, (3, 3), 3)))
    with pytest.raises(ValueError, match="expected emissions"):
        crf_numpy.forward_backward_one(
            np.zeros((2, 4), np.float32), *(np.zeros(s) for s in (3, (3, 3), 3))
        )


@pytest.mark.parametrize("low", [-650.0, -800.0, -np.inf])
def test_one_sentence_with_a_vanishing_emission_equals_the_batch(low):
    # One tag's emission far below the rest (its factor exp(emission - max) near or past
    # float64's smallest), or -inf: beta excludes the emission at its own position, so it stays
    # finite there, and everything equals the batch function's.
    generator = np.random.default_rng(7)
    num_tags, seq_len = 5, 9
    emissions = generator.normal(size=(seq_len, num_tags)).astype(np.float32)
    emissions[4, 2] = low
    start, transitions, end = (
        generator.normal(size=shape).astype(np.float32)
        for shape in ((num_tags,), (num_tags, num_tags), (num_tags,))
    )
    mask = np.ones((1, seq_len), dtype=bool)
    alpha, beta, log_z = crf_numpy.forward_backward_one(emissions, start, transitions, end)
    b_alpha, b_beta, b_log_z = crf_numpy.forward_backward(
        emissions[None], mask, start, transitions, end
    )
    assert np.isfinite(beta).all()
    assert log_z == pytest.approx(b_log_z[0], rel=1e-12)
    assert_log_scores_close(alpha, b_alpha[0])
    assert_log_scores_close(beta, b_beta[0])


@pytest.mark.parametrize("scale", [1.0, 400.0])
@pytest.mark.parametrize(("scheme", "batch", "seq_len", "seed"), [c for c in CASES if c[0]])
def test_neighbour_class_probs_equal_the_pair_marginals_summed(scheme, batch, seq_len, seed, scale):
    # p(b, class of (a, b)) and p(b, class of (b, c)) against the torch CRF's pair marginals
    # summed by class, with emissions in +-5 and in +-2000 (terms then differ by far more than
    # float64's exp range, so the vector-matrix products underflow and the log-space fallback
    # takes over where a tag's every term is lost).
    head, emissions, mask = random_case(scheme, batch, seq_len, seed)
    emissions = emissions * scale
    crf = arrays_of(head)
    lattice = tuple(x.numpy() for x in head.crf.forward_backward(emissions, mask))
    marginals = head.crf.marginals(emissions, mask).double().numpy()
    pairs = head.crf.pair_marginals(emissions, mask).numpy()
    lengths = mask.sum(1).numpy()
    rows, positions = np.nonzero(mask.numpy())
    num_tags = len(SCHEME_TAGS[scheme])
    rng = np.random.default_rng(seed)
    before = rng.integers(0, 3, (num_tags + 1, num_tags))
    after = rng.integers(0, 2, (num_tags, num_tags + 1))
    starting, ending = crf_numpy.neighbour_class_probs(
        lattice, emissions.numpy(), crf.scores()[1], rows, positions, lengths, before, after
    )
    for n, (row, t) in enumerate(zip(rows, positions, strict=True)):
        want_start = np.zeros((num_tags, 3))
        want_end = np.zeros((num_tags, 2))
        for b in range(num_tags):
            if t == 0:
                want_start[b, before[num_tags, b]] += marginals[row, 0, b]
            else:
                for a in range(num_tags):
                    want_start[b, before[a, b]] += pairs[row, t - 1, a, b]
            if t == lengths[row] - 1:
                want_end[b, after[b, num_tags]] += marginals[row, t, b]
            else:
                for c in range(num_tags):
                    want_end[b, after[b, c]] += pairs[row, t, b, c]
        np.testing.assert_allclose(starting[n], want_start, atol=1e-6)
        np.testing.assert_allclose(ending[n], want_end, atol=1e-6)
