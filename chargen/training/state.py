"""The training loop's vocabulary: callbacks, budgets, the LR schedule, the optimiser, a run's record, stop signals.

Also ``TrainingBase``, what every part of one ``fit`` call shares (its attributes, the run directory,
rank-0 actions given to every rank, log lines), which the concern modules beside it extend.
"""

from __future__ import annotations

import math
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import torch
from torch import nn

from chargen import distributed
from chargen.config import TrainConfig
from chargen.errors import ChargenError, TrainingError
from chargen.models import ModelConfig
from chargen.tasks.base import Task
from chargen.tracking import append_jsonl

T = TypeVar("T")


class Callbacks:
    """Progress reaches the caller through these hooks (the CLI draws rich bars); all are no-ops here."""

    def on_start(self, info: dict[str, Any]) -> None: ...
    def on_step(self, step: int, metrics: dict[str, float]) -> None: ...
    def on_eval(self, step: int, metrics: dict[str, float]) -> None: ...
    def on_sample(self, step: int, loss: float, text: str) -> None: ...
    def on_save(self, step: int, path: Path) -> None: ...
    def on_note(self, message: str) -> None: ...  # a remark worth one line (a stale lock taken over...)
    def on_end(self, summary: dict[str, Any]) -> None: ...


@dataclass
class Budget:
    """Progress through the step, wall-time and CPU-time budgets, in [0, 1]; the LR schedule follows it."""

    steps: int | None
    time_limit: float | None
    cpu_limit: float | None = None

    def fraction(self, step: int, elapsed: float, cpu: float = 0.0) -> float:
        parts = []
        if self.steps:
            parts.append(step / self.steps)
        if self.time_limit:
            parts.append(elapsed / self.time_limit)
        if self.cpu_limit:
            parts.append(cpu / self.cpu_limit)
        return min(1.0, max(parts))

    def total_steps(self) -> int | None:
        return self.steps if not (self.time_limit or self.cpu_limit) else None


def learning_rate(cfg: TrainConfig, step: int, fraction: float) -> float:
    warm = min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else 1.0
    if cfg.schedule == "constant":
        return cfg.lr * warm
    floor = cfg.lr * cfg.min_lr_ratio
    return warm * (floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * fraction)))


def make_optimizer(name: str, params: Any, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)


@dataclass
class Run:
    """What a finished (or interrupted) run leaves: where, how far, and its last metrics."""

    run_dir: Path
    step: int
    elapsed: float
    metrics: dict[str, float] = field(default_factory=dict)
    best_val_loss: float = math.inf
    saved_step: int | None = None  # the step of the checkpoint on disk
    # This call's training steps alone (forward, backward, clipping, update), evaluations, checkpoints,
    # logs and samples left out, and the units they trained on: what an experiment's throughput is measured from.
    train_seconds: float = 0.0
    units: float = 0.0
    best_step: int | None = None  # the step of the lowest val_loss so far
    evals_since_best: int = 0
    stopped_early: bool = False
    cpu_seconds: float = 0.0  # CPU time of this process inside the loop, all calls (resumes) together


def command_line() -> str:
    return shlex.join(["chargen", *sys.argv[1:]]) if sys.argv else "chargen"


class StopSignals:
    """Ctrl-C and SIGTERM while training: the first asks the loop to save and stop after the current
    step; a second aborts at once (KeyboardInterrupt, nothing saved).

    Handlers are installed only in the main thread (Python delivers signals there alone) and the
    previous ones come back on exit, so code around the loop keeps its own behaviour.
    """

    # SIGHUP: the terminal closed (an ssh connection dropped); save like SIGTERM rather than die.
    SIGNALS = (signal.SIGINT, signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else []))

    def __init__(self, announce: bool = True) -> None:
        self.announce = announce
        self.received = 0  # the first signal's number; 0 while none came
        self.aborted = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received:
            self.aborted = signum
            raise KeyboardInterrupt
        self.received = signum
        if self.announce:
            again = "press Ctrl-C again" if signum == signal.SIGINT else "send it again"
            # os.write, not print: the handler may have interrupted a print to the same stream
            try:
                os.write(2, f"\n{signal_name(signum)}: saving a checkpoint after this step "
                            f"({again} to abort without saving)\n".encode())
            except OSError:
                pass  # the terminal is gone (SIGHUP): saving matters, the message does not


def signal_name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def clip_gradients(model: nn.Module, max_norm: float) -> float:
    """Clip the gradients to ``max_norm`` (0 = off) and return their norm before clipping."""
    if max_norm:
        return float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
    grads = [p.grad.detach() for p in model.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))) if grads else 0.0


def to_cpu(obj: Any) -> Any:
    """Tensors moved to the CPU inside nested dicts, lists and tuples (what a checkpoint stores)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


class TrainingBase:
    """What the parts of one ``fit`` call share: set by ``chargen.train._Training``, used by its concern mixins."""

    task: Task
    cfg: TrainConfig
    group: distributed.Group | None
    device: torch.device
    resume: bool
    main: bool  # rank 0 (or the only process): it alone evaluates, samples, logs and writes
    cb: Callbacks
    world: int
    found: set[str]
    model_cfg: ModelConfig
    module: nn.Module  # the model itself
    model: nn.Module  # what trains: the model, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    sample_generator: torch.Generator
    run_state: Run
    created: bool | None
    budget: Budget
    keep_best: bool
    improved: bool
    config: dict[str, Any]

    @property
    def run_dir(self) -> Path:
        return self.run_state.run_dir

    def _collective(self, action: Callable[[], T]) -> T:
        """Run ``action`` on rank 0 and give its result to every rank; a ChargenError there is raised
        on every rank, so no rank waits forever for a peer that gave up."""
        result: Any = None
        error: ChargenError | None = None
        if self.main:
            try:
                result = action()
            except ChargenError as e:
                error = e
        if self.group is not None:
            error, result = self.group.broadcast((error, result))
        if error is not None:
            raise error
        return result

    def _log(self, name: str, record: dict[str, Any]) -> None:
        try:
            append_jsonl(self.run_dir / name, record)
        except OSError as e:
            raise TrainingError(f"cannot write {self.run_dir / name}: {e.strerror or e}") from None
