"""The baselines study (issue 23): validation nats/char of every model family at equal CPU budgets on three corpora.

Grid: corpus (grimm, tinyshakespeare, firstnames) x budget (1 and 5 CPU-minutes of the run's own
process, one thread) x family (n-gram, RNN, GRU, LSTM, MomentumLSTM, transformer) x seeds 0-2.
Each (corpus, budget) is a part, ``grimm-1m`` ... ``firstnames-5m``, so two processes can take one
part each. A family that this checkout does not have yet (the GRU cell, the transformer and the
n-gram model arrive on their own branches) is left out of the plan with a note, never a crash;
once it lands, rerunning the same command runs only its runs.

Every family is scored on the same validation characters (the last 10% of the corpus, the
``lm`` task's split) in nats per character. The recurrent models and the transformer train
through ``chargen.train.fit`` with a ``cpu_limit``; evaluation runs once, after the budget, so it
costs every family nothing inside it. The n-gram model counts in seconds (its order chosen on
validation, as its module does) and records the CPU time it took.

The sizes are first choices for one thread, to be checked by a pilot (one seed of ``grimm-1m``):
a size the budget leaves undertrained shows as a loss still falling at the last log record.
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from chargen.cells import CELLS
from chargen.errors import UsageError
from chargen.experiments.harness import RunRelay
from chargen.experiments.study import Part, RunContext, Spec, Study, rank_tests, summarise
from chargen.tasks import build_task
from chargen.tasks.lm import LMData
from chargen.tasks.resolve import resolve_model, resolve_train

NAME = "baselines"
CORPORA = ("grimm", "tinyshakespeare", "firstnames")
MINUTES = (1, 5)
FAMILIES = ("ngram", "rnn", "gru", "lstm", "momentum-lstm", "transformer")
SEEDS = (0, 1, 2)
RECURRENT = ("rnn", "gru", "lstm", "momentum-lstm")
VAL_FRACTION = 0.1  # the lm task's split: every family scores the same last 10%

DATA = {"seq_len": 64, "batch_size": 32}
TRAIN = {"lr": 3e-3, "optimizer": "adam", "clip": 5.0, "warmup": 20, "schedule": "cosine"}
# Model settings per budget (CPU-minutes) and family; the recurrent ones share an embedding of 32, no dropout.
SIZES: dict[int, dict[str, dict[str, Any]]] = {
    1: {
        "rnn": {"hidden_size": 256, "num_layers": 1},
        "gru": {"hidden_size": 160, "num_layers": 1},
        "lstm": {"hidden_size": 128, "num_layers": 1},
        "momentum-lstm": {"hidden_size": 128, "num_layers": 1},
        "transformer": {"n_layer": 2, "n_head": 4, "d_model": 64, "context": 64},
    },
    5: {
        "rnn": {"hidden_size": 384, "num_layers": 1},
        "gru": {"hidden_size": 192, "num_layers": 2},
        "lstm": {"hidden_size": 160, "num_layers": 2},
        "momentum-lstm": {"hidden_size": 160, "num_layers": 2},
        "transformer": {"n_layer": 4, "n_head": 4, "d_model": 96, "context": 96},
    },
}


def missing_family(family: str) -> str | None:
    """Why ``family`` cannot run in this checkout (None: it can)."""
    if family in RECURRENT:
        return None if family in CELLS else f"cell {family!r} is not registered yet"
    if family == "transformer":
        models = importlib.import_module("chargen.models")
        return None if "transformer" in getattr(models, "FAMILIES", ()) else "the transformer family is not here yet"
    if family == "ngram":
        try:
            module = importlib.import_module("chargen.models.ngram_lm")
        except ImportError:
            return "the n-gram language model (chargen.models.ngram_lm) is not here yet"
        return None if hasattr(module, "baseline_for") else "chargen.models.ngram_lm has no baseline_for"
    return f"unknown family {family!r}"


def sized_budget(minutes: float) -> int:
    """The sized budget a run of ``minutes`` takes its sizes from: the largest at or below it (else the smallest)."""
    below = [m for m in SIZES if m <= minutes]
    return max(below) if below else min(SIZES)


def model_settings(family: str, minutes: float) -> dict[str, Any]:
    """The model settings of ``family`` at a budget of ``minutes`` CPU-minutes (part of each run's key)."""
    if family == "ngram":
        return {}
    size = dict(SIZES[sized_budget(minutes)][family])
    if family == "transformer":
        return {"family": "transformer", "dropout": 0.0, **size}
    return {"cell": family, "embed_dim": 32, "dropout": 0.0, **size}


def part_name(corpus: str, minutes: float) -> str:
    return f"{corpus}-{minutes:g}m"


def specs(corpus: str, minutes: float, families: Sequence[str], seeds: Sequence[int]) -> list[Spec]:
    """One part's runs, seed-major: a part stopped early compares its families on the same seeds."""
    return [Spec(part_name(corpus, minutes), {"corpus": corpus, "minutes": minutes, "family": family,
                                              "model": model_settings(family, minutes),
                                              **data_settings(family, minutes), **TRAIN}, seed,
                 title=f"{corpus} {minutes:g} CPU-min {family}")
            for seed in seeds for family in families]


def data_settings(family: str, minutes: float) -> dict[str, Any]:
    """Batching: the recurrent models' windows, or the transformer's own context (it trains on windows that long)."""
    if family == "transformer":
        return {**DATA, "seq_len": SIZES[sized_budget(minutes)][family]["context"]}
    return dict(DATA)


def run_baseline(spec: Spec, ctx: RunContext) -> dict[str, Any]:
    """Train (or count) one family on one corpus for its CPU budget; its validation nats/char and cost."""
    p = spec.params
    if p["family"] == "ngram":
        return _run_ngram(p["corpus"])
    task = build_task("lm", seed=spec.seed, corpus=p["corpus"], seq_len=p["seq_len"], batch_size=p["batch_size"],
                      val_fraction=VAL_FRACTION)
    model_cfg = resolve_model("lm", dict(p["model"]))
    never = 10**9  # evaluate and sample once, after the budget: evaluation costs no family its budget
    train_cfg = resolve_train("lm", {"steps": None, "cpu_limit": 60.0 * p["minutes"], "threads": ctx.threads,
                                     "seed": spec.seed, "device": "cpu", "eval_every": never, "sample_every": never,
                                     "log_every": 50, **{k: p[k] for k in TRAIN}})
    from chargen.train import fit  # the loop, imported where it runs

    relay = RunRelay()
    with tempfile.TemporaryDirectory(prefix="chargen-baselines-") as tmp:
        run = fit(task, model_cfg, train_cfg, Path(tmp) / "run", relay,
                  command=f"chargen study baselines ({spec.label})")
    return {
        "val_loss": run.metrics["val_loss"], "steps": run.step, "parameters": relay.parameters,
        "train_cpu_seconds": round(run.cpu_seconds, 3), "train_seconds": round(run.train_seconds, 3),
        "chars_per_second": run.units / run.train_seconds if run.train_seconds else None,
        "last_train_loss": relay.last_loss,
    }


def _run_ngram(corpus: str) -> dict[str, Any]:
    data = LMData.load(corpus, VAL_FRACTION)
    ngram = importlib.import_module("chargen.models.ngram_lm")
    order, nats = ngram.baseline_for(data.vocab.decode(data.train.tolist()), data.vocab.decode(data.val.tolist()))
    return {"val_loss": float(nats), "order": int(order), "steps": None, "parameters": None}


def build(out: Path, *, seeds: Sequence[int] | None = None, minutes: float | None = None, threads: int = 1,
          corpora: Sequence[str] = CORPORA, families: Sequence[str] = FAMILIES) -> Study:
    """The baselines study under ``out`` (``minutes``: one budget instead of both; ``seeds``: instead of 0-2)."""
    budgets = [minutes] if minutes is not None else list(MINUTES)
    if not all(0 < m < float("inf") for m in budgets):
        raise UsageError(f"minutes must be a positive number, got {minutes}", params="minutes")
    available = [f for f in families if missing_family(f) is None]
    notes = [f"{f} skipped: {missing_family(f)}" for f in families if f not in available]
    seed_list = list(seeds) if seeds is not None else list(SEEDS)
    parts = [Part(part_name(c, m), specs(c, m, available, seed_list),
                  f"{c} at {m:g} CPU-minute(s): {', '.join(available)}") for c in corpora for m in budgets]
    return Study(NAME, parts, run_baseline, out, threads=threads, notes=notes)


def summary(study: Study) -> dict[str, Any]:
    """Per part and family: validation nats/char (mean, median, bootstrap intervals), parameters, throughput;
    rank tests of each family's losses against the LSTM's."""
    parts: dict[str, Any] = {}
    for name in study.parts:
        records = study.records(name)
        if not records:
            continue
        rows = summarise(records, ["family"], values=["val_loss", "parameters", "chars_per_second", "steps"])
        has_lstm = any(r["params"]["family"] == "lstm" for r in records)
        tests = rank_tests(records, ["family"], "val_loss", baseline=["lstm"]) if has_lstm else []
        planned = len(study.parts[name].specs(records))
        parts[name] = {"rows": rows, "rank_tests": tests, "runs": len(records), "planned": planned,
                       "complete": len(records) == planned}
    return {"study": NAME, "parts": parts, "notes": list(study.notes)}


def sizes_table(minutes: Mapping[int, Mapping[str, Any]] = SIZES) -> list[dict[str, Any]]:
    """The sizes as rows (for the report's method paragraph)."""
    return [{"minutes": m, "family": f, **s} for m, by in minutes.items() for f, s in by.items()]


__all__ = ["CORPORA", "FAMILIES", "MINUTES", "NAME", "SEEDS", "SIZES", "build", "missing_family", "model_settings",
           "part_name", "run_baseline", "sizes_table", "summary"]
