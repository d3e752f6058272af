"""Tests for ONNX export (`integrations.runtime`) and the ONNX backend (`bilstm_nlp.runtime`).

The padded forward pass equals the packed one in torch; an exported folder loads as an ONNX model
that gives the torch model's tags and probabilities (1e-4) on tiny models of every architecture,
on the shipped NER and POS models over CoNLL-2003 dev and UD EWT dev, and through the CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bilstm_nlp.cli import app
from bilstm_nlp.config import ModelConfig
from bilstm_nlp.corpus.readers.conll import read_conll
from bilstm_nlp.corpus.readers.conllu import read_conllu
from bilstm_nlp.decode import classify_sentences, tag_sentences
from bilstm_nlp.errors import ConfigError, ModelFileError
from bilstm_nlp.integrations.runtime.export import CRF_FILE, ONNX_FILE, export_onnx
from bilstm_nlp.integrations.runtime.graph import (
    PaddedBiLSTM,
    PaddedCharCNN,
    PaddedCharLSTM,
    reverse_index,
)
from bilstm_nlp.nn.embeddings import CharCNN, CharLSTM
from bilstm_nlp.nn.encoder import BiLSTMEncoder
from bilstm_nlp.nn.meta import ModelMeta
from bilstm_nlp.nn.model import Classifier, Tagger
from bilstm_nlp.nn.vocab import PAD_ID, Vocab
from bilstm_nlp.runtime.backend import OnnxClassifier, OnnxTagger
from bilstm_nlp.serialize import describe_model, load_model, save_model

runner = CliRunner()
SENTENCES = [
    ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."],
    ["Peter", "Blackburn"],
    [],
    ["BRUSSELS", "1996-08-22"],
    ["ünknöwn", "ΩΩ", "x" * 40, "the", "a", "EU"],
    ["a"] * 30,
]
MAX_PROB_DIFF = 1e-4
INT8_MAX_LOSS = 0.5
"""Points of dev F1 (NER) or accuracy (POS) int8 may lose against torch (measured: see README)."""


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# The padded forward pass, in torch.


@pytest.mark.parametrize("layers", [1, 2])
def test_padded_bilstm_equals_packed(layers):
    torch.manual_seed(layers)
    encoder = BiLSTMEncoder(5, 4, layers).eval()
    lengths = torch.tensor([7, 1, 4, 7, 2])
    mask = torch.arange(7)[None, :] < lengths[:, None]
    features = torch.randn(5, 7, 5)
    # Garbage at padding must not reach a real position.
    features[~mask] = 1e3
    with torch.no_grad():
        expected = encoder(features, mask)
        found, last_forward, last_backward = PaddedBiLSTM(encoder.lstm)(features, lengths)
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            features, lengths, batch_first=True, enforce_sorted=False
        )
        _, (final, _) = encoder.lstm(packed)
    torch.testing.assert_close(found, expected)
    torch.testing.assert_close(last_forward, final[-2])
    torch.testing.assert_close(last_backward, final[-1])


def test_reverse_index_reverses_within_length_and_is_its_own_inverse():
    index = reverse_index(torch.tensor([3, 1, 4]), 4)
    assert index.tolist() == [[2, 1, 0, 3], [0, 1, 2, 3], [3, 2, 1, 0]]
    assert index.gather(1, index).tolist() == [[0, 1, 2, 3]] * 3


@pytest.mark.parametrize("kernel", [2, 3, 5])
def test_padded_char_cnn_equals_char_cnn(kernel):
    torch.manual_seed(kernel)
    cnn = CharCNN(12, 4, 6, kernel).eval()
    char_ids = torch.randint(2, 12, (6, 5))
    for row, length in enumerate([5, 1, 3, 0, 2, 4]):
        char_ids[row, length:] = PAD_ID
    with torch.no_grad():
        torch.testing.assert_close(PaddedCharCNN(cnn)(char_ids), cnn(char_ids))


def test_padded_char_lstm_equals_char_lstm():
    torch.manual_seed(0)
    char_lstm = CharLSTM(12, 4, 3).eval()
    char_ids = torch.randint(2, 12, (5, 6))
    for row, length in enumerate([6, 1, 3, 0, 2]):
        char_ids[row, length:] = PAD_ID
    with torch.no_grad():
        torch.testing.assert_close(PaddedCharLSTM(char_lstm)(char_ids), char_lstm(char_ids))


# Export and the ONNX backend on tiny models of every architecture.

SCHEMES = {
    "BIOES": ["B-ORG", "E-ORG", "O", "S-MISC", "S-ORG", "I-ORG"],
    "IOB1": ["I-ORG", "B-ORG", "O", "I-MISC"],
    "IOB2": ["B-ORG", "I-ORG", "O", "B-MISC"],
    None: ["NOUN", "VERB", "ADJ"],
}


def tiny_model(folder: Path, scheme: str | None, task: str = "tagger", **config: object) -> Path:
    """A seeded untrained model with transitions large enough that decoding depends on them."""
    torch.manual_seed(0)
    labels = ["negative", "positive"] if task == "classifier" else SCHEMES[scheme]
    vocab = Vocab.build([[t for s in SENTENCES for t in s]], labels, ["the", "a"], 1)
    sizes = {"word_dim": 8, "hidden": 6, "char_hidden": 4, "char_dim": 4, **config}
    model_config = ModelConfig(vectors=None, task=task, **sizes)
    kind = "classifier" if task == "classifier" else "tagger"
    meta = ModelMeta.from_json(
        {"task": "classification" if task == "classifier" else "ner"},
        kind=kind,
        scheme=scheme,
        output_scheme=scheme,
    )
    model = (Classifier if task == "classifier" else Tagger)(model_config, vocab, meta)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "transitions" in name:
                parameter.normal_(0.0, 2.0)
    return save_model(model, folder)


ARCHITECTURES = [
    ("BIOES", {}),
    ("IOB1", {"char_encoder": "lstm", "layers": 2}),
    ("IOB2", {"char_encoder": "none", "casing_dim": 0}),
    (None, {"char_kernel": 4}),
    ("BIOES", {"head": "softmax"}),
    ("IOB1", {"head": "softmax", "constrained": False}),
    (None, {"head": "softmax"}),
]


def assert_same_tagging(torch_model, onnx_model, sentences, k=0, scheme=None) -> float:
    """Same tags, spans and k-best paths; probabilities within `MAX_PROB_DIFF`. Returns the
    largest probability difference."""
    expected = tag_sentences(torch_model, sentences, k=k, batch_size=64, scheme=scheme)
    found = tag_sentences(onnx_model, sentences, k=k, batch_size=64, scheme=scheme)
    largest = 0.0
    for want, got in zip(expected, found, strict=True):
        assert got.tags == want.tags
        assert [(s.start, s.end, s.label) for s in got.spans] == [
            (s.start, s.end, s.label) for s in want.spans
        ]
        assert [tags for tags, _ in got.kbest] == [tags for tags, _ in want.kbest]
        probs = [
            *zip(got.tag_probs, want.tag_probs, strict=True),
            *((a.score, b.score) for a, b in zip(got.spans, want.spans, strict=True)),
            *((a, b) for (_, a), (_, b) in zip(got.kbest, want.kbest, strict=True)),
        ]
        for a, b in probs:
            largest = max(largest, abs(a - b))
    assert largest <= MAX_PROB_DIFF
    return largest


@pytest.mark.parametrize(("scheme", "config"), ARCHITECTURES)
def test_exported_tagger_tags_as_torch(tmp_path, scheme, config):
    source = tiny_model(tmp_path / "torch", scheme, **config)
    target = export_onnx(source, tmp_path / "onnx")
    onnx_model = load_model(target)
    assert isinstance(onnx_model, OnnxTagger)
    # Batches of other sizes and lengths than the export's example.
    assert_same_tagging(load_model(source), onnx_model, SENTENCES, k=3)
    assert_same_tagging(load_model(source), onnx_model, SENTENCES[:1], k=1)
    if scheme is not None:
        # Tags written in another scheme, with their probabilities (from neighbouring pairs).
        for written in ("IOB1", "IOB2", "BILOU"):
            assert_same_tagging(load_model(source), onnx_model, SENTENCES, k=2, scheme=written)


@pytest.mark.parametrize(
    "config",
    [
        {"pooling": "max"},
        {"pooling": "mean"},
        {"pooling": "attention"},
        # Ensembles: each member's own chars and BiLSTM, their mean probability.
        {"pooling": "max", "members": 3},
        {"pooling": "attention", "members": 2, "char_encoder": "lstm", "layers": 2},
    ],
)
def test_exported_classifier_classifies_as_torch(tmp_path, config):
    source = tiny_model(tmp_path / "torch", None, task="classifier", **config)
    onnx_model = load_model(export_onnx(source, tmp_path / "onnx"))
    assert isinstance(onnx_model, OnnxClassifier)
    expected = classify_sentences(load_model(source), SENTENCES)
    found = classify_sentences(onnx_model, SENTENCES)
    for want, got in zip(expected, found, strict=True):
        assert got.label == want.label
        if not want.probs:  # an empty sentence: no label, no probabilities, on both
            assert got.probs == {} and got.label is None
            continue
        assert max(abs(got.probs[k] - want.probs[k]) for k in want.probs) <= MAX_PROB_DIFF


def test_export_folder_says_its_backend_and_holds_no_torch_weights(tmp_path):
    import onnx

    target = export_onnx(tiny_model(tmp_path / "torch", "BIOES"), tmp_path / "onnx")
    config = json.loads((target / "config.json").read_text())
    assert config["backend"] == "onnx"
    assert config["onnx"] == {
        "file": ONNX_FILE,
        "opset": 17,
        "output": "emissions",
        "crf": CRF_FILE,
    }
    assert sorted(p.name for p in target.iterdir()) == sorted(
        ["config.json", "words.json", "chars.json", "labels.json", ONNX_FILE, CRF_FILE]
    )
    graph = onnx.load(str(target / ONNX_FILE))
    onnx.checker.check_model(graph, full_check=True)
    inputs = {
        i.name: [d.dim_param for d in i.type.tensor_type.shape.dim] for i in graph.graph.input
    }
    assert inputs["word_ids"] == ["batch", "seq_len"]
    assert inputs["char_ids"] == ["spellings", "char_len"]
    assert inputs["mask"] == ["batch", "seq_len"]
    # `bilstm-nlp models` gives its size: the graph and the CRF.
    size = sum((target / name).stat().st_size for name in (ONNX_FILE, CRF_FILE)) / 1e6
    assert describe_model(target)["size_mb"] == round(size, 1)


def test_exported_graph_runs_one_bidirectional_lstm_on_real_lengths(tmp_path, capfd):
    # The shape ONNX Runtime is fast on: the word BiLSTM as one LSTM node whose sequence_lens
    # come from the mask, and the char CNN as table gathers, not a convolution. The exporter's
    # native notice about packing goes to the debug log, not the user's terminal.
    import onnx

    target = export_onnx(tiny_model(tmp_path / "torch", "BIOES"), tmp_path / "onnx")
    assert "PackPadded" not in capfd.readouterr().err
    nodes = onnx.load(str(target / ONNX_FILE)).graph.node
    lstms = [node for node in nodes if node.op_type == "LSTM"]
    assert len(lstms) == 1 and "Conv" not in {node.op_type for node in nodes}
    attributes = {a.name: a for a in lstms[0].attribute}
    assert attributes["direction"].s == b"bidirectional"
    assert len(lstms[0].input) > 4 and lstms[0].input[4]  # sequence_lens is wired


def test_broken_onnx_folder_is_a_model_file_error(tmp_path):
    target = export_onnx(tiny_model(tmp_path / "torch", "BIOES"), tmp_path / "onnx")
    (target / ONNX_FILE).write_bytes(b"not a graph")
    with pytest.raises(ModelFileError, match="ONNX graph"):
        load_model(target)
    (target / ONNX_FILE).unlink()
    with pytest.raises(ModelFileError, match="missing ONNX graph"):
        load_model(target)


def test_crf_arrays_of_the_wrong_shape_are_refused(tmp_path):
    from safetensors.numpy import load_file, save_file

    target = export_onnx(tiny_model(tmp_path / "torch", "BIOES"), tmp_path / "onnx")
    arrays = load_file(str(target / CRF_FILE))
    arrays["transitions"] = np.zeros((2, 2), dtype=np.float32)
    save_file(arrays, str(target / CRF_FILE))
    with pytest.raises(ModelFileError, match="transitions has shape"):
        load_model(target)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-onnx")
    return export_onnx(tiny_model(folder / "torch", "IOB1"), folder / "onnx")


def _copy(folder: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(folder, tmp_path / "copy"))


def _edit_crf(folder: Path, edit) -> None:
    from safetensors.numpy import load_file, save_file

    arrays = load_file(str(folder / CRF_FILE))
    edit(arrays)
    save_file(arrays, str(folder / CRF_FILE))


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda a: a["transitions"].flat.__setitem__(0, np.nan), "transitions holds NaN"),
        (lambda a: a["end"].fill(np.inf), "end holds NaN or infinite"),
        (lambda a: a["allowed_transitions"].fill(False), "allowed_transitions is not what"),
        (lambda a: a["allowed_start"].fill(True), "allowed_start is not what the IOB1"),
        (lambda a: a["boundary_left"].fill(True), "boundary_left is not what"),
        (lambda a: a["alternative_first"].fill(10**9), "alternative_first is not what"),
        (
            lambda a: a.__setitem__("allowed_end", a["allowed_end"].astype(np.float32)),
            "allowed_end is not what",
        ),
        (
            lambda a: a.__setitem__("start", a["start"].astype(np.complex64)),
            "start is complex64, expected float32",
        ),
    ],
)
def test_crf_arrays_the_scheme_does_not_give_are_refused(tiny_onnx, tmp_path, edit, fragment):
    # Each of these loaded and tagged silently wrong (every token LOC, or nan scores).
    folder = _copy(tiny_onnx, tmp_path)
    _edit_crf(folder, edit)
    with pytest.raises(ModelFileError, match=fragment) as caught:
        load_model(folder)
    assert CRF_FILE in str(caught.value)


def test_a_graph_narrower_than_the_vocabulary_is_refused_at_load(tiny_onnx, tmp_path):
    # The word past the graph's table failed only when a text held it, with a traceback.
    folder = _copy(tiny_onnx, tmp_path)
    chars = json.loads((folder / "chars.json").read_text())
    (folder / "chars.json").write_text(json.dumps([*chars, "ж"]))
    with pytest.raises(ModelFileError, match="the graph does not fit this folder's model"):
        load_model(folder)


def _graph_that_loops_first(like: Path, target: Path) -> None:
    """`like`'s graph with a loop of 2**62 turns before its output: what it answers is right,
    but never comes."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(like))
    graph = model.graph
    output = graph.output[0].name
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name == output:
                node.output[i] = "before_the_loop"
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Identity", ["carried_in"], ["carried_out"]),
        ],
        "turn",
        [
            helper.make_tensor_value_info("turn", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("carried_in", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("carried_out", TensorProto.FLOAT, [1]),
        ],
    )
    graph.node.append(helper.make_node("Loop", ["turns", "", "zero"], ["delay"], body=body))
    graph.node.append(helper.make_node("Add", ["before_the_loop", "delay"], [output]))
    graph.initializer.extend(
        [
            helper.make_tensor("turns", TensorProto.INT64, [], [2**62]),
            helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]),
        ]
    )
    onnx.save(model, str(target))


def test_a_graph_that_never_answers_is_refused_at_load(tiny_onnx, tmp_path):
    # The check at load runs the graph on two words: a loop of 2**62 turns hung it for ever.
    folder = _copy(tiny_onnx, tmp_path)
    _graph_that_loops_first(tiny_onnx / ONNX_FILE, folder / ONNX_FILE)
    code = (
        "import sys, bilstm_nlp.runtime.backend as backend\n"
        "from bilstm_nlp.serialize import load_model\n"
        "backend.GRAPH_CHECK_SECONDS = 1.0\n"
        "try:\n"
        "    load_model(sys.argv[1])\n"
        "except Exception as error:\n"
        "    print(type(error).__name__, error)\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        raise AssertionError("loading the graph hung") from None
    assert done.stdout.startswith("ModelFileError "), done.stdout + done.stderr
    assert "ran for over 1 s on a two-word sentence" in done.stdout
    assert ONNX_FILE in done.stdout


def test_a_graph_of_another_model_is_refused_at_load(tiny_onnx, tmp_path):
    other = export_onnx(
        tiny_model(tmp_path / "classifier", None, task="classifier"), tmp_path / "other"
    )
    folder = _copy(tiny_onnx, tmp_path)
    (folder / ONNX_FILE).write_bytes((other / ONNX_FILE).read_bytes())
    with pytest.raises(ModelFileError, match="the graph does not fit this folder's model"):
        load_model(folder)


@pytest.mark.parametrize(
    ("onnx", "fragment"),
    [
        ({"file": "model.onnx\u0000x"}, 'must say the graph "file"'),
        ({"quantize": 5}, '"quantize" must be int8 or absent, got 5'),
    ],
)
def test_onnx_settings_are_checked(tiny_onnx, tmp_path, onnx, fragment):
    folder = _copy(tiny_onnx, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["onnx"].update(onnx)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match=fragment):
        load_model(folder)


def test_labels_an_onnx_folders_scheme_cannot_spell_are_refused(tiny_onnx, tmp_path):
    folder = _copy(tiny_onnx, tmp_path)
    labels = json.loads((folder / "labels.json").read_text())
    (folder / "labels.json").write_text(json.dumps(["Q-bad" if t == "O" else t for t in labels]))
    with pytest.raises(ModelFileError, match="labels.json: tag 'Q-bad' fits no tag scheme"):
        load_model(folder)


@pytest.mark.parametrize("fmt", ["safetensors", "onnx"])
def test_exporting_an_onnx_folder_is_refused_and_writes_nothing(tiny_onnx, tmp_path, fmt):
    target = tmp_path / "again"
    result = runner.invoke(app, ["export", str(tiny_onnx), str(target), "--format", fmt])
    assert result.exit_code == 1, result.output
    assert "is an ONNX model folder, itself an export" in result.output
    assert not target.exists()


def test_saving_an_onnx_model_copies_its_own_files_only(tiny_onnx, tmp_path):
    folder = _copy(tiny_onnx, tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0\n")
    (folder / "notes.txt").symlink_to(secret)
    model = load_model(folder)
    saved = save_model(model, tmp_path / "saved")
    assert sorted(p.name for p in saved.iterdir()) == sorted(p.name for p in tiny_onnx.iterdir())
    (folder / "README.md").unlink(missing_ok=True)
    (folder / "README.md").symlink_to(secret)
    with pytest.raises(ModelFileError, match="is a symbolic link"):
        save_model(model, tmp_path / "saved-again")


# The CLI.


@pytest.fixture(scope="module")
def onnx_ner(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("onnx") / "ner"
    result = runner.invoke(app, ["export", "ner", str(target), "--format", "onnx"])
    assert result.exit_code == 0, result.output
    return target


def test_tag_jsonl_is_the_same_through_both_backends(onnx_ner):
    text = "EU rejects German call to boycott British lamb. Peter Blackburn reports from Brussels."
    records = []
    for model in ("ner", str(onnx_ner)):
        result = runner.invoke(app, ["tag", "--model", model, "-f", "jsonl", "-k", "2", text])
        assert result.exit_code == 0, result.output
        records.append(json.loads(result.stdout))
    want, got = records
    assert [t["tag"] for t in got["tokens"]] == [t["tag"] for t in want["tokens"]]
    strip = ("start", "end", "label", "text", "token_start", "token_end")
    assert [{k: s[k] for k in strip} for s in got["spans"]] == [
        {k: s[k] for k in strip} for s in want["spans"]
    ]
    assert len(got["spans"]) == 5
    # Scores are rounded to 4 decimals: equal but for a rounding boundary.
    for a, b in zip(got["spans"], want["spans"], strict=True):
        assert abs(a["score"] - b["score"]) <= 1.5e-4
    assert [[s["tags"] for s in k] for k in got["kbest"]] == [
        [s["tags"] for s in k] for k in want["kbest"]
    ]


def test_export_cli_refuses_an_unknown_format_and_pruning_with_onnx(tmp_path):
    result = runner.invoke(app, ["export", "ner", str(tmp_path / "x"), "--format", "tflite"])
    assert result.exit_code == 1 and "--format" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(
        app, ["export", "ner", str(tmp_path / "x"), "-f", "onnx", "--max-vectors", "10"]
    )
    assert result.exit_code == 1 and "--max-vectors" in result.output
    assert not (tmp_path / "x").exists()


# Real data: the shipped models on their dev sets.


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "dev"), [("ner", "conll2003/dev.txt"), ("pos", "ud_ewt/dev.conllu")]
)
def test_shipped_models_tag_dev_as_torch(tmp_path, shared_corpora, name, dev):
    path = shared_corpora / dev
    reader = read_conllu if path.suffix == ".conllu" else read_conll
    sentences = [sentence.tokens for sentence in reader(path)]
    assert len(sentences) > 1000
    onnx_model = load_model(export_onnx(name, tmp_path / name))
    largest = assert_same_tagging(load_model(name), onnx_model, sentences)
    # The k-best paths of a slice, which costs more per sentence.
    assert_same_tagging(load_model(name), onnx_model, sentences[:300], k=3)
    print(f"{name}: {len(sentences)} sentences, largest probability difference {largest:.2e}")


def test_annotate_jsonl_is_the_same_through_both_backends(onnx_ner, tmp_path):
    text = tmp_path / "doc.txt"
    text.write_text("Peter Blackburn went to Brussels.\n\nThe EU rejects German beef.\n")
    outputs = []
    for model in ("ner", str(onnx_ner)):
        result = runner.invoke(app, ["annotate", str(text), "--model", model, "--no-progress"])
        assert result.exit_code == 0, result.output
        outputs.append([json.loads(line) for line in result.stdout.splitlines()])
    want, got = outputs
    assert len(got) == len(want) >= 1
    for a, b in zip(got, want, strict=True):
        assert [t["tag"] for t in a["tokens"]] == [t["tag"] for t in b["tokens"]]
        assert [(s["start"], s["end"], s["label"]) for s in a["spans"]] == [
            (s["start"], s["end"], s["label"]) for s in b["spans"]
        ]


def test_spacy_component_takes_an_onnx_folder(onnx_ner, tmp_path):
    import spacy

    docs = []
    for model in ("ner", str(onnx_ner)):
        nlp = spacy.blank("en")
        nlp.add_pipe("bilstm_tagger", config={"model": model})
        docs.append(nlp("EU rejects German call to boycott British lamb."))
    want, got = docs
    assert [(e.start, e.end, e.label_) for e in got.ents] == [
        (e.start, e.end, e.label_) for e in want.ents
    ]
    assert len(got.ents) == 3
    nlp.to_disk(tmp_path / "pipeline")
    reloaded = spacy.load(tmp_path / "pipeline")
    assert isinstance(reloaded.get_pipe("bilstm_tagger").bilstm_model, OnnxTagger)
    again = reloaded("EU rejects German call to boycott British lamb.")
    assert [(e.start, e.end, e.label_) for e in again.ents] == [
        (e.start, e.end, e.label_) for e in want.ents
    ]


# int8.


def test_int8_export_is_smaller_and_tags(tmp_path):
    source = tiny_model(tmp_path / "torch", "BIOES", word_dim=64, hidden=32)
    float_folder = export_onnx(source, tmp_path / "float")
    int8_folder = export_onnx(source, tmp_path / "int8", quantize="int8")
    assert json.loads((int8_folder / "config.json").read_text())["onnx"]["quantize"] == "int8"
    assert (int8_folder / ONNX_FILE).stat().st_size < 0.5 * (
        float_folder / ONNX_FILE
    ).stat().st_size
    tagged = tag_sentences(load_model(int8_folder), SENTENCES, k=2)
    assert [len(t.tags) for t in tagged] == [len(s) for s in SENTENCES]
    # The precision is the export's: asking for the other one is an error, not ignored.
    assert load_model(int8_folder, quantized=True) is not None
    assert load_model(float_folder, quantized=False) is not None
    with pytest.raises(ConfigError, match="ONNX folder is int8, fixed at export"):
        load_model(int8_folder, quantized=False)
    with pytest.raises(ConfigError, match="ONNX folder is float32, fixed at export"):
        load_model(float_folder, quantized=True)


def test_quantize_needs_a_known_type(tmp_path):
    result = runner.invoke(
        app, ["export", "ner", str(tmp_path / "x"), "-f", "onnx", "--quantize", "int4"]
    )
    assert result.exit_code == 1 and "int8" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "dev"), [("ner", "conll2003/dev.txt"), ("pos", "ud_ewt/dev.conllu")]
)
def test_int8_scores_on_dev_near_torch(tmp_path, shared_corpora, name, dev):
    from bilstm_nlp.evaluation.evaluate import evaluate_file

    path = str(shared_corpora / dev)
    expected = evaluate_file(load_model(name), path).main_score
    onnx_float = evaluate_file(load_model(export_onnx(name, tmp_path / "float")), path).main_score
    int8 = load_model(export_onnx(name, tmp_path / "int8", quantize="int8"))
    found = evaluate_file(int8, path).main_score
    print(f"{name} dev: torch {expected:.2f}, onnx {onnx_float:.2f}, onnx int8 {found:.2f}")
    assert onnx_float == expected
    assert abs(found - expected) <= INT8_MAX_LOSS


def test_serve_takes_an_onnx_folder(onnx_ner):
    from tests.test_serve import _post, _start, _stop

    texts = ["EU rejects German call to boycott British lamb.", "Peter Blackburn went to Brussels."]
    process, port = _start("-m", str(onnx_ner))
    try:
        status, body = _post(port, "/v1/annotate", {"texts": texts})
    finally:
        _stop(process)
    assert status == 200, body
    result = runner.invoke(app, ["tag", "-f", "jsonl", "-m", str(onnx_ner), *texts])
    assert result.exit_code == 0, result.output
    assert body["records"] == [json.loads(line) for line in result.stdout.splitlines()]
    assert [s["label"] for s in body["records"][0]["spans"]] == ["ORG", "MISC", "MISC"]
