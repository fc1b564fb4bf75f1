"""What every ``marlops`` command module shares: the output consoles, the tick progress bar, error lines.

The command groups live in ``marlops.<package>.commands`` (``marlops.cli`` assembles them); they print
through these consoles so that output, and what tests capture of it, goes one way. Light to import: rich
only, no typer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # errors unwrapped, so the row and column stay on one line
DEFAULT_DATA = Path("data")  # where the commands write datasets and the embedded stores by default


def print_error(message: object, label: str = "error") -> None:
    """``label message`` in red on stderr (the caller exits with its code)."""
    err_console.print(f"[red]{label}[/red] {message}")


def tick_progress(total: int, label: str) -> tuple[Progress, Callable[[int], None]]:
    """A progress bar over ``total`` ticks and the callable that advances it by n."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("ticks"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    task = progress.add_task(label, total=total)
    return progress, lambda n: progress.advance(task, n)
