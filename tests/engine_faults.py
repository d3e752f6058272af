"""Part tasks that fail on purpose, for the engine fault tests; importable by engine workers
(the worktree root is on their PYTHONPATH), since a task function travels by reference."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bilstm_nlp.integrations.engines.parts import PartResult, PartTask, run_part

# How long a victim waits to be killed before giving up (and failing the test by timing out).
WAIT_SECONDS = 120.0


def victim_marker(outdir: str | Path) -> Path:
    """Where the first task of a run into `outdir` writes its worker's pid (next to the folder:
    the folder itself holds parts only)."""
    outdir = Path(outdir)
    return outdir.with_name(f"{outdir.name}.victim")


def wait_to_be_killed_once(task: PartTask) -> PartResult:
    """Part 0's first attempt writes its pid to the marker and waits for SIGKILL; every other
    attempt (the engine's retry included) is `run_part`."""
    if task.part.index == 0:
        marker = victim_marker(Path(task.target).parent)
        try:
            descriptor = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            return run_part(task)  # the retry
        with os.fdopen(descriptor, "w") as handle:
            handle.write(str(os.getpid()))
        time.sleep(WAIT_SECONDS)
        raise RuntimeError("the test never killed this worker")
    return run_part(task)
