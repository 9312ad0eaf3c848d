"""The palindrome memorisation probe: a grid of (cell, length, seed) runs of the palindrome task, and where each cell stops remembering.

Each run is the classic setup of ``chargen.tasks.palindrome`` (RMSProp, hidden 128, early stop on
held-out accuracy) trained through the same loop as every other task; ``run_probe`` summarises
held-out accuracy against palindrome length per cell.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from chargen.cells import resolve_cells
from chargen.data.palindromes import HELD_OUT_SEED, HELD_OUT_SIZE, MIN_LENGTH
from chargen.errors import UsageError
from chargen.experiments.harness import GridProgress, cpu_count, environment
from chargen.experiments.study import Part, RunContext, Spec, Study, grid_progress
from chargen.runtime import resolve_seeds
from chargen.tasks import build_task
from chargen.tasks.palindrome import CHANCE, PalindromeConfig
from chargen.tasks.resolve import resolve_model, resolve_train, task_defaults
from chargen.experiments.sweep import solve_summary
from chargen.models import settings_for_cell
from chargen.tracking import read_jsonl
from chargen.train import fit

TASK = "palindrome"
SOLVED = 0.99  # a run "solves" its length when its final held-out accuracy is at least this
THRESHOLD = 0.9  # "keeps >= 90%": the level the probe summary reports per cell
PROBE_MAX_STEPS = 500


def steps_for_length(length: int) -> int:
    """The probe's step budget at palindrome length ``length``: 50 steps per digit, at most 500.

    Sized so that the full grid (4 cells x 7 lengths x 3 seeds) fits in about half an hour on
    two shared CPU cores, where the long runs that never leave chance spend their whole budget.
    Early stopping ends the runs that learn sooner.
    """
    return min(50 * length, PROBE_MAX_STEPS)


# progress(done runs, total runs, info): info["event"] is "start" (before a run: cell, length,
# seed) or "end" (after it: the run's record, with its accuracy).
ProbeProgress = GridProgress


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
    # The paper's init by default: with PyTorch's, an LSTM sat at chance from T = 20 on the probe's budget, while
    # the paper's (orthogonal W_ih, identity W_hh, forget bias 2) solved T = 30 and 50 (the momentum study).
    init: str = "paper"
    forget_bias: float | None = None  # LSTM family only
    mu: float | None = None  # momentum cells only (None: the cell's default)
    s: float | None = None
    cpu_limit: float | None = None  # also stop at this many CPU seconds of the process (a study's CPU-minutes)
    threads: int | None = None  # torch threads of each run (None: the loop's choice)

    def __post_init__(self) -> None:
        for name in ("steps", "hidden_size", "num_layers", "embed_dim", "batch_size", "eval_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"{name} must be positive, got {value}", params=name)
        if not self.lr > 0:
            raise UsageError(f"lr must be positive, got {self.lr}", params="lr")

    def budget(self, length: int) -> int:
        return self.steps if self.steps is not None else steps_for_length(length)


def probe_run(cell: str, length: int, seed: int, settings: ProbeSettings | None = None) -> dict[str, Any]:
    """One reproducible (cell, length, seed) run through ``chargen.train.fit``: its record, JSON-ready.

    The seed fixes the weights and the training palindromes; the run directory is temporary
    (the probe keeps the numbers, not the weights).
    """
    settings = settings or ProbeSettings()
    budget = settings.budget(length)
    task = build_task(TASK, seed=seed, length=length, batch_size=settings.batch_size)
    model_cfg = resolve_model(TASK, {"hidden_size": settings.hidden_size, "num_layers": settings.num_layers,
                                     "embed_dim": settings.embed_dim, "engine": settings.engine,
                                     "cell_options": dict(settings.cell_options or {}),
                                     **settings_for_cell(cell, {"init": settings.init, "forget_bias": settings.forget_bias,
                                                                "mu": settings.mu, "s": settings.s})}, cell=cell)
    train_cfg = resolve_train(TASK, {"steps": budget, "lr": settings.lr, "eval_every": settings.eval_every,
                                     "sample_every": settings.eval_every, "log_every": settings.eval_every,
                                     "seed": seed, "device": settings.device, "cpu_limit": settings.cpu_limit,
                                     "threads": settings.threads})
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


PART = "probe"
RUN_FIELDS = ("cell", "length", "seed", "accuracy", "val_loss", "steps", "budget", "stopped_early", "solved",
              "solved_at", "seconds")  # a run's record in probe.json


def probe_study(cells: Sequence[str], lengths: Sequence[int], seeds: Sequence[int], settings: ProbeSettings,
                out: Path, threads: int = 1) -> Study:
    """The probe's grid on the one Study: length-major, then cell, then seed; one part, ``probe``."""
    shared = {k: v for k, v in asdict(settings).items()}
    specs = [Spec(PART, {"cell": cell, "length": length, **shared}, seed, title=f"{cell}, T={length}")
             for length in lengths for cell in cells for seed in seeds]

    def run(spec: Spec, ctx: RunContext) -> dict[str, Any]:
        p = dict(spec.params)
        cell, length = p.pop("cell"), p.pop("length")
        return probe_run(cell, length, spec.seed, ProbeSettings(**{**p, "threads": ctx.threads}))

    return Study("probe", [Part(PART, specs)], run, out, threads=threads)


def run_probe(
    cells: Sequence[str],
    lengths: Iterable[int],
    seeds: int | Iterable[int],
    *,
    steps: int | None = None,
    settings: ProbeSettings | None = None,
    threads: int | None = 1,
    progress: ProbeProgress | None = None,
    out: Path | None = None,
) -> dict[str, Any]:
    """Train every (cell, length, seed) once and summarise held-out accuracy against palindrome length.

    ``seeds`` is a count (seeds 0..n-1) or the seeds themselves; ``steps`` one budget for every
    length (None: ``steps_for_length``), overriding ``settings.steps``. ``threads`` sets torch's
    intra-op threads for the probe and restores them after (None: leave as is): these small
    nets gain little from a second thread, and on a busy 2-core machine one thread ran 10x
    faster than two (OpenMP threads spin while they wait for each other).
    Returns JSON-ready results: ``settings``, one record per run in ``runs``, ``summary`` (mean
    ± std per cell and length) and ``longest_90``, the longest T up to which each cell keeps
    >= 90% mean held-out accuracy. ``out``: the Study's folder (``out/probe/runs.jsonl``): given again,
    the probe resumes and reruns only what had not finished; None: a temporary folder.
    """
    cells = resolve_cells(cells)
    lengths = resolve_lengths(lengths)
    seeds = resolve_seeds(seeds)
    settings = settings or ProbeSettings()
    if steps is not None:
        settings = ProbeSettings(**{**asdict(settings), "steps": steps})
    threads = threads if threads is not None else torch.get_num_threads()
    started = time.perf_counter()
    with ExitStack() as stack:
        folder = Path(out) if out is not None else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chargen-probe-")))
        study = probe_study(cells, lengths, seeds, settings, folder, threads)
        study.run(progress=grid_progress(progress, lambda spec: {"cell": spec.params["cell"], "length":
                                                                 spec.params["length"], "seed": spec.seed})
                  if progress else None)
        runs = [{**{k: r[k] for k in RUN_FIELDS}, "env": r["env"]} for r in study.records(PART)]
    used_threads = threads
    summary = summarise(runs, cells, lengths)
    train = task_defaults(TASK).train
    return {
        "cells": cells,
        "lengths": lengths,
        "seeds": seeds,
        "settings": {
            **asdict(settings),
            "engine": settings.engine or "fused (loop for cells without a kernel)",
            "steps": {str(t): settings.budget(t) for t in lengths},
            "optimizer": train["optimizer"],
            "schedule": train["schedule"],
            "clip": train["clip"],
            "held_out": HELD_OUT_SIZE, "held_out_seed": HELD_OUT_SEED,
            "early_stop": {"accuracy": PalindromeConfig.target_accuracy, "patience": PalindromeConfig.patience},
            "threshold": THRESHOLD, "chance": CHANCE,
        },
        "runs": runs,
        "summary": summary,
        "longest_90": longest_kept(summary, cells),
        "elapsed_s": round(time.perf_counter() - started, 1),
        "environment": environment(used_threads, threads=used_threads, cpus=cpu_count()),
    }
