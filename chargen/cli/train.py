"""`chargen train`: build a task and configs from options, run the training loop, draw its progress."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from chargen.cli.app import app
from chargen.cli.flags import flag_for
from chargen.errors import UsageError
from chargen.cli.ui import (CELL_NAMES, absolute_corpus, download_progress, err_console, parse_duration,
                            relocated_corpus, sample_panel, say, say_note, timestamped_dir)

MODEL = "Model"
DATA = "Data"
OPTIM = "Optimisation"
RUN = "Run"


class Engine(str, Enum):
    fused = "fused"
    loop = "loop"
    torch_cell = "torch-cell"


class Optimizer(str, Enum):
    adam = "adam"
    rmsprop = "rmsprop"
    sgd = "sgd"


class Batching(str, Enum):
    streams = "streams"
    windows = "windows"


# What each task uses when an option is not given (the tasks' defaults, which the CLI does not import
# at start-up: that would load torch for --help). tests/test_hostile.py checks them against the tasks.
HELP_DEFAULTS = {
    "cell": "lstm",
    "layers": "2 (classify, generate, lm); 1 (digits, palindrome)",
    "hidden": "256 (classify, generate, lm); 128 (digits, palindrome)",
    "embed": "32 (classify, generate); 1 (digits); 64 (lm); 10 (palindrome)",
    "dropout": "0.3 (classify, generate); 0.0 (digits, palindrome); 0.1 (lm)",
    "steps": "4000 (classify, generate, lm); 3000 (digits); 10000 (palindrome)",
    "lr": "0.002 (classify, generate); 0.001 (digits, palindrome); 0.003 (lm)",
    "optimizer": "adam (classify, generate, lm); rmsprop (digits, palindrome)",
    "clip": "5.0 (classify, generate, lm); 10.0 (digits, palindrome)",
    "eval_every": "500 (classify, generate, lm); 50 (digits, palindrome)",
    "sample_every": "off (classify, digits); 500 (generate, lm); 50 (palindrome)",
    "seed": "1337",
    "seq_len": "30",
    "batch_size": "64 (classify, digits, generate, lm); 128 (palindrome)",
}


class Positions(str, Enum):
    learned = "learned"
    rotary = "rotary"


# The transformer family's defaults (ModelConfig's), for the help; tests/test_transformer.py checks them.
TRANSFORMER_HELP_DEFAULTS = {"n_layer": "4", "n_head": "4", "d_model": "128", "context": "128",
                             "positions": "learned", "tie_weights": "on"}
TRANSFORMER = "Transformer (--family transformer)"


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
        self.last_step: tuple[int, dict[str, float]] | None = None

    def on_start(self, info: dict[str, Any]) -> None:
        self.unit = info["unit"]
        ranks = f" x {info['processes']} processes ({info['backend']})" if info.get("processes", 1) > 1 else ""
        say("[dim]{parameters:,} parameters on {device}{ranks} -> {run_dir}[/]", parameters=info["parameters"],
            device=info["device"], ranks=ranks, run_dir=info["run_dir"])
        total = info["total_steps"]
        self.by_time = total is None
        self.started = time.perf_counter()
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=info["time_limit"] if self.by_time else total,
            completed=0 if self.by_time else info["start_step"], status="",
        )

    def on_step(self, step: int, m: dict[str, float]) -> None:
        self.last_step = (step, m)
        self._show()

    def _show(self) -> None:
        if self.last_step is None:
            return
        step, m = self.last_step
        status = f"step {step:,}  loss {m['loss']:.3f}  {self.last_eval}{m['rate']:,.0f} {self.unit}/s"
        done = m["elapsed"] if self.by_time else step
        self.progress.update(self.task, completed=done, status=status)

    def on_eval(self, step: int, m: dict[str, float]) -> None:
        self.last_eval = f"val {m['val_loss']:.3f}  "
        self._show()  # the bar's final line shows the final evaluation, not the one before
        extra = "  ".join(f"{k} {v:.4g}" for k, v in m.items() if k != "val_loss")
        self.progress.console.print(f"[green]step {step:,}[/]  val_loss {m['val_loss']:.4f}  {extra}", highlight=False)

    def on_sample(self, step: int, loss: float, text: str) -> None:
        if not self.quiet:
            self.progress.console.print(sample_panel(step, loss, text))

    def on_save(self, step: int, path: Path) -> None: ...

    def on_note(self, message: str) -> None:
        self.progress.console.print(f"[yellow]note:[/] {escape(message)}", highlight=False)

    def on_end(self, summary: dict[str, Any]) -> None:
        self.close()

    def close(self) -> None:
        if self.task is not None:  # stopping a bar never started prints a blank line
            self.progress.stop()


def default_run_dir(name: str) -> Path:
    """``checkpoints/<corpus file stem or name>-<time>``."""
    return timestamped_dir(Path(name).stem if Path(name).suffix else Path(name).name)


@app.command(rich_help_panel="Train and generate")
def train(
    ctx: typer.Context,
    corpus: Annotated[Optional[str], typer.Option("--corpus", "-c", help="Registered corpus name (see [b]chargen corpora[/]) or a UTF-8 text file. Default: [b]grimm[/] for lm, [b]names[/] for classify and generate.", show_default=False, rich_help_panel=DATA)] = None,
    task: Annotated[str, typer.Option(help="What to learn: [b]lm[/] (next character), [b]classify[/] or [b]generate[/] (surnames), [b]palindrome[/], [b]digits[/] (8x8 digits pixel by pixel).", rich_help_panel=DATA)] = "lm",
    seq_len: Annotated[Optional[int], typer.Option("--seq-len", help=f"Characters per truncated-BPTT chunk (LM). Default: {HELP_DEFAULTS['seq_len']} (a transformer: its --context).", rich_help_panel=DATA)] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", "-b", help=f"Sequences per batch (LM: contiguous streams). Default: {HELP_DEFAULTS['batch_size']}.", rich_help_panel=DATA)] = None,
    batching: Annotated[Optional[Batching], typer.Option(help="LM batches: contiguous [b]streams[/] with carried state, or random [b]windows[/]. Default: streams.", rich_help_panel=DATA)] = None,
    length: Annotated[Optional[int], typer.Option("--length", help="Palindrome task: palindrome length T. Default: 10.", rich_help_panel=DATA)] = None,
    permuted: Annotated[Optional[bool], typer.Option("--permuted", help="Digits task: read the pixels in one fixed shuffled order (permuted pixel-MNIST) instead of row by row. Default: off.", rich_help_panel=DATA)] = None,
    balance: Annotated[Optional[str], typer.Option(help="Classifier: class imbalance handling ([b]adjusted[/] logits, [b]weighted[/] loss, balanced [b]sampler[/], or [b]none[/]). Default: adjusted.", rich_help_panel=DATA)] = None,
    balance_power: Annotated[Optional[float], typer.Option("--balance-power", help="Classifier: how far to balance, in [0, 1]: logits + power * log prior ([b]adjusted[/]), or weight ~ count^-power. Default: 0.5.", rich_help_panel=DATA)] = None,
    char_dropout: Annotated[Optional[float], typer.Option("--char-dropout", help="Classifier: chance that a training character is blanked out (augmentation; 0 = off). Default: 0.", rich_help_panel=DATA)] = None,
    extra: Annotated[Optional[str], typer.Option("--extra", help="Classifier and generator: training names beside the tutorial's split: [b]faker[/] (the train part of Faker's surnames, mapped to the 18 languages) or [b]none[/]. Default: none.", rich_help_panel=DATA)] = None,
    augment: Annotated[Optional[float], typer.Option("--augment", help="Classifier: chance that a training name is respelled (German ue/oe/ae, all lower or upper case; 0 = off). Default: 0.", rich_help_panel=DATA)] = None,
    cell: Annotated[Optional[str], typer.Option(help=f"Recurrent cell from the registry: {CELL_NAMES}. Default: {HELP_DEFAULTS['cell']}.", rich_help_panel=MODEL)] = None,
    engine: Annotated[Optional[Engine], typer.Option(help="[b]fused[/] (torch kernels), [b]loop[/] (step-by-step reference) or [b]torch-cell[/] (a loop over nn.RNNCell, nn.LSTMCell or nn.GRUCell; rnn, lstm and gru). Default: fused.", rich_help_panel=MODEL)] = None,
    layers: Annotated[Optional[int], typer.Option(help=f"Stacked recurrent layers. Default: {HELP_DEFAULTS['layers']}.", rich_help_panel=MODEL)] = None,
    hidden: Annotated[Optional[int], typer.Option(help=f"Hidden units per layer. Default: {HELP_DEFAULTS['hidden']}.", rich_help_panel=MODEL)] = None,
    embed: Annotated[Optional[int], typer.Option(help=f"Character embedding size. Default: {HELP_DEFAULTS['embed']}.", rich_help_panel=MODEL)] = None,
    dropout: Annotated[Optional[float], typer.Option(help=f"Dropout between layers. Default: {HELP_DEFAULTS['dropout']}.", rich_help_panel=MODEL)] = None,
    mu: Annotated[Optional[float], typer.Option(help="Momentum cells: momentum coefficient mu. Default: 0.6.", rich_help_panel=MODEL)] = None,
    step_size: Annotated[Optional[float], typer.Option("--s", help="Momentum cells: step size s. Default: as --mu.", rich_help_panel=MODEL)] = None,
    init: Annotated[Optional[str], typer.Option(help="Weight init: [b]pytorch[/] (uniform) or [b]paper[/] (MomentumRNN's: orthogonal W_ih, identity W_hh, forget bias 2). Default: pytorch.", rich_help_panel=MODEL)] = None,
    forget_bias: Annotated[Optional[float], typer.Option("--forget-bias", help="LSTM family: forget-gate bias at init, b_ih\\[f] + b_hh\\[f] (char-rnn: 1). Default: the init's own (paper: 2; pytorch: uniform like the other biases).", rich_help_panel=MODEL)] = None,
    learn_momentum: Annotated[bool, typer.Option("--learn-momentum", help="Momentum cells: learn mu and s.", rich_help_panel=MODEL)] = False,
    family: Annotated[Optional[str], typer.Option(help="Model family: [b]recurrent[/] (--cell and its options) [b]transformer[/] (a small causal transformer; its options below; lm and generate) or [b]ngram[/] (a Kneser-Ney count model of the lm task's text, fitted in seconds; --order). Default: recurrent.", rich_help_panel=MODEL)] = None,
    n_layer: Annotated[Optional[int], typer.Option("--n-layer", help=f"Transformer blocks. Default: {TRANSFORMER_HELP_DEFAULTS['n_layer']}.", rich_help_panel=TRANSFORMER)] = None,
    n_head: Annotated[Optional[int], typer.Option("--n-head", help=f"Attention heads (must divide --d-model). Default: {TRANSFORMER_HELP_DEFAULTS['n_head']}.", rich_help_panel=TRANSFORMER)] = None,
    d_model: Annotated[Optional[int], typer.Option("--d-model", help=f"Width of the residual stream. Default: {TRANSFORMER_HELP_DEFAULTS['d_model']}.", rich_help_panel=TRANSFORMER)] = None,
    context: Annotated[Optional[int], typer.Option("--context", help=f"Most characters the model attends over; LM training windows (--seq-len) are this long. Default: {TRANSFORMER_HELP_DEFAULTS['context']}.", rich_help_panel=TRANSFORMER)] = None,
    positions: Annotated[Optional[Positions], typer.Option(help=f"Position encoding: [b]learned[/] embeddings or [b]rotary[/] (RoFormer). Default: {TRANSFORMER_HELP_DEFAULTS['positions']}.", rich_help_panel=TRANSFORMER)] = None,
    tie_weights: Annotated[Optional[bool], typer.Option("--tie-weights/--no-tie-weights", help=f"The output layer reuses the character embedding. Default: {TRANSFORMER_HELP_DEFAULTS['tie_weights']}.", show_default=False, rich_help_panel=TRANSFORMER)] = None,
    order: Annotated[Optional[int], typer.Option(help="N-gram family: the order (context + 1 characters, 1 to 10). Default: the best of 1..8 on the validation text.", rich_help_panel=MODEL)] = None,
    steps: Annotated[Optional[int], typer.Option(help=f"Optimisation steps (the budget, with or instead of --time). Default: {HELP_DEFAULTS['steps']}.", rich_help_panel=OPTIM)] = None,
    time_limit: Annotated[Optional[str], typer.Option("--time", help="Wall-clock budget, e.g. 90s, 10m, 1h30m; the LR schedule follows it.", rich_help_panel=OPTIM)] = None,
    lr: Annotated[Optional[float], typer.Option(help=f"Peak learning rate. Default: {HELP_DEFAULTS['lr']}.", rich_help_panel=OPTIM)] = None,
    optimizer: Annotated[Optional[Optimizer], typer.Option(help=f"adam, rmsprop or sgd. Default: {HELP_DEFAULTS['optimizer']}.", rich_help_panel=OPTIM)] = None,
    clip: Annotated[Optional[float], typer.Option(help=f"Max gradient norm (0 = off). Default: {HELP_DEFAULTS['clip']}.", rich_help_panel=OPTIM)] = None,
    eval_every: Annotated[Optional[int], typer.Option(help=f"Steps between validation runs (and checkpoints). Default: {HELP_DEFAULTS['eval_every']}.", rich_help_panel=OPTIM)] = None,
    sample_every: Annotated[Optional[int], typer.Option(help=f"Steps between logged samples. Default: {HELP_DEFAULTS['sample_every']}.", rich_help_panel=OPTIM)] = None,
    seed: Annotated[Optional[int], typer.Option(help=f"Seed for weights, data order and samples. Default: {HELP_DEFAULTS['seed']}.", rich_help_panel=RUN)] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.", rich_help_panel=RUN)] = "auto",
    threads: Annotated[Optional[int], typer.Option(help="Torch CPU threads. Default: 1 for models under 2M parameters (more threads only spin), else the cores.", rich_help_panel=RUN)] = None,
    deterministic: Annotated[bool, typer.Option("--deterministic", help="Bitwise-repeatable kernels (for exact resume tests).", rich_help_panel=RUN)] = False,
    out: Annotated[Optional[Path], typer.Option(help="Run directory. Default: a new folder checkpoints/CORPUS-TIME.", rich_help_panel=RUN)] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue the run in this directory exactly where it stopped; --steps/--time may extend it.", rich_help_panel=RUN)] = None,
    init_from: Annotated[Optional[str], typer.Option("--init-from", help="Fine-tune (LM): start from this model's weights (its best checkpoint), with a fresh optimiser; keeps its architecture and vocabulary.", rich_help_panel=RUN)] = None,
    early_stop: Annotated[Optional[int], typer.Option("--early-stop", help="End the run after this many evaluations without a new best val_loss. Default: off (the whole budget).", rich_help_panel=OPTIM)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or sample panels.", rich_help_panel=RUN)] = False,
) -> None:
    """Train a model and save it as a run directory (weights, config, logs, loss plot).

    [dim]Examples:[/]
      chargen train --corpus grimm --time 10m
      chargen train --corpus tinyshakespeare --hidden 256 --steps 5000
      chargen train --resume checkpoints/grimm-20261122-101500 --steps 8000
      chargen train --init-from grimm --corpus my-tales.txt --steps 500 --lr 1e-3 --early-stop 3
      chargen train --family transformer --corpus grimm --context 128 --d-model 128 --time 10m
    """
    from chargen.errors import UsageError
    from chargen.models import ModelConfig, check_family_settings
    from chargen.runtime import is_main_process
    from chargen.tasks import build_task
    from chargen.tasks.resolve import resolve
    from chargen.train import TrainConfig, check_new_run_dir, fit, resume_settings

    if family == "ngram" or order is not None:
        _train_ngram(ctx, family, task, corpus, order, out, quiet)
        return
    budget = {"steps": steps, "time_limit": parse_duration(time_limit) if time_limit else None}
    parent, parent_note, extra_options = None, None, {}
    if resume is not None and init_from is not None:
        raise UsageError("--resume continues a run, --init-from starts a new one; give one of them")
    if resume is not None:
        from chargen.finetune import resume_options
        from chargen.tasks.lm_ngram import check_resumable

        _refuse_ignored_options(ctx)
        check_resumable(resume)
        task_name, task_options, model_cfg, train_cfg = resume_settings(resume)
        if isinstance(task_options.get("corpus"), str):  # a text that moved since: --corpus points at it again
            task_options["corpus"] = relocated_corpus(task_options["corpus"], corpus, resume)
        extra_options = resume_options(resume)
        given = {**({k: v for k, v in budget.items()} if steps is not None or time_limit is not None else {}),
                 **({"early_stop": early_stop} if early_stop is not None else {}),
                 **({"threads": threads} if threads is not None else {})}
        if given:
            train_cfg = TrainConfig(**{**train_cfg.__dict__, **given})
        run_dir = resume
        model_cfg.check()
    else:
        task_name = task
        cell_options = {"learn_momentum": True} if learn_momentum else {}
        model = {"cell": cell, "engine": engine.value if engine else None, "num_layers": layers,
                 "hidden_size": hidden, "embed_dim": embed, "dropout": dropout, "cell_options": cell_options or None,
                 "init": init, "forget_bias": forget_bias, "mu": mu, "s": step_size}
        transformer = {"family": family, "n_layer": n_layer, "n_head": n_head, "d_model": d_model, "context": context,
                       "positions": positions.value if positions else None, "tie_weights": tie_weights}
        check_family_settings(family or "recurrent", {**model, **transformer})
        model.update(transformer)
        if family == "transformer" and task_name == "lm" and seq_len is None and init_from is None:
            seq_len = context or ModelConfig.context  # its training windows are its contexts
        train = {**budget, "lr": lr, "optimizer": optimizer.value if optimizer else None, "clip": clip,
                 "eval_every": eval_every, "sample_every": sample_every, "seed": seed, "device": device,
                 "deterministic": deterministic, "early_stop": early_stop, "threads": threads}
        options = {"corpus": absolute_corpus(corpus), "seq_len": seq_len, "batch_size": batch_size,
                   "batching": batching.value if batching else None, "length": length, "permuted": permuted,
                   "balance": balance, "balance_power": balance_power, "char_dropout": char_dropout,
                   "extra": extra, "augment": augment}
        if init_from is not None:
            from chargen.tasks.resolve import resolve_options, resolve_train

            # the parent fixes the architecture: only the training settings and the task options resolve
            train_cfg = resolve_train(task_name, train)
            parent, parent_note, model_cfg = _parent_settings(init_from, task_name, model)
            task_options = resolve_options(task_name, options)
            if model_cfg.family == "transformer" and seq_len is None:
                task_options["seq_len"] = model_cfg.context  # its training windows are its contexts
        else:
            resolved = resolve(task_name, model=model, train=train, options=options)
            model_cfg, train_cfg, task_options = resolved.model, resolved.train, resolved.options
        run_dir = out or default_run_dir(task_options.get("corpus") or task_name)
        check_new_run_dir(run_dir)  # before the corpus is fetched: a refusal should not wait for a download

    callbacks: Any = TrainProgress(quiet)
    try:
        with download_progress(quiet) as progress:
            if parent is not None:
                from chargen.finetune import build_lm_task

                built = build_lm_task(parent.vocab, init_from, seed=train_cfg.seed, progress=progress, **task_options)
                say_note(parent_note)  # once the new text is known to fit: a failure stays one line
            else:
                built = build_task(task_name, seed=train_cfg.seed, progress=progress, **task_options, **extra_options)
        if is_main_process():  # beside the study's numbers for its corpus (or an n-gram of its text); over-fitting
            from chargen.standing import Standing, marks_for

            marks, said = [], None
            if not quiet:
                marks, said = marks_for(built, task_options.get("corpus"), model_cfg.family, model_cfg.cell,
                                        train_cfg.time_limit)
            if said and resume is None:  # said when the run began
                err_console.print(f"[dim]{escape(said)}[/]", highlight=False)
            callbacks = Standing(callbacks, marks, render=_with_flags)
        result = fit(built, model_cfg, train_cfg, run_dir, callbacks, resume=resume is not None,
                     init_weights=parent.weights if parent else None, parent=parent.record() if parent else None)
    finally:
        callbacks.close()
    metrics = "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
    if is_main_process():  # under torchrun, rank 0 speaks for every rank
        err_console.print(f"[bold green]done[/] step {result.step:,} in {result.elapsed:.0f}s  {metrics}", highlight=False)
        say("saved to [bold]{run_dir}[/]", run_dir=result.run_dir)
        if result.best_step is not None and (result.run_dir / "best").is_dir():
            say("best val_loss {loss:.4f} at step {step:,} in [bold]{best}[/] (sample and evaluate use it)",
                loss=result.best_val_loss, step=result.best_step, best=result.run_dir / "best")


def _with_flags(message: str, params: tuple[str, ...]) -> str:
    """A library message naming ``params`` with train's flags in their place (as its errors are shown)."""
    from chargen.cli.flags import cli_message
    from chargen.errors import ChargenError

    return cli_message(ChargenError(message, params=params), "train")


NGRAM_OPTIONS = {"family", "order", "task", "corpus", "out", "quiet"}  # what an n-gram run takes


def _train_ngram(ctx: typer.Context, family: Optional[str], task: str, corpus: Optional[str], order: Optional[int],
                 out: Optional[Path], quiet: bool) -> None:
    """--family ngram: count the lm task's training text, choose the order on validation, save the run."""
    from chargen.tasks.lm_ngram import train_ngram
    from chargen.train import check_new_run_dir, command_line

    if family != "ngram":
        raise UsageError("--order is the n-gram family's; add --family ngram")
    if task != "lm":
        raise UsageError(f"--family ngram models text (--task lm); --task is {task!r}")
    if given := _given_options(ctx, NGRAM_OPTIONS):
        raise UsageError(f"--family ngram counts characters, so {', '.join(given)} would be ignored: leave "
                         f"{'it' if len(given) == 1 else 'them'} out (it takes --corpus, --order and --out)")
    run_dir = out or default_run_dir(corpus or "grimm")
    check_new_run_dir(run_dir)
    with download_progress(quiet) as progress:
        run = train_ngram(corpus or "grimm", run_dir, order=order, progress=progress, command=command_line())
    if not quiet and len(run.by_order) > 1:
        err_console.print("[dim]val nats/char by order: " + "  ".join(f"{n}: {v:.3f}" for n, v in run.by_order.items())
                          + "[/]", highlight=False)
    err_console.print(f"[bold green]done[/] {_a(run.order)} {run.order}-gram from {run.train_chars:,} characters "
                      f"in {run.seconds:.1f}s  val_loss {run.val_loss:.4f}  val_bpc {run.val_bpc:.4f}", highlight=False)
    say("saved to [bold]{path}[/]", path=run.run_dir)


def _a(number: int) -> str:
    """The article before a number read aloud: an 8-gram, an 11-gram, an 18-gram; a 6-gram."""
    return "an" if str(number).startswith("8") or number in (11, 18) else "a"


def _parent_settings(init_from: str, task_name: str, model_options: dict[str, Any]) -> tuple[Any, str | None, Any]:
    """--init-from: the parent model, the note saying which checkpoint of it was taken, and the model config it fixes."""
    from chargen.errors import UsageError
    from chargen.finetune import ADJUSTABLE, load_parent

    if task_name != "lm":
        raise UsageError(f"--init-from fine-tunes language models; --task is {task_name!r}")
    parent, note = load_parent(init_from)
    parent.check_family(model_options.get("family"))  # the parent's own family may be named: nothing changes
    flags = {k: "--mu/--s/--learn-momentum" if k == "cell_options" else flag_for(k, "train") or k
             for k, v in model_options.items() if v is not None and k not in (*ADJUSTABLE, "family")}
    if fixed := list(flags.values()):
        raise UsageError(f"--init-from keeps the architecture of {init_from!r}; drop {', '.join(fixed)}")
    model_cfg = parent.model_config(dropout=model_options["dropout"], engine=model_options["engine"])
    model_cfg.check()
    return parent, note, model_cfg


RESUME_OPTIONS = {"resume", "steps", "time_limit", "quiet", "threads", "early_stop", "corpus"}  # what --resume takes; the run fixes the rest


def _refuse_ignored_options(ctx: typer.Context) -> None:
    """``--resume`` continues the run as recorded: an option it would ignore is refused, named."""
    given = _given_options(ctx, RESUME_OPTIONS)
    if given:
        flags = ", ".join(given)
        raise UsageError(f"--resume continues the run with its recorded settings; it takes only --steps, --time, "
                         f"--early-stop, --threads, --quiet and --corpus (its moved text), so {flags} would be ignored: leave {'it' if len(given) == 1 else 'them'} out "
                         "(or start a new run with --out)")


def _given_options(ctx: typer.Context, allowed: set[str]) -> list[str]:
    """The flags of the options the user gave on the command line, other than ``allowed``."""
    def given_by_user(name: str) -> bool:
        source = ctx.get_parameter_source(name)
        return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")

    return [p.opts[0] for p in ctx.command.params if p.name not in allowed and given_by_user(p.name or "")]
