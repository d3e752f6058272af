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
