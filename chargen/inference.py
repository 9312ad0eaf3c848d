"""Lean inference for generation: a stepper that advances N streams one character per call, and a sampler.

The reference path runs the model's own ``forward`` on a ``(1, N)`` batch for every character:
an embedding, a kernel launch per layer, a head, then ``sample_next``. Almost all of its
millisecond is dispatch, not arithmetic. :class:`LeanStepper` does the same arithmetic with as
few kernels as possible:

- the first layer's embedding and input projection are folded into one ``(V, G*H)`` table
  (``E W_ih^T + b_ih (+ b_hh)``), so the input costs one row lookup;
- each layer runs its cell's own fast step (``Cell.fast_step``, ``chargen.fast_steps``): one
  ``addmm`` for ``W_hh h`` (plus one for ``W_ih x`` above the first layer) and a handful of
  in-place element-wise kernels, in the gate layout the cell chooses;
- the head is one ``addmm``; every tensor a step touches is allocated once, at construction.

:class:`LeanSampler` draws exactly what ``chargen.sample.sample_next`` draws: ``torch.multinomial``
with one sample is ``argmax(p / q)`` with ``q ~ Exp(1)`` drawn from the generator, so drawing
``q`` ourselves (into a preallocated buffer, no validity checks) consumes the generator in the
same way and picks the same character.

The lean path equals the reference to float rounding (different kernels sum in different
orders, ~1e-6 on the logits), so it writes the same text unless two characters tie to within
rounding, which the tests and ``benchmarks/generate.py`` check on thousands of characters.

Both steppers share one API (``prime``, ``step``, ``state``); :func:`make_stepper` picks the
lean one for a model in eval mode and the reference one otherwise (dropout or the phased
LSTM's training-mode leak make training-mode generation differ, and the lean path has neither).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from chargen.cells import Cell, State
from chargen.generation.kvcache import KVCacheStepper
from chargen.models import CharLM, TransformerLM


class ReferenceStepper:
    """The model's own ``forward`` for every character: the readable path the lean one must equal."""

    def __init__(self, model: CharLM, batch: int = 1, condition: Tensor | None = None) -> None:
        self.model = model
        self.batch = batch
        self.condition = condition
        self._state: State | None = None

    @torch.no_grad()
    def prime(self, ids: Tensor) -> Tensor:
        """Run ``ids (T, N)`` through the network from the carried state; logits ``(N, V)`` of the last position."""
        logits, _, self._state = self.model(ids, self._state, condition=self.condition)
        return logits[-1]

    @torch.no_grad()
    def step(self, ids: Tensor) -> Tensor:
        """One character per stream, ``ids (N,)`` -> logits ``(N, V)``."""
        return self.prime(ids.view(1, -1))

    @property
    def state(self) -> State | None:
        """The carried state in the core's layout: one ``(num_layers, N, size)`` tensor per state name."""
        return self._state


class LeanStepper:
    """N streams, one character per :meth:`step`, on buffers allocated once (eval mode only).

    ``prime(ids (T, N))`` runs the model's own forward once (one call, any length) and loads its
    state; ``step(ids (N,))`` returns the next logits ``(N, V)`` in a buffer that the following
    step overwrites (sample from it first). ``condition (N,)``: one condition id per stream.
    """

    def __init__(self, model: CharLM, batch: int = 1, condition: Tensor | None = None) -> None:
        if model.training:
            raise ValueError("LeanStepper runs a model in eval mode (no dropout); call model.eval() first")
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        self.model = model
        self.batch = batch
        self.condition = condition
        self._primed = False
        encoder = model.encoder
        core = encoder.core
        with torch.no_grad():
            cells: list[Cell] = list(core.layers)
            self.layers = [cell.fast_step(batch, first=i == 0) for i, cell in enumerate(cells)]
            first = self.layers[0]
            embed_dim = encoder.embed.embedding_dim
            w_ih = cells[0].weight_ih
            self.table = table = first.fold(encoder.embed.weight.detach(), w_ih[:, :embed_dim])  # (V, G*H)
            self.cond_proj: Tensor | None = None
            if encoder.condition is not None:
                if condition is None or condition.shape != (batch,):
                    raise ValueError(f"this model is conditioned: pass condition ids shaped ({batch},)")
                cond = encoder.condition(condition)  # (N, C)
                self.cond_proj = first.fold(cond, w_ih[:, embed_dim:], bias=False)  # (N, G*H)
            self.xin = torch.empty(batch, table.shape[1], dtype=table.dtype, device=table.device)
            self.head_w = model.head.weight.detach().t().contiguous()
            self.head_b = model.head.bias.detach().clone()
            self.logits = torch.empty(batch, self.head_w.shape[1], dtype=table.dtype, device=table.device)

    def prime(self, ids: Tensor) -> Tensor:
        """Run ``ids (T, N)`` through the model's own forward from the carried state; logits ``(N, V)``."""
        with torch.inference_mode():
            logits, _, state = self.model(ids, self.state if self._primed else None, condition=self.condition)
            self._load(state)
            self._primed = True
            self.logits.copy_(logits[-1])
        return self.logits

    def _load(self, state: State) -> None:
        for i, layer in enumerate(self.layers):
            layer.load(tuple(s[i] for s in state))

    @property
    def state(self) -> State:
        """The carried state in the core's layout: one ``(num_layers, N, size)`` tensor per state name."""
        with torch.inference_mode():
            per_layer = [layer.export() for layer in self.layers]
            return tuple(torch.stack(parts) for parts in zip(*per_layer))

    def step(self, ids: Tensor) -> Tensor:
        """``ids (N,)`` -> logits ``(N, V)`` (a buffer, overwritten by the next step)."""
        if torch.is_inference_mode_enabled():  # a generation loop enters it once, not per character
            return self._step(ids)
        with torch.inference_mode():
            return self._step(ids)

    def _step(self, ids: Tensor) -> Tensor:
        x = torch.index_select(self.table, 0, ids, out=self.xin)
        if self.cond_proj is not None:
            x.add_(self.cond_proj)
        for layer in self.layers:
            x = layer.run(x)
        return torch.addmm(self.head_b, x, self.head_w, out=self.logits)


Stepper = LeanStepper | ReferenceStepper | KVCacheStepper


def make_stepper(model: nn.Module, batch: int = 1, condition: Tensor | None = None, lean: bool = True) -> Stepper:
    """The lean stepper for a model in eval mode; the reference one in training mode or when ``lean`` is False.

    A transformer gets its key/value-cache stepper (uncached, the full window each step, where the
    recurrent models would get the reference one)."""
    if isinstance(model, TransformerLM):
        return KVCacheStepper(model, batch, condition, cached=lean and not model.training)
    if lean and not model.training and isinstance(model, CharLM):  # other families step through their forward
        return LeanStepper(model, batch, condition)  # type: ignore[arg-type]
    return ReferenceStepper(model, batch, condition)  # type: ignore[arg-type]


class LeanSampler:
    """Next ids from logits ``(N, V)``, drawing what ``sample_next`` draws, on preallocated buffers.

    ``generators``: one per stream (stream i draws only from its own, so a stream's text does not
    depend on which other streams share its batch), or one for the whole batch (the draws of one
    ``torch.multinomial`` call on ``(N, V)``).
    """

    def __init__(
        self,
        batch: int,
        vocab_size: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generators: Sequence[torch.Generator] | torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.temperature = temperature
        self.top_k = top_k if top_k is not None and top_k < vocab_size else None
        self.shared = generators if isinstance(generators, torch.Generator) or generators is None else None
        self.generators = None if self.shared is not None or generators is None else list(generators)
        if self.generators is not None and len(self.generators) != batch:
            raise ValueError(f"one generator per stream: expected {batch}, got {len(self.generators)}")
        with torch.inference_mode():
            self.scaled = torch.empty(batch, vocab_size, device=device)
            self.peak = torch.empty(batch, 1, device=device)
            self.probs = torch.empty(batch, vocab_size, device=device)
            self.q = torch.empty(batch, vocab_size, device=device)
            self.rows = list(self.q.unbind(0))
            self.ids = torch.empty(batch, dtype=torch.long, device=device)
            if self.top_k is not None:
                self.top_vals = torch.empty(batch, self.top_k, device=device)
                self.top_idx = torch.empty(batch, self.top_k, dtype=torch.long, device=device)
                self.kth = self.top_vals[:, self.top_k - 1 :]
                self.mask = torch.empty(batch, vocab_size, dtype=torch.bool, device=device)

    def __call__(self, logits: Tensor, out: Tensor | None = None) -> Tensor:
        """``logits (N, V)`` -> ids ``(N,)`` (into ``out`` if given, else a buffer the next call overwrites)."""
        out = self.ids if out is None else out
        if torch.is_inference_mode_enabled():
            return self._draw(logits, out)
        with torch.inference_mode():
            return self._draw(logits, out)

    def _draw(self, logits: Tensor, out: Tensor) -> Tensor:
        if self.temperature < torch.finfo(logits.dtype).tiny:  # 0, or so small it underflows: greedy
            return torch.argmax(logits, dim=-1, out=out)
        scaled = logits
        if self.temperature != 1.0 or self.top_k is not None:
            # (x - max) / T as sample_next computes it; softmax alone shifts by the max the same way,
            # and x / 1.0 is x, bit for bit: at temperature 1 without top-k both kernels are skipped
            torch.amax(logits, dim=-1, keepdim=True, out=self.peak)
            scaled = torch.sub(logits, self.peak, out=self.scaled)
            if self.temperature != 1.0:
                scaled.div_(self.temperature)
        if self.top_k is not None:
            torch.topk(scaled, self.top_k, dim=-1, out=(self.top_vals, self.top_idx))
            torch.lt(scaled, self.kth, out=self.mask)
            scaled.masked_fill_(self.mask, float("-inf"))
        torch.softmax(scaled, dim=-1, out=self.probs)
        # multinomial(p, 1) == argmax(p / q), q ~ Exp(1): the same draws from the same generator
        if self.generators is None:
            self.q.exponential_(generator=self.shared)
        elif len(self.generators) == 1:  # (1, V) and its one row draw the same numbers
            self.q.exponential_(generator=self.generators[0])
        else:
            for row, generator in zip(self.rows, self.generators):
                row.exponential_(generator=generator)
        torch.div(self.probs, self.q, out=self.q)
        return torch.argmax(self.q, dim=-1, out=out)
