"""Training end to end on tiny corpora: learned to 100%, save → load identical, CLI."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bilstm_nlp import load, tag_sentences
from bilstm_nlp.cli import app
from bilstm_nlp.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig
from bilstm_nlp.decode import classify_sentences
from bilstm_nlp.serialize import save_model
from bilstm_nlp.training.loop import train

NER_SENTENCES = [
    [("EU", "I-ORG"), ("rejects", "O"), ("German", "I-MISC"), ("call", "O"), (".", "O")],
    [("Peter", "I-PER"), ("Blackburn", "I-PER"), ("visited", "O"), ("Paris", "I-LOC")],
    [("BRUSSELS", "I-LOC"), ("1996-08-22", "O")],
    [("The", "O"), ("European", "I-ORG"), ("Commission", "I-ORG"), ("said", "O")],
    [
        ("Germany", "I-LOC"),
        ("'s", "O"),
        ("representative", "O"),
        ("Werner", "I-PER"),
        ("Zwingmann", "I-PER"),
        ("said", "O"),
    ],
    [
        ("Spanish", "I-MISC"),
        ("Farm", "I-ORG"),
        ("Minister", "O"),
        ("Loyola", "I-PER"),
        ("de", "I-PER"),
        ("Palacio", "I-PER"),
    ],
    [("Rabinovich", "I-PER"), ("Rabinovich", "B-PER"), ("met", "O")],
]


def write_conll(path: Path, sentences) -> Path:
    lines = ["-DOCSTART- -X- O O", ""]
    for sentence in sentences:
        lines += [f"{word} NNP I-NP {tag}" for word, tag in sentence] + [""]
    path.write_text("\n".join(lines) + "\n")
    return path


def tiny_config(
    train_file: Path, head: str = "crf", scheme: str | None = None, **model
) -> ExperimentConfig:
    return ExperimentConfig(
        data=DataConfig(train=str(train_file), dev=str(train_file), scheme=scheme),
        model=ModelConfig(
            vectors=None,
            word_dim=16,
            hidden=24,
            char_hidden=12,
            char_dim=8,
            dropout=0.0,
            word_dropout=0.0,
            head=head,
            **model,
        ),
        train=TrainConfig(
            optimizer="adam", lr=0.02, batch_size=4, epochs=60, patience=0, seed=7, threads=1
        ),
    )


@pytest.mark.parametrize(("head", "scheme"), [("crf", "BIOES"), ("softmax", None), ("crf", None)])
def test_tiny_ner_corpus_is_learned_to_100(tmp_path: Path, head: str, scheme: str | None) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    result = train(tiny_config(corpus, head, scheme), tmp_path / "model")
    assert result.best_dev_score == pytest.approx(100.0)
    model = load(tmp_path / "model")
    tokens = [[w for w, _ in s] for s in NER_SENTENCES]
    tagged = tag_sentences(model, tokens)
    # Output comes in the file's scheme (IOB1) whatever scheme the model was trained in.
    assert [t.tags for t in tagged] == [[tag for _, tag in s] for s in NER_SENTENCES]
    for sentence in tagged:
        assert all(0.0 < span.score <= 1.0 + 1e-6 for span in sentence.spans)


def test_save_load_gives_identical_predictions(tmp_path: Path) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    config = tiny_config(corpus, "crf", "BIOES")
    config = ExperimentConfig(
        config.data, config.model, TrainConfig(**{**config.train.__dict__, "epochs": 3})
    )
    train(config, tmp_path / "model")
    first = load(tmp_path / "model")
    save_model(first, tmp_path / "copy")
    second = load(tmp_path / "copy")
    for (name, a), (_, b) in zip(
        first.state_dict().items(), second.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    tokens = [[w for w, _ in s] for s in NER_SENTENCES] + [[], ["unknown", "words", "here"]]
    one = tag_sentences(first, tokens, k=3)
    two = tag_sentences(second, tokens, k=3)
    assert [t.tags for t in one] == [t.tags for t in two]
    assert [t.spans for t in one] == [t.spans for t in two]
    assert [t.kbest for t in one] == [t.kbest for t in two]
    assert one[-2].tags == [] and one[-2].spans == []


def test_kbest_is_ordered_and_first_equals_viterbi(tmp_path: Path) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    config = tiny_config(corpus, "crf", "BIOES")
    config = ExperimentConfig(
        config.data, config.model, TrainConfig(**{**config.train.__dict__, "epochs": 2})
    )
    train(config, tmp_path / "model")
    model = load(tmp_path / "model")
    for result in tag_sentences(model, [[w for w, _ in s] for s in NER_SENTENCES], k=4):
        probs = [p for _, p in result.kbest]
        assert probs == sorted(probs, reverse=True)
        assert result.kbest[0][0] == result.tags
        assert sum(probs) <= 1.0 + 1e-5


def test_tiny_classifier_is_learned_to_100(tmp_path: Path) -> None:
    rows = [
        {"text": "a wonderful , moving film", "label": "positive"},
        {"text": "dull and lifeless", "label": "negative"},
        {"text": "an instant classic", "label": "positive"},
        {"text": "a waste of time", "label": "negative"},
        {"text": "great acting and a great story", "label": "positive"},
        {"text": "boring , predictable mess", "label": "negative"},
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = ExperimentConfig(
        data=DataConfig(train=str(path), dev=str(path)),
        model=ModelConfig(
            task="classifier",
            vectors=None,
            word_dim=16,
            hidden=16,
            char_encoder="none",
            dropout=0.0,
            word_dropout=0.0,
            pooling="max",
        ),
        train=TrainConfig(
            optimizer="adam", lr=0.02, batch_size=2, epochs=40, patience=0, seed=3, threads=1
        ),
    )
    result = train(config, tmp_path / "model")
    assert result.best_dev_score == pytest.approx(100.0)
    model = load(tmp_path / "model")
    reloaded = load(tmp_path / "model")
    texts = [r["text"].split() for r in rows]
    first = classify_sentences(model, texts)
    assert [c.label for c in first] == [r["label"] for r in rows]
    assert [c.probs for c in first] == [c.probs for c in classify_sentences(reloaded, texts)]
    assert all(abs(sum(c.probs.values()) - 1.0) < 1e-5 for c in first)


def test_cli_train_then_evaluate_json(tmp_path: Path) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    config = tiny_config(corpus, "crf", "BIOES")
    config_path = tmp_path / "train.json"
    config_path.write_text(json.dumps(config.to_dict()))
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["train", "--config", str(config_path), "--output", str(tmp_path / "m"), "--epochs", "40"],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m" / "README.md").is_file()
    log = [
        json.loads(line) for line in (tmp_path / "m" / "train_log.jsonl").read_text().splitlines()
    ]
    assert len(log) == 40 and {"loss", "dev_score", "tokens_per_second"} <= set(log[0])
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(tmp_path / "m"),
            str(corpus),
            "--json",
            "--predictions",
            str(tmp_path / "pred.txt"),
        ],
    )
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["f1"] == pytest.approx(100.0)
    assert scores["sentences"] == len(NER_SENTENCES)
    assert scores["tokens"] == sum(len(s) for s in NER_SENTENCES)
    assert set(scores["per_type"]) == {"ORG", "MISC", "PER", "LOC"}
    columns = [line.split() for line in (tmp_path / "pred.txt").read_text().splitlines() if line]
    assert len(columns) == sum(len(s) for s in NER_SENTENCES)
    assert all(len(c) == 3 and c[1] == c[2] for c in columns)


def test_cli_config_errors_are_one_line(tmp_path: Path) -> None:
    config_path = tmp_path / "train.json"
    config_path.write_text(json.dumps({"model": {"hiden": 3}}))
    result = CliRunner().invoke(
        app, ["train", "--config", str(config_path), "--output", str(tmp_path / "m")]
    )
    assert result.exit_code == 1
    assert "model.hiden" in result.output and "Traceback" not in result.output
    config_path.write_text(json.dumps({"train": {"lr": "fast"}}))
    result = CliRunner().invoke(
        app, ["train", "--config", str(config_path), "--output", str(tmp_path / "m")]
    )
    assert result.exit_code == 1 and "train.lr must be float" in result.output


def test_unseen_gold_labels_count_as_misses(tmp_path: Path) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    config = tiny_config(corpus, "crf", "BIOES")
    config = ExperimentConfig(
        config.data, config.model, TrainConfig(**{**config.train.__dict__, "epochs": 1})
    )
    train(config, tmp_path / "m")
    other = write_conll(tmp_path / "other.conll", [[("Mars", "I-PLANET"), ("rises", "O")]])
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "m"), str(other), "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["unseen_labels"] == ["I-PLANET"]
    assert scores["per_type"]["PLANET"]["recall"] == 0.0


def test_prepare_training_encodes_the_classlabel_ids(tmp_path: Path) -> None:
    from bilstm_nlp.training import prepare_training, run_epoch

    corpus = write_conll(tmp_path / "train.txt", NER_SENTENCES)
    run = prepare_training(tiny_config(corpus, "crf", "BIOES"))
    names = run.data.train.features["tags"].feature.names
    # One vocabulary: the model's labels are the ClassLabel names, and the ids pass through.
    assert run.model.vocab.labels.items == names == sorted(names)
    assert [e.label_ids for e in run.encoded] == run.data.train["tags"][:]
    loss, tokens = run_epoch(run, random.Random(0))
    assert math.isfinite(loss) and tokens == sum(len(s) for s in NER_SENTENCES)


def test_a_stray_iob1_b_tag_trains_in_the_files_own_scheme(tmp_path: Path) -> None:
    # CoNLL-2003 train has "O B-X" twice: in IOB1 the same entity as "O I-X", but a path the IOB1
    # CRF forbids. Training in the file's own scheme (no data.scheme) must still score the gold.
    sentences = [*NER_SENTENCES, [("in", "O"), ("Bonn", "B-LOC"), ("today", "O")]]
    corpus = write_conll(tmp_path / "train.conll", sentences)
    result = train(tiny_config(corpus, "crf", None), tmp_path / "model")
    assert result.epochs[0].loss < 100, "the gold path was scored as forbidden"
    assert result.best_dev_score == pytest.approx(100.0)
    model = load(tmp_path / "model")
    assert model.scheme == "IOB1" and "B-LOC" not in model.vocab.labels.items
    [tagged] = tag_sentences(model, [["in", "Bonn", "today"]])
    assert tagged.tags == ["O", "I-LOC", "O"]  # the canonical IOB1 of the same entity
