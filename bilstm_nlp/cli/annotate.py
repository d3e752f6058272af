"""`bilstm-nlp annotate`: annotate files, folders or standard input into JSONL, CoNLL, DocBin,
HTML or text, streaming and resumable (`--resume`)."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import typer

from ..errors import ConfigError
from ._util import (
    Arg,
    Opt,
    check_threads,
    err_console,
    load_with_threads,
    setup_logging,
    user_errors,
)

logger = logging.getLogger("bilstm_nlp.integrations.engines")


def annotate_cli(
    inputs: list[str] = Arg(..., help="Text files, folders, or - for standard input"),
    model: str = Opt("ner", "--model", "-m", help="Shipped model name or model directory"),
    output: Path | None = Opt(
        None,
        "--output",
        "-o",
        help="Output file (one input file) or folder (mirrors the input tree); default: stdout",
    ),
    fmt: str = Opt("jsonl", "--format", "-f", help="jsonl, conll, docbin (.spacy), html or text"),
    unit: str | None = Opt(
        None,
        "--unit",
        "-u",
        help="line: a document per line (default); file: a document per file; "
        "jsonl: a JSON object per line (default for .jsonl)",
    ),
    glob: str | None = Opt(
        None, "--glob", help="Files to read in folders (default **/*.txt, **/*.jsonl for jsonl)"
    ),
    text_field: str = Opt("text", "--text-field", help="JSONL key holding the text"),
    id_field: str = Opt("id", "--id-field", help="JSONL key holding the document id"),
    k_best: int = Opt(0, "--k-best", "-k", help="Also the k best tag sequences (JSONL)"),
    scheme: str | None = Opt(
        None,
        "--scheme",
        help="Write tags in IOB1, IOB2, BIOES or BILOU, with each tag's probability as written "
        "(default: the training file's scheme; ner's is IOB1)",
    ),
    workers: int | None = Opt(
        None,
        "--workers",
        "-w",
        help="Worker processes (default 1; with --engine and no --address: the CPU count)",
    ),
    threads: int | None = Opt(
        None,
        "--threads",
        help="CPU threads per process, torch's or the ONNX session's (default 1; the output "
        "depends on it, not on -w)",
    ),
    batch_size: int = Opt(256, "--batch-size", help="Sentences per batch"),
    window: int | None = Opt(
        None,
        "--window",
        help="Documents per window, in whole blocks of 1,000 (the unit of resuming; default "
        "1000); not with --engine, which resumes by parts",
    ),
    resume: bool = Opt(False, "--resume", help="Finish an interrupted run into the same output"),
    progress: bool | None = Opt(
        None, "--progress/--no-progress", help="Progress bar (default: when stderr is a terminal)"
    ),
    engine: str = Opt(
        "local",
        "--engine",
        "-e",
        help="local (this machine), or ray, spark or dask: JSONL part files into the --output "
        "folder (rerun the same command to finish a failed job)",
    ),
    address: str | None = Opt(
        None,
        "--address",
        help="With --engine: a cluster to join (ray://host:10001, spark://host:7077, "
        "tcp://scheduler:8786); default: a local instance",
    ),
    partitions: int | None = Opt(
        None, "--partitions", help="With --engine: about how many parts (default 4 per worker)"
    ),
    verbose: bool = Opt(False, "--verbose", "-v", help="Debug logging"),
) -> None:
    """Annotate INPUTS with a trained model; one record per document, in input order.

    Without --resume an existing output is overwritten; OUTPUT.progress.json records how far a
    run got, so a killed run can be finished with --resume.
    """
    setup_logging(verbose)
    show_progress = sys.stderr.isatty() if progress is None else progress
    if workers is not None and workers < 1:
        with user_errors():
            raise ConfigError(f"--workers must be at least 1, got {workers}")
    if engine != "local" or address is not None or partitions is not None:
        with user_errors(), interruptible(output, resumed_by="rerun the same command"):
            _annotate_on_engine(
                inputs,
                model,
                output,
                engine,
                address,
                partitions,
                workers,
                EngineSettings(
                    fmt, unit, glob, text_field, id_field, k_best, scheme, batch_size, threads
                ),
                window,
                resume,
            )
        return
    workers = workers or 1
    with user_errors(), stdout_may_close(), interruptible(output):
        from ..annotation.files import AnnotateOptions, annotate_paths

        check_threads(threads)
        # One thread by default: the same count as each worker of -w N, so the same output.
        loaded = load_with_threads(model, (threads or 1) if workers == 1 else None)
        options = AnnotateOptions(
            fmt=fmt,
            unit=unit,
            glob=glob,
            text_field=text_field,
            id_field=id_field,
            k_best=k_best,
            scheme=scheme,
            batch_size=batch_size,
            workers=workers,
            threads=threads,
            window=AnnotateOptions.window if window is None else window,
            resume=resume,
        )
        stats = annotate_paths(inputs, loaded, output, options, show_progress=show_progress)
    speed = stats.tokens / max(stats.seconds, 1e-9)
    message = (
        f"{stats.documents:,} documents, {stats.tokens:,} tokens in {stats.seconds:.1f} s "
        f"({speed:,.0f} tokens/s)"
    )
    if stats.resumed_documents:
        message += f"; {stats.resumed_documents:,} documents were done before the resume"
    err_console.print(message, markup=False, highlight=False, soft_wrap=True)


class EngineSettings(NamedTuple):
    fmt: str
    unit: str | None
    glob: str | None
    text_field: str
    id_field: str
    k_best: int
    scheme: str | None
    batch_size: int
    threads: int | None


def _annotate_on_engine(
    inputs: list[str],
    model: str,
    output: Path | None,
    engine: str,
    address: str | None,
    partitions: int | None,
    workers: int | None,
    settings: EngineSettings,
    window: int | None,
    resume: bool,
) -> None:
    from ..integrations.engines import ENGINES, EngineOptions, annotate_on_engine

    if engine == "local":
        raise ConfigError("--address and --partitions go with --engine ray, spark or dask")
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    if output is None:
        raise ConfigError(f"--engine {engine} writes a folder of part files: give --output DIR")
    if settings.fmt != "jsonl":
        raise ConfigError(f"--engine {engine} writes JSONL parts; leave out --format")
    if "-" in inputs:
        raise ConfigError(f"--engine {engine} reads files its workers can open, not stdin")
    if window is not None:
        raise ConfigError(
            f"--window is local annotation's unit of resuming; --engine {engine} works and "
            "resumes by parts (--partitions)"
        )
    check_threads(settings.threads)
    del resume  # a rerun into the same folder always finishes what is missing
    options = EngineOptions(
        unit=settings.unit,
        glob=settings.glob,
        text_field=settings.text_field,
        id_field=settings.id_field,
        k_best=settings.k_best,
        scheme=settings.scheme,
        batch_size=settings.batch_size,
        threads=settings.threads or 1,
    )
    stats = annotate_on_engine(
        inputs,
        model,
        output,
        engine=engine,
        options=options,
        address=address,
        partitions=partitions,
        workers=workers or os.cpu_count() or 1,
    )
    speed = stats.tokens / max(stats.seconds, 1e-9)
    message = (
        f"{stats.parts:,} parts, {stats.documents:,} documents, {stats.tokens:,} tokens in "
        f"{stats.seconds:.1f} s ({speed:,.0f} tokens/s) on {engine}"
    )
    if stats.parts_done_before:
        message += f"; {stats.parts_done_before:,} parts were done before"
    if stats.invalid_utf8_lines:
        logger.warning(
            "%d input lines were not valid UTF-8; their bad bytes were replaced by U+FFFD",
            stats.invalid_utf8_lines,
        )
    err_console.print(message, markup=False, highlight=False, soft_wrap=True)


@contextmanager
def interruptible(output: Path | None, resumed_by: str = "rerun with --resume") -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM stop the run cleanly: workers are stopped, what was fsynced is
    kept, and one line says how to finish (exit code 130 or 143, as shells report signals)."""

    def terminate(signum, frame):
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    except (KeyboardInterrupt, _Terminated) as stop:
        hint = f"; {resumed_by} to finish {output}" if output is not None else ""
        name = "SIGTERM" if isinstance(stop, _Terminated) else "Ctrl-C"
        err_console.print(
            f"error: stopped by {name}{hint}", markup=False, highlight=False, soft_wrap=True
        )
        raise typer.Exit(143 if isinstance(stop, _Terminated) else 130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C (not caught by `except Exception`)."""


@contextmanager
def stdout_may_close() -> Iterator[None]:
    """A reader that stops early (`| head`) ends the command quietly, as Unix tools do."""
    try:
        yield
    except BrokenPipeError:
        # Python would complain again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(141) from None
