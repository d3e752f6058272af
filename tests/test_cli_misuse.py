"""User mistakes on the command line, from an audit of every command's options: each gives one
`error:` line and exit 1, never a traceback, and leaves nothing behind it."""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bilstm_nlp.cli import app
from bilstm_nlp.serialize import resolve_model_path

from .test_train import NER_SENTENCES, tiny_config, write_conll

SAMPLES = Path(__file__).resolve().parent.parent / "corpora" / "samples"
SENTIMENT = resolve_model_path("sentiment")
runner = CliRunner()


def _fails(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output.startswith("error: "), result.output
    assert message in result.output, result.output


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("misuse")
    corpus = write_conll(folder / "train.conll", NER_SENTENCES)
    settings = tiny_config(corpus, scheme="BIOES")
    settings = dataclasses.replace(settings, train=dataclasses.replace(settings.train, epochs=1))
    path = folder / "train.json"
    path.write_text(json.dumps(settings.to_dict()))
    return path


def test_thread_counts_out_of_range_are_refused_everywhere() -> None:
    text = "EU rejects German call."
    _fails(["tag", "--threads", "100000", text], "--threads must be 1 to 1024, got 100000")
    _fails(["tag", "--threads", "0", text], "--threads must be 1 to 1024, got 0")
    dev = str(SAMPLES / "conll2003" / "dev.txt")
    _fails(["evaluate", "ner", dev, "--threads", "-1"], "--threads must be 1 to 1024, got -1")
    _fails(["evaluate", "ner", dev, "--batch-size", "0"], "--batch-size must be at least 1")


def test_spacy_config_into_a_missing_folder_or_onto_a_folder(tmp_path: Path) -> None:
    _fails(["spacy-config", "-t", "ner", "-o", str(tmp_path / "no" / "c.cfg")], "cannot write")
    _fails(["spacy-config", "-t", "ner", "-o", str(tmp_path)], "is a folder")
    assert list(tmp_path.iterdir()) == []


def test_select_seed_and_empty_output(tmp_path: Path) -> None:
    pool = tmp_path / "pool.txt"
    pool.write_text("Angela Merkel visited Paris.\nIt rained.\n")
    base = ["select", "ner", str(pool), "--threads", "1"]
    _fails([*base, "-o", str(tmp_path / "o.json"), "-s", "random", "--seed", "-1"], "--seed")
    _fails([*base, "-o", ""], "give a file name")


def test_train_device_and_config_folder(config: Path, tmp_path: Path) -> None:
    _fails(["train", "-c", str(config), "-o", str(tmp_path / "r"), "--device", "cuda:5"], "cuda:5")
    _fails(["train", "-c", str(tmp_path), "-o", str(tmp_path / "r")], "is a folder")
    assert not (tmp_path / "r").exists()


def test_train_into_a_folder_of_other_files_is_refused(config: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("my notes\n")
    _fails(["train", "-c", str(config), "-o", str(project)], "holds files but no training run")
    assert [p.name for p in project.iterdir()] == ["README.md"]
    # An exported (or shipped) model folder is no training run either.
    shipped = tmp_path / "shipped"
    assert runner.invoke(app, ["export", "ner", str(shipped)]).exit_code == 0
    before = (shipped / "model.safetensors").read_bytes()
    _fails(["train", "-c", str(config), "-o", str(shipped)], "holds files but no training run")
    assert (shipped / "model.safetensors").read_bytes() == before
    # A training run's own folder may be trained into again.
    run = tmp_path / "run"
    assert runner.invoke(app, ["train", "-c", str(config), "-o", str(run)]).exit_code == 0
    assert runner.invoke(app, ["train", "-c", str(config), "-o", str(run)]).exit_code == 0
    # export and ensemble refuse a folder of other files as well.
    _fails(["export", str(run), str(project)], "holds files but no model")


def test_a_refused_run_leaves_no_folder(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "distilled"
    _fails(
        ["train", "-c", str(config), "-o", str(out), "--distill-from", str(SENTIMENT)],
        "teacher",
    )
    assert not out.exists()


def test_serve_limits_and_address_are_checked_before_serving() -> None:
    cases = [
        (["--port", "70001"], "--port must be 1 to 65535, got 70001"),
        (["--timeout", "nan"], "--timeout must be"),
        (["--max-queue", "0"], "--max-queue must be 1 to"),
        (["--max-texts", "0"], "--max-texts must be 1 to"),
        (["--max-body-bytes", "-1"], "--max-body-bytes must be 1 to"),
        (["--max-wait-ms", "inf"], "--max-wait-ms must be 0 to"),
        (["--workers", "0"], "--workers must be 1 to 256"),
        (["--host", "no-such-host.invalid"], "cannot listen on no-such-host.invalid"),
    ]
    for options, message in cases:
        _fails(["serve", *options], message)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _fails(["serve", "--port", str(port)], f"cannot listen on 127.0.0.1:{port}")


def test_options_that_would_do_nothing_are_refused(tmp_path: Path) -> None:
    onnx = tmp_path / "onnx"
    _fails(["export", "ner", str(onnx), "-f", "onnx", "--no-half"], "--no-half: for a safetensors")
    _fails(["export", "ner", str(onnx), "--dev-from-train", "last:1"], "goes with --dev")
    assert not onnx.exists()
    sst = str(SAMPLES / "sst" / "dev.txt")
    predictions = tmp_path / "p.txt"
    _fails(["evaluate", "sentiment", sst, "--predictions", str(predictions)], "a classifier")
    text = tmp_path / "t.txt"
    text.write_text("Paris.\n")
    _fails(["annotate", str(text), "-w", "0", "-o", str(tmp_path / "o.jsonl")], "--workers must")
    assert not (tmp_path / "o.jsonl").exists()
    pos = str(SAMPLES / "ud_ewt" / "dev.conllu")
    _fails(
        ["convert", pos, str(tmp_path / "o.conll"), "--to", "conll", "--scheme", "BIOES"],
        "no entity tags",
    )
    ner = str(SAMPLES / "conll2003" / "dev.txt")
    _fails(
        ["convert", ner, str(tmp_path / "o.jsonl"), "--to", "spans", "--scheme", "BIOES"],
        "spans holds",
    )


def test_wrong_kinds_of_path_and_what_a_failed_annotate_leaves(tmp_path: Path) -> None:
    _fails(["models", "--path", str(tmp_path / "none")], "no such folder")
    _fails(["select", "ner", str(tmp_path), "-o", str(tmp_path / "o.json")], "is a folder")
    documents = tmp_path / "d.jsonl"
    documents.write_text('{"text": "Paris."}\n')
    out = tmp_path / "o.jsonl"
    _fails(["annotate", str(documents), "--text-field", "body", "-o", str(out)], "'body'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl"]  # no progress file
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "x.txt").write_text("Paris.\n")
    (folder / "x.md").write_text("Rome.\n")
    _fails(
        ["annotate", str(folder), "--glob", "**/*", "-o", str(tmp_path / "out")],
        "x.md and",
    )


def test_batch_and_k_best_errors_name_the_options_given() -> None:
    _fails(["tag", "--batch-size", "0", "EU"], "--batch-size must be at least 1, got 0")
    _fails(["tag", "-k", "-1", "EU"], "--k-best must be at least 0, got -1")


def test_a_tagger_head_for_a_classifier_is_refused(tmp_path: Path) -> None:
    texts = tmp_path / "t.jsonl"
    texts.write_text('{"text": "a fine film", "label": "positive"}\n')
    args = ["train", "--train", str(texts), "--task", "classifier", "--head", "softmax"]
    _fails([*args, "-o", str(tmp_path / "run")], "--head is a tagger's")
    assert not (tmp_path / "run").exists()


def test_distill_weight_without_teachers_is_refused(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    _fails(
        ["train", "-c", str(config), "-o", str(out), "--distill-weight", "0.8"], "--distill-from"
    )
    assert not out.exists()


def test_a_window_with_an_engine_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "t.txt"
    text.write_text("Paris.\n")
    args = ["annotate", str(text), "--engine", "ray", "-o", str(tmp_path / "parts")]
    _fails([*args, "--window", "2000"], "--window is local annotation's")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]


def test_a_json_file_that_holds_no_json_is_not_read_as_conll(tmp_path: Path) -> None:
    export = tmp_path / "export.json"
    export.write_text("garbage\n")
    _fails(["corpus", "stats", str(export)], "a .json file should hold")
    # Named, the format is the user's to choose.
    result = runner.invoke(app, ["corpus", "stats", str(export), "--input-format", "conll"])
    assert result.exit_code == 0, result.output


def test_annotating_into_the_current_folder_keeps_its_progress_file_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "here"
    here.mkdir()
    (here / "t.txt").write_text("Angela Merkel visited Paris.\n")
    monkeypatch.chdir(here)
    for output in ("", "."):
        for resume in ([], ["--resume"]):
            result = runner.invoke(app, ["annotate", "t.txt", "-o", output, *resume])
            assert result.exit_code == 0, result.output
            assert sorted(p.name for p in here.iterdir()) == ["t.jsonl", "t.txt"]
            assert (tmp_path / "here.progress.json").is_file()
    assert json.loads((here / "t.jsonl").read_text())["tokens"][-1]["text"] == "."


def test_spark_without_java_says_so_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pyspark's own failure is a gateway error naming no cause, and "rerun" cannot help it.
    pytest.importorskip("pyspark")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-java"))
    text = tmp_path / "t.txt"
    text.write_text("Paris.\n")
    out = tmp_path / "parts"
    _fails(["annotate", str(text), "--engine", "spark", "-o", str(out)], "needs Java 17")
    assert not out.exists()
