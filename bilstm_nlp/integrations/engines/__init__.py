"""Annotation beyond one machine: Ray, Spark and Dask, and `datasets.map`.

Two ways in, both on the annotation core:
- `BatchAnnotator` (batch.py): a picklable callable that adds each text's JSONL record to a batch
  of columns; map it with Ray Data, Spark, Dask or `datasets` (adapters in ray_data.py, spark.py,
  dask.py).
- `annotate_on_engine` (here): `bilstm-nlp annotate --engine`, files in, a folder of part files
  out, planned and resumed by parts.py, run by a runner of runners.py.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .batch import BatchAnnotator, EngineOptions, portable_model
from .parts import PartResult, finish, locked, prepare
from .runners import ENGINES, Runner, runner_for

__all__ = ["ENGINES", "BatchAnnotator", "EngineOptions", "EngineStats", "annotate_on_engine"]


@dataclass(frozen=True)
class EngineStats:
    """What `annotate_on_engine` did: parts and documents written by this call (`parts`,
    `documents`, `tokens`), parts found done by an earlier call (`parts_done_before`), documents
    with bad UTF-8 replaced (`invalid_utf8_lines`), and wall time (`seconds`)."""

    parts: int
    documents: int
    tokens: int
    parts_done_before: int
    invalid_utf8_lines: int
    seconds: float


def annotate_on_engine(
    inputs: Sequence[str | Path],
    model: str,
    outdir: str | Path,
    *,
    engine: str,
    options: EngineOptions = EngineOptions(),  # noqa: B008 (frozen: safe to share)
    address: str | None = None,
    partitions: int | None = None,
    workers: int = 2,
    runner: Runner | None = None,
) -> EngineStats:
    """Annotate files or folders into `outdir/part-NNNNN.jsonl` on an engine.

    The parts in order equal `annotate -f jsonl` on the same inputs (records keep their ids:
    `file:line` or the JSONL id field). Rerun the same call to finish a failed job: only the
    missing parts are done.

    Args:
        inputs: files or folders (their files matching `options.glob`), as `annotate` reads them;
            every worker must be able to read them at the same paths.
        model: a shipped model's name or a model folder every worker can read.
        outdir: the output folder (new, or an unfinished run's).
        engine: `ray`, `spark` or `dask`.
        options: how to annotate.
        address: a cluster to join; None starts a local instance of `workers` processes.
        partitions: about how many parts (default: 4 per worker).
        workers: local worker processes (without `address`).
        runner: run the tasks with this instead of `engine`'s runner (it must be a context
            manager, as `runners.Runner`).
    Raises:
        ConfigError: an unknown engine, a missing extra, an unreachable address, bad options, or
            an `outdir` holding something else.
        BilstmNlpError: the engine failed (the parts written are kept).
    """
    from ...serialize import load_model

    started = time.perf_counter()
    runner = runner or runner_for(engine, address, workers)
    loaded = load_model(model)
    model = portable_model(model)  # what workers elsewhere load: a shipped name, or a folder
    with locked(outdir):
        plan = prepare(
            inputs,
            model,
            loaded,
            outdir,
            options,
            4 * workers if partitions is None else partitions,
        )
        del loaded
        results: list[PartResult] = []
        if plan.tasks:
            with runner as run:
                results = run(plan.tasks)
        finish(plan)
    # Every task of the plan ended with its part written in this call (a task that found its
    # part done was a retry of one that wrote it and died before answering).
    return EngineStats(
        parts=len(plan.tasks),
        documents=sum(task.part.documents for task in plan.tasks),
        tokens=sum(r.tokens for r in results),
        parts_done_before=len(plan.parts) - len(plan.tasks),
        invalid_utf8_lines=sum(r.invalid for r in results),
        seconds=time.perf_counter() - started,
    )
