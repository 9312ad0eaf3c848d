"""``compare --grid``: cells swept over momentum settings, each variant at the learning rate it does best with on validation.

A fair momentum comparison needs three things the plain ``compare`` does not give: every
momentum setting of a grid (``mu``, ``s``, ``forget_bias``), the mu = 0, s = 1 control (the base
cell, always run), and a learning rate chosen *per variant* from a small grid by mean final
validation loss over the seeds — so no cell is judged at a learning rate tuned for another.
When a MomentumLSTM variant beats the LSTM control, its gain may be the larger forget bias its
input-bias scaling gives (``s / (1 - mu)``), so an LSTM with that matched effective forget bias
is run too (``matched_forget_bias``).

Every (variant, lr) is one ``compare`` under ``out/<variant>/lr<lr>/``; one already saved there is
loaded instead of run again, so a stopped sweep resumes. ``sweep.json`` holds the summary.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from chargen.experiments.compare import RESULTS_JSON, CompareResult, compare, load_results, stats
from chargen.errors import UsageError
from chargen.experiments.probe import SOLVED  # one definition of "solved" for the probe, the study and sweeps
from chargen.inits import PAPER_FORGET_BIAS, effective_forget_bias
from chargen.experiments.sweep import Variant, choose_lr, expand_variants, wilson
from chargen.tracking import write_json

FORMAT = "chargen-sweep/1"
SWEEP_JSON = "sweep.json"

# progress(message): one line per (variant, lr) before it starts
SweepProgress = Callable[[str], None]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_")


def compare_sweep(
    task: str,
    cells: Sequence[str],
    grid: Mapping[str, Sequence[float]],
    seeds: int | Sequence[int] = 3,
    *,
    task_options: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    out_dir: Path,
    matched_forget_bias: bool = True,
    progress: SweepProgress | None = None,
    compare_progress: Any = None,
) -> dict[str, Any]:
    """Run the sweep and return (and save as ``out_dir/sweep.json``) one row per variant at its chosen lr.

    ``grid`` comes from ``sweep.parse_grid``: ``mu``, ``s``, ``forget_bias`` make the variants,
    ``lr`` the learning rates each variant is tried at (none: the task's or ``train["lr"]``).
    """
    out_dir = Path(out_dir)
    model = dict(model or {})
    # a momentum setting given outside the grid is a one-value grid, so every variant gets it (not the defaults)
    grid = {**{k: [model.pop(k)] for k in ("mu", "s", "forget_bias") if k in model and k not in grid}, **grid}
    for k in ("mu", "s", "forget_bias"):
        model.pop(k, None)
    train = dict(train or {})
    lrs = list(grid.get("lr", [])) or [train.get("lr")]
    for lr in lrs:
        if lr is not None and not lr > 0:
            raise UsageError(f"grid: lr must be positive, got {lr}", params="grid")
    variants = expand_variants(cells, grid)
    rows: list[dict[str, Any]] = []

    def run_variant(variant: Variant) -> dict[str, Any]:
        per_lr: dict[float | None, CompareResult] = {}
        for lr in lrs:
            folder = out_dir / slug(variant.label) / (f"lr{lr:g}" if lr is not None else "lr-default")
            if (folder / RESULTS_JSON).exists():
                per_lr[lr] = load_results(folder)
                continue
            if progress:
                progress(f"{variant.label} at lr {lr if lr is not None else 'default'}")
            settings = {**model, **{k: v for k, v in variant.model_settings().items() if k != "cell"}}
            train_cfg = {**train, **({"lr": lr} if lr is not None else {})}
            per_lr[lr] = compare(task, [variant.cell], seeds, task_options=task_options, model=settings,
                                 train=train_cfg, out_dir=folder, progress=compare_progress)
        return _row(variant, per_lr)

    for variant in variants:
        rows.append(run_variant(variant))
    matched = []
    if matched_forget_bias:
        for row in list(rows):
            control = _control_for(rows, row)
            if row["cell"] != "momentum-lstm" or control is None or not _beats(row, control):
                continue
            base_fb = row["forget_bias"] if row["forget_bias"] is not None else (
                PAPER_FORGET_BIAS if model.get("init") == "paper" else None)
            if base_fb is None:
                matched.append({"for": row["label"], "skipped": "the forget bias is random under the pytorch init; "
                                                               "give forget_bias to match it"})
                continue
            fb = effective_forget_bias(base_fb, row["mu"], row["s"])
            variant = Variant("lstm", 0.0, 1.0, fb, "matched-forget-bias")
            if all(r["label"] != variant.label for r in rows):
                rows.append(run_variant(variant))
            matched.append({"for": row["label"], "lstm": variant.label, "effective_forget_bias": fb})
    result = {
        "format": FORMAT, "task": task, "cells": list(cells), "grid": {k: list(v) for k, v in grid.items()},
        "seeds": seeds if isinstance(seeds, int) else list(seeds), "model": model, "train": train,
        "task_options": task_options or {}, "selection": "per variant, the lr with the lowest mean final "
        "validation loss over the seeds (a diverged run counts as worst; ties: the smaller lr)",
        "rows": rows, "matched_forget_bias": matched,
    }
    write_json(out_dir / SWEEP_JSON, result)
    return result


def _row(variant: Variant, per_lr: Mapping[float | None, CompareResult]) -> dict[str, Any]:
    lrs = list(per_lr)
    chosen = lrs[0] if len(lrs) == 1 else choose_lr(
        {lr: [r.final.get("val_loss") for r in res.runs] for lr, res in per_lr.items()})
    result = per_lr[chosen]
    runs = result.runs
    row: dict[str, Any] = {
        **variant.to_dict(), "lr": chosen,
        "val_loss_by_lr": {f"{lr:g}" if lr is not None else "default": stats(r.final.get("val_loss") for r in res.runs)
                           for lr, res in per_lr.items()},
        "val_loss": stats(r.final.get("val_loss") for r in runs),
        "accuracy": stats(result.accuracy(r) for r in runs),
        "steps": stats(r.steps for r in runs), "seeds": [r.seed for r in runs],
    }
    if result.task == "palindrome":
        accs = [result.accuracy(r) for r in runs]
        solved = sum(a is not None and a >= SOLVED for a in accs)
        lo, hi = wilson(solved, len(accs))
        row.update(solved=solved, n=len(accs), ci_low=lo, ci_high=hi)
    return row


def _control_for(rows: Sequence[dict[str, Any]], row: dict[str, Any]) -> dict[str, Any] | None:
    base = row["cell"].removeprefix("momentum-")
    for r in rows:
        if r["cell"] == base and r["role"] == "control" and r["forget_bias"] == row["forget_bias"]:
            return r
    return None


def _beats(row: dict[str, Any], control: dict[str, Any]) -> bool:
    """A variant beats its control on solve rate (palindromes) or on mean validation loss."""
    if "solved" in row and "solved" in control and row["solved"] != control["solved"]:
        return row["solved"] > control["solved"]
    a, b = row["val_loss"]["mean"], control["val_loss"]["mean"]
    return a is not None and b is not None and a < b
