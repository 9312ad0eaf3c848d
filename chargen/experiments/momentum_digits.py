"""The momentum question on sequential and permuted 8 x 8 digits (issue 24): steps to the LSTM's best validation loss, and test accuracy.

The paper's claim on permuted pixel-MNIST is speed: MomentumLSTM reaches the LSTM's best test
loss in about 1.6x fewer epochs (and never on plain MNIST). Here, on the ``digits`` task (its
defaults: hidden 128, one grey level per step through a 1-wide embedding, RMSProp, clip 10):

- parts ``sequential`` and ``permuted`` (the task's fixed pixel order);
- arms: the LSTM (the mu = 0, s = 1 control) and MomentumLSTM(mu 0.6, s 0.6), each at the learning
  rate from ``LRS`` with the lowest mean best validation loss on ``SELECTION_SEEDS`` (never the
  reported seeds), then run on the reported seeds;
- per run: the validation-loss curve (every ``EVAL_EVERY`` steps), the best validation loss and its
  step, and the test accuracy of the model kept at that best (``best/``);
- the summary pairs runs by seed: each arm's steps to reach the LSTM's best validation loss of the
  same seed (a run that never reaches it counts one evaluation past the budget, worse than any that
  does), with bootstrap intervals, the share that reach it (Wilson), and rank tests against the LSTM.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from chargen import checkpoint
from chargen.errors import UsageError
from chargen.experiments.study import Part, RunContext, Spec, Study, rank_tests, summarise
from chargen.experiments.sweep import choose_lr
from chargen.tasks import build_task, evaluate_saved
from chargen.tasks.resolve import resolve_model, resolve_train

NAME = "momentum-digits"
ARMS: dict[str, dict[str, Any]] = {"lstm": {"cell": "lstm"},
                                   "momentum-lstm": {"cell": "momentum-lstm", "mu": 0.6, "s": 0.6}}
CONTROL = "lstm"
LRS = (1e-3, 3e-3)
SELECTION_SEEDS = (100, 101)
SEEDS = (0, 1, 2, 3, 4)
STEPS = 2000
EVAL_EVERY = 50
PARTS = {"sequential": False, "permuted": True}


def specs_for(part: str, arm: str, lr: float, seeds: Sequence[int], phase: str, steps: int) -> list[Spec]:
    return [Spec(part, {"phase": phase, "arm": arm, "lr": lr, "permuted": PARTS[part], "steps": steps,
                        "model": ARMS[arm]}, seed, title=f"{phase} {part} {arm} lr={lr:g}") for seed in seeds]


def chosen_lrs(records: Sequence[Mapping[str, Any]], lrs: Sequence[float]) -> dict[str, float] | None:
    """Each arm's learning rate: the lowest mean best validation loss on the selection seeds (None until all ran)."""
    chosen = {}
    for arm in ARMS:
        scores: dict[float, list[float]] = {}
        for lr in lrs:
            found = [r["best_val_loss"] for r in records if r["params"]["phase"] == "select"
                     and r["params"]["arm"] == arm and r["params"]["lr"] == lr and r["seed"] in SELECTION_SEEDS]
            if len(found) < len(SELECTION_SEEDS):
                return None
            scores[lr] = found
        chosen[arm] = choose_lr(scores)
    return chosen


def planner(part: str, seeds: Sequence[int], steps: int, lrs: Sequence[float]) -> Any:
    """Selection runs first; once they are in, the reported runs of each arm at its chosen rate, seed-major."""

    def plan(records: Sequence[dict[str, Any]]) -> list[Spec]:
        select = [s for arm in ARMS for lr in lrs for s in specs_for(part, arm, lr, SELECTION_SEEDS, "select", steps)]
        chosen = chosen_lrs(records, lrs)
        if chosen is None:
            return select
        report = [spec for seed in seeds for arm in ARMS
                  for spec in specs_for(part, arm, chosen[arm], [seed], "report", steps)]
        return [*select, *report]

    return plan


def run_digits(spec: Spec, ctx: RunContext) -> dict[str, Any]:
    """One training run of an arm: its validation curve, best validation loss and the test accuracy at that best."""
    p = spec.params
    task = build_task("digits", seed=spec.seed, permuted=p["permuted"])
    model_cfg = resolve_model("digits", dict(p["model"]))
    train_cfg = resolve_train("digits", {"steps": p["steps"], "lr": p["lr"], "seed": spec.seed, "device": "cpu",
                                         "threads": ctx.threads, "eval_every": EVAL_EVERY, "log_every": EVAL_EVERY})
    from chargen.train import fit  # the loop, imported where it runs

    with tempfile.TemporaryDirectory(prefix="chargen-digits-") as tmp:
        run_dir = Path(tmp) / "run"
        run = fit(task, model_cfg, train_cfg, run_dir, command=f"chargen study {NAME} ({spec.label})")
        lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        curve = [[r["step"], r["val_loss"]] for r in map(json.loads, lines) if r.get("split") == "val"]
        held_out = evaluate_saved(checkpoint.load(run_dir / checkpoint.BEST), "cpu")["metrics"]
    return {"val_curve": curve, "best_val_loss": run.best_val_loss, "best_step": run.best_step,
            "final_val_accuracy": run.metrics["val_accuracy"], "test_accuracy": held_out["accuracy"],
            "steps": run.step, "train_seconds": round(run.train_seconds, 3)}


def build(out: Path, *, seeds: Sequence[int] | None = None, minutes: float | None = None, threads: int = 1,
          steps: int = STEPS, lrs: Sequence[float] = LRS) -> Study:
    """The study under ``out``: one part per pixel order (``seeds``: instead of 0-4)."""
    if minutes is not None:
        raise UsageError(f"study {NAME} compares steps to a target: it runs a step budget ({steps}), not minutes",
                         params="minutes")
    seed_list = list(seeds) if seeds is not None else list(SEEDS)
    parts = [Part(part, planner(part, seed_list, steps, lrs),
                  f"{part} digits: {' vs '.join(ARMS)}, lr from {', '.join(f'{lr:g}' for lr in lrs)} on seeds "
                  f"{SELECTION_SEEDS[0]}-{SELECTION_SEEDS[-1]}, {steps} steps") for part in PARTS]
    return Study(NAME, parts, run_digits, out, threads=threads)


def steps_to_reach(curve: Sequence[Sequence[float]], target: float, budget: int) -> tuple[int, bool]:
    """The first evaluated step at or below ``target``, or one evaluation past ``budget`` when none is."""
    for step, loss in curve:
        if loss <= target:
            return int(step), True
    return budget + EVAL_EVERY, False


def paired(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The reported runs with ``steps_to_target`` and ``reached`` against the LSTM run of the same seed."""
    reported = [r for r in records if r["params"]["phase"] == "report"]
    targets = {r["seed"]: r["best_val_loss"] for r in reported if r["params"]["arm"] == CONTROL}
    out = []
    for r in reported:
        if r["seed"] in targets:
            steps, reached = steps_to_reach(r["val_curve"], targets[r["seed"]], r["params"]["steps"])
            out.append({**r, "steps_to_target": steps, "reached": reached})
    return out


def summary(study: Study) -> dict[str, Any]:
    """Per part and arm: steps to the LSTM's best validation loss, best validation loss and test accuracy with
    intervals, the share reaching the target, and rank tests against the LSTM; the chosen learning rates."""
    parts: dict[str, Any] = {}
    for name in study.parts:
        records = study.records(name)
        if not records:
            continue
        runs = paired(records)
        rows = summarise(runs, ["arm"], rates=["reached"],
                         values=["steps_to_target", "best_val_loss", "test_accuracy", "best_step"])
        has_control = any(r["params"]["arm"] == CONTROL for r in runs)
        tests = [t for value in ("steps_to_target", "test_accuracy", "best_val_loss")
                 for t in (rank_tests(runs, ["arm"], value, baseline=[CONTROL]) if has_control else [])]
        planned = len(study.parts[name].specs(records))
        lrs = sorted({r["params"]["lr"] for r in records})
        parts[name] = {"rows": rows, "rank_tests": tests, "chosen_lr": chosen_lrs(records, lrs), "runs": len(records),
                       "planned": planned, "complete": len(records) == planned}
    return {"study": NAME, "parts": parts, "notes": list(study.notes)}


__all__ = ["ARMS", "LRS", "NAME", "PARTS", "SEEDS", "STEPS", "build", "paired", "run_digits", "steps_to_reach",
           "summary"]
