"""The sequential-digits task (``digits``): an 8 x 8 handwritten digit read one pixel per step, raster or permuted order.

The closest offline analogue of (permuted) pixel-MNIST (``chargen.data.digits``): 64 steps, then
the digit is read from the core's last output. A pixel enters as a token, its grey level (17 of
them, as the file stores it), through the classifier's embedding. A token loses nothing: the
levels are integers, and an embedding holds the real-valued input ``level / 16`` as a special
case (row ``i`` equal to ``i / 16`` times one vector). The default ``embed_dim`` of 1 gives the
cell one number per step, the shape of pixel-MNIST's input, with the number per grey level
learned. Tokens also keep every model, engine and checkpoint path the classifiers use unchanged,
where a real-valued input would need a second input layer in every model.

With ``permuted`` the pixels are read in one fixed order drawn from a fixed seed; the run's config
stores that order, evaluation applies the stored order, and a resume refuses a different one.
Training shuffles the 1,197 training images each epoch; each evaluation scores the 300 validation
images (``val_loss``, ``val_accuracy``: the training loop writes them to ``metrics.jsonl``), and
the test split is scored only by ``evaluate_saved`` (``chargen evaluate``), once training has
chosen its model on validation (``best/`` keeps the lowest ``val_loss``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from chargen.data.digits import (
    CLASSES, GREY_LEVELS, PERMUTATION_SEED, PIXELS, SPLIT_SEED, check_permutation, load_digits, permutation, sequences,
    split,
)
from chargen.errors import CheckpointError, CorpusError, UsageError
from chargen.models import ModelConfig, SequenceClassifier
from chargen.runtime import check_batch_size
from chargen.tasks.base import BaseTask, register
from chargen.tasks.names import IndexBatches
from chargen.vocab import Vocab

DATA_SEED_OFFSET = 1_000_003  # the batch order is seeded apart from the weights' init
CHANCE = 1 / CLASSES


@dataclass
class DigitsConfig:
    """Data options of a digits run."""

    permuted: bool = False  # read the pixels in the fixed permuted order instead of raster order
    batch_size: int = 64

    def __post_init__(self) -> None:
        if not isinstance(self.permuted, bool):
            raise UsageError(f"permuted must be true or false, got {self.permuted!r}", params="permuted")
        check_batch_size(self.batch_size)


@torch.no_grad()
def evaluate_images(model: SequenceClassifier, inputs: Tensor, targets: Tensor, device: torch.device,
                    chunk: int = 1000) -> dict[str, Any]:
    """Mean cross-entropy, accuracy and the predictions of ``model`` on images ``inputs (64, N)``."""
    was_training = model.training
    model.eval()
    loss, predictions = 0.0, []
    for start in range(0, inputs.shape[1], chunk):
        x = inputs[:, start : start + chunk].to(device)
        logits = model(x, torch.full((x.shape[1],), PIXELS, device=device))  # (n, 10)
        loss += F.cross_entropy(logits, targets[start : start + chunk].to(device), reduction="sum").item()
        predictions.append(logits.argmax(1).cpu())
    model.train(was_training)
    predicted = torch.cat(predictions)
    return {"loss": loss / len(targets), "accuracy": float((predicted == targets).float().mean()),
            "predicted": predicted}


def split_inputs(order: Tensor | None) -> dict[str, tuple[Tensor, Tensor]]:
    """Each split's ``(inputs (64, N), labels (N,))`` in pixel ``order`` (None: raster): the one place
    training and evaluation both take their images from."""
    data = load_digits()
    return {name: (sequences(data.pixels[idx], order), data.labels[idx]) for name, idx in split(data.labels).items()}


@register("digits")
class DigitsTask(BaseTask):
    """8 x 8 digits, 64 grey-level tokens each, classified from the last step; judged on fixed splits."""

    name: ClassVar[str] = "digits"
    unit: ClassVar[str] = "images"
    model_defaults: ClassVar[dict[str, Any]] = {"cell": "lstm", "hidden_size": 128, "num_layers": 1, "embed_dim": 1}
    train_defaults: ClassVar[dict[str, Any]] = {
        "steps": 3000, "optimizer": "rmsprop", "lr": 1e-3, "schedule": "constant", "warmup": 0, "clip": 10.0,
        "eval_every": 50, "sample_every": 10**9, "log_every": 10,
    }
    option_defaults: ClassVar[dict[str, Any]] = {"permuted": False}
    keep_best: ClassVar[bool] = True  # the study's test accuracy is the model chosen on validation loss

    def __init__(self, seed: int = 0, progress: Any = None, corpus: str | None = None, **options: Any) -> None:
        # ``progress`` (corpus downloads) is passed to every task; the digits ship with scikit-learn
        if corpus is not None:
            raise UsageError(f"corpus {corpus}: the digits task reads scikit-learn's digits; it reads no corpus",
                             params="corpus")
        self.cfg = DigitsConfig(**options)
        self.vocab = Vocab(GREY_LEVELS)
        self.order = permutation() if self.cfg.permuted else None
        self.digest = load_digits().digest
        splits = split_inputs(self.order)
        self.train_x, self.train_y = splits["train"]
        self.val_x, self.val_y = splits["val"]
        self.sizes = {name: len(labels) for name, (_, labels) in splits.items()}
        self.batches = IndexBatches(self.sizes["train"], self.cfg.batch_size, seed + DATA_SEED_OFFSET)

    def model_config(self, base: ModelConfig) -> ModelConfig:
        return ModelConfig(**{**asdict(base), "kind": "classifier", "vocab_size": len(self.vocab),
                              "num_classes": CLASSES})

    def config(self) -> dict[str, Any]:
        return {"options": asdict(self.cfg), "data_sha256": self.digest, "split_seed": SPLIT_SEED,
                "split_sizes": self.sizes, "permutation_seed": PERMUTATION_SEED if self.cfg.permuted else None,
                "permutation": self.order.tolist() if self.order is not None else None, "chance": CHANCE}

    def train_loss(self, model: SequenceClassifier, device: torch.device) -> tuple[Tensor, int]:
        idx = self.batches.next()  # this rank's slice of the global batch
        x, y = self.train_x[:, idx].to(device), self.train_y[idx].to(device)
        logits = model(x, torch.full((len(idx),), PIXELS, device=device))  # (n, 10)
        return F.cross_entropy(logits, y), len(idx)

    def evaluate(self, model: SequenceClassifier, device: torch.device) -> dict[str, float]:
        m = evaluate_images(model, self.val_x, self.val_y, device)
        return {"val_loss": m["loss"], "val_accuracy": m["accuracy"]}

    def sample_text(self, model: SequenceClassifier, generator: torch.Generator, device: torch.device) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches.state_dict(), "permutation": self.order}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("permutation")
        if (saved is None) != (self.order is None) or (saved is not None and not torch.equal(saved, self.order)):
            raise CheckpointError("this run was trained on another pixel order than this chargen's; start a new run")
        self.batches.load_state_dict(state["batches"])

    @staticmethod
    def evaluate_saved(loaded: Any, device: torch.device, progress: Any = None) -> dict[str, Any]:
        """Test loss and accuracy (``loss``, ``accuracy``) of a saved model, and its validation ones, in the
        pixel order its config stores, with the test recall of each digit."""
        task_config = loaded.config["task_config"]
        data = load_digits()
        if task_config.get("data_sha256") != data.digest or task_config.get("split_seed") != SPLIT_SEED:
            raise CorpusError(f"{loaded.path}: trained on other digits or another split than this chargen's")
        saved = task_config.get("permutation")
        order = None if saved is None else check_permutation(saved)
        splits = split_inputs(order)
        test = evaluate_images(loaded.model, *splits["test"], device)
        val = evaluate_images(loaded.model, *splits["val"], device)
        labels = splits["test"][1]
        rows = []
        for digit in range(CLASSES):
            mine = labels == digit
            hits = int((test["predicted"][mine] == digit).sum())
            rows.append([digit, int(mine.sum()), hits / max(1, int(mine.sum()))])
        # ``accuracy`` is the test split's, as in the other tasks' held-out evaluations (compare reads it)
        metrics = {"test_images": len(labels), "accuracy": test["accuracy"], "loss": test["loss"],
                   "val_accuracy": val["accuracy"], "val_loss": val["loss"], "permuted": order is not None,
                   "step": loaded.config.get("step", 0)}
        return {"metrics": metrics, "tables": [{"title": "per digit (test split)",
                                                "columns": ["digit", "test images", "recall"], "rows": rows}]}
