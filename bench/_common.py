"""What every benchmark records beside its figures: machine, versions, command, commit."""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from bilstm_nlp.training.setup import cpu_model

# The project's timings are medians of at least this many repeats, reported with their range.
MIN_REPEATS = 5
QUICK_NOTE = "quick run: fewer repeats than the standard, these figures are not for reporting"


def check_repeats(
    parser: argparse.ArgumentParser,
    repeats: int,
    quick: bool | None = None,
    flag: str = "--repeats",
) -> None:
    """Refuse fewer than MIN_REPEATS timed repeats, unless a --quick run asked for them (quick is
    None where the script has no quick mode)."""
    if repeats < 1 or (repeats < MIN_REPEATS and not quick):
        fewer = ", fewer only with --quick" if quick is not None else ""
        parser.error(
            f"{flag} {repeats}: a timing is the median of at least {MIN_REPEATS} repeats{fewer}"
        )


def git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def machine_info(threads: int) -> dict[str, Any]:
    return {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "git_commit": git_commit(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": threads,
        "cpu": cpu_model(),
        "cores": __import__("os").cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def write_results(path: Path, figures: dict[str, Any], machine: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"figures": figures, "machine": machine}, indent=2) + "\n")


def timed(function: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Wall times of `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def summary(times: list[float], units: float) -> dict[str, float]:
    """Median rate (units/s) with the spread of the repeats."""
    rates = sorted(units / t for t in times)
    return {
        "median_per_s": statistics.median(rates),
        "min_per_s": rates[0],
        "max_per_s": rates[-1],
        "median_seconds": statistics.median(times),
    }


@contextlib.contextmanager
def revision_tree(revision: str, root: Path) -> Iterator[Path]:
    """A temporary detached git worktree of `revision` (with its own models/), removed after."""
    tree = Path(tempfile.mkdtemp(prefix="bench-revision-")) / "tree"
    subprocess.run(
        ["git", "worktree", "add", "--detach", "-q", str(tree), revision], cwd=root, check=True
    )
    try:
        yield tree
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=root)
