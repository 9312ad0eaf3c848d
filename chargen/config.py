"""How a run trains: ``TrainConfig`` (budget, optimiser, schedule, evaluation cadence), below the tasks that set its defaults.

``chargen.tasks.resolve`` builds it and ``chargen.train`` runs it; neither imports the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from chargen.errors import UsageError

OPTIMIZERS = ("adam", "rmsprop", "sgd")
MAX_TRAIN_SEED = 2**62  # seed + rank and seed + 1 seed torch generators, which take at most 64 bits
SCHEDULES = ("cosine", "constant")


@dataclass
class TrainConfig:
    """How long and how to optimise; the budget is ``steps``, ``time_limit`` (wall seconds), ``cpu_limit``, or several.

    ``cpu_limit`` counts the CPU seconds of the training process itself (``time.process_time``: every
    thread of this process, no other process), so a loaded machine does not shorten the budget and two
    one-thread runs can share two cores at the same budget.
    """

    steps: int | None = 3000
    time_limit: float | None = None
    cpu_limit: float | None = None  # CPU seconds of this process; with one thread, about the run's own compute
    lr: float = 2e-3
    schedule: str = "cosine"  # decays to min_lr_ratio * lr over the budget
    min_lr_ratio: float = 0.05
    warmup: int = 20
    optimizer: str = "adam"
    weight_decay: float = 0.0
    clip: float = 5.0  # max global gradient norm; 0 turns clipping off
    eval_every: int = 250
    sample_every: int = 250
    log_every: int = 10
    seed: int = 1337
    device: str = "auto"
    deterministic: bool = False
    threads: int | None = None  # torch CPU threads; None: runtime.choose_threads (1 for small models)
    early_stop: int | None = None  # end the run after this many evaluations without a new best val_loss

    def __post_init__(self) -> None:
        if self.steps is None and self.time_limit is None and self.cpu_limit is None:
            raise UsageError("give a budget: steps, time_limit, cpu_limit, or several",
                             params=("steps", "time_limit", "cpu_limit"))
        if self.steps is not None and self.steps < 1:
            raise UsageError(f"steps must be positive, got {self.steps}", params="steps")
        if self.time_limit is not None and self.time_limit <= 0:
            raise UsageError(f"time_limit must be positive, got {self.time_limit}", params="time_limit")
        if self.cpu_limit is not None and self.cpu_limit <= 0:
            raise UsageError(f"cpu_limit must be positive, got {self.cpu_limit}", params="cpu_limit")
        if not self.lr > 0:
            raise UsageError(f"lr must be positive, got {self.lr}", params="lr")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}",
                             params="optimizer")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}",
                             params="schedule")
        if not self.clip >= 0:  # NaN too
            raise UsageError(f"clip must be 0 (off) or positive, got {self.clip}", params="clip")
        for name in ("lr", "time_limit", "cpu_limit", "min_lr_ratio", "weight_decay"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise UsageError(f"{name} must be a finite number, got {value}", params=name)
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be at least 1, got {self.threads}", params="threads")
        if not 0 <= self.seed <= MAX_TRAIN_SEED:
            raise UsageError(f"seed must be between 0 and {MAX_TRAIN_SEED:,} (2**62), got {self.seed}", params="seed")
        if self.early_stop is not None and self.early_stop < 1:
            raise UsageError(f"early_stop must be at least 1 evaluation, got {self.early_stop}", params="early_stop")
        for name in ("eval_every", "sample_every", "log_every"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be positive, got {getattr(self, name)}", params=name)


__all__ = ["MAX_TRAIN_SEED", "OPTIMIZERS", "SCHEDULES", "TrainConfig"]
