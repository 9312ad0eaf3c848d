"""The task-agnostic training loop: optimiser, schedule, clipping, evaluation, samples, checkpoints, resume.

``fit`` also times its own training steps apart from evaluations and checkpoints (``Run.train_seconds``,
``train_seconds`` in each ``on_step`` record) so experiments measure throughput through its callbacks.
"""

from __future__ import annotations

import gc
import math
import os
import shlex
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import torch
from torch import nn

from chargen import checkpoint, distributed
from chargen.errors import ChargenError, CheckpointError, RunInterrupted, TrainingError, UsageError
from chargen.models import ModelConfig, build_model
from chargen.plots import plot_loss
from chargen.runtime import (rank, resolve_device, rng_state, seed_everything, set_deterministic, set_rng_state,
                             use_threads)
from chargen.schema import RUN_FIELDS, check_model_options
from chargen.tasks.base import Task
from chargen.tracking import append_jsonl, truncate_after

T = TypeVar("T")

OPTIMIZERS = ("adam", "rmsprop", "sgd")
MAX_TRAIN_SEED = 2**62  # seed + rank and seed + 1 seed torch generators, which take at most 64 bits
SCHEDULES = ("cosine", "constant")


@dataclass
class TrainConfig:
    """How long and how to optimise; the budget is ``steps``, ``time_limit`` (seconds), or both."""

    steps: int | None = 3000
    time_limit: float | None = None
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
        if self.steps is None and self.time_limit is None:
            raise UsageError("give a budget: steps, time_limit, or both", params=("steps", "time_limit"))
        if self.steps is not None and self.steps < 1:
            raise UsageError(f"steps must be positive, got {self.steps}", params="steps")
        if self.time_limit is not None and self.time_limit <= 0:
            raise UsageError(f"time_limit must be positive, got {self.time_limit}", params="time_limit")
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
        for name in ("lr", "time_limit", "min_lr_ratio", "weight_decay"):
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
    """Progress through the step and time budgets, in [0, 1]; the LR schedule follows it."""

    steps: int | None
    time_limit: float | None

    def fraction(self, step: int, elapsed: float) -> float:
        parts = []
        if self.steps:
            parts.append(step / self.steps)
        if self.time_limit:
            parts.append(elapsed / self.time_limit)
        return min(1.0, max(parts))

    def total_steps(self) -> int | None:
        return self.steps if not self.time_limit else None


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
                os.write(2, f"\n{_signal_name(signum)}: saving a checkpoint after this step "
                            f"({again} to abort without saving)\n".encode())
            except OSError:
                pass  # the terminal is gone (SIGHUP): saving matters, the message does not


def _signal_name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


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


class _Training:
    """One call of ``fit``: the model, its optimiser and the run's progress, with the steps of the loop as methods."""

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
        self.budget = Budget(cfg.steps, cfg.time_limit)
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

    @property
    def run_dir(self) -> Path:
        return self.run_state.run_dir

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
                        "stopped_early": run.stopped_early})
        return run

    # -- setup -----------------------------------------------------------------------------------

    def _claim(self, stack: ExitStack) -> None:
        """Rank 0: create the run directory and lock it for this run (released when the run ends)."""
        created = not self.run_dir.exists()
        self.found = set() if created else {p.name for p in self.run_dir.iterdir()}
        lock = checkpoint.RunLock(self.run_dir)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            lock.acquire()
        except OSError as e:
            if created:
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise UsageError(f"cannot write to the run directory {self.run_dir}: {e.strerror or e}") from None
        self.created = created
        stack.callback(lock.release)
        if lock.note:
            self.cb.on_note(lock.note)

    def _restore(self) -> None:
        """Every rank: weights, optimiser, schedule position, its own RNG and data position."""
        recorded = checkpoint.load_config(self.run_dir)
        check_same_data(self.run_dir, recorded.get("task_config") or {}, self.config["task_config"])
        self.config["commands"] = [*_commands(recorded), self.config["command"]]
        self.config["command"] = recorded.get("command", self.config["command"])
        path = self.run_dir / checkpoint.TRAINER
        trainer = checkpoint.load_tensors(path)
        if not isinstance(trainer, dict):
            raise CheckpointError(f"{path}: not a chargen trainer state")
        try:
            saved_world = int(trainer.get("world_size", 1))
        except (TypeError, ValueError):
            raise CheckpointError(f"{path}: world_size {trainer.get('world_size')!r} is not a number") from None
        if saved_world != self.world:
            raise UsageError(
                f"{self.run_dir} was trained by {saved_world} process(es) and this launch has {self.world}; "
                f"resume it with the same number (torchrun --nproc-per-node ... so that WORLD_SIZE={saved_world})"
            )
        weights = checkpoint.load_tensors(self.run_dir / checkpoint.WEIGHTS)
        checkpoint.check_weights(self.run_dir / checkpoint.WEIGHTS, weights)
        try:
            own = trainer["ranks"][rank()]
            self.module.load_state_dict(weights)
            self.optimizer.load_state_dict(trainer["optimizer"])
            self.task.load_state_dict(own["task"])
            set_rng_state(own["rng"])
            self.sample_generator.set_state(trainer["sample_generator"])
            run = self.run_state
            run.step, run.elapsed = int(trainer["step"]), float(trainer["elapsed"])
            run.best_val_loss, run.metrics = float(trainer["best_val_loss"]), dict(trainer["metrics"])
            run.best_step, run.evals_since_best = trainer.get("best_step"), int(trainer.get("evals_since_best", 0))
            run.saved_step = run.step
            total = self.budget.total_steps()
            to = f" to step {total:,}" if total else f" for {self.cfg.time_limit:g}s in all"
            self.cb.on_note(f"resuming {self.run_dir} from step {run.step:,}{to}")
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:
            detail = " ".join(str(e).split())[:200]
            raise CheckpointError(f"{path}: does not fit this run ({type(e).__name__}: {detail})") from None
        self._collective(self._truncate_logs)
        saved = checkpoint.load_config(self.run_dir)
        if "parent" in saved:  # a fine-tuned run stays traceable to its parent across resumes
            self.config["parent"] = saved["parent"]

    def _truncate_logs(self) -> None:
        """Rank 0: drop log records past the checkpoint, so the resumed run does not log those steps twice."""
        for name in ("metrics.jsonl", "samples.jsonl"):
            try:
                truncate_after(self.run_dir / name, self.run_state.step)
            except OSError as e:
                raise TrainingError(f"cannot rewrite {self.run_dir / name}: {e.strerror or e}") from None

    def _plot(self) -> None:
        try:
            plot_loss(self.run_dir / "metrics.jsonl", self.run_dir / "loss.png",
                      title=f"{self.task.name}: {self.run_dir.name}")
        except OSError as e:  # the checkpoint is safe; a missing figure is not worth failing the run
            self.cb.on_note(f"could not draw {self.run_dir / 'loss.png'}: {e.strerror or e}")

    def _forget_unsaved_run(self) -> None:
        """A fresh run that fails before its first checkpoint leaves no half-made run directory behind."""
        if not self.main or self.resume or self.created is None or (self.run_dir / checkpoint.CONFIG).exists():
            return
        if self.created:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        else:
            for name in ("metrics.jsonl", "samples.jsonl"):
                if name not in self.found:  # never a file that was there before this run
                    (self.run_dir / name).unlink(missing_ok=True)

    # -- collective steps ------------------------------------------------------------------------

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

    def _evaluate(self) -> None:
        run = self.run_state

        def on_main() -> dict[str, float]:
            return {k: float(v) for k, v in self.task.evaluate(self.module, self.device).items()}

        run.metrics = self._collective(on_main)
        self.improved = run.metrics["val_loss"] < run.best_val_loss
        if self.improved:
            run.best_val_loss, run.best_step, run.evals_since_best = run.metrics["val_loss"], run.step, 0
        else:
            run.evals_since_best += 1
        if self.main:
            self._log("metrics.jsonl", {"step": run.step, "split": "val", **run.metrics})
        self.cb.on_eval(run.step, run.metrics)

    def _save(self) -> None:
        run = self.run_state
        local = _to_cpu({"rng": rng_state(), "task": self.task.state_dict()})
        ranks = self.group.all_gather(local) if self.group else [local]

        def on_main() -> None:
            trainer = {
                "step": run.step,
                "elapsed": run.elapsed,
                "world_size": self.world,
                "ranks": ranks,  # per rank: RNG states and data position
                "optimizer": self.optimizer.state_dict(),
                "sample_generator": self.sample_generator.get_state(),
                "best_val_loss": run.best_val_loss,
                "best_step": run.best_step,
                "evals_since_best": run.evals_since_best,
                "metrics": run.metrics,
            }
            meta = {"step": run.step, "elapsed_s": round(run.elapsed, 1), "metrics": run.metrics,
                    "best_val_loss": run.best_val_loss, "best_step": run.best_step}
            if self.keep_best and self.improved and run.best_step == run.step:
                # best/ first: killed between the two saves, best/ is never worse than what trainer.pt records
                checkpoint.save(self.run_dir / checkpoint.BEST, {**self.config, **meta}, self.module)
            checkpoint.save(self.run_dir, {**self.config, **meta}, self.module, trainer)

        self._collective(on_main)
        run.saved_step = run.step
        self.cb.on_save(run.step, self.run_dir)

    # -- the loop --------------------------------------------------------------------------------

    def _train(self) -> None:
        cfg, run, task = self.cfg, self.run_state, self.task
        self.cb.on_start({
            "device": str(self.device), "parameters": sum(p.numel() for p in self.module.parameters()),
            "total_steps": self.budget.total_steps(), "time_limit": cfg.time_limit, "start_step": run.step,
            "unit": task.unit, "run_dir": str(self.run_dir), "processes": self.world,
            "backend": self.group.backend if self.group else None,
        })
        self.model.train()
        window_loss, window_items, window_steps = 0.0, 0.0, 0
        started = time.perf_counter() - run.elapsed
        last_log = time.perf_counter()
        with StopSignals(announce=self.main) as stop:
            try:
                while self.budget.fraction(run.step, run.elapsed) < 1.0:
                    lr = learning_rate(cfg, run.step, self.budget.fraction(run.step, run.elapsed))
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr
                    step_started = time.perf_counter()
                    loss, items = task.train_loss(self.model, self.device)
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()  # under DDP this also averages the gradients of all ranks
                    norm = _clip(self.module, cfg.clip)
                    loss_value, items, signum, elapsed = self._agree(
                        loss.item(), float(items), stop.received, time.perf_counter() - started
                    )
                    if not (math.isfinite(loss_value) and math.isfinite(norm)):
                        raise TrainingError(self._nonfinite(loss_value, norm))
                    self.optimizer.step()
                    run.step += 1
                    run.elapsed = elapsed
                    window_loss += loss_value
                    window_items += items
                    window_steps += 1
                    run.units += items
                    run.train_seconds += time.perf_counter() - step_started
                    if run.step % cfg.log_every == 0:
                        now = time.perf_counter()
                        record = {"step": run.step, "split": "train", "loss": window_loss / window_steps, "lr": lr,
                                  "rate": window_items / max(now - last_log, 1e-9), "elapsed": run.elapsed}
                        if self.main:
                            self._log("metrics.jsonl", record)
                        self.cb.on_step(run.step, {**record, "train_seconds": run.train_seconds})
                        window_loss, window_items, window_steps, last_log = 0.0, 0.0, 0, now
                    if run.step % cfg.sample_every == 0 and self.main:
                        text = task.sample_text(self.module, self.sample_generator, self.device)
                        if text is not None:
                            self._log("samples.jsonl", {"step": run.step, "loss": loss_value, "text": text})
                            self.cb.on_sample(run.step, loss_value, text)
                    if run.step % cfg.eval_every == 0:
                        self._evaluate()
                        self._save()
                        if task.should_stop(run.metrics):
                            break  # the task is done (e.g. the palindrome probe's held-out accuracy holds)
                        if cfg.early_stop is not None and run.evals_since_best >= cfg.early_stop:
                            run.stopped_early = True
                            self.cb.on_note(self._early_stop_message())
                            break
                    if signum:
                        if run.saved_step != run.step:
                            self._save()
                        raise RunInterrupted(self._stopped_message(signum), signum)
                if not run.metrics or run.step % cfg.eval_every:
                    self._evaluate()
                    self._save()
            except KeyboardInterrupt:
                raise RunInterrupted(self._aborted_message(), stop.aborted or signal.SIGINT) from None

    def _agree(self, loss: float, items: float, signum: int, elapsed: float) -> tuple[float, float, int, float]:
        """The step's loss, units and clock, and whether to stop, the same on every rank.

        One small all-reduce per step: the mean loss (for logs and the non-finite check), the
        total units, the mean elapsed time (so a time budget ends every rank on the same step)
        and any stop signal (SIGTERM over SIGINT), so all ranks leave the loop together.
        """
        if self.group is None:
            return loss, items, signum, elapsed
        total_loss, items, sigint, sigterm, total_elapsed = self.group.sum(
            [loss, items, float(signum == signal.SIGINT), float(signum not in (0, signal.SIGINT)), elapsed]
        )
        agreed = signal.SIGTERM if sigterm else signal.SIGINT if sigint else 0
        return total_loss / self.world, items, int(agreed), total_elapsed / self.world

    def _log(self, name: str, record: dict[str, Any]) -> None:
        try:
            append_jsonl(self.run_dir / name, record)
        except OSError as e:
            raise TrainingError(f"cannot write {self.run_dir / name}: {e.strerror or e}") from None

    # -- messages --------------------------------------------------------------------------------

    def _kept(self) -> str:
        saved = self.run_state.saved_step
        if saved is None:
            return "no checkpoint had been saved yet"
        return f"the checkpoint in {self.run_dir} (step {saved:,}) is kept"

    def _nonfinite(self, loss: float, norm: float) -> str:
        step = self.run_state.step + 1
        what = f"loss became {loss}" if not math.isfinite(loss) else f"gradient norm became {norm}"
        describe = self.task.describe_batch()
        where = f"; {describe}" if describe else ""
        return (f"{what} at step {step:,} (training batch {step:,}{where}); stopped before applying it, "
                f"{self._kept()} (try a lower lr or clip)")

    def _resume_hint(self) -> str:
        launcher = f"torchrun --nproc-per-node {self.world} -m chargen" if self.world > 1 else "chargen"
        return f"{launcher} train --resume {shlex.quote(str(self.run_dir))}"

    def _stopped_message(self, signum: int) -> str:
        return (f"stopped by {_signal_name(signum)} at step {self.run_state.step:,}; checkpoint saved in "
                f"{self.run_dir}; continue with: {self._resume_hint()}")

    def _early_stop_message(self) -> str:
        run = self.run_state
        where = f" (in {self.run_dir / checkpoint.BEST})" if self.keep_best else ""
        return (f"early stop at step {run.step:,}: val_loss has not improved in {run.evals_since_best} evaluations; "
                f"the best, {run.best_val_loss:.4f}, was at step {run.best_step:,}{where}")

    def _aborted_message(self) -> str:
        return f"aborted at step {self.run_state.step:,} without saving; {self._kept()}"


def _clip(model: nn.Module, max_norm: float) -> float:
    """Clip the gradients to ``max_norm`` (0 = off) and return their norm before clipping."""
    if max_norm:
        return float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
    grads = [p.grad.detach() for p in model.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))) if grads else 0.0


def _to_cpu(obj: Any) -> Any:
    """Tensors moved to the CPU inside nested dicts, lists and tuples (what a checkpoint stores)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _commands(config: dict[str, Any]) -> list[str]:
    """The commands that made a run so far, oldest first (runs before ``commands`` kept only the last)."""
    commands = config.get("commands")
    if isinstance(commands, list) and all(isinstance(c, str) for c in commands):
        return commands
    return [config["command"]] if isinstance(config.get("command"), str) else []


DATA_DIGESTS = ("corpus_sha256", "data_sha256")  # what tasks record about the text they trained on


def check_same_data(run_dir: Path, recorded: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to resume on data other than the run's: same corpus name, different bytes."""
    for key in DATA_DIGESTS:
        if key in recorded and key in current and recorded[key] != current[key]:
            options = recorded.get("options") or {}
            name = options.get("corpus") if isinstance(options, dict) else None
            now = (current.get("options") or {}).get("corpus") if isinstance(current.get("options"), dict) else None
            if now is not None and now != name:  # pointed elsewhere (a moved text): say which text was refused
                raise CheckpointError(
                    f"corpus {now!r} is not the text {run_dir} was trained on ({name}; sha256 {str(current[key])[:12]}... "
                    f"vs {str(recorded[key])[:12]}... recorded)")
            raise CheckpointError(
                f"corpus {name!r} has changed since {run_dir} was trained on it (sha256 {str(current[key])[:12]}... "
                f"now, {str(recorded[key])[:12]}... recorded); resuming would train on other text: restore the "
                "original file, or start a new run"
            )


def check_new_run_dir(run_dir: Path) -> None:
    """A new run may only go into a new or empty folder, or one a killed chargen run left before its
    first checkpoint: never a folder of the user's own files, which the run would overwrite."""
    if (run_dir / checkpoint.CONFIG).exists():
        raise UsageError(f"{run_dir} already holds a trained model; continue it with {{resume}} or pick another "
                         "{run_dir}", params=("resume", "run_dir"))
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"{{run_dir}} {run_dir} exists and is not a folder; give a new or empty folder", params="run_dir")
    if not run_dir.is_dir():
        return
    try:
        names = {p.name for p in run_dir.iterdir()}
    except OSError as e:
        raise UsageError(f"cannot read the run directory {run_dir}: {e.strerror or e}") from None
    leftovers = {checkpoint.LOCK, "metrics.jsonl", "samples.jsonl", "loss.png", checkpoint.JOURNAL}
    ours = checkpoint.LOCK in names and all(n in leftovers or checkpoint.is_temp_file(n) for n in names)
    if names and not ours:
        shown = ", ".join(sorted(names)[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise UsageError(f"{{run_dir}} {run_dir} is a folder with other files in it ({shown}) and not a chargen run; "
                         "a new run needs a new or empty folder, so that nothing in it is overwritten", params="run_dir")


def resume_settings(run_dir: Path) -> tuple[str, dict[str, Any], ModelConfig, TrainConfig]:
    """Task name, task options, model and train configs recorded in a run directory."""
    config = checkpoint.load_config(run_dir, (*RUN_FIELDS, "task", "task_config", "train"))
    if not (run_dir / checkpoint.TRAINER).exists():
        raise UsageError(f"{run_dir}: has no trainer state (trainer.pt), so it cannot be resumed")
    try:
        task_options = dict(config["task_config"]["options"])
        model_cfg = ModelConfig.from_dict(config["model"])
        train_cfg = TrainConfig(**config["train"])
        return config["task"], task_options, model_cfg, train_cfg
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{run_dir / checkpoint.CONFIG}: cannot resume from it ({type(e).__name__}: {e})") from None
