"""What the Spark and Dask engine tests share: the 2,000-document input, the local reference, the
record comparison, and the part tasks that inject faults.

The tasks run on the engines' worker processes, which import them from here by name: the worktree
root must be on their PYTHONPATH (`engine_environment`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bilstm_nlp.integrations.engines.parts import PartResult, PartTask, run_part

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = 2000
INVALID_UTF8 = b"Bad \xff\xfe bytes in Paris ."


@contextmanager
def engine_environment() -> Iterator[None]:
    """Worker processes started inside import this checkout (and `tests`), with one thread."""
    saved = {name: os.environ.get(name) for name in ("PYTHONPATH", "OMP_NUM_THREADS")}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), saved["PYTHONPATH"]]))
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def conll_sentences(conll: Path, count: int) -> list[str]:
    """The first `count` sentences of a CoNLL-2003 file, tokens joined by spaces."""
    sentences: list[str] = []
    tokens: list[str] = []
    with open(conll, encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if not fields or fields[0] == "-DOCSTART-":
                if tokens:
                    sentences.append(" ".join(tokens))
                    tokens = []
                if len(sentences) == count:
                    break
                continue
            tokens.append(fields[0])
    return sentences


def write_input(conll: Path, path: Path) -> Path:
    """2,000 dev sentences, one a line, then an empty line and a line of invalid UTF-8."""
    lines = [sentence.encode() for sentence in conll_sentences(conll, DOCUMENTS)]
    assert len(lines) == DOCUMENTS
    path.write_bytes(b"\n".join([*lines, b"", INVALID_UTF8]) + b"\n")
    return path


def input_rows(path: Path) -> list[tuple[str, str]]:
    """(id, text) per line, as `annotate` names and decodes them."""
    raw = path.read_bytes().split(b"\n")[:-1]
    return [
        (f"{path}:{number}", line.decode("utf-8", errors="replace"))
        for number, line in enumerate(raw, 1)
    ]


def assert_same_records(got: list[str], expected: list[str]) -> None:
    """Record for record: ids, texts, tags and spans identical, probabilities within 1e-6."""
    assert len(got) == len(expected)
    for got_line, expected_line in zip(got, expected, strict=True):
        if got_line == expected_line:
            continue
        record, reference = json.loads(got_line), json.loads(expected_line)
        assert record["id"] == reference["id"] and record["text"] == reference["text"]
        assert [t["tag"] for t in record["tokens"]] == [t["tag"] for t in reference["tokens"]]
        assert _without_scores(record["spans"]) == _without_scores(reference["spans"])
        scores = [t["score"] for t in record["tokens"]] + [s["score"] for s in record["spans"]]
        expected_scores = [t["score"] for t in reference["tokens"]]
        expected_scores += [s["score"] for s in reference["spans"]]
        assert all(abs(a - b) <= 1e-6 for a, b in zip(scores, expected_scores, strict=True))


def _without_scores(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in span.items() if k != "score"} for span in spans]


def _marker(task: PartTask, name: str) -> Path:
    outdir = Path(task.target).parent
    return outdir.parent / f"{outdir.name}.{name}"


def fail_once(task: PartTask) -> PartResult:
    """`run_part`, except that part 1 fails on its first attempt (a marker file beside the
    output folder says it did)."""
    if task.part.index == 1:
        try:
            with open(_marker(task, "failed"), "x"):
                pass
        except FileExistsError:
            pass
        else:
            raise RuntimeError("injected fault: part 1 fails once")
    return run_part(task)


def slow_part(task: PartTask) -> PartResult:
    """`run_part` after a marker file says a task runs and a pause long enough to lose a worker
    under it."""
    _marker(task, f"started-{task.part.index}").touch()
    time.sleep(3)
    return run_part(task)
