"""Shared terminal output: the stderr console, rich progress bars over library callbacks, option parsing."""

from __future__ import annotations

import inspect
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
from rich.text import Text
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

from chargen.errors import CorpusError, UsageError
from chargen.outputs import check_folder, make_folder  # noqa: F401 - make_folder: for the commands
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


def check_out_dir(path: Path, holds: tuple[str, ...] = ()) -> Path:
    """Refuse an output folder that cannot be made or written, or that is a run's, before any work (and
    without creating it), so a bad --out is one line up front, not a traceback after the runs."""
    return check_folder(path, param="out", holds=holds)


def markup(template: str, **values: object) -> str:
    """Rich markup with ``{name}`` fields filled from ``values``: strings and paths escaped, so that a path
    such as ``run[/]`` or ``notes [draft]`` is shown as typed, never read as markup (numbers keep their
    format specs: ``{step:,}``)."""
    return template.format(**{k: v if isinstance(v, (int, float)) else escape(str(v)) for k, v in values.items()})


def say(template: str, **values: object) -> None:
    """One line on stderr from ``markup(template, **values)``."""
    err_console.print(markup(template, **values), highlight=False, soft_wrap=True)


@contextmanager
def working(message: str, quiet: bool = False) -> Iterator[None]:
    """A spinner with ``message`` and the seconds elapsed on stderr (a terminal only) while a long step runs
    that reports no progress of its own; it leaves no line behind."""
    if quiet or not err_console.is_terminal:
        yield
        return
    with err_console.status(escape(message) + "...", spinner="dots"):
        yield


THREADS_HELP = ("Torch CPU threads, 1 to this machine's cores. Default: 1 for models under 2M parameters "
                "(more threads only spin), else the cores.")


def use_threads(threads: int | None, model: Any = None) -> int:
    """The one thread rule of every command: ``--threads`` if given (bounded by the cores), else by the model's size."""
    from chargen.runtime import use_threads as set_threads

    parameters = sum(p.numel() for p in model.parameters()) if model is not None else 0
    return set_threads(threads, parameters)


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
    return Panel(Text(text), title=f"sample at step {step:,} (loss {loss:.3f})", title_align="left",
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


EXAMPLES = "[dim]Examples:[/]"


def reflow(doc: str) -> str:
    """A command's help as rich renders it well at any width: each prose paragraph on one line (rich wraps
    it; a docstring's own line breaks would break sentences in the middle at 80 columns), examples kept
    line by line under one ``Examples:`` heading, each indented by two spaces."""
    paragraphs = [p for p in (inspect.cleandoc(doc) if doc else "").split("\n\n") if p.strip()]
    out: list[str] = []
    examples = False
    for paragraph in paragraphs:
        lines = paragraph.splitlines()
        heading = re.fullmatch(r"\[(dim|bold)\]Examples:?\[/\]:?", lines[0].strip())
        if heading or examples:
            body = lines[1:] if heading else lines
            shown = [wrapped for line in body if line.strip() for wrapped in _example_lines(line.strip())]
            if heading:
                out.append("\n".join([EXAMPLES, *shown]) if shown else EXAMPLES)
                examples = not shown  # a heading alone: the examples are the next paragraph
            else:
                out[-1] = "\n".join([out[-1], *shown])
                examples = False
            continue
        out.append(" ".join(line.strip() for line in lines))
    if len(out) > 1 and out[1].startswith(EXAMPLES):
        # typer dedents the text after the summary as a block: a blank first line keeps the examples' indent
        out[1] = "\n" + out[1]
    return "\n\n".join(out)


EXAMPLE_WIDTH = 74  # 80 columns less the margin, the indent and a continuation's " \\"


def _example_lines(command: str) -> list[str]:
    """One example, indented by two spaces; one longer than 80 columns is continued with `` \\`` before an
    option (still a command a shell runs as pasted), never wrapped by the terminal in the middle of a word.
    A trailing comment goes on its own line above the command."""
    found = re.search(r"\s+(\[dim\])?#\s*(.*?)(\[/\])?$", command)
    comment = [f"  [dim]# {found.group(2)}[/]"] if found else []
    words = re.findall(r"(?:'[^']*'|\"[^\"]*\"|\S)+", command[: found.start()] if found else command)
    lines: list[list[str]] = [[]]
    for word in words:
        width = EXAMPLE_WIDTH - (2 if len(lines) > 1 else 0)
        if lines[-1] and len(" ".join([*lines[-1], word])) > width:
            current = lines[-1]
            # carry the option a value belongs to onto the next line with it
            cut = len(current) - 1 if current[-1].startswith("-") and not word.startswith("-") else len(current)
            lines[-1] = current[:cut]
            lines.append(current[cut:])
        lines[-1].append(word)
    shown = [" ".join(line) for line in lines if line]
    return comment + [("  " if i == 0 else "    ") + line + (" \\" if i < len(shown) - 1 else "")
                      for i, line in enumerate(shown)]


def reflow_help(typer_app: Any) -> None:
    """``reflow`` every command's help, in ``typer_app`` and its groups (once, when the CLI is assembled)."""
    for command in typer_app.registered_commands:
        command.help = reflow(command.help or (command.callback.__doc__ if command.callback else "") or "")
    for group in typer_app.registered_groups:
        reflow_help(group.typer_instance)


def absolute_corpus(corpus: str | None) -> str | None:
    """A corpus that names a file, as its absolute path (what the run records, so that it can be found from
    any folder later); a registered name, or anything that is not a file, as given."""
    from chargen.data.corpora import load_registry

    if corpus is None or corpus in load_registry():
        return corpus
    path = Path(corpus).expanduser()
    try:
        return str(path.resolve()) if path.is_file() else corpus
    except OSError:
        return corpus  # the loader says what is wrong with it


def relocated_corpus(recorded: str, given: str | None, run: Path) -> str:
    """The training text of ``run``: ``given`` (--corpus) when the user points at it again, else the path the
    run recorded; a recorded file that is gone is one line saying so (its sha256 then checks a --corpus)."""
    from chargen.data.corpora import load_registry

    if given is not None:
        return absolute_corpus(given) or given
    if recorded in load_registry() or Path(recorded).expanduser().exists():
        return recorded
    raise CorpusError(f"the training text of {run} was {recorded}, which is no longer there (moved or deleted); "
                     "point at it with --corpus PATH (it is checked against the sha256 the run recorded)")
