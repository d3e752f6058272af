"""Tests for `bilstm_nlp.evaluation.metrics`: known values counted by hand with conlleval's rules.

conlleval.pl is not available here, so the expected figures are counted by hand below from its
rules: an entity is correct only if its type and both boundaries match; in IOB1 an `I-X` after `O`
or after another type starts an entity, `I-X` after `X` continues it, and `B-X` starts a new one.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bilstm_nlp.evaluation.metrics import (
    classification_scores,
    confusions,
    entity_scores,
    token_accuracy,
)

# conlleval's input: word, gold tag, predicted tag; a blank line ends a sentence. IOB1.
CONLL = """\
John I-PER I-PER
Smith I-PER I-PER
visited O O
New I-LOC I-LOC
York I-LOC I-ORG
. O O

Paris I-LOC I-LOC
Berlin B-LOC I-LOC
and O O
IBM I-ORG I-ORG
said O I-MISC

The O O
EU I-ORG B-ORG
rejects O O
German I-MISC I-MISC
call O O
"""
# Entities as (sentence, start, end, type), end exclusive:
#   gold:      (0,0,2,PER) (0,3,5,LOC)
#              (1,0,1,LOC) (1,1,2,LOC) (1,3,4,ORG)   [B-LOC after I-LOC starts a LOC]
#              (2,1,2,ORG) (2,3,4,MISC)
#   predicted: (0,0,2,PER) (0,3,4,LOC) (0,4,5,ORG)   [I-ORG after I-LOC starts an ORG]
#              (1,0,2,LOC) (1,3,4,ORG) (1,4,5,MISC)  [I-LOC after I-LOC continues]
#              (2,1,2,ORG) (2,3,4,MISC)              [B-ORG after O starts an ORG]
#   correct:   (0,0,2,PER) (1,3,4,ORG) (2,1,2,ORG) (2,3,4,MISC)
# Per type, (correct, predicted, gold) -> precision, recall, F1 = 2 * correct / (predicted + gold):
#   PER  (1, 1, 1) -> 100,    100, 100
#   LOC  (0, 2, 3) ->   0,      0,   0
#   ORG  (2, 3, 2) ->  66.67, 100,  80      (2 * 2 / 5)
#   MISC (1, 2, 1) ->  50,    100,  66.67   (2 * 1 / 3)
#   all  (4, 8, 7) ->  50,     57.14, 53.33 (4 / 8, 4 / 7, 8 / 15)
EXPECTED = {
    "PER": (100.0, 100.0, 100.0, 1),
    "LOC": (0.0, 0.0, 0.0, 3),
    "ORG": (200 / 3, 100.0, 80.0, 2),
    "MISC": (50.0, 100.0, 200 / 3, 1),
}


def read_conlleval_file(path: Path) -> tuple[list[list[str]], list[list[str]]]:
    gold: list[list[str]] = [[]]
    predicted: list[list[str]] = [[]]
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            gold.append([])
            predicted.append([])
            continue
        _, gold_tag, predicted_tag = line.split()
        gold[-1].append(gold_tag)
        predicted[-1].append(predicted_tag)
    return [s for s in gold if s], [s for s in predicted if s]


@pytest.fixture
def tags(tmp_path: Path) -> tuple[list[list[str]], list[list[str]]]:
    path = tmp_path / "output.conll"
    path.write_text(CONLL, encoding="utf-8")
    return read_conlleval_file(path)


def test_entity_scores_match_conlleval_counts(tags) -> None:
    gold, predicted = tags
    assert [len(s) for s in gold] == [6, 5, 5]
    scores = entity_scores(gold, predicted)
    assert math.isclose(scores.precision, 50.0)
    assert math.isclose(scores.recall, 400 / 7)  # 57.14
    assert math.isclose(scores.f1, 800 / 15)  # 53.33
    assert sorted(scores.per_type) == sorted(EXPECTED)
    for name, (precision, recall, f1, support) in EXPECTED.items():
        got = scores.per_type[name]
        assert math.isclose(got.precision, precision, abs_tol=1e-9), name
        assert math.isclose(got.recall, recall, abs_tol=1e-9), name
        assert math.isclose(got.f1, f1, abs_tol=1e-9), name
        assert got.support == support, name
    assert scores.mode.startswith("default")


def test_entity_scores_of_a_perfect_and_an_empty_prediction(tags) -> None:
    gold, _ = tags
    perfect = entity_scores(gold, gold)
    assert (perfect.precision, perfect.recall, perfect.f1) == (100.0, 100.0, 100.0)
    nothing = entity_scores(gold, [["O"] * len(s) for s in gold])
    assert (nothing.precision, nothing.recall, nothing.f1) == (0.0, 0.0, 0.0)
    assert nothing.per_type["LOC"].support == 3


def test_entity_scores_read_bilou_as_bioes() -> None:
    # Two single-token PER entities in a row, then a two-token ORG: three entities, all found.
    gold_bilou = [["U-PER", "U-PER", "B-ORG", "L-ORG", "O"]]
    predicted = [["B-PER", "B-PER", "B-ORG", "I-ORG", "O"]]
    scores = entity_scores(gold_bilou, predicted)
    assert (scores.precision, scores.recall, scores.f1) == (100.0, 100.0, 100.0)
    assert scores.per_type["PER"].support == 2
    # BILOU and BIOES are the same scheme spelt twice: the same scores either way round.
    gold_bioes = [["S-PER", "S-PER", "B-ORG", "E-ORG", "O"]]
    missed = [["B-PER", "I-PER", "B-ORG", "I-ORG", "O"]]
    assert entity_scores(gold_bilou, missed) == entity_scores(gold_bioes, missed)
    assert entity_scores(missed, gold_bilou) == entity_scores(missed, gold_bioes)
    assert entity_scores(gold_bilou, missed).per_type["PER"].recall == 0.0


def test_token_accuracy_and_confusions(tags) -> None:
    gold, predicted = tags
    # 16 tokens, 4 wrong: York, Berlin, said, EU.
    assert token_accuracy(gold, predicted) == 75.0
    assert sorted(confusions(gold, predicted)) == [
        ("B-LOC", "I-LOC", 1),
        ("I-LOC", "I-ORG", 1),
        ("I-ORG", "B-ORG", 1),
        ("O", "I-MISC", 1),
    ]
    assert confusions(gold, predicted, top=2) == confusions(gold, predicted)[:2]
    assert token_accuracy([], []) == 0.0


def test_classification_scores_by_hand() -> None:
    gold = ["pos", "pos", "neg", "neu", "mixed"]
    predicted = ["pos", "neg", "neg", "pos", "pos"]
    scores = classification_scores(gold, predicted, ["neg", "neu", "pos"])
    # A gold label the model never saw goes last.
    assert scores.labels == ["neg", "neu", "pos", "mixed"]
    # Rows gold, columns predicted.
    assert scores.confusion == [[1, 0, 0, 0], [0, 0, 1, 0], [1, 0, 1, 0], [0, 0, 1, 0]]
    assert scores.accuracy == 40.0  # 2 of 5
    # neg: 1 of 2 predicted, 1 of 1 gold; neu: 0 of 0, 0 of 1; pos: 1 of 3, 1 of 2; mixed: 0, 0 of 1
    expected = {
        "neg": (50.0, 100.0, 200 / 3, 1),
        "neu": (0.0, 0.0, 0.0, 1),
        "pos": (100 / 3, 50.0, 40.0, 2),
        "mixed": (0.0, 0.0, 0.0, 1),
    }
    for name, (precision, recall, f1, support) in expected.items():
        got = scores.per_class[name]
        assert math.isclose(got.precision, precision), name
        assert math.isclose(got.recall, recall), name
        assert math.isclose(got.f1, f1), name
        assert got.support == support, name
    # Macro over the four classes present in gold or predictions.
    assert math.isclose(scores.macro_f1, (200 / 3 + 0 + 40 + 0) / 4)
