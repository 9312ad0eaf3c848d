"""Sliding-window scoring for a model with a fixed context (the transformer): every character once, with half a context of history.

A recurrent model reads a long text in chunks and carries its state, so each prediction has seen
everything before it. A transformer sees at most ``context`` characters per forward, so a long
text is read in overlapping windows of ``context`` inputs whose starts move by
``stride = context // 2``. The first window scores all its predictions; every later window scores
only the predictions the one before it did not reach (its last ``stride``), so every character is
scored exactly once, and each of them with at least ``context - stride + 1 > context / 2``
characters of history (the first window's early predictions excepted: nothing comes before them).
The windows are planned as the text arrives, so :class:`WindowReader` scores a text of any length
in constant memory, and the numbers do not depend on how the text was cut into pieces.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from chargen.models import TransformerLM


@dataclass(frozen=True)
class Window:
    """Inputs ``ids[start : start + length]`` predict ``ids[start + 1 : start + length + 1]``; the
    predictions at positions ``skip..length-1`` (targets ``start + skip + 1 ..``) are the ones it scores."""

    start: int
    length: int
    skip: int


def windows(n: int, context: int, *, final: bool = True, first: int = 0) -> Iterator[Window]:
    """The windows that score the targets ``1..n-1`` of a text of ``n`` ids, from window number ``first`` on.

    ``final=False`` (a text that may still grow): only the windows that a longer text would have too,
    i.e. those whose ``context`` inputs and last target are all there.
    """
    stride = context // 2
    k = first
    while True:
        start = k * stride
        end = min(start + context, n - 1)  # the last target this window predicts
        if end <= start or (not final and start + context > n - 1):
            return
        skip = 0 if k == 0 else context - stride  # the window before reached target start + context - stride
        if end > start + skip:
            yield Window(start, end - start, skip)
        if end == n - 1:
            return
        k += 1


class WindowReader:
    """Scores ids ``(T, S)`` (S texts of one length side by side) as they come, in sliding windows.

    ``push(ids)`` appends and scores every window that is complete; :meth:`totals` adds the last,
    shorter window without consuming it, so reading may continue. ``context_only(ids)`` (before any
    ``push``) gives context whose characters are not scored (a prime): the first scored target is
    then the first pushed one. ``keep``: also keep each scored target's log-probability (``kept``).
    """

    def __init__(self, model: TransformerLM, *, condition: Tensor | None = None, batch_windows: int = 16,
                 keep: bool = False) -> None:
        self.model, self.condition, self.batch_windows = model, condition, batch_windows
        self.context = model.context
        self.device = next(model.parameters()).device
        self.buffer: Tensor | None = None  # (n - offset, S): the ids from offset on
        self.offset = 0  # absolute index of buffer[0]
        self.next_window = 0
        self.first_target = 1  # without a prime, the first character is only context
        self.log_prob = 0.0
        self.chars = 0
        self.kept: list[Tensor] | None = [] if keep else None  # (n_i, S) log-probabilities of targets, in order

    @property
    def seen(self) -> int:
        return self.offset + (0 if self.buffer is None else self.buffer.shape[0])

    def context_only(self, ids: Tensor) -> None:
        if self.seen:
            raise ValueError("context_only comes before any pushed ids")
        self._append(ids)
        self.first_target = max(1, ids.shape[0])

    def push(self, ids: Tensor) -> None:
        self._append(ids)
        ready = list(windows(self.seen, self.context, final=False, first=self.next_window))
        for i in range(0, len(ready), self.batch_windows):  # full windows: one length, batched
            log_prob, chars = self._score(ready[i : i + self.batch_windows], keep=True)
            self.log_prob += log_prob
            self.chars += chars
        if ready:
            self.next_window += len(ready)
            self._trim(self.next_window * (self.context // 2))

    def totals(self) -> tuple[float, int]:
        """Log-probability and count of every target so far, the pending last window included."""
        log_prob, chars = self.log_prob, self.chars
        for window in windows(self.seen, self.context, first=self.next_window):
            more, count = self._score([window], keep=False)
            log_prob, chars = log_prob + more, chars + count
        return log_prob, chars

    def _append(self, ids: Tensor) -> None:
        ids = ids.to(self.device)
        self.buffer = ids if self.buffer is None else torch.cat([self.buffer, ids])

    def _trim(self, start: int) -> None:
        """Drop the ids before ``start``: no window still to come reads them."""
        assert self.buffer is not None
        drop = max(0, start - self.offset)
        self.buffer, self.offset = self.buffer[drop:], self.offset + drop

    @torch.no_grad()
    def _score(self, group: list[Window], keep: bool) -> tuple[float, int]:
        """Score windows of one length in one forward: their total log-probability and target count."""
        assert self.buffer is not None
        length, S = group[0].length, self.buffer.shape[1]
        at = [w.start - self.offset for w in group]
        inputs = torch.cat([self.buffer[a : a + length] for a in at], dim=1)  # (length, W*S)
        targets = torch.cat([self.buffer[a + 1 : a + length + 1] for a in at], dim=1)
        condition = None if self.condition is None else self.condition.repeat(len(group))
        was_training = self.model.training
        self.model.eval()
        logits, _, _ = self.model(inputs, None, condition=condition)  # (length, W*S, V)
        self.model.train(was_training)
        logp = F.log_softmax(logits.double(), dim=-1).gather(2, targets.unsqueeze(2)).squeeze(2)  # (length, W*S)
        total, count = 0.0, 0
        for i, w in enumerate(group):
            # targets before first_target (a prime's characters) are context, never scored
            lo = max(w.skip, self.first_target - w.start - 1)
            part = logp[lo:, i * S : (i + 1) * S]  # (n_i, S)
            total += float(part.sum())
            count += part.numel()
            if keep and self.kept is not None and part.numel():
                self.kept.append(part.cpu())
        return total, count


def windowed_log_probs(model: TransformerLM, ids: Tensor, condition: Tensor | None = None) -> Tensor:
    """``log p(ids[t] | its window)`` for every ``t >= 1`` of each column of ``ids (L, S)``: ``(L - 1, S)``."""
    reader = WindowReader(model, condition=condition, keep=True)
    reader.push(ids)
    assert reader.kept is not None
    for window in windows(reader.seen, reader.context, first=reader.next_window):
        reader._score([window], keep=True)
    return torch.cat(reader.kept) if reader.kept else torch.empty(0, ids.shape[1], dtype=torch.float64)
