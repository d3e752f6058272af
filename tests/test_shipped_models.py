"""Each shipped model scores on its dev split what its model card says (within 0.05)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bilstm_nlp import load
from bilstm_nlp.evaluation.evaluate import evaluate_file

# name: (dev file under the corpora root, --dev-from-train)
SHIPPED = {
    "ner": ("conll2003/dev.txt", None),
    "pos": ("ud_ewt/dev.conllu", None),
    "chunk": ("conll2000/train.txt", "last:1000"),
    "sentiment": ("sst/dev.txt", None),
}


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_model_matches_its_card(name: str, shared_corpora: Path) -> None:
    torch.set_num_threads(1)
    model = load(name)
    dev, dev_from_train = SHIPPED[name]
    result = evaluate_file(model, str(shared_corpora / dev), dev_from_train=dev_from_train)
    scores = model.meta.scores
    readme = (Path(model.meta.source) / "README.md").read_text(encoding="utf-8")
    if model.meta.trained_with_dev:
        # Trained on dev too: dev only checks that the shipped weights are the exported ones,
        # and the card gives its recipe's figure (train alone), never this one as held out.
        card = scores["dev_trained_on"]
        assert scores["dev"] is None
        assert f"**{scores['recipe_dev']:.2f}**" in readme and "no held-out dev figure" in readme
    else:
        card = scores["dev"]
        assert f"{card:.2f}" in readme
    assert abs(result.main_score - card) <= 0.05, (name, result.main_score, card)


def test_shipped_models_stay_within_60_mb_in_all() -> None:
    # Issue 14's bound on everything under models/, which the wheel carries.
    root = Path(load("ner").meta.source).parent
    total = sum(path.stat().st_size for path in root.rglob("*") if path.is_file())
    assert 40e6 < total <= 60e6, total
