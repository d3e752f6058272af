"""evaluate.py: gold read with the model's reader settings, scored as strings; unseen labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from bilstm_nlp import load
from bilstm_nlp.corpus.loading import load_tagging
from bilstm_nlp.evaluation.evaluate import evaluate_file, evaluate_tagger, write_predictions

pytestmark = pytest.mark.usefixtures("datasets_cache")

NER_MODEL = Path(__file__).parent / "data" / "models" / "format-v1-tagger"  # BIOES entity tags
# IOB1 gold; DATE is a type the model has no tag for.
GOLD = "Peter I-PER\nBlackburn I-PER\nvisits O\nBrussels I-LOC\n\nMonday I-DATE\nit O\nis O\n\n"


def test_evaluate_file_scores_gold_strings_and_names_unseen_types(tmp_path: Path) -> None:
    data = tmp_path / "gold.txt"
    data.write_text(GOLD)
    model = load(NER_MODEL)
    result = evaluate_file(model, str(data))
    assert (result.sentences, result.tokens) == (2, 7)
    # The gold tags come back as the file spells them (IOB1), not as ids or in the model's scheme.
    assert result.gold == [["I-PER", "I-PER", "O", "I-LOC"], ["I-DATE", "O", "O"]]
    assert result.unseen_labels == ["I-DATE"]
    assert result.entities is not None
    assert result.entities.per_type["DATE"].support == 1
    assert result.entities.per_type["DATE"].recall == 0.0
    # The same as scoring the corpus's own rows directly.
    corpus = load_tagging(dev=data)
    direct = evaluate_tagger(model, corpus["dev"]["tokens"][:], corpus.tags("dev"))
    assert direct.to_json() == result.to_json()


def test_evaluate_file_dev_from_train_scores_the_carved_part(tmp_path: Path) -> None:
    data = tmp_path / "train.txt"
    data.write_text(GOLD)
    result = evaluate_file(load(NER_MODEL), str(data), dev_from_train="last:1")
    assert result.gold == [["I-DATE", "O", "O"]]


def test_write_predictions_columns(tmp_path: Path) -> None:
    data = tmp_path / "gold.txt"
    data.write_text(GOLD)
    result = evaluate_file(load(NER_MODEL), str(data))
    out = tmp_path / "predictions.txt"
    write_predictions(result, out)
    lines = out.read_text().split("\n")
    assert len(lines) == 7 + 2 + 1  # a line per token, a blank after each sentence, the end
    assert [line.split()[:2] for line in lines[:4]] == [
        ["Peter", "I-PER"], ["Blackburn", "I-PER"], ["visits", "O"], ["Brussels", "I-LOC"]
    ]  # fmt: skip
    # Predictions are written in the model's output scheme (IOB1), like the gold.
    assert {line.split()[2][:2] for line in lines if line} <= {"O", "I-", "B-"}
