"""`chargen train`: build a task and configs from options, run the training loop, draw its progress."""

from __future__ import annotations

import time
from dataclasses import fields, replace
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from chargen.cli.app import app
from chargen.cli.ui import download_progress, err_console, parse_duration, sample_panel, timestamped_dir

MODEL = "Model"
DATA = "Data"
OPTIM = "Optimisation"
RUN = "Run"


class Engine(str, Enum):
    fused = "fused"
    loop = "loop"


class Optimizer(str, Enum):
    adam = "adam"
    rmsprop = "rmsprop"
    sgd = "sgd"


class Batching(str, Enum):
    streams = "streams"
    windows = "windows"


class TrainProgress:
    """Training callbacks drawn with rich: one live bar, sample panels and eval lines above it."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            disable=quiet,
        )
        self.task: Any = None
        self.by_time = False
        self.unit = "chars"
        self.last_eval = ""

    def on_start(self, info: dict[str, Any]) -> None:
        self.unit = info["unit"]
        ranks = f" x {info['processes']} processes ({info['backend']})" if info.get("processes", 1) > 1 else ""
        err_console.print(
            f"[dim]{info['parameters']:,} parameters on {info['device']}{ranks} -> {info['run_dir']}[/]", highlight=False
        )
        total = info["total_steps"]
        self.by_time = total is None
        self.started = time.perf_counter()
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=info["time_limit"] if self.by_time else total,
            completed=0 if self.by_time else info["start_step"], status="",
        )

    def on_step(self, step: int, m: dict[str, float]) -> None:
        status = f"step {step:,}  loss {m['loss']:.3f}  {self.last_eval}{m['rate']:,.0f} {self.unit}/s"
        done = m["elapsed"] if self.by_time else step
        self.progress.update(self.task, completed=done, status=status)

    def on_eval(self, step: int, m: dict[str, float]) -> None:
        self.last_eval = f"val {m['val_loss']:.3f}  "
        extra = "  ".join(f"{k} {v:.4g}" for k, v in m.items() if k != "val_loss")
        self.progress.console.print(f"[green]step {step:,}[/]  val_loss {m['val_loss']:.4f}  {extra}", highlight=False)

    def on_sample(self, step: int, loss: float, text: str) -> None:
        if not self.quiet:
            self.progress.console.print(sample_panel(step, loss, text))

    def on_save(self, step: int, path: Path) -> None: ...

    def on_note(self, message: str) -> None:
        self.progress.console.print(f"[yellow]note:[/] {escape(message)}", highlight=False)

    def on_end(self, summary: dict[str, Any]) -> None:
        self.progress.stop()

    def close(self) -> None:
        self.progress.stop()


def default_run_dir(name: str) -> Path:
    """``checkpoints/<corpus file stem or name>-<time>``."""
    return timestamped_dir(Path(name).stem if Path(name).suffix else Path(name).name)


@app.command(rich_help_panel="Train and generate")
def train(
    corpus: Annotated[Optional[str], typer.Option("--corpus", "-c", help="Registered corpus name (see [b]chargen corpora[/]) or a UTF-8 text file. Default: [b]grimm[/] for lm, [b]names[/] for classify and generate.", show_default=False, rich_help_panel=DATA)] = None,
    task: Annotated[str, typer.Option(help="What to learn: [b]lm[/] (next character), [b]classify[/] or [b]generate[/] (surnames), [b]palindrome[/].", rich_help_panel=DATA)] = "lm",
    seq_len: Annotated[Optional[int], typer.Option("--seq-len", help="Characters per truncated-BPTT chunk (LM).", rich_help_panel=DATA)] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", "-b", help="Sequences per batch (LM: contiguous streams).", rich_help_panel=DATA)] = None,
    batching: Annotated[Optional[Batching], typer.Option(help="LM batches: contiguous [b]streams[/] with carried state, or random [b]windows[/].", rich_help_panel=DATA)] = None,
    length: Annotated[Optional[int], typer.Option("--length", help="Palindrome task: palindrome length T.", rich_help_panel=DATA)] = None,
    balance: Annotated[Optional[str], typer.Option(help="Classifier: class imbalance handling ([b]adjusted[/] logits, [b]weighted[/] loss, balanced [b]sampler[/], or [b]none[/]).", rich_help_panel=DATA)] = None,
    balance_power: Annotated[Optional[float], typer.Option("--balance-power", help="Classifier: how far to balance, in [0, 1]: logits + power * log prior ([b]adjusted[/]), or weight ~ count^-power.", rich_help_panel=DATA)] = None,
    char_dropout: Annotated[Optional[float], typer.Option("--char-dropout", help="Classifier: chance that a training character is blanked out (augmentation; 0 = off).", rich_help_panel=DATA)] = None,
    cell: Annotated[Optional[str], typer.Option(help="Recurrent cell: rnn, lstm, momentum-rnn, momentum-lstm, phased-lstm.", rich_help_panel=MODEL)] = None,
    engine: Annotated[Optional[Engine], typer.Option(help="[b]fused[/] (torch kernels) or [b]loop[/] (step-by-step reference).", rich_help_panel=MODEL)] = None,
    layers: Annotated[Optional[int], typer.Option(help="Stacked recurrent layers.", rich_help_panel=MODEL)] = None,
    hidden: Annotated[Optional[int], typer.Option(help="Hidden units per layer.", rich_help_panel=MODEL)] = None,
    embed: Annotated[Optional[int], typer.Option(help="Character embedding size.", rich_help_panel=MODEL)] = None,
    dropout: Annotated[Optional[float], typer.Option(help="Dropout between layers.", rich_help_panel=MODEL)] = None,
    mu: Annotated[Optional[float], typer.Option(help="Momentum cells: momentum coefficient mu.", rich_help_panel=MODEL)] = None,
    step_size: Annotated[Optional[float], typer.Option("--s", help="Momentum cells: step size s.", rich_help_panel=MODEL)] = None,
    init: Annotated[Optional[str], typer.Option(help="Weight init: [b]pytorch[/] (uniform) or [b]paper[/] (MomentumRNN's: orthogonal W_ih, identity W_hh, forget bias 2).", rich_help_panel=MODEL)] = None,
    forget_bias: Annotated[Optional[float], typer.Option("--forget-bias", help="LSTM family: forget-gate bias at init, b_ih[f] + b_hh[f] (char-rnn: 1).", rich_help_panel=MODEL)] = None,
    learn_momentum: Annotated[bool, typer.Option("--learn-momentum", help="Momentum cells: learn mu and s.", rich_help_panel=MODEL)] = False,
    steps: Annotated[Optional[int], typer.Option(help="Optimisation steps (the budget, with or instead of --time).", rich_help_panel=OPTIM)] = None,
    time_limit: Annotated[Optional[str], typer.Option("--time", help="Wall-clock budget, e.g. 90s, 10m, 1h30m; the LR schedule follows it.", rich_help_panel=OPTIM)] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate.", rich_help_panel=OPTIM)] = None,
    optimizer: Annotated[Optional[Optimizer], typer.Option(help="adam, rmsprop or sgd.", rich_help_panel=OPTIM)] = None,
    clip: Annotated[Optional[float], typer.Option(help="Max gradient norm (0 = off).", rich_help_panel=OPTIM)] = None,
    eval_every: Annotated[Optional[int], typer.Option(help="Steps between validation runs (and checkpoints).", rich_help_panel=OPTIM)] = None,
    sample_every: Annotated[Optional[int], typer.Option(help="Steps between logged samples.", rich_help_panel=OPTIM)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for weights, data order and samples.", rich_help_panel=RUN)] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.", rich_help_panel=RUN)] = "auto",
    deterministic: Annotated[bool, typer.Option(help="Bitwise-repeatable kernels (for exact resume tests).", rich_help_panel=RUN)] = False,
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default: checkpoints/<corpus>-<time>).", rich_help_panel=RUN)] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue the run in this directory exactly where it stopped; --steps/--time may extend it.", rich_help_panel=RUN)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or sample panels.", rich_help_panel=RUN)] = False,
) -> None:
    """Train a model and save it as a run directory (weights, config, logs, loss plot).

    [dim]Examples:[/]
      chargen train --corpus grimm --time 10m
      chargen train --corpus tinyshakespeare --hidden 256 --steps 5000
      chargen train --resume checkpoints/grimm-20261122-101500 --steps 8000
    """
    from chargen.cells import default_engine
    from chargen.models import ModelConfig
    from chargen.runtime import is_main_process
    from chargen.tasks import build_task
    from chargen.train import TrainConfig, fit, resume_settings

    budget = {"steps": steps, "time_limit": parse_duration(time_limit) if time_limit else None}
    if resume is not None:
        task_name, task_options, model_cfg, train_cfg = resume_settings(resume)
        if steps is not None or time_limit is not None:
            train_cfg = TrainConfig(**{**train_cfg.__dict__, **budget})
        run_dir = resume
    else:
        task_name = task
        from chargen.tasks import task_defaults

        model_defaults, train_defaults, task_option_defaults = task_defaults(task_name)
        cell_options = {"learn_momentum": True} if learn_momentum else {}
        model_cfg = ModelConfig(**_merge(model_defaults, {
            "cell": cell, "engine": engine.value if engine else None, "num_layers": layers,
            "hidden_size": hidden, "embed_dim": embed, "dropout": dropout,
            "cell_options": cell_options or None, "init": init, "forget_bias": forget_bias,
            "mu": mu, "s": step_size,
        }))
        if engine is None:
            model_cfg = replace(model_cfg, engine=default_engine(model_cfg.cell))
        settings = _merge(train_defaults, {
            "lr": lr, "optimizer": optimizer.value if optimizer else None, "clip": clip,
            "eval_every": eval_every, "sample_every": sample_every, "seed": seed,
            "device": device, "deterministic": deterministic,
        }, allowed={f.name for f in fields(TrainConfig)})
        if steps is not None or time_limit is not None:
            settings.update(budget)  # a budget the user gives replaces the task's, both parts
        train_cfg = TrainConfig(**settings)
        task_options = _merge(task_option_defaults, {
            "corpus": corpus, "seq_len": seq_len, "batch_size": batch_size,
            "batching": batching.value if batching else None, "length": length, "balance": balance,
            "balance_power": balance_power, "char_dropout": char_dropout,
        })
        run_dir = out or default_run_dir(task_options.get("corpus") or task_name)
    model_cfg.check()

    callbacks = TrainProgress(quiet)
    try:
        with download_progress(quiet) as progress:
            built = build_task(task_name, seed=train_cfg.seed, progress=progress, **task_options)
        result = fit(built, model_cfg, train_cfg, run_dir, callbacks, resume=resume is not None)
    finally:
        callbacks.close()
    metrics = "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
    if is_main_process():  # under torchrun, rank 0 speaks for every rank
        err_console.print(f"[bold green]done[/] step {result.step:,} in {result.elapsed:.0f}s  {metrics}", highlight=False)
        err_console.print(f"saved to [bold]{result.run_dir}[/]", highlight=False)


def _merge(defaults: dict[str, Any], given: dict[str, Any], allowed: set[str] | None = None) -> dict[str, Any]:
    """Task defaults overridden by the options the user gave (None = not given)."""
    merged = {**defaults, **{k: v for k, v in given.items() if v is not None}}
    return {k: v for k, v in merged.items() if allowed is None or k in allowed}
