"""Shared pieces of the CLI: option shorthands, the stderr console, and the user-error guard."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from ..errors import BilstmNlpError

Arg = typer.Argument
Opt = typer.Option

# stdout carries data (JSONL, CoNLL) so pipes work; everything for people goes to stderr.
err_console = Console(stderr=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a `BilstmNlpError` into one `error: ...` line on stderr and exit code 1.

    Any other exception is a bug and keeps its traceback.
    """
    try:
        yield
    except BilstmNlpError as error:
        err_console.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
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
    if threads:
        import torch

        torch.set_num_threads(threads)
