"""Resumable output (annotation/output.py): crashes between windows resume byte for byte, atomic
formats file by file, changed models/options/inputs are refused, write errors are one line."""

from __future__ import annotations

import errno
import os
import shutil
import sys
from pathlib import Path

import pytest

from bilstm_nlp.annotation import files as annotate_files
from bilstm_nlp.annotation import jobs
from bilstm_nlp.annotation import output as annotate_output
from bilstm_nlp.annotation.files import AnnotateOptions, annotate_paths
from bilstm_nlp.errors import OutputError, ResumeError
from bilstm_nlp.serialize import load_model

sys.path.insert(0, str(Path(__file__).parent))
from test_annotate import tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def ner_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.getbasetemp() / "annotate_models", "ner")


@pytest.fixture(scope="session")
def ner(ner_dir: Path):
    return load_model(ner_dir)


class Crash(Exception):
    """Stands for a kill between two windows."""


def crash_after(monkeypatch: pytest.MonkeyPatch, saves: int) -> None:
    real = annotate_output.save_state
    calls = []

    def save(path, fingerprint, state):
        real(path, fingerprint, state)
        calls.append(1)
        if len(calls) > saves:
            raise Crash

    # The first save is the run's start (files), the others follow each window (output), once
    # saves are not spaced out in time.
    monkeypatch.setattr(annotate_files, "save_state", save)
    monkeypatch.setattr(annotate_output, "save_state", save)
    monkeypatch.setattr(annotate_output, "SAVE_INTERVAL", 0.0)
    monkeypatch.setattr(annotate_output, "SAVE_GAP_FACTOR", 0.0)


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 7 documents (instead of 1,000), so that small inputs make several windows."""
    monkeypatch.setattr(jobs, "BLOCK_DOCUMENTS", 7)


def big_input(path: Path, lines: int = 60) -> Path:
    words = ["EU", "rejects", "German", "call", "Peter", "visited", "Paris", "(", ")", "and/or"]
    text = "\n".join(" ".join(words[(i + j) % 10] for j in range(i % 13)) for i in range(lines))
    path.write_text(text + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "conll"])
def test_resume_after_a_crash_is_byte_identical(
    ner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, small_blocks: None
) -> None:
    source = big_input(tmp_path / "in.txt")
    reference = tmp_path / f"reference.{fmt}"
    annotate_paths([source], ner, reference, AnnotateOptions(fmt=fmt, window=7))
    output = tmp_path / f"out.{fmt}"
    for saves in (1, 2, 3):  # crash after the start and 1, 2, 3 windows: lines 7, 21, 42
        with monkeypatch.context() as patch:
            crash_after(patch, saves)
            with pytest.raises(Crash):
                annotate_paths(
                    [source], ner, output, AnnotateOptions(fmt=fmt, window=7, resume=saves > 1)
                )
        with open(output, "ab") as handle:
            handle.write(b'{"id": "half a rec')  # what a kill in the middle of a write leaves
    stats = annotate_paths([source], ner, output, AnnotateOptions(fmt=fmt, window=7, resume=True))
    assert output.read_bytes() == reference.read_bytes()
    assert stats.resumed_documents > 0 and stats.documents + stats.resumed_documents == 60
    again = annotate_paths([source], ner, output, AnnotateOptions(fmt=fmt, window=7, resume=True))
    assert again.documents == 0 and output.read_bytes() == reference.read_bytes()


def test_atomic_formats_resume_file_by_file(ner, tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b", "c"):
        big_input(folder / f"{name}.txt", lines=5)
    annotate_paths([folder], ner, tmp_path / "reference", AnnotateOptions(fmt="html"))
    with monkeypatch.context() as patch:
        crash_after(patch, 2)  # the start, then file a done
        with pytest.raises(Crash):
            annotate_paths([folder], ner, tmp_path / "out", AnnotateOptions(fmt="html"))
    assert (tmp_path / "out" / "a.html").is_file() and not (tmp_path / "out" / "c.html").exists()
    annotate_paths([folder], ner, tmp_path / "out", AnnotateOptions(fmt="html", resume=True))
    for name in ("a", "b", "c"):
        produced = (tmp_path / "out" / f"{name}.html").read_bytes()
        assert produced == (tmp_path / "reference" / f"{name}.html").read_bytes()
    assert not list((tmp_path / "out").glob("*.part"))


def test_resume_is_refused_when_model_options_or_input_change(
    ner_dir: Path, ner, tmp_path: Path, small_blocks: None
) -> None:
    source = big_input(tmp_path / "in.txt", lines=10)
    output = tmp_path / "out.jsonl"
    annotate_paths([source], ner, output, AnnotateOptions(window=3))
    other_dir = tmp_path / "other_model"
    shutil.copytree(ner_dir, other_dir)
    with open(other_dir / "config.json", "a") as handle:
        handle.write("\n")  # the same model, other bytes: still another model file
    with pytest.raises(ResumeError, match="the model differs"):
        annotate_paths(
            [source], load_model(other_dir), output, AnnotateOptions(window=3, resume=True)
        )
    with pytest.raises(ResumeError, match=r"options differ .*window"):
        annotate_paths([source], ner, output, AnnotateOptions(window=4, resume=True))
    with open(source, "a") as handle:
        handle.write("one more line\n")
    with pytest.raises(ResumeError, match="changed since the interrupted run") as error:
        annotate_paths([source], ner, output, AnnotateOptions(window=3, resume=True))
    assert error.value.path == str(output) + ".progress.json"
    # Without --resume the output is simply written again.
    assert annotate_paths([source], ner, output, AnnotateOptions(window=3)).documents == 11


class _FailingFile:
    """A file whose writes fail with `error_number` once `budget` bytes have been written."""

    def __init__(self, handle, error_number: int, budget: int) -> None:
        self._handle = handle
        self._error_number = error_number
        self._budget = budget

    def write(self, data: bytes) -> int:
        if self._budget < len(data):
            raise OSError(self._error_number, os.strerror(self._error_number))
        self._budget -= len(data)
        return self._handle.write(data)

    def __getattr__(self, name: str):
        return getattr(self._handle, name)


@pytest.mark.parametrize("error_number", [errno.ENOSPC, errno.EACCES, errno.EIO])
def test_write_errors_are_clear_and_resume_completes(
    ner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error_number: int, small_blocks: None
) -> None:
    # Tests run as root, so permissions alone prove nothing: the write itself is made to fail.
    source = big_input(tmp_path / "in.txt")
    reference = tmp_path / "reference.jsonl"
    annotate_paths([source], ner, reference, AnnotateOptions(window=7))
    output = tmp_path / "out.jsonl"
    real_open = annotate_output.OutputRun._open

    def failing_open(self, job, index):
        return _FailingFile(real_open(self, job, index), error_number, budget=6000)

    with monkeypatch.context() as patch:
        patch.setattr(annotate_output.OutputRun, "_open", failing_open)
        with pytest.raises(OutputError) as caught:
            annotate_paths([source], ner, output, AnnotateOptions(window=7))
    assert os.strerror(error_number) in str(caught.value) and "--resume" in str(caught.value)
    annotate_paths([source], ner, output, AnnotateOptions(window=7, resume=True))
    assert output.read_bytes() == reference.read_bytes()


def test_write_error_from_the_cli_is_one_line(ner_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from bilstm_nlp.cli import app

    source = big_input(tmp_path / "in.txt", lines=10)
    real_open = annotate_output.OutputRun._open
    monkeypatch.setattr(
        annotate_output.OutputRun,
        "_open",
        lambda self, job, index: _FailingFile(real_open(self, job, index), errno.ENOSPC, 10),
    )
    result = CliRunner().invoke(
        app, ["annotate", str(source), "-m", str(ner_dir), "-o", str(tmp_path / "o.jsonl")]
    )
    assert result.exit_code == 1
    assert "No space left on device" in result.output and "Traceback" not in result.output
