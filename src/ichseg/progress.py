"""The one progress-bar layout of ichseg's long loops (rich): description, bar, done/total,
elapsed, remaining."""

from __future__ import annotations

from typing import Any


def progress_bar(*, enabled: bool = True, transient: bool = True) -> Any:
    """A :class:`rich.progress.Progress` (use as a context manager; ``enabled=False`` hides it)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=transient,
    )
