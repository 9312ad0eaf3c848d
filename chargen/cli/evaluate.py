"""`chargen evaluate`: recompute a trained model's held-out metrics from the data."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from chargen.cli.app import app
from chargen.cli.ui import (THREADS_HELP, download_progress, markup, out_console, relocated_corpus, say_note,
                            use_threads)
from chargen.errors import UsageError


@app.command(rich_help_panel="Evaluate")
def evaluate(
    model: Annotated[str, typer.Option("--model", "-m", help="Run directory, or a name under checkpoints/.")] = "grimm",
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON on stdout.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "cpu",
    threads: Annotated[Optional[int], typer.Option(help=THREADS_HELP, show_default=False)] = None,
    names: Annotated[Path | None, typer.Option("--names", help="Classifier: a name<TAB>language file to evaluate (with the n-gram baseline beside) instead of the test split.", show_default=False)] = None,
    last: Annotated[bool, typer.Option("--last", help="Use the run's last checkpoint, not its best.")] = False,
    corpus: Annotated[Optional[str], typer.Option("--corpus", "-c", help="Language models: where the training text is now, if it has moved since training (checked against its recorded sha256). Default: the path the run recorded.", show_default=False)] = None,
) -> None:
    """Recompute the held-out metrics of a trained model, so a recorded number can be checked.

    [dim]Examples:[/]
      chargen evaluate --model surnames
      chargen evaluate --model surnames --names corpora/surnames_faker_test.tsv
    """
    from chargen import checkpoint
    from chargen.runtime import resolve_device
    from chargen.tasks import evaluate_saved

    dev = resolve_device(device)
    path, note = checkpoint.choose(model, last)
    loaded = checkpoint.load(path, device=dev)
    use_threads(threads, loaded.model)
    if loaded.config.get("task") == "lm" and isinstance(loaded.config.get("task_config"), dict):
        options = loaded.config["task_config"].get("options") or {}
        if isinstance(options.get("corpus"), str):
            options["corpus"] = relocated_corpus(options["corpus"], corpus, loaded.path)
    elif corpus is not None:
        raise UsageError("--corpus points a language model at its moved training text; this is not one")
    with download_progress(as_json) as progress:
        report = evaluate_saved(loaded, dev, progress, names)
    say_note(note)  # after the work, so that a failure stays one line
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    name = f"{path.parent.name}/{path.name}" if path.name == checkpoint.BEST else path.name
    table = Table(title=markup("{name} ({task})", name=name, task=loaded.config["task"]), title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in report["metrics"].items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    out_console.print(table)
    for extra in report.get("tables", []):
        t = Table(title=escape(extra["title"]), title_justify="left")
        for col in extra["columns"]:
            t.add_column(col, justify="left" if col == extra["columns"][0] else "right")
        for row in extra["rows"]:
            t.add_row(*(f"{v:.3f}" if isinstance(v, float) else escape(str(v)) for v in row))
        out_console.print(t)
