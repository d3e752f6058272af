"""Each shipped model scores on its dev split what its model card says (within 0.05)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bilstm_nlp import load
from bilstm_nlp.evaluate import evaluate_file

# name: (dev file under the corpora root, --dev-from-train)
SHIPPED = {
    "ner": ("conll2003/dev.txt", None),
    "ner-large": ("conll2003/dev.txt", None),
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
    card = model.meta["scores"]["dev"]
    assert abs(result.main_score - card) <= 0.05, (name, result.main_score, card)
    readme = Path(model.model_path) / "README.md"
    assert f"{card:.2f}" in readme.read_text(encoding="utf-8")
