"""Shared pieces of the CLI: option shorthands, the stderr console, and the user-error guard."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console

from ..errors import FULL_INSTALL, RUNTIME_ONLY, BilstmNlpError, ConfigError

Arg = typer.Argument
Opt = typer.Option

# stdout carries data (JSONL, CoNLL) so pipes work; everything for people goes to stderr.
err_console = Console(stderr=True)

FULL_INSTALL_ONLY = ("torch", "datasets", "seqeval", "conllu", "pyarrow")
"""What the slim runtime distribution (bilstm-nlp-runtime) leaves out: a command that imports one
there gets one line saying what to install, not a traceback."""


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a `BilstmNlpError` into one `error: ...` line on stderr and exit code 1.

    So is a missing `FULL_INSTALL_ONLY` package (train, evaluate, export... in the runtime
    distribution). Any other exception is a bug and keeps its traceback.
    """
    try:
        yield
    except BilstmNlpError as error:
        err_console.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except ModuleNotFoundError as error:
        package = (error.name or "").split(".")[0]
        if package not in FULL_INSTALL_ONLY:
            raise
        err_console.print(
            f"error: this command needs {package}, which is not installed ({RUNTIME_ONLY}): "
            f"{FULL_INSTALL}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None


def setup_logging(verbose: bool, reads_corpora: bool = False) -> None:
    """Library logs to stderr; datasets' per-split progress bars only with --verbose."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if reads_corpora and not verbose:
        import datasets

        datasets.disable_progress_bars()


def set_threads(threads: int | None) -> None:
    """torch's CPU threads (for commands that run torch models only: `load_with_threads` is the
    one for commands that also take ONNX folders)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


# As train.threads: more would only exhaust the process's memory maps and thread limit.
MAX_THREADS = 1024


def check_threads(threads: int | None) -> None:
    """Refuse a thread count torch would reject with a traceback, or one that would exhaust
    the machine (each thread maps its own stack)."""
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise ConfigError(f"--threads must be 1 to {MAX_THREADS}, got {threads}")


def load_with_threads(name_or_path: str, threads: int | None) -> Any:
    """Load a model for a command with a --threads option: an ONNX folder's session gets
    `threads` intra-op threads; for a torch folder they are torch's (`torch.set_num_threads`).

    Raises:
        ConfigError: `threads` out of range (`check_threads`).
    """
    from ..decode import is_onnx
    from ..serialize import load_model

    check_threads(threads)

    loaded = load_model(name_or_path, threads=threads)
    if threads and not is_onnx(loaded):
        set_threads(threads)
    return loaded
