"""`chargen study`: run a registered study's parts resumably (one line per finished run, with an ETA), then its summary."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape

from chargen.cli.app import app
from chargen.cli.ui import check_folder, err_console, markup, say, table_console


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class StudyLines:
    """Renders the study's progress events: a line per finished run (with the ETA) and every note."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def __call__(self, event: Any) -> None:
        if event.kind == "note":
            err_console.print(f"[dim]{escape(event.message)}[/]", highlight=False)
        elif event.kind == "end" and not self.quiet:
            record = event.record or {}
            loss = record.get("val_loss", record.get("accuracy"))
            shown = f" {loss:.4f}" if isinstance(loss, float) else ""
            err_console.print(f"[{event.done}/{event.total}] {escape(event.spec.label)}:{shown} "
                              f"({record.get('wall_seconds', 0):.0f}s; ETA {_duration(event.eta_seconds)})",
                              highlight=False)


@app.command("study", rich_help_panel="Research")
def study(
    name: Annotated[str, typer.Argument(help="The study: baselines, momentum-digits or sampling (or --list).", show_default=False)] = "",
    only: Annotated[Optional[list[str]], typer.Option(help="Run only these parts (repeatable; see --list).", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option(help="Results folder (default: the study's folder under docs/report/results).", show_default=False)] = None,
    seeds: Annotated[Optional[int], typer.Option(help="Seeds 0..N-1 instead of the study's own. Default: the study's seeds.", show_default=False)] = None,
    minutes: Annotated[Optional[float], typer.Option(help="Each run's budget in CPU-minutes of its own process (not wall time), instead of the study's. Default: the study's budgets.", show_default=False)] = None,
    threads: Annotated[int, typer.Option(help="Torch CPU threads per run (1: two studies share two cores).")] = 1,
    stop_after: Annotated[Optional[float], typer.Option(help="Start no run after this many wall-clock minutes; rerun the same command to resume. Default: no limit.", show_default=False)] = None,
    list_parts: Annotated[bool, typer.Option("--list", help="List the studies and their parts, with runs done and planned; run nothing.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No line per finished run.")] = False,
) -> None:
    """Run a study's runs that have not finished, each saved the moment it ends; then rewrite its summary.json.

    Killed at any moment, the same command resumes and loses at most the run in flight. A changed
    grid or budget is kept apart from the saved runs by its key.

    [dim]Examples:[/]
      chargen study --list
      chargen study baselines --only grimm-1m --only grimm-5m
      chargen study baselines --only tinyshakespeare-5m --stop-after 60
      chargen study sampling --only grimm-grader --only grimm
    """
    from chargen.errors import UsageError
    from chargen.experiments.studies import STUDIES, build_study, run_study

    if list_parts:
        for key, definition in STUDIES.items():
            if name and key != name:
                continue
            built = build_study(key, out if name else None, seeds=seeds, minutes=minutes, threads=threads)
            table_console().print(markup("[bold]{key}[/]: {about} ({out})", key=key, about=definition.about, out=built.out))
            for part_name, part in built.parts.items():
                done = len(built.records(part_name))
                planned = len(part.specs(built.saved(part_name)))
                table_console().print(f"  {part_name}: {done}/{planned} runs  {escape(part.description)}")
            for note in built.notes:
                table_console().print(f"  [dim]{escape(note)}[/]")
        return
    if not name:
        raise UsageError(f"name a study: {', '.join(STUDIES)} (or --list)", params="study")
    if out is not None:  # a study resumes into its own folder, so only a file, a run or a shipped model is refused
        check_folder(out, param="out")
    if stop_after is not None and not stop_after > 0:
        raise UsageError(f"--stop-after must be positive, got {stop_after}")
    deadline = time.time() + 60 * stop_after if stop_after is not None else None
    outcome, summary = run_study(name, out, only=only or (), seeds=seeds, minutes=minutes, threads=threads,
                                 progress=StudyLines(quiet), deadline=deadline)
    state = "complete" if outcome.complete else f"{outcome.pending} run(s) left: rerun the same command to resume"
    say("[bold]{name}[/]: ran {ran}, found {found} finished; {state}", name=name, ran=outcome.ran, found=outcome.found,
        state=state)
    for part_name, part in summary.get("parts", {}).items():
        if only and part_name not in only:
            continue
        for row in part.get("rows", []):
            loss = row.get("val_loss") or {}
            if loss.get("n"):
                low, high = loss["mean_ci"]
                table_console().print(markup("  {part} {family}: val {mean:.3f} [{low:.3f}, {high:.3f}] over {n} seed(s)",
                                             part=part_name, family=row.get("family", ""), mean=loss["mean"], low=low,
                                             high=high, n=loss["n"]))
    for corpus, found in summary.get("corpora", {}).items():  # the sampling study: the rule's pick per corpus
        chosen = (found.get("recommendation") or {}).get("label")
        if chosen and (not only or corpus in only):
            table_console().print(markup("  {corpus}: recommended {chosen} ({runs}/{planned} runs)", corpus=corpus,
                                         chosen=chosen, runs=found["runs"], planned=found["planned"]))
