"""`chargen gradients`: how far back the last step's loss reaches, per cell (vanishing gradients)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from chargen.cli.app import app
from chargen.cli.output import OutputError
from chargen.cli.ui import CELLS_HELP, LazyBar, THREADS_HELP, check_out_dir, err_console, say, use_threads, table_console, timestamped_dir


def gradients_table(result: Any) -> Table:
    from chargen.experiments.gradients import DISTANCES

    distances = [d for d in DISTANCES if 0 < d < result.length] + [result.length - 1]
    distances = list(dict.fromkeys(distances))
    table = Table(title=f"gradient flow at init: loss at the last of T={result.length} steps; "
                        f"norm d steps back / norm at the last step (mean over {len(result.seeds)} seeds)",
                  title_justify="left")
    table.add_column("cell", style="bold")
    table.add_column("||dL/dh|| last", justify="right")
    for d in distances:
        table.add_column(f"h d={d}", justify="right")
    for d in (distances[1], distances[-1]) if len(distances) > 1 else distances:
        table.add_column(f"x d={d}", justify="right")
    table.add_column("h decay/step", justify="right")
    for cell in result.cells:
        curve = result.curves[cell]
        last = curve.hidden[-1]
        row = [cell, f"{last:.3g}"]
        row += [f"{curve.at_distance('hidden', d) / last:.2e}" if last > 0 else "-" for d in distances]
        x_last = curve.inputs[-1]
        row += [f"{curve.at_distance('inputs', d) / x_last:.2e}" if x_last > 0 else "-"
                for d in ((distances[1], distances[-1]) if len(distances) > 1 else distances)]
        decay = curve.summary()["hidden"]["decay_per_step"]
        row.append(f"{decay:.3f}" if decay is not None else "-")
        table.add_row(*row)
    return table


@app.command(rich_help_panel="Research")
def gradients(
    cells: Annotated[Optional[str], typer.Option(help=CELLS_HELP, show_default=False)] = None,
    length: Annotated[int, typer.Option(help="Sequence length T; the loss is read at its last step.")] = 200,
    hidden: Annotated[int, typer.Option(help="Hidden units per layer.")] = 128,
    layers: Annotated[int, typer.Option(help="Stacked layers (the norms are of the top layer's states).")] = 1,
    embed: Annotated[int, typer.Option(help="Character embedding size.")] = 64,
    batch: Annotated[int, typer.Option(help="Sequences per seed.")] = 16,
    seeds: Annotated[int, typer.Option(help="Seeds (initial weights and sequences) to average over.")] = 3,
    text: Annotated[Optional[str], typer.Option(help="Read the sequences from this corpus or text file (default: random characters).")] = None,
    mu: Annotated[Optional[float], typer.Option(help="Momentum cells: momentum mu. Default: 0.6.")] = None,
    step_size: Annotated[Optional[float], typer.Option("--s", help="Momentum cells: step size s. Default: as --mu.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Folder for gradients.json and gradients.png (default: checkpoints/gradients-<time>).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the per-cell summary as JSON instead of a table.")] = False,
    threads: Annotated[Optional[int], typer.Option(help=THREADS_HELP, show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Plot ||dL/dh_t|| against t for each cell: how far back the last step's loss reaches (vanishing gradients).

    [dim]Examples:[/]
      chargen gradients --cells rnn,momentum-rnn,lstm,momentum-lstm
      chargen gradients --cells rnn,momentum-rnn --length 500 --mu 0.9 --out /tmp/gradients-mu09
    """
    from chargen.cells import resolve_cells
    from chargen.experiments.compare import DEFAULT_CELLS
    from chargen.experiments.gradients import gradient_flow, save_gradients
    from chargen.runtime import resolve_seeds

    names = resolve_cells(cells or DEFAULT_CELLS)
    seed_list = resolve_seeds(seeds)
    use_threads(threads)
    cell_options = {k: v for k, v in {"mu": mu, "s": step_size}.items() if v is not None}
    bar = LazyBar("gradients", len(names), quiet)

    def report(done: int, total: int, cell: str) -> None:
        bar.update(completed=done, status=cell)

    out_dir = check_out_dir(out or timestamped_dir("gradients"))
    with bar:
        result = gradient_flow(names, length=length, hidden_size=hidden, num_layers=layers, embed_dim=embed,
                               batch=batch, seeds=seed_list, text=text, cell_options=cell_options, progress=report)
    try:
        json_path, png = save_gradients(result, out_dir)
    except OSError as e:
        raise OutputError(f"cannot write the results in {out_dir}: {e.strerror or e}") from None
    if as_json:
        payload = {"results": str(json_path), "figure": str(png),
                   "summary": {c: result.curves[c].summary() for c in result.cells}}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        table_console().print(gradients_table(result))
    say("saved [bold]{json}[/] and [bold]{png}[/]", json=json_path, png=png)
