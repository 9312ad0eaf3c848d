"""Side-by-side comparison of recurrent cells: same task, data, seeds and budget; one table, one plot.

``compare(task, cells, seeds, ...)`` trains every (cell, seed) through ``chargen.train.fit`` — the
one training loop — and collects per run the final validation metrics, held-out accuracy where
the task reports one, the steps (and seconds) to reach a loss threshold, wall time and training
throughput. It aggregates mean ± sample standard deviation over seeds per cell and saves
``compare.json`` (settings, every run with its loss curves, the summary) and ``compare.png``
(the loss curves of all cells, mean over seeds with a min–max band). ``load_results`` reads the
JSON back, so a report can be built, or the figure redrawn, without training again.

Fairness: every cell of one seed sees the same batches in the same order (the task is built
with that seed) and starts its weights from that seed; cells differ only in the recurrent core.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from chargen import checkpoint
from chargen.cells import resolve_cells
from chargen.errors import ChargenError, UsageError
from chargen.experiments.harness import RunRelay, check_out_dir, copy_logs, environment, warm_up
from chargen.experiments.study import Event, Part, RunContext, Spec, Study
from chargen.models import ModelConfig
from chargen.plots import plot_compare
from chargen.runtime import resolve_seeds
from chargen.tasks import build_task, evaluate_saved
from chargen.tasks.resolve import resolve_model, resolve_options, resolve_train
from chargen.tracking import read_json, read_jsonl, result_fields, write_json
from chargen.train import TrainConfig, fit

FORMAT = "chargen-compare/1"
RESULTS_JSON = "compare.json"
CURVES_PNG = "compare.png"
ACCURACY_KEYS = ("accuracy", "val_accuracy", "test_accuracy")
DEFAULT_CELLS = ("rnn", "momentum-rnn", "lstm", "momentum-lstm")
PART = "runs"  # the Study's one part: <out_dir>/runs/runs.jsonl, beside each run's logs

# progress(done runs, total runs, info): info["event"] is "start" (before a run: cell, seed),
# "step" (a training log record: step, loss, rate, total_steps) or "end" (info["run"] is the run's record).
CompareProgress = Callable[[int, int, dict[str, Any]], None]


# -- results -------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """One (cell, seed) run: its final numbers and its curves (as logged in its metrics.jsonl)."""

    cell: str
    seed: int
    steps: int
    elapsed: float  # seconds in the training loop, evaluations and checkpoints included, as ``fit`` counts them
    wall: float  # seconds for the whole run: task setup, training, held-out evaluation
    parameters: int
    train_seconds: float  # the training steps alone (forward, backward, update), as ``fit`` times them
    units_per_second: float | None  # units trained on / train_seconds
    final: dict[str, float]  # the last evaluation's metrics (val_loss, ...)
    held_out: dict[str, float] = field(default_factory=dict)  # the task's evaluate_saved metrics, if any
    steps_to_threshold: int | None = None
    seconds_to_threshold: float | None = None
    train_curve: list[list[float]] = field(default_factory=list)  # [step, loss, training seconds at that step]
    val_curve: list[list[float]] = field(default_factory=list)  # [step, val_loss]
    run_dir: str | None = None  # relative to the results folder
    note: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class CompareResult:
    """Everything a comparison produced; ``to_dict``/``from_dict`` round-trip through JSON."""

    task: str
    unit: str
    cells: list[str]
    seeds: list[int]
    task_options: dict[str, Any]
    model: dict[str, dict[str, Any]]  # per cell: the model config it was built from
    train: dict[str, Any]  # the training config shared by every run (its seed varies)
    threshold: float
    threshold_rule: str
    accuracy_key: str | None  # e.g. "held_out.accuracy" or "final.val_accuracy"
    runs: list[RunResult]
    summary: dict[str, dict[str, Any]]  # per cell: {metric: {mean, std, n, min, max}}
    environment: dict[str, Any] = field(default_factory=dict)
    elapsed: float = 0.0
    format: str = FORMAT
    out_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompareResult:
        values = result_fields(cls, data, FORMAT, "comparison")
        values["runs"] = [RunResult.from_dict(r) for r in data.get("runs", [])]
        return cls(**values)

    def runs_of(self, cell: str) -> list[RunResult]:
        return [r for r in self.runs if r.cell == cell]

    def accuracy(self, run: RunResult) -> float | None:
        return _pick(run, self.accuracy_key)


def stats(values: Iterable[float | None]) -> dict[str, Any]:
    """Mean, sample standard deviation (n - 1; 0 for a single value), min, max and n of the values given.

    ``None`` values (e.g. a run that never reached the threshold) are left out and counted in
    ``missing``; with no values at all the numbers are None.
    """
    values = list(values)
    present = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    out: dict[str, Any] = {"n": len(present), "missing": len(values) - len(present)}
    if not present:
        return {**out, "mean": None, "std": None, "min": None, "max": None}
    return {
        **out,
        "mean": statistics.fmean(present),
        "std": statistics.stdev(present) if len(present) > 1 else 0.0,
        "min": min(present),
        "max": max(present),
    }


def save_results(result: CompareResult, path: Path) -> Path:
    """Write the results as JSON, atomically."""
    return write_json(path, result.to_dict())


def load_results(path: Path) -> CompareResult:
    """A comparison saved by ``compare``: the JSON file itself or the folder that holds it."""
    path = Path(path)
    return CompareResult.from_dict(read_json(path / RESULTS_JSON if path.is_dir() else path, "a chargen comparison"))


# -- the comparison ------------------------------------------------------------------------------


def compare(
    task: str,
    cells: Sequence[str] | str = DEFAULT_CELLS,
    seeds: int | Iterable[int] = 3,
    *,
    task_options: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    threshold: float | None = None,
    held_out: bool = True,
    keep_weights: bool = False,
    out_dir: Path | None = None,
    progress: CompareProgress | None = None,
) -> CompareResult:
    """Train each cell for each seed under one budget and compare them.

    - ``task_options``: the task's own options (corpus, length, batch_size...), over its defaults.
    - ``model``: ModelConfig fields over the task's model defaults (hidden_size, num_layers,
      embed_dim, dropout, engine, cell_options). ``cell`` is set per run. Without ``engine``
      each cell runs on ``fused`` where it has a kernel, else ``loop``; ``cell_options`` go to
      the cells that take them (``mu``/``s`` only to momentum cells).
    - ``train``: TrainConfig fields over the task's training defaults — the budget is ``steps``
      and/or ``time_limit`` (seconds). Unless given, ``eval_every`` is a twentieth of a step
      budget (so the threshold is found to 5% of it) and periodic samples are off.
    - ``threshold``: the validation loss whose first crossing is reported; default: the worst
      cell's mean final validation loss (so every cell but the worst shows how much sooner it
      got there).
    - ``held_out``: also run the task's ``evaluate_saved`` on each trained model (the classifier's
      test split) and keep its numeric metrics.
    - ``out_dir``: where ``compare.json``, ``compare.png`` and ``runs/<cell>-seed<k>/`` (logs and
      config; the weights only with ``keep_weights``) go; None keeps nothing on disk. The runs go
      through the one Study: each is appended to ``runs/runs.jsonl`` as it ends, so a comparison
      stopped before its ``compare.json`` resumes with the same command and ``out_dir``.
    """
    cells = resolve_cells(cells)
    seeds = resolve_seeds(seeds)
    if threshold is not None and not math.isfinite(threshold):
        raise UsageError(f"threshold must be a finite loss, got {threshold}", params="threshold")
    options = resolve_options(task, task_options)
    model_cfgs: dict[str, ModelConfig] = {  # the task's defaults, the overrides, and this cell
        cell: resolve_model(task, model, cell=cell, share_cell_options=True) for cell in cells
    }
    train_over = {k: v for k, v in (train or {}).items() if k != "seed"}  # the seed is set per run
    base_train = resolve_train(task, train_over, defaults={"sample_every": 10**9})  # periodic samples off
    if "eval_every" not in train_over and base_train.steps:  # the threshold found to 5% of a step budget
        base_train = replace(base_train, eval_every=max(1, base_train.steps // 20))

    out_dir = check_out_dir(out_dir, RESULTS_JSON, "a comparison")
    warm_up()  # one-time imports would otherwise count in the first run's wall time
    started = time.perf_counter()
    at = [0, 0]  # (done, total) of the run in progress, for its "step" events
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chargen-compare-")))

        def run_one(spec: Spec, ctx: RunContext) -> dict[str, Any]:
            cell, seed = spec.params["cell"], spec.seed
            name = f"{cell}-seed{seed}"
            run_dir = out_dir / "runs" / name if out_dir is not None and keep_weights else scratch / name
            if run_dir.exists():  # a run in flight when an earlier comparison was stopped: not saved, start afresh
                shutil.rmtree(run_dir)
            run_started = time.perf_counter()
            built = build_task(task, seed=seed, **options)
            relay = RunRelay(on_record=lambda step, metrics: progress and progress(
                at[0], at[1], {"event": "step", "cell": cell, "seed": seed,
                               "total_steps": base_train.steps, **metrics}))
            fitted = fit(built, model_cfgs[cell], TrainConfig(**{**asdict(base_train), "seed": seed}), run_dir,
                         relay, command=f"compare {task} {cell} seed={seed}")
            record = _run_record(cell, seed, fitted, relay)
            if held_out:
                record.held_out, record.note = _held_out(task, run_dir)
            record.wall = time.perf_counter() - run_started
            if out_dir is not None:
                kept = out_dir / "runs" / name
                if not keep_weights:
                    copy_logs(run_dir, kept)
                record.run_dir = str(kept.relative_to(out_dir))
            return {"run": _jsonable(asdict(record)), "unit": built.unit}

        shared = {"task": task, "options": _jsonable(options), "train": _jsonable(asdict(base_train)),
                  "held_out": held_out}
        # seed-major: a stopped grid still compares cells on the same seeds
        specs = [Spec(PART, {"cell": cell, "model": model_cfgs[cell].to_dict(), **shared}, seed,
                      title=f"{cell}, seed {seed}") for seed in seeds for cell in cells]
        folder = out_dir if out_dir is not None else scratch
        study = Study("compare", [Part(PART, specs)], run_one, folder, threads=torch.get_num_threads())

        def on_event(event: Event) -> None:
            at[:] = [event.done, event.total]
            if progress is None or event.spec is None:
                return
            info = {"cell": event.spec.params["cell"], "seed": event.spec.seed}
            if event.kind == "start":
                progress(event.done, event.total, {"event": "start", **info})
            elif event.kind == "end" and event.record is not None:
                progress(event.done, event.total, {"event": "end", **info,
                                                   "run": RunResult.from_dict(event.record["run"])})

        study.run(progress=on_event)
        records = study.records(PART)
        runs = [RunResult.from_dict(r["run"]) for r in records]
        unit = records[0]["unit"] if records else "units"

    rule = "given"
    if threshold is None:
        means = {c: stats(r.final.get("val_loss") for r in runs if r.cell == c)["mean"] for c in cells}
        worst = max((m, c) for c, m in means.items() if m is not None)
        threshold, rule = worst[0], f"the worst cell's mean final val_loss ({worst[1]})"
    for record in runs:
        record.steps_to_threshold, record.seconds_to_threshold = _first_crossing(record, threshold)

    result = CompareResult(
        task=task,
        unit=unit,
        cells=cells,
        seeds=seeds,
        task_options=_jsonable(options),
        model={c: cfg.to_dict() for c, cfg in model_cfgs.items()},
        train=_jsonable({k: v for k, v in asdict(base_train).items() if k != "seed"}),
        threshold=threshold,
        threshold_rule=rule,
        accuracy_key=_accuracy_key(runs),
        runs=runs,
        summary={},
        environment=environment(),
        elapsed=time.perf_counter() - started,
        out_dir=str(out_dir) if out_dir is not None else None,
    )
    result.summary = summarise(result)
    if out_dir is not None:
        save_results(result, out_dir / RESULTS_JSON)
        plot_compare(result, out_dir / CURVES_PNG)
    return result


def summarise(result: CompareResult) -> dict[str, dict[str, Any]]:
    """Per cell: statistics over seeds of every number the table shows, and of every final/held-out metric."""
    summary: dict[str, dict[str, Any]] = {}
    for cell in result.cells:
        runs = result.runs_of(cell)
        row: dict[str, Any] = {
            "val_loss": stats(r.final.get("val_loss") for r in runs),
            "accuracy": stats(result.accuracy(r) for r in runs),
            "steps_to_threshold": stats(r.steps_to_threshold for r in runs),
            "seconds_to_threshold": stats(r.seconds_to_threshold for r in runs),
            "reached_threshold": sum(r.steps_to_threshold is not None for r in runs),
            "steps": stats(r.steps for r in runs),
            "elapsed": stats(r.elapsed for r in runs),
            "train_seconds": stats(r.train_seconds for r in runs),
            "wall": stats(r.wall for r in runs),
            "units_per_second": stats(r.units_per_second for r in runs),
            "parameters": runs[0].parameters if runs else None,
            "runs": len(runs),
        }
        for part in ("final", "held_out"):
            keys = sorted({k for r in runs for k, v in getattr(r, part).items() if _is_number(v)})
            row[part] = {k: stats(getattr(r, part).get(k) for r in runs) for k in keys}
        summary[cell] = row
    return summary


# -- helpers -------------------------------------------------------------------------------------


def _run_record(cell: str, seed: int, fitted: Any, relay: RunRelay) -> RunResult:
    records = list(read_jsonl(Path(fitted.run_dir) / "metrics.jsonl"))
    train_curve = [[r["step"], r["loss"], relay.seconds_at(int(r["step"]))] for r in records
                   if r.get("split") == "train" and "loss" in r]
    val_curve = [[r["step"], r["val_loss"]] for r in records if r.get("split") == "val" and "val_loss" in r]
    train_seconds = float(fitted.train_seconds)
    return RunResult(
        cell=cell,
        seed=seed,
        steps=int(fitted.step),
        elapsed=float(fitted.elapsed),
        wall=0.0,
        parameters=relay.parameters,
        train_seconds=train_seconds,
        units_per_second=fitted.units / train_seconds if train_seconds > 0 else None,
        final={k: float(v) for k, v in fitted.metrics.items() if _is_number(v)},
        train_curve=train_curve,
        val_curve=val_curve,
    )


def _held_out(task: str, run_dir: Path) -> tuple[dict[str, float], str | None]:
    """The task's ``evaluate_saved`` metrics for a trained run (numbers only); a failure becomes a note."""
    try:
        loaded = checkpoint.load(run_dir, task=task)
        metrics = evaluate_saved(loaded, "cpu")["metrics"]
    except ChargenError as e:
        return {}, f"held-out evaluation skipped: {e}"
    return {k: float(v) for k, v in metrics.items() if _is_number(v) and k != "step"}, None


def _first_crossing(run: RunResult, threshold: float) -> tuple[int | None, float | None]:
    """The first evaluated step whose val_loss is at or below ``threshold``, and the training seconds to it."""
    for step, loss in run.val_curve:
        if loss <= threshold:
            return int(step), _elapsed_at(run, step)
    return None, None


def _elapsed_at(run: RunResult, step: float) -> float | None:
    """Training seconds at ``step``, interpolated between logged train records (0 s at step 0)."""
    points = [(0.0, 0.0)] + [(s, e) for s, _, e in run.train_curve if _is_number(e)]
    if step >= run.steps:
        return run.train_seconds
    if len(points) < 2:
        return None
    for (s0, e0), (s1, e1) in zip(points, points[1:]):
        if s0 <= step <= s1:
            return e0 if s1 == s0 else e0 + (e1 - e0) * (step - s0) / (s1 - s0)
    last_step, last_seconds = points[-1]  # between the last train record and the end
    return last_seconds + (run.train_seconds - last_seconds) * (step - last_step) / max(run.steps - last_step, 1)


def _accuracy_key(runs: Sequence[RunResult]) -> str | None:
    """Held-out accuracy (the classifier's test split) when every run has it, else the validation one."""
    for part in ("held_out", "final"):
        for key in ACCURACY_KEYS:
            if runs and all(_is_number(getattr(r, part).get(key)) for r in runs):
                return f"{part}.{key}"
    return None


def _pick(run: RunResult, key: str | None) -> float | None:
    if key is None:
        return None
    part, name = key.split(".", 1)
    value = getattr(run, part, {}).get(name)
    return float(value) if _is_number(value) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(data, default=str))


__all__ = [
    "CompareResult", "RunResult", "compare", "load_results", "save_results", "summarise", "stats",
    "DEFAULT_CELLS", "RESULTS_JSON", "CURVES_PNG",
]
