"""The task-agnostic training loop: optimiser, schedule, clipping, evaluation, samples, checkpoints, resume."""

from __future__ import annotations

import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from chargen import checkpoint
from chargen.errors import TrainingError, UsageError
from chargen.models import ModelConfig, build_model
from chargen.plots import plot_loss
from chargen.runtime import is_main_process, resolve_device, rng_state, seed_everything, set_deterministic, set_rng_state
from chargen.tasks.base import Task
from chargen.tracking import append_jsonl, truncate_after

OPTIMIZERS = ("adam", "rmsprop", "sgd")
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

    def __post_init__(self) -> None:
        if self.steps is None and self.time_limit is None:
            raise UsageError("give a budget: --steps, --time, or both")
        if self.steps is not None and self.steps < 1:
            raise UsageError(f"--steps must be positive, got {self.steps}")
        if self.time_limit is not None and self.time_limit <= 0:
            raise UsageError(f"--time must be positive, got {self.time_limit}")
        if not self.lr > 0:
            raise UsageError(f"--lr must be positive, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.clip < 0:
            raise UsageError(f"--clip must be 0 (off) or positive, got {self.clip}")
        for name in ("eval_every", "sample_every", "log_every"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")


class Callbacks:
    """Progress reaches the caller through these hooks (the CLI draws rich bars); all are no-ops here."""

    def on_start(self, info: dict[str, Any]) -> None: ...
    def on_step(self, step: int, metrics: dict[str, float]) -> None: ...
    def on_eval(self, step: int, metrics: dict[str, float]) -> None: ...
    def on_sample(self, step: int, loss: float, text: str) -> None: ...
    def on_save(self, step: int, path: Path) -> None: ...
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


def command_line() -> str:
    return shlex.join(["chargen", *sys.argv[1:]]) if sys.argv else "chargen"


def fit(
    task: Task,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    run_dir: Path,
    callbacks: Callbacks | None = None,
    *,
    resume: bool = False,
    command: str | None = None,
) -> Run:
    """Train ``task`` into ``run_dir``; with ``resume`` continue exactly where its checkpoint stopped."""
    cb = callbacks or Callbacks()
    main = is_main_process()
    run_dir = Path(run_dir)
    if not resume and (run_dir / checkpoint.CONFIG).exists():
        raise UsageError(f"{run_dir} already holds a trained model; resume it with --resume or pick another --out")
    device = resolve_device(cfg.device)
    set_deterministic(cfg.deterministic)
    seed_everything(cfg.seed)
    model_cfg = task.model_config(model_cfg)
    model = build_model(model_cfg).to(device)
    optimizer = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.weight_decay)
    sample_generator = torch.Generator().manual_seed(cfg.seed + 1)
    run = Run(run_dir, 0, 0.0)

    if resume:
        trainer = checkpoint.load_tensors(run_dir / checkpoint.TRAINER)
        model.load_state_dict(checkpoint.load_tensors(run_dir / checkpoint.WEIGHTS))
        optimizer.load_state_dict(trainer["optimizer"])
        task.load_state_dict(trainer["task"])
        set_rng_state(trainer["rng"])
        sample_generator.set_state(trainer["sample_generator"])
        run.step, run.elapsed = int(trainer["step"]), float(trainer["elapsed"])
        run.best_val_loss, run.metrics = float(trainer["best_val_loss"]), dict(trainer["metrics"])
        if main:
            for log in ("metrics.jsonl", "samples.jsonl"):
                truncate_after(run_dir / log, run.step)
    elif main:
        run_dir.mkdir(parents=True, exist_ok=True)

    budget = Budget(cfg.steps, cfg.time_limit)
    config = {
        "task": task.name,
        "model": model_cfg.to_dict(),
        "vocab": task.vocab.to_json(),
        "task_config": task.config(),
        "train": asdict(cfg),
        "command": command or command_line(),
    }

    def save() -> None:
        if not main:
            return
        trainer_state = {
            "step": run.step,
            "elapsed": run.elapsed,
            "optimizer": optimizer.state_dict(),
            "task": task.state_dict(),
            "rng": rng_state(),
            "sample_generator": sample_generator.get_state(),
            "best_val_loss": run.best_val_loss,
            "metrics": run.metrics,
        }
        meta = {"step": run.step, "elapsed_s": round(run.elapsed, 1), "metrics": run.metrics,
                "best_val_loss": run.best_val_loss}
        checkpoint.save(run_dir, {**config, **meta}, model, trainer_state)
        cb.on_save(run.step, run_dir)

    def evaluate() -> None:
        run.metrics = {k: float(v) for k, v in task.evaluate(model, device).items()}
        run.best_val_loss = min(run.best_val_loss, run.metrics["val_loss"])
        if main:
            append_jsonl(run_dir / "metrics.jsonl", {"step": run.step, "split": "val", **run.metrics})
        cb.on_eval(run.step, run.metrics)

    n_params = sum(p.numel() for p in model.parameters())
    cb.on_start({"device": str(device), "parameters": n_params, "total_steps": budget.total_steps(),
                 "time_limit": cfg.time_limit, "start_step": run.step, "unit": task.unit, "run_dir": str(run_dir)})
    model.train()
    window_loss, window_items, window_steps = 0.0, 0, 0
    started = time.perf_counter() - run.elapsed
    last_log = time.perf_counter()
    try:
        while budget.fraction(run.step, run.elapsed) < 1.0:
            lr = learning_rate(cfg, run.step, budget.fraction(run.step, run.elapsed))
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss, items = task.train_loss(model, device)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"loss became {loss.item()} at step {run.step + 1}; stopped. The last good checkpoint "
                    f"in {run_dir} is kept (try a lower --lr or --clip)"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            optimizer.step()
            run.step += 1
            run.elapsed = time.perf_counter() - started
            window_loss += loss.item()
            window_items += items
            window_steps += 1
            if run.step % cfg.log_every == 0:
                now = time.perf_counter()
                record = {"step": run.step, "split": "train", "loss": window_loss / window_steps, "lr": lr,
                          "rate": window_items / max(now - last_log, 1e-9), "elapsed": run.elapsed}
                if main:
                    append_jsonl(run_dir / "metrics.jsonl", record)
                cb.on_step(run.step, record)
                window_loss, window_items, window_steps, last_log = 0.0, 0, 0, now
            if run.step % cfg.sample_every == 0 and main:
                text = task.sample_text(model, sample_generator, device)
                if text is not None:
                    append_jsonl(run_dir / "samples.jsonl", {"step": run.step, "loss": loss.item(), "text": text})
                    cb.on_sample(run.step, loss.item(), text)
            if run.step % cfg.eval_every == 0:
                evaluate()
                save()
    except KeyboardInterrupt:
        save()
        raise
    if not run.metrics or run.step % cfg.eval_every:
        evaluate()
    save()
    if main:
        plot_loss(run_dir / "metrics.jsonl", run_dir / "loss.png", title=f"{task.name}: {run_dir.name}")
    summary = {"step": run.step, "elapsed": run.elapsed, "metrics": run.metrics, "run_dir": str(run_dir),
               "best_val_loss": run.best_val_loss}
    cb.on_end(summary)
    return run


def resume_settings(run_dir: Path) -> tuple[str, dict[str, Any], ModelConfig, TrainConfig]:
    """Task name, task options, model and train configs recorded in a run directory."""
    config = checkpoint.load_config(run_dir)
    if not (run_dir / checkpoint.TRAINER).exists():
        raise UsageError(f"{run_dir}: has no trainer state (trainer.pt), so it cannot be resumed")
    task_options = dict(config["task_config"]["options"])
    model_cfg = ModelConfig.from_dict(config["model"])
    train_cfg = TrainConfig(**config["train"])
    return config["task"], task_options, model_cfg, train_cfg
