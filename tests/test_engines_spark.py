"""Spark: `annotate --engine spark` and the DataFrame adapter on a real `local[2]` session, against
the local `annotate -f jsonl` on 2,000 CoNLL-2003 dev sentences (plus an empty and an invalid-UTF-8
line). One session for the module, stopped at the end."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("pyspark")

import cloudpickle  # noqa: E402 (pyspark's dependency)
import torch  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from bilstm_nlp.annotation.files import annotate_paths  # noqa: E402
from bilstm_nlp.cli import app  # noqa: E402
from bilstm_nlp.errors import ConfigError  # noqa: E402
from bilstm_nlp.integrations.engines import annotate_on_engine  # noqa: E402
from bilstm_nlp.integrations.engines.parts import SUCCESS, concatenated  # noqa: E402
from bilstm_nlp.integrations.engines.runners import TASK_ATTEMPTS, SparkRunner  # noqa: E402
from bilstm_nlp.integrations.engines.spark import (  # noqa: E402
    annotate_dataframe,
    arrow_annotator,
    parse_annotations,
)
from bilstm_nlp.serialize import load_model  # noqa: E402
from tests.engine_faults_spark_dask import (  # noqa: E402
    assert_same_records,
    engine_environment,
    fail_once,
    input_rows,
    write_input,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas"),
]
cli = CliRunner()


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    """`local[2]` with task retries, as `SparkRunner` starts it (so the runner reuses it)."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    with engine_environment():
        session = (
            SparkSession.builder.master(f"local[2,{TASK_ATTEMPTS}]")
            .config("spark.task.maxFailures", str(TASK_ATTEMPTS))
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .getOrCreate()
        )
        session.sparkContext.setLogLevel("ERROR")
        try:
            yield session
        finally:
            session.stop()


@pytest.fixture(scope="module")
def documents(shared_corpora: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("spark-input")
    return write_input(shared_corpora / "conll2003" / "dev.txt", folder / "dev.txt")


@pytest.fixture(scope="module")
def local_lines(documents: Path, tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """`annotate -f jsonl` at one torch thread, as the CLI runs it."""
    output = tmp_path_factory.mktemp("spark-local") / "local.jsonl"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        annotate_paths([documents], load_model("ner"), output)
    finally:
        torch.set_num_threads(threads)
    lines = output.read_bytes().splitlines(keepends=True)
    assert len(lines) == len(input_rows(documents))
    return lines


def test_cli_engine_spark_is_byte_identical_to_local(
    spark: object, documents: Path, local_lines: list[bytes], tmp_path: Path
) -> None:
    outdir = tmp_path / "out"
    args = ["annotate", str(documents), "-o", str(outdir), "--engine", "spark"]
    result = cli.invoke(app, [*args, "--partitions", "3"])
    assert result.exit_code == 0, result.output
    assert (outdir / SUCCESS).is_file()
    assert list(concatenated(outdir)) == local_lines


def test_cli_engine_spark_runs_an_onnx_folder(
    spark: object, documents: Path, tmp_path: Path
) -> None:
    # The executors pick the backend from the folder, as the local annotate does.
    folder = tmp_path / "ner-onnx"
    exported = cli.invoke(app, ["export", "ner", str(folder), "--format", "onnx"])
    assert exported.exit_code == 0, exported.output
    local = tmp_path / "local.jsonl"
    annotate_paths([documents], load_model(folder), local)
    outdir = tmp_path / "out"
    args = ["annotate", str(documents), "-o", str(outdir), "--engine", "spark", "-m", str(folder)]
    result = cli.invoke(app, [*args, "--partitions", "2"])
    assert result.exit_code == 0, result.output
    got = [line.decode().rstrip("\n") for line in concatenated(outdir)]
    expected = [line.decode().rstrip("\n") for line in local.read_bytes().splitlines()]
    assert_same_records(got, expected)


def test_dataframe_records_equal_local(
    spark: object, documents: Path, local_lines: list[bytes]
) -> None:
    rows = input_rows(documents)
    df = spark.createDataFrame(rows, "id STRING, text STRING")  # type: ignore[attr-defined]
    assert df.rdd.getNumPartitions() == 2
    annotated = annotate_dataframe(df, "ner", id_column="id")
    got = {row.id: row.annotation for row in annotated.collect()}
    assert len(got) == len(rows)  # every line exactly one record
    expected = [line.decode().rstrip("\n") for line in local_lines]
    assert_same_records([got[identifier] for identifier, _ in rows], expected)

    parsed = parse_annotations(annotated.limit(50)).select("id", "record.spans").collect()
    assert parsed and any(row.spans for row in parsed)
    for row in parsed:
        assert [s.label for s in row.spans] == [s["label"] for s in _spans(got[row.id])]


def _spans(line: str) -> list[dict[str, object]]:
    import json

    return json.loads(line)["spans"]


def test_the_annotator_pickles_small_without_torch() -> None:
    data = cloudpickle.dumps(arrow_annotator("ner"))
    assert len(data) < 2000 and b"torch" not in data


def test_dataframe_without_text_column_fails_on_the_driver(spark: object) -> None:
    df = spark.createDataFrame([("a", "EU rejects it .")], "id STRING, body STRING")  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="no text column 'text'.*id, body"):
        annotate_dataframe(df)  # lazy: raising here means no job ran


def test_a_task_failing_once_still_writes_every_record_once(
    spark: object, documents: Path, local_lines: list[bytes], tmp_path: Path
) -> None:
    outdir = tmp_path / "out"
    stats = annotate_on_engine(
        [documents],
        "ner",
        outdir,
        engine="spark",
        partitions=3,
        runner=SparkRunner(None, 2, task=fail_once),
    )
    assert (tmp_path / "out.failed").is_file()  # the fault did happen
    assert stats.parts == 3 and stats.documents == len(local_lines)
    assert list(concatenated(outdir)) == local_lines


def test_rerun_on_a_half_written_outdir_redoes_only_the_missing_part(
    spark: object, documents: Path, local_lines: list[bytes], tmp_path: Path
) -> None:
    outdir = tmp_path / "out"
    annotate_on_engine([documents], "ner", outdir, engine="spark", partitions=3)
    (outdir / "part-00001.jsonl").unlink()
    (outdir / SUCCESS).unlink()
    stats = annotate_on_engine([documents], "ner", outdir, engine="spark", partitions=3)
    assert stats.parts == 1 and stats.parts_done_before == 2
    assert (outdir / SUCCESS).is_file()
    assert list(concatenated(outdir)) == local_lines


def test_unreachable_address_is_one_line_exit_1(documents: Path, tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    args = ["annotate", str(documents), "-o", str(outdir), "--engine", "spark"]
    result = cli.invoke(app, [*args, "--address", "spark://127.0.0.1:1"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "spark://127.0.0.1:1" in lines[0], result.output
    assert "Traceback" not in result.output
    assert not (outdir / SUCCESS).exists()
