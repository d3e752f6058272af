"""A model saved in the first released format (1) keeps loading and predicting the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bilstm_nlp import load, tag_sentences

V1_TAGGER = Path(__file__).parent / "data" / "models" / "format-v1-tagger"
# Probabilities are float32 sums whose order changes with the kernels (and their batch shapes)
# a version uses: 1e-5 absorbs that; a misread weight moves them by far more.
FLOAT32_TOLERANCE = 1e-5


def test_format_1_model_loads_and_predicts_what_it_did() -> None:
    expected = json.loads((V1_TAGGER / "expected.json").read_text())
    model = load(V1_TAGGER)
    results = tag_sentences(model, [e["tokens"] for e in expected], k=2)
    for got, want in zip(results, expected, strict=True):
        assert got.tags == want["tags"]
        assert got.tag_probs == pytest.approx(want["tag_probs"], abs=FLOAT32_TOLERANCE)
        assert [[s.start, s.end, s.label] for s in got.spans] == [s[:3] for s in want["spans"]]
        assert [s.score for s in got.spans] == pytest.approx(
            [s[3] for s in want["spans"]], abs=FLOAT32_TOLERANCE
        )
        assert [t for t, _ in got.kbest] == [t for t, _ in want["kbest"]]
        assert [p for _, p in got.kbest] == pytest.approx(
            [p for _, p in want["kbest"]], abs=FLOAT32_TOLERANCE
        )
