"""The pieces every experiment shares beside the Study (``chargen.experiments.study``, which runs the grids):
result files, run timing via callbacks, threads, environment.

- ``RunRelay``: ``fit`` callbacks that keep a run's parameter count and step timing (``fit`` times its
  own training steps, apart from evaluations and checkpoints) and forward log records.
- ``torch_threads``: set torch's intra-op threads for an experiment and restore them after.
- ``environment``: where the numbers were measured (versions, machine, threads).
- ``check_out_dir``, ``copy_logs``, ``warm_up``: result files and the one-time costs kept out of timings.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from chargen import __version__, checkpoint, train
from chargen.errors import UsageError
from chargen.plots import _pyplot
from chargen.train import Callbacks


# progress(done runs, total runs, info): info["event"] is "start" (before a run) or "end" (after it),
# plus whatever the experiment says about the run; some experiments add "step" events.
GridProgress = Callable[[int, int, dict[str, Any]], None]

RUN_LOGS = ("metrics.jsonl", "samples.jsonl", "config.json")


class RunRelay(Callbacks):
    """``fit`` callbacks for one run of a grid: keeps its parameter count, the training seconds ``fit``
    reports at each log record (its own step timing, evaluations and checkpoints left out) and the
    units trained on, and hands each log record to ``on_record`` (for a progress function)."""

    def __init__(self, on_record: Callable[[int, dict[str, float]], None] | None = None,
                 on_begin: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.on_record, self.on_begin = on_record, on_begin
        self.parameters = 0
        self.train_seconds: dict[int, float] = {}  # step -> training seconds at that step (logged steps)
        self.total_seconds = 0.0
        self.units = 0.0
        self.last_loss: float | None = None  # the training loss of the last log record

    def on_start(self, info: dict[str, Any]) -> None:
        self.parameters = int(info.get("parameters", 0))
        if self.on_begin:
            self.on_begin(info)

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        if "train_seconds" in metrics:
            self.train_seconds[step] = float(metrics["train_seconds"])
        if "loss" in metrics:
            self.last_loss = float(metrics["loss"])
        if self.on_record:
            self.on_record(step, metrics)

    def on_end(self, summary: dict[str, Any]) -> None:
        self.total_seconds = float(summary.get("train_seconds", 0.0))
        self.units = float(summary.get("units", 0.0))

    def seconds_at(self, step: int) -> float:
        """Training seconds at a logged step (the run's total at its last step)."""
        return self.train_seconds.get(step, self.total_seconds)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Torch's intra-op threads set to ``threads`` inside the block (None: left as they are), restored after.

    Yields the thread count in force, for the environment record.
    """
    if threads is not None and threads < 1:
        raise UsageError(f"threads must be at least 1, got {threads}", params="threads")
    previous = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def cpu_count() -> int | None:
    """The CPUs this process may run on (its affinity), else the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def environment(used_threads: int | None = None, **extra: Any) -> dict[str, Any]:
    """Where the numbers were measured (throughput depends on it): versions, machine, threads (``used_threads``:
    those the runs had, default the current count); ``extra`` keys are added as given."""
    numpy = sys.modules.get("numpy")
    return {
        "chargen": __version__,
        "torch": torch.__version__,
        "numpy": getattr(numpy, "__version__", None),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": used_threads or torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "cuda": torch.cuda.is_available(),
        "created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        **extra,
    }


def check_out_dir(out_dir: Path | None, results_file: str, what: str) -> Path | None:
    """``out_dir`` as a Path; a folder that already holds ``results_file`` is a UsageError (``what``: its name)."""
    if out_dir is None:
        return None
    out_dir = Path(out_dir)
    if (out_dir / results_file).exists():
        raise UsageError(f"{out_dir} already holds {what}; pick another out_dir", params="out_dir")
    return out_dir


def copy_logs(run_dir: Path, kept: Path, names: Sequence[str] = RUN_LOGS) -> Path:
    """Copy a run's logs (not its weights) from a scratch run directory to ``kept``."""
    kept.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, kept / name)
    return kept


def warm_up() -> None:
    """Pay the one-time costs (matplotlib's import and font cache) before any run is timed."""
    assert checkpoint and train  # imported at the top: their import cost is paid already
    _pyplot()


__all__ = [
    "GridProgress", "RunRelay", "check_out_dir", "copy_logs", "cpu_count", "environment",
    "torch_threads", "warm_up",
]
