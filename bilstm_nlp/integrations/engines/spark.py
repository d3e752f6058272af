"""Spark: annotate a DataFrame's text column with `mapInArrow` over `BatchAnnotator`.

A thin adapter: each Arrow batch an executor holds goes through `BatchAnnotator`, the callable
every engine maps, so a row's annotation is the line `annotate -f jsonl` writes for it. What Spark
pickles to the executors is the annotator's plain values (a model name or absolute folder and
options), a few hundred bytes; each executor's Python worker loads the model itself, once, with
one torch thread (no torch object crosses the wire, the trap of spaCy in Spark). For files in,
part files out, use `bilstm-nlp annotate --engine spark` (`annotate_on_engine`) instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError
from .batch import BatchAnnotator, check_columns, portable_model

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame

# A tagger's record (`annotate -f jsonl` without --k-best), for `from_json`; a classifier's or a
# k-best record has other fields: take its schema from one row with `schema_of_json`.
TAGGER_RECORD_SCHEMA = (
    "id STRING, text STRING, "
    "tokens ARRAY<STRUCT<text: STRING, start: INT, end: INT, tag: STRING, score: DOUBLE>>, "
    "sentences ARRAY<ARRAY<INT>>, "
    "spans ARRAY<STRUCT<start: INT, end: INT, label: STRING, text: STRING, score: DOUBLE, "
    "token_start: INT, token_end: INT>>"
)


def arrow_annotator(
    model: str = "ner",
    *,
    text_column: str = "text",
    id_column: str | None = None,
    output_column: str = "annotation",
    k_best: int = 0,
    scheme: str | None = None,
    batch_size: int = 256,
    threads: int = 1,
) -> partial[Iterator[pa.RecordBatch]]:
    """The function `DataFrame.mapInArrow` runs: Arrow batches in, the same batches out with
    `output_column` (a string column) holding each row's record as JSON.

    `df.mapInArrow(arrow_annotator("ner"), annotated_schema(df))` is what `annotate_dataframe`
    does; use this to compose it yourself. The arguments are `BatchAnnotator`'s; `model` is a
    shipped model's name or a folder every executor can read.

    Raises:
        ModelFileError: `model` is neither a model folder nor a shipped model.
        ConfigError: options out of range.
    """
    annotator = BatchAnnotator(
        portable_model(model),
        text_column=text_column,
        id_column=id_column,
        output_column=output_column,
        k_best=k_best,
        scheme=scheme,
        batch_size=batch_size,
        threads=threads,
    )
    return partial(_annotate_batches, annotator)


def annotate_dataframe(
    df: DataFrame,
    model: str = "ner",
    *,
    text_column: str = "text",
    id_column: str | None = None,
    output_column: str = "annotation",
    k_best: int = 0,
    scheme: str | None = None,
    batch_size: int = 256,
    threads: int = 1,
) -> DataFrame:
    """`df` with `output_column` added: each row's record as the JSON line `annotate -f jsonl`
    writes (ids from `id_column`, else null; a null text is annotated as the empty text).

    Lazy, as any Spark transformation; the columns are checked here, on the driver, before any job
    runs. `parse_annotations` turns the JSON column into a struct column.

    Args:
        df: a DataFrame with a string (or binary, read as UTF-8) text column.
        model: a shipped model's name or a model folder every executor can read.
        text_column: the column holding the texts.
        id_column: a column whose values become the records' `id`.
        output_column: the new column; it must not exist yet.
        k_best: also the k best tag sequences per sentence (taggers).
        scheme: the scheme to write tags in, `IOB1`, `IOB2`, `BIOES` or `BILOU`
            (taggers with a scheme); None: the training file's.
        batch_size: sentences per model batch.
        threads: torch threads in each executor's Python worker.
    Raises:
        ConfigError: a missing text or id column, an existing output column, options out of range.
        ModelFileError: `model` is neither a model folder nor a shipped model.
    """
    check_columns(list(df.columns), text_column, id_column, output_column)
    function = arrow_annotator(
        model,
        text_column=text_column,
        id_column=id_column,
        output_column=output_column,
        k_best=k_best,
        scheme=scheme,
        batch_size=batch_size,
        threads=threads,
    )
    return df.mapInArrow(function, annotated_schema(df, output_column))


def annotated_schema(df: DataFrame, output_column: str = "annotation") -> Any:
    """`df`'s schema with the string column `output_column` added (`mapInArrow`'s schema)."""
    from pyspark.sql.types import StringType, StructField, StructType

    return StructType([*df.schema.fields, StructField(output_column, StringType(), False)])


def parse_annotations(
    df: DataFrame,
    column: str = "annotation",
    into: str = "record",
    schema: str = TAGGER_RECORD_SCHEMA,
) -> DataFrame:
    """`df` with `into`: the JSON records of `column` parsed into a struct (`from_json`), so
    `df.select("record.spans")` works. `schema` is a tagger's record; give another (a DDL string)
    for a classifier's or k-best records.

    Raises:
        ConfigError: `column` missing.
    """
    from pyspark.sql import functions

    if column not in df.columns:
        raise ConfigError(f"the DataFrame has no column {column!r} to parse")
    return df.withColumn(into, functions.from_json(functions.col(column), schema))


def _annotate_batches(
    annotator: BatchAnnotator, batches: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        yield annotator(batch)
