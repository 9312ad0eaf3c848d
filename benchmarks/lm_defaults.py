"""Candidate LM defaults side by side on a fixed step budget: a proxy for the 10-minute tinyshakespeare target.

    nice -n 10 python benchmarks/lm_defaults.py                      # every candidate, 600 steps each
    nice -n 10 python benchmarks/lm_defaults.py --steps 300 --only baseline dropout-0.3

The target (<= 1.45 nats/char on tinyshakespeare in a 10-minute run on 2 cores, without losing
grimm's <= 1.40) cannot be timed fairly on a machine other jobs load, so this compares
candidates at an equal number of steps (equal characters, except where the batch changes),
on one thread, and records the CPU seconds each used (process time, which the load does not
inflate the way it inflates wall time). Each finished run is appended to the results file at
once, and a rerun skips what is there, so the sweep can be stopped and resumed.

A proxy, not the target: a short schedule overfits less than the 4,000-step default run does,
so it under-rates regularisers (dropout, weight decay). Read its ranking as a hint for which
candidates deserve a full 10-minute run on an idle machine, never as the answer.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from chargen.tasks import build_task
from chargen.tasks.resolve import resolve
from chargen.train import fit

RESULTS = Path(__file__).parent / "results" / "lm_defaults.jsonl"

# name -> (model changes, train changes, task changes, step multiplier); the baseline is the shipped default
CANDIDATES: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any], float]] = {
    "baseline": ({}, {}, {}, 1.0),
    "dropout-0.3": ({"dropout": 0.3}, {}, {}, 1.0),
    "batch-128-half-steps": ({}, {}, {"batch_size": 128}, 0.5),  # the same characters as the baseline
    "weight-decay-1e-5": ({}, {"weight_decay": 1e-5}, {}, 1.0),
    "hidden-384": ({"hidden_size": 384}, {}, {}, 1.0),
    "lr-2e-3": ({}, {"lr": 2e-3}, {}, 1.0),
}


def done(path: Path) -> set[tuple[str, str, int]]:
    if not path.exists():
        return set()
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["candidate"], r["corpus"], r["steps"]) for r in rows}


def run(name: str, corpus: str, steps: int, evals: int) -> dict[str, Any]:
    model_changes, train_changes, task_changes, multiplier = CANDIDATES[name]
    n = max(1, round(steps * multiplier))
    resolved = resolve("lm", model=model_changes, options={"corpus": corpus, **task_changes}, train={
        "steps": n, "eval_every": max(1, n // evals), "sample_every": n + 1, "log_every": min(50, n), "seed": 1337,
        "device": "cpu", **train_changes})
    task = build_task("lm", seed=0, **resolved.options)
    model, cfg = resolved.model, resolved.train
    cpu, wall = time.process_time(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lm-defaults-") as tmp:
        result = fit(task, model, cfg, Path(tmp) / "run")
        vals = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    curve = [(r["step"], round(r["val_loss"], 4)) for r in vals if r.get("split") == "val"]
    train = [r["loss"] for r in vals if r.get("split") == "train"]
    return {"candidate": name, "corpus": corpus, "steps": steps, "steps_run": n, "val_loss": result.metrics["val_loss"],
            "best_val_loss": result.best_val_loss, "best_step": result.best_step, "val_curve": curve,
            "last_train_loss": train[-1] if train else None, "cpu_s": round(time.process_time() - cpu, 1),
            "wall_s": round(time.perf_counter() - wall, 1), "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="tinyshakespeare")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--evals", type=int, default=3, help="evaluations per run")
    parser.add_argument("--only", nargs="*", choices=list(CANDIDATES), help="candidates to run (default: all)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    have = done(args.results)
    for name in args.only or list(CANDIDATES):
        if (name, args.corpus, args.steps) in have:
            print(f"{name}: already in {args.results}")
            continue
        row = run(name, args.corpus, args.steps, args.evals)
        with args.results.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{name:<22} val {row['val_loss']:.4f}  best {row['best_val_loss']:.4f}  train {row['last_train_loss']:.4f}"
              f"  cpu {row['cpu_s']:.0f}s  wall {row['wall_s']:.0f}s", flush=True)
    print(f"\n{'candidate':<22}{'steps':>6}{'val':>8}{'best':>8}{'train':>8}{'cpu s':>8}  (from {args.results})")
    rows = [json.loads(line) for line in args.results.read_text().splitlines() if line.strip()]
    for r in sorted((r for r in rows if r["corpus"] == args.corpus and r["steps"] == args.steps),
                    key=lambda r: r["best_val_loss"]):
        print(f"{r['candidate']:<22}{r['steps_run']:>6}{r['val_loss']:>8.4f}{r['best_val_loss']:>8.4f}"
              f"{r['last_train_loss']:>8.4f}{r['cpu_s']:>8.0f}")


if __name__ == "__main__":
    main()
