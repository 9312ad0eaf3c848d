"""The palindrome memorisation probe: predict a palindrome's last digit (its first) after T-1 digits.

One run is the classic setup (UvA deep-learning practical, 2018): cross-entropy on the last step
only, RMSProp at lr 1e-3, hidden 128, batch 128, gradient norm clipped at 10, a step budget per
length, and an early stop once held-out accuracy has stayed at or above 99.5% for two
evaluations in a row. The probe experiment over many cells and lengths is ``chargen.experiments.probe``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from chargen.data.palindromes import DIGITS, HELD_OUT_SEED, HELD_OUT_SIZE, MIN_LENGTH, PalindromeStream, held_out
from chargen.errors import CheckpointError, UsageError
from chargen.models import ModelConfig, SequenceClassifier
from chargen.runtime import check_batch_size, rank, world_size
from chargen.tasks.base import BaseTask, register
from chargen.vocab import Vocab

DATA_SEED_OFFSET = 1_000_003  # the training stream's generator is seeded apart from the weights' init
CHANCE = 0.1
MAX_LENGTH = 100_000  # bounds below keep a typo (length 1000000) from exhausting memory
MAX_BATCH_DIGITS = 50_000_000
CLASSIC_STEPS = 10_000  # the practical's budget: the default of a single `chargen train --task palindrome`


@dataclass
class PalindromeConfig:
    """Data and stopping rule of one palindrome run."""

    length: int = 10  # palindrome length T: T - 1 digits in, the T-th predicted
    batch_size: int = 128
    held_out: int = HELD_OUT_SIZE
    target_accuracy: float = 0.995  # early stop once held-out accuracy stays at or above this...
    patience: int = 2  # ...for this many evaluations in a row

    def __post_init__(self) -> None:
        if self.length < MIN_LENGTH:
            raise UsageError(f"length must be at least {MIN_LENGTH} (a palindrome with a digit to skip), got {self.length}",
                             params="length")
        if self.length > MAX_LENGTH:
            raise UsageError(f"length must be at most {MAX_LENGTH:,} (memory grows with it), got {self.length:,}",
                             params="length")
        check_batch_size(self.batch_size)
        if self.batch_size * self.length > MAX_BATCH_DIGITS or self.held_out * self.length > MAX_BATCH_DIGITS:
            raise UsageError(f"batch_size x length and held_out x length must be at most {MAX_BATCH_DIGITS:,} digits, "
                             f"got {self.batch_size:,} x {self.length:,} and {self.held_out:,} x {self.length:,}")
        if self.held_out < 1:
            raise UsageError(f"held-out set size must be positive, got {self.held_out}")
        if not 0.0 < self.target_accuracy <= 1.0:
            raise UsageError(f"target accuracy must be in (0, 1], got {self.target_accuracy}")
        if self.patience < 1:
            raise UsageError(f"patience must be at least 1 evaluation, got {self.patience}")


@torch.no_grad()
def evaluate_palindromes(model: SequenceClassifier, inputs: Tensor, targets: Tensor, device: torch.device,
                         chunk: int = 1000) -> dict[str, float]:
    """Mean cross-entropy and accuracy of the last-digit prediction over ``inputs (T-1, N)``."""
    was_training = model.training
    model.eval()
    loss, correct = 0.0, 0
    for start in range(0, inputs.shape[1], chunk):
        x = inputs[:, start : start + chunk].to(device)  # (T-1, n)
        y = targets[start : start + chunk].to(device)  # (n,)
        logits = model(x, torch.full((x.shape[1],), x.shape[0], device=device))  # (n, 10)
        loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += int((logits.argmax(1) == y).sum())
    model.train(was_training)
    count = inputs.shape[1]
    return {"val_loss": loss / count, "accuracy": correct / count}


@register("palindrome")
class PalindromeTask(BaseTask):
    """Digit palindromes of one length, drawn on the fly; judged on a fixed held-out set."""

    name: ClassVar[str] = "palindrome"
    unit: ClassVar[str] = "sequences"
    model_defaults: ClassVar[dict[str, Any]] = {"cell": "lstm", "hidden_size": 128, "num_layers": 1, "embed_dim": 10}
    train_defaults: ClassVar[dict[str, Any]] = {
        "steps": CLASSIC_STEPS, "optimizer": "rmsprop", "lr": 1e-3, "schedule": "constant", "warmup": 0,
        "clip": 10.0, "eval_every": 50, "sample_every": 50, "log_every": 10,
    }
    option_defaults: ClassVar[dict[str, Any]] = {"length": 10}

    def __init__(self, seed: int = 0, progress: Any = None, corpus: str | None = None, **options: Any) -> None:
        # ``progress`` (corpus downloads) is passed to every task; palindromes are generated, not read
        if corpus is not None:
            raise UsageError(f"corpus {corpus}: the palindrome task generates its own digits; it reads no corpus",
                             params="corpus")
        self.cfg = PalindromeConfig(**options)
        self.vocab = Vocab(DIGITS)
        self.stream = PalindromeStream(self.cfg.length, self.cfg.batch_size, seed + DATA_SEED_OFFSET)
        self.val_inputs, self.val_targets = held_out(self.cfg.length, self.cfg.held_out)
        self.streak = 0  # evaluations in a row at or above the target accuracy

    def model_config(self, base: ModelConfig) -> ModelConfig:
        return ModelConfig(**{**asdict(base), "kind": "classifier", "vocab_size": len(self.vocab), "num_classes": 10})

    def config(self) -> dict[str, Any]:
        return {"options": asdict(self.cfg), "held_out_seed": HELD_OUT_SEED, "chance": CHANCE}

    def train_loss(self, model: SequenceClassifier, device: torch.device) -> tuple[Tensor, int]:
        inputs, targets = self.stream.next()  # (T-1, N), (N,): the global batch, the same on every rank
        inputs, targets = inputs[:, rank() :: world_size()].to(device), targets[rank() :: world_size()].to(device)
        logits = model(inputs, torch.full((inputs.shape[1],), inputs.shape[0], device=device))  # (N, 10)
        return F.cross_entropy(logits, targets), targets.numel()

    def evaluate(self, model: SequenceClassifier, device: torch.device) -> dict[str, float]:
        return evaluate_palindromes(model, self.val_inputs, self.val_targets, device)

    def should_stop(self, metrics: dict[str, float]) -> bool:
        """Asked by the training loop after each evaluation (on every rank, with rank 0's metrics):
        has held-out accuracy stayed at or above the target for ``patience`` evaluations in a row?"""
        self.streak = self.streak + 1 if metrics["accuracy"] >= self.cfg.target_accuracy else 0
        return self.streak >= self.cfg.patience

    def sample_text(self, model: SequenceClassifier, generator: torch.Generator, device: torch.device) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"stream": self.stream.state_dict(), "streak": self.streak}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state["stream"])
        self.streak = int(state["streak"])

    @staticmethod
    def evaluate_saved(loaded: Any, device: torch.device, progress: Any = None) -> dict[str, Any]:
        """Held-out accuracy of a saved model, recomputed on the same fixed palindromes."""
        task_config = loaded.config["task_config"]
        options = task_config["options"]
        if task_config.get("held_out_seed", HELD_OUT_SEED) != HELD_OUT_SEED:
            raise CheckpointError(
                f"{loaded.path}: held out on seed {task_config['held_out_seed']}, this chargen draws seed {HELD_OUT_SEED}"
            )
        inputs, targets = held_out(options["length"], options["held_out"])
        metrics = evaluate_palindromes(loaded.model, inputs, targets, device)
        return {"metrics": {**metrics, "length": options["length"], "step": loaded.config.get("step", 0)}}
