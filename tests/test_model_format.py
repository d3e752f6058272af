"""A model saved in the first released format (1) keeps loading and predicting the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bilstm_nlp import load, tag_sentences
from bilstm_nlp.text.schemes import convert_tags

V1_TAGGER = Path(__file__).parent / "data" / "models" / "format-v1-tagger"
# Probabilities are float32 sums whose order changes with the kernels (and their batch shapes)
# a version uses: 1e-5 absorbs that; a misread weight moves them by far more.
FLOAT32_TOLERANCE = 1e-5


def test_format_1_model_loads_and_predicts_what_it_did() -> None:
    expected = json.loads((V1_TAGGER / "expected.json").read_text())
    model = load(V1_TAGGER)
    results = tag_sentences(model, [e["tokens"] for e in expected], k=2)
    # expected.json holds the probabilities of the tags the model scores (BIOES), which it then
    # wrote in IOB1; since 2026-12-07 a tag written in another scheme has its own probability as
    # written, so the ones saved are those of the tags in the model's own scheme.
    own = tag_sentences(model, [e["tokens"] for e in expected], scheme="BIOES")
    for got, in_bioes, want in zip(results, own, expected, strict=True):
        assert got.tags == want["tags"]
        assert in_bioes.tags == convert_tags(want["tags"], "BIOES")
        assert in_bioes.tag_probs == pytest.approx(want["tag_probs"], abs=FLOAT32_TOLERANCE)
        assert [[s.start, s.end, s.label] for s in got.spans] == [s[:3] for s in want["spans"]]
        assert [s.score for s in got.spans] == pytest.approx(
            [s[3] for s in want["spans"]], abs=FLOAT32_TOLERANCE
        )
        assert [t for t, _ in got.kbest] == [t for t, _ in want["kbest"]]
        assert [p for _, p in got.kbest] == pytest.approx(
            [p for _, p in want["kbest"]], abs=FLOAT32_TOLERANCE
        )
