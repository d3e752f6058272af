"""The engine-neutral annotator: a batch of texts in a column batch → the same batch with each
text's record, as `annotate -f jsonl` writes it.

What every engine adapter maps over its data: Ray Data's `map_batches`, Spark's `mapInArrow`,
Dask's `map_partitions`, Hugging Face `datasets.map(batched=True)`. A `BatchAnnotator` holds only
plain values (a model name or folder, options), so it pickles to any worker; the model is loaded
there, once per process, with one torch thread unless told otherwise (each of N processes taking
every core is what slows Stanza down past two). The records come from `Annotator.records`, the
function `annotate` itself runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...annotation.writers.jsonl import JsonlWriter
from ...decode import is_onnx
from ...errors import ConfigError
from ...text.schemes import normalize_written_scheme

if TYPE_CHECKING:
    from ...annotation.annotator import Annotator
    from ...annotation.workers import WindowEncoder


@dataclass(frozen=True)
class EngineOptions:
    """How each task annotates; the same meaning as `annotation.files.AnnotateOptions`.

    Attributes:
        unit: `line`, `file` or `jsonl` (None: `jsonl` for `.jsonl` files, else `line`).
        glob: the files of a folder to read.
        text_field: JSONL key of the text.
        id_field: JSONL key of the document id.
        k_best: also the k best tag sequences per sentence.
        scheme: the scheme to write tags in, `IOB1`, `IOB2`, `BIOES` or `BILOU`
            (taggers with a scheme); None: the training file's.
        batch_size: sentences per model batch.
        threads: torch threads per worker process (the output depends on it; 1 as `annotate`).
    """

    unit: str | None = None
    glob: str | None = None
    text_field: str = "text"
    id_field: str = "id"
    k_best: int = 0
    scheme: str | None = None
    batch_size: int = 256
    threads: int = 1

    def check(self) -> None:
        """Raises `ConfigError` for values out of range."""
        if self.batch_size < 1 or self.k_best < 0 or self.threads < 1:
            raise ConfigError("batch_size and threads must be >= 1, k_best >= 0")
        if self.scheme is not None:
            normalize_written_scheme(self.scheme)


# Per worker process: a model is loaded once, whatever number of batches or parts it annotates.
_ANNOTATORS: dict[tuple[Any, ...], Annotator] = {}
_WINDOW_ENCODERS: dict[tuple[Any, ...], WindowEncoder] = {}
_THREADS_SET: list[int] = []
_JSONL = JsonlWriter()


def _use_threads(model: Any, threads: int) -> None:
    """A torch model computes with torch's process-wide threads, set on each use (another model
    of this worker may have set others); an ONNX session got its own at load (the runtime has no
    torch to set)."""
    if is_onnx(model):
        return
    import torch

    if _THREADS_SET != [threads]:
        torch.set_num_threads(threads)
        _THREADS_SET[:] = [threads]


def worker_annotator(
    model: str, batch_size: int, k_best: int, threads: int, scheme: str | None = None
) -> Annotator:
    """This process's `Annotator` for `model` (loaded on first use)."""
    from ...annotation.annotator import Annotator
    from ...serialize import load_model

    key = (model, batch_size, k_best, scheme, threads)
    if key not in _ANNOTATORS:
        loaded = load_model(model, threads=threads)
        _ANNOTATORS[key] = Annotator(loaded, batch_size=batch_size, k_best=k_best, scheme=scheme)
    _use_threads(_ANNOTATORS[key].model, threads)
    return _ANNOTATORS[key]


def worker_window_encoder(model: str, options: EngineOptions) -> WindowEncoder:
    """This process's `WindowEncoder` (JSONL) for `model`, for part tasks."""
    from ...annotation.workers import WindowEncoder
    from ...serialize import load_model

    key = (model, options.batch_size, options.k_best, options.scheme, options.threads)
    if key not in _WINDOW_ENCODERS:
        loaded = load_model(model, threads=options.threads)
        _WINDOW_ENCODERS[key] = WindowEncoder(
            loaded, "jsonl", options.batch_size, options.k_best, options.scheme
        )
    _use_threads(_WINDOW_ENCODERS[key].annotator.model, options.threads)
    return _WINDOW_ENCODERS[key]


def portable_model(model: str | Path) -> str:
    """`model` as workers elsewhere can load it: a shipped model's name stays a name (each worker
    finds it in its own install), a folder becomes an absolute path. Checked here, on the driver,
    so a wrong name fails before any job runs.

    Raises:
        ModelFileError: neither a model folder nor a shipped model.
    """
    from ...serialize import SHIPPED_MODELS, resolve_model_path

    path = resolve_model_path(model)
    if str(model) in SHIPPED_MODELS and not Path(model).exists():
        return str(model)
    return str(path.resolve())


def check_columns(
    columns: list[str], text_column: str, id_column: str | None, output_column: str
) -> None:
    """Refuse, before any job runs, a DataFrame the annotator cannot annotate.

    Raises:
        ConfigError: the text or id column missing, or the output column there already.
    """
    columns = [str(column) for column in columns]
    for role, name in (("text", text_column), ("id", id_column)):
        if name is not None and name not in columns:
            raise ConfigError(
                f"the DataFrame has no {role} column {name!r} (it has "
                f"{', '.join(columns) or 'none'}); name it with {role}_column="
            )
    if output_column in columns:
        raise ConfigError(
            f"the DataFrame already has a column {output_column!r}; choose another output_column="
        )


def encode_record(record: dict[str, Any]) -> str:
    """A record as the JSONL writer writes it, without the line end."""
    return _JSONL.encode(record).decode()[:-1]


class BatchAnnotator:
    """Annotate the text column of a batch; returns the batch with an `annotation` column.

    A batch is a mapping of columns (lists or numpy arrays: Ray Data, `datasets.map`), a pandas
    DataFrame (Dask, Spark's `mapInPandas`) or a pyarrow Table or RecordBatch (Spark's
    `mapInArrow`, Ray Data with `batch_format="pyarrow"`); the result has the same type, its
    columns and the new one. A row's annotation is its record as one JSON string, the line
    `annotate -f jsonl` writes for it (ids from `id_column`, else null). A missing or null
    text is annotated as the empty text, as `annotate` does with an empty line: every row gets
    its record.

    Args:
        model: a shipped model's name or a model folder every worker can read.
        text_column: the column holding the texts.
        id_column: a column whose values become the records' `id` (None: null ids).
        output_column: the column the records go to.
        k_best: also the k best tag sequences per sentence (taggers).
        scheme: the scheme to write tags in, `IOB1`, `IOB2`, `BIOES` or `BILOU`
            (taggers with a scheme); None: the training file's.
        batch_size: sentences per model batch.
        threads: torch threads in each worker process.
    Raises:
        ConfigError: options out of range; on a batch, a missing text column.
    """

    def __init__(
        self,
        model: str = "ner",
        *,
        text_column: str = "text",
        id_column: str | None = None,
        output_column: str = "annotation",
        k_best: int = 0,
        scheme: str | None = None,
        batch_size: int = 256,
        threads: int = 1,
    ) -> None:
        if k_best < 0 or batch_size < 1 or threads < 1:
            raise ConfigError("k_best must be >= 0, batch_size and threads >= 1")
        if scheme is not None:
            normalize_written_scheme(scheme)
        self.model = str(model)
        self.text_column = text_column
        self.id_column = id_column
        self.output_column = output_column
        self.k_best = k_best
        self.scheme = scheme
        self.batch_size = batch_size
        self.threads = threads

    def records(self, texts: list[Any], ids: list[Any] | None = None) -> list[dict[str, Any]]:
        """The records of `texts` (None counts as empty), ids `ids` (default: null)."""
        annotator = worker_annotator(
            self.model, self.batch_size, self.k_best, self.threads, self.scheme
        )
        texts = [_text(text, self.text_column) for text in texts]
        return annotator.records(texts, ids if ids is not None else [None] * len(texts))

    def annotations(self, texts: list[Any], ids: list[Any] | None = None) -> list[str]:
        """The records of `texts` as JSON strings (see `records`)."""
        return [encode_record(record) for record in self.records(texts, ids)]

    def __call__(self, batch: Any) -> Any:
        # Any mapping: `datasets.map(batched=True)` hands a LazyBatch, not a dict.
        if isinstance(batch, Mapping):
            texts = list(self._column(batch, self.text_column))
            ids = self._ids(batch)
            return {**batch, self.output_column: self.annotations(texts, ids)}
        module = type(batch).__module__.split(".")[0]
        if module == "pandas":
            texts = list(self._column(batch, self.text_column))
            result = batch.copy()
            result[self.output_column] = self.annotations(texts, self._ids(batch))
            return result
        if module == "pyarrow":
            import pyarrow as pa

            texts = self._column(batch, self.text_column).to_pylist()
            ids = None
            if self.id_column is not None:
                ids = self._column(batch, self.id_column).to_pylist()
            column = pa.array(self.annotations(texts, ids), pa.string())
            return batch.append_column(self.output_column, column)
        raise ConfigError(
            f"cannot annotate a {type(batch).__name__}: give a dict of columns, a pandas "
            "DataFrame or a pyarrow Table or RecordBatch"
        )

    def _ids(self, batch: Any) -> list[Any] | None:
        if self.id_column is None:
            return None
        return [plain_value(value) for value in self._column(batch, self.id_column)]

    @staticmethod
    def _column(batch: Any, name: str) -> Any:
        if isinstance(batch, Mapping):
            names = list(batch)
        elif hasattr(batch, "column_names"):  # pyarrow
            names = list(batch.column_names)
        else:  # pandas
            names = [str(column) for column in batch.columns]
        if name not in names:
            raise ConfigError(
                f"the batch has no column {name!r} (it has {', '.join(names) or 'none'}); "
                "name the text column with text_column="
            )
        return batch.column(name) if hasattr(batch, "column_names") else batch[name]

    def __repr__(self) -> str:
        return (
            f"BatchAnnotator(model={self.model!r}, text_column={self.text_column!r}, "
            f"k_best={self.k_best}, scheme={self.scheme!r}, threads={self.threads})"
        )


def _text(value: Any, column: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise ConfigError(f"column {column!r} holds a {type(value).__name__}, not text")


def plain_value(value: Any) -> Any:
    """numpy scalars → Python values, so ids serialize as JSON."""
    return value.item() if hasattr(value, "item") and not isinstance(value, str) else value
