"""`chargen report`: regenerate the Markdown report and its figures from saved results, running what is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape

from chargen.cli.app import app
from chargen.cli.ui import LazyBar, check_out_dir, err_console, say


class ReportProgress:
    """One line per experiment, and a bar for the runs inside a long one (compare, probe, gradients)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: LazyBar | None = None
        self.experiment = ""

    def on_line(self, message: str) -> None:
        self.close()
        if not self.quiet:
            err_console.print(f"[dim]report:[/] {escape(message)}", highlight=False)

    def on_grid(self, experiment: str, done: int, total: int, label: str) -> None:
        if self.bar is None or experiment != self.experiment:
            self.close()
            self.experiment, self.bar = experiment, LazyBar(experiment, total, self.quiet)
        self.bar.update(completed=done, status=label)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None

    def __enter__(self) -> ReportProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@app.command(rich_help_panel="Research")
def report(
    out: Annotated[Path, typer.Option(help="Report folder: report.md, figures/ and results/ (the measured JSON).")] = Path("docs/report"),
    quick: Annotated[bool, typer.Option("--quick", help="Small budgets for every missing experiment: checks the pipeline in a minute; the numbers mean nothing.")] = False,
    rerun: Annotated[Optional[list[str]], typer.Option(help="Measure this experiment again even if its results exist (repeatable): gradients, compare-classify, compare-lm, probe, reference, bptt, lm-samples, surnames, surnames-gen, hand-lstm, lstm-params, observations.", show_default=False)] = None,
    only: Annotated[Optional[list[str]], typer.Option(help="Run only these experiments (repeatable), e.g. one part per process; the report is written once every result exists. The baselines study (hours) runs only when named here, resuming where it stopped.", show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines or bars.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Run and write nothing: exit 1 with a line per problem unless OUT/report.md is what the saved results build, every number in it traced to them, every result present and written by its code's current version.")] = False,
) -> None:
    """Write a Markdown report whose every number comes from saved results, running what is missing.

    Covers momentum derived and measured, cell comparisons, the palindrome probe, BPTT, the LSTM
    and phased LSTM, samples and the surname models, and the course exercises (a map from each
    question to its section; the slow exercise studies are never run here: a missing one names
    its command).

    Experiments whose results are missing from OUT/results run first (the full ones take hours on a
    laptop CPU; --quick runs tiny ones).

    [dim]Examples:[/]
      chargen report --out docs/report
      chargen report --out docs/report --check     [dim]# CI: the committed report is what its results build[/]
      chargen report --out /tmp/report --quick
      chargen report --rerun lm-samples --rerun surnames
      chargen report --only probe --only reference   [dim]# in a second terminal: one part per core[/]
      chargen report --only baselines                [dim]# the baselines study, resumable (or: chargen study baselines)[/]
    """
    from chargen.report import build_report, check_report

    if check:
        problems = check_report(out, quick=quick)
        for problem in problems:
            err_console.print(escape(problem), highlight=False, soft_wrap=True)
        if problems:
            raise typer.Exit(1)
        say("[bold green]checked[/] {path}: every number traced, every result current", path=out / "report.md")
        return
    check_out_dir(out)  # never a run directory, never inside a shipped model

    with ReportProgress(quiet) as progress:
        path, _ = build_report(out, quick=quick, rerun=rerun or (), only=only or (), callbacks=progress)
    if path is not None:
        say("[bold green]done[/] {path}", path=path)
