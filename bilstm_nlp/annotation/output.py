"""Resumable output of an annotation run: output files, fsync, the progress file, the lock.

Sits after the workers. `OutputRun` writes encoded windows to their outputs in input order. After
each window of a streaming format (JSONL, CoNLL, text) the output is flushed and fsynced, then
`OUT.progress.json` is replaced atomically with the input and output byte offsets reached, the
counts so far, and fingerprints of the inputs (paths, sizes, mtimes, SHA-256 of all their bytes),
the model (SHA-256 of its files) and the options (thread count included). A resume checks the
fingerprints (any difference is a `ResumeError`), truncates the output to the recorded offset (a
record half-written by a killed run goes) and reads on from the recorded input offset: the final
output equals an uninterrupted run's byte for byte. DocBin and HTML files are written whole, to a
`.part` file that replaces the output when its input is done; a resume redoes the unfinished one.
A run holds an exclusive lock (`OUT.lock`) while it writes, so a second run into the same output is
refused; write errors (disk full, read-only, no permission) are one `OutputError`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import math
import os
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ..decode import is_onnx
from ..errors import ConfigError, OutputError, OutputInUse, ResumeError
from ..runtime.backend import CRF_FILE, ONNX_FILE
from ..serialize import CONFIG_FILE, VOCAB_FILES, WEIGHTS_FILE
from .jobs import LOCK_SUFFIX, PART_SUFFIX, PROGRESS_SUFFIX, TEMPORARY_SUFFIX, Job, Window
from .writers import Writer

if TYPE_CHECKING:
    from ..nn.model import Classifier, Tagger

logger = logging.getLogger(__name__)

# Seconds between two saves of the progress file at least, and at least this many times the
# last save's own time (see `OutputRun._save`).
SAVE_INTERVAL = 1.0
SAVE_GAP_FACTOR = 5.0


def beside_output(output: Path | str, suffix: str) -> Path:
    """`OUTPUT` + `suffix` (its progress or lock file), named from the absolute path with links
    resolved: `-o .` (or `-o ""`, the same folder) gets `../NAME.progress.json` beside it, not a
    hidden `..progress.json` inside it, and an output reached through a symbolic link has the
    lock of the file it names, so two runs cannot write it at once under two names."""
    return Path(os.path.realpath(output) + suffix)


# Version 2: the whole input is hashed (version 1 hashed its first 64 KiB), threads are an option.
_PROGRESS_VERSION = 2
_HASH_BLOCK = 1 << 20


@dataclass
class RunState:
    """Progress as saved in the progress file: jobs before `job` are done."""

    job: int = 0
    input_offset: int = 0
    output_offset: int = 0
    line: int = 0
    documents: int = 0
    tokens: int = 0
    invalid_utf8_lines: int = 0
    complete: bool = False


def model_fingerprint(model: Tagger | Classifier) -> str:
    """SHA-256 of a model's files (config, vocabularies, weights); of its weights and vocabulary
    for a model that was never saved."""
    digest = hashlib.sha256()
    directory = model.meta.source
    if directory is not None:
        # An ONNX folder's graph and CRF arrays stand where a torch folder's weights do.
        onnx_files = (ONNX_FILE, CRF_FILE) if is_onnx(model) else ()
        for name in (CONFIG_FILE, *VOCAB_FILES.values(), WEIGHTS_FILE, *onnx_files):
            digest.update(name.encode())
            path = Path(directory) / name
            if path.is_file():
                with open(path, "rb") as handle:
                    for block in iter(lambda h=handle: h.read(1 << 20), b""):
                        digest.update(block)
        return digest.hexdigest()
    digest.update(json.dumps(model.vocab.to_json()).encode())
    digest.update(json.dumps(asdict(model.config)).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def input_fingerprint(source: Path, target: Path) -> dict[str, Any]:
    """What identifies an input file and its output: paths, size, mtime and a SHA-256 of all its
    bytes (read in blocks of 1 MiB: memory stays flat), so any change is seen, wherever it is and
    whatever size and mtime the file was given back."""
    status = source.stat()
    digest = hashlib.sha256()
    with open(source, "rb") as handle:
        for block in iter(lambda: handle.read(_HASH_BLOCK), b""):
            digest.update(block)
    return {
        "input": str(source.resolve()),
        "output": str(target.resolve()),
        "size": status.st_size,
        "mtime_ns": status.st_mtime_ns,
        "sha256": digest.hexdigest(),
    }


def load_state(path: Path, fingerprint: dict[str, Any]) -> RunState:
    """The state saved at `path`, after checking that model, options and inputs are the saved ones.

    Raises:
        ResumeError: an unreadable or foreign progress file, or anything changed since.
    """
    if not path.is_file():
        logger.info("%s: no progress file, so nothing to resume; starting from the beginning", path)
        return RunState()
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        state = RunState(**saved["state"])
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise ResumeError(f"unreadable progress file: {error}", path) from None
    advice = "; run without --resume to start over"
    if saved.get("version") != _PROGRESS_VERSION:
        raise ResumeError("the progress file is from another version of bilstm-nlp" + advice, path)
    if saved.get("model") != fingerprint["model"]:
        raise ResumeError(
            "cannot resume: the model differs from the interrupted run's" + advice, path
        )
    if saved.get("options") != fingerprint["options"]:
        changed = sorted(
            key
            for key in fingerprint["options"]
            if saved.get("options", {}).get(key) != fingerprint["options"][key]
        )
        raise ResumeError(
            f"cannot resume: options differ from the interrupted run's ({', '.join(changed)})"
            + advice,
            path,
        )
    before, now = saved.get("inputs", []), fingerprint["inputs"]
    if [(f["input"], f["output"]) for f in before] != [(f["input"], f["output"]) for f in now]:
        raise ResumeError("cannot resume: the inputs or outputs differ" + advice, path)
    for old, new in zip(before, now, strict=True):
        if old != new:
            raise ResumeError(
                f"cannot resume: {new['input']} changed since the interrupted run" + advice, path
            )
    return state


def save_state(path: Path, fingerprint: dict[str, Any] | None, state: RunState) -> None:
    """Replace the progress file atomically (written beside it, fsynced, renamed)."""
    assert fingerprint is not None
    content = {"version": _PROGRESS_VERSION, **fingerprint, "state": asdict(state)}
    temporary = path.with_name(path.name + TEMPORARY_SUFFIX)
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(content, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(
            temporary, path
        )  # a kill leaves the old progress file or the new one, never half
    except BaseException:
        # Disk full, read-only, Ctrl-C midway: no half-written `.tmp` stays behind.
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


@contextlib.contextmanager
def output_lock(output: Path) -> Iterator[None]:
    """Hold an exclusive lock on `OUTPUT.lock` (an `flock`) while a run writes into `output`.

    The lock file is removed when the run ends; a lock taken on a file that another run removed
    meanwhile is dropped and taken again on the new one. The lock dies with its process, so a
    killed run never leaves a stale lock.

    Raises:
        OutputInUse: another run holds the lock.
    """
    path = beside_output(output, LOCK_SUFFIX)
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(descriptor)
            if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise OutputInUse(
                    f"another run is writing this output (it holds {path.name}); "
                    "wait for it to finish or choose another --output",
                    output,
                ) from None
            raise
        try:
            same = os.fstat(descriptor).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(descriptor)  # locked a lock file that its run had just removed: try again
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(descriptor)


def part_path(target: Path) -> Path:
    """Where an atomic format (DocBin, HTML) is written until its input is done."""
    return target.with_name(target.name + PART_SUFFIX)


def check_output_folder(output: Path) -> None:
    """Refuse an output whose folder is missing.

    Raises:
        OutputError: the folder of `output` does not exist or is not a folder.
    """
    folder = output.absolute().parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise OutputError(f"the folder of --output {what}; create it first", folder)


@contextlib.contextmanager
def write_errors(output: str | Path, resumable: bool) -> Iterator[None]:
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


class OutputRun:
    """Writes encoded windows to their outputs and records progress after each window.

    Args:
        jobs: the run's jobs.
        writer: the output format.
        state: where the run stands (updated as windows are written).
        progress_path: the progress file; None when the run cannot be resumed (standard output).
        fingerprint: what a resume must find unchanged (see `load_state`).
    """

    def __init__(
        self,
        jobs: list[Job],
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
        self._saved_at = -math.inf
        self._save_seconds = 0.0
        self._file: BinaryIO | None = None  # the output file open now

    def write(
        self,
        results: Iterable[tuple[Window, list[bytes], int]],
        stdout: BinaryIO,
        advance: Any,
    ) -> None:
        """Write `(window, encoded records, tokens)` in order; `advance(window, documents,
        tokens)` after each (a progress bar)."""
        try:
            self._write(results, stdout, advance)
        except BaseException:
            # Closed now, not when the collector gets to it: its lock (`_open_locked`) would
            # refuse a resume in this process until then.
            if self._file is not None:
                with contextlib.suppress(OSError):
                    self._file.close()
            raise

    def _write(
        self,
        results: Iterable[tuple[Window, list[bytes], int]],
        stdout: BinaryIO,
        advance: Any,
    ) -> None:
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
                    out = self._file = self._open(job, current)
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
                    advance(window, 0, tokens)
                    continue
                stream.close()
            self.tokens += tokens
            self.invalid += window.invalid
            state = self.state
            state.documents += len(window.ids)
            state.tokens += tokens
            state.invalid_utf8_lines += window.invalid
            advance(window, len(window.ids), tokens)
            job = self.jobs[current]
            if job.target is None:
                out.flush()
            elif window.last:
                self.writer.end(out)
                _sync(out)
                out.close()
                self._file = None
                if self.writer.atomic:
                    os.replace(part_path(job.target), job.target)
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
        self._save(force=True)

    def _open(self, job: Job, index: int) -> BinaryIO:
        assert job.target is not None
        job.target.parent.mkdir(parents=True, exist_ok=True)
        if self.writer.atomic:
            out = open(part_path(job.target), "wb")
            self.writer.begin(out)
            return out
        offset = self.state.output_offset if index == self.state.job else 0
        if offset == 0:
            out = _open_locked(job.target, 0)
            self.writer.begin(out)
            return out
        if not job.target.is_file() or job.target.stat().st_size < offset:
            raise ResumeError(
                f"the output is shorter than the progress file says ({offset} bytes); "
                "run without --resume to start over",
                job.target,
            )
        # Cut at the offset: drops whatever a killed run wrote after its last complete window.
        return _open_locked(job.target, offset)

    def _save(self, force: bool = False) -> None:
        """Save the progress: at most every `SAVE_INTERVAL` seconds, and never more than a fifth
        of the time (the file fingerprints every input, so a folder of 20,000 files made it 5 MB,
        rewritten after each file). A kill between saves loses nothing: a resume starts from the
        last save, truncating or rewriting what was written after it."""
        if self.progress_path is None:
            return
        started = time.monotonic()
        gap = max(SAVE_INTERVAL, SAVE_GAP_FACTOR * self._save_seconds)
        if not force and started - self._saved_at < gap:
            return
        save_state(self.progress_path, self.fingerprint, self.state)
        self._saved_at = time.monotonic()
        self._save_seconds = self._saved_at - started


def _open_locked(target: Path, offset: int) -> BinaryIO:
    """`target` open for writing from `offset`, cut there, with an `flock` on the file itself.

    The output's lock file goes by its name; a hard link gives the same file another name, with
    a lock file of its own. A second run writing the file under that name is refused here,
    before it cuts anything.

    Raises:
        OutputInUse: another run writes the same file.
    """
    descriptor = os.open(target, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise OutputInUse(
            "another run is writing this file under another name (a hard link to it); "
            "wait for it to finish or choose another --output",
            target,
        ) from None
    out = os.fdopen(descriptor, "r+b")
    out.truncate(offset)
    out.seek(offset)
    return out


def _sync(out: BinaryIO) -> None:
    out.flush()
    os.fsync(out.fileno())


def check_not_an_input(jobs: list[Job], output: str | Path | None, stdin: BinaryIO | None) -> None:
    """Refuse a run whose output files (or progress, lock and part files) are an input: compared
    by device and inode, so a hard link, a symlink or standard input redirected from the output
    file is seen too. Runs before anything is opened for writing.

    Raises:
        ConfigError: an output file is an input.
    """
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
    written = [beside_output(output, suffix) for suffix in (PROGRESS_SUFFIX, LOCK_SUFFIX)]
    for job in jobs:
        if job.target is not None:
            written += [job.target, part_path(job.target)]
    for path in written:
        try:
            identity = _file_id(path.stat())
        except OSError:
            continue  # not there yet: it cannot be an input
        if identity in inputs:
            name = inputs[identity]
            other = "" if name == str(path) else f" (it is {name} under another name)"
            raise ConfigError(f"--output would overwrite an input: {path}{other}")


def _file_id(status: os.stat_result) -> tuple[int, int]:
    return status.st_dev, status.st_ino
