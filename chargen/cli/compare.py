"""`chargen compare`: cells side by side under one budget (and `--grid` sweeps with tuned learning rates)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from chargen.cli.app import app
from chargen.cli.ui import (CELLS_HELP, LazyBar, check_out_dir, download_progress, err_console, parse_duration,
                            say, table_console, timestamped_dir)
from chargen.errors import UsageError

MODEL = "Model"
DATA = "Data"
BUDGET = "Budget"
OUTPUT = "Output"


def _fmt(stat: dict[str, Any] | None, digits: int = 3, scale: float = 1.0) -> str:
    """``mean ± std`` of a stats dict, ``-`` when nothing was measured."""
    if not stat or stat.get("mean") is None:
        return "-"
    mean, std = stat["mean"] * scale, (stat["std"] or 0.0) * scale
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if stat["n"] > 1 else f"{mean:.{digits}f}"


def _fmt_int(stat: dict[str, Any] | None) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    return f"{stat['mean']:,.0f} ± {stat['std']:,.0f}" if stat["n"] > 1 else f"{stat['mean']:,.0f}"


def compare_table(result: Any) -> Table:
    """The comparison as a rich table: one row per cell, mean ± std over seeds."""
    n = len(result.seeds)
    acc_label = {"held_out": "held-out", "final": "val"}.get((result.accuracy_key or ".").split(".")[0], "")
    table = Table(title=f"chargen compare: {result.task}, {n} seed(s) per cell, mean ± std",
                  caption=f"threshold {result.threshold:.4f} = {result.threshold_rule}; train s: the training "
                          f"steps alone (no evaluations or checkpoints); wall s: the whole run",
                  title_justify="left", caption_justify="left")
    table.add_column("cell", style="bold")
    table.add_column("params", justify="right")
    table.add_column("val loss", justify="right")
    if result.accuracy_key:
        table.add_column(f"{acc_label} acc", justify="right")
    table.add_column("steps to thr", justify="right")
    table.add_column("s to thr", justify="right")
    table.add_column("steps", justify="right")
    table.add_column("train s", justify="right")
    table.add_column("wall s", justify="right")
    table.add_column(f"{result.unit}/s", justify="right")
    for cell in result.cells:
        row = result.summary[cell]
        reached = f" ({row['reached_threshold']}/{row['runs']})" if row["reached_threshold"] < row["runs"] else ""
        cells = [cell, f"{row['parameters']:,}" if row["parameters"] else "-", _fmt(row["val_loss"], 4)]
        if result.accuracy_key:
            cells.append(_fmt(row["accuracy"], 1, 100.0) + ("%" if row["accuracy"]["mean"] is not None else ""))
        cells += [_fmt_int(row["steps_to_threshold"]) + reached, _fmt(row["seconds_to_threshold"], 1),
                  _fmt_int(row["steps"]), _fmt(row["train_seconds"], 1), _fmt(row["wall"], 1),
                  _fmt_int(row["units_per_second"])]
        table.add_row(*cells)
    return table


class GridProgress(LazyBar):
    """``compare``'s progress function drawn as one rich bar over the grid of runs."""

    def __call__(self, done: int, total: int, info: dict[str, Any]) -> None:
        name = f"{info['cell']} seed {info['seed']}"
        if info["event"] == "start":
            self.update(completed=done, status=name)
        elif info["event"] == "step":
            of = f"/{info['total_steps']:,}" if info.get("total_steps") else ""
            self.update(status=f"{name}  step {info['step']:,}{of}  loss {info['loss']:.3f}")
        else:
            run = info["run"]
            self.update(completed=done, status=name)
            self.print(f"[green]{name}[/]: val_loss {run.final.get('val_loss', float('nan')):.4f} after "
                       f"{run.steps:,} steps ({run.train_seconds:.1f}s of training steps, {run.wall:.1f}s in all)")


@app.command(rich_help_panel="Research")
def compare(
    task: Annotated[str, typer.Option(help="Task: [b]lm[/], [b]classify[/], [b]generate[/] or [b]palindrome[/].", rich_help_panel=DATA)] = "lm",
    cells: Annotated[Optional[str], typer.Option(help=CELLS_HELP, rich_help_panel=MODEL, show_default=False)] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per cell (0..N-1); every cell sees the same data and seeds.", rich_help_panel=BUDGET)] = 3,
    steps: Annotated[Optional[int], typer.Option(help="Step budget per run (default: the task's).", rich_help_panel=BUDGET)] = None,
    time_limit: Annotated[Optional[str], typer.Option("--time", help="Wall-clock budget per run, e.g. 90s, 2m.", rich_help_panel=BUDGET)] = None,
    corpus: Annotated[Optional[str], typer.Option("--corpus", "-c", help="Corpus name or text file (lm; classify/generate: the names corpus).", rich_help_panel=DATA)] = None,
    length: Annotated[Optional[int], typer.Option(help="Palindrome task: palindrome length T. Default: 10.", rich_help_panel=DATA)] = None,
    seq_len: Annotated[Optional[int], typer.Option("--seq-len", help="LM: characters per truncated-BPTT chunk. Default: the task's (30).", rich_help_panel=DATA)] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", "-b", help="Sequences per batch. Default: the task's.", rich_help_panel=DATA)] = None,
    hidden: Annotated[Optional[int], typer.Option(help="Hidden units per layer. Default: the task's.", rich_help_panel=MODEL)] = None,
    layers: Annotated[Optional[int], typer.Option(help="Stacked recurrent layers. Default: the task's.", rich_help_panel=MODEL)] = None,
    embed: Annotated[Optional[int], typer.Option(help="Character embedding size. Default: the task's.", rich_help_panel=MODEL)] = None,
    mu: Annotated[Optional[float], typer.Option(help="Momentum cells: momentum mu. Default: 0.6.", rich_help_panel=MODEL)] = None,
    step_size: Annotated[Optional[float], typer.Option("--s", help="Momentum cells: step size s. Default: as --mu.", rich_help_panel=MODEL)] = None,
    init: Annotated[Optional[str], typer.Option(help="Weight init of every cell: [b]pytorch[/] or [b]paper[/] (orthogonal W_ih, identity W_hh, forget bias 2).", rich_help_panel=MODEL)] = None,
    forget_bias: Annotated[Optional[float], typer.Option("--forget-bias", help="LSTM-family cells: forget-gate bias at init, b_ih\\[f] + b_hh\\[f]. Default: the init's own (paper: 2; pytorch: uniform like the other biases).", rich_help_panel=MODEL)] = None,
    grid: Annotated[Optional[list[str]], typer.Option(help="Sweep instead (repeatable): [b]mu=0,0.3,0.6,0.9[/], [b]s=...[/], [b]lr=1e-3,3e-3[/], [b]forget-bias=...[/]; each variant at its best lr on validation, the mu=0, s=1 control always in.", rich_help_panel=MODEL, show_default=False)] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate (default: the task's).", rich_help_panel=BUDGET)] = None,
    eval_every: Annotated[Optional[int], typer.Option(help="Steps between validations (default: a twentieth of --steps).", rich_help_panel=BUDGET)] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Validation loss for 'steps to threshold' (default: the worst cell's mean final loss).", rich_help_panel=OUTPUT)] = None,
    held_out: Annotated[bool, typer.Option("--held-out/--no-held-out", help="Also evaluate each model on the task's held-out set (classify: test split).", rich_help_panel=OUTPUT)] = True,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.", rich_help_panel=BUDGET)] = "auto",
    threads: Annotated[Optional[int], typer.Option(help="Torch CPU threads per run (the runs go one after another). Default: 1 for models under 2M parameters, else the cores.", rich_help_panel=BUDGET)] = None,
    out: Annotated[Optional[Path], typer.Option(help="Folder for compare.json, compare.png and the runs' logs (default: a new folder compare-TASK-TIME under checkpoints/).", rich_help_panel=OUTPUT)] = None,
    keep_weights: Annotated[bool, typer.Option("--keep-weights", help="Keep every run's checkpoint under OUT/runs/ (default: logs only).", rich_help_panel=OUTPUT)] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON instead of a table.", rich_help_panel=OUTPUT)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.", rich_help_panel=OUTPUT)] = False,
) -> None:
    """Train several cells under the same budget, data and seeds; print a table and save JSON + a loss plot.

    [dim]Examples:[/]
      chargen compare --task classify --cells rnn,momentum-rnn,lstm,momentum-lstm --seeds 3
      chargen compare --task lm --corpus grimm --seeds 2 --steps 300 --hidden 128
      chargen compare --task palindrome --length 20 --cells rnn,lstm --time 1m
      chargen compare --task palindrome --length 20 --cells momentum-rnn --init paper --grid mu=0,0.3,0.6,0.9 --grid lr=1e-3,3e-3
    """
    from chargen.cells import resolve_cells
    from chargen.experiments.compare import CURVES_PNG, DEFAULT_CELLS, RESULTS_JSON, compare as run_compare
    from chargen.runtime import check_threads, resolve_seeds
    from chargen.tasks import build_task, task_names
    from chargen.tasks.resolve import resolve_options

    if task not in task_names():
        raise UsageError(f"--task: unknown task {task!r}; known tasks: {', '.join(task_names())}")
    names = resolve_cells(cells or DEFAULT_CELLS)
    seed_list = resolve_seeds(seeds)
    check_threads(threads)
    train: dict[str, Any] = {"device": device}
    if steps is not None:
        train["steps"] = steps
    if time_limit is not None:
        train["time_limit"] = parse_duration(time_limit)
    for key, value in (("lr", lr), ("eval_every", eval_every), ("threads", threads)):
        if value is not None:
            train[key] = value
    model: dict[str, Any] = {k: v for k, v in {"hidden_size": hidden, "num_layers": layers, "embed_dim": embed}.items()
                             if v is not None}
    model.update({k: v for k, v in {"mu": mu, "s": step_size, "init": init, "forget_bias": forget_bias}.items()
                  if v is not None})
    task_options = {k: v for k, v in {"corpus": corpus, "length": length, "seq_len": seq_len,
                                      "batch_size": batch_size}.items() if v is not None}
    out_dir = out or timestamped_dir(f"compare-{task}")

    # Build the task once up front: its options are checked before any run, and a corpus not yet
    # cached is fetched here with its own bar (rich draws one live display at a time).
    with download_progress(quiet) as fetch:
        build_task(task, seed=seed_list[0], progress=fetch, **resolve_options(task, task_options))
    check_out_dir(out_dir)
    if grid:
        _sweep(task, names, grid, seed_list, task_options, model, train, out_dir, as_json, quiet)
        return
    grid = GridProgress("compare", len(names) * len(seed_list), quiet)
    with grid:
        result = run_compare(task, names, seed_list, task_options=task_options, model=model, train=train,
                             threshold=threshold, held_out=held_out, keep_weights=keep_weights, out_dir=out_dir,
                             progress=grid)
    if as_json:
        payload = {"results": str(out_dir / RESULTS_JSON), "figure": str(out_dir / CURVES_PNG), "task": result.task,
                   "threshold": result.threshold, "threshold_rule": result.threshold_rule,
                   "accuracy_key": result.accuracy_key, "summary": result.summary}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        table_console().print(compare_table(result))
    say("saved [bold]{json}[/] and [bold]{png}[/] ({seconds:.0f}s)", json=out_dir / RESULTS_JSON,
        png=out_dir / CURVES_PNG, seconds=result.elapsed)


def sweep_table(result: dict[str, Any]) -> Table:
    """One row per variant at its chosen learning rate: validation loss (and solve rate on palindromes)."""
    palindrome = result["task"] == "palindrome"
    table = Table(title=f"chargen compare --grid: {result['task']}, each variant at its best lr on validation",
                  caption="control: mu = 0, s = 1 (the base cell); matched-forget-bias: an LSTM at a winning "
                          "MomentumLSTM's effective forget bias" + ("; solved: held-out accuracy >= 99%, "
                                                                    "95% Wilson interval" if palindrome else ""),
                  title_justify="left", caption_justify="left")
    for name in ("variant", "role", "lr", "val loss", "accuracy") + (("solved", "95% CI") if palindrome else ()):
        table.add_column(name, justify="left" if name in ("variant", "role") else "right")
    for row in result["rows"]:
        cells = [row["label"], row["role"], f"{row['lr']:g}" if row["lr"] is not None else "default",
                 _fmt(row["val_loss"], 4), _fmt(row["accuracy"], 3)]
        if palindrome:
            cells += [f"{row['solved']}/{row['n']}", f"[{row['ci_low']:.2f}, {row['ci_high']:.2f}]"]
        table.add_row(*cells)
    return table


def _sweep(task: str, names: list[str], grid: list[str], seeds: list[int], task_options: dict[str, Any],
           model: dict[str, Any], train: dict[str, Any], out_dir: Path, as_json: bool, quiet: bool) -> None:
    from chargen.experiments.compare_sweep import SWEEP_JSON, compare_sweep
    from chargen.experiments.sweep import parse_grid

    parsed = parse_grid(grid)
    _refuse_unused_grid_keys(parsed, names)
    if "lr" in parsed and "lr" in train:
        raise UsageError("give the learning rate either as --lr or in --grid lr=..., not both")
    for key in ("mu", "s", "forget_bias"):
        if key in parsed and key in model:
            raise UsageError(f"give {key} either as an option or in --grid, not both")

    def sweep_line(message: str) -> None:
        if not quiet:
            say("[dim]sweep:[/] {message}", message=message)

    result = compare_sweep(task, names, parsed, seeds, task_options=task_options, model=model, train=train,
                           out_dir=out_dir, progress=sweep_line)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        table_console().print(sweep_table(result))
    say("saved [bold]{json}[/]", json=out_dir / SWEEP_JSON)


def _refuse_unused_grid_keys(parsed: dict[str, list[float]], names: list[str]) -> None:
    """A grid key no cell of --cells can take would sweep nothing (only the control would run): refused."""
    from chargen.cells import CELLS, MomentumCell

    momentum = [n for n in names if issubclass(CELLS[n], MomentumCell)]
    for key in ("mu", "s"):
        if key in parsed and set(parsed[key]) != {0.0 if key == "mu" else 1.0} and not momentum:
            raise UsageError(f"--grid {key}=... sweeps momentum cells, and --cells {','.join(names)} has none; "
                             f"add e.g. momentum-{names[0].split('-')[-1]}")
    if "forget_bias" in parsed and not any(CELLS[n].gates == 4 for n in names):
        raise UsageError(f"--grid forget-bias=... sweeps LSTM-family cells, and --cells {','.join(names)} has none "
                         "(no forget gate)")
