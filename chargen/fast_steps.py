"""The cells' fast steps for generation: one layer's update in place on buffers allocated once (each cell names its own).

A cell's ``step`` is the readable reference, differentiable and allocating; generation needs
neither autograd nor fresh tensors, and at one character per call its time is dispatch. A
:class:`FastStep` does the same arithmetic with as few kernels as possible:

- the bottom layer reads a row of a table (``fold``): the embedding and the input projection
  are linear, so ``E W_ih^T + b`` is computed once for every character, in the step's layout;
- ``W_hh h`` is one ``addmm`` into a preallocated buffer (plus one for ``W_ih x`` above the
  bottom layer), the rest a handful of in-place element-wise kernels;
- a step may reorder its gate rows (``order``) so that gates sharing a non-linearity are one
  contiguous slice (the LSTM's three sigmoids); the state it loads and exports keeps the
  cell's layout.

Subclasses write one update; :class:`MomentumStep` adds the velocity to any of them, and
:class:`ReferenceStep` runs the cell's own ``step`` for cells without a fast one (the phased
LSTM). ``chargen.inference.LeanStepper`` stacks them; tests hold each equal to its cell.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

if TYPE_CHECKING:  # the cells name their fast steps; this module only reads their parameters
    from chargen.cells import Cell, State


def _cols(weight: Tensor, order: Tensor | None = None, scale: float = 1.0) -> Tensor:
    """``weight (G*H, D)`` -> a contiguous ``(D, G*H)`` copy for ``addmm``, rows reordered and scaled."""
    w = weight.detach() if order is None else weight.detach()[order]
    return (w * scale if scale != 1.0 else w).t().contiguous()


def _rows(vector: Tensor, order: Tensor | None = None, scale: float = 1.0) -> Tensor:
    """A copy of ``vector (G*H,)``, reordered and scaled."""
    v = vector.detach() if order is None else vector.detach()[order]
    return (v * scale if scale != 1.0 else v).clone()


class FastStep:
    """One layer's step: ``run(x)`` -> ``h (N, H)`` (a buffer the next call overwrites).

    ``x`` is a row of the bottom layer's folded table ``(N, G*H)``, or the layer below's ``h``.
    Subclasses set ``folds_hh`` (``b_hh`` may join the input's bias: the update adds the two
    projections) and ``gate_order``, allocate their buffers in ``setup`` and write ``update``.
    """

    folds_hh: ClassVar[bool] = False

    def __init__(self, cell: Cell, batch: int, first: bool) -> None:
        self.cell = cell
        self.first = first
        self.hidden = hidden = cell.hidden_size
        like = cell.weight_hh.detach()
        self.order = self.gate_order(hidden, like.device)
        self.scale = self.input_scale()
        self.h = like.new_zeros(batch, hidden)
        self.whh = _cols(cell.weight_hh, self.order)
        # b_hh where the input's bias does not carry it: the update adds it
        self.b_hh: Tensor | None = None if self.folds_input_hh() else _rows(cell.bias_hh, self.order)
        self.xp = like.new_empty(batch, cell.gates * hidden)
        if not first:
            self.wih = _cols(cell.weight_ih, self.order, self.scale)
            self.bias = _rows(self.input_bias(), self.order, self.scale)
        # the state buffers in the cell's state_names order, each with the row order it is kept in
        self.buffers: list[tuple[Tensor, Tensor | None]] = [(self.h, None)]
        self.setup(batch)

    # -- what subclasses choose -------------------------------------------------------------
    def gate_order(self, hidden: int, device: torch.device) -> Tensor | None:
        """A permutation of the ``G*H`` gate rows, or None to keep the cell's."""
        return None

    def input_scale(self) -> float:
        return 1.0

    def folds_input_hh(self) -> bool:
        return self.folds_hh

    def input_bias(self) -> Tensor:
        """The bias the input stage adds to ``W_ih x`` (in the cell's row order, unscaled)."""
        cell = self.cell
        return cell.bias_ih + cell.bias_hh if self.folds_input_hh() else cell.bias_ih

    def setup(self, batch: int) -> None:
        """Allocate the update's buffers; append state buffers beyond ``h`` to ``self.buffers``."""

    def update(self, xp: Tensor) -> Tensor:
        """The cell's update from the input stage's ``xp (N, G*H)``, in place; returns ``h``."""
        raise NotImplementedError

    # -- the shared machinery ---------------------------------------------------------------
    def fold(self, x: Tensor, weight: Tensor, bias: bool = True) -> Tensor:
        """``x (R, D) @ weight^T (+ the input's bias)`` as ``(R, G*H)`` rows in this step's layout and scale.

        ``weight`` is the part of ``W_ih`` that ``x`` feeds: the bottom layer's table is
        ``fold(embedding, W_ih[:, :E])``, a condition's rows ``fold(cond, W_ih[:, E:], bias=False)``.
        """
        w = weight.detach().t()
        rows = torch.addmm(self.input_bias().detach(), x, w) if bias else x @ w
        if self.order is None and self.scale == 1.0:
            return rows.contiguous()
        return _rows(rows.t(), self.order, self.scale).t().contiguous()

    def project(self, x: Tensor) -> Tensor:
        """The input stage: the folded row itself, or ``W_ih x + bias`` into a buffer."""
        if self.first:
            return x
        return torch.addmm(self.bias, x, self.wih, out=self.xp)

    def run(self, x: Tensor) -> Tensor:
        return self.update(self.project(x))

    def load(self, state: State) -> None:
        """Take one layer's state, a tuple of ``(N, size)`` tensors in the cell's layout."""
        for (buffer, order), s in zip(self.buffers, state, strict=True):
            buffer.copy_(s if order is None else s[:, order])

    def export(self) -> State:
        """A copy of the state in the cell's layout."""
        return tuple(b.clone() if order is None else b[:, torch.argsort(order)] for b, order in self.buffers)


class RNNStep(FastStep):
    """``h = tanh(xp + W_hh h + b_hh)``: one ``addmm`` and one ``tanh`` (the bottom layer's row carries both biases)."""

    folds_hh = True

    def setup(self, batch: int) -> None:
        self.pre = torch.empty_like(self.h)

    def update(self, xp: Tensor) -> Tensor:
        torch.addmm(xp, self.h, self.whh, out=self.pre)
        if self.b_hh is not None:
            self.pre.add_(self.b_hh)
        return torch.tanh(self.pre, out=self.h)


class LSTMStep(FastStep):
    """The LSTM update on gates reordered ``i, f, o, g``: one sigmoid over three gates, one tanh, ``c`` in place."""

    folds_hh = True

    def gate_order(self, hidden: int, device: torch.device) -> Tensor | None:
        i, f, g, o = torch.arange(4 * hidden, device=device).chunk(4)
        return torch.cat([i, f, o, g])

    def setup(self, batch: int) -> None:
        hid = self.hidden
        self.c = torch.zeros_like(self.h)
        self.tanh_c = torch.empty_like(self.h)
        self.gates = self.h.new_empty(batch, 4 * hid)
        # views made once: slicing in the step would allocate a Python object per call
        self.sig, self.g = self.gates[:, : 3 * hid], self.gates[:, 3 * hid :]
        self.i, self.f, self.o = self.gates[:, :hid], self.gates[:, hid : 2 * hid], self.gates[:, 2 * hid : 3 * hid]
        self.buffers.append((self.c, None))

    def update(self, xp: Tensor) -> Tensor:
        gates = torch.addmm(xp, self.h, self.whh, out=self.gates)
        if self.b_hh is not None:
            gates.add_(self.b_hh)
        self.sig.sigmoid_()
        self.g.tanh_()
        self.c.mul_(self.f).addcmul_(self.i, self.g)
        torch.tanh(self.c, out=self.tanh_c)
        return torch.mul(self.o, self.tanh_c, out=self.h)


class GRUStep(FastStep):
    """The GRU update: ``W_hh h + b_hh`` in its own buffer (``b_hn`` is inside the reset gate's product), then
    one sigmoid over ``r, z``, one ``addcmul`` and ``tanh`` for ``n``, and ``h = lerp(n, h, z)`` in place."""

    def setup(self, batch: int) -> None:
        hid = self.hidden
        self.hp = self.h.new_empty(batch, 3 * hid)
        self.rz = self.h.new_empty(batch, 2 * hid)
        self.n = torch.empty_like(self.h)
        self.hp_rz, self.hp_n = self.hp[:, : 2 * hid], self.hp[:, 2 * hid :]
        self.r, self.z = self.rz[:, :hid], self.rz[:, hid:]
        self._views: tuple[Tensor, Tensor, Tensor] | None = None

    def split(self, xp: Tensor) -> tuple[Tensor, Tensor]:
        """``xp``'s ``r, z`` and ``n`` columns; cached, as ``xp`` is the same buffer at every step."""
        if self._views is None or self._views[0] is not xp:
            self._views = (xp, xp[:, : 2 * self.hidden], xp[:, 2 * self.hidden :])
        return self._views[1], self._views[2]

    def update(self, xp: Tensor) -> Tensor:
        xp_rz, xp_n = self.split(xp)
        torch.addmm(self.b_hh, self.h, self.whh, out=self.hp)
        torch.add(xp_rz, self.hp_rz, out=self.rz).sigmoid_()
        torch.addcmul(xp_n, self.r, self.hp_n, out=self.n).tanh_()
        return torch.lerp(self.n, self.h, self.z, out=self.h)


class MomentumStep(FastStep):
    """``v = mu v + s (W_ih x + b_ih)`` in place (``s`` folded into the weights and the table), then the base
    update from ``v`` with ``b_hh`` added: mix in before a base step, ``class M(MomentumStep, LSTMStep)``."""

    def input_scale(self) -> float:
        return float(self.cell.s)

    def folds_input_hh(self) -> bool:
        return False  # v filters b_ih only: b_hh joins after the momentum

    def setup(self, batch: int) -> None:
        super().setup(batch)
        self.mu = float(self.cell.mu)
        self.v = self.h.new_zeros(batch, self.cell.gates * self.hidden)
        self.buffers.append((self.v, self.order))

    def project(self, x: Tensor) -> Tensor:
        if self.first:  # x is already s (W_ih x + b_ih): the table is scaled by s
            return torch.add(x, self.v, alpha=self.mu, out=self.v)
        return self.v.addmm_(x, self.wih, beta=self.mu).add_(self.bias)


class MomentumRNNStep(MomentumStep, RNNStep):
    """MomentumRNN's step."""


class MomentumLSTMStep(MomentumStep, LSTMStep):
    """MomentumLSTM's step."""


class MomentumGRUStep(MomentumStep, GRUStep):
    """MomentumGRU's step."""


class ReferenceStep(FastStep):
    """The cell's own ``step`` (e.g. the phased LSTM's time gate): the fallback that keeps one API.

    The bottom layer still reads the folded table (``W_ih x + b_ih`` is linear in the embedding).
    """

    def setup(self, batch: int) -> None:
        self.state: State = self.cell.init_state(batch)

    def project(self, x: Tensor) -> Tensor:
        return x if self.first else self.cell.project(x)

    def update(self, xp: Tensor) -> Tensor:
        h, self.state = self.cell.step(xp, self.state)
        return h

    def load(self, state: State) -> None:
        self.state = tuple(s.clone() for s in state)

    def export(self) -> State:
        return tuple(s.clone() for s in self.state)
