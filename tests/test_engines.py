"""integrations/engines: part planning, part tasks, resume, the manifest, `BatchAnnotator`, and
the CLI's errors, with the tasks run in this process (the engines' own tests start Ray, Spark
and Dask: test_engines_ray.py, test_engines_spark.py, test_engines_dask.py)."""

from __future__ import annotations

import io
import json
import pickle
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from typer.testing import CliRunner

from bilstm_nlp.annotation import jobs
from bilstm_nlp.annotation.annotator import Annotator
from bilstm_nlp.annotation.files import AnnotateOptions, annotate_paths
from bilstm_nlp.cli import app
from bilstm_nlp.corpus.readers import documents
from bilstm_nlp.errors import ConfigError, OutputError
from bilstm_nlp.integrations.engines import (
    BatchAnnotator,
    EngineOptions,
    annotate_on_engine,
)
from bilstm_nlp.integrations.engines import batch as batch_module
from bilstm_nlp.integrations.engines.parts import (
    MANIFEST,
    SUCCESS,
    PartResult,
    PartTask,
    concatenated,
    part_file,
    run_part,
)
from bilstm_nlp.integrations.engines.runners import Runner
from bilstm_nlp.serialize import load_model


class InProcess(Runner):
    """Runs the tasks here, in order, counting them (and failing at `fail_at`, once)."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__(None, 1)
        self.ran: list[int] = []
        self.fail_at = fail_at

    def __call__(self, tasks: list[PartTask]) -> list[PartResult]:
        results = []
        for task in tasks:
            if task.part.index == self.fail_at:
                self.fail_at = None
                raise OutputError("a worker was lost", task.target)
            self.ran.append(task.part.index)
            results.append(run_part(task))
        return results


@pytest.fixture(scope="module")
def sentences(shared_corpora: Path) -> list[str]:
    lines, tokens = [], []
    for line in (shared_corpora / "conll2003/dev.txt").read_text(encoding="utf-8").splitlines():
        if line.strip():
            tokens.append(line.split()[0])
        elif tokens:
            if tokens != ["-DOCSTART-"]:
                lines.append(" ".join(tokens))
            tokens = []
    return lines


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # what the engines' workers run with, and `annotate`'s default
    yield
    torch.set_num_threads(before)


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Blocks of 40 documents, so a few hundred documents make several parts."""
    monkeypatch.setattr(jobs, "BLOCK_DOCUMENTS", 40)
    return 40


def local_output(inputs: list[Path], out: Path, **options) -> bytes:
    """`annotate -f jsonl` on the inputs: one file's bytes, or a folder's files in job order."""
    annotate_paths([str(p) for p in inputs], load_model("ner"), out, AnnotateOptions(**options))
    if out.is_file():
        return out.read_bytes()
    return b"".join(p.read_bytes() for p in sorted(out.rglob("*.jsonl")))


def test_parts_in_order_are_the_local_output_byte_for_byte(
    sentences: list[str], tmp_path: Path, small_blocks: int, one_thread
) -> None:
    # An empty line, a line of bad UTF-8 and a CRLF line among real sentences.
    lines = [s.encode() for s in sentences[:300]]
    lines[10:10] = [b"", b"\xff\xfe not UTF-8 \xc3", b"CRLF line from Windows\r"]
    source = tmp_path / "docs.txt"
    source.write_bytes(b"\n".join(lines) + b"\n")
    runner = InProcess()
    stats = annotate_on_engine(
        [source], "ner", tmp_path / "out", engine="test", partitions=4, runner=runner
    )
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    parts = manifest["parts"]
    assert len(parts) >= 4 and runner.ran == list(range(len(parts)))
    # contiguous, each a run of whole blocks but the last
    assert parts[0]["start_offset"] == 0 and parts[-1]["end_offset"] == source.stat().st_size
    for before, after in zip(parts, parts[1:], strict=False):
        assert after["start_offset"] == before["end_offset"]
        assert before["documents"] % small_blocks == 0
    assert stats.documents == len(lines) == sum(p["documents"] for p in parts)
    assert stats.invalid_utf8_lines == 1 and (tmp_path / "out" / SUCCESS).is_file()
    expected = local_output([source], tmp_path / "local.jsonl")
    got = b"".join(concatenated(tmp_path / "out"))
    assert got == expected
    records = [json.loads(line) for line in got.splitlines()]
    assert [r["id"] for r in records] == [f"{source}:{n}" for n in range(1, len(lines) + 1)]
    assert records[10]["tokens"] == [] and "\ufffd" in records[11]["text"]


def test_jsonl_inputs_of_a_folder_keep_their_ids_and_a_long_document_stays_in_one_part(
    sentences: list[str], tmp_path: Path, small_blocks: int, one_thread, monkeypatch
) -> None:
    monkeypatch.setattr(documents, "LONG_DOCUMENT_BYTES", 3_000)
    monkeypatch.setattr(documents, "PIECE_BYTES", 500)
    folder = tmp_path / "in"
    (folder / "b").mkdir(parents=True)
    long_text = " ".join(sentences[:80])  # about 10,000 bytes: read in pieces
    first = [{"id": f"doc-{i}", "text": s} for i, s in enumerate(sentences[:90])]
    first.insert(45, {"id": "long", "text": long_text})
    (folder / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in first))
    second = [{"id": i, "text": s} for i, s in enumerate(sentences[90:150])]
    (folder / "b" / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in second))
    annotate_on_engine(
        [folder],
        "ner",
        tmp_path / "out",
        engine="test",
        options=EngineOptions(unit="jsonl"),
        runner=InProcess(),
    )
    expected = local_output([folder], tmp_path / "local", unit="jsonl")
    got = b"".join(concatenated(tmp_path / "out"))
    assert got == expected
    ids = [json.loads(line)["id"] for line in got.splitlines()]
    assert ids == [r["id"] for r in first] + [r["id"] for r in second]
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert [p["job"] for p in manifest["parts"]] == sorted(p["job"] for p in manifest["parts"])


def test_a_rerun_does_only_the_missing_parts_and_ends_equal(
    sentences: list[str], tmp_path: Path, small_blocks: int, one_thread
) -> None:
    source = tmp_path / "docs.txt"
    source.write_text("\n".join(sentences[:200]) + "\n")
    out = tmp_path / "out"
    # A job that fails after its first parts: what was written stays, nothing says complete.
    with pytest.raises(OutputError):
        annotate_on_engine(
            [source], "ner", out, engine="test", partitions=5, runner=InProcess(fail_at=2)
        )
    assert not (out / SUCCESS).exists()
    assert part_file(out, 0).is_file() and not part_file(out, 2).exists()
    # A killed task's temporary file is cleared away by the rerun.
    (out / "part-00003.jsonl.tmp-0123").write_bytes(b'{"half":')
    runner = InProcess()
    stats = annotate_on_engine([source], "ner", out, engine="test", partitions=5, runner=runner)
    assert runner.ran == [2, 3, 4] and stats.parts == 3 and stats.parts_done_before == 2
    assert not list(out.glob("*.tmp-*"))
    assert b"".join(concatenated(out)) == local_output([source], tmp_path / "local.jsonl")
    # Complete: a rerun runs nothing.
    runner = InProcess()
    stats = annotate_on_engine([source], "ner", out, engine="test", partitions=5, runner=runner)
    assert runner.ran == [] and stats.parts == 0


def test_a_part_folder_inside_the_input_folder_is_not_read_by_the_rerun(
    sentences: list[str], tmp_path: Path, one_thread
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("\n".join(sentences[:30]) + "\n")
    out = folder / "parts"
    options = EngineOptions(glob="**/*")  # the parts and their manifest match it too
    first = annotate_on_engine(
        [folder], "ner", out, engine="test", options=options, partitions=2, runner=InProcess()
    )
    assert first.documents == 30
    expected = b"".join(concatenated(out))
    # The rerun sees the same one input (before, the parts made it "other inputs", refused).
    again = annotate_on_engine(
        [folder], "ner", out, engine="test", options=options, partitions=2, runner=InProcess()
    )
    assert again.parts == 0 and again.parts_done_before == first.parts
    assert b"".join(concatenated(out)) == expected


def test_parts_write_tags_in_the_scheme_asked_for_as_local_annotate_does(
    sentences: list[str], tmp_path: Path, one_thread
) -> None:
    source = tmp_path / "docs.txt"
    source.write_text("\n".join(sentences[:60]) + "\n")
    out = tmp_path / "out"
    options = EngineOptions(scheme="BIOES", k_best=2)
    annotate_on_engine([source], "ner", out, engine="test", options=options, runner=InProcess())
    got = b"".join(concatenated(out))
    assert got == local_output([source], tmp_path / "local.jsonl", scheme="BIOES", k_best=2)
    tags = {t["tag"][:2] for line in got.splitlines() for t in json.loads(line)["tokens"]}
    assert {"S-", "B-", "E-"} <= tags
    # A rerun with the training file's scheme is another run.
    with pytest.raises(ConfigError, match="another run"):
        annotate_on_engine(
            [source], "ner", out, engine="test", options=EngineOptions(k_best=2), runner=InProcess()
        )
    with pytest.raises(ConfigError, match="no tag scheme"):
        annotate_on_engine(
            [source],
            "pos",
            tmp_path / "p",
            engine="test",
            options=EngineOptions(scheme="IOB2"),
            runner=InProcess(),
        )


def test_a_task_run_twice_writes_its_part_once(
    sentences: list[str], tmp_path: Path, one_thread
) -> None:
    source = tmp_path / "docs.txt"
    source.write_text("\n".join(sentences[:30]) + "\n")
    seen: list[PartTask] = []

    class Recording(InProcess):
        def __call__(self, tasks):
            seen.extend(tasks)
            return super().__call__(tasks)

    annotate_on_engine([source], "ner", tmp_path / "out", engine="test", runner=Recording())
    [task] = seen
    before = Path(task.target).stat()
    again = run_part(task)
    assert not again.written and Path(task.target).stat().st_mtime_ns == before.st_mtime_ns


def test_another_run_in_the_same_folder_is_refused(
    sentences: list[str], tmp_path: Path, one_thread
) -> None:
    source = tmp_path / "docs.txt"
    source.write_text("\n".join(sentences[:30]) + "\n")
    out = tmp_path / "out"
    annotate_on_engine([source], "ner", out, engine="test", runner=InProcess())
    with pytest.raises(ConfigError, match="another run"):
        annotate_on_engine(
            [source], "ner", out, engine="test", options=EngineOptions(k_best=2), runner=InProcess()
        )
    source.write_text("\n".join(sentences[:31]) + "\n")  # the input changed
    with pytest.raises(ConfigError, match="another run"):
        annotate_on_engine([source], "ner", out, engine="test", runner=InProcess())
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        annotate_on_engine([source], "ner", stranger, engine="test", runner=InProcess())
    assert (stranger / "notes.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="k-best"):
        annotate_on_engine(
            [source],
            "sentiment",
            tmp_path / "s",
            engine="test",
            options=EngineOptions(k_best=1),
            runner=InProcess(),
        )


# ---------------------------------------------------------------------------------------------
# BatchAnnotator: one callable for every engine's batches


def test_batch_annotator_gives_annotate_s_records_on_every_batch_type(
    sentences: list[str], one_thread
) -> None:
    texts = sentences[:40] + ["", "Ünïcode \ufffd text"]
    ids = list(range(len(texts)))
    expected = Annotator(load_model("ner")).records(texts, ids)
    annotator = BatchAnnotator("ner", id_column="id")
    as_dict = annotator({"text": texts, "id": ids})
    import pandas as pd

    as_pandas = annotator(pd.DataFrame({"text": texts, "id": ids}))
    as_arrow = annotator(pa.table({"text": texts, "id": ids}))
    as_batch = annotator(pa.RecordBatch.from_pydict({"text": texts, "id": ids}))
    for column in (
        as_dict["annotation"],
        list(as_pandas["annotation"]),
        as_arrow.column("annotation").to_pylist(),
        as_batch.column("annotation").to_pylist(),
    ):
        assert [json.loads(a) for a in column] == expected
    assert list(as_pandas["text"]) == texts and as_arrow.column_names == [
        "text",
        "id",
        "annotation",
    ]
    # the JSON is the line annotate writes, without its line end
    out = io.BytesIO()
    annotate_paths(
        ["-"], load_model("ner"), None, stdin=io.BytesIO(b"EU rejects it .\n"), stdout=out
    )
    [line] = BatchAnnotator("ner").annotations(["EU rejects it ."], ["<stdin>:1"])
    assert (line + "\n").encode() == out.getvalue()


def test_batch_annotator_pickles_without_a_model_and_loads_one_per_process() -> None:
    batch_module._ANNOTATORS.clear()
    annotator = BatchAnnotator("ner", k_best=2)
    assert len(pickle.dumps(annotator)) < 1_000  # names and numbers: no torch object travels
    clone = pickle.loads(pickle.dumps(annotator))
    clone({"text": ["EU rejects German call ."]})
    annotator({"text": ["Peter Blackburn"]})
    assert len(batch_module._ANNOTATORS) == 1  # both copies share this process's model


def test_batch_annotator_refuses_a_batch_without_its_text_column() -> None:
    with pytest.raises(ConfigError, match="no column 'text'.*sentence"):
        BatchAnnotator("ner")({"sentence": ["EU rejects it"]})
    with pytest.raises(ConfigError, match="not text"):
        BatchAnnotator("ner")({"text": [3]})
    with pytest.raises(ConfigError, match="k_best"):
        BatchAnnotator("ner", k_best=-1)
    with pytest.raises(ConfigError, match="unknown tag scheme 'BILUO'"):
        BatchAnnotator("ner", scheme="BILUO")


def test_batch_annotator_writes_tags_in_the_scheme_asked_for(sentences: list[str], one_thread):
    texts = sentences[:20]
    expected = Annotator(load_model("ner"), scheme="IOB2").records(texts, [None] * len(texts))
    assert BatchAnnotator("ner", scheme="IOB2").records(texts) == expected
    assert any(t["tag"].startswith("B-") for r in expected for t in r["tokens"])


# ---------------------------------------------------------------------------------------------
# The CLI's errors: one line, exit 1, nothing written


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--engine", "flink", "-o", "OUT"], "unknown engine 'flink'"),
        (["--engine", "ray"], "give --output DIR"),
        (["--engine", "ray", "-o", "OUT", "-f", "conll"], "writes JSONL parts"),
        (["--address", "127.0.0.1:1", "-o", "OUT"], "go with --engine"),
        (["--engine", "dask", "-o", "OUT", "--partitions", "0"], "at least 1"),
        (["--engine", "dask", "-o", "OUT", "--address", "tcp://127.0.0.1:1"], "no dask cluster"),
        (["--engine", "spark", "-o", "OUT", "--address", "spark://127.0.0.1:1"], "no spark"),
        (["--engine", "ray", "-o", "OUT", "--address", "ray://127.0.0.1:1"], "no ray cluster"),
    ],
)
def test_engine_mistakes_are_one_line_and_leave_nothing(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    source = tmp_path / "docs.txt"
    source.write_text("EU rejects German call .\n")
    arguments = [str(tmp_path / "OUT") if a == "OUT" else a for a in arguments]
    result = CliRunner().invoke(app, ["annotate", str(source), *arguments])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not (tmp_path / "OUT" / SUCCESS).exists()


def test_a_missing_engine_says_which_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "docs.txt"
    source.write_text("EU rejects German call .\n")
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    result = CliRunner().invoke(
        app, ["annotate", str(source), "-o", str(tmp_path / "out"), "--engine", "dask"]
    )
    assert result.exit_code == 1
    assert "pip install 'bilstm-nlp[dask]'" in result.output
    assert not (tmp_path / "out").exists()
