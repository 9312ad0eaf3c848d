"""Generation from a transformer: a stepper (prime/step/state) on a key/value cache, and its exportable uncached twin.

The prime runs once; after it, each character is one position through the network, attending to
the cached keys and values of the positions before it: O(context) per character, whatever the
length generated. The cache holds at most ``context`` positions. When it is full, the next
character restarts it from the last ``context // 2`` characters (the new one included), which are
run again in one forward: a cost of ``context / 2`` positions once every ``context / 2``
characters, so the time per character stays flat on average.

Why re-prime rather than roll the cache: a rolling cache (drop the oldest key, keep the rest)
is exact for neither kind of position. Learned positions run out at ``context``; rotary positions
keep the attention scores relative, but above the first layer a cached key was computed from a
hidden state that had seen characters which are now gone, so the logits are those of no forward
pass the model was trained on. After a re-prime the logits are exactly those of the model's own
forward over the stepper's window (the last 1 to ``context`` characters), which the uncached twin
(``cached=False``) and the tests check to float rounding. The window rule, the same for both:

- ``prime(ids)`` appends to the window; past the context, the window is its last ``context`` ids;
- ``step(id)`` appends one; when the window is already full, it becomes its last ``context // 2``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from chargen.models import TransformerLM


def keep_on_slide(context: int) -> int:
    """How many of the last characters a full window keeps when the next one comes (the new one included)."""
    return max(1, context // 2)


class KVCacheStepper:
    """N streams of a TransformerLM, one character per :meth:`step`; ``prime``/``step``/``state`` as the other steppers.

    ``cached=False`` runs the model's full forward over the window at every step instead (the
    reference the cache must equal). ``condition (N,)``: one condition id per stream.
    """

    def __init__(self, model: TransformerLM, batch: int = 1, condition: Tensor | None = None,
                 cached: bool = True) -> None:
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        if model.condition is not None and (condition is None or condition.shape != (batch,)):
            raise ValueError(f"this model is conditioned: pass condition ids shaped ({batch},)")
        self.model, self.batch, self.condition, self.cached = model, batch, condition, cached
        self.context = model.context
        self.keep = keep_on_slide(self.context)
        device = model.embed.weight.device
        self.window = torch.zeros(batch, self.context, dtype=torch.long, device=device)  # (N, context) ids
        self.length = 0  # ids in the window (and positions in the cache)
        self.cache = model.new_cache(batch) if cached else None
        self.slides = 0  # how often the window was restarted (the benchmark and tests read it)

    def prime(self, ids: Tensor) -> Tensor:
        """Append ``ids (T, N)`` to the window and run them; logits ``(N, V)`` of the last position."""
        with torch.inference_mode():
            new = ids.t()  # (N, T)
            if self.length + new.shape[1] > self.context:
                joined = torch.cat([self.window[:, : self.length], new], dim=1)[:, -self.context :]
                return self._restart(joined)
            return self._append(new)

    def step(self, ids: Tensor) -> Tensor:
        """One character per stream, ``ids (N,)`` -> logits ``(N, V)``."""
        if torch.is_inference_mode_enabled():  # a generation loop enters it once, not per character
            return self._step(ids)
        with torch.inference_mode():
            return self._step(ids)

    def _step(self, ids: Tensor) -> Tensor:
        if self.length == self.context:
            joined = torch.cat([self.window[:, self.context - self.keep + 1 :], ids.view(-1, 1)], dim=1)
            return self._restart(joined)
        return self._append(ids.view(-1, 1))

    @property
    def state(self) -> tuple[Tensor]:
        """The window ``(N, length)``: the ids the next logits are conditioned on, which fix everything else."""
        return (self.window[:, : self.length].clone(),)

    def _restart(self, ids: Tensor) -> Tensor:
        self.slides += 1
        self.length = 0
        if self.cache is not None:
            self.cache.reset()
        return self._append(ids)

    def _append(self, ids: Tensor) -> Tensor:
        """``ids (N, T)`` after the window's ids (which fit); the logits after the last."""
        T = ids.shape[1]
        self.window[:, self.length : self.length + T] = ids
        self.length += T
        if self.cache is not None:
            return self.model.forward_cached(ids, self.cache, self.condition)[:, -1]
        logits, _, _ = self.model(self.window[:, : self.length].t(), None, condition=self.condition)
        return logits[-1]


class WindowStep(nn.Module):
    """The exportable step: ``forward(ids (N,), window (N, context), length (N,)) -> (logits, probs, window, length)``.

    The window rule of :class:`KVCacheStepper` as tensor arithmetic (no data-dependent control flow,
    so it traces): append ``ids`` at ``length``, or, in a full window, keep its last
    ``context // 2 - 1`` ids and append after them; then one causal forward over the whole window
    (positions past ``length`` hold stale ids that causal attention keeps away from the ones before).
    Zeros are the empty state. It recomputes the window at every step (no cache: what a traced graph
    can carry), so it gives the uncached stepper's logits.
    """

    def __init__(self, model: TransformerLM) -> None:
        super().__init__()
        self.model = model
        self.context = model.context
        self.keep = keep_on_slide(self.context)

    def forward(self, ids: Tensor, window: Tensor, length: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        N, C = window.shape
        full = length >= C  # (N,)
        cols = torch.arange(C, device=window.device).unsqueeze(0)  # (1, C)
        source = torch.where(full.unsqueeze(1), (cols + C - self.keep + 1).clamp(max=C - 1), cols)  # (N, C)
        shifted = window.gather(1, source)
        at = torch.where(full, torch.full_like(length, self.keep - 1), length)  # (N,): where the new id goes
        window = shifted.scatter(1, at.unsqueeze(1), ids.unsqueeze(1))
        hidden = self.model.hidden(window)  # (N, C, d_model)
        last = hidden.gather(1, at.view(N, 1, 1).expand(N, 1, hidden.shape[2])).squeeze(1)  # (N, d_model)
        logits = self.model.head(last)  # (N, V)
        return logits, torch.softmax(logits, dim=-1), window, at + 1
