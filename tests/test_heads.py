"""Heads: entity probabilities against enumeration of every tag path, per scheme; one interface."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from bilstm_nlp.nn.heads import CRFHead, SoftmaxHead, TagHead, entity_boundaries
from bilstm_nlp.text.schemes import allowed_transitions, tags_to_spans

TAG_SETS = {
    "IOB1": ["O", "I-X", "B-X", "I-Y", "B-Y"],
    "IOB2": ["O", "B-X", "I-X", "B-Y", "I-Y"],
    "BIOES": ["O", "B-X", "I-X", "E-X", "S-X"],
}


def _path_score(start, transitions, end, emissions, path) -> torch.Tensor:
    score = start[path[0]] + emissions[0, path[0]]
    for t in range(1, len(path)):
        score = score + transitions[path[t - 1], path[t]] + emissions[t, path[t]]
    return score + end[path[-1]]


def _crf_head(scheme: str, seed: int) -> CRFHead:
    torch.manual_seed(seed)
    tags = TAG_SETS[scheme]
    head = CRFHead(4, tags, scheme)
    with torch.no_grad():
        for parameter in head.crf.parameters():
            parameter.uniform_(-2, 2)
    return head


@pytest.mark.parametrize("scheme", list(TAG_SETS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crf_entity_probability_matches_enumeration(scheme: str, seed: int) -> None:
    head = _crf_head(scheme, seed)
    tags = TAG_SETS[scheme]
    lengths = [5, 3, 1, 4]
    emissions = (torch.rand(len(lengths), 5, len(tags)) * 10 - 5).to(torch.float64)
    mask = torch.arange(5)[None, :] < torch.tensor(lengths)[:, None]
    head = head.double()
    start, transitions, end = head.crf.scores()
    generator = torch.Generator().manual_seed(seed)
    checked = 0
    for b, length in enumerate(lengths):
        paths = list(itertools.product(range(len(tags)), repeat=length))
        scores = torch.stack([_path_score(start, transitions, end, emissions[b], p) for p in paths])
        probs = torch.softmax(scores, 0)
        entity_prob: dict[tuple[int, int, str], float] = {}
        for path, prob in zip(paths, probs.tolist(), strict=True):
            for span in tags_to_spans([tags[i] for i in path]):
                key = (span.start, span.end, span.label)
                entity_prob[key] = entity_prob.get(key, 0.0) + prob
        # Query every entity of a few sampled likely paths (the Viterbi path among them).
        picks = torch.multinomial(probs.float(), 4, replacement=True, generator=generator).tolist()
        for pick in picks:
            path = torch.zeros(len(lengths), 5, dtype=torch.long)
            path[b, :length] = torch.tensor(paths[pick])
            spans = tags_to_spans([tags[i] for i in paths[pick]])
            if not spans:
                continue
            query = (
                torch.full((len(spans),), b),
                torch.tensor([s.start for s in spans]),
                torch.tensor([s.end for s in spans]),
            )
            got = head.entity_log_probs(emissions, mask, path, query).exp()
            for span, value in zip(spans, got.tolist(), strict=True):
                expected = entity_prob[(span.start, span.end, span.label)]
                assert math.isclose(value, expected, rel_tol=1e-6, abs_tol=1e-9), (
                    span,
                    value,
                    expected,
                )
                checked += 1
    assert checked > 0


def test_softmax_entity_probability_is_product_of_token_probabilities() -> None:
    torch.manual_seed(0)
    tags = TAG_SETS["IOB2"]
    head = SoftmaxHead(4, tags, "IOB2", constrained=True)
    features = torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    emissions = head.emissions(features)
    path = head.decode(emissions, mask)
    query = (torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([4, 2]))
    got = head.entity_log_probs(emissions, mask, path, query).exp()
    probs = emissions.exp()
    expected = torch.stack(
        [
            probs[0, 1, path[0, 1]] * probs[0, 2, path[0, 2]] * probs[0, 3, path[0, 3]],
            probs[1, 0, path[1, 0]] * probs[1, 1, path[1, 1]],
        ]
    )
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("scheme", ["IOB1", "IOB2", "BIOES"])
def test_constrained_softmax_never_decodes_an_invalid_sequence(scheme: str) -> None:
    torch.manual_seed(3)
    tags = TAG_SETS[scheme]
    allowed = allowed_transitions(scheme, tags)
    head = SoftmaxHead(4, tags, scheme, constrained=True)
    features = torch.randn(64, 7, 4) * 3
    lengths = torch.randint(1, 8, (64,))
    mask = torch.arange(7)[None, :] < lengths[:, None]
    decoded = head.decode(head.emissions(features), mask)
    for row, length in zip(decoded.tolist(), lengths.tolist(), strict=True):
        path = row[:length]
        assert allowed.start[path[0]] and allowed.end[path[-1]]
        assert all(allowed.transitions[a, b] for a, b in itertools.pairwise(path))


def test_boundary_exclusions_by_hand() -> None:
    tags = TAG_SETS["IOB1"]  # O I-X B-X I-Y B-Y
    boundaries = entity_boundaries("IOB1", tags)
    left, right = boundaries.left, boundaries.right
    # An entity starting with I-X starts earlier after I-X or B-X; one starting with B-X does not.
    assert left[1].tolist() == [False, True, True, False, False]
    assert left[2].tolist() == [False] * 5
    # Any X entity continues into a following I-X (not into B-X, which starts a new one).
    assert right[1].tolist() == [False, True, False, False, False]
    assert right[2].tolist() == [False, True, False, False, False]
    assert boundaries.alternative_first.tolist() == [-1, 2, 1, 4, 3]
    boundaries = entity_boundaries("BIOES", TAG_SETS["BIOES"])
    assert not boundaries.left.any() and not boundaries.right.any()
    assert (boundaries.alternative_first == -1).all()


@pytest.mark.parametrize(
    "head",
    [
        CRFHead(4, TAG_SETS["IOB1"], "IOB1"),
        SoftmaxHead(4, TAG_SETS["IOB1"], "IOB1", constrained=True),
        SoftmaxHead(4, TAG_SETS["IOB1"], None, constrained=False),
    ],
    ids=["crf", "softmax-constrained", "softmax-plain"],
)
def test_heads_answer_one_interface(head: TagHead) -> None:
    # Callers (decode.py) use these methods alone and never ask which head they hold.
    torch.manual_seed(0)
    num_tags = len(TAG_SETS["IOB1"])
    lengths = torch.tensor([5, 2, 1])
    mask = torch.arange(5) < lengths.unsqueeze(1)
    with torch.inference_mode():
        emissions = head.emissions(torch.randn(3, 5, 4) * 3)
        tag_ids = head.decode(emissions, mask)
        lattice = head.lattice(emissions, mask)
        marginals = head.marginals(emissions, mask, lattice)
        paths, log_probs = head.kbest(emissions, mask, 3)
        spans = (torch.tensor([0, 0, 1]), torch.tensor([0, 2, 0]), torch.tensor([2, 5, 1]))
        entity = head.entity_log_probs(emissions, mask, tag_ids, spans, lattice)
        own_lattice = head.entity_log_probs(emissions, mask, tag_ids, spans)
        unshared = head.marginals(emissions, mask)
        loss = head.loss(emissions, tag_ids, mask)
    assert tag_ids.shape == (3, 5) and (tag_ids[~mask] == 0).all()
    assert marginals.shape == (3, 5, num_tags) and (marginals[~mask] == 0).all()
    torch.testing.assert_close(marginals.sum(2)[mask], torch.ones(int(mask.sum())))
    assert torch.equal(marginals, unshared)
    assert paths.shape == (3, 3, 5) and log_probs.shape == (3, 3)
    assert torch.equal(paths[:, 0], tag_ids)
    assert entity.shape == (3,) and (entity <= 0).all()
    # A span is never likelier than any of its tokens after the first (IOB1 may spell the first
    # token's tag two ways).
    token = marginals.gather(2, tag_ids.unsqueeze(2)).squeeze(2)
    for i, (b, s, e) in enumerate(zip(*(x.tolist() for x in spans), strict=True)):
        if e - s > 1:
            assert entity[i].exp() <= token[b, s + 1 : e].min() + 1e-6
    assert loss.shape == () and loss >= 0
    assert torch.equal(entity, own_lattice)
    with torch.inference_mode():
        path = head.path_log_probs(emissions, mask, tag_ids, lattice)
        entropy = head.entropy(emissions, mask, lattice)
    assert path.shape == entropy.shape == (3,) and path.dtype == entropy.dtype == torch.float64
    assert (path <= 0).all() and (entropy >= 0).all()
    # The best path is at least as likely as the k-best list says, and no likelier than certain.
    torch.testing.assert_close(path.float(), log_probs[:, 0], atol=1e-5, rtol=0)
    assert torch.equal(path, head.path_log_probs(emissions, mask, tag_ids))
    assert torch.equal(entropy, head.entropy(emissions, mask))


@pytest.mark.parametrize("scheme", list(TAG_SETS))
def test_crf_path_probability_and_entropy_match_enumeration(scheme: str) -> None:
    head = _crf_head(scheme, 3).double()
    tags = TAG_SETS[scheme]
    lengths = [4, 2, 1]
    emissions = (torch.rand(len(lengths), 4, len(tags)) * 10 - 5).to(torch.float64)
    mask = torch.arange(4)[None, :] < torch.tensor(lengths)[:, None]
    with torch.no_grad():
        start, transitions, end = head.crf.scores()
        tag_ids = head.decode(emissions, mask)
        path_log_probs = head.path_log_probs(emissions, mask, tag_ids)
        entropy = head.entropy(emissions, mask)
    for b, length in enumerate(lengths):
        paths = list(itertools.product(range(len(tags)), repeat=length))
        scores = torch.stack([_path_score(start, transitions, end, emissions[b], p) for p in paths])
        log_probs = torch.log_softmax(scores, 0)
        best = paths.index(tuple(tag_ids[b, :length].tolist()))
        assert best == int(scores.argmax())
        assert math.isclose(float(path_log_probs[b]), float(log_probs[best]), abs_tol=1e-9)
        expected = float(-(log_probs.exp() * log_probs).sum())
        assert math.isclose(float(entropy[b]), expected, abs_tol=1e-9)


def test_softmax_path_probability_and_entropy_are_token_products() -> None:
    torch.manual_seed(4)
    head = SoftmaxHead(4, TAG_SETS["BIOES"], "BIOES", constrained=True)
    mask = torch.tensor([[True, True, True], [True, False, False]])
    with torch.no_grad():
        emissions = head.emissions(torch.randn(2, 3, 4) * 3)
    tag_ids = head.decode(emissions, mask)
    probs = emissions.double().exp()
    for b, length in enumerate([3, 1]):
        chosen = [float(probs[b, t, tag_ids[b, t]]) for t in range(length)]
        expected_path = math.log(math.prod(chosen))
        expected_entropy = -sum(
            p * math.log(p) for t in range(length) for p in probs[b, t].tolist()
        )
        assert math.isclose(float(head.path_log_probs(emissions, mask, tag_ids)[b]), expected_path)
        assert math.isclose(float(head.entropy(emissions, mask)[b]), expected_entropy)


def test_boundaries_are_buffers_not_saved_with_the_model() -> None:
    head = CRFHead(4, TAG_SETS["IOB1"], "IOB1")
    assert not any(name.startswith(("boundary", "alternative")) for name in head.state_dict())
    assert head.alternative_first.tolist() == [-1, 2, 1, 4, 3]
    names = {name for name, _ in head.named_buffers()}
    assert {"boundary_left", "boundary_right", "alternative_first"} <= names
