"""Whole-file output written atomically: a temporary file beside the target, fsynced, renamed.

Shared by the corpus writers (`writers.py`, `span_formats.py`): a crash or an error midway leaves
any previous file at the target as it was, never half of a new one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from ..errors import OutputError


@contextmanager
def atomic_output(path: str | Path, binary: bool = False) -> Iterator[IO[Any]]:
    """A file handle whose contents replace `path` when the block ends without an exception.

    Text mode is UTF-8 with LF line ends.

    Raises:
        OutputError: the file cannot be written (missing folder, no permission, disk full).
    """
    path = Path(path)
    if not path.name or path.is_dir():
        raise OutputError("is a folder (or an empty path): give a file name to write", path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        if binary:
            handle = open(temporary, "wb")  # noqa: SIM115 - closed below, before the rename
        else:
            handle = open(temporary, "w", encoding="utf-8", newline="\n")  # noqa: SIM115
    except OSError as error:
        raise OutputError(f"cannot write: {error.strerror or error}", path) from None
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        _remove_quietly(temporary)
        raise OutputError(f"cannot write: {error.strerror or error}", path) from None
    except BaseException:
        _remove_quietly(temporary)
        raise


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
