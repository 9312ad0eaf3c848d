"""The Task protocol: what the task-agnostic training loop needs from a task, and the task registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from chargen.models import ModelConfig
from chargen.vocab import Vocab


class Task(Protocol):
    """One kind of training job; the loop in ``chargen.train`` never asks which one it runs."""

    name: ClassVar[str]
    unit: ClassVar[str]  # what throughput counts: "chars", "names", ...
    # Defaults the resolver (chargen.tasks.resolve) starts from: ModelConfig fields, TrainConfig fields,
    # and the task's own constructor options.
    model_defaults: ClassVar[dict[str, Any]]
    train_defaults: ClassVar[dict[str, Any]]
    option_defaults: ClassVar[dict[str, Any]]
    vocab: Vocab

    def model_config(self, base: ModelConfig) -> ModelConfig:
        """``base`` (cell, sizes, engine) completed with what the data decides (vocabulary, classes)."""

    def config(self) -> dict[str, Any]:
        """JSON for the checkpoint: ``options`` (the task's constructor arguments) plus data identity."""

    def train_loss(self, model: nn.Module, device: torch.device) -> tuple[Tensor, int]:
        """Loss on the next training batch and how many units it covered."""

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """Held-out metrics; ``val_loss`` (lower is better) is required."""

    def sample_text(self, model: nn.Module, generator: torch.Generator, device: torch.device) -> str | None:
        """A short sample for the periodic log, or None for tasks that do not generate."""

    def state_dict(self) -> dict[str, Any]:
        """Data position and generators, for exact resume."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    # With defaults in BaseTask, so the loop asks every task the same questions:
    keep_best: ClassVar[bool]  # keep best/ (lowest val_loss) beside the last checkpoint

    def should_stop(self, metrics: dict[str, float]) -> bool:
        """Asked after each evaluation: has the task reached its goal (e.g. a target accuracy)?"""

    def describe_batch(self) -> str:
        """Where the current training batch came from, for an error about it ("" when nothing useful)."""


class BaseTask:
    """The Task protocol's optional members, for a task to inherit and override what it has."""

    keep_best: ClassVar[bool] = False

    def should_stop(self, metrics: dict[str, float]) -> bool:
        return False

    def describe_batch(self) -> str:
        return ""


TaskFactory = Callable[..., Task]
TASKS: dict[str, TaskFactory] = {}


def register(name: str) -> Callable[[TaskFactory], TaskFactory]:
    def add(factory: TaskFactory) -> TaskFactory:
        TASKS[name] = factory
        return factory

    return add


# Held-out evaluation of a saved model of a task, when it lives outside the task's module:
# ``(loaded, device, progress, names_file) -> {"metrics": ..., "tables": ...}``.
EVALUATORS: dict[str, Callable[..., dict[str, Any]]] = {}


def register_evaluator(task: str) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., dict[str, Any]]]:
    def add(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        EVALUATORS[task] = fn
        return fn

    return add
