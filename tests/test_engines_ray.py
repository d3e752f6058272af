"""Ray: `annotate --engine ray`, Ray Data `map_batches(BatchAnnotator)` and `annotate_files_ray`
on a real local Ray instance (two worker CPUs, not local_mode), against the local
`annotate -f jsonl` run on 2,000 CoNLL-2003 dev sentences plus an empty and a bad-UTF-8 line."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bilstm_nlp.cli import app
from bilstm_nlp.errors import ConfigError
from bilstm_nlp.integrations.engines import BatchAnnotator, EngineStats, annotate_on_engine
from bilstm_nlp.integrations.engines.parts import SUCCESS, concatenated, part_file
from bilstm_nlp.integrations.engines.runners import RayRunner
from tests.engine_data import DOCUMENTS, assert_records_equal, read_records, write_input
from tests.engine_faults import victim_marker, wait_to_be_killed_once

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    """One local Ray instance for the module; its workers import this worktree's package."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", str(ROOT))
        patch.setenv("OMP_NUM_THREADS", "1")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        try:
            yield
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def source(shared_corpora: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_input(shared_corpora, tmp_path_factory.mktemp("input") / "dev.txt")


@pytest.fixture(scope="module")
def local_lines(source: Path, tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """`bilstm-nlp annotate FILE -o OUT.jsonl`, the reference."""
    output = tmp_path_factory.mktemp("local") / "out.jsonl"
    result = runner.invoke(app, ["annotate", str(source), "-o", str(output)])
    assert result.exit_code == 0, result.output
    lines = output.read_bytes().splitlines(keepends=True)
    assert len(lines) == DOCUMENTS + 2
    return lines


@pytest.fixture(scope="module")
def cli_outdir(ray_instance: None, source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    outdir = tmp_path_factory.mktemp("cli") / "parts"
    result = runner.invoke(
        app, ["annotate", str(source), "-o", str(outdir), "--engine", "ray", "--partitions", "3"]
    )
    assert result.exit_code == 0, result.output
    return outdir


def test_cli_engine_ray_is_byte_identical_to_local(
    cli_outdir: Path, local_lines: list[bytes]
) -> None:
    assert (cli_outdir / SUCCESS).is_file()
    assert len(list(cli_outdir.glob("part-*.jsonl"))) == 3
    # Not merely close: the parts are the local output byte for byte (same blocks, 1 thread).
    assert list(concatenated(cli_outdir)) == local_lines
    records = read_records(local_lines)
    assert records[-2]["text"] == "" and records[-2]["tokens"] == []
    assert "\ufffd" in records[-1]["text"]


def test_cli_engine_ray_runs_an_onnx_folder(
    ray_instance: None, source: Path, tmp_path: Path
) -> None:
    # The workers pick the backend from the folder, as the local annotate does.
    folder = tmp_path / "ner-onnx"
    exported = runner.invoke(app, ["export", "ner", str(folder), "--format", "onnx"])
    assert exported.exit_code == 0, exported.output
    local = tmp_path / "local.jsonl"
    result = runner.invoke(app, ["annotate", str(source), "-o", str(local), "-m", str(folder)])
    assert result.exit_code == 0, result.output
    outdir = tmp_path / "parts"
    args = ["annotate", str(source), "-o", str(outdir), "--engine", "ray", "-m", str(folder)]
    result = runner.invoke(app, [*args, "--partitions", "2"])
    assert result.exit_code == 0, result.output
    assert (outdir / SUCCESS).is_file()
    assert_records_equal(
        read_records(list(concatenated(outdir))), read_records(local.read_bytes().splitlines())
    )


def test_rerun_on_a_half_written_outdir_redoes_only_the_missing_part(
    cli_outdir: Path, source: Path, local_lines: list[bytes]
) -> None:
    # In place: the manifest records the output folder's path, so a copy is another run.
    outdir = cli_outdir
    part_file(outdir, 1).unlink()
    (outdir / SUCCESS).unlink()
    stats = annotate_on_engine([str(source)], "ner", outdir, engine="ray", partitions=3)
    assert (stats.parts, stats.parts_done_before) == (1, 2)
    assert (outdir / SUCCESS).is_file()
    assert list(concatenated(outdir)) == local_lines


def test_a_worker_killed_mid_task_is_retried_and_every_record_is_written_once(
    ray_instance: None, source: Path, local_lines: list[bytes], tmp_path: Path
) -> None:
    outdir = tmp_path / "parts"
    outcome: list[EngineStats | BaseException] = []

    def run() -> None:
        try:
            task_runner = RayRunner(None, 2, task=wait_to_be_killed_once)
            outcome.append(
                annotate_on_engine(
                    [str(source)], "ner", outdir, engine="ray", partitions=3, runner=task_runner
                )
            )
        except BaseException as error:  # noqa: BLE001 (handed to the test thread)
            outcome.append(error)

    job = threading.Thread(target=run)
    job.start()
    marker = victim_marker(outdir)
    deadline = time.monotonic() + 60
    pid = None
    while pid is None and time.monotonic() < deadline:
        text = marker.read_text() if marker.is_file() else ""
        pid = int(text) if text else None
        time.sleep(0.1)
    assert pid is not None, "no task reached the victim"
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    job.join(timeout=120)
    assert not job.is_alive()
    stats = outcome[0]
    assert isinstance(stats, EngineStats), stats
    assert (stats.parts, stats.documents) == (3, DOCUMENTS + 2)
    assert (outdir / SUCCESS).is_file()
    assert list(concatenated(outdir)) == local_lines


def test_map_batches_as_written_equals_local(
    ray_instance: None, source: Path, local_lines: list[bytes]
) -> None:
    from bilstm_nlp.integrations.engines.ray_data import read_documents_ray

    documents = read_documents_ray([str(source)], chunk_bytes=64 << 10)
    annotated = documents.map_batches(
        BatchAnnotator,
        fn_constructor_kwargs={"model": "ner", "id_column": "id"},
        concurrency=2,
        num_cpus=1,
    )
    rows = sorted(annotated.take_all(), key=lambda row: row["line"])
    # Every input line exactly one record, in any order Ray returns them.
    assert [row["line"] for row in rows] == list(range(1, DOCUMENTS + 3))
    found = [json.loads(row["annotation"]) for row in rows]
    assert_records_equal(found, read_records(local_lines))


@pytest.mark.parametrize("batch_format", ["pyarrow", "pandas"])
def test_map_batches_in_other_batch_formats(
    ray_instance: None, batch_format: str, local_lines: list[bytes]
) -> None:
    expected = read_records(local_lines[:100])
    rows = [{"text": record["text"], "id": record["id"]} for record in expected]
    ds = ray.data.from_items(rows, override_num_blocks=2)
    annotated = ds.map_batches(
        BatchAnnotator,
        fn_constructor_kwargs={"model": "ner", "id_column": "id"},
        concurrency=1,
        num_cpus=1,
        batch_format=batch_format,
    )
    found = {row["id"]: json.loads(row["annotation"]) for row in annotated.take_all()}
    assert_records_equal([found[record["id"]] for record in expected], expected)


def test_annotate_files_ray_parquet_equals_local(
    ray_instance: None, source: Path, local_lines: list[bytes], tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    from bilstm_nlp.integrations.engines.ray_data import annotate_files_ray

    outdir = annotate_files_ray(
        [str(source)], tmp_path / "out", model="ner", fmt="parquet", chunk_bytes=64 << 10
    )
    assert (outdir / "_SUCCESS").is_file()
    table = pq.read_table(outdir).sort_by([("input", "ascending"), ("line", "ascending")])
    assert table.column("line").to_pylist() == list(range(1, DOCUMENTS + 3))
    assert set(table.column("path").to_pylist()) == {str(source)}
    found = [json.loads(text) for text in table.column("annotation").to_pylist()]
    assert_records_equal(found, read_records(local_lines))


def test_annotate_files_ray_jsonl_input_keeps_ids(
    ray_instance: None, local_lines: list[bytes], tmp_path: Path
) -> None:
    from bilstm_nlp.integrations.engines.ray_data import annotate_files_ray

    expected = read_records(local_lines[:50])
    source = tmp_path / "docs.jsonl"
    with open(source, "w", encoding="utf-8") as handle:
        for number, record in enumerate(expected):
            handle.write(json.dumps({"id": f"doc-{number}", "text": record["text"]}) + "\n")
    outdir = annotate_files_ray(
        [str(source)], tmp_path / "out", model="ner", fmt="jsonl", input_format="jsonl"
    )
    lines = [
        line
        for part in sorted(outdir.glob("*.jsonl"))
        for line in part.read_text().split("\n")
        if line
    ]
    found = {record["id"]: record for record in map(json.loads, lines)}
    for number, record in enumerate(expected):
        record["id"] = f"doc-{number}"
    assert_records_equal([found[record["id"]] for record in expected], expected)


def test_an_unreachable_address_is_one_line_and_leaves_no_success(
    source: Path, tmp_path: Path
) -> None:
    outdir = tmp_path / "parts"
    result = runner.invoke(
        app,
        [
            "annotate",
            str(source),
            "-o",
            str(outdir),
            "--engine",
            "ray",
            "--address",
            "ray://127.0.0.1:1",
        ],
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "127.0.0.1:1" in result.stderr and "Traceback" not in result.output
    assert not (outdir / SUCCESS).exists()


def test_a_batch_without_the_text_column_is_one_config_error() -> None:
    with pytest.raises(ConfigError, match="no column 'text'.*it has body"):
        BatchAnnotator("ner")({"body": ["a text"]})
