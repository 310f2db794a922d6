"""A Rich progress bar on stderr for long runs; only on a terminal, never with --json or --quiet."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from collections.abc import Iterator

from collections.abc import Callable

# What the engine calls after each chunk: rows done, and the share of the input read (None: unknown).
ProgressCallback = Callable[[int, float | None], None]


@contextmanager
def progress_bar(enabled: bool, bytes_per_row: int) -> Iterator[ProgressCallback | None]:
    """Yields the engine's progress callback, or None when no bar is to be shown.

    Shows the share of the input read, rows and bytes of scores done, the rate and the time left.
    Rich is imported only when a bar may be shown.
    """
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    columns = (
        TextColumn("[bold]scoring"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.fields[rows]:,} rows · {task.fields[done]}"),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("score", total=1.0, rows=0, done="", rate="")

        def update(rows: int, fraction: float | None) -> None:
            elapsed = bar.tasks[task].elapsed or 0.0
            done = rows * bytes_per_row
            rate = f"{done / elapsed / 1e6:,.0f} MB/s" if elapsed > 0 else ""
            bar.update(task, completed=fraction or 0.0, rows=rows, done=f"{done / 1e6:,.0f} MB", rate=rate)

        yield update
