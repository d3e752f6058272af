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
