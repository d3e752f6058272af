"""Batch annotation of files, folders and standard input: streaming, workers, resumable.

Sits after `annotate` (which turns texts into `Annotation`s) and uses the writers.
`annotate_paths` streams inputs through an `Annotator`. Documents (lines, files or JSONL records)
are cut into blocks by the input alone: 1,000 documents, or fewer when they pass 1,000,000
characters, counted from the start of each file. Each block is tokenized and batched on its own,
so which sentences share a model batch (and with it every float the model sums) never depends on
`--window` or `--workers`. A window is a run of whole blocks (at least `window` documents); windows
run in this process or in worker processes (a spawn `ProcessPoolExecutor`, about 2 windows per
worker in flight, one torch thread each by default), and records are written in input order. The
same input, model, options and thread count give the same bytes, whatever `--workers` and
`--window`. Workers die with the process that started them (Linux's parent-death signal, else a
watchdog thread), even when it is killed with SIGKILL.

Resuming: after each window of a streaming format (JSONL, CoNLL, text) the output is flushed and
fsynced, then `OUT.progress.json` is replaced atomically with the input and output byte offsets
reached, the counts so far, and fingerprints of the inputs (paths, sizes, mtimes, SHA-256 of all
their bytes), the model (SHA-256 of its files) and the options (thread count included).
`resume=True` checks the fingerprints (any difference is a `ResumeError`), truncates the output to
the recorded offset (a record half-written by a killed run goes) and reads on from the recorded
input offset: the final output equals an uninterrupted run's byte for byte. DocBin and HTML files
are written whole, to a `.part` file that replaces the output when its input is done; a resume
redoes the unfinished one. Without `resume`, outputs are overwritten.

Long documents: one of more than 1,000,000 bytes (a line, a file, a JSONL text) is read, annotated
and written in pieces of about 100,000 bytes cut at white space (a sentence never spans two
pieces), so memory does not grow with a document's length; the JSONL, CoNLL and text writers
give the bytes of the whole record (JSONL keeps the tokens, sentences and spans in temporary files
until the text is written). DocBin, HTML and classifiers need a document whole and refuse one
that long. A JSONL line is parsed whole, so there memory grows with the line (a few bytes per
character), not with its annotation.

Safety: an output that is an input under another name (a hard link, a symlink, standard input
redirected from it) is refused before anything is opened for writing, compared by device and
inode; a run holds an exclusive lock (`OUT.lock`) while it writes, so a second run into the same
output is refused; write errors (disk full, read-only, no permission) are one `OutputError`.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import json
import logging
import math
import os
import signal
import stat
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, BinaryIO

import torch

from ..errors import BilstmNlpError, ConfigError, InputFormatError, OutputError, ResumeError
from ..nn.model import Classifier, Tagger
from ..serialize import save_model
from .annotator import MAX_SENTENCE_TOKENS, Annotator
from .resume import (
    LOCK_SUFFIX,
    PROGRESS_SUFFIX,
    RunState,
    input_fingerprint,
    load_state,
    model_fingerprint,
    output_lock,
    save_state,
)
from .writers import Writer, make_writer

logger = logging.getLogger(__name__)

UNITS = ("line", "file", "jsonl")
_WINDOW_CHARS = 1_000_000
# A longer document (line, file or JSONL text) is read, annotated and written in pieces of about
# _PIECE_BYTES, cut at white space: memory for a piece, whatever the document's length.
_LONG_DOCUMENT_BYTES = 1_000_000
_PIECE_BYTES = 100_000
_BLOCK_DOCUMENTS = 1000
_BOM = b"\xef\xbb\xbf"


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


@dataclass(frozen=True)
class _Job:
    """One input and where its records go."""

    source: Path | None  # None: standard input
    name: str  # the input as given (ids are `name:line`), or "<stdin>"
    target: Path | None  # None: standard output
    unit: str


@dataclass(frozen=True)
class _Piece:
    """Where a piece of a long document sits in it."""

    start: int  # the document's character offset where the piece starts
    first: bool
    last: bool


@dataclass
class _Window:
    job: int
    ids: list[Any]
    texts: list[str]
    blocks: list[int]  # documents per block, in order: each block is batched on its own
    end_offset: int  # input bytes read once this window is done
    end_line: int
    invalid: int
    last: bool  # the job's final window (maybe empty)
    piece: _Piece | None = None  # a piece of a long document: its one text


def annotate_paths(
    inputs: Sequence[str | Path],
    model: Tagger | Classifier,
    output: str | Path | None = None,
    *,
    unit: str | None = None,
    fmt: str = "jsonl",
    glob: str | None = None,
    text_field: str = "text",
    id_field: str = "id",
    workers: int = 1,
    threads: int | None = None,
    resume: bool = False,
    k_best: int = 0,
    batch_size: int = 256,
    window: int = 1000,
    show_progress: bool = False,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
) -> AnnotateStats:
    """Annotate files, folders or standard input, streaming, in input order, resumably.

    Args:
        inputs: files, folders (their files matching `glob`, recursively, in sorted order), or
            `["-"]` for standard input.
        model: a loaded tagger or classifier.
        output: for one input file, the output file; otherwise a folder mirroring the inputs'
            tree (one output file per input, suffix of the format); None: standard output.
        unit: `line` (a document per line; the default), `file` (a document per file) or `jsonl`
            (a JSON object per line with the text in `text_field`; the default for `.jsonl`).
        fmt: `jsonl`, `conll`, `docbin`, `html` or `text` (see `writers`).
        glob: the files of a folder to read; default `**/*.txt` (`**/*.jsonl` with unit `jsonl`).
        text_field: JSONL key of the text.
        id_field: JSONL key of the document id (default id: `path:line`).
        workers: processes annotating windows in parallel (1: this process). The output does
            not depend on it.
        threads: torch threads per worker process (default 1). With `workers=1` this process's
            threads are the caller's to set; the output is the same for the same thread count
            (sums split over threads round differently).
        resume: finish an interrupted run into the same output (see the module docstring).
        k_best: also the k best tag sequences per sentence (JSONL).
        batch_size: sentences per model batch.
        window: documents read and written together, rounded up to whole blocks of 1,000
            documents; the unit of resuming. The output does not depend on it.
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
    if unit is not None and unit not in UNITS:
        raise ConfigError(f"unknown unit {unit!r}; choose from {', '.join(UNITS)}")
    if window < 1 or workers < 1 or batch_size < 1 or k_best < 0:
        raise ConfigError("window, workers and batch_size must be >= 1, k_best >= 0")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    writer = _writer_for(fmt, model, k_best)
    if any(str(given) == "-" for given in inputs):
        stdin = stdin or _standard_input()
    jobs = _plan_jobs(inputs, output, unit, glob, writer.extension, stdin)
    options = {
        "format": fmt,
        "units": [job.unit for job in jobs],
        "k_best": k_best,
        "batch_size": batch_size,
        "block": _BLOCK_DOCUMENTS,
        "window": window,
        "window_chars": _WINDOW_CHARS,
        "max_sentence_tokens": MAX_SENTENCE_TOKENS,
        "text_field": text_field,
        "id_field": id_field,
        # Thread counts change the float rounding of the model's sums; --workers does not.
        "threads": (threads or 1) if workers > 1 else torch.get_num_threads(),
    }
    annotate = functools.partial(
        _annotate,
        jobs,
        model,
        writer,
        options,
        workers=workers,
        window=window,
        text_field=text_field,
        id_field=id_field,
        stdin=stdin,
        stdout=stdout or sys.stdout.buffer,
        show_progress=show_progress,
        started=started,
    )
    if output is None:
        if resume:
            raise ConfigError("only runs from input files into --output can be resumed")
        with _write_errors("<stdout>", False):
            return annotate(RunState(), None, None)
    _check_output_folder(Path(output))
    resumable = jobs[0].source is not None
    with _write_errors(output, resumable), output_lock(Path(output)):
        progress_path = None
        fingerprint = None
        state = RunState()
        if resumable:
            progress_path = Path(str(output) + PROGRESS_SUFFIX)
            fingerprint = {
                "model": model_fingerprint(model),
                "options": options,
                "inputs": [input_fingerprint(job.source, job.target) for job in jobs],
            }
            if resume:
                state = load_state(progress_path, fingerprint)
            save_state(progress_path, fingerprint, state)
        elif resume:
            raise ConfigError("only runs from input files into --output can be resumed")
        if state.complete:
            return AnnotateStats(0, 0, 0, time.perf_counter() - started, state.documents)
        return annotate(state, progress_path, fingerprint)


def _annotate(
    jobs: list[_Job],
    model: Tagger | Classifier,
    writer: Writer,
    options: dict[str, Any],
    state: RunState,
    progress_path: Path | None,
    fingerprint: dict[str, Any] | None,
    *,
    workers: int,
    window: int,
    text_field: str,
    id_field: str,
    stdin: BinaryIO | None,
    stdout: BinaryIO,
    show_progress: bool,
    started: float,
) -> AnnotateStats:
    resumed = state.documents
    run = _Run(jobs, writer, state, progress_path, fingerprint)
    streams = isinstance(model, Tagger) and hasattr(writer, "stream")
    windows = _windows(jobs, state, window, text_field, id_field, stdin, streams)
    results = _annotate_windows(
        windows,
        model,
        options["format"],
        workers,
        options["threads"],
        {"batch_size": options["batch_size"], "k_best": options["k_best"]},
    )
    # Closing the results first stops the workers (a failed write, Ctrl-C, SIGTERM).
    with contextlib.closing(results), _ProgressBar(show_progress, jobs, state) as bar:
        run.write(results, stdout, bar)
    documents = run.state.documents - resumed
    invalid = run.invalid
    if invalid:
        logger.warning(
            "%d input lines were not valid UTF-8; their bad bytes were replaced by U+FFFD", invalid
        )
    return AnnotateStats(
        documents, run.tokens, invalid, time.perf_counter() - started, resumed_documents=resumed
    )


def _standard_input() -> BinaryIO:
    if sys.stdin is None:  # started with standard input closed (`<&-`)
        raise InputFormatError("standard input is closed; give input files or pipe text in", "-")
    return sys.stdin.buffer


def _check_output_folder(output: Path) -> None:
    folder = output.absolute().parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise OutputError(f"the folder of --output {what}; create it first", folder)


@contextlib.contextmanager
def _write_errors(output: str | Path, resumable: bool) -> Iterator[None]:
    """Disk full, permissions, read-only file systems, I/O errors: one `OutputError`; what was
    fsynced is kept and --resume finishes."""
    try:
        yield
    except BrokenPipeError:
        raise  # the reader went away (`| head`): the CLI ends quietly
    except OSError as error:
        where = error.filename or output
        hint = "; fix it and rerun with --resume" if resumable else ""
        raise OutputError(f"cannot write: {error.strerror or error}{hint}", where) from None


def _plan_jobs(
    inputs: Sequence[str | Path],
    output: str | Path | None,
    unit: str | None,
    glob: str | None,
    extension: str,
    stdin: BinaryIO | None,
) -> list[_Job]:
    if not inputs:
        raise ConfigError("no input given")
    if any(str(given) == "-" for given in inputs):
        if len(inputs) > 1:
            raise ConfigError("'-' (standard input) cannot be combined with other inputs")
        jobs = [_Job(None, "<stdin>", Path(output) if output else None, unit or "line")]
        _check_not_an_input(jobs, output, stdin)
        return jobs
    files: list[tuple[Path, Path]] = []  # (input file, output path relative to the folder)
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            pattern = glob or ("**/*.jsonl" if unit == "jsonl" else "**/*.txt")
            found = sorted(p for p in path.glob(pattern) if p.is_file())
            if not found:
                raise InputFormatError(f"no files match {pattern!r} in this folder", path)
            prefix = Path(path.resolve().name) if len(inputs) > 1 else Path()
            files.extend((p, prefix / p.relative_to(path)) for p in found)
        elif path.is_file():
            files.append((path, Path(path.name)))
        else:
            raise InputFormatError("no such file or folder", path)
    single = len(inputs) == 1 and len(files) == 1 and Path(inputs[0]).is_file()
    jobs = []
    for source, relative in files:
        job_unit = unit or ("jsonl" if source.suffix == ".jsonl" else "line")
        target = None
        if output is not None:
            out = Path(output)
            if single and not out.is_dir():
                target = out
            else:
                if out.is_file():
                    raise ConfigError(f"--output {out} is a file; several inputs need a folder")
                target = out / relative.with_suffix(extension)
        jobs.append(_Job(source, str(source), target, job_unit))
    targets = [job.target.resolve() for job in jobs if job.target is not None]
    if len(set(targets)) != len(targets):
        raise ConfigError("two inputs would write the same output file; give them one folder")
    _check_not_an_input(jobs, output, stdin)
    return jobs


def _check_not_an_input(
    jobs: list[_Job], output: str | Path | None, stdin: BinaryIO | None
) -> None:
    """Refuse a run whose output files (or progress, lock and part files) are an input: compared
    by device and inode, so a hard link, a symlink or standard input redirected from the output
    file is seen too. Runs before anything is opened for writing."""
    if output is None:
        return
    inputs: dict[tuple[int, int], str] = {}
    for job in jobs:
        if job.source is not None:
            inputs[_file_id(job.source.stat())] = job.name
        elif stdin is not None:
            try:
                status = os.fstat(stdin.fileno())
            except (OSError, ValueError):  # not a real file (a pipe is fine, a BytesIO too)
                continue
            if stat.S_ISREG(status.st_mode):
                inputs[_file_id(status)] = "standard input"
    written = [Path(str(output) + suffix) for suffix in (PROGRESS_SUFFIX, LOCK_SUFFIX)]
    for job in jobs:
        if job.target is not None:
            written += [job.target, _part_path(job.target)]
    for path in written:
        try:
            identity = _file_id(path.stat())
        except OSError:
            continue  # not there yet: it cannot be an input
        if identity in inputs:
            raise ConfigError(
                f"--output would overwrite an input: {path} is {inputs[identity]} "
                "under another name"
            )


def _file_id(status: os.stat_result) -> tuple[int, int]:
    return status.st_dev, status.st_ino


def _windows(
    jobs: list[_Job],
    state: RunState,
    window: int,
    text_field: str,
    id_field: str,
    stdin: BinaryIO | None,
    streams: bool,
) -> Iterator[_Window]:
    for index in range(state.job, len(jobs)):
        job = jobs[index]
        offset, line = (state.input_offset, state.line) if index == state.job else (0, 0)
        opened = open(job.source, "rb") if job.source is not None else contextlib.nullcontext(stdin)
        with opened as handle:
            if job.unit == "file":
                data = handle.read(_LONG_DOCUMENT_BYTES + 1)
                if len(data) <= _LONG_DOCUMENT_BYTES:
                    text, invalid = _decode(data[len(_BOM) :] if data.startswith(_BOM) else data)
                    yield _Window(index, [job.name], [text], [1], len(data), 1, invalid, last=True)
                    continue
                _check_streams(streams, job, None)
                pieces = _byte_pieces(data, handle.read, line_mode=False)
                yield from _piece_windows(index, job.name, pieces, 0, 1, bom=True)
                yield _Window(index, [], [], [], 0, 1, 0, last=True)
                continue
            if offset:
                handle.seek(offset)
            ids: list[Any] = []
            texts: list[str] = []
            blocks: list[int] = []
            block_documents = block_chars = window_chars = invalid = 0
            while raw := handle.readline(_LONG_DOCUMENT_BYTES + 1):
                line += 1
                doc_id: Any = f"{job.name}:{line}"
                if len(raw) > _LONG_DOCUMENT_BYTES and not raw.endswith(b"\n"):
                    # A long document ends the block and the window before it and is read,
                    # annotated and written in pieces: memory for a piece, not the document.
                    _check_streams(streams, job, line)
                    if block_documents:
                        blocks.append(block_documents)
                    yield _Window(index, ids, texts, blocks, offset, line - 1, invalid, last=False)
                    ids, texts, blocks, window_chars, invalid = [], [], [], 0, 0
                    block_documents = block_chars = 0
                    if job.unit == "jsonl":
                        raw = _rest_of_line(raw, handle)
                        offset += len(raw)
                        doc_id, text, bad = _jsonl_document(
                            _decode(raw.rstrip(b"\r\n"))[0],
                            0,
                            doc_id,
                            job,
                            line,
                            text_field,
                            id_field,
                        )
                        del raw
                        pieces = ((piece, False) for piece in ())
                        yield from _text_windows(index, doc_id, text, offset, line, bad)
                        continue
                    pieces = _byte_pieces(raw, handle.readline, line_mode=True)
                    for piece_window in _piece_windows(
                        index, doc_id, pieces, offset, line, bom=line == 1
                    ):
                        offset = piece_window.end_offset
                        yield piece_window
                    continue
                offset += len(raw)
                if raw.endswith(b"\n"):
                    raw = raw[:-1]
                if raw.endswith(b"\r"):
                    raw = raw[:-1]
                if line == 1 and raw.startswith(_BOM):
                    raw = raw[len(_BOM) :]
                text, bad = _decode(raw)
                if job.unit == "jsonl":
                    doc_id, text, bad = _jsonl_document(
                        text, bad, doc_id, job, line, text_field, id_field
                    )
                invalid += bad
                ids.append(doc_id)
                texts.append(text)
                block_documents += 1
                block_chars += len(text)
                if block_documents < _BLOCK_DOCUMENTS and block_chars < _WINDOW_CHARS:
                    continue
                # Blocks are cut by the input alone, counted from the start of the file, and a
                # window holds whole blocks: the same batches whatever --window and --workers.
                blocks.append(block_documents)
                window_chars += block_chars
                block_documents = block_chars = 0
                if len(texts) >= window or window_chars >= _WINDOW_CHARS:
                    yield _Window(index, ids, texts, blocks, offset, line, invalid, last=False)
                    ids, texts, blocks, window_chars, invalid = [], [], [], 0, 0
            if block_documents:
                blocks.append(block_documents)
            yield _Window(index, ids, texts, blocks, offset, line, invalid, last=True)


def _rest_of_line(start: bytes, handle: BinaryIO) -> bytes:
    # A JSON object is parsed whole: a long JSONL line is read to its end.
    parts = [start]
    while not parts[-1].endswith(b"\n") and (chunk := handle.readline(_PIECE_BYTES)):
        parts.append(chunk)
    return b"".join(parts)


def _check_streams(streams: bool, job: _Job, line: int | None) -> None:
    if not streams:
        raise InputFormatError(
            f"a document of more than {_LONG_DOCUMENT_BYTES:,} bytes: only a tagger writing "
            "jsonl, conll or text reads one in pieces (memory stays bounded); split it",
            job.name,
            line,
        )


def _byte_pieces(
    first: bytes, read: Callable[[int], bytes], line_mode: bool
) -> Iterator[tuple[bytes, bool]]:
    """A long document's bytes as `(piece, last)`, pieces of about `_PIECE_BYTES` cut after a
    line break or a space (an ASCII byte never sits inside a UTF-8 sequence, so the pieces
    decode as the whole would), or between two characters in a run without any. `first` has
    been read; `read(n)` reads on (a `readline` in line mode: the document ends at a newline)."""
    buffer = first
    done = line_mode and first.endswith(b"\n")
    while True:
        while not done and len(buffer) < 2 * _PIECE_BYTES:
            chunk = read(_PIECE_BYTES)
            buffer += chunk
            done = not chunk or (line_mode and chunk.endswith(b"\n"))
        if done and len(buffer) <= 2 * _PIECE_BYTES:
            yield buffer, True
            return
        cut = (
            max(
                buffer.rfind(b"\n", _PIECE_BYTES // 2, _PIECE_BYTES),
                buffer.rfind(b" ", _PIECE_BYTES // 2, _PIECE_BYTES),
                buffer.rfind(b"\t", _PIECE_BYTES // 2, _PIECE_BYTES),
            )
            + 1
        )
        if cut == 0:
            cut = _PIECE_BYTES
            while buffer[cut] & 0xC0 == 0x80:  # not inside a UTF-8 sequence
                cut -= 1
        yield buffer[:cut], False
        buffer = buffer[cut:]


def _piece_windows(
    index: int,
    doc_id: Any,
    pieces: Iterator[tuple[bytes, bool]],
    offset: int,
    line: int,
    bom: bool,
) -> Iterator[_Window]:
    start = invalid = 0
    first = True
    for raw, last in pieces:
        offset += len(raw)
        if first and bom and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if last and raw.endswith(b"\n"):
            raw = raw[:-1]
        if last and raw.endswith(b"\r"):
            raw = raw[:-1]
        text, bad = _decode(raw)
        invalid = invalid or bad
        piece = _Piece(start, first, last)
        yield _Window(
            index, [doc_id], [text], [1], offset, line, invalid if last else 0, False, piece
        )
        start += len(text)
        first = False


def _text_windows(
    index: int, doc_id: Any, text: str, offset: int, line: int, invalid: int
) -> Iterator[_Window]:
    """A long JSONL text in pieces of about `_PIECE_BYTES` characters, cut as `_byte_pieces`."""
    start = 0
    while True:
        if len(text) - start <= 2 * _PIECE_BYTES:
            piece = _Piece(start, start == 0, True)
            yield _Window(index, [doc_id], [text[start:]], [1], offset, line, invalid, False, piece)
            return
        low, high = start + _PIECE_BYTES // 2, start + _PIECE_BYTES
        cut = max(text.rfind(c, low, high) for c in "\n \t") + 1 or high
        piece = _Piece(start, start == 0, False)
        yield _Window(index, [doc_id], [text[start:cut]], [1], offset, line, 0, False, piece)
        start = cut


def _decode(data: bytes) -> tuple[str, int]:
    try:
        return data.decode("utf-8"), 0
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace"), 1


def _jsonl_document(
    line_text: str,
    invalid: int,
    default_id: str,
    job: _Job,
    line: int,
    text_field: str,
    id_field: str,
) -> tuple[Any, str, int]:
    if not line_text.strip():
        return default_id, "", invalid
    try:
        value = json.loads(line_text, parse_constant=_not_json, parse_float=_finite_float)
    except json.JSONDecodeError as error:
        raise InputFormatError(f"not valid JSON: {error.msg}", job.name, line) from None
    except _NotJson as error:
        raise InputFormatError(f"not valid JSON: {error}", job.name, line) from None
    except ValueError as error:  # an integer of more than 4,300 digits
        raise InputFormatError(f"not valid JSON: {error}", job.name, line) from None
    except RecursionError:
        raise InputFormatError("not valid JSON: nested too deeply", job.name, line) from None
    if not isinstance(value, dict):
        raise InputFormatError("expected a JSON object", job.name, line)
    if text_field not in value:
        raise InputFormatError(
            f"expected a string in {text_field!r}, found no such key", job.name, line
        )
    text = value[text_field]
    if not isinstance(text, str):
        found = "null" if text is None else f"a {type(text).__name__}"
        raise InputFormatError(
            f"expected a string in {text_field!r}, found {found}", job.name, line
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (a "\ud800" escape) cannot be written as UTF-8; "?" keeps the offsets.
        text = text.encode("utf-8", errors="replace").decode("utf-8")
        invalid = 1
    return value.get(id_field, default_id), text, invalid


class _NotJson(ValueError):
    """What Python's json module accepts but JSON does not (NaN, Infinity, 1e999)."""


def _not_json(constant: str) -> float:
    raise _NotJson(f"{constant} is not a JSON value")


def _finite_float(number: str) -> float:
    value = float(number)
    if not math.isfinite(value):
        raise _NotJson(f"{number} is too large for a JSON number")
    return value


def _annotate_windows(
    windows: Iterator[_Window],
    model: Tagger | Classifier,
    fmt: str,
    workers: int,
    threads: int | None,
    options: dict[str, Any],
) -> Iterator[tuple[_Window, list[bytes], int]]:
    """Windows → their encoded records and token counts, in input order."""
    if workers == 1:
        encoder = _WindowEncoder(model, fmt, options)
        for window in windows:
            yield (window, *encoder(window.texts, window.ids, window.blocks, window.piece))
        return
    with contextlib.ExitStack() as stack:
        model_dir = model.meta.source
        if model_dir is None:  # an in-memory model: workers load a saved copy
            model_dir = stack.enter_context(tempfile.TemporaryDirectory())
            save_model(model, model_dir)
        pool = stack.enter_context(
            ProcessPoolExecutor(
                workers,
                mp_context=get_context("spawn"),
                initializer=_init_worker,
                initargs=(str(model_dir), fmt, options, threads, os.getpid()),
            )
        )
        # Runs before the pool's own exit: windows not yet started are dropped, so a failed
        # write, Ctrl-C or SIGTERM waits for the windows in progress only.
        stack.callback(pool.shutdown, wait=True, cancel_futures=True)
        pending: deque[tuple[_Window, Future]] = deque()
        # A worker that died (killed from outside, or by the system for lack of memory) breaks
        # the pool: submitting or collecting then raises BrokenProcessPool.
        try:
            for window in windows:
                if window.texts:
                    future = pool.submit(
                        _encode_in_worker, window.texts, window.ids, window.blocks, window.piece
                    )
                    window.texts = []  # the worker has them; keep memory flat
                else:
                    future = Future()
                    future.set_result(([], 0))
                pending.append((window, future))
                if len(pending) > 2 * workers:
                    done, future = pending.popleft()
                    yield (done, *future.result())
            while pending:
                done, future = pending.popleft()
                yield (done, *future.result())
        except BrokenProcessPool:
            raise BilstmNlpError(
                "a worker process died before it finished (killed from outside, or by the "
                "system for lack of memory); what was written is kept: rerun with --resume, "
                "with fewer --workers if memory is short"
            ) from None


class _WindowEncoder:
    """Texts → encoded records, with one model and writer (in this process or a worker)."""

    def __init__(self, model: Tagger | Classifier, fmt: str, options: dict[str, Any]) -> None:
        self.annotator = Annotator(model, **options)
        self.writer = make_writer(fmt)
        # The model, its vocabularies and the tokenizer live as long as the run: frozen, the
        # garbage collector stops rescanning their objects (about 15% of annotation time).
        gc.freeze()

    def __call__(
        self, texts: list[str], ids: list[Any], blocks: list[int], piece: _Piece | None = None
    ) -> tuple[list[Any], int]:
        if piece is not None:  # a piece of a long document: its record, for the writer's stream
            [annotation] = self.annotator(texts)
            return [annotation.to_record(ids[0])], len(annotation.tokens)
        encoded: list[bytes] = []
        tokens = start = 0
        for size in blocks:
            # Each block on its own: which sentences share a batch (and so every float the model
            # sums) depends on the block alone.
            annotations = self.annotator(texts[start : start + size])
            encoded.extend(
                self.writer.encode(a.to_record(doc_id))
                for a, doc_id in zip(annotations, ids[start : start + size], strict=True)
            )
            tokens += sum(len(a.tokens) for a in annotations)
            start += size
        assert start == len(texts)
        return encoded, tokens


# Each worker process builds its encoder once, in the pool's initializer; tasks then use it.
_worker_encoder: list[_WindowEncoder] = []


def _init_worker(
    model_dir: str, fmt: str, options: dict[str, Any], threads: int, parent: int
) -> None:
    from ..serialize import load_model

    _die_with_parent(parent)
    # Ctrl-C reaches the whole process group; the parent handles it and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    _worker_encoder.append(_WindowEncoder(load_model(model_dir), fmt, options))


def _die_with_parent(parent: int) -> None:
    """End this worker when the process that started it dies, even by kill -9: the kernel's
    parent-death signal on Linux, else a thread that watches the parent's pid."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before the signal was set
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _encode_in_worker(
    texts: list[str], ids: list[Any], blocks: list[int], piece: _Piece | None
) -> tuple[list[Any], int]:
    return _worker_encoder[0](texts, ids, blocks, piece)


class _Run:
    """Writes encoded windows to their outputs and records progress after each window."""

    def __init__(
        self,
        jobs: list[_Job],
        writer: Writer,
        state: RunState,
        progress_path: Path | None,
        fingerprint: dict[str, Any] | None,
    ) -> None:
        self.jobs = jobs
        self.writer = writer
        self.state = state
        self.progress_path = progress_path
        self.fingerprint = fingerprint
        self.tokens = 0
        self.invalid = 0

    def write(self, results, stdout: BinaryIO, bar: _ProgressBar) -> None:
        out: BinaryIO | None = None
        current = -1
        stdout_begun = False
        stream = None
        token_start = 0
        for window, encoded, tokens in results:
            if window.job != current:
                current = window.job
                job = self.jobs[current]
                if job.target is None:
                    out = stdout
                    if not stdout_begun:
                        self.writer.begin(out)
                        stdout_begun = True
                else:
                    out = self._open(job, current)
            assert out is not None
            if window.piece is None:
                for record in encoded:
                    self.writer.add(out, record)
            else:
                if window.piece.first:
                    stream = self.writer.stream(out)  # type: ignore[attr-defined]
                    token_start = 0
                [record] = encoded
                stream.add(record, window.piece.start, token_start)
                token_start += tokens
                if not window.piece.last:
                    # Mid-document: nothing to fsync or record; a resume redoes the document.
                    self.tokens += tokens
                    self.state.tokens += tokens
                    bar.advance(window, 0, tokens)
                    continue
                stream.close()
            self.tokens += tokens
            self.invalid += window.invalid
            state = self.state
            state.documents += len(window.ids)
            state.tokens += tokens
            state.invalid_utf8_lines += window.invalid
            bar.advance(window, len(window.ids), tokens)
            job = self.jobs[current]
            if job.target is None:
                out.flush()
            elif window.last:
                self.writer.end(out)
                _sync(out)
                out.close()
                if self.writer.atomic:
                    os.replace(_part_path(job.target), job.target)
                state.job, state.input_offset, state.output_offset, state.line = (
                    current + 1,
                    0,
                    0,
                    0,
                )
                self._save()
            elif not self.writer.atomic:
                _sync(out)
                state.input_offset, state.output_offset = window.end_offset, out.tell()
                state.line = window.end_line
                self._save()
        if stdout_begun:
            self.writer.end(stdout)
            stdout.flush()
        self.state.complete = True
        self._save()

    def _open(self, job: _Job, index: int) -> BinaryIO:
        assert job.target is not None
        job.target.parent.mkdir(parents=True, exist_ok=True)
        if self.writer.atomic:
            out = open(_part_path(job.target), "wb")
            self.writer.begin(out)
            return out
        offset = self.state.output_offset if index == self.state.job else 0
        if offset == 0:
            out = open(job.target, "wb")
            self.writer.begin(out)
            return out
        if not job.target.is_file() or job.target.stat().st_size < offset:
            raise ResumeError(
                f"the output is shorter than the progress file says ({offset} bytes); "
                "run without --resume to start over",
                job.target,
            )
        out = open(job.target, "r+b")
        out.truncate(offset)  # drops whatever a killed run wrote after its last complete window
        out.seek(offset)
        return out

    def _save(self) -> None:
        if self.progress_path is not None:
            save_state(self.progress_path, self.fingerprint, self.state)


def _part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def _sync(out: BinaryIO) -> None:
    out.flush()
    os.fsync(out.fileno())


def _writer_for(fmt: str, model: Tagger | Classifier, k_best: int) -> Writer:
    writer = make_writer(fmt)
    if fmt == "conll" and isinstance(model, Classifier):
        raise ConfigError("CoNLL output holds token tags; for a classifier use jsonl")
    if k_best and isinstance(model, Classifier):
        raise ConfigError("k-best tag sequences need a tagger; this model is a classifier")
    return writer


class _ProgressBar:
    """A rich bar on stderr: input bytes (so a time left), documents, tokens/s; or nothing."""

    def __init__(self, enabled: bool, jobs: list[_Job], state: RunState) -> None:
        self.enabled = enabled
        self.progress = None
        self.offsets: dict[int, int] = {state.job: state.input_offset}
        sizes = [job.source.stat().st_size if job.source else None for job in jobs]
        self.total = None if None in sizes else sum(sizes)  # type: ignore[arg-type]
        self.done = sum(s or 0 for s in sizes[: state.job]) + state.input_offset
        self.documents = 0
        self.tokens = 0
        self.started = time.perf_counter()

    def __enter__(self) -> _ProgressBar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("Annotating"),
                BarColumn(),
                TextColumn("{task.fields[documents]} documents, {task.fields[speed]} tokens/s"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task(
                "annotate", total=self.total, completed=self.done, documents=0, speed=0
            )
        return self

    def advance(self, window: _Window, documents: int, tokens: int) -> None:
        read = window.end_offset - self.offsets.get(window.job, 0)
        self.offsets[window.job] = window.end_offset
        self.documents += documents
        self.tokens += tokens
        if self.progress is not None:
            speed = int(self.tokens / max(time.perf_counter() - self.started, 1e-9))
            self.progress.update(
                self.task, advance=read, documents=f"{self.documents:,}", speed=f"{speed:,}"
            )

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()
