"""Config sections: every value is type- and range-checked, with a message naming the key."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bilstm_nlp.cli import app
from bilstm_nlp.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig
from bilstm_nlp.errors import ConfigError

SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
FIELDS = [(section, f.name) for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([10**1000, -1, 0, 1, 4097, 60000, 10**7, 1e9, 0.5, 0.95, 0.96, 1.0])
    | st.text(max_size=8)
    | st.sampled_from(
        ["crf", "softmax", "sgd", "adam", "cpu", "cuda:0", "BIOES", "upos", "expand"]
    ),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children)
    ),
    max_leaves=5,
)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"train": {"lr": 1e6}}, "train.lr must be in (0, 10], got 1000000.0"),
        ({"train": {"lr": 0}}, "train.lr must be in (0, 10]"),
        ({"train": {"batch_size": -4}}, "train.batch_size must be in [1, 100000], got -4"),
        ({"train": {"clip": -1}}, "train.clip must be in [0, 1e+06], got -1.0"),
        ({"train": {"epochs": 0}}, "train.epochs must be in [1, 100000]"),
        ({"train": {"lr_decay": -0.5}}, "train.lr_decay must be in [0, 100]"),
        ({"train": {"weight_decay": -1}}, "train.weight_decay must be in [0, 1]"),
        ({"train": {"seed": -1}}, "train.seed must be in [0, 4.29497e+09]"),
        ({"train": {"threads": -1}}, "train.threads must be in [0, 1024]"),
        ({"train": {"average_epochs": 9, "epochs": 5}}, "train.average_epochs must be in [0, 5]"),
        ({"train": {"device": "tpu"}}, "train.device must be cpu, cuda or cuda:N"),
        ({"model": {"hidden": 60000}}, "model.hidden must be in [1, 4096], got 60000"),
        ({"model": {"word_dim": 10**9}}, "model.word_dim must be in [1, 4096]"),
        ({"model": {"layers": 10**7}}, "model.layers must be in [1, 8]"),
        ({"model": {"dropout": float("nan")}}, "model.dropout must be in [0, 0.95], got NaN"),
        ({"model": {"dropout": 1.0}}, "model.dropout must be in [0, 0.95]"),
        ({"model": {"char_kernel": 0}}, "model.char_kernel must be in [1, 15]"),
        ({"model": {"head": "hmm"}}, 'model.head must be one of crf, softmax, got "hmm"'),
        ({"data": {"scheme": "BILOU"}}, "data.scheme must be one of IOB1, IOB2, BIOES"),
        (
            {"data": {"misaligned": "widen"}},
            'data.misaligned must be one of error, expand, drop, got "widen"',
        ),
        ({"data": {"input_format": "brat"}}, "data.input_format must be one of conll, conllu"),
        ({"train": {"lr": 10**5000}}, "train.lr is out of range, got an integer of about 5001"),
    ],
)
def test_out_of_range_values_name_the_key_and_the_range(values, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ExperimentConfig.from_dict(values, "train.json")
    assert str(caught.value).startswith("train.json: ")
    assert message in str(caught.value)


def test_defaults_and_shipped_configs_are_valid() -> None:
    ExperimentConfig()
    for path in sorted(Path("models").glob("*/train.json")) + sorted(
        Path("bench/configs").glob("*.json")
    ):
        ExperimentConfig.from_json(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"train": {"lr": 1' + "0" * 5000 + "}}", "not valid JSON: a number of over 4,300 digits"),
        ('{"train": ' * 100_000 + "1" + "}" * 100_000, "not valid JSON: nested too deeply"),
        ('{"train": {"lr": NaN}}', "train.lr must be in (0, 10], got NaN"),
        ("[1, 2]", "expected a JSON object with sections data, model, train"),
    ],
)
def test_hostile_config_files_are_one_line_errors(tmp_path: Path, text: str, message: str):
    config_path = tmp_path / "train.json"
    config_path.write_text(text)
    result = CliRunner().invoke(
        app, ["train", "--config", str(config_path), "--output", str(tmp_path / "m")]
    )
    assert result.exit_code == 1
    assert result.output == f"error: {config_path}: {message}\n"


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(FIELDS), value=json_values)
def test_any_value_is_accepted_in_range_or_refused_with_a_config_error(field, value) -> None:
    section, name = field
    try:
        config = ExperimentConfig.from_dict({section: {name: value}}, "c.json")
    except ConfigError as error:
        assert str(error).startswith("c.json: ") and f"{section}.{name}" in str(error)
        assert "\n" not in str(error) and len(str(error)) < 300
        return
    accepted = getattr(getattr(config, section), name)
    if isinstance(accepted, float):
        assert math.isfinite(accepted)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(field=st.sampled_from(FIELDS), value=json_values)
def test_cli_train_ends_in_one_error_line_for_any_config_value(tmp_path: Path, field, value):
    section, name = field
    config_path = tmp_path / "train.json"
    # NaN and infinities as Python's json writes them (and reads them back).
    config_path.write_text(
        json.dumps(
            {section: {name: value}, "data": {}} if section != "data" else {section: {name: value}}
        )
    )
    result = CliRunner().invoke(
        app, ["train", "--config", str(config_path), "--output", str(tmp_path / "m")]
    )
    # No data.train is given, so every config ends in an error: the config's own or that one.
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
