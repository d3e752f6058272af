"""Dask: annotate a bag of texts or a DataFrame's text column with `map_partitions` over
`BatchAnnotator`.

A thin adapter: each partition goes through `BatchAnnotator`, the callable every engine maps, so a
record is exactly what `annotate -f jsonl` writes for its text. What Dask ships to the workers is
the annotator's plain values (a model name or absolute folder and options); each worker process
loads the model itself, once, with one torch thread. For files in, part files out, use
`bilstm-nlp annotate --engine dask` (`annotate_on_engine`) instead.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError
from .batch import BatchAnnotator, check_columns, portable_model

if TYPE_CHECKING:
    import dask.bag
    import dask.dataframe


def annotate_bag(
    bag: dask.bag.Bag,
    model: str = "ner",
    *,
    text_field: str = "text",
    id_field: str | None = None,
    k_best: int = 0,
    scheme: str | None = None,
    batch_size: int = 256,
    threads: int = 1,
) -> dask.bag.Bag:
    """A bag of records (dicts, as `annotate -f jsonl` writes them), one per item of `bag`, in
    its order.

    Args:
        bag: texts (str, or bytes read as UTF-8 with bad bytes replaced; None is the empty text)
            or dicts holding the text under `text_field`.
        model: a shipped model's name or a model folder every worker can read.
        text_field: the dicts' key of the text.
        id_field: the dicts' key of the records' `id` (None: null ids).
        k_best: also the k best tag sequences per sentence (taggers).
        scheme: the scheme to write tags in, `IOB1`, `IOB2`, `BIOES` or `BILOU`
            (taggers with a scheme); None: the training file's.
        batch_size: sentences per model batch.
        threads: torch threads in each worker process.
    Raises:
        ModelFileError: `model` is neither a model folder nor a shipped model (at once).
        ConfigError: options out of range (at once); when computed, a dict without `text_field`.
    """
    annotator = _annotator(model, text_field, id_field, k_best, batch_size, threads, scheme)
    return bag.map_partitions(partial(_annotate_partition, annotator, False))


def annotate_bag_json(
    bag: dask.bag.Bag,
    model: str = "ner",
    *,
    text_field: str = "text",
    id_field: str | None = None,
    k_best: int = 0,
    scheme: str | None = None,
    batch_size: int = 256,
    threads: int = 1,
) -> dask.bag.Bag:
    """As `annotate_bag`, the records as the JSON lines `annotate -f jsonl` writes (no line end):
    `annotate_bag_json(bag).to_textfiles("out/*.jsonl")` writes JSONL parts."""
    annotator = _annotator(model, text_field, id_field, k_best, batch_size, threads, scheme)
    return bag.map_partitions(partial(_annotate_partition, annotator, True))


def annotate_dataframe(
    ddf: dask.dataframe.DataFrame,
    model: str = "ner",
    *,
    text_column: str = "text",
    id_column: str | None = None,
    output_column: str = "annotation",
    k_best: int = 0,
    scheme: str | None = None,
    batch_size: int = 256,
    threads: int = 1,
) -> dask.dataframe.DataFrame:
    """`ddf` with `output_column` added: each row's record as the JSON line `annotate -f jsonl`
    writes (ids from `id_column`, else null; a null text is annotated as the empty text).

    Lazy; the columns are checked here, before anything is computed. The arguments are those of
    `spark.annotate_dataframe`.

    Raises:
        ConfigError: a missing text or id column, an existing output column, options out of range.
        ModelFileError: `model` is neither a model folder nor a shipped model.
    """
    import pandas as pd

    check_columns(list(ddf.columns), text_column, id_column, output_column)
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
    empty = ddf._meta
    meta = empty.assign(**{output_column: pd.Series([], dtype=str, index=empty.index)})
    return ddf.map_partitions(annotator, meta=meta)


def _annotator(
    model: str,
    text_field: str,
    id_field: str | None,
    k_best: int,
    batch_size: int,
    threads: int,
    scheme: str | None,
) -> BatchAnnotator:
    return BatchAnnotator(
        portable_model(model),
        text_column=text_field,
        id_column=id_field,
        k_best=k_best,
        scheme=scheme,
        batch_size=batch_size,
        threads=threads,
    )


def _annotate_partition(annotator: BatchAnnotator, as_json: bool, items: Any) -> list[Any]:
    items = list(items)
    texts: list[Any] = []
    ids: list[Any] | None = [] if annotator.id_column is not None else None
    for item in items:
        if not isinstance(item, dict):
            texts.append(item)
            if ids is not None:
                ids.append(None)
            continue
        if annotator.text_column not in item:
            raise ConfigError(
                f"a bag item has no field {annotator.text_column!r} (it has "
                f"{', '.join(map(str, item)) or 'none'}); name the text field with text_field="
            )
        texts.append(item[annotator.text_column])
        if ids is not None:
            ids.append(item.get(annotator.id_column))
    if as_json:
        return annotator.annotations(texts, ids)
    return annotator.records(texts, ids)
