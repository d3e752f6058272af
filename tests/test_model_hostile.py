"""Hostile and malformed model folders: one `ModelFileError` naming the file, never a hang, a
traceback or gigabytes allocated first; `bilstm-nlp models` lists broken ones and goes on."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import bilstm_nlp.nn.model as model_module
import bilstm_nlp.serialize as serialize
from bilstm_nlp import load, tag_sentences
from bilstm_nlp.cli import app
from bilstm_nlp.errors import ModelFileError
from bilstm_nlp.serialize import save_model
from bilstm_nlp.training.export import export_model

from .tiny_models import save_tiny_tagger


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    meta = {"reader": {"input_format": "conll"}, "task": "ner", "scores": {"dev": 50.0}}
    return save_tiny_tagger(tmp_path / "model", meta)


def _edit_config(model_dir: Path, edit) -> None:
    path = model_dir / "config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


def _expect(model_dir: Path, fragment: str, file: str) -> str:
    with pytest.raises(ModelFileError) as caught:
        load(model_dir)
    message = str(caught.value)
    assert fragment in message, message
    assert file in message
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("hidden", 60_000, "model.hidden must be in"),
        ("hidden", 10_000, "model.hidden must be in"),
        ("word_dim", 10**9, "model.word_dim must be in"),
        ("word_dim", 1e9, "model.word_dim must be int"),
        ("layers", 10**7, "model.layers must be in"),
        ("char_kernel", 10**6, "model.char_kernel must be in"),
        ("max_word_chars", -3, "model.max_word_chars must be in"),
    ],
)
def test_sizes_out_of_range_are_refused_before_building(model_dir, key, value, fragment):
    _edit_config(model_dir, lambda c: c["model"].__setitem__(key, value))
    _expect(model_dir, fragment, "config.json")


def test_sizes_in_range_that_do_not_fit_the_weights_allocate_nothing(model_dir, monkeypatch):
    # hidden 4096 with 8 layers would be 3.2e9 parameters (13 GB): the header says no first.
    _edit_config(model_dir, lambda c: c["model"].update(hidden=4096, layers=8))
    devices = []
    build = model_module.build_model

    def spy(*args, **kwargs):
        devices.append(torch.get_default_device().type)
        # Fail here rather than allocate 13 GB, should the check ever come after the build.
        assert devices[-1] == "meta", "the model was built before the weights were checked"
        return build(*args, **kwargs)

    # Loading builds through nn.model (the shapes first, on the meta device, then the model).
    monkeypatch.setattr(model_module, "build_model", spy)
    message = _expect(model_dir, "weights do not fit the config", "model.safetensors")
    assert "encoder.lstm.weight_ih_l0 is [24, " in message and "needs [16384, " in message
    assert devices == ["meta"]


def test_dropout_nan_is_refused(model_dir: Path):
    path = model_dir / "config.json"
    path.write_text(path.read_text().replace('"dropout": 0.5', '"dropout": NaN'))
    _expect(model_dir, "NaN is not a JSON number", "config.json")


def test_deep_json_is_refused(model_dir: Path):
    (model_dir / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    _expect(model_dir, "nested too deeply", "config.json")


def test_deep_vocabulary_json_is_refused(model_dir: Path):
    (model_dir / "chars.json").write_text("[" * 100_000 + "]" * 100_000)
    _expect(model_dir, "nested too deeply", "chars.json")


def test_huge_number_and_huge_file_are_refused(model_dir: Path):
    path = model_dir / "config.json"
    path.write_text(path.read_text().replace('"hidden": 6', '"hidden": ' + "9" * 5000))
    _expect(model_dir, "number of over 4,300 digits", "config.json")
    path.write_text(" " * (serialize.CONFIG_MAX_BYTES + 1) + "{}")
    _expect(model_dir, "too large", "config.json")


def test_too_many_labels_are_refused(model_dir: Path):
    labels = ["O"] + [f"S-T{i}" for i in range(serialize.MAX_LABELS)]
    (model_dir / "labels.json").write_text(json.dumps(labels))
    _expect(model_dir, "labels; a model has at most 1,000", "labels.json")


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda c: c["meta"].__setitem__("reader", "conll"), "meta.reader must be an object"),
        (lambda c: c.__setitem__("meta", ["a"]), "meta must be an object"),
        (lambda c: c["meta"].__setitem__("scores", "93"), "meta.scores must be an object"),
        (lambda c: c["meta"].__setitem__("task", 3), "meta.task must be a string"),
        (
            lambda c: c["meta"]["reader"].__setitem__("input_format", "xml"),
            "meta.reader.input_format must be one of",
        ),
        (
            lambda c: c["meta"]["reader"].__setitem__("label_column", "3"),
            "meta.reader.label_column must be an integer",
        ),
        (lambda c: c.__setitem__("output_scheme", "IOE"), "output_scheme must be one of"),
        (lambda c: c.__setitem__("kind", "classifier"), "kind must be tagger or classifier"),
    ],
)
def test_malformed_meta_and_schemes_name_the_config(model_dir: Path, edit, fragment: str):
    _edit_config(model_dir, edit)
    _expect(model_dir, fragment, "config.json")


def test_config_symlinked_to_a_device_is_refused(model_dir: Path):
    # /dev/null rather than /dev/zero: the same check refuses both, and were it gone, reading
    # /dev/zero would fill the memory of the machine running the tests.
    (model_dir / "config.json").unlink()
    (model_dir / "config.json").symlink_to("/dev/null")
    _expect(model_dir, "not a regular file", "config.json")


@pytest.mark.parametrize("name", ["config.json", "words.json", "model.safetensors"])
def test_fifo_in_place_of_a_file_is_refused_without_hanging(model_dir: Path, name: str):
    path = model_dir / name
    path.unlink()
    os.mkfifo(path)
    # Were the FIFO opened for reading, this writer would end the wait after 5 s with an empty
    # file, and the error would not be the one expected.
    done = threading.Event()

    def unblock() -> None:
        if not done.wait(5):
            with open(os.open(path, os.O_WRONLY | os.O_NONBLOCK), "wb"):
                pass

    threading.Thread(target=unblock, daemon=True).start()
    try:
        _expect(model_dir, "not a regular file", name)
    finally:
        done.set()


def test_weights_are_saved_with_the_permissions_of_the_other_files(model_dir: Path):
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in model_dir.iterdir()}
    assert modes["model.safetensors"] == modes["config.json"], modes
    umask = os.umask(0)
    os.umask(umask)
    assert modes["config.json"] == 0o666 & ~umask


def test_the_cli_gives_one_line_for_a_hostile_model(model_dir: Path):
    _edit_config(model_dir, lambda c: c["model"].__setitem__("hidden", 60_000))
    result = CliRunner().invoke(app, ["tag", "-m", str(model_dir), "EU rejects it"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "config.json" in lines[0]


# `bilstm-nlp models` with broken models under --path.


def _models_json(path: Path) -> list[dict]:
    result = CliRunner().invoke(app, ["models", "--path", str(path), "--json"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_models_lists_broken_models_with_the_reason(model_dir: Path, tmp_path: Path):
    broken = {}
    for name, edit in {
        "meta-list": lambda c: c.__setitem__("meta", []),
        "scores-string": lambda c: c["meta"].__setitem__("scores", "93.9"),
        "provenance-list": lambda c: c["meta"].__setitem__("provenance", [1]),
    }.items():
        copy = tmp_path / name
        save_model(load(model_dir), copy)
        _edit_config(copy, edit)
        broken[name] = copy
    deep = tmp_path / "deep"
    save_model(load(model_dir), deep)
    (deep / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    broken["deep"] = deep
    rows = {Path(row["path"]).name: row for row in _models_json(tmp_path)}
    assert rows["model"]["problem"] is None and rows["model"]["dev"] == 50.0
    assert rows["meta-list"]["problem"] == "config.json: meta must be an object"
    assert rows["scores-string"]["problem"].startswith("config.json: meta.scores must be")
    assert rows["provenance-list"]["problem"].startswith("config.json: meta.provenance must be")
    assert rows["deep"]["problem"] == "config.json: not valid JSON: nested too deeply"
    result = CliRunner().invoke(app, ["models", "--path", str(tmp_path)])
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert "broken" in result.output


def test_models_skips_folders_that_are_no_models(tmp_path: Path):
    other = tmp_path / "some-tool"
    other.mkdir()
    (other / "config.json").write_text('{"theme": "dark"}')
    fifo = tmp_path / "fifo-tool"
    fifo.mkdir()
    os.mkfifo(fifo / "config.json")
    hugging_face = tmp_path / "bert"
    hugging_face.mkdir()
    (hugging_face / "config.json").write_text('{"model_type": "bert"}')
    (hugging_face / "model.safetensors").write_bytes(b"")
    paths = {row["path"] for row in _models_json(tmp_path)}
    assert not paths & {str(other), str(fifo), str(hugging_face)}


# `bilstm-nlp export` misuse.


def test_export_onto_a_file_is_one_line(model_dir: Path, tmp_path: Path):
    target = tmp_path / "taken.txt"
    target.write_text("keep me")
    result = CliRunner().invoke(app, ["export", str(model_dir), str(target)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "taken.txt: exists and is not a folder" in result.output
    assert target.read_text() == "keep me"


def test_export_negative_max_vectors_is_one_line(model_dir: Path, tmp_path: Path):
    result = CliRunner().invoke(
        app, ["export", str(model_dir), str(tmp_path / "small"), "--max-vectors", "-5"]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "--max-vectors must be 0 or more, got -5" in result.output
    assert not (tmp_path / "small").exists()


def test_export_still_works(model_dir: Path, tmp_path: Path):
    export_model(model_dir, tmp_path / "small", max_vectors=0)
    small = load(tmp_path / "small")
    assert small.embedder.fixed_embedding.num_embeddings == 0
    [result] = tag_sentences(small, [["EU", "rejects", "German", "call"]])
    assert len(result.tags) == 4
