"""Training protocols and guards: weight averaging, train + dev, divergence, locks, bad outputs."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from bilstm_nlp import load
from bilstm_nlp.cli import app
from bilstm_nlp.config import ExperimentConfig
from bilstm_nlp.corpus.registry import load_registry
from bilstm_nlp.errors import ConfigError, InputFormatError
from bilstm_nlp.training.cards import RecipeFacts, ShippedFacts, shipped_card
from bilstm_nlp.training.loop import LOCK_FILE, train

from .test_train import NER_SENTENCES, tiny_config, write_conll


def _config(corpus: Path, epochs: int, average: int = 0, with_dev: bool = False, **train_values):
    config = tiny_config(corpus, "crf", "BIOES")
    model = dataclasses.replace(config.model, dropout=0.3, word_dropout=0.1)
    values = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9} | train_values
    settings = dataclasses.replace(config.train, epochs=epochs, average_epochs=average, **values)
    data = dataclasses.replace(config.data, train_with_dev=with_dev)
    return ExperimentConfig(data, model, settings)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def test_averaged_model_is_the_mean_of_the_last_epochs(tmp_path: Path) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    # The raw weights after epochs 2, 3 and 4 (each run's checkpoint holds its last epoch's).
    for epochs in (2, 3, 4):
        train(_config(corpus, epochs, with_dev=True), tmp_path / f"raw{epochs}")
    raw = [_weights(tmp_path / f"raw{e}" / "checkpoint" / "model") for e in (2, 3, 4)]
    result = train(_config(corpus, 4, average=3, with_dev=True), tmp_path / "avg")
    averaged = _weights(tmp_path / "avg")
    assert result.best_epoch == 4 and result.best_dev_score is None
    for name, value in averaged.items():
        if not value.is_floating_point():
            continue
        expected = sum(r[name].double() for r in raw) / 3
        torch.testing.assert_close(value.double(), expected, rtol=0, atol=1e-6)
    # Averaging does not change the run itself: its last raw weights are the plain run's.
    last = _weights(tmp_path / "avg" / "checkpoint" / "model")
    assert all(torch.equal(last[k], raw[2][k]) for k in last)
    checkpoint_config = tmp_path / "avg" / "checkpoint" / "model" / "config.json"
    assert json.loads(checkpoint_config.read_text())["meta"]["scores"] == {
        "dev": None,
        "epoch": 4,
        "averaged_epochs": None,
    }
    meta = json.loads((tmp_path / "avg" / "config.json").read_text())["meta"]
    assert meta["scores"] == {"dev": None, "epoch": 4, "averaged_epochs": [2, 4]}
    card = (tmp_path / "avg" / "README.md").read_text()
    assert "trained on train + dev for a fixed 4 epochs" in card
    assert "weights averaged over epochs 2-4" in card


def test_averaging_with_dev_keeps_what_scores_best(tmp_path: Path) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    result = train(_config(corpus, 5, average=2), tmp_path / "m")
    log = [
        json.loads(line) for line in (tmp_path / "m" / "train_log.jsonl").read_text().splitlines()
    ]
    assert [r["average_dev_score"] is None for r in log] == [True, True, True, False, False]
    candidates = [max(r["dev_score"], r["average_dev_score"] or -1.0) for r in log]
    assert result.best_dev_score == max(candidates)
    assert result.best_epoch == 1 + candidates.index(max(candidates))


class _Killed(Exception):
    pass


def _kill_after(epoch: int):
    def on_epoch(report) -> None:
        if report.epoch == epoch:
            raise _Killed  # after the epoch's checkpoint, as a kill -9 would leave it

    return on_epoch


def test_resume_with_averaging_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    config = _config(corpus, 5, average=3, with_dev=True)
    train(config, tmp_path / "whole")
    with pytest.raises(_Killed):
        train(config, tmp_path / "split", on_epoch=_kill_after(4))  # mid-average: epochs 3, 4
    train(config, tmp_path / "split", resume=True)
    whole, split = _weights(tmp_path / "whole"), _weights(tmp_path / "split")
    assert all(torch.equal(whole[k], split[k]) for k in whole)
    assert not all(
        torch.equal(whole[k], v)
        for k, v in _weights(tmp_path / "whole" / "checkpoint" / "model").items()
    )


def test_train_with_dev_learns_dev_labels_and_says_so(tmp_path: Path) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    dev = write_conll(tmp_path / "dev.conll", [[("Mars", "I-PLANET"), ("rises", "O")]])
    config = _config(corpus, 2, with_dev=True)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, dev=str(dev)))
    train(config, tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["meta"]["provenance"]["train_sentences"] == len(NER_SENTENCES) + 1
    assert "S-PLANET" in json.loads((tmp_path / "m" / "labels.json").read_text())
    no_dev = dataclasses.replace(config, data=dataclasses.replace(config.data, dev=None))
    with pytest.raises(ConfigError, match="train_with_dev needs a dev split"):
        train(no_dev, tmp_path / "m2")


def test_cli_train_with_dev_and_averaging_options(tmp_path: Path) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    config_path = tmp_path / "train.json"
    config_path.write_text(json.dumps(_config(corpus, 3).to_dict()))
    result = CliRunner().invoke(
        app,
        [
            "train",
            "-c",
            str(config_path),
            "-o",
            str(tmp_path / "m"),
            "--train-with-dev",
            "--average-epochs",
            "2",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "m" / "config.json").read_text())["meta"]
    assert meta["provenance"]["config"]["data"]["train_with_dev"] is True
    assert meta["scores"]["averaged_epochs"] == [2, 3]


def test_divergence_stops_with_a_clear_error_and_saves_nothing(tmp_path: Path) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES * 4)
    config_path = tmp_path / "train.json"
    config = _config(corpus, 5, lr=5.0, clip=0.0)
    config_path.write_text(json.dumps(config.to_dict()))
    result = CliRunner().invoke(
        app, ["train", "-c", str(config_path), "-o", str(tmp_path / "m"), "--no-progress"]
    )
    assert result.exit_code == 1
    assert "training diverged at epoch 1" in result.output and "lower train.lr" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_a_healthy_run_is_not_taken_for_divergence(tmp_path: Path) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES * 4)
    result = train(_config(corpus, 6), tmp_path / "m")
    assert len(result.epochs) == 6 and result.best_dev_score > 50


def test_no_training_sentences_is_an_error_and_saves_nothing(tmp_path: Path) -> None:
    corpus = tmp_path / "train.conll"
    corpus.write_text("-DOCSTART- -X- O O\n\n")
    with pytest.raises((InputFormatError, ConfigError)):
        train(_config(corpus, 2), tmp_path / "m")
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_a_second_run_into_a_locked_folder_is_refused(tmp_path: Path) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    output = tmp_path / "m"
    output.mkdir()
    handle = os.open(output / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
        result = CliRunner().invoke(
            app, ["train", "--train", str(corpus), "--epochs", "1", "-o", str(output)]
        )
    finally:
        os.close(handle)
    assert result.exit_code == 1
    assert "another training run is writing to this folder" in result.output
    assert not (output / "train_log.jsonl").exists()


def test_output_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    target = tmp_path / "model.txt"
    target.write_text("keep me")
    result = CliRunner().invoke(
        app, ["train", "--train", str(corpus), "--epochs", "1", "-o", str(target)]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output == f"error: {target}: the output must be a folder, and this is a file\n"
    assert target.read_text() == "keep me"


def test_export_of_a_train_plus_dev_model_carries_its_recipe_figure(tmp_path: Path) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    train(_config(corpus, 2, with_dev=True), tmp_path / "run")
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "export",
            str(tmp_path / "run"),
            str(tmp_path / "shipped"),
            "--dev",
            str(corpus),
            "--recipe-dev",
            "88.5",
            "--recipe-command",
            "bilstm-nlp train --config c.json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "on dev, trained on" in result.output
    scores = json.loads((tmp_path / "shipped" / "config.json").read_text())["meta"]["scores"]
    assert scores["dev"] is None and scores["recipe_dev"] == 88.5
    assert scores["recipe_command"] == "bilstm-nlp train --config c.json"
    assert 0 <= scores["dev_trained_on"] <= 100
    card = (tmp_path / "shipped" / "README.md").read_text()
    assert "Dev figure of its recipe" in card and "**88.50**" in card
    listed = runner.invoke(app, ["models", "--path", str(tmp_path), "--json"])
    rows = {Path(r["path"]).name: r for r in map(json.loads, listed.stdout.splitlines())}
    assert rows["shipped"]["dev"] == 88.5
    assert rows["shipped"]["figure"] == "recipe dev (trained on train+dev)"
    # The run folder itself has no held-out figure and says so.
    assert rows["run"]["dev"] is None and rows["run"]["figure"].startswith("recipe dev")


def test_an_export_of_an_export_keeps_its_card_and_recipe_figure(tmp_path: Path) -> None:
    """A shipped model by name (the README's `bilstm-nlp export ner ...`), exported again
    without --recipe-dev: the card (with the corpus licence) and the recipe figure come along."""
    runner = CliRunner()
    for fmt in ("safetensors", "onnx"):
        target = tmp_path / fmt
        result = runner.invoke(app, ["export", "ner", str(target), "--format", fmt])
        assert result.exit_code == 0, result.output
        card = (target / "README.md").read_text()
        shipped = (Path(load("ner").meta.source or "") / "README.md").read_text()
        assert card.startswith(shipped.rstrip("\n")) and "licence" in card
        scores = json.loads((target / "config.json").read_text())["meta"]["scores"]
        assert scores["recipe_dev"] == load("ner").meta.scores["recipe_dev"] is not None
        assert scores["recipe_command"] == load("ner").meta.scores["recipe_command"]
    # Onto itself: refused, the folder untouched.
    weights = (tmp_path / "safetensors" / "model.safetensors").read_bytes()
    result = runner.invoke(
        app, ["export", str(tmp_path / "safetensors"), str(tmp_path / "safetensors")]
    )
    assert result.exit_code == 1 and "is the input model" in result.output
    assert (tmp_path / "safetensors" / "model.safetensors").read_bytes() == weights


def _ner_facts(name: str) -> ShippedFacts:
    return ShippedFacts(
        name=name,
        corpus=load_registry()["conll2003"],
        metric="entity F1",
        dev_name="dev",
        evaluate_command="bilstm-nlp evaluate ner ../shared/corpora/conll2003/dev.txt",
        weights_mb=1.0,
    )


def _shipped_card(run: Path, corpus: Path) -> str:
    """`run` exported beside it (`RUN-shipped`) as a train + dev model, and its shipped card."""
    shipped = run.with_name(f"{run.name}-shipped")
    result = CliRunner().invoke(
        app, ["export", str(run), str(shipped), "--dev", str(corpus), "--recipe-dev", "90"]
    )
    assert result.exit_code == 0, result.output
    return shipped_card(load(shipped), _ner_facts(run.name))


def test_shipped_card_says_which_weights_were_kept(tmp_path: Path) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    train(_config(corpus, 3, average=2, with_dev=True), tmp_path / "averaged")
    train(_config(corpus, 3, with_dev=True), tmp_path / "last")
    cards = {run: _shipped_card(tmp_path / run, corpus) for run in ("averaged", "last")}
    assert "fixed 3 epochs, the average of epochs 2-3's weights kept" in cards["averaged"]
    assert "fixed 3 epochs, the last epoch's weights kept" in cards["last"]
    assert "average" not in cards["last"]
    assert "cosine" not in cards["last"]


def test_cards_name_a_cosine_schedule(tmp_path: Path) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    train(_config(corpus, 2, with_dev=True, lr_schedule="cosine"), tmp_path / "run")
    note = "learning rate annealed to zero on a cosine"
    assert note in (tmp_path / "run" / "README.md").read_text()
    card = _shipped_card(tmp_path / "run", corpus)
    assert (
        "the last epoch's weights kept (the epoch count and the settings were chosen on dev "
        f"first); {note}" in card
    )


def test_shipped_card_of_a_distilled_model_rebuilds_its_teachers_first(tmp_path: Path) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    train(_config(corpus, 1, with_dev=True), tmp_path / "run")
    model = load(tmp_path / "run")
    teachers = [
        {"path": f"runs/t{n}", "seed": n, "command": f"bilstm-nlp train --seed {n} -o runs/t{n}"}
        for n in (1, 2)
    ]
    model.meta = dataclasses.replace(
        model.meta,
        provenance=model.meta.provenance | {"teachers": teachers},
        scores={"recipe_dev": 90.0, "recipe_command": "c", "dev_trained_on": 99.0},
    )
    card = shipped_card(model, _ner_facts("ner"))
    lines = card.splitlines()
    student = lines.index(
        "bilstm-nlp train --config models/ner/train.json --threads 1 --output runs/ner"
    )
    assert lines[student - 2 : student] == [
        "bilstm-nlp train --seed 1 -o runs/t1  # teacher 1",
        "bilstm-nlp train --seed 2 -o runs/t2  # teacher 2",
    ]


def test_shipped_card_rebuilds_with_the_recorded_threads_and_measured_recipe(
    tmp_path: Path,
) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    train(_config(corpus, 1, with_dev=True, threads=2), tmp_path / "run")
    model = load(tmp_path / "run")
    model.meta = dataclasses.replace(
        model.meta,
        scores={"recipe_dev": 90.0, "recipe_command": "recorded", "dev_trained_on": 99.0},
    )
    measured = RecipeFacts(("bilstm-nlp train --config bench/x.json",), "run `x`", "its log")
    card = shipped_card(model, dataclasses.replace(_ner_facts("ner"), recipe=measured))
    lines = card.splitlines()
    assert "bilstm-nlp train --config models/ner/train.json --threads 2 --output runs/ner" in lines
    assert lines[-1].startswith("The licence of its training corpus, `conll2003`, governs")
    assert "(the same settings trained on train alone: run `x`)" in card
    assert "`recorded`" not in card  # the recorded text stays an export argument, not a command
    recipe = lines.index("The recipe's dev figure, measured again (its log):")
    assert lines[recipe + 3] == "bilstm-nlp train --config bench/x.json"
    # The run recorded this machine's CPU kind, which bit-identical weights also need.
    from bilstm_nlp.training.setup import cpu_model

    assert model.meta.provenance["cpu"] == cpu_model() != ""
    assert f"the run recorded {cpu_model()}." in card


def test_a_recipe_figure_for_a_model_with_its_own_dev_figure_is_refused(tmp_path: Path) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    train(_config(corpus, 1), tmp_path / "run")
    result = CliRunner().invoke(
        app, ["export", str(tmp_path / "run"), str(tmp_path / "out"), "--recipe-dev", "90"]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "--recipe-dev is for models trained on train + dev" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        # lr / (1 + 0.5 e), e from 0: 0.05, 0.05 / 1.5, 0.05 / 2, 0.05 / 2.5.
        ("inverse", [0.05, 0.05 / 1.5, 0.025, 0.02]),
        # lr (1 + cos(pi e / 4)) / 2: the full rate, half-way at epoch 3, near zero at the last.
        ("cosine", [0.05, 0.05 * (1 + 2**-0.5) / 2, 0.025, 0.05 * (1 - 2**-0.5) / 2]),
    ],
)
def test_each_epoch_trains_at_its_scheduled_rate(
    tmp_path: Path, schedule: str, expected: list[float]
) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    config = _config(corpus, 4, lr_schedule=schedule, lr_decay=0.5)
    result = train(config, tmp_path / "run")
    assert [report.lr for report in result.epochs] == pytest.approx(expected, rel=1e-12)
    logged = (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["lr"] for line in logged] == pytest.approx(expected, rel=1e-12)


def test_a_cosine_run_resumes_only_at_its_own_length(tmp_path: Path) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    train(_config(corpus, 4, lr_schedule="cosine"), tmp_path / "whole")
    train(_config(corpus, 4, lr_schedule="cosine", max_minutes=1e-9), tmp_path / "split")
    assert len((tmp_path / "split" / "train_log.jsonl").read_text().splitlines()) == 1
    train(_config(corpus, 4, lr_schedule="cosine"), tmp_path / "split", resume=True)
    whole, split = _weights(tmp_path / "whole"), _weights(tmp_path / "split")
    assert all(torch.equal(whole[key], split[key]) for key in whole)
    # Four more epochs would re-time the four already trained: refused, naming both lengths.
    path = tmp_path / "train.json"
    path.write_text(json.dumps(_config(corpus, 8, lr_schedule="cosine").to_dict()))
    result = CliRunner().invoke(
        app, ["train", "--config", str(path), "--output", str(tmp_path / "split"), "--resume"]
    )
    assert result.exit_code == 1, result.output
    assert "train.epochs 8" in result.output and "over 4 epochs" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("schedule", ["inverse", "cosine"])
def test_a_cosine_run_stopped_early_says_it_never_annealed(
    tmp_path: Path, schedule: str, caplog: pytest.LogCaptureFixture
) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    with caplog.at_level("WARNING"):
        train(_config(corpus, 4, lr_schedule=schedule, max_minutes=1e-9), tmp_path / "run")
    if schedule == "inverse":
        assert "never annealed" not in caplog.text
        return
    # Epoch 1 of 4 trains at the full rate: 0.05, 100% of train.lr.
    assert "stopped after epoch 1 of 4 with the learning rate still at 0.05 (100%" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        train(_config(corpus, 4, lr_schedule="cosine"), tmp_path / "run", resume=True)
    assert "never annealed" not in caplog.text


def test_an_unknown_schedule_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="train.lr_schedule"):
        ExperimentConfig.from_dict({"train": {"lr_schedule": "linear"}})


def test_cli_lr_schedule_option(tmp_path: Path) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    config_path = tmp_path / "train.json"
    config_path.write_text(json.dumps(_config(corpus, 2).to_dict()))
    options = ["train", "-c", str(config_path), "--no-progress", "--lr-schedule"]
    result = CliRunner().invoke(app, [*options, "cosine", "-o", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "m" / "config.json").read_text())["meta"]
    assert meta["provenance"]["config"]["train"]["lr_schedule"] == "cosine"
    logged = (tmp_path / "m" / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["lr"] for line in logged] == pytest.approx([0.05, 0.025])
    result = CliRunner().invoke(app, [*options, "linear", "-o", str(tmp_path / "n")])
    assert result.exit_code != 0
    assert "train.lr_schedule" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "n").exists()
