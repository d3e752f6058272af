"""Progress bars: the one kind the package draws, rich on stderr, gone when the work is done.

Used by decoding, annotation and training; no package imports of its own, so any stage may use it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any


def progress_bar(
    description: str,
    total: float | None,
    *,
    detail: str | None = None,
    count: bool = False,
    completed: float = 0,
    **fields: Any,
) -> Any:
    """A started, transient rich `Progress` on stderr with one task (its `task_ids[0]`).

    Args:
        description: the text before the bar (the task's `description`, updatable).
        total: units of work; None for a bar without an end.
        detail: a rich format string after the bar, over the task's fields
            (`"{task.fields[documents]} documents"`).
        count: show `done/total`.
        completed: units done already (a resumed run).
        fields: the task's first field values for `detail`.
    Returns:
        The `rich.progress.Progress`; call `stop()` when done (or use it in a `with`).
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns: list[Any] = [TextColumn("{task.description}"), BarColumn()]
    if count:
        columns.append(MofNCompleteColumn())
    if detail is not None:
        columns.append(TextColumn(detail))
    columns.append(TimeRemainingColumn())
    progress = Progress(*columns, console=Console(stderr=True), transient=True)
    progress.add_task(description, total=total, completed=completed, **fields)
    progress.start()
    return progress


@contextlib.contextmanager
def optional_progress(
    enabled: bool, description: str, total: float | None, **options: Any
) -> Iterator[Callable[..., None]]:
    """`advance(n, **fields)` for a `progress_bar` while inside, or a no-op when not `enabled`.

    Args:
        enabled: draw the bar.
        description: see `progress_bar`, as are `total` and `options`.
    """
    if not enabled:
        yield lambda n=1, **fields: None
        return
    progress = progress_bar(description, total, **options)
    task = progress.task_ids[0]
    try:
        yield lambda n=1, **fields: progress.update(task, advance=n, **fields)
    finally:
        progress.stop()
