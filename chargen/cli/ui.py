"""Shared terminal output: the stderr console, rich progress bars over library callbacks, option parsing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from chargen.errors import UsageError

# Generated text and --json go to stdout; everything for the human (progress, logs, errors) here.
err_console = Console(stderr=True)
out_console = Console(highlight=False, soft_wrap=True)


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``10m``, ``1h30m``, ``1.5h``."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise UsageError(f"--time: cannot read {text!r}; use e.g. 90s, 10m, 1h30m")
        seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if seconds <= 0:
        raise UsageError(f"--time must be positive, got {text!r}")
    return seconds


@contextmanager
def download_progress(quiet: bool = False) -> Iterator[Any]:
    """A ``ProgressFn`` for corpus downloads that draws a transfer bar on stderr."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=quiet,
    ) as progress:
        tasks: dict[str, Any] = {}

        def update(description: str, done: int, total: int | None) -> None:
            if description not in tasks:
                tasks[description] = progress.add_task(description, total=total)
            progress.update(tasks[description], completed=done, total=total)

        yield update


def grid_progress(description: str, total: int, quiet: bool = False) -> Progress:
    """A bar for a grid of runs or evaluation batches."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=err_console,
        disable=quiet,
    )
    progress.add_task(description, total=total, status="")
    return progress


def sample_panel(step: int, loss: float, text: str) -> Panel:
    return Panel(text, title=f"sample at step {step:,} (loss {loss:.3f})", title_align="left",
                 border_style="cyan", expand=False)
