"""Training checkpoints: a resumed run ends with exactly the weights of an uninterrupted one."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from bilstm_nlp import load
from bilstm_nlp.cli import app
from bilstm_nlp.config import ExperimentConfig
from bilstm_nlp.errors import ConfigError
from bilstm_nlp.training.loop import train

from .test_train import NER_SENTENCES, tiny_config, write_conll


def _config(corpus: Path, epochs: int, optimizer: str = "sgd", **model_options) -> ExperimentConfig:
    config = tiny_config(corpus, "crf", "BIOES")
    model = dataclasses.replace(config.model, dropout=0.3, word_dropout=0.1, **model_options)
    settings = dataclasses.replace(
        config.train, epochs=epochs, optimizer=optimizer, lr=0.05, momentum=0.9, threads=1
    )
    return ExperimentConfig(config.data, model, settings)


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoint" / "model" / "model.safetensors"))


@pytest.mark.parametrize(
    ("optimizer", "model_options"),
    [
        ("sgd", {}),
        ("adam", {}),
        # Document batches and the sentences drawn to be read alone come from the run's random
        # state too: a longer run continued from a shorter one's checkpoint is the longer run.
        ("sgd", {"doc_memory": True, "doc_memory_dropout": 0.5}),
    ],
)
def test_resume_equals_uninterrupted_run(
    tmp_path: Path, optimizer: str, model_options: dict
) -> None:
    one_document = write_conll(tmp_path / "one.conll", NER_SENTENCES).read_text()
    corpus = tmp_path / "train.conll"
    corpus.write_text(one_document + one_document.replace("Rabinovich", "Zwingmann"))
    train(_config(corpus, 6, optimizer, **model_options), tmp_path / "whole")
    train(_config(corpus, 3, optimizer, **model_options), tmp_path / "split")
    result = train(_config(corpus, 6, optimizer, **model_options), tmp_path / "split", resume=True)
    assert load(tmp_path / "whole").config.doc_memory == bool(model_options)
    whole, split = _final_weights(tmp_path / "whole"), _final_weights(tmp_path / "split")
    assert whole.keys() == split.keys()
    for key in whole:
        assert torch.equal(whole[key], split[key]), key
    assert [r.epoch for r in result.epochs] == [1, 2, 3, 4, 5, 6]
    logs = [
        (tmp_path / run / "train_log.jsonl").read_text().splitlines() for run in ("whole", "split")
    ]
    assert [json.loads(line)["epoch"] for line in logs[1]] == [1, 2, 3, 4, 5, 6]
    assert [json.loads(line)["loss"] for line in logs[0]] == [
        json.loads(line)["loss"] for line in logs[1]
    ]
    best_whole = load(tmp_path / "whole").state_dict()
    best_split = load(tmp_path / "split").state_dict()
    assert all(torch.equal(best_whole[k], best_split[k]) for k in best_whole)


def _with_average(config: ExperimentConfig, average_epochs: int) -> ExperimentConfig:
    return dataclasses.replace(
        config, train=dataclasses.replace(config.train, average_epochs=average_epochs)
    )


def test_resume_may_start_averaging_the_epochs_it_adds(tmp_path: Path) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    train(_with_average(_config(corpus, 5), 2), tmp_path / "whole")
    train(_config(corpus, 3), tmp_path / "split")
    result = train(_with_average(_config(corpus, 5), 2), tmp_path / "split", resume=True)
    assert [r.epoch for r in result.epochs] == [1, 2, 3, 4, 5]
    averages = [
        load_file(str(tmp_path / run / "checkpoint" / "average.safetensors"))
        for run in ("whole", "split")
    ]
    assert averages[0]["__count__"].item() == averages[1]["__count__"].item() == 2
    for key in averages[0]:
        assert torch.equal(averages[0][key], averages[1][key]), key
    logs = [
        [json.loads(line) for line in (tmp_path / run / "train_log.jsonl").read_text().splitlines()]
        for run in ("whole", "split")
    ]
    assert [r["average_dev_score"] for r in logs[1]] == [r["average_dev_score"] for r in logs[0]]
    assert [r["average_dev_score"] is not None for r in logs[1]] == [False] * 3 + [True] * 2
    best_whole = load(tmp_path / "whole").state_dict()
    best_split = load(tmp_path / "split").state_dict()
    assert all(torch.equal(best_whole[k], best_split[k]) for k in best_whole)


def test_resume_reads_checkpoints_of_earlier_versions(tmp_path: Path) -> None:
    # Checkpoints written before the averaging window could change on resume record it with the
    # run's settings, and lack the settings added since (`model.members`, at its default then).
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    train(_config(corpus, 2), tmp_path / "run")
    state_file = tmp_path / "run" / "checkpoint" / "state.json"
    state = json.loads(state_file.read_text())
    state["config"]["train"] |= {"average_epochs": 0, "epochs": 2}
    del state["config"]["model"]["members"]
    state_file.write_text(json.dumps(state))
    result = train(_with_average(_config(corpus, 4), 2), tmp_path / "run", resume=True)
    assert [r.average_dev_score is not None for r in result.epochs] == [False, False, True, True]
    # A setting the run did have is still held to.
    state = json.loads(state_file.read_text())
    del state["config"]["model"]["doc_memory"]
    state["config"]["model"]["hidden"] += 1
    state_file.write_text(json.dumps(state))
    with pytest.raises(ConfigError, match="model.hidden"):
        train(_with_average(_config(corpus, 6), 2), tmp_path / "run", resume=True)


@pytest.mark.parametrize(
    ("first", "then"),
    [
        # The checkpoint holds epochs 2-3's average; a 5-epoch run would average epochs 4-5.
        ((3, 2), (5, 2)),
        # Averaging epochs 3-5 reaches back to epoch 3, which the checkpoint did not average.
        ((3, 0), (5, 3)),
        # Averaging dropped after it began.
        ((3, 2), (5, 0)),
    ],
)
def test_resume_refuses_an_averaging_window_it_cannot_rebuild(
    tmp_path: Path, first: tuple[int, int], then: tuple[int, int]
) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    train(_with_average(_config(corpus, first[0]), first[1]), tmp_path / "run")
    path = tmp_path / "train.json"
    path.write_text(json.dumps(_with_average(_config(corpus, then[0]), then[1]).to_dict()))
    result = CliRunner().invoke(
        app, ["train", "--config", str(path), "--output", str(tmp_path / "run"), "--resume"]
    )
    assert result.exit_code == 1, result.output
    assert "train.average_epochs" in result.output and "Traceback" not in result.output
    assert "epoch 3" in result.output


def test_resume_refuses_a_changed_config(tmp_path: Path) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    config = _config(corpus, 1)
    train(config, tmp_path / "run")
    path = tmp_path / "train.json"
    changed = config.to_dict()
    changed["train"]["lr"] = 0.1
    path.write_text(json.dumps(changed))
    result = CliRunner().invoke(
        app, ["train", "--config", str(path), "--output", str(tmp_path / "run"), "--resume"]
    )
    assert result.exit_code == 1
    assert "train.lr" in result.output and "Traceback" not in result.output


def test_a_resumed_runs_card_rebuilds_it_in_one_run_and_fewer_epochs_are_refused(
    tmp_path: Path,
) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    run = tmp_path / "run"
    train(_config(corpus, 2), run, command=f"bilstm-nlp train --config c.json -o {run} --epochs 2")
    # The resumed run is the uninterrupted one (test_resume_equals_uninterrupted_run): its
    # card gives that run's command, which a fresh checkout can run.
    resumed = f"bilstm-nlp train --config c.json -o {run} --resume --epochs 3"
    train(_config(corpus, 3), run, resume=True, command=resumed)
    card = (run / "README.md").read_text()
    assert f"bilstm-nlp train --config c.json -o {run} --epochs 3\n" in card
    assert "--resume" not in card
    # Resuming a finished run with fewer epochs than it has: refused, nothing rewritten.
    path = tmp_path / "train.json"
    path.write_text(json.dumps(_config(corpus, 2).to_dict()))
    config = (run / "config.json").read_bytes()
    args = ["train", "--config", str(path), "--output", str(run), "--resume", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "is after epoch 3: train.epochs 2" in result.output
    assert (run / "config.json").read_bytes() == config


def test_resume_without_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    path = tmp_path / "train.json"
    path.write_text(json.dumps(_config(corpus, 1).to_dict()))
    result = CliRunner().invoke(
        app, ["train", "--config", str(path), "--output", str(tmp_path / "none"), "--resume"]
    )
    assert result.exit_code == 1 and "no checkpoint" in result.output


@pytest.mark.slow
def test_kill_at_random_moments_then_resume(tmp_path: Path) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES * 20)
    config = _config(corpus, 5)
    path = tmp_path / "train.json"
    path.write_text(json.dumps(config.to_dict()))
    command = [
        sys.executable,
        "-m",
        "bilstm_nlp.cli",
        "train",
        "--config",
        str(path),
        "--no-progress",
        "--output",
    ]
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "cache")}
    subprocess.run([*command, str(tmp_path / "whole")], check=True, env=env, capture_output=True)
    rng = random.Random(5)
    run = tmp_path / "killed"
    process = subprocess.Popen([*command, str(run)], env=env, stderr=subprocess.DEVNULL)
    for _ in range(3):
        time.sleep(rng.uniform(3.0, 8.0))
        if process.poll() is not None:
            break
        process.send_signal(signal.SIGKILL)
        process.wait()
        # The best model kept so far is whole and loadable at any moment.
        if (run / "config.json").exists():
            load(run)
        resume = [*command, str(run)] + (["--resume"] if (run / "checkpoint").exists() else [])
        process = subprocess.Popen(resume, env=env, stderr=subprocess.DEVNULL)
    assert process.wait() == 0
    whole, killed = _final_weights(tmp_path / "whole"), _final_weights(run)
    assert all(torch.equal(whole[k], killed[k]) for k in whole)
