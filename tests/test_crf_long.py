"""Probabilities on long sentences: every one in [0, 1], marginals summing to 1, against float64.

The enumeration oracles of `test_crf.py` stop at 4 tokens, where float32 is exact enough. Here the
lattices are as long as a tagger ever sees (10,000 tokens) with emissions of a trained model's size
(the best tag near +16 per token, so log Z passes 1e5), and the reference is a plain float64
logsumexp recursion written out below.
"""

from __future__ import annotations

import pytest
import torch

import bilstm_nlp
from bilstm_nlp.nn.crf import CRF
from bilstm_nlp.nn.heads import CRFHead
from bilstm_nlp.text.schemes import tags_to_spans

TAGS = ["O", "B-X", "I-X", "E-X", "S-X", "B-Y", "I-Y", "E-Y", "S-Y"]
LENGTHS = [10_000, 3_001]


def reference_lattice(
    emissions: torch.Tensor, start: torch.Tensor, transitions: torch.Tensor, end: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float64 `(alpha, beta, log_z)` of one sequence `(length, num_tags)`, one step at a time."""
    emissions, start, transitions, end = (
        x.detach().double() for x in (emissions, start, transitions, end)
    )
    alpha = [start + emissions[0]]
    for step in emissions[1:]:
        alpha.append(torch.logsumexp(alpha[-1].unsqueeze(1) + transitions, dim=0) + step)
    beta = [end]
    for step in emissions.flip(0)[:-1]:
        beta.append(torch.logsumexp(transitions + (step + beta[-1]).unsqueeze(0), dim=1))
    alpha_t, beta_t = torch.stack(alpha), torch.stack(beta[::-1])
    return alpha_t, beta_t, torch.logsumexp(alpha_t[-1] + end, dim=0)


@pytest.fixture(scope="module")
def lattice():
    """A BIOES CRF head, two long float32 sequences (one padded), their decoded tags, the head's
    lattice and the float64 reference of each sequence."""
    torch.manual_seed(0)
    head = CRFHead(4, TAGS, "BIOES")
    with torch.no_grad():
        for parameter in head.crf.parameters():
            parameter.uniform_(-2.0, 2.0)
    generator = torch.Generator().manual_seed(0)
    emissions = torch.randn(len(LENGTHS), max(LENGTHS), len(TAGS), generator=generator) * 6 + 10
    mask = torch.arange(max(LENGTHS)) < torch.tensor(LENGTHS).unsqueeze(1)
    references = [
        reference_lattice(emissions[b, :length], *head.crf.scores())
        for b, length in enumerate(LENGTHS)
    ]
    with torch.inference_mode():
        tag_ids = head.decode(emissions, mask)
        computed = head.lattice(emissions, mask)
    return head, emissions, mask, tag_ids, computed, references


def test_long_marginals_match_float64_and_sum_to_one(lattice):
    head, emissions, mask, _, computed, references = lattice
    with torch.inference_mode():
        marginals = head.marginals(emissions, mask, computed)
    assert marginals.dtype == torch.float32
    assert ((marginals >= 0) & (marginals <= 1)).all()
    assert (marginals[~mask] == 0).all()
    sums = marginals.sum(2)[mask].double()
    torch.testing.assert_close(sums, torch.ones_like(sums), atol=1e-5, rtol=0)
    for b, (alpha, beta, log_z) in enumerate(references):
        expected = (alpha + beta - log_z).exp()
        torch.testing.assert_close(marginals[b, : LENGTHS[b]].double(), expected, atol=1e-5, rtol=0)


def test_long_forward_backward_matches_float64(lattice):
    *_, computed, references = lattice
    for b, (expected_alpha, expected_beta, expected_log_z) in enumerate(references):
        length = LENGTHS[b]
        # Relative 1e-12 of scores near 1e5: 1e-7 nats.
        torch.testing.assert_close(computed.alpha[b, :length], expected_alpha, atol=0, rtol=1e-12)
        torch.testing.assert_close(computed.beta[b, :length], expected_beta, atol=0, rtol=1e-12)
        torch.testing.assert_close(computed.log_z[b], expected_log_z, atol=0, rtol=1e-12)


def test_long_entity_probabilities_match_float64(lattice):
    # BIOES needs no boundary exclusions: an entity's probability is that of its tags.
    head, emissions, mask, tag_ids, computed, references = lattice
    rows = []
    for b, length in enumerate(LENGTHS):
        spans = tags_to_spans([TAGS[t] for t in tag_ids[b, :length].tolist()])
        rows += [(b, span.start, span.end) for span in spans]
    assert len(rows) > 1000
    query = tuple(torch.tensor(column) for column in zip(*rows, strict=True))
    with torch.inference_mode():
        got = head.entity_log_probs(emissions, mask, tag_ids, query, computed).exp()
    assert ((got >= 0) & (got <= 1)).all()
    _, transitions, _ = (score.detach().double() for score in head.crf.scores())
    # Each path step's emission and incoming transition, summed in float64 prefix sums.
    wide = emissions.double().gather(2, tag_ids.unsqueeze(2)).squeeze(2)
    wide[:, 1:] += transitions[tag_ids[:, :-1], tag_ids[:, 1:]]
    prefix = wide.cumsum(1)
    expected = []
    for b, s, e in rows:
        alpha, beta, log_z = references[b]
        inside = prefix[b, e - 1] - prefix[b, s]
        expected.append(alpha[s, tag_ids[b, s]] + inside + beta[e - 1, tag_ids[b, e - 1]] - log_z)
    expected_probs = torch.stack(expected).exp()
    torch.testing.assert_close(got.double(), expected_probs, atol=1e-5, rtol=0)
    # The CRF's own segment probabilities (their own forward-backward pass): the same.
    with torch.inference_mode():
        segments = head.crf.span_log_probs(emissions, mask, tag_ids, *query).exp()
    assert ((segments >= 0) & (segments <= 1)).all()
    torch.testing.assert_close(segments.double(), expected_probs, atol=1e-5, rtol=0)


def test_long_kbest_probabilities_match_float64(lattice):
    head, emissions, mask, _, _, references = lattice
    with torch.inference_mode():
        paths, log_probs = head.kbest(emissions, mask, 3)
        # shape: (batch, 3): each path scored in float64, the oracle's way
        wide = emissions.double().repeat_interleave(3, 0)
        scores = head.crf.path_scores(wide, paths.flatten(0, 1), mask.repeat_interleave(3, 0))
    assert (log_probs <= 0).all()
    log_z = torch.stack([reference[2] for reference in references])
    expected = scores.reshape(-1, 3) - log_z.unsqueeze(1)
    torch.testing.assert_close(log_probs.double(), expected, atol=0, rtol=1e-6)


def test_shipped_model_on_a_long_repeated_sentence():
    # The example: 250 tokens gave a token probability of 1.0197 and a best path of 0.991
    # (float64: 1.0000 and 0.99999...).
    model = bilstm_nlp.load("ner")
    tokens = ("and i love animals and i am great at working " * 25).split()
    tokens[100:102] = ["Angela", "Merkel"]
    [result] = bilstm_nlp.tag_sentences(model, [tokens], k=3)
    assert all(0.0 <= p <= 1.0 for p in result.tag_probs)
    assert result.spans and all(0.0 <= span.score <= 1.0 for span in result.spans)
    kbest = [p for _, p in result.kbest]
    assert all(0.0 <= p <= 1.0 for p in kbest) and sum(kbest) <= 1.0 + 1e-6
    # A path is never likelier than any one of its tags.
    assert result.kbest[0][0] == result.tags
    assert kbest[0] <= min(result.tag_probs) + 1e-6


def test_crf_marginals_keep_float64_when_given_float64():
    crf = CRF(3).double()
    emissions = torch.randn(2, 5, 3, dtype=torch.float64)
    mask = torch.ones(2, 5, dtype=torch.bool)
    assert crf.marginals(emissions, mask).dtype == torch.float64
