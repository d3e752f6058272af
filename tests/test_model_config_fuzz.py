"""Property: whatever JSON a model's config.json holds, loading gives a working model or one
`ModelFileError` naming a file of the model folder; never another exception."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bilstm_nlp import load, tag_sentences
from bilstm_nlp.cli import app
from bilstm_nlp.errors import ModelFileError
from bilstm_nlp.serialize import describe_model

from .tiny_models import save_tiny_tagger

FILES = ("config.json", "words.json", "chars.json", "labels.json", "model.safetensors")

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["IOB1", "IOB2", "BIOES", "crf", "softmax", "tagger", "classifier", "cnn"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    meta = {
        "reader": {"input_format": "conll", "label_column": None, "file_scheme": "IOB1"},
        "task": "ner",
        "scores": {"dev": 50.0},
        "provenance": {"config": {"data": {"train": "train.txt"}}},
    }
    directory = save_tiny_tagger(tmp_path_factory.mktemp("fuzz") / "m", meta)
    return directory, json.loads((directory / "config.json").read_text())


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into the config's objects (the places a mutation can hit)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    return found


def _mutate(config: dict[str, Any], path: tuple, action: str, value: Any) -> dict[str, Any]:
    config = json.loads(json.dumps(config))
    parent = config
    for key in path[:-1]:
        parent = parent[key]
    if action == "delete":
        parent.pop(path[-1], None)
    elif action == "add":
        parent[str(value)[:10] + "_extra"] = value
    else:
        parent[path[-1]] = value
    return config


def _check_refusal(error: ModelFileError, directory: Path) -> None:
    message = str(error)
    assert "\n" not in message
    assert error.path is not None and error.path.startswith(str(directory))
    assert any(name in message for name in FILES) or error.path == str(directory)


def _check_loads_or_refuses(directory: Path) -> None:
    """`load` gives a model that tags, or a `ModelFileError`; `describe_model` (what `bilstm-nlp
    models` shows) agrees on every config that loads."""
    try:
        row = describe_model(directory)
    except ModelFileError as error:
        _check_refusal(error, directory)
        row = None
    try:
        model = load(directory)
    except ModelFileError as error:
        _check_refusal(error, directory)
        return
    assert row is not None and row["path"] == str(directory)
    assert row["dev"] is None or isinstance(row["dev"], int | float)
    [result] = tag_sentences(model, [["EU", "rejects", "German", "call"]])
    assert len(result.tags) == 4
    assert all(0.0 <= p <= 1.0 for p in result.tag_probs)
    assert all(0.0 <= span.score <= 1.0 for span in result.spans)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_any_config_value_loads_or_is_one_model_file_error(saved, tmp_path_factory, data):
    source, config = saved
    path = data.draw(st.sampled_from(_paths(config)))
    action = data.draw(st.sampled_from(["replace", "replace", "replace", "delete", "add"]))
    value = data.draw(json_values)
    directory = tmp_path_factory.mktemp("mutant")
    for name in FILES:
        shutil.copy(source / name, directory / name)
    mutated = _mutate(config, path, action, value)
    (directory / "config.json").write_text(json.dumps(mutated))
    _check_loads_or_refuses(directory)


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_any_json_as_the_whole_config(saved, tmp_path_factory, value):
    source, _ = saved
    directory = tmp_path_factory.mktemp("whole")
    for name in FILES:
        shutil.copy(source / name, directory / name)
    (directory / "config.json").write_text(json.dumps(value))
    _check_loads_or_refuses(directory)


@pytest.mark.parametrize(
    "edit",
    [
        {"model": {"hidden": math.nan}},
        {"model": {"layers": 10**7}},
        {"meta": {"reader": "conll"}},
        {"output_scheme": "BILOU"},
    ],
)
def test_cli_exit_1_and_one_line(saved, tmp_path: Path, edit: dict[str, Any]):
    source, config = saved
    for name in FILES:
        shutil.copy(source / name, tmp_path / name)
    config = json.loads(json.dumps(config))
    for key, value in edit.items():
        if isinstance(value, dict):
            config[key].update(value)
        else:
            config[key] = value
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = CliRunner().invoke(app, ["tag", "-m", str(tmp_path), "EU rejects it"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {tmp_path / 'config.json'}")
