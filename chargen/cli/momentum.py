"""`chargen momentum-study`: the momentum study's parts (solve rates with Wilson intervals, the adjoint check), resumable."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from chargen.cli.app import app
from chargen.cli.ui import err_console, markup, say, table_console

DEFAULT_OUT = Path("docs/report/results/momentum")
MARKDOWN = (".md", ".markdown")


@app.command("momentum-study", rich_help_panel="Research")
def momentum_study(
    only: Annotated[Optional[list[str]], typer.Option(help="Run only these parts (repeatable): adjoint, lstm-target, forget-bias, fair-rnn ([b]none[/]: run nothing, e.g. with --markdown). Default: all, in that order.", show_default=False)] = None,
    seeds: Annotated[int, typer.Option(help="Reported seeds per arm and length (0..N-1).")] = 10,
    steps: Annotated[int, typer.Option(help="Step budget per run (early stop at 99.5% held out).")] = 3000,
    threads: Annotated[int, typer.Option(help="Torch CPU threads, 1 to this machine's cores (1: the runs are deterministic on one machine).")] = 1,
    minutes: Annotated[Optional[float], typer.Option(help="Each run also stops at this many CPU-minutes of its own process (not wall time); a new budget keeps its runs apart from the step-budget ones. Default: the step budget only.", show_default=False)] = None,
    stop_after: Annotated[Optional[float], typer.Option(help="Start no run after this many wall-clock minutes; the part resumes next time. Default: no limit.", show_default=False)] = None,
    out: Annotated[Path, typer.Option(help="Results folder: one sub-folder per part (runs.jsonl, summary.json).")] = DEFAULT_OUT,
    markdown: Annotated[Optional[Path], typer.Option(help="Then write the study's report sections (Markdown, from the saved results) to this .md file.", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the --markdown file if it exists.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No line per finished run.")] = False,
) -> None:
    """Does momentum help recurrent cells? Run the study's parts; each saves every run as it finishes and resumes.

    Full study on 2 quiet CPU cores: several hours; run it in parts, e.g. one per process or per day.

    [dim]Examples:[/]
      chargen momentum-study --only adjoint
      chargen momentum-study --only lstm-target --seeds 10
      chargen momentum-study --only forget-bias --stop-after 60
      chargen momentum-study --only none --markdown docs/report/momentum.md
    """
    import math

    from chargen import outputs
    from chargen.experiments.momentum import parts, run_adjoint, run_study
    from chargen.errors import UsageError
    from chargen.runtime import check_threads

    names = [n for n in (only or ["adjoint", *parts()]) if n != "none"]  # "none": only rebuild summaries/Markdown
    known = ["adjoint", *parts()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"--only: unknown part {unknown[0]!r}; parts: {', '.join(known)}")
    if seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {seeds}")
    if steps < 1:
        raise UsageError(f"--steps must be at least 1, got {steps}")
    if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
        raise UsageError(f"--minutes must be a positive number, got {minutes}")
    if stop_after is not None and not (math.isfinite(stop_after) and stop_after > 0):
        raise UsageError(f"--stop-after must be a positive number, got {stop_after}")
    check_threads(threads)
    if names:
        outputs.check_folder(out, param="out")
    if markdown is not None:
        outputs.check_file(markdown, param="markdown", force=force, suffixes=MARKDOWN)
    deadline = time.time() + stop_after * 60 if stop_after is not None else None
    cpu_limit = 60.0 * minutes if minutes is not None else None

    def progress_line(message: str) -> None:
        if not quiet:
            err_console.print(escape(message), highlight=False)

    if "adjoint" in names:
        checks = run_adjoint(out)["checks"]
        for c in checks:
            table_console().print(f"adjoint mu={c['mu']:g}: max |autograd - plain-RNN recursion| = {c['max_abs_diff']:.1e}; "
                                  f"per-step decay: dL/dh {c['hidden_grad_decay']:.3f}, dL/dx {c['input_grad_decay']:.3f}")
    probe_parts = [n for n in names if n != "adjoint"]
    if probe_parts:
        results = run_study(out, probe_parts, seeds=seeds, steps=steps, threads=threads, progress=progress_line, deadline=deadline,
                            cpu_limit=cpu_limit)
        for name, summary in results.items():
            state = "complete" if summary["complete"] else "incomplete (run again to resume)"
            table_console().print(markup("[bold]{name}[/] ({state})", name=name, state=state))
            for row in summary["rows"]:
                if row["n"]:
                    table_console().print(f"  {row['arm']} T={row['length']}: {row['solved']}/{row['n']} solved, "
                                          f"95% CI [{row['ci_low']:.2f}, {row['ci_high']:.2f}], median steps to solve "
                                          f"{row['steps_to_solve_median']}")
    if markdown is not None:
        from chargen.experiments.momentum import summarise_part
        from chargen.report.momentum import momentum_report

        for part in parts().values():  # summaries from the saved runs, whoever wrote them
            if (out / part.name).is_dir():
                summarise_part(part, out, cpu_limit)
        outputs.write_text(markdown, momentum_report(out), param="markdown", force=force, suffixes=MARKDOWN)
        say("wrote [bold]{path}[/]", path=markdown)
    if names:
        say("saved under [bold]{path}[/]", path=out)
