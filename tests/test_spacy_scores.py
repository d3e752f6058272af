"""The components' scorers: what `nlp.evaluate` reports per task (against counts made from the
docs themselves), the score weights, and, on the real dev sets, `spacy evaluate` of DocBins made
by `spacy convert` (or our `convert --to docbin`) against `bilstm-nlp evaluate` of the same file."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
import torch
from spacy.tokens import Doc
from spacy.training import Example, biluo_to_iob, iob_to_biluo
from typer.testing import CliRunner

from bilstm_nlp.cli import app
from bilstm_nlp.config import ModelConfig
from bilstm_nlp.corpus.readers.conll import read_conll
from bilstm_nlp.corpus.readers.conllu import read_conllu
from bilstm_nlp.corpus.readers.sst import read_sst
from bilstm_nlp.integrations.spacy_component import (
    CHUNKS_KEY,
    TAGGER_SCORE_WEIGHTS,
    TEXTCAT_SCORE_WEIGHTS,
)
from bilstm_nlp.nn.meta import ModelMeta
from bilstm_nlp.nn.model import build_model
from bilstm_nlp.nn.vocab import Vocab
from bilstm_nlp.serialize import save_model


def pipeline(model: str, factory: str = "bilstm_tagger") -> spacy.Language:
    nlp = spacy.blank("en")
    nlp.add_pipe(factory, config={"model": model})
    nlp.initialize()
    return nlp


def gold_examples(nlp: spacy.Language, sentences, **annotation) -> list[Example]:
    """One Example per sentence: the predicted doc has the gold words (as `--gold-preproc`)."""
    examples = []
    for sentence in sentences:
        words = list(sentence.tokens)
        reference = Doc(nlp.vocab, words=words, **{k: f(sentence) for k, f in annotation.items()})
        examples.append(Example(Doc(nlp.vocab, words=words), reference))
    return examples


def evaluate(nlp: spacy.Language, examples: list[Example]) -> dict:
    """`nlp.evaluate` (which annotates copies), then the examples' own predicted docs annotated
    by the same pipeline, for the counts the test makes."""
    scores = nlp.evaluate(examples)
    for _ in nlp.pipe(eg.predicted for eg in examples):
        pass
    return scores


def prf(predicted: set, gold: set) -> tuple[float, float, float]:
    tp = len(predicted & gold)
    p, r = tp / len(predicted), tp / len(gold)
    return p, r, 2 * p * r / (p + r)


def test_ner_scores_count_exact_entity_matches(shared_corpora: Path) -> None:
    nlp = pipeline("ner")
    sentences = list(itertools.islice(read_conll(shared_corpora / "conll2003/dev.txt"), 200))
    examples = gold_examples(
        nlp, sentences, ents=lambda s: biluo_to_iob(iob_to_biluo(list(s.tags)))
    )
    scores = evaluate(nlp, examples)
    # Indices are shared: each predicted doc has the reference's words.
    predicted = {(i, e.start, e.end, e.label_) for i, eg in enumerate(examples) for e in eg.x.ents}
    gold = {(i, e.start, e.end, e.label_) for i, eg in enumerate(examples) for e in eg.y.ents}
    assert len(gold) > 200 and predicted != gold  # a real test: some errors to count
    expected = prf(predicted, gold)
    assert (scores["ents_p"], scores["ents_r"], scores["ents_f"]) == pytest.approx(expected)
    per_type = {label for _, _, _, label in gold | predicted}
    assert set(scores["ents_per_type"]) == per_type
    for label in per_type:
        ours = {x for x in predicted if x[3] == label}
        theirs = {x for x in gold if x[3] == label}
        row = scores["ents_per_type"][label]
        assert row["f"] == pytest.approx(prf(ours, theirs)[2] if ours & theirs else 0.0)
    assert "pos_acc" not in scores and "tag_acc" not in scores


def test_pos_scores_token_accuracy(shared_corpora: Path) -> None:
    nlp = pipeline("pos")
    sentences = list(itertools.islice(read_conllu(shared_corpora / "ud_ewt/dev.conllu"), 200))
    examples = gold_examples(nlp, sentences, pos=lambda s: list(s.tags))
    scores = evaluate(nlp, examples)
    pairs = [(x.pos_, y.pos_) for eg in examples for x, y in zip(eg.x, eg.y, strict=True)]
    right = sum(p == g for p, g in pairs)
    assert 0 < right < len(pairs)
    assert scores["pos_acc"] == pytest.approx(right / len(pairs))
    assert "tag_acc" not in scores and "ents_f" not in scores


def test_tag_models_score_tag_acc(tmp_path: Path) -> None:
    """A model whose labels are no UPOS tags writes and scores `token.tag_` (untrained: only
    which attribute it writes and scores matters)."""
    torch.manual_seed(0)
    vocab = Vocab.build([["EU", "rejects", "call"]], ["NNP", "VBZ", "NN"])
    config = ModelConfig(vectors=None, word_dim=8, hidden=8, char_hidden=4, char_dim=4)
    save_model(build_model(config, vocab, ModelMeta(task="pos")), tmp_path / "ptb_pos")
    nlp = pipeline(str(tmp_path / "ptb_pos"))
    words = ["EU", "rejects", "German", "call", "."]
    tags = ["NNP", "VBZ", "JJ", "NN", "."]
    example = Example(Doc(nlp.vocab, words=words), Doc(nlp.vocab, words=words, tags=tags))
    scores = evaluate(nlp, [example])
    right = sum(x.tag_ == y.tag_ for x, y in zip(example.x, example.y, strict=True))
    assert scores["tag_acc"] == pytest.approx(right / len(words))
    assert "pos_acc" not in scores


def test_chunk_scores_the_span_group(shared_corpora: Path) -> None:
    nlp = pipeline("chunk")
    sentences = list(itertools.islice(read_conll(shared_corpora / "conll2000/train.txt"), 100))
    examples = []
    for sentence in sentences:
        words = list(sentence.tokens)
        reference = Doc(
            nlp.vocab, words=words, ents=biluo_to_iob(iob_to_biluo(list(sentence.tags)))
        )
        reference.spans[CHUNKS_KEY] = list(reference.ents)
        reference.ents = []
        examples.append(Example(Doc(nlp.vocab, words=words), reference))
    scores = evaluate(nlp, examples)
    predicted = {(i, s.start, s.end, s.label_) for i, eg in enumerate(examples)
                 for s in eg.x.spans[CHUNKS_KEY]}  # fmt: skip
    gold = {(i, s.start, s.end, s.label_) for i, eg in enumerate(examples)
            for s in eg.y.spans[CHUNKS_KEY]}  # fmt: skip
    assert predicted != gold
    expected = prf(predicted, gold)
    key = f"spans_{CHUNKS_KEY}"
    assert (scores[f"{key}_p"], scores[f"{key}_r"], scores[f"{key}_f"]) == pytest.approx(expected)
    assert "ents_f" not in scores or scores["ents_f"] is None


def test_textcat_scores_cats_like_spacy_textcat(shared_corpora: Path) -> None:
    nlp = pipeline("sentiment", "bilstm_textcat")
    examples = []
    # SST-2 keeps the sentences with a non-neutral root label.
    for record in itertools.islice(read_sst(shared_corpora / "sst/dev.txt", labels="sst2"), 150):
        reference = Doc(nlp.vocab, words=list(record.tokens))
        reference.cats = {label: float(label == record.label) for label in ("negative", "positive")}
        examples.append(Example(Doc(nlp.vocab, words=list(record.tokens)), reference))
    scores = evaluate(nlp, examples)
    pairs = [(max(eg.x.cats, key=eg.x.cats.get), record_label(eg)) for eg in examples]
    assert 0 < sum(p == g for p, g in pairs) < len(pairs)
    assert scores["cats_micro_f"] == pytest.approx(sum(p == g for p, g in pairs) / len(pairs))
    f_scores = []
    for label in ("negative", "positive"):
        predicted = {i for i, (p, _) in enumerate(pairs) if p == label}
        gold = {i for i, (_, g) in enumerate(pairs) if g == label}
        f_scores.append(prf(predicted, gold)[2])
        assert scores["cats_f_per_type"][label]["f"] == pytest.approx(f_scores[-1])
    assert scores["cats_score"] == scores["cats_macro_f"] == pytest.approx(sum(f_scores) / 2)
    assert scores["cats_score_desc"] == "macro F"


def record_label(example: Example) -> str:
    return max(example.y.cats, key=example.y.cats.get)


def test_score_weights_are_declared_by_the_factories() -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("bilstm_tagger")
    weights = nlp.config["training"]["score_weights"]
    main = [key for key, weight in TAGGER_SCORE_WEIGHTS.items() if weight]
    assert main == ["ents_f", "pos_acc", "tag_acc", f"spans_{CHUNKS_KEY}_f"]
    assert {weights[key] for key in main} == {0.25}
    nlp = spacy.blank("en")
    nlp.add_pipe("bilstm_textcat")
    assert nlp.config["training"]["score_weights"]["cats_score"] == 1.0
    assert set(nlp.config["training"]["score_weights"]) == set(TEXTCAT_SCORE_WEIGHTS)


def _spacy_evaluate(pipe: Path, data: Path, output: Path, *options: str) -> dict:
    command = [sys.executable, "-m", "spacy", "evaluate", str(pipe), str(data)]
    command += ["--output", str(output), *options]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(output.read_text())


def _spacy_convert(source: Path, folder: Path, *options: str) -> Path:
    folder.mkdir()
    command = [sys.executable, "-m", "spacy", "convert", str(source), str(folder), *options]
    subprocess.run(command, check=True, capture_output=True, text=True)
    [docbin] = folder.glob("*.spacy")
    return docbin


def _ours(model: str, data: Path, *options: str) -> dict:
    result = CliRunner().invoke(app, ["evaluate", model, str(data), "--json", *options])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _save_pipeline(model: str, factory: str, path: Path) -> Path:
    pipeline(model, factory).to_disk(path)
    return path


@pytest.mark.slow
def test_spacy_evaluate_prints_the_ents_f_of_bilstm_nlp_evaluate(
    shared_corpora: Path, tmp_path: Path
) -> None:
    """CoNLL-2003 dev through spaCy's own converter (its -DOCSTART- lines make 216 documents,
    `-n 10` is then ignored) and `spacy evaluate --gold-preproc`: gold tokens and gold sentences,
    the input `bilstm-nlp evaluate` reads, so every figure is the same. `--gold-preproc` hands
    the pipeline each sentence as a doc of its own, so `ner`'s document memory reads sentences
    alone: `evaluate --sentences-alone`."""
    dev = shared_corpora / "conll2003/dev.txt"
    docbin = _spacy_convert(dev, tmp_path / "corpus", "-c", "ner", "-n", "10")
    pipe = _save_pipeline("ner", "bilstm_tagger", tmp_path / "pipeline")
    output = tmp_path / "metrics.json"
    command = [sys.executable, "-m", "spacy", "evaluate", str(pipe), str(docbin), "--gold-preproc"]
    printed = subprocess.run(
        [*command, "--output", str(output)], check=True, capture_output=True, text=True
    ).stdout
    theirs = json.loads(output.read_text())
    ours = _ours("ner", dev, "--sentences-alone")
    assert ours["sentences"] == 3250
    assert f"NER F   {ours['f1']:.2f}" in printed
    assert theirs["ents_f"] * 100 == pytest.approx(ours["f1"], abs=0.01)
    assert theirs["ents_p"] * 100 == pytest.approx(ours["precision"], abs=0.01)
    assert theirs["ents_r"] * 100 == pytest.approx(ours["recall"], abs=0.01)
    for label, row in ours["per_type"].items():
        assert theirs["ents_per_type"][label]["f"] * 100 == pytest.approx(row["f1"], abs=0.01)


@pytest.mark.slow
def test_spacy_evaluate_pos_acc_equals_bilstm_nlp_evaluate(
    shared_corpora: Path, tmp_path: Path
) -> None:
    dev = shared_corpora / "ud_ewt/dev.conllu"
    docbin = _spacy_convert(dev, tmp_path / "corpus", "-c", "conllu")
    pipe = _save_pipeline("pos", "bilstm_tagger", tmp_path / "pipeline")
    theirs = _spacy_evaluate(pipe, docbin, tmp_path / "metrics.json", "--gold-preproc")
    ours = _ours("pos", dev)
    assert ours["tokens"] == 25147
    assert theirs["pos_acc"] * 100 == pytest.approx(ours["accuracy"], abs=0.01)


@pytest.mark.slow
def test_spacy_evaluate_cats_equal_bilstm_nlp_evaluate(
    shared_corpora: Path, tmp_path: Path
) -> None:
    """SST dev through our `convert --to docbin` (SST-2 labels as `doc.cats`)."""
    dev = shared_corpora / "sst/dev.txt"
    docbin = tmp_path / "dev.spacy"
    result = CliRunner().invoke(app, ["convert", str(dev), str(docbin), "--to", "docbin"])
    assert result.exit_code == 0, result.output
    pipe = _save_pipeline("sentiment", "bilstm_textcat", tmp_path / "pipeline")
    theirs = _spacy_evaluate(pipe, docbin, tmp_path / "metrics.json", "--gold-preproc")
    ours = _ours("sentiment", dev)
    assert ours["sentences"] == 872
    # One gold and one predicted label per doc: micro F is accuracy.
    assert theirs["cats_micro_f"] * 100 == pytest.approx(ours["accuracy"], abs=0.01)
    assert theirs["cats_score"] * 100 == pytest.approx(ours["macro_f1"], abs=0.01)
    for label, row in ours["per_class"].items():
        assert theirs["cats_f_per_type"][label]["f"] * 100 == pytest.approx(row["f1"], abs=0.01)
