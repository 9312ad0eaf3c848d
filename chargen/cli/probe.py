"""`chargen probe`: the palindrome memorisation probe — held-out accuracy of each cell against length."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from chargen.cli.app import app
from chargen.cli.ui import CELLS_HELP, LazyBar, check_out_dir, make_folder, say, table_console, timestamped_dir
from chargen.errors import RunInterrupted, UsageError
from chargen.tracking import write_json

RESULTS_JSON = "probe.json"
FIGURE_PNG = "probe.png"
PARTIAL_JSON = "probe.partial.json"
GRID = "Grid"
MODEL = "Model"
OUTPUT = "Output"


def parse_lengths(spec: str) -> list[int]:
    """``5:35:5`` (start:stop:step, stop included), ``5:35`` (step 1) or a list ``5,10,20``."""
    text = spec.replace(" ", "")
    hint = "use start:stop:step with the stop included (e.g. 5:35:5) or a list (e.g. 5,10,20)"
    if re.fullmatch(r"\d+:\d+(:\d+)?", text):
        start, stop, *rest = (int(p) for p in text.split(":"))
        step = rest[0] if rest else 1
        if step < 1:
            raise UsageError(f"--lengths {spec!r}: the step must be positive; {hint}")
        if start > stop:
            raise UsageError(f"--lengths {spec!r}: start {start} is past stop {stop}; {hint}")
        return list(range(start, stop + 1, step))
    if re.fullmatch(r"\d+(,\d+)*,?", text):
        return [int(p) for p in text.split(",") if p]
    raise UsageError(f"--lengths: cannot read {spec!r}; {hint}")


def probe_table(results: dict[str, Any]) -> Table:
    """Cells down, lengths across: held-out accuracy, mean ± std over seeds."""
    table = Table(title=f"held-out accuracy, mean ± std over {len(results['seeds'])} seed(s)", title_justify="left")
    table.add_column("cell", style="bold")
    for length in results["lengths"]:
        table.add_column(f"T={length}", justify="right")
    table.add_column(">= 90% up to", justify="right")
    for cell in results["cells"]:
        rows = {r["length"]: r for r in results["summary"] if r["cell"] == cell}
        values = []
        for length in results["lengths"]:
            row = rows.get(length)
            text = "-" if row is None else f"{row['mean']:.3f} ± {row['std']:.3f}" if row["n"] > 1 else f"{row['mean']:.3f}"
            if row is not None and "solved" in row:
                low, high = row["solve_ci"]
                text += f"\n{row['solved']}/{row['n']} solved [{low:.2f}, {high:.2f}]"
            values.append(text)
        kept = results["longest_90"].get(cell)
        table.add_row(cell, *values, f"T={kept}" if kept else "none")
    return table


def probe_notes(results: dict[str, Any]) -> str:
    """The table's reading guide: chance, budget, stopping rule and the last column."""
    steps = results["settings"]["steps"]
    if len(set(steps.values())) > 1:
        budget = ", ".join(f"{s:,} at T={t}" for t, s in steps.items())
    else:
        budget = f"{next(iter(steps.values())):,}"
    init = results["settings"].get("init", "pytorch")  # results saved before the init was recorded used PyTorch's
    return (f"{'paper' if init == 'paper' else 'PyTorch'} initialisation; chance is 0.100. Step budget per run: {budget}; a run stops early once held-out accuracy "
            f"is >= 99.5% at 2 evaluations in a row. Solved: final held-out accuracy >= 99%, with the rate's "
            f"95% Wilson interval. Last column: the longest T up to which the mean stays >= 90%.")


class ProbeBar(LazyBar):
    """``run_probe``'s progress drawn as one rich bar over the grid, a line per finished run above it."""

    def __init__(self, total: int, quiet: bool) -> None:
        super().__init__("probe", total, quiet)
        self.finished: list[dict[str, Any]] = []

    def __call__(self, done: int, total: int, info: dict[str, Any]) -> None:
        name = f"{info['cell']} T={info['length']} seed {info['seed']}"
        self.update(completed=done, status=name)
        if info["event"] == "end":
            self.finished.append({k: v for k, v in info.items() if k != "event"})
            how = "stopped early" if info["stopped_early"] else "full budget"
            self.print(f"[green]{name}[/]: accuracy {info['accuracy']:.3f} after {info['steps']:,} steps "
                       f"({how}, {info['seconds']:.1f}s)")


@app.command(rich_help_panel="Research")
def probe(
    cells: Annotated[Optional[str], typer.Option(help=CELLS_HELP, rich_help_panel=GRID, show_default=False)] = None,
    lengths: Annotated[str, typer.Option(help="Palindrome lengths T: [b]start:stop:step[/] (stop included) or a list [b]5,10,20[/].", rich_help_panel=GRID)] = "5:35:5",
    seeds: Annotated[int, typer.Option(help="Seeds per (cell, length): 0..N-1. A seed fixes the weights and the training palindromes.", rich_help_panel=GRID)] = 3,
    steps: Annotated[Optional[int], typer.Option(help="Step budget of every run (default: 50 per digit of T, at most 500).", rich_help_panel=GRID)] = None,
    hidden: Annotated[int, typer.Option(help="Hidden units.", rich_help_panel=MODEL)] = 128,
    layers: Annotated[int, typer.Option(help="Stacked recurrent layers.", rich_help_panel=MODEL)] = 1,
    embed: Annotated[int, typer.Option(help="Digit embedding size.", rich_help_panel=MODEL)] = 10,
    lr: Annotated[float, typer.Option(help="RMSProp learning rate.", rich_help_panel=MODEL)] = 1e-3,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Palindromes per batch.", rich_help_panel=MODEL)] = 128,
    init: Annotated[str, typer.Option(help="Weight init: [b]paper[/] (orthogonal W_ih, identity W_hh, forget bias 2: what the cells can do) or [b]pytorch[/] (uniform; an LSTM stays near chance from T = 20 on the default budget).", rich_help_panel=MODEL)] = "paper",
    forget_bias: Annotated[Optional[float], typer.Option("--forget-bias", help="LSTM-family cells: forget-gate bias at init, b_ih\\[f] + b_hh\\[f]. Default: the init's own (paper: 2; pytorch: uniform like the other biases).", rich_help_panel=MODEL)] = None,
    mu: Annotated[Optional[float], typer.Option(help="Momentum cells: momentum mu (default 0.6).", rich_help_panel=MODEL)] = None,
    step_size: Annotated[Optional[float], typer.Option("--s", help="Momentum cells: step size s (default 0.6).", rich_help_panel=MODEL)] = None,
    threads: Annotated[int, typer.Option(help="Torch CPU threads (these small nets gain little from more than 1, and lose badly on a busy machine).", rich_help_panel=GRID)] = 1,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N, mps or auto.", rich_help_panel=GRID)] = "cpu",
    out: Annotated[Optional[Path], typer.Option(help=f"Folder for {RESULTS_JSON}, {FIGURE_PNG} and each run as it ends (probe/runs.jsonl: the same command with the same --out resumes). Default: checkpoints/probe-<time>.", rich_help_panel=OUTPUT)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout instead of the table.", rich_help_panel=OUTPUT)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or per-run lines.", rich_help_panel=OUTPUT)] = False,
) -> None:
    """Where does each cell stop remembering? Held-out accuracy on palindromes of growing length.

    Trains every (cell, palindrome length, seed) to predict a palindrome's last digit, then prints
    held-out accuracy per cell and length and saves JSON and a plot.

    [dim]Examples:[/]
      chargen probe --cells rnn,lstm,momentum-rnn,momentum-lstm --lengths 5:35:5 --seeds 3
      chargen probe --cells lstm --lengths 5,10 --seeds 1 --steps 300 --json
      chargen probe --cells lstm,momentum-lstm --init paper --lengths 50 --seeds 10 --steps 3000 --mu 0.6 --s 0.6
    """
    from chargen.plots import plot_accuracy_vs_length
    from chargen.cells import resolve_cells
    from chargen.runtime import check_threads, resolve_device, resolve_seeds
    from chargen.experiments.compare import DEFAULT_CELLS
    from chargen.experiments.probe import ProbeSettings, longest_kept, resolve_lengths, run_probe, summarise

    # Everything the library would reject is checked before the bar appears or any run starts.
    names = resolve_cells(cells or DEFAULT_CELLS)
    grid_lengths = resolve_lengths(parse_lengths(lengths))
    seed_list = resolve_seeds(seeds)
    resolve_device(device)
    settings = ProbeSettings(steps=steps, hidden_size=hidden, num_layers=layers, embed_dim=embed, lr=lr,
                             batch_size=batch_size, device=device, init=init, forget_bias=forget_bias, mu=mu,
                             s=step_size)
    from chargen.models import ModelConfig, settings_for_cell

    for name in names:  # bad init, mu or s fail here, before any run
        ModelConfig(cell=name, engine="loop", **settings_for_cell(name, {"init": init, "forget_bias": forget_bias,
                                                                         "mu": mu, "s": step_size})).check()
    out_dir = check_out_dir(out or timestamped_dir("probe"), holds=(RESULTS_JSON, FIGURE_PNG))
    check_threads(threads)

    bar = ProbeBar(len(names) * len(grid_lengths) * len(seed_list), quiet)
    try:
        with bar:
            results = run_probe(names, grid_lengths, seed_list, settings=settings, threads=threads, progress=bar,
                                out=out_dir)
    except RunInterrupted as e:
        if bar.finished:  # keep what was measured: a long grid is worth a partial table
            summary = summarise(bar.finished, names, grid_lengths)
            partial = {"cells": names, "lengths": grid_lengths, "seeds": seed_list, "runs": bar.finished,
                       "summary": summary, "longest_90": longest_kept(summary, names), "partial": True}
            write_json(make_folder(out_dir) / PARTIAL_JSON, partial)
            raise RunInterrupted(f"{e}; the {len(bar.finished)} finished runs are in {out_dir / PARTIAL_JSON}",
                                 e.signum) from None
        raise
    results_path = make_folder(out_dir) / RESULTS_JSON
    write_json(results_path, results)
    figure = plot_accuracy_vs_length(results, out_dir / FIGURE_PNG)
    if as_json:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
    else:
        console = table_console()
        console.print(probe_table(results))
        console.print(probe_notes(results), style="dim")
    say("[bold green]done[/] {runs:,} runs in {seconds:.0f}s; saved [bold]{results}[/] and [bold]{figure}[/]",
        runs=len(results["runs"]), seconds=results["elapsed_s"], results=results_path, figure=figure)
