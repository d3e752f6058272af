"""Hostile and malformed model folders: one `ModelFileError` naming the file, never a hang, a
traceback or gigabytes allocated first; `bilstm-nlp models` lists broken ones and goes on."""

from __future__ import annotations

import json
import os
import stat
import threading
import tracemalloc
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


def test_millions_of_short_strings_are_refused_before_they_are_parsed(model_dir: Path):
    # 25 MB on disk, under the 512 MiB bound, but some 350 MB as Python strings: 512 MiB of
    # them would be gigabytes.
    count = serialize.VOCAB_MAX_STRINGS + 1
    (model_dir / "words.json").write_bytes(b"[" + b'"ab",' * (count - 1) + b'"ab"]')
    tracemalloc.start()
    try:
        _expect(model_dir, f"holds about {count:,} strings; a vocabulary has at most", "words.json")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * count * 5, f"{peak:,} bytes allocated"  # the bytes read, and little more


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


def _edit_weights(model_dir: Path, edit) -> None:
    from safetensors.numpy import load_file, save_file

    path = model_dir / "model.safetensors"
    arrays = load_file(str(path))
    edit(arrays)
    save_file(arrays, str(path))


@pytest.mark.parametrize(
    "name", ["head.projection.weight", "head.crf.transitions", "encoder.lstm.weight_ih_l0"]
)
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_weights_that_are_not_finite_are_refused(model_dir: Path, name: str, value: float):
    # One NaN makes every score NaN: tagged "LOC nan", F1 0.00 with exit code 0.
    _edit_weights(model_dir, lambda a: a[name].flat.__setitem__(0, value))
    _expect(model_dir, f"{name} holds NaN or infinite values", "model.safetensors")


@pytest.mark.parametrize("mask", ["allowed_start", "allowed_transitions", "allowed_end"])
@pytest.mark.parametrize("value", [True, False])
def test_crf_constraints_other_than_the_schemes_are_refused(model_dir: Path, mask, value):
    name = f"head.crf.{mask}"
    _edit_weights(model_dir, lambda a: a[name].fill(value))
    _expect(model_dir, f"{name} is not what the labels of labels.json and the BIOES", "model.")


def test_labels_shuffled_apart_from_the_weights_are_refused(model_dir: Path):
    path = model_dir / "labels.json"
    labels = json.loads(path.read_text())
    assert labels[:2] == ["B-ORG", "E-ORG"]
    path.write_text(json.dumps([labels[1], labels[0], *labels[2:]]))
    _expect(model_dir, "head.crf.allowed_", "model.safetensors")


def test_a_float_tensor_relabelled_as_integers_is_refused(model_dir: Path):
    # I32 has F32's size: the header stays consistent and the bits would load as huge integers.
    path = model_dir / "model.safetensors"
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = data[8 : 8 + size]
    at = header.index(b'"F32"', header.index(b"embedder.casing_embedding.weight"))
    path.write_bytes(data[:8] + header[:at] + b'"I32"' + header[at + 5 :] + data[8 + size :])
    _expect(model_dir, "embedder.casing_embedding.weight is stored as I32", "model.safetensors")


def test_labels_the_scheme_cannot_spell_name_the_labels_file(model_dir: Path):
    path = model_dir / "labels.json"
    labels = json.loads(path.read_text())
    path.write_text(json.dumps(["Q-bad" if label == "O" else label for label in labels]))
    _expect(model_dir, "tag 'Q-bad' fits no tag scheme", "labels.json")


@pytest.mark.parametrize("name", ["words.json", "chars.json", "labels.json"])
def test_a_string_listed_twice_names_its_file_and_the_string(model_dir: Path, name: str):
    path = model_dir / name
    items = json.loads(path.read_text())
    path.write_text(json.dumps([*items, items[-1]]))
    _expect(model_dir, f"{json.dumps(items[-1])} is listed twice", name)


@pytest.mark.parametrize("version", [True, 1.0, "1"])
def test_a_format_version_that_only_equals_1_is_refused(model_dir: Path, version):
    _edit_config(model_dir, lambda c: c.__setitem__("format_version", version))
    _expect(model_dir, "unsupported format_version", "config.json")


def test_weights_larger_than_the_machines_memory_are_refused_before_building(
    model_dir: Path, monkeypatch
):
    # A sparse file, or one of zeros in an archive, declares gigabytes in a few bytes.
    monkeypatch.setattr(serialize, "_available_memory", lambda: 10_000)
    _expect(model_dir, "GiB to load; this machine has", "model.safetensors")


def test_export_refuses_a_card_that_links_outside_the_folder(model_dir: Path, tmp_path: Path):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0\n")
    (model_dir / "README.md").unlink(missing_ok=True)
    (model_dir / "README.md").symlink_to(secret)
    target = tmp_path / "shipped"
    with pytest.raises(ModelFileError, match="is a symbolic link"):
        export_model(model_dir, target)
    assert not target.exists()


def test_a_failed_export_leaves_the_earlier_one_as_it_was(
    model_dir: Path, tmp_path: Path, monkeypatch
):
    import bilstm_nlp.training.export as export_module

    target = tmp_path / "shipped"
    export_model(model_dir, target)
    (target / "train.json").write_text("{}")  # a shipped folder's own file stays
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    def fail(facts):
        # The last step, after the weights and config were written.
        assert (Path(os.path.dirname(facts.target)) / f".shipped.writing-{os.getpid()}").is_dir()
        raise OSError("disk full")

    monkeypatch.setattr(export_module, "export_note", fail)
    with pytest.raises(OSError, match="disk full"):
        export_model(model_dir, target, max_vectors=0)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "shipped"]
    monkeypatch.undo()
    export_model(model_dir, target, max_vectors=0)
    assert (target / "train.json").read_text() == "{}"
    assert (target / "model.safetensors").read_bytes() != before["model.safetensors"]
