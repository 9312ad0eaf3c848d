"""Scoring text under a language model: log-probability, nats and bits per character, perplexity.

The text is read in chunks with the recurrent state carried from one to the next, so memory
stays constant whatever its length, and the numbers are the same whatever the chunk size. A
transformer, which carries no state, reads it in sliding windows of its context instead
(``chargen.generation.windows``: every character once, with at least half a context of history).
Without a prime the first character is only context (nothing predicts it), as in ``evaluate``:
a text of n characters gives n - 1 predictions. With a prime, every character is predicted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from chargen.cells import State
from chargen.errors import UsageError, VocabularyError
from chargen.generation.windows import WindowReader
from chargen.models import CharLM, TransformerLM
from chargen.vocab import Vocab


@dataclass
class Score:
    """The log-probability of ``chars`` predicted characters (natural log), and what was left out."""

    log_prob: float = 0.0
    chars: int = 0
    skipped: int = 0  # characters outside the vocabulary dropped from the text (skip_unknown)

    @property
    def nats_per_char(self) -> float:
        return -self.log_prob / self.chars if self.chars else math.nan

    @property
    def bits_per_char(self) -> float:
        return self.nats_per_char / math.log(2)

    @property
    def perplexity(self) -> float:
        return math.exp(self.nats_per_char) if self.chars else math.nan

    def to_dict(self) -> dict[str, float | int | None]:
        def finite(x: float) -> float | None:  # JSON has no NaN
            return x if math.isfinite(x) else None

        return {"log_prob": self.log_prob, "chars": self.chars, "nats_per_char": finite(self.nats_per_char),
                "bits_per_char": finite(self.bits_per_char), "perplexity": finite(self.perplexity),
                "skipped": self.skipped}


class Scorer:
    """Feed text piece by piece (``feed``), read the running ``score``; the state is carried across pieces."""

    def __init__(
        self, model: CharLM, vocab: Vocab, *, prime: str = "", skip_unknown: bool = False, chunk_size: int = 1024
    ) -> None:
        if chunk_size < 1:
            raise UsageError(f"chunk_size must be positive, got {chunk_size}", params="chunk_size")
        self.model, self.vocab, self.skip_unknown, self.chunk_size = model, vocab, skip_unknown, chunk_size
        self.device = next(model.parameters()).device
        self._score = Score()
        self.unknown: dict[str, int] = {}  # skipped characters and how often
        self.state: State | None = None
        self.last: Tensor | None = None  # (1, V) logits predicting the next character
        self.windows = WindowReader(model) if isinstance(model, TransformerLM) else None
        if prime:
            self._run(torch.tensor(vocab.encode(prime, what="the prime"), device=self.device), predict=False)

    @property
    def score(self) -> Score:
        """The running score of everything fed so far."""
        if self.windows is None:
            return self._score
        log_prob, chars = self.windows.totals()
        return Score(log_prob, chars, self._score.skipped)

    @torch.no_grad()
    def feed(self, text: str) -> None:
        if missing := self.vocab.unknown(text):
            if not self.skip_unknown:
                shown = " ".join(repr(ch) for ch in missing[:10])
                more = f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""
                raise VocabularyError(
                    f"the text has {len(missing)} character(s) outside the model's vocabulary: {shown}{more} "
                    "(skip_unknown drops them and counts them)", params="skip_unknown"
                )
            kept = []
            for ch in text:
                if ch in self.vocab:
                    kept.append(ch)
                else:
                    self.unknown[ch] = self.unknown.get(ch, 0) + 1
            self._score.skipped += len(text) - len(kept)
            text = "".join(kept)
        if not text:
            return
        ids = torch.tensor(self.vocab.encode(text), device=self.device)
        for start in range(0, ids.numel(), self.chunk_size):
            self._run(ids[start : start + self.chunk_size], predict=True)

    def _run(self, ids: Tensor, predict: bool) -> None:
        """Score ``ids`` (if ``predict``) against the logits before each, then advance the state over them."""
        if self.windows is not None:
            if predict:
                self.windows.push(ids.view(-1, 1))
            else:
                self.windows.context_only(ids.view(-1, 1))
            return
        was_training = self.model.training
        self.model.eval()
        logits, _, self.state = self.model(ids.view(-1, 1), self.state)  # (T, 1, V)
        self.model.train(was_training)
        if predict:
            # position t is predicted by the logits after t - 1: the carried last logits, then this chunk's
            before = logits[:-1, 0] if self.last is None else torch.cat([self.last, logits[:-1, 0]])
            targets = ids if self.last is not None else ids[1:]
            if targets.numel():
                logp = F.log_softmax(before.double(), dim=-1).gather(1, targets.view(-1, 1))
                self._score.log_prob += float(logp.sum())
                self._score.chars += targets.numel()
        self.last = logits[-1]  # (1, V)


def score_text(
    model: CharLM, vocab: Vocab, text: str | Iterable[str], *, prime: str = "", skip_unknown: bool = False,
    chunk_size: int = 1024,
) -> tuple[Score, dict[str, int]]:
    """The score of ``text`` (a string, or pieces of one read in turn) and the characters skipped."""
    scorer = Scorer(model, vocab, prime=prime, skip_unknown=skip_unknown, chunk_size=chunk_size)
    for piece in [text] if isinstance(text, str) else text:
        scorer.feed(piece)
    return scorer.score, scorer.unknown


def score_lines(
    model: CharLM, vocab: Vocab, lines: Iterable[str], *, prime: str | None = None, skip_unknown: bool = False
) -> Iterator[tuple[str, Score]]:
    """Each line scored on its own from a fresh state (its line break not included).

    ``prime`` defaults to a newline when the vocabulary has one: a line then starts as lines do in
    the training text, and every character of it is predicted.
    """
    if prime is None:
        prime = "\n" if "\n" in vocab else ""
    for line in lines:
        line = line.rstrip("\r\n")
        yield line, score_text(model, vocab, line, prime=prime, skip_unknown=skip_unknown)[0]
