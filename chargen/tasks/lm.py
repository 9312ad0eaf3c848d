"""The character language model task: corpus -> train/validation split -> stateful truncated-BPTT batches."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from chargen.cells import State
from chargen.data.corpora import ProgressFn, load_corpus
from chargen.data.streams import StreamBatcher, WindowBatcher, as_streams
from chargen.errors import CorpusError, UsageError
from chargen.generation.windows import WindowReader
from chargen.models import CharLM, ModelConfig, TransformerLM
from chargen.runtime import check_batch_size, rank, world_size
from chargen.sample import generate, generate_streams
from chargen.stops import check_stops, stop_at
from chargen.tasks.base import BaseTask, register
from chargen.vocab import Vocab

BATCHING = ("streams", "windows")


@dataclass
class LMConfig:
    """Data and batching of a language-model run."""

    corpus: str = "grimm"
    seq_len: int = 30
    batch_size: int = 64
    batching: str = "streams"  # contiguous streams with carried state, or independent random windows
    val_fraction: float = 0.1
    sample_length: int = 30
    sample_temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.seq_len < 1:
            raise UsageError(f"seq_len must be positive, got {self.seq_len}", params="seq_len")
        check_batch_size(self.batch_size)
        if self.batching not in BATCHING:
            raise UsageError(f"batching must be one of {', '.join(BATCHING)}, got {self.batching!r}", params="batching")
        if not 0.0 < self.val_fraction < 0.5:
            raise UsageError(f"validation fraction must be in (0, 0.5), got {self.val_fraction}")


@dataclass
class LMData:
    """A cleaned corpus, its vocabulary and its split: the last ``val_fraction`` is validation."""

    name: str
    sha256: str
    vocab: Vocab
    train: Tensor  # (n_train,) ids
    val: Tensor  # (n_val,) ids

    @classmethod
    def load(
        cls, corpus: str, val_fraction: float, vocab: Vocab | None = None, progress: ProgressFn | None = None
    ) -> LMData:
        text = load_corpus(corpus, progress=progress)
        if len(text.text) < 100:
            raise CorpusError(f"corpus {corpus!r} has {len(text.text)} characters after cleaning; need at least 100")
        vocab = vocab or Vocab.from_text(text.text)
        ids = torch.tensor(vocab.encode(text.text, what=f"corpus {corpus!r}"), dtype=torch.long)
        n_val = max(1, int(len(ids) * val_fraction))
        return cls(text.name, text.sha256, vocab, ids[:-n_val], ids[-n_val:])


@torch.no_grad()
def evaluate_lm(model: CharLM, ids: Tensor, device: torch.device, streams: int = 8, chunk: int = 256) -> float:
    """Mean next-character loss (nats) over ``ids``, read as a few long streams with carried state.

    Long streams keep almost every prediction in full context; only each stream's first
    characters start cold, which costs little at these lengths. A transformer reads the same
    streams in sliding windows (``chargen.generation.windows``): the same characters are scored,
    each once, with at least half its context of history instead of everything before it.
    """
    was_training = model.training
    model.eval()
    streams = max(1, min(streams, (ids.numel() - 1) // 2))
    data = as_streams(ids, streams)  # (L, S)
    if isinstance(model, TransformerLM):
        reader = WindowReader(model)
        reader.push(data)
        log_prob, count = reader.totals()
        model.train(was_training)
        return -log_prob / count
    total, count = 0.0, 0
    state: State | None = None
    for start in range(0, data.shape[0] - 1, chunk):
        x = data[start : start + chunk + 1].to(device)
        inputs, targets = x[:-1], x[1:]
        if inputs.numel() == 0:
            break
        logits, _, state = model(inputs, state)
        total += torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum").item()
        count += targets.numel()
    model.train(was_training)
    return total / count


@register("lm")
class LanguageModelTask(BaseTask):
    """Next-character prediction on a book; the state is carried (and detached) between batches."""

    name: ClassVar[str] = "lm"
    unit: ClassVar[str] = "chars"
    # Sized for 2 CPU cores: 2x256 trains at ~16K chars/s there (2x512: ~6K), so 4000 steps of
    # 64x30 characters (~16 epochs of grimm) fit in 10 minutes; it reached 1.40 nats by step 1000.
    model_defaults: ClassVar[dict[str, Any]] = {
        "cell": "lstm", "hidden_size": 256, "num_layers": 2, "embed_dim": 64, "dropout": 0.1,
    }
    train_defaults: ClassVar[dict[str, Any]] = {"steps": 4000, "lr": 3e-3, "eval_every": 500, "sample_every": 500}
    option_defaults: ClassVar[dict[str, Any]] = {"corpus": "grimm"}
    keep_best: ClassVar[bool] = True  # the loop keeps best/ (lowest val_loss) beside the last checkpoint

    def __init__(
        self, seed: int = 0, progress: ProgressFn | None = None, data: LMData | None = None,
        vocab: Vocab | None = None, **options: Any
    ) -> None:
        """``data``: a text already split (e.g. reduced in memory, ``chargen.reference``), used as it is
        instead of loading ``corpus``. ``vocab``: a given vocabulary (a fine-tuned model's parent's)
        instead of the corpus's own; it must cover the corpus."""
        self.cfg = LMConfig(**options)
        if data is None:
            data = LMData.load(self.cfg.corpus, self.cfg.val_fraction, vocab=vocab, progress=progress)
        self.data = data
        self.vocab = self.data.vocab
        batcher = StreamBatcher if self.cfg.batching == "streams" else WindowBatcher
        try:
            self.batches = batcher(
                self.data.train, self.cfg.batch_size, self.cfg.seq_len, seed, rank(), world_size()
            )
        except ValueError as e:
            raise CorpusError(f"corpus {self.cfg.corpus!r} is too short for this batch: {e}; lower batch_size "
                              f"(now {self.cfg.batch_size}) or seq_len (now {self.cfg.seq_len}), or use a longer "
                              "text") from None
        self.state: State | None = None

    def model_config(self, base: ModelConfig) -> ModelConfig:
        if base.family == "transformer" and self.cfg.seq_len != base.context:
            # its training windows are its contexts: positions past seq_len would never be trained
            raise UsageError(f"seq_len ({self.cfg.seq_len}) must equal context ({base.context}): a transformer "
                             "trains on windows of its context", params=("seq_len", "context"))
        return ModelConfig(**{**asdict(base), "kind": "lm", "vocab_size": len(self.vocab)})

    def config(self) -> dict[str, Any]:
        return {
            "options": asdict(self.cfg),
            "corpus_name": self.data.name,
            "corpus_sha256": self.data.sha256,
            "train_chars": self.data.train.numel(),
            "val_chars": self.data.val.numel(),
        }

    def train_loss(self, model: CharLM, device: torch.device) -> tuple[Tensor, int]:
        inputs, targets, reset = self.batches.next()
        # detached: truncated BPTT; moved: a resumed state was saved from the CPU. A transformer returns no
        # state, so each of its batches starts afresh: streams then are windows at consecutive offsets
        state = None if reset or self.state is None else tuple(s.detach().to(device) for s in self.state)
        _, loss, self.state = model(inputs.to(device), state, targets.to(device))
        return loss, targets.numel()

    def describe_batch(self) -> str:
        return self.batches.describe_last()

    def evaluate(self, model: CharLM, device: torch.device) -> dict[str, float]:
        loss = evaluate_lm(model, self.data.val, device)
        return {"val_loss": loss, "val_bpc": loss / math.log(2)}

    def sample_text(self, model: CharLM, generator: torch.Generator, device: torch.device) -> str:
        was_training = model.training
        model.eval()
        seed = int(torch.randint(2**31, (1,), generator=generator))
        text = "".join(
            generate(model, self.vocab, length=self.cfg.sample_length, temperature=self.cfg.sample_temperature, seed=seed)
        )
        model.train(was_training)
        return text

    @staticmethod
    def evaluate_saved(loaded: Any, device: torch.device, progress: ProgressFn | None = None) -> dict[str, Any]:
        """Validation loss of a saved LM, recomputed on the same split of the same corpus."""
        options, task_config = loaded.config["task_config"]["options"], loaded.config["task_config"]
        data = LMData.load(options["corpus"], options["val_fraction"], vocab=loaded.vocab, progress=progress)
        if data.sha256 != task_config["corpus_sha256"]:
            raise CorpusError(
                f"corpus {options['corpus']!r} is not the text this model was trained on "
                f"(sha256 {data.sha256[:12]}... vs {task_config['corpus_sha256'][:12]}...)"
            )
        loss = evaluate_lm(loaded.model, data.val, device)
        return {"metrics": {"val_loss": loss, "val_bpc": loss / math.log(2), "val_chars": data.val.numel(),
                            "step": loaded.config.get("step", 0)}}

    @staticmethod
    def sample_saved(loaded: Any, *, prime: str = "", length: int = 500, n: int = 1, temperature: float = 1.0,
                     top_k: int | None = None, seed: int | None = None, lang: str | None = None,
                     start: str | None = None, stop: Sequence[str] = ()) -> Iterator[str]:
        """``n`` texts from a saved LM as they are written: each the prime, then its continuation (cut before
        the first of the ``stop`` strings), then a blank line."""
        if lang or start:
            raise UsageError("lang and start are for name generators; this is a text model (use prime)",
                             params=("lang", "start", "prime"))
        loaded.vocab.encode(prime, what="the prime")  # fail before anything is written
        check_stops(stop)
        for text in stop:  # one the model cannot write would never stop it
            loaded.vocab.encode(text, what=f"the stop string {text!r}")
        chunk = int((loaded.config.get("task_config") or {}).get("options", {}).get("seq_len", 30))
        # all n texts as one batch (text i is the one seed + i gives alone): the first is yielded as it is
        # written, the others follow in order once the batch is done; each is cut at its first stop string
        rest: list[list[str]] = [[] for _ in range(n - 1)]
        streams = generate_streams(loaded.model, loaded.vocab, n=n, prime=prime, length=length,
                                   temperature=temperature, top_k=top_k, seed=seed, chunk_size=chunk)

        def first() -> Iterator[str]:
            for pieces in streams:
                for kept, piece in zip(rest, pieces[1:]):
                    kept.append(piece)
                if pieces[0]:
                    yield pieces[0]

        yield prime
        yield from stop_at(first(), stop)
        for pieces in streams if rest else ():  # the first stopped early: the others still need their text
            for kept, piece in zip(rest, pieces[1:]):
                kept.append(piece)
        for kept in rest:
            yield "\n\n" + prime + "".join(stop_at(kept, stop))
        yield "\n"

    def state_dict(self) -> dict[str, Any]:
        # The carried state is part of the data position: resuming mid-epoch continues from it.
        return {"batches": self.batches.state_dict(), "carried": list(self.state) if self.state else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches.load_state_dict(state["batches"])
        self.state = tuple(state["carried"]) if state.get("carried") else None
