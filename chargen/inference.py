"""Lean inference for generation: a stepper that advances N streams one character per call, and a sampler.

The reference path runs the model's own ``forward`` on a ``(1, N)`` batch for every character:
an embedding, a kernel launch per layer, a head, then ``sample_next``. Almost all of its
millisecond is dispatch, not arithmetic. :class:`LeanStepper` does the same arithmetic with as
few kernels as possible:

- the first layer's embedding and input projection are folded into one ``(V, G*H)`` table
  (``E W_ih^T + b_ih (+ b_hh)``), so the input costs one row lookup;
- each layer is one ``addmm`` for ``W_hh h`` (plus one for ``W_ih x`` above the first layer) and
  a handful of in-place element-wise kernels; the LSTM's gate rows are reordered ``i, f, o, g``
  so the three sigmoids are one kernel;
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

from chargen.cells import (
    Cell,
    LSTMCell,
    MomentumLSTMCell,
    MomentumRNNCell,
    RNNCell,
    State,
)
from chargen.models import CharLM


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

    def load(self, state: State) -> None:
        """Carry ``state`` (the core's layout, N rows) from here on, as if primed into it."""
        self._state = state


class _Layer:
    """One layer's step on preallocated buffers; ``first`` layers read a folded table row instead of ``x``."""

    def __init__(self, cell: Cell, batch: int, first: bool) -> None:
        self.cell = cell
        self.first = first
        self.hidden = cell.hidden_size
        like = cell.weight_hh
        self.h = torch.zeros(batch, self.hidden, dtype=like.dtype, device=like.device)

    def fold_bias(self) -> bool:
        """Whether the first layer's table may also carry ``b_hh`` (not for momentum: v filters b_ih only)."""
        return True

    def row_order(self) -> Tensor | None:
        """A permutation of the gate rows (applied to the table and weights), or None."""
        return None

    def load(self, state: State) -> None:
        raise NotImplementedError

    def export(self) -> State:
        raise NotImplementedError

    def run(self, xin: Tensor) -> Tensor:
        """``xin``: the folded first-layer input ``(N, G*H)``, or the layer below's ``h (N, H)``. Returns ``h``."""
        raise NotImplementedError


def _t(weight: Tensor, order: Tensor | None = None, scale: float = 1.0) -> Tensor:
    """``weight (G*H, D)`` -> a contiguous ``(D, G*H)`` copy, rows reordered and scaled, for ``addmm``."""
    w = weight.detach() if order is None else weight.detach()[order]
    return (w * scale if scale != 1.0 else w).t().contiguous()


def _v(vector: Tensor, order: Tensor | None = None, scale: float = 1.0) -> Tensor:
    """A copy of ``vector (G*H,)`` (or of the rows of a ``(G*H, ...)`` tensor), reordered and scaled."""
    v = vector.detach() if order is None else vector.detach()[order]
    return (v * scale if scale != 1.0 else v).clone()


def _lstm_order(hidden: int, device: torch.device) -> Tensor:
    """Gate rows ``i, f, g, o`` -> ``i, f, o, g``: the three sigmoids become one contiguous slice."""
    i, f, g, o = torch.arange(4 * hidden, device=device).chunk(4)
    return torch.cat([i, f, o, g])


class _RNNLayer(_Layer):
    """``h = tanh(xp + W_hh h + b_hh)``: two ``addmm`` (one for the first layer) and one ``tanh``."""

    def __init__(self, cell: RNNCell, batch: int, first: bool) -> None:
        super().__init__(cell, batch, first)
        self.whh = _t(cell.weight_hh)
        self.pre = torch.empty(batch, self.hidden, dtype=self.h.dtype, device=self.h.device)
        if not first:
            self.wih = _t(cell.weight_ih)
            self.bias = _v(cell.bias_ih + cell.bias_hh)

    def load(self, state: State) -> None:
        self.h.copy_(state[0])

    def export(self) -> State:
        return (self.h.clone(),)

    def run(self, xin: Tensor) -> Tensor:
        if self.first:
            torch.addmm(xin, self.h, self.whh, out=self.pre)
        else:
            torch.addmm(self.bias, xin, self.wih, out=self.pre).addmm_(self.h, self.whh)
        torch.tanh(self.pre, out=self.h)
        return self.h


class _LSTMLayer(_Layer):
    """The LSTM update on gates reordered ``i, f, o, g``: one sigmoid, one tanh, ``c`` and ``h`` in place."""

    def __init__(self, cell: LSTMCell, batch: int, first: bool) -> None:
        super().__init__(cell, batch, first)
        hid = self.hidden
        self.order = _lstm_order(hid, cell.weight_hh.device)
        self.whh = _t(cell.weight_hh, self.order)
        self.c = torch.zeros_like(self.h)
        self.tanh_c = torch.empty_like(self.h)
        self.gates = torch.empty(batch, 4 * hid, dtype=self.h.dtype, device=self.h.device)
        # views made once: slicing in the step would allocate a Python object per call
        self.sig, self.g = self.gates[:, : 3 * hid], self.gates[:, 3 * hid :]
        self.i, self.f, self.o = self.gates[:, :hid], self.gates[:, hid : 2 * hid], self.gates[:, 2 * hid : 3 * hid]
        if not first:
            self.wih = _t(cell.weight_ih, self.order)
            self.bias = _v(cell.bias_ih + cell.bias_hh, self.order)

    def row_order(self) -> Tensor | None:
        return self.order

    def load(self, state: State) -> None:
        self.h.copy_(state[0])
        self.c.copy_(state[1])

    def export(self) -> State:
        return (self.h.clone(), self.c.clone())

    def update(self) -> Tensor:
        self.sig.sigmoid_()
        self.g.tanh_()
        self.c.mul_(self.f).addcmul_(self.i, self.g)
        torch.tanh(self.c, out=self.tanh_c)
        torch.mul(self.o, self.tanh_c, out=self.h)
        return self.h

    def run(self, xin: Tensor) -> Tensor:
        # preact and update inlined: this runs once per layer per character
        gates = self.gates
        if self.first:
            torch.addmm(xin, self.h, self.whh, out=gates)
        else:
            torch.addmm(self.bias, xin, self.wih, out=gates).addmm_(self.h, self.whh)
        self.sig.sigmoid_()
        self.g.tanh_()
        self.c.mul_(self.f).addcmul_(self.i, self.g)
        torch.tanh(self.c, out=self.tanh_c)
        return torch.mul(self.o, self.tanh_c, out=self.h)


class _Momentum:
    """``v = mu v + s (W_ih x + b_ih)`` in place (``s`` folded into the weights), then the base update from ``v + b_hh``."""

    cell: MomentumRNNCell | MomentumLSTMCell
    first: bool

    def setup_momentum(self, order: Tensor | None) -> None:
        cell = self.cell
        self.mu = float(cell.mu)
        s = float(cell.s)
        width = cell.gates * cell.hidden_size
        self.v = torch.zeros(self.h.shape[0], width, dtype=self.h.dtype, device=self.h.device)
        self.b_hh = _v(cell.bias_hh, order)
        if not self.first:
            self.wih_s = _t(cell.weight_ih, order, s)
            self.b_ih_s = _v(cell.bias_ih, order, s)
        self.v_order = order
        self.v_back = None if order is None else torch.argsort(order)

    def fold_bias(self) -> bool:
        return False

    def momentum(self, xin: Tensor) -> None:
        if self.first:  # xin is already s (W_ih x + b_ih): the table is scaled by s
            torch.add(xin, self.v, alpha=self.mu, out=self.v)
        else:
            self.v.addmm_(xin, self.wih_s, beta=self.mu).add_(self.b_ih_s)

    def load_v(self, v: Tensor) -> None:
        self.v.copy_(v if self.v_order is None else v[:, self.v_order])

    def export_v(self) -> Tensor:
        return self.v.clone() if self.v_back is None else self.v[:, self.v_back]


class _MomentumRNNLayer(_Momentum, _RNNLayer):
    def __init__(self, cell: MomentumRNNCell, batch: int, first: bool) -> None:
        _RNNLayer.__init__(self, cell, batch, first)
        self.setup_momentum(None)

    def load(self, state: State) -> None:
        self.h.copy_(state[0])
        self.load_v(state[1])

    def export(self) -> State:
        return (self.h.clone(), self.export_v())

    def run(self, xin: Tensor) -> Tensor:
        self.momentum(xin)
        torch.add(self.v, self.b_hh, out=self.pre)
        self.pre.addmm_(self.h, self.whh)
        torch.tanh(self.pre, out=self.h)
        return self.h


class _MomentumLSTMLayer(_Momentum, _LSTMLayer):
    def __init__(self, cell: MomentumLSTMCell, batch: int, first: bool) -> None:
        _LSTMLayer.__init__(self, cell, batch, first)
        self.setup_momentum(self.order)

    def load(self, state: State) -> None:
        self.h.copy_(state[0])
        self.c.copy_(state[1])
        self.load_v(state[2])

    def export(self) -> State:
        return (self.h.clone(), self.c.clone(), self.export_v())

    def run(self, xin: Tensor) -> Tensor:
        self.momentum(xin)
        torch.add(self.v, self.b_hh, out=self.gates)
        self.gates.addmm_(self.h, self.whh)
        return self.update()


class _ReferenceLayer(_Layer):
    """The cell's own ``step`` (e.g. the phased LSTM's time gate): the fallback that keeps one API.

    The first layer still reads the folded table (``W_ih x + b_ih`` is linear in the embedding).
    """

    def __init__(self, cell: Cell, batch: int, first: bool) -> None:
        super().__init__(cell, batch, first)
        self.state: State = cell.init_state(batch)

    def fold_bias(self) -> bool:
        return False

    def load(self, state: State) -> None:
        self.state = tuple(s.clone() for s in state)

    def export(self) -> State:
        return tuple(s.clone() for s in self.state)

    def run(self, xin: Tensor) -> Tensor:
        xp = xin if self.first else self.cell.project(xin)
        h, self.state = self.cell.step(xp, self.state)
        return h


_LEAN_LAYERS: dict[type[Cell], type[_Layer]] = {
    RNNCell: _RNNLayer,
    LSTMCell: _LSTMLayer,
    MomentumRNNCell: _MomentumRNNLayer,
    MomentumLSTMCell: _MomentumLSTMLayer,
}


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
            self.layers = [
                _LEAN_LAYERS.get(type(cell), _ReferenceLayer)(cell, batch, i == 0)
                for i, cell in enumerate(core.layers)
            ]
            first = self.layers[0]
            cell0: Cell = core.layers[0]
            embed_dim = encoder.embed.embedding_dim
            w_ih = cell0.weight_ih.detach()
            order = first.row_order()
            bias = cell0.bias_ih + cell0.bias_hh if first.fold_bias() else cell0.bias_ih
            scale = float(cell0.s) if isinstance(first, _Momentum) else 1.0
            table = torch.addmm(bias.detach(), encoder.embed.weight.detach(), w_ih[:, :embed_dim].t())  # (V, G*H)
            self.table = _v(table.t(), order, scale).t().contiguous() if order is not None or scale != 1.0 else table
            self.cond_proj: Tensor | None = None
            if encoder.condition is not None:
                if condition is None or condition.shape != (batch,):
                    raise ValueError(f"this model is conditioned: pass condition ids shaped ({batch},)")
                cond = encoder.condition(condition)  # (N, C)
                proj = cond @ w_ih[:, embed_dim:].t()  # (N, G*H)
                self.cond_proj = _v(proj.t(), order, scale).t().contiguous()
            self.xin = torch.empty(batch, self.table.shape[1], dtype=table.dtype, device=table.device)
            self.head_w = _t(model.head.weight)
            self.head_b = _v(model.head.bias)
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

    def load(self, state: State) -> None:
        """Carry ``state`` (the core's layout, N rows: another stepper's rows regrouped, say) from here on."""
        with torch.inference_mode():
            self._load(state)
            self._primed = True

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


Stepper = LeanStepper | ReferenceStepper


def make_stepper(model: nn.Module, batch: int = 1, condition: Tensor | None = None, lean: bool = True) -> Stepper:
    """The lean stepper for a model in eval mode; the reference one in training mode or when ``lean`` is False."""
    if lean and not model.training:
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
