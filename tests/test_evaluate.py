"""evaluate.py: gold read with the model's reader settings, scored as strings; unseen labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from bilstm_nlp import load
from bilstm_nlp.corpus.loading import load_tagging
from bilstm_nlp.evaluation.evaluate import evaluate_file, evaluate_tagger, write_predictions
from bilstm_nlp.text.schemes import convert_tags, spelt_bilou, tags_to_spans

pytestmark = pytest.mark.usefixtures("datasets_cache")

NER_MODEL = Path(__file__).parent / "data" / "models" / "format-v1-tagger"  # BIOES entity tags
# The tag prefixes each scheme writes.
PREFIXES = {"IOB1": "IB", "IOB2": "IB", "BIOES": "BIES", "BILOU": "BILU"}
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
    # Predictions are written in the gold file's scheme (IOB1 here).
    assert {line.split()[2][:2] for line in lines if line} <= {"O", "I-", "B-"}


@pytest.mark.parametrize("scheme", ["IOB1", "IOB2", "BIOES", "BILOU"])
def test_predictions_are_spelt_in_the_gold_files_scheme(
    scheme: str, shared_corpora: Path, tmp_path: Path
) -> None:
    """The shipped `ner` writes IOB1 (CoNLL-2003 as distributed); scoring the same gold written in
    another scheme must not count an entity found exactly as token misses for its spelling."""
    corpus = load_tagging(dev=shared_corpora / "conll2003" / "dev.txt")
    tokens, gold_iob1 = corpus["dev"]["tokens"][:300], corpus.tags("dev")[:300]
    gold = [convert_tags(tags, "BIOES" if scheme == "BILOU" else scheme) for tags in gold_iob1]
    if scheme == "BILOU":
        gold = [spelt_bilou(tags) for tags in gold]
    data = tmp_path / "gold.txt"
    data.write_text(
        "".join(
            "".join(f"{w} {t}\n" for w, t in zip(ws, ts, strict=True)) + "\n"
            for ws, ts in zip(tokens, gold, strict=True)
        )
    )
    model = load("ner")
    result = evaluate_file(model, str(data), by_document=False)
    assert result.gold == gold
    # The same spans as the model's own spelling, written the way the file writes them.
    native = evaluate_tagger(model, tokens, gold_iob1)
    assert [tags_to_spans(tags) for tags in result.predicted] == [
        tags_to_spans(tags) for tags in native.predicted
    ]
    assert result.entities == native.entities
    prefixes = {tag[0] for tags in result.predicted for tag in tags} - {"O"}
    assert prefixes <= set(PREFIXES[scheme]), prefixes
    # Token accuracy compares the strings, as counted here by hand.
    pairs = zip(gold, result.predicted, strict=True)
    same = sum(g == p for gs, ps in pairs for g, p in zip(gs, ps, strict=True))
    assert result.accuracy == pytest.approx(100 * same / sum(map(len, gold)), abs=1e-4)
    # A tagger at 94+ F1 on dev gets the tokens' tags right as often, whatever the spelling.
    assert result.accuracy > 98.0


def test_a_file_named_for_its_format_is_read_as_it_whatever_the_model_was_trained_on(
    tmp_path: Path,
) -> None:
    """`sentiment` records SST trees as its training format; a DocBin or a JSONL copy of SST
    trees is read by its extension and scores as the trees do."""
    from bilstm_nlp.corpus.convert import convert_file

    trees = tmp_path / "s.txt"
    trees.write_text(
        "(3 (2 A) (4 lovely) (2 film))\n(0 (1 Terrible) (2 .))\n(1 (2 Not) (1 good))\n"
    )
    model = load("sentiment")
    assert model.meta.reader.input_format == "sst"
    expected = evaluate_file(model, str(trees))
    for extension, fmt in ((".spacy", "docbin"), (".jsonl", "jsonl")):
        copy = tmp_path / f"s{extension}"
        convert_file(trees, copy, fmt)
        got = evaluate_file(model, str(copy))
        assert got.sentences == expected.sentences == 3
        assert got.predicted == expected.predicted and got.to_json() == expected.to_json()
