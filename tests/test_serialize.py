"""Model directories: round trips, and clear errors naming the file for broken or hostile models."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from bilstm_nlp import load
from bilstm_nlp.cli import app
from bilstm_nlp.errors import ModelFileError
from bilstm_nlp.serialize import save_model

from .tiny_models import save_tiny_tagger


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return save_tiny_tagger(tmp_path / "model", {"reader": {"input_format": "conll"}})


def test_round_trip_keeps_every_tensor_and_setting(model_dir: Path, tmp_path: Path) -> None:
    first = load(model_dir)
    save_model(first, tmp_path / "again")
    second = load(tmp_path / "again")
    assert first.state_dict().keys() == second.state_dict().keys()
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    assert (second.scheme, second.output_scheme) == ("BIOES", "IOB1")
    assert second.vocab.trainable_words == first.vocab.trainable_words
    assert second.meta == first.meta
    assert second.meta.reader.input_format == "conll"
    assert second.meta.task == "ner"  # saved before tasks were recorded: the tagger default
    assert second.meta.source == str(tmp_path / "again")


def test_half_embeddings_load_as_float32(model_dir: Path, tmp_path: Path) -> None:
    model = load(model_dir)
    save_model(model, tmp_path / "half", replace(model.meta, half_embeddings=True))
    stored = load_file(str(tmp_path / "half" / "model.safetensors"))
    assert stored["embedder.word_embedding.weight"].dtype == torch.float16
    reloaded = load(tmp_path / "half")
    assert reloaded.meta.half_embeddings and not model.meta.half_embeddings
    assert reloaded.embedder.word_embedding.weight.dtype == torch.float32
    torch.testing.assert_close(
        reloaded.embedder.word_embedding.weight,
        model.embedder.word_embedding.weight.half().float(),
    )


def _expect_error(path: Path, fragment: str, names: str) -> None:
    with pytest.raises(ModelFileError) as caught:
        load(path)
    assert fragment in str(caught.value)
    assert names in str(caught.value)


def test_pickle_file_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    hostile = tmp_path / "model.pt"
    hostile.write_bytes(pickle.dumps(Exploit()))
    _expect_error(hostile, "pickled models", "model.pt")
    assert not marker.exists()


def test_pickle_in_place_of_safetensors_never_runs(model_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (model_dir / "model.safetensors").write_bytes(pickle.dumps(Exploit()))
    _expect_error(model_dir, "not a valid safetensors file", "model.safetensors")
    assert not marker.exists()


def test_corrupt_safetensors_header(model_dir: Path) -> None:
    path = model_dir / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[8:20] = b"{not json!!!"
    path.write_bytes(bytes(data))
    _expect_error(model_dir, "not a valid safetensors file", "model.safetensors")


def test_wrong_tensor_shapes(model_dir: Path) -> None:
    path = model_dir / "model.safetensors"
    state = load_file(str(path))
    state["encoder.lstm.weight_ih_l0"] = torch.zeros(3, 3)
    save_file(state, str(path))
    _expect_error(model_dir, "weights do not fit the config", "model.safetensors")


def test_missing_tensor(model_dir: Path) -> None:
    path = model_dir / "model.safetensors"
    state = load_file(str(path))
    del state["head.crf.transitions"]
    save_file(state, str(path))
    _expect_error(model_dir, "head.crf.transitions", "model.safetensors")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"format_version": 99}, "unsupported format_version 99"),
        ({"model": {"hidden": "big"}}, "model.hidden must be int"),
        ({"model": {"layers_count": 2}}, "unknown key(s) model.layers_count"),
        ({"scheme": 5}, "scheme must be one of IOB1, IOB2, BIOES or null, got 5"),
        ({"output_scheme": "IOBX"}, "output_scheme must be one of IOB1, IOB2, BIOES"),
    ],
)
def test_bad_config_json(model_dir: Path, change: dict, fragment: str) -> None:
    path = model_dir / "config.json"
    config = json.loads(path.read_text())
    for key, value in change.items():
        if isinstance(value, dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path.write_text(json.dumps(config))
    _expect_error(model_dir, fragment, "config.json")


def test_config_not_json(model_dir: Path) -> None:
    (model_dir / "config.json").write_text("{\n  'format_version': 1\n")
    _expect_error(model_dir, "not valid JSON", "config.json:2")


@pytest.mark.parametrize("name", ["config.json", "words.json", "labels.json", "model.safetensors"])
def test_missing_file(model_dir: Path, name: str) -> None:
    (model_dir / name).unlink()
    _expect_error(model_dir, "missing", name)


def test_vocabulary_of_wrong_type(model_dir: Path) -> None:
    (model_dir / "labels.json").write_text(json.dumps(["O", 3]))
    _expect_error(model_dir, "list of strings", "labels.json")


def test_no_such_model_directory(tmp_path: Path) -> None:
    _expect_error(tmp_path / "nowhere", "no such model directory", "nowhere")


def test_cli_reports_bad_model_in_one_line(model_dir: Path, tmp_path: Path) -> None:
    (model_dir / "model.safetensors").write_bytes(b"\x00" * 10)
    data = tmp_path / "dev.conll"
    data.write_text("EU NNP I-NP I-ORG\n\n")
    result = CliRunner().invoke(app, ["evaluate", str(model_dir), str(data)])
    assert result.exit_code == 1
    assert "model.safetensors" in result.output and "Traceback" not in result.output


def test_export_prunes_vectors_and_keeps_training_words(model_dir: Path, tmp_path: Path) -> None:
    from bilstm_nlp import tag_sentences
    from bilstm_nlp.training.export import export_model

    model = load(model_dir)
    assert model.embedder.fixed_embedding.num_embeddings == 2  # "the", "a"
    export_model(model_dir, tmp_path / "small", max_vectors=1)
    small = load(tmp_path / "small")
    assert small.embedder.fixed_embedding.num_embeddings == 1
    assert small.vocab.words.items == model.vocab.words.items[:-1]
    # Training words keep their (float16-rounded) vectors, so predictions on them stay.
    tokens = [["EU", "rejects", "German", "call"]]
    assert [t.tags for t in tag_sentences(small, tokens)] == [
        t.tags for t in tag_sentences(model, tokens)
    ]


def test_models_command_lists_local_models(model_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["models", "--path", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert any(row["path"] == str(model_dir) for row in rows)


def test_an_ensemble_classifier_round_trips_halves_prunes_and_quantizes(tmp_path: Path) -> None:
    from bilstm_nlp import classify_sentences
    from bilstm_nlp.config import ModelConfig
    from bilstm_nlp.nn.meta import ModelMeta
    from bilstm_nlp.nn.model import Classifier
    from bilstm_nlp.nn.vocab import Vocab
    from bilstm_nlp.training.export import export_model

    torch.manual_seed(0)
    vocab = Vocab.build([["a", "fine", "film", "dull"]], ["negative", "positive"], ["the", "of"], 1)
    config = ModelConfig(vectors=None, task="classifier", word_dim=8, hidden=6, members=3)
    meta = ModelMeta.from_json(
        {"task": "sentiment"}, kind="classifier", scheme=None, output_scheme=None
    )
    model = Classifier(config, vocab, meta).eval()
    texts = [["a", "fine", "film"], ["dull", "the", "film", "of"], ["unseen"]]
    expected = classify_sentences(model, texts)
    save_model(model, tmp_path / "ensemble")
    again = load(tmp_path / "ensemble")
    assert again.config.members == 3 and len(again.other_members) == 2
    assert again.other_members[1].embedder.fixed_embedding is again.embedder.fixed_embedding
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    assert [c.probs for c in classify_sentences(again, texts)] == [c.probs for c in expected]

    # Exported: every member's word vectors in float16, the shared table pruned once.
    export_model(tmp_path / "ensemble", tmp_path / "small", max_vectors=1)
    stored = load_file(str(tmp_path / "small" / "model.safetensors"))
    halves = sorted(name for name, t in stored.items() if t.dtype == torch.float16)
    assert halves == [
        "embedder.fixed_embedding.weight",
        "embedder.word_embedding.weight",
        "other_members.0.embedder.word_embedding.weight",
        "other_members.1.embedder.word_embedding.weight",
    ]
    assert stored["embedder.fixed_embedding.weight"].shape[0] == 1
    small = load(tmp_path / "small")
    # "of" was dropped with the pretrained-only words past the first; it reads as unknown.
    found = classify_sentences(small, texts[:1] + texts[2:])
    for want, got in zip(expected[:1] + expected[2:], found, strict=True):
        assert max(abs(got.probs[k] - want.probs[k]) for k in want.probs) < 1e-2

    # int8: every member's LSTM and linear layers quantized, answers close to float.
    export_model(tmp_path / "ensemble", tmp_path / "int8", quantize="int8")
    int8 = load(tmp_path / "int8")
    assert int8.quantized
    assert all(type(m.encoder.lstm).__module__.startswith("torch.ao") for m in int8.members())
    for want, got in zip(expected, classify_sentences(int8, texts), strict=True):
        assert max(abs(got.probs[k] - want.probs[k]) for k in want.probs) < 0.05
