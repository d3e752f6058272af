"""Batch annotation of files, folders and standard input: streaming, in input order, resumable.

The entry point of a run, `annotate_paths(inputs, model, output, options)`, puts the stages of
this package together: `jobs` (inputs → jobs → windows of whole blocks, read by
`corpus/readers/documents.py`), `workers` (windows → encoded records through an `Annotator`, in
this process or a pool of worker processes), `output` (records → files, fsynced, with a progress
file to resume from and a lock). The same input, model, options and thread count give the same
bytes, whatever `workers` and `window`.

Long documents (more than 1,000,000 bytes) are read, annotated and written in pieces of about
100,000 bytes cut at white space (a sentence never spans two pieces), so memory does not grow with
a document's length; the JSONL, CoNLL and text writers give the bytes of the whole record. DocBin,
HTML and classifiers need a document whole and refuse one that long.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ..corpus.readers.documents import UNITS
from ..decode import check_scheme, is_onnx
from ..errors import ConfigError, InputFormatError, OutputInUse
from ..progress import progress_bar
from . import jobs as _jobs
from .annotator import MAX_SENTENCE_TOKENS, check_output
from .jobs import Job, Window, plan_jobs, read_windows
from .output import (
    PROGRESS_SUFFIX,
    OutputRun,
    RunState,
    beside_output,
    check_not_an_input,
    check_output_folder,
    input_fingerprint,
    load_state,
    model_fingerprint,
    output_lock,
    save_state,
    write_errors,
)
from .workers import encode_windows
from .writers import make_writer

if TYPE_CHECKING:
    from ..nn.model import Classifier, Tagger

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnnotateOptions:
    """How a run annotates and writes; the same for every caller (CLI, engines, services).

    Attributes:
        fmt: `jsonl`, `conll`, `docbin`, `html` or `text` (see `writers`).
        unit: `line` (a document per line; the default), `file` (a document per file) or `jsonl`
            (a JSON object per line with the text in `text_field`; the default for `.jsonl`).
        glob: the files of a folder to read; default `**/*.txt` (`**/*.jsonl` with unit `jsonl`).
        text_field: JSONL key of the text.
        id_field: JSONL key of the document id (default id: `path:line`).
        k_best: also the k best tag sequences per sentence (JSONL).
        scheme: the scheme to write tags in, `IOB1`, `IOB2`, `BIOES` or `BILOU` (taggers
            with a scheme; see `Annotator`); None: the training file's.
        batch_size: sentences per model batch.
        workers: processes annotating windows in parallel (1: this process). The output does
            not depend on it.
        threads: torch threads per worker process (default 1). With `workers=1` this process's
            threads are the caller's to set; the output is the same for the same thread count
            (sums split over threads round differently).
        window: documents read and written together, rounded up to whole blocks of 1,000
            documents; the unit of resuming. The output does not depend on it.
        resume: finish an interrupted run into the same output (see `output`).
    """

    fmt: str = "jsonl"
    unit: str | None = None
    glob: str | None = None
    text_field: str = "text"
    id_field: str = "id"
    k_best: int = 0
    scheme: str | None = None
    batch_size: int = 256
    workers: int = 1
    threads: int | None = None
    window: int = 1000
    resume: bool = False

    def check(self) -> None:
        """Raises `ConfigError` for values out of range."""
        if self.unit is not None and self.unit not in UNITS:
            raise ConfigError(f"unknown unit {self.unit!r}; choose from {', '.join(UNITS)}")
        for option, value, low in (
            ("--window", self.window, 1),
            ("--workers", self.workers, 1),
            ("--batch-size", self.batch_size, 1),
            ("--k-best", self.k_best, 0),
        ):
            if value < low:
                raise ConfigError(f"{option} must be at least {low}, got {value}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")


@dataclass(frozen=True)
class AnnotateStats:
    """What `annotate_paths` did.

    Attributes:
        documents: documents annotated by this call.
        tokens: their tokens.
        invalid_utf8_lines: documents read with invalid UTF-8 (bad bytes replaced by U+FFFD).
        seconds: wall time of this call.
        resumed_documents: documents already written by the interrupted run this call resumed.
    """

    documents: int
    tokens: int
    invalid_utf8_lines: int
    seconds: float
    resumed_documents: int = 0


def annotate_paths(
    inputs: Sequence[str | Path],
    model: Tagger | Classifier,
    output: str | Path | None = None,
    options: AnnotateOptions = AnnotateOptions(),  # noqa: B008 (frozen: safe to share)
    *,
    show_progress: bool = False,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
) -> AnnotateStats:
    """Annotate files, folders or standard input, streaming, in input order, resumably.

    Args:
        inputs: files, folders (their files matching `options.glob`, recursively, in sorted
            order), or `["-"]` for standard input.
        model: a loaded tagger or classifier.
        output: for one input file, the output file; otherwise a folder mirroring the inputs'
            tree (one output file per input, suffix of the format); None: standard output.
        options: how to annotate and write.
        show_progress: a progress bar on stderr (documents, tokens/s, time left).
        stdin: where `-` reads (default: `sys.stdin.buffer`).
        stdout: where records go without `output` (default: `sys.stdout.buffer`).
    Returns:
        The counts of this call.
    Raises:
        InputFormatError: a missing input, a bad JSONL line (file and line).
        ConfigError: inconsistent options, or an output that is one of the inputs.
        ResumeError: a resume with a different model, options, thread count or inputs.
        OutputError: an output could not be written (what was written before is kept), its
            folder is missing, or another run is writing it.
    """
    started = time.perf_counter()
    options.check()
    writer = make_writer(options.fmt, model.meta.task)
    check_output(model.meta.is_classifier, options.fmt, options.k_best)
    check_scheme(model, options.scheme)
    if any(str(given) == "-" for given in inputs):
        stdin = stdin or _standard_input()
    jobs = plan_jobs(inputs, output, options.unit, options.glob, writer.extension, stdin)
    check_not_an_input(jobs, output, stdin)
    # Thread counts change the float rounding of the model's sums; --workers does not.
    threads = (options.threads or 1) if options.workers > 1 else _threads_of(model)
    _warn_if_oversubscribed(options.workers, threads)
    saved_options = {
        "format": options.fmt,
        "units": [job.unit for job in jobs],
        "k_best": options.k_best,
        # only when asked for: a run saved before the option resumes as it was
        **({"scheme": options.scheme} if options.scheme is not None else {}),
        "batch_size": options.batch_size,
        "block": _jobs.BLOCK_DOCUMENTS,
        "window": options.window,
        "window_chars": _jobs.WINDOW_CHARS,
        "max_sentence_tokens": MAX_SENTENCE_TOKENS,
        "text_field": options.text_field,
        "id_field": options.id_field,
        "threads": threads,
    }
    run = _Run(jobs, model, options, threads, stdin, stdout or sys.stdout.buffer, show_progress)
    if output is None:
        if options.resume:
            raise ConfigError("only runs from input files into --output can be resumed")
        with write_errors("<stdout>", False):
            return run(RunState(), None, None, started)
    check_output_folder(Path(output))
    resumable = jobs[0].source is not None
    with write_errors(output, resumable), output_lock(Path(output)):
        progress_path = None
        fingerprint = None
        state = RunState()
        if resumable:
            progress_path = beside_output(output, PROGRESS_SUFFIX)
            fingerprint = {
                "model": model_fingerprint(model),
                "options": saved_options,
                "inputs": [input_fingerprint(job.source, job.target) for job in jobs],
            }
            if options.resume:
                state = load_state(progress_path, fingerprint)
            save_state(progress_path, fingerprint, state)
        elif options.resume:
            raise ConfigError("only runs from input files into --output can be resumed")
        if state.complete:
            return AnnotateStats(0, 0, 0, time.perf_counter() - started, state.documents)
        try:
            return run(state, progress_path, fingerprint, started)
        except (InputFormatError, ConfigError, OutputInUse):
            # A fresh run its input stopped, or another run's lock on a file it was to write,
            # before any record was written has nothing to resume: it leaves no progress file.
            if progress_path is not None and not options.resume and state.documents == 0:
                progress_path.unlink(missing_ok=True)
            raise


def _warn_if_oversubscribed(workers: int, threads: int) -> None:
    """More model threads than CPUs take turns on the cores, each waiting for the others: the
    run is slower than with fewer."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cpus and workers * threads > cpus:
        faster = f"-w {min(workers, cpus)} --threads 1" if workers > 1 else "fewer threads"
        logger.warning(
            "%d model threads (%d workers × %d threads) on %d CPUs take turns on the cores; "
            "%s is faster (the output depends on the threads per worker, not on the workers)",
            workers * threads,
            workers,
            threads,
            cpus,
            faster,
        )


def _threads_of(model: Tagger | Classifier) -> int:
    """The threads the model computes with in this process: its ONNX session's intra-op threads
    (0: onnxruntime's default), or torch's global setting."""
    if is_onnx(model):
        return model.threads
    import torch

    return torch.get_num_threads()


@dataclass(frozen=True)
class _Run:
    """Windows read, encoded and written, from a state on."""

    jobs: list[Job]
    model: Tagger | Classifier
    options: AnnotateOptions
    threads: int
    stdin: BinaryIO | None
    stdout: BinaryIO
    show_progress: bool

    def __call__(
        self,
        state: RunState,
        progress_path: Path | None,
        fingerprint: dict[str, Any] | None,
        started: float,
    ) -> AnnotateStats:
        options = self.options
        resumed = state.documents
        writer = make_writer(options.fmt, self.model.meta.task)
        out = OutputRun(self.jobs, writer, state, progress_path, fingerprint)
        pieces = not self.model.meta.is_classifier and hasattr(writer, "stream")
        windows = read_windows(
            self.jobs,
            (state.job, state.input_offset, state.line),
            options.window,
            options.text_field,
            options.id_field,
            self.stdin,
            pieces,
        )
        results = encode_windows(
            windows,
            self.model,
            options.fmt,
            options.batch_size,
            options.k_best,
            options.workers,
            self.threads,
            options.scheme,
        )
        # Closing the results first stops the workers (a failed write, Ctrl-C, SIGTERM).
        with (
            contextlib.closing(results),
            _RunProgress(self.show_progress, self.jobs, state) as advance,
        ):
            out.write(results, self.stdout, advance)
        if out.invalid:
            logger.warning(
                "%d input lines were not valid UTF-8; their bad bytes were replaced by U+FFFD",
                out.invalid,
            )
        return AnnotateStats(
            out.state.documents - resumed,
            out.tokens,
            out.invalid,
            time.perf_counter() - started,
            resumed_documents=resumed,
        )


def _standard_input() -> BinaryIO:
    if sys.stdin is None:  # started with standard input closed (`<&-`)
        raise InputFormatError("standard input is closed; give input files or pipe text in", "-")
    return sys.stdin.buffer


class _RunProgress:
    """The run's bar: input bytes (so a time left), documents, tokens/s; or nothing."""

    def __init__(self, enabled: bool, jobs: list[Job], state: RunState) -> None:
        self.enabled = enabled
        self.progress: Any = None
        self.offsets: dict[int, int] = {state.job: state.input_offset}
        sizes = [job.source.stat().st_size if job.source else None for job in jobs]
        self.total = None if None in sizes else sum(sizes)  # type: ignore[arg-type]
        self.done = sum(s or 0 for s in sizes[: state.job]) + state.input_offset
        self.documents = 0
        self.tokens = 0
        self.started = time.perf_counter()

    def __enter__(self) -> _RunProgress:
        if self.enabled:
            self.progress = progress_bar(
                "Annotating",
                self.total,
                detail="{task.fields[documents]} documents, {task.fields[speed]} tokens/s",
                completed=self.done,
                documents=0,
                speed=0,
            )
        return self

    def __call__(self, window: Window, documents: int, tokens: int) -> None:
        read = window.end_offset - self.offsets.get(window.job, 0)
        self.offsets[window.job] = window.end_offset
        self.documents += documents
        self.tokens += tokens
        if self.progress is not None:
            speed = int(self.tokens / max(time.perf_counter() - self.started, 1e-9))
            self.progress.update(
                self.progress.task_ids[0],
                advance=read,
                documents=f"{self.documents:,}",
                speed=f"{speed:,}",
            )

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
