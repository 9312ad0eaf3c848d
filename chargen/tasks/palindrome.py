"""The palindrome memorisation probe: predict a palindrome's last digit (its first) after T-1 digits.

One run is the classic setup (UvA deep-learning practical, 2018): cross-entropy on the last step
only, RMSProp at lr 1e-3, hidden 128, batch 128, gradient norm clipped at 10, a step budget per
length, and an early stop once held-out accuracy has stayed at or above 99.5% for two
evaluations in a row. ``run_probe`` trains a grid of (cell, length, seed) runs through the same
loop as every other task and summarises where each cell stops remembering.
"""

from __future__ import annotations

import signal
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from chargen.data.palindromes import DIGITS, HELD_OUT_SEED, HELD_OUT_SIZE, MIN_LENGTH, PalindromeStream, held_out
from chargen.errors import CheckpointError, RunInterrupted, UsageError
from chargen.models import ModelConfig, SequenceClassifier, settings_for_cell
from chargen.cells import resolve_cells
from chargen.runtime import check_batch_size, rank, resolve_seeds, world_size
from chargen.tasks.base import register
from chargen.vocab import Vocab

DATA_SEED_OFFSET = 1_000_003  # the training stream's generator is seeded apart from the weights' init
CHANCE = 0.1
SOLVED = 0.99  # a run "solves" its length when its final held-out accuracy is at least this
THRESHOLD = 0.9  # "keeps >= 90%": the level the probe summary reports per cell
PROBE_MAX_STEPS = 500
CLASSIC_STEPS = 10_000  # the practical's budget: the default of a single `chargen train --task palindrome`


@dataclass
class PalindromeConfig:
    """Data and stopping rule of one palindrome run."""

    length: int = 10  # palindrome length T: T - 1 digits in, the T-th predicted
    batch_size: int = 128
    held_out: int = HELD_OUT_SIZE
    target_accuracy: float = 0.995  # early stop once held-out accuracy stays at or above this...
    patience: int = 2  # ...for this many evaluations in a row

    def __post_init__(self) -> None:
        if self.length < MIN_LENGTH:
            raise UsageError(f"--length must be at least {MIN_LENGTH} (a palindrome with a digit to skip), got {self.length}")
        check_batch_size(self.batch_size)
        if self.held_out < 1:
            raise UsageError(f"held-out set size must be positive, got {self.held_out}")
        if not 0.0 < self.target_accuracy <= 1.0:
            raise UsageError(f"target accuracy must be in (0, 1], got {self.target_accuracy}")
        if self.patience < 1:
            raise UsageError(f"patience must be at least 1 evaluation, got {self.patience}")


def steps_for_length(length: int) -> int:
    """The probe's step budget at palindrome length ``length``: 50 steps per digit, at most 500.

    Sized so that the full grid (4 cells x 7 lengths x 3 seeds) fits in about half an hour on
    two shared CPU cores, where the long runs that never leave chance spend their whole budget.
    Early stopping ends the runs that learn sooner.
    """
    return min(50 * length, PROBE_MAX_STEPS)


@torch.no_grad()
def evaluate_palindromes(model: SequenceClassifier, inputs: Tensor, targets: Tensor, device: torch.device,
                         chunk: int = 1000) -> dict[str, float]:
    """Mean cross-entropy and accuracy of the last-digit prediction over ``inputs (T-1, N)``."""
    was_training = model.training
    model.eval()
    loss, correct = 0.0, 0
    for start in range(0, inputs.shape[1], chunk):
        x = inputs[:, start : start + chunk].to(device)  # (T-1, n)
        y = targets[start : start + chunk].to(device)  # (n,)
        logits = model(x, torch.full((x.shape[1],), x.shape[0], device=device))  # (n, 10)
        loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += int((logits.argmax(1) == y).sum())
    model.train(was_training)
    count = inputs.shape[1]
    return {"val_loss": loss / count, "accuracy": correct / count}


@register("palindrome")
class PalindromeTask:
    """Digit palindromes of one length, drawn on the fly; judged on a fixed held-out set."""

    name: ClassVar[str] = "palindrome"
    unit: ClassVar[str] = "sequences"
    model_defaults: ClassVar[dict[str, Any]] = {"cell": "lstm", "hidden_size": 128, "num_layers": 1, "embed_dim": 10}
    train_defaults: ClassVar[dict[str, Any]] = {
        "steps": CLASSIC_STEPS, "optimizer": "rmsprop", "lr": 1e-3, "schedule": "constant", "warmup": 0,
        "clip": 10.0, "eval_every": 50, "sample_every": 50, "log_every": 10,
    }
    option_defaults: ClassVar[dict[str, Any]] = {"length": 10}

    def __init__(self, seed: int = 0, progress: Any = None, corpus: str | None = None, **options: Any) -> None:
        # ``progress`` (corpus downloads) is passed to every task; palindromes are generated, not read
        if corpus is not None:
            raise UsageError(f"the palindrome task generates its own digits; it reads no corpus (got --corpus {corpus})")
        self.cfg = PalindromeConfig(**options)
        self.vocab = Vocab(DIGITS)
        self.stream = PalindromeStream(self.cfg.length, self.cfg.batch_size, seed + DATA_SEED_OFFSET)
        self.val_inputs, self.val_targets = held_out(self.cfg.length, self.cfg.held_out)
        self.streak = 0  # evaluations in a row at or above the target accuracy

    def model_config(self, base: ModelConfig) -> ModelConfig:
        return ModelConfig(**{**asdict(base), "kind": "classifier", "vocab_size": len(self.vocab), "num_classes": 10})

    def config(self) -> dict[str, Any]:
        return {"options": asdict(self.cfg), "held_out_seed": HELD_OUT_SEED, "chance": CHANCE}

    def train_loss(self, model: SequenceClassifier, device: torch.device) -> tuple[Tensor, int]:
        inputs, targets = self.stream.next()  # (T-1, N), (N,): the global batch, the same on every rank
        inputs, targets = inputs[:, rank() :: world_size()].to(device), targets[rank() :: world_size()].to(device)
        logits = model(inputs, torch.full((inputs.shape[1],), inputs.shape[0], device=device))  # (N, 10)
        return F.cross_entropy(logits, targets), targets.numel()

    def evaluate(self, model: SequenceClassifier, device: torch.device) -> dict[str, float]:
        return evaluate_palindromes(model, self.val_inputs, self.val_targets, device)

    def should_stop(self, metrics: dict[str, float]) -> bool:
        """Asked by the training loop after each evaluation (on every rank, with rank 0's metrics):
        has held-out accuracy stayed at or above the target for ``patience`` evaluations in a row?"""
        self.streak = self.streak + 1 if metrics["accuracy"] >= self.cfg.target_accuracy else 0
        return self.streak >= self.cfg.patience

    def sample_text(self, model: SequenceClassifier, generator: torch.Generator, device: torch.device) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"stream": self.stream.state_dict(), "streak": self.streak}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state["stream"])
        self.streak = int(state["streak"])

    @staticmethod
    def evaluate_saved(loaded: Any, device: torch.device, progress: Any = None) -> dict[str, Any]:
        """Held-out accuracy of a saved model, recomputed on the same fixed palindromes."""
        task_config = loaded.config["task_config"]
        options = task_config["options"]
        if task_config.get("held_out_seed", HELD_OUT_SEED) != HELD_OUT_SEED:
            raise CheckpointError(
                f"{loaded.path}: held out on seed {task_config['held_out_seed']}, this chargen draws seed {HELD_OUT_SEED}"
            )
        inputs, targets = held_out(options["length"], options["held_out"])
        metrics = evaluate_palindromes(loaded.model, inputs, targets, device)
        return {"metrics": {**metrics, "length": options["length"], "step": loaded.config.get("step", 0)}}


# -- the probe: a grid of runs ----------------------------------------------------------------

# progress(done runs, total runs, info): info["event"] is "start" (before a run: cell, length,
# seed) or "end" (after it: the run's record, with its accuracy).
ProbeProgress = Callable[[int, int, dict[str, Any]], None]


def resolve_lengths(lengths: Iterable[int]) -> list[int]:
    lengths = sorted({int(t) for t in lengths})
    if not lengths:
        raise UsageError("give at least one palindrome length")
    if lengths[0] < MIN_LENGTH:
        raise UsageError(f"palindrome lengths must be at least {MIN_LENGTH}, got {lengths[0]}")
    return lengths


@dataclass
class ProbeSettings:
    """The model and optimisation of every run in a probe (the classic setup by default)."""

    steps: int | None = None  # one budget for every length; None: steps_for_length
    hidden_size: int = 128
    num_layers: int = 1
    embed_dim: int = 10
    lr: float = 1e-3
    batch_size: int = 128
    engine: str | None = None  # None: fused where the cell has a kernel (momentum cells too), else loop
    eval_every: int = 50
    device: str = "cpu"
    cell_options: dict[str, Any] | None = None
    init: str = "pytorch"  # or "paper": chargen.inits
    forget_bias: float | None = None  # LSTM family only
    mu: float | None = None  # momentum cells only (None: the cell's default)
    s: float | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "hidden_size", "num_layers", "embed_dim", "batch_size", "eval_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if not self.lr > 0:
            raise UsageError(f"--lr must be positive, got {self.lr}")

    def budget(self, length: int) -> int:
        return self.steps if self.steps is not None else steps_for_length(length)


def probe_run(cell: str, length: int, seed: int, settings: ProbeSettings | None = None) -> dict[str, Any]:
    """One reproducible (cell, length, seed) run through ``chargen.train.fit``: its record, JSON-ready.

    The seed fixes the weights and the training palindromes; the run directory is temporary
    (the probe keeps the numbers, not the weights).
    """
    from chargen.cells import get_cell
    from chargen.train import TrainConfig, fit

    settings = settings or ProbeSettings()
    engine = settings.engine or ("fused" if get_cell(cell).has_fused else "loop")
    budget = settings.budget(length)
    task = PalindromeTask(seed=seed, length=length, batch_size=settings.batch_size)
    model_cfg = ModelConfig(cell=cell, hidden_size=settings.hidden_size, num_layers=settings.num_layers,
                            embed_dim=settings.embed_dim, engine=engine, cell_options=dict(settings.cell_options or {}),
                            **settings_for_cell(cell, {"init": settings.init, "forget_bias": settings.forget_bias,
                                                       "mu": settings.mu, "s": settings.s}))
    model_cfg.check()
    train_cfg = TrainConfig(**{**PalindromeTask.train_defaults, "steps": budget, "lr": settings.lr,
                               "eval_every": settings.eval_every, "sample_every": settings.eval_every,
                               "log_every": settings.eval_every, "seed": seed, "device": settings.device})
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="chargen-probe-") as tmp:
        run = fit(task, model_cfg, train_cfg, Path(tmp) / "run",
                  command=f"chargen probe (cell {cell}, length {length}, seed {seed})")
        solved_at = first_step_at(Path(tmp) / "run" / "metrics.jsonl", SOLVED)
    return {
        "cell": cell, "length": length, "seed": seed,
        "accuracy": run.metrics["accuracy"], "val_loss": run.metrics["val_loss"],
        "steps": run.step, "budget": budget, "stopped_early": run.step < budget,
        "solved": run.metrics["accuracy"] >= SOLVED, "solved_at": solved_at,
        "seconds": round(time.perf_counter() - started, 2),
    }


def first_step_at(metrics_path: Path, accuracy: float) -> int | None:
    """The first evaluated step whose held-out accuracy is at least ``accuracy`` (None: never)."""
    from chargen.tracking import read_jsonl

    if not metrics_path.exists():
        return None
    for record in read_jsonl(metrics_path):
        if record.get("split") == "val" and record.get("accuracy", 0.0) >= accuracy:
            return int(record["step"])
    return None


def summarise(runs: Sequence[dict[str, Any]], cells: Sequence[str], lengths: Sequence[int]) -> list[dict[str, Any]]:
    """Per (cell, length): mean, sample standard deviation, min and max of held-out accuracy over
    seeds, and the mean steps the runs took."""
    rows = []
    for cell in cells:
        for length in lengths:
            these = [r for r in runs if r["cell"] == cell and r["length"] == length]
            if not these:
                continue
            acc = [r["accuracy"] for r in these]
            rows.append({
                "cell": cell, "length": length, "n": len(acc), "mean": statistics.fmean(acc),
                "std": statistics.stdev(acc) if len(acc) > 1 else 0.0, "min": min(acc), "max": max(acc),
                "steps_mean": statistics.fmean(r["steps"] for r in these),
                **solve_stats(these),
            })
    return rows


def solve_stats(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Solved runs (final held-out accuracy >= SOLVED), the rate's Wilson 95% interval and the median steps to solve."""
    from chargen.sweep import solve_summary

    if any("solved" not in r for r in runs):  # records saved before solve rates were kept
        return {}
    found = solve_summary(runs)
    return {"solved": found["solved"], "solve_ci": [found["ci_low"], found["ci_high"]],
            "steps_to_solve_median": found["steps_to_solve_median"]}


def longest_kept(summary: Sequence[dict[str, Any]], cells: Sequence[str],
                 threshold: float = THRESHOLD) -> dict[str, int | None]:
    """Per cell, the longest measured T such that mean accuracy is >= ``threshold`` at T and at
    every shorter measured length (None when the shortest already falls below)."""
    kept: dict[str, int | None] = {}
    for cell in cells:
        best = None
        for row in sorted((r for r in summary if r["cell"] == cell), key=lambda r: r["length"]):
            if row["mean"] < threshold:
                break
            best = row["length"]
        kept[cell] = best
    return kept


def run_probe(
    cells: Sequence[str],
    lengths: Iterable[int],
    seeds: int | Iterable[int],
    *,
    steps: int | None = None,
    settings: ProbeSettings | None = None,
    threads: int | None = 1,
    progress: ProbeProgress | None = None,
) -> dict[str, Any]:
    """Train every (cell, length, seed) once and summarise held-out accuracy against palindrome length.

    ``seeds`` is a count (seeds 0..n-1) or the seeds themselves; ``steps`` one budget for every
    length (None: ``steps_for_length``), overriding ``settings.steps``. ``threads`` sets torch's
    intra-op threads for the probe and restores them after (None: leave as is): these small
    nets gain little from a second thread, and on a busy 2-core machine one thread ran 10x
    faster than two (OpenMP threads spin while they wait for each other).
    Returns JSON-ready results: ``settings``, one record per run in ``runs``, ``summary`` (mean
    ± std per cell and length) and ``longest_90``, the longest T up to which each cell keeps
    >= 90% mean held-out accuracy.
    """
    cells = resolve_cells(cells)
    lengths = resolve_lengths(lengths)
    seeds = resolve_seeds(seeds)
    settings = settings or ProbeSettings()
    if steps is not None:
        settings = ProbeSettings(**{**asdict(settings), "steps": steps})
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    grid = [(cell, length, seed) for length in lengths for cell in cells for seed in seeds]
    runs: list[dict[str, Any]] = []
    previous_threads = torch.get_num_threads()
    started = time.perf_counter()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        for done, (cell, length, seed) in enumerate(grid):
            if progress:
                progress(done, len(grid), {"event": "start", "cell": cell, "length": length, "seed": seed})
            try:
                record = probe_run(cell, length, seed, settings)
            except RunInterrupted as e:  # the run's own message points at its temporary directory
                name = "Ctrl-C" if e.signum == signal.SIGINT else signal.Signals(e.signum).name
                raise RunInterrupted(f"probe stopped by {name} in run {done + 1} of {len(grid)} ({cell}, T={length}, "
                                     f"seed {seed}); {done} runs had finished", e.signum) from None
            runs.append(record)
            if progress:
                progress(done + 1, len(grid), {"event": "end", **record})
        used_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous_threads)
    summary = summarise(runs, cells, lengths)
    from chargen import __version__

    return {
        "cells": cells,
        "lengths": lengths,
        "seeds": seeds,
        "settings": {
            **asdict(settings),
            "engine": settings.engine or "fused (loop for cells without a kernel)",
            "steps": {str(t): settings.budget(t) for t in lengths},
            "optimizer": PalindromeTask.train_defaults["optimizer"],
            "schedule": PalindromeTask.train_defaults["schedule"],
            "clip": PalindromeTask.train_defaults["clip"],
            "held_out": HELD_OUT_SIZE, "held_out_seed": HELD_OUT_SEED,
            "early_stop": {"accuracy": PalindromeConfig.target_accuracy, "patience": PalindromeConfig.patience},
            "threshold": THRESHOLD, "chance": CHANCE,
        },
        "runs": runs,
        "summary": summary,
        "longest_90": longest_kept(summary, cells),
        "elapsed_s": round(time.perf_counter() - started, 1),
        "environment": {"chargen": __version__, "torch": torch.__version__, "threads": used_threads,
                        "cpus": _cpu_count()},
    }


def _cpu_count() -> int | None:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
