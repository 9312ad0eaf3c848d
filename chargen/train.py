"""The task-agnostic training loop: ``fit`` trains a task into a run directory (optimiser, schedule, clipping,
evaluation, samples, checkpoints, resume); the parts of one call live in ``chargen.training`` by concern.

``fit`` also times its own training steps apart from evaluations and checkpoints (``Run.train_seconds``,
``train_seconds`` in each ``on_step`` record) so experiments measure throughput through its callbacks.
"""

from __future__ import annotations

import gc
import traceback
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from chargen import distributed
from chargen.config import MAX_TRAIN_SEED, OPTIMIZERS, SCHEDULES, TrainConfig
from chargen.errors import TrainingError, UsageError
from chargen.models import ModelConfig, build_model
from chargen.runtime import rank, resolve_device, seed_everything, set_deterministic, use_threads
from chargen.schema import check_model_options
from chargen.tasks.base import Task
from chargen.training.loop import StepLoop
from chargen.training.rundir import (DATA_DIGESTS, RunDirectory, check_new_run_dir, check_same_data,
                                     resume_settings)
from chargen.training.state import (Budget, Callbacks, Run, StopSignals, command_line, learning_rate,
                                    make_optimizer)


def fit(
    task: Task,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    run_dir: Path,
    callbacks: Callbacks | None = None,
    *,
    resume: bool = False,
    command: str | None = None,
    init_weights: dict[str, torch.Tensor] | None = None,
    parent: dict[str, Any] | None = None,
) -> Run:
    """Train ``task`` into ``run_dir``; with ``resume`` continue exactly where its checkpoint stopped.

    ``init_weights`` (a fresh run only): start from these weights instead of random ones, with a
    fresh optimiser (fine-tuning); ``parent`` says where they came from and goes into the config.

    Under ``torchrun`` every process calls this: the model is wrapped in DistributedDataParallel
    (gloo on the CPU, nccl on CUDA), the task reads its rank's share of each global batch, and
    rank 0 alone evaluates, samples, logs and writes the run directory.
    """
    device = resolve_device(cfg.device)
    set_deterministic(cfg.deterministic)
    with distributed.process_group(device) as group:
        if group is not None:
            device = group.device
            run_dir = Path(group.broadcast(str(run_dir)))  # rank 0's: a default name holds a timestamp
        threads = torch.get_num_threads()
        training: _Training | None = None
        try:
            training = _Training(task, model_cfg, cfg, Path(run_dir), callbacks, group, device, resume, command)
            if init_weights is not None and not resume:
                training.start_from(init_weights, parent)
            return training.run()
        except BaseException as e:
            if group is not None:
                traceback.clear_frames(e.__traceback__)  # the failed run's frames must not keep the DDP wrapper alive
            raise
        finally:
            # Free the DDP wrapper here, while its process group lives. Freed after the group is destroyed, it
            # would hold the GIL while joining gloo's worker thread, which waits for the GIL to drop a tensor:
            # a rank hung on exit (seen twice in full-suite runs, after a successful resume).
            training = None
            if group is not None:
                gc.collect()  # a reference cycle through the run (signal handlers, exit stack) must not keep it either
            torch.set_num_threads(threads)  # the caller's setting comes back


class _Training(RunDirectory, StepLoop):
    """One call of ``fit``: the model, its optimiser and the run's progress; each concern is a mixin of ``chargen.training``."""

    def __init__(
        self,
        task: Task,
        model_cfg: ModelConfig,
        cfg: TrainConfig,
        run_dir: Path,
        callbacks: Callbacks | None,
        group: distributed.Group | None,
        device: torch.device,
        resume: bool,
        command: str | None,
    ) -> None:
        self.task, self.cfg, self.group, self.device, self.resume = task, cfg, group, device, resume
        self.main = group is None or group.rank == 0
        self.cb = (callbacks or Callbacks()) if self.main else Callbacks()  # rank 0 alone reports
        self.world = group.world_size if group else 1
        if not resume:
            check_new_run_dir(run_dir)
        self.found: set[str] = set()  # names in the run directory before this run (never deleted by it)
        # The same initial weights on every rank (DDP would broadcast rank 0's anyway); then the
        # generators behind dropout and any random batches differ per rank.
        seed_everything(cfg.seed)
        self.model_cfg = task.model_config(model_cfg)
        check_model_options(self.model_cfg.to_dict())
        try:
            self.module = build_model(self.model_cfg).to(device)
        except (RuntimeError, MemoryError) as e:  # the allocator's "can't allocate memory", CUDA out of memory
            detail = " ".join(str(e).split())[:160] or type(e).__name__
            raise TrainingError(f"cannot build the model on {device}: {detail}; try a smaller hidden_size "
                                "or num_layers") from None
        seed_everything(cfg.seed + rank())
        if device.type == "cpu":
            use_threads(cfg.threads, sum(p.numel() for p in self.module.parameters()), self.world)
        self.optimizer = make_optimizer(cfg.optimizer, self.module.parameters(), cfg.lr, cfg.weight_decay)
        self.sample_generator = torch.Generator().manual_seed(cfg.seed + 1)
        self.run_state = Run(run_dir, 0, 0.0)
        self.created: bool | None = None  # whether rank 0 made the run directory (None: not claimed yet)
        self.budget = Budget(cfg.steps, cfg.time_limit, cfg.cpu_limit)
        self.keep_best = task.keep_best
        self.improved = False  # whether the latest evaluation set a new best val_loss
        self.config = {
            "task": task.name,
            "model": self.model_cfg.to_dict(),
            "vocab": task.vocab.to_json(),
            "task_config": task.config(),
            "train": asdict(cfg),
            "world_size": self.world,
            "command": command or command_line(),
        }

    def start_from(self, weights: dict[str, torch.Tensor], parent: dict[str, Any] | None) -> None:
        """Fine-tuning: the given weights replace the random ones (the optimiser has no state yet)."""
        try:
            self.module.load_state_dict(weights)
        except RuntimeError as e:
            detail = " ".join(str(e).split())[:300]
            raise UsageError(f"init_weights do not fit this model ({detail})", params="init_weights") from None
        if parent is not None:
            self.config["parent"] = parent

    def run(self) -> Run:
        with ExitStack() as stack:
            self._collective(lambda: self._claim(stack))
            try:
                if self.resume:
                    self._restore()
                self.model = self.group.wrap(self.module) if self.group else self.module
                self._train()
            except BaseException:
                self._forget_unsaved_run()
                raise
            if self.main:
                self._plot()
        run = self.run_state
        self.cb.on_end({"step": run.step, "elapsed": run.elapsed, "metrics": run.metrics,
                        "run_dir": str(run.run_dir), "best_val_loss": run.best_val_loss,
                        "train_seconds": run.train_seconds, "units": run.units, "best_step": run.best_step,
                        "cpu_seconds": run.cpu_seconds,
                        "stopped_early": run.stopped_early})
        return run


__all__ = [
    "DATA_DIGESTS", "MAX_TRAIN_SEED", "OPTIMIZERS", "SCHEDULES", "Budget", "Callbacks", "Run", "StopSignals",
    "TrainConfig", "check_new_run_dir", "check_same_data", "command_line", "fit", "learning_rate", "make_optimizer",
    "resume_settings",
]
