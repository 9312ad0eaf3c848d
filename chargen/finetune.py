"""Fine-tuning: a language model run that starts from a trained model's weights (with a fresh optimiser).

The new run keeps the parent's architecture and vocabulary, so the new text must use only
characters the parent knows; its config records the parent (name, path, sha256 of its weights,
step and validation loss), so a fine-tuned model can always be traced to where it started.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import Tensor

from chargen import checkpoint
from chargen.errors import CheckpointError, UsageError, VocabularyError
from chargen.models import ModelConfig, describe
from chargen.tasks import build_task
from chargen.tasks.base import Task
from chargen.vocab import Vocab

# What a fine-tuned run may change in the parent's model config: these leave the weights' shapes alone.
ADJUSTABLE = ("dropout", "engine")


@dataclass
class Parent:
    """A trained LM to start from: its weights, architecture, vocabulary and identity."""

    name: str
    path: Path
    config: dict[str, Any]
    model_cfg: ModelConfig
    vocab: Vocab
    weights: dict[str, Tensor]
    sha256: str  # of its model.pt, as stored

    def record(self) -> dict[str, Any]:
        """What the fine-tuned run's config says about where it started."""
        metrics = self.config.get("metrics", {})
        return {"name": self.name, "path": str(self.path), "weights_sha256": self.sha256,
                "step": self.config.get("step"), "val_loss": metrics.get("val_loss"),
                "corpus": self.config.get("task_config", {}).get("options", {}).get("corpus")}

    def check_family(self, family: str | None) -> None:
        """A UsageError when ``family`` (None: not given) is not the parent's: weights do not cross families."""
        if family is None or family == self.model_cfg.family:
            return
        raise UsageError(f"init_from {self.name!r} is {describe(self.config)}: a {family} model cannot start from "
                         f"its weights (leave it out to train one from scratch, or leave out family to fine-tune "
                         f"the {self.model_cfg.family} model)", params=("init_from", "family"))

    def model_config(self, **changes: Any) -> ModelConfig:
        """The parent's model config, with ``changes`` (only ADJUSTABLE settings) applied."""
        if fixed := sorted(k for k, v in changes.items() if v is not None and k not in ADJUSTABLE):
            raise UsageError(
                f"a fine-tuned model keeps the architecture of {self.name!r}; it cannot change {', '.join(fixed)}",
                params=tuple(fixed),
            )
        return replace(self.model_cfg, **{k: v for k, v in changes.items() if v is not None})


def load_parent(name_or_path: str | Path, last: bool = False) -> tuple[Parent, str | None]:
    """The model to fine-tune (its best checkpoint unless ``last``) and a note saying which was taken."""
    path, note = checkpoint.choose(name_or_path, last)
    loaded = checkpoint.load(path, task="lm")
    if loaded.config["model"].get("family") == "ngram":  # counts, not weights a gradient could move
        raise UsageError(f"init_from {str(name_or_path)!r} is an n-gram model: its counts cannot be fine-tuned "
                         "(train a new one on the new text with family ngram)", params="init_from")
    try:
        data = (path / checkpoint.WEIGHTS).read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path / checkpoint.WEIGHTS}: cannot read it ({e.strerror or e})") from None
    weights = {k: v.detach().cpu().clone() for k, v in loaded.model.state_dict().items()}
    model_cfg = ModelConfig.from_dict(loaded.config["model"])
    return Parent(str(name_or_path), path, loaded.config, model_cfg, loaded.vocab, weights,
                  hashlib.sha256(data).hexdigest()), note


def build_lm_task(parent_vocab: Vocab, parent_name: str, **options: Any) -> Task:
    """The LM task on the new text, read with the parent's vocabulary (a clear error lists what it lacks)."""
    try:
        return build_task("lm", vocab=parent_vocab, **options)
    except VocabularyError as e:
        raise VocabularyError(
            f"{e}; a fine-tuned model keeps the vocabulary of the model it starts from ({parent_name!r}), "
            "so the new text must use only characters it knows"
        ) from None


def resume_options(run_dir: Path) -> dict[str, Any]:
    """Extra task options to rebuild a fine-tuned run for resuming: its parent's vocabulary, as saved."""
    config = checkpoint.load_config(run_dir)
    return {"vocab": Vocab.from_json(config["vocab"])} if "parent" in config else {}
