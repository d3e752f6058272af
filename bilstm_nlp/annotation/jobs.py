"""Inputs → jobs (an input and where its records go) → windows of documents to annotate.

Sits between the document reader (`corpus/readers/documents.py`) and the workers. Documents are
cut into blocks by the input alone: `BLOCK_DOCUMENTS` documents, or fewer when they pass
`WINDOW_CHARS` characters, counted from the start of each file. Each block is tokenized and
batched on its own, so which sentences share a model batch (and with it every float the model
sums) never depends on `--window` or `--workers`. A window is a run of whole blocks (at least
`window` documents), the unit of writing and resuming; a long document's pieces each get a window.

An output that is an input under another name (a hard link, a symlink, standard input redirected
from it) is refused before anything is opened for writing, compared by device and inode.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..corpus.readers.documents import Piece, read_documents
from ..errors import ConfigError, InputFormatError

logger = logging.getLogger(__name__)

# What a run writes beside its output (`output.beside_output`) or a target (`output.part_path`):
# the progress file and its temporary while it is saved, the lock, an atomic format's part file.
PROGRESS_SUFFIX = ".progress.json"
LOCK_SUFFIX = ".lock"
TEMPORARY_SUFFIX = ".tmp"
PART_SUFFIX = ".part"

# Read through module globals at call time, so tests can make them small.
BLOCK_DOCUMENTS = 1000
WINDOW_CHARS = 1_000_000


@dataclass(frozen=True)
class Job:
    """One input and where its records go.

    Attributes:
        source: the input file; None for standard input.
        name: the input as given (ids are `name:line`), or `<stdin>`.
        target: the output file; None for standard output.
        unit: `line`, `file` or `jsonl`.
    """

    source: Path | None
    name: str
    target: Path | None
    unit: str


@dataclass
class Window:
    """Documents read, annotated and written together.

    Attributes:
        job: the index of its job.
        ids: the documents' ids.
        texts: their texts (emptied once handed to a worker, to keep memory flat).
        blocks: documents per block, in order: each block is batched on its own.
        end_offset: input bytes read once this window is done.
        end_line: the input line reached.
        invalid: documents with bad UTF-8 bytes replaced.
        last: the job's final window (maybe empty).
        piece: for a piece of a long document (its one text), where it sits; else None.
    """

    job: int
    ids: list[Any]
    texts: list[str]
    blocks: list[int]
    end_offset: int
    end_line: int
    invalid: int
    last: bool
    piece: Piece | None = None


def plan_jobs(
    inputs: Sequence[str | Path],
    output: str | Path | None,
    unit: str | None,
    glob: str | None,
    extension: str,
    stdin: BinaryIO | None,
    written_to: str | Path | None = None,
) -> list[Job]:
    """The jobs of a run: files and folders (their files matching `glob`, recursively, sorted)
    or `-`, each with its output file (one file, or a folder mirroring the inputs' tree).

    A folder's files under the output (or `written_to`, where a run writes its own way, as the
    engines' part folders) are left out: they are the last run's records, not inputs.

    Raises:
        InputFormatError: a missing input, or a folder without matching files.
        ConfigError: no input, `-` with other inputs, or two inputs into one output (an output
            that is one of the inputs is `output.check_not_an_input`'s to refuse).
    """
    if not inputs:
        raise ConfigError("no input given")
    if any(str(given) == "-" for given in inputs):
        if len(inputs) > 1:
            raise ConfigError("'-' (standard input) cannot be combined with other inputs")
        jobs = [Job(None, "<stdin>", Path(output) if output else None, unit or "line")]
        return jobs
    files: list[tuple[Path, Path]] = []  # (input file, output path relative to the folder)
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            pattern = glob or ("**/*.jsonl" if unit == "jsonl" else "**/*.txt")
            found = sorted(p for p in path.glob(pattern) if p.is_file())
            if (own := output if output is not None else written_to) is not None:
                found = _without_the_output(found, own, path)
            if not found:
                raise InputFormatError(f"no files match {pattern!r} in this folder", path)
            prefix = Path(path.resolve().name) if len(inputs) > 1 else Path()
            files.extend((p, prefix / p.relative_to(path)) for p in found)
        elif path.is_file():
            files.append((path, Path(path.name)))
        else:
            raise InputFormatError("no such file or folder", path)
    for source, _ in files:
        # Before any output is opened: an input that cannot be read is no write failure.
        if not os.access(source, os.R_OK):
            raise InputFormatError("cannot read: permission denied", source)
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
        jobs.append(Job(source, str(source), target, job_unit))
    targets = [job.target.resolve() for job in jobs if job.target is not None]
    if len(set(targets)) != len(targets):
        clash = next(t for t in targets if targets.count(t) > 1)
        names = [str(job.source) for job in jobs if job.target and job.target.resolve() == clash]
        raise ConfigError(
            f"{' and '.join(names)} would both be written to {clash} (their names differ only in "
            "the extension): annotate them in separate runs, or rename one"
        )
    return jobs


_BESIDE_OUTPUT = (PROGRESS_SUFFIX, LOCK_SUFFIX, PROGRESS_SUFFIX + TEMPORARY_SUFFIX, PART_SUFFIX)


def _without_the_output(found: list[Path], output: str | Path, folder: Path) -> list[Path]:
    """A folder's files less the run's own output (an output folder inside the input folder, or
    an output file and its progress, lock and part files there): the next run into the same
    output must not read the last one's records as input."""
    own = os.path.realpath(output)
    beside = {own + suffix for suffix in _BESIDE_OUTPUT}
    kept = []
    for path in found:
        real = os.path.realpath(path)
        if real != own and real not in beside and not real.startswith(own + os.sep):
            kept.append(path)
    if len(kept) < len(found):
        logger.info(
            "%s: left out %d files of this run's output %s", folder, len(found) - len(kept), output
        )
    return kept


def read_windows(
    jobs: list[Job],
    start: tuple[int, int, int],
    window: int,
    text_field: str,
    id_field: str,
    stdin: BinaryIO | None,
    pieces: bool,
) -> Iterator[Window]:
    """The windows of the jobs from where a run got, in input order.

    Args:
        jobs: the run's jobs.
        start: `(job, input_offset, line)` to start from: a resume's, or `(0, 0, 0)`.
        window: documents per window, rounded up to whole blocks.
        text_field: JSONL key of the text.
        id_field: JSONL key of the document id.
        stdin: what `-` reads.
        pieces: whether long documents may be read in pieces (see `read_documents`).
    Returns:
        An iterator of `Window`s; each job ends with one whose `last` is True.
    """
    start_job, start_offset, start_line = start
    for index in range(start_job, len(jobs)):
        job = jobs[index]
        offset, line = (start_offset, start_line) if index == start_job else (0, 0)
        opened = open(job.source, "rb") if job.source is not None else contextlib.nullcontext(stdin)
        with opened as handle:
            documents = read_documents(
                handle,
                job.name,
                job.unit,
                offset=offset,
                line=line,
                text_field=text_field,
                id_field=id_field,
                pieces=pieces,
            )
            ids: list[Any] = []
            texts: list[str] = []
            blocks: list[int] = []
            block_documents = block_chars = window_chars = invalid = 0
            for document in documents:
                if document.piece is not None:
                    if document.piece.first:
                        # A long document ends the block and the window before it.
                        if block_documents:
                            blocks.append(block_documents)
                        yield Window(index, ids, texts, blocks, offset, line, invalid, last=False)
                        ids, texts, blocks, window_chars, invalid = [], [], [], 0, 0
                        block_documents = block_chars = 0
                    offset, line = document.end_offset, document.line
                    yield Window(
                        index,
                        [document.doc_id],
                        [document.text],
                        [1],
                        offset,
                        line,
                        document.invalid,
                        False,
                        document.piece,
                    )
                    continue
                offset, line = document.end_offset, document.line
                invalid += document.invalid
                ids.append(document.doc_id)
                texts.append(document.text)
                block_documents += 1
                block_chars += len(document.text)
                if block_documents < BLOCK_DOCUMENTS and block_chars < WINDOW_CHARS:
                    continue
                # Blocks are cut by the input alone, counted from the start of the file, and a
                # window holds whole blocks: the same batches whatever --window and --workers.
                blocks.append(block_documents)
                window_chars += block_chars
                block_documents = block_chars = 0
                if len(texts) >= window or window_chars >= WINDOW_CHARS:
                    yield Window(index, ids, texts, blocks, offset, line, invalid, last=False)
                    ids, texts, blocks, window_chars, invalid = [], [], [], 0, 0
            if block_documents:
                blocks.append(block_documents)
            yield Window(index, ids, texts, blocks, offset, line, invalid, last=True)
