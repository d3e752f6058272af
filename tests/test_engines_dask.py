"""Dask: `annotate --engine dask` and the bag and DataFrame adapters on a real
`distributed.LocalCluster(n_workers=2, threads_per_worker=1)`, against the local
`annotate -f jsonl` on 2,000 CoNLL-2003 dev sentences (plus an empty and an invalid-UTF-8 line).
One cluster for the module, closed at the end; the test that retires a worker runs last."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("distributed")

import dask.bag  # noqa: E402
import dask.dataframe  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from bilstm_nlp.annotation.files import AnnotateOptions, annotate_paths  # noqa: E402
from bilstm_nlp.cli import app  # noqa: E402
from bilstm_nlp.errors import ConfigError  # noqa: E402
from bilstm_nlp.integrations.engines import EngineStats, annotate_on_engine  # noqa: E402
from bilstm_nlp.integrations.engines.batch import encode_record  # noqa: E402
from bilstm_nlp.integrations.engines.dask import (  # noqa: E402
    annotate_bag,
    annotate_bag_json,
    annotate_dataframe,
)
from bilstm_nlp.integrations.engines.parts import SUCCESS, concatenated  # noqa: E402
from bilstm_nlp.integrations.engines.runners import DaskRunner  # noqa: E402
from bilstm_nlp.serialize import load_model  # noqa: E402
from tests.engine_faults_spark_dask import (  # noqa: E402
    assert_same_records,
    engine_environment,
    input_rows,
    slow_part,
    write_input,
)

pytestmark = pytest.mark.slow
cli = CliRunner()


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with engine_environment():
        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
        )
        client = Client(cluster)
        try:
            with dask.config.set(scheduler=client):
                yield client
        finally:
            client.close()
            cluster.close()


@pytest.fixture(scope="module")
def documents(shared_corpora: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dask-input")
    return write_input(shared_corpora / "conll2003" / "dev.txt", folder / "dev.txt")


@pytest.fixture(scope="module")
def local_lines(documents: Path, tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """`annotate -f jsonl` at one torch thread, as the CLI runs it."""
    output = tmp_path_factory.mktemp("dask-local") / "local.jsonl"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        annotate_paths([documents], load_model("ner"), output)
    finally:
        torch.set_num_threads(threads)
    lines = output.read_bytes().splitlines(keepends=True)
    assert len(lines) == len(input_rows(documents))
    return lines


def _texts(lines: list[bytes]) -> list[str]:
    return [line.decode().rstrip("\n") for line in lines]


def test_cli_engine_dask_is_byte_identical_to_local(
    client: Client, documents: Path, local_lines: list[bytes], tmp_path: Path, caplog
) -> None:
    outdir = tmp_path / "out"
    address = client.scheduler.address
    args = ["annotate", str(documents), "-o", str(outdir), "--engine", "dask"]
    result = cli.invoke(app, [*args, "--address", address, "--partitions", "3"])
    assert result.exit_code == 0, result.output
    assert (outdir / SUCCESS).is_file()
    assert list(concatenated(outdir)) == local_lines
    # Counted and said, as a local run says it.
    assert "1 input lines were not valid UTF-8" in caplog.text


def test_cli_engine_dask_runs_an_onnx_folder(
    client: Client, documents: Path, tmp_path: Path
) -> None:
    # The workers pick the backend from the folder, as the local annotate does.
    folder = tmp_path / "ner-onnx"
    exported = cli.invoke(app, ["export", "ner", str(folder), "--format", "onnx"])
    assert exported.exit_code == 0, exported.output
    local = tmp_path / "local.jsonl"
    annotate_paths([documents], load_model(folder), local)
    outdir = tmp_path / "out"
    args = ["annotate", str(documents), "-o", str(outdir), "--engine", "dask", "-m", str(folder)]
    result = cli.invoke(app, [*args, "--address", client.scheduler.address, "--partitions", "2"])
    assert result.exit_code == 0, result.output
    got = [line.decode().rstrip("\n") for line in concatenated(outdir)]
    assert_same_records(got, _texts(local.read_bytes().splitlines(keepends=True)))


def test_bag_records_equal_local(client: Client, documents: Path, local_lines: list[bytes]) -> None:
    rows = input_rows(documents)
    items = [{"id": identifier, "text": text} for identifier, text in rows]
    got = annotate_bag_json(dask.bag.from_sequence(items, npartitions=3), id_field="id").compute()
    assert_same_records(got, _texts(local_lines))

    # Raw lines, bad bytes and all, as annotate reads them: the same records, ids aside.
    raw = documents.read_bytes().split(b"\n")[:-1]
    records = annotate_bag(dask.bag.from_sequence(raw, npartitions=2)).compute()
    assert len(records) == len(rows)  # every line exactly one record
    named = [encode_record(r | {"id": i}) for r, (i, _) in zip(records, rows, strict=True)]
    assert_same_records(named, _texts(local_lines))


def test_bag_item_without_text_field_is_one_error(client: Client) -> None:
    bag = dask.bag.from_sequence([{"body": "EU rejects it ."}], npartitions=1)
    with pytest.raises(ConfigError, match="no field 'text'.*body"):
        annotate_bag(bag).compute()


def test_dataframe_records_equal_local(
    client: Client, documents: Path, local_lines: list[bytes]
) -> None:
    rows = input_rows(documents)
    frame = pd.DataFrame({"id": [i for i, _ in rows], "text": [t for _, t in rows]})
    ddf = dask.dataframe.from_pandas(frame, npartitions=2)
    annotated = annotate_dataframe(ddf, "ner", id_column="id")
    assert list(annotated.columns) == ["id", "text", "annotation"]
    got = annotated.compute()
    assert list(got["id"]) == list(frame["id"])  # every line exactly one record, in order
    assert_same_records(list(got["annotation"]), _texts(local_lines))


def test_dataframe_tags_in_the_scheme_asked_for_equal_local(
    client: Client, documents: Path, tmp_path: Path
) -> None:
    source = tmp_path / "first.txt"
    source.write_bytes(b"".join(documents.read_bytes().splitlines(keepends=True)[:200]))
    output = tmp_path / "local.jsonl"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        annotate_paths([source], load_model("ner"), output, AnnotateOptions(scheme="IOB2"))
    finally:
        torch.set_num_threads(threads)
    rows = input_rows(source)
    frame = pd.DataFrame({"id": [i for i, _ in rows], "text": [t for _, t in rows]})
    ddf = dask.dataframe.from_pandas(frame, npartitions=2)
    got = annotate_dataframe(ddf, "ner", id_column="id", scheme="IOB2").compute()
    local = _texts(output.read_bytes().splitlines(keepends=True))
    assert len(local) == 200 and any('"tag":"B-' in line for line in local)
    assert_same_records(list(got["annotation"]), local)


def test_dataframe_without_text_column_fails_before_computing(client: Client) -> None:
    frame = pd.DataFrame({"id": ["a"], "body": ["EU rejects it ."]})
    ddf = dask.dataframe.from_pandas(frame, npartitions=1)
    with pytest.raises(ConfigError, match="no text column 'text'.*id, body"):
        annotate_dataframe(ddf)  # lazy: raising here means nothing was computed


def test_rerun_on_a_half_written_outdir_redoes_only_the_missing_part(
    client: Client, documents: Path, local_lines: list[bytes], tmp_path: Path
) -> None:
    outdir = tmp_path / "out"
    address = client.scheduler.address
    annotate_on_engine([documents], "ner", outdir, engine="dask", address=address, partitions=3)
    (outdir / "part-00001.jsonl").unlink()
    (outdir / SUCCESS).unlink()
    stats = annotate_on_engine(
        [documents], "ner", outdir, engine="dask", address=address, partitions=3
    )
    assert stats.parts == 1 and stats.parts_done_before == 2
    assert list(concatenated(outdir)) == local_lines


def test_unreachable_address_is_one_line_exit_1(documents: Path, tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    args = ["annotate", str(documents), "-o", str(outdir), "--engine", "dask"]
    result = cli.invoke(app, [*args, "--address", "tcp://127.0.0.1:1"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "tcp://127.0.0.1:1" in lines[0], result.output
    assert "Traceback" not in result.output
    assert not (outdir / SUCCESS).exists()


def test_a_worker_retired_mid_job_still_writes_every_record_once(
    client: Client, documents: Path, local_lines: list[bytes], tmp_path: Path
) -> None:
    """Last in the module: the cluster keeps one worker afterwards."""
    outdir = tmp_path / "out"
    found: list[EngineStats | BaseException] = []

    def job() -> None:
        try:
            runner = DaskRunner(client.scheduler.address, 2, task=slow_part)
            found.append(
                annotate_on_engine(
                    [documents], "ner", outdir, engine="dask", partitions=3, runner=runner
                )
            )
        except BaseException as error:  # handed to the test thread
            found.append(error)

    thread = threading.Thread(target=job)
    thread.start()
    deadline = time.monotonic() + 120
    busy: list[str] = []
    while not busy and time.monotonic() < deadline and thread.is_alive():
        busy = [w for w, keys in client.processing().items() if keys]
        busy = busy if list(tmp_path.glob("out.started-*")) else []
        time.sleep(0.1)
    assert busy, "no task started"
    client.retire_workers(workers=busy[:1])
    thread.join(timeout=180)
    assert not thread.is_alive()
    assert len(client.scheduler_info()["workers"]) == 1  # the worker did go
    stats = found[0]
    assert isinstance(stats, EngineStats), stats
    # A part the retired worker finished before it went counts as found, not written, when its
    # task is run again; what matters is the files: every record once, as local.
    assert stats.parts_done_before == 0 and 1 <= stats.parts <= 3
    assert list(concatenated(outdir)) == local_lines
