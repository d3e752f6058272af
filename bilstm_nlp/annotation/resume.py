"""The progress file of a resumable annotation run: state, fingerprints, atomic saves, the lock.

Sits beside `annotate_files`, which saves a `RunState` after each window it has fsynced. A resume
loads it only when the model, the options and every input are what the interrupted run had (see
`annotate_files` for the whole protocol). `output_lock` keeps a second run from writing into the
same output at the same time.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import OutputError, ResumeError
from ..nn.model import Classifier, Tagger
from ..serialize import CONFIG_FILE, VOCAB_FILES, WEIGHTS_FILE

logger = logging.getLogger(__name__)

PROGRESS_SUFFIX = ".progress.json"
LOCK_SUFFIX = ".lock"
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
        for name in (CONFIG_FILE, *VOCAB_FILES.values(), WEIGHTS_FILE):
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
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(content, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(
            temporary, path
        )  # a kill leaves the old progress file or the new one, never half
    except OSError:
        # Disk full, read-only: no half-written `.tmp` stays behind.
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
        OutputError: another run holds the lock.
    """
    path = Path(str(output) + LOCK_SUFFIX)
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(descriptor)
            if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise OutputError(
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
