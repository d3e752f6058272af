"""nn/meta.py: the declared `ModelMeta`, checked on load, and the task recorded at training time."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bilstm_nlp import load
from bilstm_nlp.cli import app
from bilstm_nlp.config import DataConfig
from bilstm_nlp.corpus.registry import entry_for_file
from bilstm_nlp.errors import ConfigError, ModelFileError
from bilstm_nlp.nn.meta import ModelMeta, ReaderSettings
from bilstm_nlp.training.loop import train

from .test_train import NER_SENTENCES, tiny_config, write_conll
from .tiny_models import save_tiny_tagger

SAMPLES = Path(__file__).resolve().parents[1] / "corpora" / "samples"


def _quick(config, **data):
    """`config` trained for one epoch, with `data` fields replaced."""
    return dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, **data),
        train=dataclasses.replace(config.train, epochs=1),
    )


def test_task_comes_from_the_config_then_the_registry_then_the_kind(tmp_path: Path) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    base = tiny_config(corpus, "crf", "BIOES")
    train(_quick(base, task="chunking"), tmp_path / "declared")
    assert load(tmp_path / "declared").meta.task == "chunking"
    # No task given: spans are entities by default, whatever the tag names look like.
    train(_quick(base), tmp_path / "default")
    assert load(tmp_path / "default").meta.task == "ner"
    # A file laid out as a registry corpus's (conll2000/train.txt) takes that corpus's task.
    chunking = tmp_path / "corpora" / "conll2000" / "train.txt"
    chunking.parent.mkdir(parents=True)
    shutil.copy(SAMPLES / "conll2000" / "train.txt", chunking)
    from_registry = _quick(tiny_config(chunking, "crf"), dev=str(chunking), label_column=2)
    train(from_registry, tmp_path / "registry")
    assert load(tmp_path / "registry").meta.task == "chunking"


def test_a_task_that_does_not_fit_the_data_is_one_line(tmp_path: Path) -> None:
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    with pytest.raises(ConfigError, match="data.task: a pos model tags plain labels"):
        train(_quick(tiny_config(corpus, "crf", "BIOES"), task="pos"), tmp_path / "m")
    with pytest.raises(ConfigError, match="data.task must be one of"):
        DataConfig(task="parsing")


def test_registry_lookup_by_folder_and_file_name() -> None:
    assert entry_for_file("/anywhere/conll2003/dev.txt").name == "conll2003"
    assert entry_for_file("../shared/corpora/ud_ewt/train.conllu").task == "pos"
    assert entry_for_file("/anywhere/mine/train.txt") is None
    assert entry_for_file("train.txt") is None


def test_loaded_meta_is_declared_and_round_trips(tmp_path: Path) -> None:
    directory = save_tiny_tagger(
        tmp_path / "m", {"task": "chunking", "reader": {"label_column": 2}, "scores": {"dev": 9}}
    )
    model = load(directory)
    assert model.meta == ModelMeta(
        task="chunking",
        scheme="BIOES",
        output_scheme="IOB1",
        reader=ReaderSettings(label_column=2),
        scores={"dev": 9},
        library_version=model.meta.library_version,
    )
    assert model.meta.source == str(directory)
    assert (model.scheme, model.output_scheme) == ("BIOES", "IOB1")
    # Nothing outside the module's own constructor set an attribute on it.
    assert not {"model_path", "half_embeddings", "_token_encoder"} & set(vars(model))


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"task": "sentiment"}, 'meta.task "sentiment" is not a task of a tagger'),
        ({"task": "parsing"}, 'meta.task "parsing" is not a task of a tagger'),
        ({"reader": {"tag_field": "lemma"}}, "meta.reader.tag_field must be one of"),
        ({"scores": {"dev": True}}, "meta.scores.dev must be a number or null"),
    ],
)
def test_a_meta_that_does_not_fit_its_model_is_refused(
    tmp_path: Path, meta: dict, message: str
) -> None:
    directory = save_tiny_tagger(tmp_path / "m", {})
    config = json.loads((directory / "config.json").read_text())
    config["meta"].update(meta)
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match=message):
        load(directory)
    listed = CliRunner().invoke(app, ["models", "--path", str(tmp_path), "--json"])
    row = [json.loads(line) for line in listed.stdout.splitlines() if str(directory) in line]
    assert row and message.split()[0] in row[0]["problem"]


def test_a_model_saved_before_tasks_were_recorded_gets_its_kinds_default(tmp_path: Path) -> None:
    directory = save_tiny_tagger(tmp_path / "m", {})
    config = json.loads((directory / "config.json").read_text())
    del config["meta"]["task"]
    config["scheme"] = None
    config["output_scheme"] = None
    (directory / "config.json").write_text(json.dumps(config))
    # A plain-label tagger's CRF allows every transition (loading checks the masks).
    from safetensors.numpy import load_file, save_file

    weights = load_file(str(directory / "model.safetensors"))
    for name in ("allowed_start", "allowed_transitions", "allowed_end"):
        weights[f"head.crf.{name}"][...] = True
    save_file(weights, str(directory / "model.safetensors"))
    assert load(directory).meta.task == "pos"
