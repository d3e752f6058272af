"""`bilstm-nlp ensemble`: classifiers trained apart become one model answering with their mean
probability; runs of different recipes, vocabularies or labels are refused, naming the folder."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from bilstm_nlp import classify_sentences, load
from bilstm_nlp.cli import app
from bilstm_nlp.config import ExperimentConfig
from bilstm_nlp.errors import ConfigError, ModelFileError
from bilstm_nlp.training.ensemble import assemble_ensemble
from bilstm_nlp.training.loop import train

from .test_train import NER_SENTENCES, tiny_config, write_conll
from .tiny_models import REVIEWS, write_reviews

TEXTS = [t.split() for t, _ in REVIEWS] + [["a", "moving", "mess"], ["unseen"], []]


def _config(corpus: Path, seed: int, **model) -> ExperimentConfig:
    return ExperimentConfig.from_dict(
        {
            "data": {"train": str(corpus), "dev": None},
            "model": {
                "task": "classifier",
                "vectors": None,
                "word_dim": 16,
                "hidden": 12,
                "char_encoder": "none",
                "dropout": 0.2,
                **model,
            },
            "train": {
                "optimizer": "adam",
                "lr": 0.02,
                "batch_size": 2,
                "epochs": 6,
                "patience": 0,
                "seed": seed,
                "threads": 1,
            },
        }
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Three seeds of one recipe, and runs that differ from it in one way each."""
    folder = tmp_path_factory.mktemp("ensemble_runs")
    corpus = write_reviews(folder / "train.jsonl", REVIEWS)
    paths = {}
    for seed in (1, 2, 3):
        train(_config(corpus, seed), folder / f"s{seed}")
        paths[f"s{seed}"] = folder / f"s{seed}"
    train(_config(corpus, 4, hidden=10), folder / "narrow")
    paths["narrow"] = folder / "narrow"
    lr = _config(corpus, 5)
    train(dataclasses.replace(lr, train=dataclasses.replace(lr.train, lr=0.01)), folder / "lr")
    paths["lr"] = folder / "lr"
    more = write_reviews(folder / "more.jsonl", [*REVIEWS, ("an utter bore", "negative")])
    train(_config(more, 6), folder / "vocab")
    paths["vocab"] = folder / "vocab"
    three = write_reviews(folder / "three.jsonl", [*REVIEWS, ("it is a film", "neutral")])
    train(_config(three, 7), folder / "labels")
    paths["labels"] = folder / "labels"
    return paths


def test_the_ensemble_answers_the_mean_of_its_members(runs, tmp_path):
    members = [runs["s1"], runs["s2"], runs["s3"]]
    assemble_ensemble(members, tmp_path / "ensemble")
    ensemble = load(tmp_path / "ensemble")
    assert ensemble.config.members == 3
    each = [classify_sentences(load(path), TEXTS) for path in members]
    found = classify_sentences(ensemble, TEXTS)
    labels = ensemble.vocab.labels.items
    for row, got in enumerate(found):
        if not TEXTS[row]:  # an empty text: no label, as each member gives it
            assert (got.label, got.probs) == (None, {})
            continue
        for label in labels:
            mean = sum(results[row].probs[label] for results in each) / 3
            assert got.probs[label] == pytest.approx(mean, abs=1e-6)
        assert got.label == max(labels, key=got.probs.__getitem__)
    # The members disagree somewhere, so the mean is not any one of them.
    assert any(
        abs(each[0][row].probs[labels[0]] - each[1][row].probs[labels[0]]) > 1e-3
        for row in range(len(TEXTS))
    )
    provenance = ensemble.meta.provenance["ensemble_of"]
    assert [(m["path"], m["seed"]) for m in provenance] == [
        (str(p), s) for p, s in zip(members, [1, 2, 3], strict=True)
    ]
    assert ensemble.meta.scores == {}
    assert ensemble.meta.provenance["command"].startswith(f"bilstm-nlp ensemble {members[0]} ")
    assert provenance[1]["command"] == load(members[1]).meta.provenance["command"]
    # The pretrained-only vectors once, each member's own weights beside them.
    stored = load_file(str(tmp_path / "ensemble" / "model.safetensors"))
    assert sum("fixed_embedding" in name for name in stored) == 1
    assert sum("word_embedding" in name for name in stored) == 3


@pytest.mark.parametrize(
    ("odd", "message"),
    [
        ("narrow", "another architecture"),
        ("lr", r"other settings than the first classifier \(train.lr\)"),
        ("vocab", "another vocabulary"),
        ("labels", "has the labels"),
    ],
)
def test_runs_of_another_recipe_are_refused_naming_the_folder(runs, tmp_path, odd, message):
    with pytest.raises(ConfigError, match=message) as caught:
        assemble_ensemble([runs["s1"], runs[odd]], tmp_path / "ensemble")
    assert str(runs[odd]) in str(caught.value)
    assert not (tmp_path / "ensemble").exists()


def test_a_member_given_twice_is_refused(runs, tmp_path):
    # The same run under two names, and a copy of it: both would only double one member's vote.
    copy = tmp_path / "copy-of-s2"
    shutil.copytree(runs["s2"], copy)
    for twice in ([runs["s1"], runs["s2"], runs["s2"]], [runs["s2"], runs["s1"], copy]):
        with pytest.raises(ConfigError, match="has the same weights as") as caught:
            assemble_ensemble(twice, tmp_path / "ensemble")
        assert f"{twice[2]}: has the same weights as {runs['s2']}" in str(caught.value)
        assert not (tmp_path / "ensemble").exists()


def test_taggers_single_models_and_nested_ensembles_are_refused(runs, tmp_path):
    with pytest.raises(ConfigError, match="at least two"):
        assemble_ensemble([runs["s1"]], tmp_path / "one")
    ner = write_conll(tmp_path / "ner.conll", NER_SENTENCES)
    config = tiny_config(ner)
    train(
        dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=1)),
        tmp_path / "tagger",
    )
    with pytest.raises(ConfigError, match="this is a tagger"):
        assemble_ensemble([runs["s1"], tmp_path / "tagger"], tmp_path / "mixed")
    assemble_ensemble([runs["s1"], runs["s2"]], tmp_path / "pair")
    with pytest.raises(ConfigError, match="is an ensemble already"):
        assemble_ensemble([runs["s3"], tmp_path / "pair"], tmp_path / "nested")


def test_an_output_that_would_lose_a_model_is_refused(runs, tmp_path):
    """Onto a member, or onto any training run's folder: its model would be replaced and its
    log, card and checkpoint left describing another."""
    before = {name: (runs[name] / "model.safetensors").read_bytes() for name in ("s1", "s3")}
    with pytest.raises(ModelFileError, match="is the input model"):
        assemble_ensemble([runs["s1"], runs["s2"]], runs["s1"])
    with pytest.raises(ModelFileError, match=r"holds a training run \(train_log.jsonl\)"):
        assemble_ensemble([runs["s1"], runs["s2"]], runs["s3"])
    assert {n: (runs[n] / "model.safetensors").read_bytes() for n in before} == before
    # An earlier ensemble (no training run) is replaced, as a rerun of the command does.
    assemble_ensemble([runs["s1"], runs["s2"]], tmp_path / "pair")
    assemble_ensemble([runs["s1"], runs["s3"]], tmp_path / "pair")
    assert load(tmp_path / "pair").meta.provenance["ensemble_of"][1]["path"] == str(runs["s3"])
    result = CliRunner().invoke(
        app, ["ensemble", str(runs["s1"]), str(runs["s2"]), "-o", str(runs["s2"])]
    )
    assert result.exit_code == 1 and result.output.startswith("error: ")
    assert "Traceback" not in result.output


def test_cli_writes_the_ensemble_or_says_what_is_wrong(runs, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        app, ["ensemble", str(runs["s1"]), str(runs["s2"]), "-o", str(tmp_path / "e")]
    )
    assert result.exit_code == 0, result.output
    assert "an ensemble of 2 classifiers" in result.output
    assert load(tmp_path / "e").config.members == 2
    result = runner.invoke(
        app, ["ensemble", str(runs["s1"]), str(runs["labels"]), "-o", str(tmp_path / "f")]
    )
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and "Traceback" not in result.output


def test_a_classifiers_card_names_its_pooling_not_a_tagger_head(runs):
    card = (runs["s1"] / "README.md").read_text()
    assert "(classifier, max-pooled head," in card and "crf head" not in card
