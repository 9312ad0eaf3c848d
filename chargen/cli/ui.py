"""Shared terminal output: the stderr console, rich progress bars over library callbacks, option parsing."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
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
from chargen.paths import checkpoints_dir

# Cell names come from the registry (chargen.cells.CELLS) when the command runs: importing it here would
# import torch and slow `chargen --help`. A wrong name is refused with the registered ones listed; the
# names shown in help are the registry's, in its order (tests/test_cells.py holds the two equal).
CELL_NAMES = "rnn, lstm, momentum-rnn, momentum-lstm, phased-lstm, gru, momentum-gru"
CELLS_HELP = (f"Comma-separated registered cells: {CELL_NAMES} (default: each base cell beside its momentum "
              "version; a wrong name lists them all).")

# Generated text and --json go to stdout; everything for the human (progress, logs, errors) here.
err_console = Console(stderr=True)
if not err_console.is_terminal:
    # A log file or pipe has no width: do not cut progress and messages with "…" at 80 columns.
    err_console.width = max(err_console.width, 240)
out_console = Console(highlight=False, soft_wrap=True)


def say_note(note: str | None) -> None:
    """A dim remark on stderr (e.g. which checkpoint of a run was loaded); nothing for None."""
    if note:
        err_console.print(f"[dim]{escape(note)}[/]", highlight=False)


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
    if not seconds <= MAX_DURATION:  # a 330-digit number parses to inf
        raise UsageError(f"--time must be at most {MAX_DURATION // 86400:,} days, got {text[:40]!r}")
    return seconds


MAX_DURATION = 366 * 86400


def check_out_dir(path: Path) -> Path:
    """Refuse an output folder that cannot be made or written, before any work (and without creating it),
    so a bad --out is one line up front, not a traceback after the runs."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out: {path} is a file, not a folder")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"--out: cannot create {path}: {existing} is a file, not a folder")
    created: list[Path] = []
    try:  # the only sure test is to try: make the missing folders, then remove them again
        for folder in reversed([path, *path.parents]):
            if not folder.exists():
                folder.mkdir()
                created.append(folder)
        probe = path / f".chargen-write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise UsageError(f"--out: cannot create {path}: {e.strerror or e}") from None
    finally:
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:
                pass
    return path


@contextmanager
def download_progress(quiet: bool = False) -> Iterator[Any]:
    """A ``ProgressFn`` for corpus downloads that draws a transfer bar on stderr."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=quiet,
    )
    tasks: dict[str, Any] = {}

    def update(description: str, done: int, total: int | None) -> None:
        if not tasks:
            progress.start()  # only once there is something to draw: no blank lines otherwise
        if description not in tasks:
            tasks[description] = progress.add_task(description, total=total)
        progress.update(tasks[description], completed=done, total=total)

    try:
        yield update
    finally:
        if tasks:
            progress.stop()


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


def table_console() -> Console:
    """stdout: the terminal's width on a terminal; wide enough for a whole results table in a pipe or file."""
    if out_console.is_terminal:
        return out_console
    return Console(highlight=False, soft_wrap=False, width=max(out_console.width, 160))


def timestamped_dir(prefix: str) -> Path:
    """The default output folder of a command: ``checkpoints/<prefix>-<YYYYmmdd-HHMMSS>``."""
    return checkpoints_dir() / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


class LazyBar:
    """A ``grid_progress`` bar that appears with the first report, so that settings the library
    rejects before any work end as one error line with no bar drawn."""

    def __init__(self, description: str, total: int, quiet: bool) -> None:
        self.quiet = quiet
        self.progress = grid_progress(description, total, quiet)
        self.bar = self.progress.task_ids[0]
        self.started = False

    def update(self, **fields: Any) -> None:
        if not self.started:
            self.progress.start()
            self.started = True
        self.progress.update(self.bar, **fields)

    def print(self, message: str) -> None:
        """A line above the bar (nothing when quiet)."""
        if not self.quiet:
            self.progress.console.print(message, highlight=False)

    def __enter__(self) -> LazyBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self.progress.stop()
