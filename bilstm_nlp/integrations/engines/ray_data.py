"""Ray Data over `BatchAnnotator`: annotate a Dataset, or files into a folder of parquet or JSONL.

A thin layer on batch.py: the annotation is `ds.map_batches(BatchAnnotator, ...)` on actors that
load the model once each; nothing here makes a record. What it adds is reading: Ray's
`read_text` gives no line numbers and refuses bad UTF-8, so text and JSONL files are read here,
in chunks of whole lines, by the reader `annotate` itself uses (`read_documents`): ids are
`file:line` (or the JSONL id field), an empty line is an empty document, bad bytes become U+FFFD.
Chunks are cut at line starts by the driver (a seek per chunk); the lines before each chunk are
counted by Ray tasks, so the driver never reads the corpus. Parquet files are read a row group per
chunk (ids from `id_column`, else `file:row`).

Each output row keeps where its document came from: `input` (the index of its file among the
inputs), `path` (the file as given), `line` (its line, or its row from 1) and `annotation` (its
record, the line `annotate -f jsonl` writes). Rows ordered by `(input, line)` are the local run's
output; the JSONL output holds the records only (ordered by their ids for text input).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError
from .batch import BatchAnnotator, plain_value

if TYPE_CHECKING:
    import ray.data

INPUT_FORMATS = ("text", "jsonl", "parquet")
OUTPUT_FORMATS = ("parquet", "jsonl")
SUCCESS = "_SUCCESS"
# Bytes of input per read task: big enough that a task's start-up is noise, small enough that
# two actors each get work on a modest file.
CHUNK_BYTES = 16 << 20


def annotate_dataset(
    ds: ray.data.Dataset,
    model: str = "ner",
    *,
    text_column: str = "text",
    id_column: str | None = None,
    output_column: str = "annotation",
    k_best: int = 0,
    scheme: str | None = None,
    batch_size: int = 256,
    threads: int = 1,
    concurrency: int | None = None,
    batch_rows: int = 1000,
) -> ray.data.Dataset:
    """`ds` with `output_column` holding each row's record (a JSON string), annotated on actors.

    Args:
        ds: a Dataset with a text column.
        model: a shipped model's name or a model folder every node can read.
        text_column: the column holding the texts.
        id_column: a column whose values become the records' `id` (None: null ids).
        output_column: the column the records go to.
        k_best: also the k best tag sequences per sentence (taggers).
        scheme: the scheme to write tags in, `IOB1`, `IOB2`, `BIOES` or `BILOU`
            (taggers with a scheme); None: the training file's.
        batch_size: sentences per model batch.
        threads: torch threads per actor (and the CPUs each actor reserves).
        concurrency: actors (None: the cluster's CPUs divided by `threads`).
        batch_rows: rows per batch handed to an actor.
    Returns:
        The lazy Dataset; nothing runs until it is consumed or written.
    Raises:
        ConfigError: options out of range (a missing text column is raised when it runs).
    """
    import ray

    if concurrency is None:
        concurrency = max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
    if concurrency < 1 or batch_rows < 1:
        raise ConfigError("concurrency and batch_rows must be at least 1")
    constructor = {
        "model": str(model),
        "text_column": text_column,
        "id_column": id_column,
        "output_column": output_column,
        "k_best": k_best,
        "scheme": scheme,
        "batch_size": batch_size,
        "threads": threads,
    }
    BatchAnnotator(**constructor)  # options checked here, not in every actor
    return ds.map_batches(
        BatchAnnotator,
        fn_constructor_kwargs=constructor,
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_cpus=threads,
        batch_size=batch_rows,
    )


def read_documents_ray(
    inputs: Sequence[str | Path],
    *,
    input_format: str = "text",
    text_column: str = "text",
    id_column: str = "id",
    glob: str | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> ray.data.Dataset:
    """The documents of files as a Dataset of `input`, `path`, `line`, `text`, `id` rows.

    Args:
        inputs: files or folders (their files matching `glob`), read at the same paths on
            every node.
        input_format: `text` (a document per line), `jsonl` or `parquet`.
        text_column: the JSONL key or parquet column of the text.
        id_column: the JSONL key or parquet column of the id (absent: `file:line`).
        glob: the files of a folder to read (default `**/*.txt`, `**/*.jsonl`, `**/*.parquet`).
        chunk_bytes: input bytes per read task (text and JSONL).
    Raises:
        ConfigError: an unknown input format.
        InputFormatError: a missing input or a folder without matching files (in the driver);
            a bad JSONL line or a line over 1 MB (when the Dataset runs).
    """
    import ray

    from ...annotation.jobs import plan_jobs

    if input_format not in INPUT_FORMATS:
        raise ConfigError(
            f"unknown input format {input_format!r}; choose from {', '.join(INPUT_FORMATS)}"
        )
    if chunk_bytes < 1:
        raise ConfigError("chunk_bytes must be at least 1")
    unit = {"text": "line", "jsonl": "jsonl", "parquet": "parquet"}[input_format]
    glob = glob or {"text": None, "jsonl": "**/*.jsonl", "parquet": "**/*.parquet"}[input_format]
    # plan_jobs expands folders as `annotate` does; it knows units line/file/jsonl only.
    jobs = plan_jobs(inputs, None, "line" if unit == "parquet" else unit, glob, ".jsonl", None)
    chunks: list[_Chunk] = []
    for index, job in enumerate(jobs):
        source = str(Path(job.source or "").resolve())
        if unit == "parquet":
            chunks.extend(_row_group_chunks(index, job.name, source))
        else:
            chunks.extend(_line_chunks(index, job.name, source, unit, chunk_bytes))
    if unit != "parquet" and chunks:
        count = ray.remote(num_cpus=1)(_count_lines)
        counts = ray.get([count.remote(chunk.source, chunk.start, chunk.end) for chunk in chunks])
        lines = 0
        for position, chunk in enumerate(chunks):
            if position and chunk.input != chunks[position - 1].input:
                lines = 0
            chunk.line = lines
            lines += counts[position]
    items = [
        {**chunk.__dict__, "text_column": text_column, "id_column": id_column} for chunk in chunks
    ]
    return ray.data.from_items(items, override_num_blocks=max(1, len(items))).map_batches(
        _read_chunks, batch_size=1, num_cpus=1
    )


def annotate_files_ray(
    inputs: Sequence[str | Path],
    output_dir: str | Path,
    *,
    model: str = "ner",
    fmt: str = "parquet",
    input_format: str = "text",
    text_column: str = "text",
    id_column: str = "id",
    glob: str | None = None,
    k_best: int = 0,
    scheme: str | None = None,
    batch_size: int = 256,
    threads: int = 1,
    concurrency: int | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> Path:
    """Annotate files on Ray into `output_dir`: parquet parts (`input`, `path`, `line`,
    `annotation`) or JSONL parts (the records), then `_SUCCESS`.

    Args:
        inputs, input_format, text_column, id_column, glob, chunk_bytes: see
            `read_documents_ray`.
        output_dir: a new or empty folder.
        model, k_best, scheme, batch_size, threads, concurrency: see `annotate_dataset`.
        fmt: `parquet` or `jsonl`.
    Returns:
        `output_dir`.
    Raises:
        ConfigError: bad options or an `output_dir` that is not empty.
        InputFormatError: see `read_documents_ray`.
    """
    if fmt not in OUTPUT_FORMATS:
        raise ConfigError(f"unknown output format {fmt!r}; choose from parquet, jsonl")
    output_dir = Path(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise ConfigError(f"{output_dir} is not an empty folder; choose a new one")
    documents = read_documents_ray(
        inputs,
        input_format=input_format,
        text_column=text_column,
        id_column=id_column,
        glob=glob,
        chunk_bytes=chunk_bytes,
    )
    annotated = annotate_dataset(
        documents,
        model,
        text_column="text",
        id_column="id",
        k_best=k_best,
        scheme=scheme,
        batch_size=batch_size,
        threads=threads,
        concurrency=concurrency,
    )
    path = str(output_dir.resolve())
    if fmt == "parquet":
        annotated.select_columns(["input", "path", "line", "annotation"]).write_parquet(path)
    else:
        annotated.select_columns(["annotation"]).write_datasink(_jsonl_lines_sink(path))
    # Written last, so a folder without it is an unfinished run.
    (output_dir / SUCCESS).write_bytes(b"")
    return output_dir


@dataclass
class _Chunk:
    input: int
    path: str
    source: str
    unit: str
    start: int
    end: int
    line: int


def _line_chunks(index: int, name: str, source: str, unit: str, size: int) -> list[_Chunk]:
    """Byte ranges of about `size` cut at line starts (a seek and a readline per cut)."""
    total = os.path.getsize(source)
    chunks: list[_Chunk] = []
    start = 0
    with open(source, "rb") as handle:
        while start < total or not chunks:
            handle.seek(min(start + size, total))
            if start + size < total:
                handle.readline()  # to the next line start
            end = handle.tell()
            chunks.append(_Chunk(index, name, source, unit, start, end, 0))
            start = end
    return chunks


def _row_group_chunks(index: int, name: str, source: str) -> list[_Chunk]:
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(source).metadata
    chunks: list[_Chunk] = []
    rows = 0
    for group in range(metadata.num_row_groups):
        chunks.append(_Chunk(index, name, source, "parquet", group, group + 1, rows))
        rows += metadata.row_group(group).num_rows
    return chunks


def _count_lines(source: str, start: int, end: int) -> int:
    """Lines in a byte range of whole lines (the last may lack its line end)."""
    with open(source, "rb") as handle:
        handle.seek(start)
        data = handle.read(end - start)
    return data.count(b"\n") + (bool(data) and not data.endswith(b"\n"))


def _read_chunks(batch: dict[str, Any]) -> dict[str, list[Any]]:
    """One chunk's documents (`map_batches` with `batch_size=1`)."""
    from ...corpus.readers.documents import read_documents

    chunk = {name: plain_value(values[0]) for name, values in batch.items()}
    rows: dict[str, list[Any]] = {"input": [], "path": [], "line": [], "text": [], "id": []}
    if chunk["unit"] == "parquet":
        documents = _parquet_documents(chunk)
    else:
        with open(chunk["source"], "rb") as handle:
            handle.seek(chunk["start"])
            data = io.BytesIO(handle.read(chunk["end"] - chunk["start"]))
        found = read_documents(
            data,
            chunk["path"],
            chunk["unit"],
            line=chunk["line"],
            text_field=chunk["text_column"],
            id_field=chunk["id_column"],
            pieces=False,
        )
        documents = ((d.line, d.text, d.doc_id) for d in found)
    for line, text, doc_id in documents:
        rows["input"].append(chunk["input"])
        rows["path"].append(chunk["path"])
        rows["line"].append(line)
        rows["text"].append(text)
        rows["id"].append(doc_id)
    return rows


def _parquet_documents(chunk: dict[str, Any]) -> list[tuple[int, str, Any]]:
    import pyarrow.parquet as pq

    from .batch import _text

    file = pq.ParquetFile(chunk["source"])
    names = file.schema_arrow.names
    if chunk["text_column"] not in names:
        raise ConfigError(
            f"{chunk['path']} has no column {chunk['text_column']!r} (it has "
            f"{', '.join(names)}); name the text column with text_column="
        )
    has_id = chunk["id_column"] in names
    columns = [chunk["text_column"], *([chunk["id_column"]] if has_id else [])]
    table = file.read_row_group(chunk["start"], columns=columns)
    texts = table.column(chunk["text_column"]).to_pylist()
    ids = table.column(chunk["id_column"]).to_pylist() if has_id else None
    first = chunk["line"] + 1
    return [
        (
            first + row,
            _text(text, chunk["text_column"]),
            ids[row] if ids is not None else f"{chunk['path']}:{first + row}",
        )
        for row, text in enumerate(texts)
    ]


def _jsonl_lines_sink(path: str) -> Any:
    """A Ray datasink writing each row's `annotation` as one line of a `.jsonl` part."""
    from ray.data.datasource import BlockBasedFileDatasink

    class JsonlLinesSink(BlockBasedFileDatasink):
        def write_block_to_file(self, block: Any, file: Any) -> None:
            lines = block.to_arrow().column("annotation").to_pylist()
            file.write("".join(f"{line}\n" for line in lines).encode("utf-8"))

    return JsonlLinesSink(path, file_format="jsonl")
