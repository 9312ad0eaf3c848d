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

import inspect
import json
import math
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from chargen.errors import ChargenError, UsageError
from chargen.tracking import read_json, result_fields, write_json

FORMAT = "chargen-compare/1"
RESULTS_JSON = "compare.json"
CURVES_PNG = "compare.png"
ACCURACY_KEYS = ("accuracy", "val_accuracy", "test_accuracy")
DEFAULT_CELLS = ("rnn", "momentum-rnn", "lstm", "momentum-lstm")

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
    train_seconds: float  # the training steps alone (forward, backward, update): see ``StepClock``
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


# -- validation ----------------------------------------------------------------------------------


def cell_options_for(cell: str, options: dict[str, Any]) -> dict[str, Any]:
    """The part of ``options`` (e.g. mu, s) that this cell's constructor takes; the rest is not for it."""
    from chargen.cells import get_cell

    accepted = inspect.signature(get_cell(cell).__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        return dict(options)
    return {k: v for k, v in options.items() if k in accepted}


def check_cell_options(cell: str, options: dict[str, Any]) -> None:
    """Build a 1x1 cell with ``options``: bad values (mu outside [0, 1)...) fail here as a UsageError."""
    from chargen.cells import get_cell

    try:
        get_cell(cell)(1, 1, **options)
    except (TypeError, ValueError) as e:
        raise UsageError(f"cell {cell!r}: {e}") from None


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
      config; the weights only with ``keep_weights``) go; None keeps nothing on disk.
    """
    from chargen.cells import default_engine, get_cell, resolve_cells
    from chargen.models import ModelConfig, settings_for_cell
    from chargen.runtime import resolve_seeds
    from chargen.tasks import build_task, task_defaults
    from chargen.train import TrainConfig

    cells = resolve_cells(cells)
    seeds = resolve_seeds(seeds)
    if threshold is not None and not math.isfinite(threshold):
        raise UsageError(f"--threshold must be a finite loss, got {threshold}")
    model_defaults, train_defaults, option_defaults = task_defaults(task)
    options = {**option_defaults, **(task_options or {})}

    # One model config per cell: the task's defaults, the overrides, and this cell.
    overrides = dict(model or {})
    shared_cell_options = dict(overrides.pop("cell_options", None) or {})
    engine = overrides.pop("engine", None)
    overrides.pop("cell", None)
    unknown = set(overrides) - {f.name for f in fields(ModelConfig)}
    if unknown:
        raise UsageError(f"unknown model settings: {', '.join(sorted(unknown))}")
    model_cfgs: dict[str, ModelConfig] = {}
    for cell in cells:
        cell_engine = engine or default_engine(cell)
        if cell_engine == "fused" and not get_cell(cell).has_fused:
            raise UsageError(f"cell {cell!r} has no fused kernel; compare it with engine 'loop' (or leave --engine out)")
        cfg = ModelConfig(**{**model_defaults, **settings_for_cell(cell, overrides), "cell": cell, "engine": cell_engine,
                             "cell_options": cell_options_for(cell, shared_cell_options)})
        cfg.check()
        check_cell_options(cell, cfg.cell_options)
        model_cfgs[cell] = cfg

    train_over = dict(train or {})
    settings = {**train_defaults, "sample_every": 10**9}
    if "steps" in train_over or "time_limit" in train_over:  # a budget given replaces the task's, both parts
        settings.pop("steps", None)
        settings.pop("time_limit", None)
    settings.update(train_over)
    settings.setdefault("steps", None)
    if "eval_every" not in train_over and settings.get("steps"):
        settings["eval_every"] = max(1, int(settings["steps"]) // 20)
    known_train = {f.name for f in fields(TrainConfig)}
    unknown = set(settings) - known_train
    if unknown:
        raise UsageError(f"unknown training settings: {', '.join(sorted(unknown))}")
    settings.pop("seed", None)
    base_train = TrainConfig(**settings)  # validates the budget and the rest once, before any run

    out_dir = Path(out_dir) if out_dir is not None else None
    if out_dir is not None and (out_dir / RESULTS_JSON).exists():
        raise UsageError(f"{out_dir} already holds a comparison; pick another --out")

    _warm_up()  # one-time imports would otherwise count in the first run's wall time
    grid = [(cell, seed) for seed in seeds for cell in cells]  # seed-major: a stopped grid still compares cells
    runs: list[RunResult] = []
    started = time.perf_counter()
    unit = "units"
    with tempfile.TemporaryDirectory(prefix="chargen-compare-") as scratch:
        for done, (cell, seed) in enumerate(grid):
            if progress:
                progress(done, len(grid), {"event": "start", "cell": cell, "seed": seed})
            name = f"{cell}-seed{seed}"
            if out_dir is not None and keep_weights:
                run_dir = out_dir / "runs" / name
            else:
                run_dir = Path(scratch) / name
            run_started = time.perf_counter()
            built = build_task(task, seed=seed, **options)
            unit = getattr(built, "unit", unit)
            train_cfg = TrainConfig(**{**asdict(base_train), "seed": seed})
            clock = StepClock(built)
            callbacks = _Relay(progress, done, len(grid), cell, seed, base_train.steps, clock)
            from chargen.train import fit

            fitted = fit(built, model_cfgs[cell], train_cfg, run_dir, callbacks,
                         command=f"compare {task} {cell} seed={seed}")
            record = _run_record(cell, seed, fitted, callbacks.parameters, clock)
            if held_out:
                record.held_out, record.note = _held_out(task, run_dir)
            record.wall = time.perf_counter() - run_started
            if out_dir is not None:
                kept = out_dir / "runs" / name
                if not keep_weights:
                    _copy_logs(run_dir, kept)
                record.run_dir = str(kept.relative_to(out_dir))
            runs.append(record)
            if progress:
                progress(done + 1, len(grid), {"event": "end", "cell": cell, "seed": seed, "run": record})

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
        from chargen.plots import plot_compare

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


def environment() -> dict[str, Any]:
    """Where the numbers were measured (throughput depends on it)."""
    import torch

    from chargen import __version__

    return {
        "chargen": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cuda": torch.cuda.is_available(),
        "created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


# -- helpers -------------------------------------------------------------------------------------


class _Relay:
    """``fit`` callbacks that forward training log records to the comparison's progress function."""

    def __init__(self, progress: CompareProgress | None, done: int, total: int, cell: str, seed: int,
                 total_steps: int | None, clock: StepClock) -> None:
        self.progress, self.done, self.total, self.clock = progress, done, total, clock
        self.cell, self.seed, self.total_steps = cell, seed, total_steps
        self.parameters = 0

    def on_start(self, info: dict[str, Any]) -> None:
        self.parameters = int(info.get("parameters", 0))

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        if self.progress:
            self.progress(self.done, self.total, {"event": "step", "cell": self.cell, "seed": self.seed,
                                                  "total_steps": self.total_steps, **metrics})

    def on_eval(self, step: int, metrics: dict[str, float]) -> None: ...
    def on_sample(self, step: int, loss: float, text: str) -> None: ...
    def on_save(self, step: int, path: Path) -> None:
        self.clock.saved()

    def on_note(self, message: str) -> None: ...
    def on_end(self, summary: dict[str, Any]) -> None: ...


class StepClock:
    """Times the training steps of one run apart from its evaluations and checkpoints.

    ``fit``'s own clock counts everything in the loop, so how often a comparison evaluates (and
    how long a cell takes to evaluate) would leak into every cell's speed. The clock wraps the
    task's ``train_loss`` and ``evaluate`` on this task object and hears ``on_save`` through the
    callbacks: a step runs from one ``train_loss`` call to the next (forward, backward, clipping,
    update, logging), minus any evaluation-and-checkpoint window inside it; the last step, which
    has no next call, counts as the median step.
    """

    def __init__(self, task: Any) -> None:
        self.starts: list[float] = []
        self.units: list[float] = []
        self.pauses: list[list[float]] = []  # [evaluation start, end of the checkpoint after it]
        train_loss, evaluate = task.train_loss, task.evaluate

        def timed_train_loss(*args: Any, **kwargs: Any) -> Any:
            self.starts.append(time.perf_counter())
            loss, items = train_loss(*args, **kwargs)
            self.units.append(float(items))
            return loss, items

        def timed_evaluate(*args: Any, **kwargs: Any) -> Any:
            pause = [time.perf_counter(), math.inf]
            self.pauses.append(pause)
            try:
                return evaluate(*args, **kwargs)
            finally:
                pause[1] = time.perf_counter()  # extended to the end of the checkpoint by ``saved``

        task.train_loss, task.evaluate = timed_train_loss, timed_evaluate

    def saved(self) -> None:
        """The checkpoint after the last evaluation is written: the pause ends now."""
        if self.pauses:
            self.pauses[-1][1] = time.perf_counter()

    def step_seconds(self) -> list[float]:
        """Seconds of each step, in order."""
        out: list[float] = []
        for begin, end in zip(self.starts, self.starts[1:]):
            paused = sum(max(0.0, min(end, b) - max(begin, a)) for a, b in self.pauses)
            out.append(max(0.0, end - begin - paused))
        if self.starts:
            out.append(statistics.median(out) if out else 0.0)
        return out

    def clock(self) -> list[float]:
        """Training seconds after each step: ``clock()[k - 1]`` is the time at step ``k``."""
        total, out = 0.0, []
        for d in self.step_seconds():
            total += d
            out.append(total)
        return out


def _run_record(cell: str, seed: int, fitted: Any, parameters: int, clock: StepClock) -> RunResult:
    from chargen.tracking import read_jsonl

    records = list(read_jsonl(Path(fitted.run_dir) / "metrics.jsonl"))
    at = clock.clock()

    def seconds(step: int) -> float:
        return at[min(step, len(at)) - 1] if at and step > 0 else 0.0

    train_curve = [[r["step"], r["loss"], seconds(int(r["step"]))] for r in records
                   if r.get("split") == "train" and "loss" in r]
    val_curve = [[r["step"], r["val_loss"]] for r in records if r.get("split") == "val" and "val_loss" in r]
    train_seconds = at[-1] if at else 0.0
    units = sum(clock.units)
    return RunResult(
        cell=cell,
        seed=seed,
        steps=int(fitted.step),
        elapsed=float(fitted.elapsed),
        wall=0.0,
        parameters=parameters,
        train_seconds=train_seconds,
        units_per_second=units / train_seconds if train_seconds > 0 else None,
        final={k: float(v) for k, v in fitted.metrics.items() if _is_number(v)},
        train_curve=train_curve,
        val_curve=val_curve,
    )


def _held_out(task: str, run_dir: Path) -> tuple[dict[str, float], str | None]:
    """The task's ``evaluate_saved`` metrics for a trained run (numbers only); a failure becomes a note."""
    from chargen import checkpoint
    from chargen.tasks import evaluate_saved

    try:
        loaded = checkpoint.load(run_dir, task=task)
        metrics = evaluate_saved(loaded, "cpu")["metrics"]
    except ChargenError as e:
        return {}, f"held-out evaluation skipped: {e}"
    return {k: float(v) for k, v in metrics.items() if _is_number(v) and k != "step"}, None


def _warm_up() -> None:
    import chargen.checkpoint  # noqa: F401
    import chargen.train  # noqa: F401
    from chargen.plots import _pyplot

    _pyplot()


def _copy_logs(run_dir: Path, kept: Path) -> None:
    kept.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.jsonl", "samples.jsonl", "config.json"):
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, kept / name)


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
    "CompareResult", "RunResult", "StepClock", "compare", "load_results", "save_results", "summarise", "stats",
    "cell_options_for", "check_cell_options", "environment", "DEFAULT_CELLS", "RESULTS_JSON", "CURVES_PNG",
]
