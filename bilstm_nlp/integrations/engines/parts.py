"""An annotation run cut into parts for an engine: planned by the driver, each written by one task.

Sits on the annotation core. A part is a run of whole windows of one input (`jobs.read_windows`),
annotated by `workers.WindowEncoder` and written by `output.OutputRun` exactly as `annotate`
writes them, so the part files in order are the local run's JSONL output, byte for byte (at the
same thread count). The driver plans the parts (reading the inputs once, to cut them where a local
run's blocks end), keeps them in `OUTDIR/_manifest.json` with fingerprints of the inputs, the
model and the options, and hands the missing parts to an engine. A task writes its part to a
temporary file, fsyncs it and renames it into place, so a killed, retried or duplicated task never
leaves half a part; `_SUCCESS` is written once every part is there. A rerun into the same OUTDIR
with the same inputs, model and options does only the parts that are missing.

Everything a task receives (`PartTask`) is plain values: workers load the model themselves, once
per process, from its name or folder; no torch object is pickled.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...annotation import jobs as _jobs
from ...annotation.annotator import MAX_SENTENCE_TOKENS, check_output
from ...annotation.jobs import Job, Window, plan_jobs, read_windows
from ...annotation.output import (
    OutputRun,
    RunState,
    input_fingerprint,
    model_fingerprint,
    output_lock,
    write_errors,
)
from ...annotation.writers import make_writer
from ...decode import check_scheme
from ...errors import ConfigError, OutputError
from .batch import EngineOptions, worker_window_encoder

if TYPE_CHECKING:  # torch's: engines also run ONNX folders where torch is not installed
    from ...nn.model import Classifier, Tagger

MANIFEST = "_manifest.json"
SUCCESS = "_SUCCESS"
_MANIFEST_VERSION = 1
_TEMPORARY = ".tmp-"


@dataclass(frozen=True)
class Part:
    """A run of whole windows of one input.

    Attributes:
        index: its number; part files are named by it, in input order.
        job: the index of its input in the run.
        start_offset: the input byte it starts at (a line start).
        start_line: the number of the input line before it.
        end_offset: the input byte just past it.
        documents: the documents in it.
    """

    index: int
    job: int
    start_offset: int
    start_line: int
    end_offset: int
    documents: int


@dataclass(frozen=True)
class PartTask:
    """All a worker needs to write one part, as plain values.

    Attributes:
        model: a shipped model's name or a model folder (a path every worker can read).
        source: the input file (a path every worker can read).
        name: the input as given (records' ids are `name:line`).
        unit: `line`, `file` or `jsonl`.
        part: the part.
        window: documents per window, as planned.
        target: the part file to write.
        options: how to annotate.
    """

    model: str
    source: str
    name: str
    unit: str
    part: Part
    window: int
    target: str
    options: EngineOptions


@dataclass(frozen=True)
class PartResult:
    """What a task did: `documents`, `tokens` and `invalid` (documents with bad UTF-8 replaced)
    of the part; `written` False when the part file was there already (a retried task)."""

    index: int
    documents: int
    tokens: int
    invalid: int
    written: bool


@dataclass(frozen=True)
class Plan:
    """The parts of a run and the tasks still to do.

    Attributes:
        outdir: the output folder.
        parts: every part, in input order.
        tasks: the tasks of the parts whose files are missing.
    """

    outdir: Path
    parts: list[Part]
    tasks: list[PartTask]


def part_file(outdir: Path, index: int) -> Path:
    """The file of part `index`."""
    return outdir / f"part-{index:05d}.jsonl"


def _saved_options(options: EngineOptions) -> dict[str, Any]:
    saved = asdict(options) | {"max_sentence_tokens": MAX_SENTENCE_TOKENS}
    if saved["scheme"] is None:
        del saved["scheme"]  # a run saved before the option was there finishes as it was
    return saved


def plan_parts(
    jobs: Sequence[Job], partitions: int, options: EngineOptions
) -> tuple[list[Part], int]:
    """Cut the inputs into about `partitions` parts of whole windows.

    Returns:
        The parts in input order and the documents per window they were planned with.
    """
    documents = sum(_count_documents(job) for job in jobs)
    per_part = max(1, math.ceil(documents / max(partitions, 1)))
    block = _jobs.BLOCK_DOCUMENTS
    window = max(block, math.ceil(per_part / block) * block)
    parts: list[Part] = []
    for index, job in enumerate(jobs):
        start_offset = start_line = 0
        for window_ in _job_windows(job, index, (0, 0), window, options):
            if window_.piece is not None and not window_.piece.last:
                continue  # a long document's pieces stay in one part
            if window_.ids:
                count = 1 if window_.piece is not None else len(window_.ids)
                parts.append(
                    Part(
                        len(parts),
                        index,
                        start_offset,
                        start_line,
                        window_.end_offset,
                        count,
                    )
                )
            start_offset, start_line = window_.end_offset, window_.end_line
    return parts, window


def prepare(
    inputs: Sequence[str | Path],
    model_name: str,
    model: Tagger | Classifier,
    outdir: str | Path,
    options: EngineOptions,
    partitions: int,
) -> Plan:
    """Plan a run into `outdir` and record it there, or pick up the plan of an unfinished one.

    Raises:
        ConfigError: bad options, or `outdir` holding something else (another run's parts with
            other inputs, model or options; files that are not parts).
        InputFormatError: a missing input or a folder without matching files.
    """
    options.check()
    check_output(model.meta.is_classifier, "jsonl", options.k_best)
    check_scheme(model, options.scheme)
    if partitions < 1:
        raise ConfigError(f"--partitions must be at least 1, got {partitions}")
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise ConfigError(f"--output {outdir} is a file; an engine writes a folder of parts")
    jobs = plan_jobs(inputs, None, options.unit, options.glob, ".jsonl", None, written_to=outdir)
    fingerprint = {
        "version": _MANIFEST_VERSION,
        "model": model_fingerprint(model),
        "options": _saved_options(options),
        # Not where the output folder is: a moved folder, or one mounted elsewhere, resumes.
        "inputs": [
            {
                k: v
                for k, v in input_fingerprint(Path(job.source or ""), outdir).items()
                if k != "output"
            }
            for job in jobs
        ],
    }
    manifest_path = outdir / MANIFEST
    manifest = _read_manifest(manifest_path)
    if manifest is not None and {k: manifest.get(k) for k in fingerprint} != fingerprint:
        raise ConfigError(
            f"{outdir} holds the parts of another run (different inputs, model or options); "
            "choose a new --output folder or delete it"
        )
    if manifest is None:
        if outdir.is_dir() and any(outdir.iterdir()):
            raise ConfigError(
                f"{outdir} is not empty and holds no run's parts; choose a new folder"
            )
        parts, window = plan_parts(jobs, partitions, options)
        manifest = fingerprint | {
            "window": window,
            "block": _jobs.BLOCK_DOCUMENTS,
            "window_chars": _jobs.WINDOW_CHARS,
            "names": [job.name for job in jobs],
            "units": [job.unit for job in jobs],
            "parts": [asdict(part) for part in parts],
        }
        with write_errors(outdir, False):
            outdir.mkdir(parents=True, exist_ok=True)
            _write_atomically(manifest_path, (json.dumps(manifest, indent=1) + "\n").encode())
    parts = [Part(**part) for part in manifest["parts"]]
    window = manifest["window"]
    if manifest.get("block") != _jobs.BLOCK_DOCUMENTS or manifest.get("window_chars") != (
        _jobs.WINDOW_CHARS
    ):
        raise ConfigError(f"{outdir} was planned by another version; choose a new folder")
    for leftover in outdir.glob(f"part-*{_TEMPORARY}*"):
        with contextlib.suppress(OSError):
            leftover.unlink()  # a killed task's unfinished part
    tasks = [
        PartTask(
            model_name,
            str(Path(jobs[part.job].source or "").resolve()),
            jobs[part.job].name,
            jobs[part.job].unit,
            part,
            window,
            str(part_file(outdir, part.index).resolve()),
            options,
        )
        for part in parts
        if not part_file(outdir, part.index).is_file()
    ]
    return Plan(outdir, parts, tasks)


def finish(plan: Plan) -> None:
    """Check every part is there, then write `_SUCCESS`.

    Raises:
        OutputError: a part is missing (an engine reported success without writing it).
    """
    missing = [p.index for p in plan.parts if not part_file(plan.outdir, p.index).is_file()]
    if missing:
        raise OutputError(
            f"{len(missing)} parts were not written (first: {part_file(plan.outdir, missing[0])});"
            " rerun the same command to finish them",
            plan.outdir,
        )
    _write_atomically(plan.outdir / SUCCESS, b"")


@contextlib.contextmanager
def locked(outdir: str | Path) -> Iterator[None]:
    """One driver at a time per output folder (see `output.output_lock`)."""
    outdir = Path(outdir)
    outdir.parent.mkdir(parents=True, exist_ok=True)
    with write_errors(outdir, False), output_lock(outdir):
        yield


def run_part(task: PartTask) -> PartResult:
    """Annotate one part into its file; what every engine runs on its workers.

    Idempotent: a part whose file exists is left as it is, so a retried or duplicated task
    writes nothing twice.
    """
    part, target = task.part, Path(task.target)
    if target.is_file():
        return PartResult(part.index, part.documents, *_counts(target), written=False)

    encoder = worker_window_encoder(task.model, task.options)
    temporary = target.with_name(f"{target.name}{_TEMPORARY}{uuid.uuid4().hex}")
    job = Job(Path(task.source), task.name, temporary, task.unit)
    windows = _part_windows(
        _job_windows(job, 0, (part.start_offset, part.start_line), task.window, task.options),
        part,
    )
    out = OutputRun([job], make_writer("jsonl"), RunState(), None, None)
    results = (
        (window, *encoder(window.texts, window.ids, window.blocks, window.piece))
        for window in windows
    )
    try:
        out.write(results, None, _ignore_progress)  # type: ignore[arg-type]
        if out.state.documents != part.documents:
            raise OutputError(
                f"part {part.index} read {out.state.documents} documents where the plan has "
                f"{part.documents}: the input changed since the run was planned",
                task.source,
            )
        os.replace(temporary, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    _sync_folder(target.parent)
    return PartResult(part.index, out.state.documents, out.tokens, out.invalid, written=True)


def concatenated(outdir: str | Path) -> Iterator[bytes]:
    """The lines of a finished run's parts, in input order (for tests and small outputs)."""
    outdir = Path(outdir)
    manifest = _read_manifest(outdir / MANIFEST)
    if manifest is None:
        raise ConfigError(f"{outdir} holds no run's parts")
    for part in manifest["parts"]:
        with open(part_file(outdir, part["index"]), "rb") as handle:
            yield from handle


def _counts(part: Path) -> tuple[int, int]:
    """`(tokens, invalid)` of a written part, read back (for a task whose first run wrote it)."""
    tokens = invalid = 0
    with open(part, "rb") as handle:
        for line in handle:
            record = json.loads(line)
            tokens += len(record["tokens"])
            invalid += "\ufffd" in record["text"]
    return tokens, invalid


def _job_windows(
    job: Job, index: int, start: tuple[int, int], window: int, options: EngineOptions
) -> Iterator[Window]:
    windows = read_windows(
        [job],
        (0, *start),
        window,
        options.text_field,
        options.id_field,
        None,
        pieces=True,
    )
    for found in windows:
        yield replace(found, job=index) if index else found


def _part_windows(windows: Iterator[Window], part: Part) -> Iterator[Window]:
    """The windows up to the part's end, the last one marked so the output is closed."""
    for window in windows:
        ends_here = window.end_offset >= part.end_offset and (
            window.piece is None or window.piece.last
        )
        if ends_here:
            yield replace(window, last=True)
            return
        yield window


def _count_documents(job: Job) -> int:
    """Lines of an input (or 1 for a document per file): enough to size the parts."""
    if job.unit == "file":
        return 1
    assert job.source is not None
    count = 0
    last = b"\n"
    with open(job.source, "rb") as handle:
        while chunk := handle.read(1 << 20):
            count += chunk.count(b"\n")
            last = chunk
    return count + (not last.endswith(b"\n"))


def _read_manifest(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path} cannot be read ({error}); choose a new folder") from None
    if not isinstance(manifest, dict) or manifest.get("version") != _MANIFEST_VERSION:
        raise ConfigError(f"{path} is not a manifest this version writes; choose a new folder")
    return manifest


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f"{path.name}{_TEMPORARY}{uuid.uuid4().hex}")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    # The rename is durable once the folder's entry is on disk.
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _ignore_progress(window: Window, documents: int, tokens: int) -> None:
    pass
