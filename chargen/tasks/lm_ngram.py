"""The count baseline as a run: a Kneser–Ney n-gram on the LM task's split, its order chosen on validation, saved.

The text, vocabulary and split are the language-model task's own (``LMData``: the last
``val_fraction`` of the cleaned text is validation), and the validation number is over the
characters ``evaluate_lm`` scores, so the saved ``val_loss`` is comparable with a recurrent
run's; ``chargen evaluate``, ``score`` and ``sample`` load the run like any other LM.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from chargen import checkpoint
from chargen.data.corpora import ProgressFn, load_registry
from chargen.errors import ChargenError, UsageError
from chargen.models import ModelConfig, describe
from chargen.models.ngram_lm import BASELINE_ORDERS, OrderChoice, choose_order, count_ngrams, fit
from chargen.tasks.base import Task
from chargen.tasks.lm import LMConfig, LMData

DISCOUNT = "modified"
BASELINE_MAX_CHARS = 20_000_000  # above this a baseline before training costs more than seconds: skipped


@dataclass
class NGramRun:
    """What ``train_ngram`` fitted and where it saved it."""

    run_dir: Path
    order: int
    val_loss: float  # nats per validation character
    by_order: dict[int, float]
    seconds: float  # counting and choosing the order (the corpus load not included)
    train_chars: int
    val_chars: int

    @property
    def val_bpc(self) -> float:
        return self.val_loss / math.log(2)


def train_ngram(
    corpus: str, run_dir: Path, *, order: int | None = None, max_order: int = max(BASELINE_ORDERS),
    val_fraction: float = 0.1, progress: ProgressFn | None = None, command: str | None = None,
) -> NGramRun:
    """Fit the n-gram on ``corpus``'s training split (``order``, or the best of ``1..max_order`` on
    validation) and save it in ``run_dir``, which must not hold a model yet."""
    if (run_dir / checkpoint.CONFIG).exists():
        raise UsageError(f"{run_dir} already holds a trained model; pick another run_dir", params="run_dir")
    options = LMConfig(corpus=corpus, val_fraction=val_fraction)
    data = LMData.load(corpus, val_fraction, progress=progress)
    model, choice, seconds = fit(data.train, len(data.vocab), data.val, order=order, max_order=max_order,
                                 discount=DISCOUNT)
    config: dict[str, Any] = {
        "task": "lm",
        "model": ModelConfig(kind="lm", family="ngram", vocab_size=len(data.vocab)).to_dict(),
        "vocab": data.vocab.to_json(),
        "task_config": {"options": asdict(options), "corpus_name": data.name, "corpus_sha256": data.sha256,
                        "train_chars": data.train.numel(), "val_chars": data.val.numel()},
        "step": 0,
        "metrics": {"val_loss": choice.nats, "val_bpc": choice.nats / math.log(2)},
        "ngram": {"order": choice.order, "discount": DISCOUNT, "discounts": model.discounts.tolist(),
                  "val_loss_by_order": {str(n): v for n, v in choice.by_order.items()},
                  "fit_seconds": round(seconds, 3)},
        **({"command": command} if command else {}),
    }
    checkpoint.save(run_dir, config, model)
    return NGramRun(run_dir, choice.order, choice.nats, choice.by_order, seconds, data.train.numel(),
                    data.val.numel())


def check_resumable(run_dir: Path) -> None:
    """A ChargenError when ``run_dir`` holds an n-gram run: it is counted in one pass, so nothing is left to resume."""
    config = checkpoint.load_config(run_dir)
    if (config.get("model") or {}).get("family") == "ngram":
        raise ChargenError(f"resume: {run_dir} is {describe(config)}, counted in one pass rather than trained in "
                           "steps, so there is nothing to resume; to count it again, give a new run_dir",
                           params=("resume", "run_dir"))


def baseline(data: LMData) -> OrderChoice:
    """The best n-gram order (of ``BASELINE_ORDERS``) for this split and its validation nats/char."""
    orders = list(BASELINE_ORDERS)
    return choose_order(count_ngrams(data.train, len(data.vocab), max(orders)), data.val, orders, DISCOUNT)


def unregistered_baseline(task: Task, corpus: str | None) -> tuple[OrderChoice, float] | None:
    """For a language-model run on a text that is not a registered corpus (which has the study's numbers
    instead), the n-gram baseline of its split and the seconds it took; None otherwise."""
    data = getattr(task, "data", None)
    if not isinstance(data, LMData) or not corpus or corpus in load_registry() \
            or data.train.numel() > BASELINE_MAX_CHARS:
        return None
    started = time.perf_counter()
    return baseline(data), time.perf_counter() - started
