"""`chargen reference`: textbook models made executable, starting with the numpy RNN and its hand-written BPTT."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.markup import escape
from rich.table import Table

from chargen.cli.app import app
from chargen.cli.ui import (
    check_out_dir,
    download_progress,
    err_console,
    say,
    table_console,
    timestamped_dir,
)

MODEL = "Numpy RNN"
LSTM = "Torch LSTM"
OUTPUT = "Output"

reference_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Textbook models made executable: a numpy RNN with hand-written backpropagation through time.",
)
app.add_typer(reference_app, name="reference", rich_help_panel="Research")


class ReferenceBar:
    """``run_reference``'s progress drawn with rich: a bar per model, a line per numpy epoch above them.

    Bars appear with the first report, so settings rejected before any training leave one error line.
    """

    def __init__(self, epochs: int, quiet: bool) -> None:
        self.epochs, self.quiet = epochs, quiet
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, disable=quiet,
        )
        self.started = False
        self.rnn: Any = None
        self.lstm: Any = None

    def __call__(self, info: dict[str, Any]) -> None:
        event = info["event"]
        if not self.started:
            self.progress.start()
            self.started = True
        if event == "chunk":
            if self.rnn is None:
                self.rnn = self.progress.add_task("numpy RNN", total=self.epochs * info["chunks"], status="")
            done = (info["epoch"] - 1) * info["chunks"] + info["chunk"]
            self.progress.update(self.rnn, completed=done,
                                 status=f"epoch {info['epoch']}/{self.epochs}  loss {info['loss']:.3f}")
        elif event == "epoch":
            r = info["record"]
            self.progress.update(self.rnn, completed=r.epoch * self.progress.tasks[self.rnn].total // self.epochs)
            self._print(f"[green]epoch {r.epoch}[/]: train loss {r.train_loss:.4f}  held-out loss {r.val_loss:.4f} "
                        f"({r.val_bpc:.3f} bpc)  accuracy {100 * r.val_accuracy:.2f}%  "
                        f"({r.train_seconds:.1f}s, {r.chars_per_second:,.0f} chars/s)")
        elif event == "lstm_start":
            self.lstm = self.progress.add_task("torch LSTM", total=info["steps"], status="")
        elif event == "lstm_step":
            self.progress.update(self.lstm, completed=info["step"],
                                 status=f"loss {info['loss']:.3f}  {info['rate']:,.0f} chars/s")
        elif event == "lstm_end":
            f = info["final"]
            self._print(f"[green]LSTM[/]: held-out loss {f['val_loss']:.4f} ({f['val_bpc']:.3f} bpc)  "
                        f"accuracy {100 * f['val_accuracy']:.2f}%")

    def _print(self, message: str) -> None:
        if not self.quiet:
            self.progress.console.print(message, highlight=False)

    def close(self) -> None:
        self.progress.stop()


def results_table(result: Any) -> Table:
    """The two models side by side on the held-out positions, with the majority-symbol baseline."""
    data, rnn, lstm = result.data, result.numpy_rnn, result.lstm
    table = Table(
        title=f"{escape(str(data['corpus']))} reduced to 27 symbols: {data['train_chars']:,} training symbols; held out the last "
              f"{data['val_chars']:,} ({data['eval_positions']:,} positions in {data['eval_streams']} streams)",
        caption="accuracy: the fraction of held-out positions where the most likely next symbol is the one that comes next",
        title_justify="left", caption_justify="left",
    )
    for name in ("model", "parameters", "trained on", "train s", "held-out loss", "bpc", "accuracy"):
        table.add_column(name, justify="left" if name in ("model", "trained on") else "right")
    settings = rnn.settings
    table.add_row(
        f"numpy RNN (ReLU, {settings['hidden_size']} units)", f"{rnn.parameters:,}",
        f"{len(rnn.epochs)} epochs", f"{rnn.train_seconds:.0f}",
        f"{rnn.final['val_loss']:.4f}", f"{rnn.final['val_bpc']:.3f}", f"{100 * rnn.final['val_accuracy']:.2f}%",
    )
    if lstm is not None:
        model = lstm.model
        table.add_row(
            f"torch LSTM ({model['num_layers']:d}x{model['hidden_size']:d})", f"{lstm.parameters:,}",
            f"{lstm.steps:,} steps ({lstm.epochs_seen:.1f} epochs)", f"{lstm.train_seconds:.0f}",
            f"{lstm.final['val_loss']:.4f}", f"{lstm.final['val_bpc']:.3f}", f"{100 * lstm.final['val_accuracy']:.2f}%",
        )
    table.add_row(f"always {data['majority_symbol']!r}", "0", "-", "-", "-", "-",
                  f"{100 * data['majority_accuracy']:.2f}%")
    return table


@reference_app.command("numpy-rnn")
def numpy_rnn(
    corpus: Annotated[str, typer.Option("--corpus", "-c", help="Registered corpus (see [b]chargen corpora[/]) or a UTF-8 text file; reduced to a-z and space.")] = "origin",
    hidden: Annotated[int, typer.Option(help="Hidden ReLU units.", rich_help_panel=MODEL)] = 400,
    epochs: Annotated[int, typer.Option(help="Passes over the training text.", rich_help_panel=MODEL)] = 15,
    seq_len: Annotated[int, typer.Option("--seq-len", help="Characters per truncated-BPTT chunk.", rich_help_panel=MODEL)] = 25,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Contiguous streams per batch.", rich_help_panel=MODEL)] = 16,
    lr: Annotated[float, typer.Option(help="Adam's peak learning rate (cosine decay to a tenth).", rich_help_panel=MODEL)] = 2e-3,
    clip: Annotated[float, typer.Option(help="Max global gradient norm (0 = off).", rich_help_panel=MODEL)] = 5.0,
    seed: Annotated[int, typer.Option(help="Seed for both models' weights and data order.")] = 0,
    lstm_steps: Annotated[int, typer.Option("--lstm-steps", help="Training steps of chargen's LSTM LM (2x256, the [b]lm[/] task's defaults) on the same text; 0 skips it.", rich_help_panel=LSTM)] = 1500,
    threads: Annotated[int, typer.Option(help="CPU threads for numpy's BLAS (an exported OPENBLAS_NUM_THREADS wins) and for torch; more than 1 loses badly on a busy machine.")] = 1,
    out: Annotated[Path | None, typer.Option(help="Folder for reference.json and the LSTM's logs (default: checkpoints/reference-<time>).", rich_help_panel=OUTPUT)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON instead of a table.", rich_help_panel=OUTPUT)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or epoch lines.", rich_help_panel=OUTPUT)] = False,
) -> None:
    """Train a numpy RNN (hand-written BPTT) on a text reduced to 27 symbols and report its held-out
    next-character accuracy beside chargen's torch LSTM on the same split.

    [dim]Examples:[/]
      chargen reference numpy-rnn --corpus origin --hidden 400 --epochs 15
      chargen reference numpy-rnn --corpus grimm --hidden 128 --epochs 3 --lstm-steps 300 --json
    """
    from chargen.errors import UsageError

    if threads < 1:
        raise UsageError(f"--threads must be positive, got {threads}")
    # OpenBLAS reads its thread count once, when numpy loads: set it before anything imports numpy
    # (a value the user exported wins; in a process that already has numpy it could change nothing).
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads))
    from chargen.experiments.reference import RESULTS_JSON, run_reference
    from chargen.reference import RNNSettings
    from chargen.runtime import check_threads
    from chargen.train import command_line

    check_threads(threads)

    settings = RNNSettings(hidden_size=hidden, epochs=epochs, seq_len=seq_len, batch_size=batch_size, lr=lr,
                           clip=clip, seed=seed)
    out_dir = check_out_dir(out or timestamped_dir("reference"))
    bar = ReferenceBar(epochs, quiet)
    try:
        with download_progress(quiet) as fetch:
            result = run_reference(corpus, settings, lstm_steps=lstm_steps, threads=threads, out_dir=out_dir,
                                   command=command_line(), progress=bar, fetch_progress=fetch)
    finally:
        bar.close()
    if as_json:
        sys.stdout.write(json.dumps({"results": str(out_dir / RESULTS_JSON), **result.to_dict()}, indent=1) + "\n")
    else:
        table_console().print(results_table(result))
    say("saved [bold]{json}[/] ({seconds:.0f}s)", json=out_dir / RESULTS_JSON, seconds=result.wall_seconds)
