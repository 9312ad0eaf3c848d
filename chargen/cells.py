"""Recurrent cells written from their equations: one step protocol, PyTorch's parameter layout, a registry.

Every cell owns ``weight_ih (G*H, D)``, ``weight_hh (G*H, H)``, ``bias_ih (G*H,)`` and
``bias_hh (G*H,)`` exactly as ``nn.RNNCell``/``nn.LSTMCell``/``nn.GRUCell`` do (G = 1 for the RNN,
4 for the LSTM, gate order i, f, g, o; 3 for the GRU, gate order r, z, n), so weights can be
copied across and compared with torch.

The protocol, used by the stacked core (``chargen.core``):

- ``project(x)``: the input projection ``W_ih x + b_ih`` for any number of leading dims, so the
  core can hoist it out of the time loop as one matmul;
- ``step(xp_t, state) -> (h_t, state)``: one time step from the projected input;
- ``step_readout(xp_t, state) -> (h_t, state, readouts)``: the same step, also returning what
  ``inspect`` shows (the cell state, the gates: ``readouts`` names them); ``step`` drops them, so
  the equations are written once;
- ``loop(x, state)``: the reference time loop over ``step``;
- ``fused(x, state)``: the same computation on torch's fused kernels, where one exists;
- ``cell(x_t, state)``: one step from the raw input, like ``nn.LSTMCell``;
- ``fast_step(batch, first)``: the step for generation, in place on buffers allocated once
  (``chargen.fast_steps``; ``fast`` names the class, the reference step unless a cell declares one).

State is always a tuple of ``(N, size)`` tensors — ``(h,)``, ``(h, c)``, ``(h, v)``,
``(h, c, v)``, ``(h, c, t)`` — passed in and returned, never kept on the module. ``None`` means
zeros.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from chargen.errors import UsageError
from chargen.fast_steps import (
    FastStep,
    GRUStep,
    LSTMStep,
    MomentumGRUStep,
    MomentumLSTMStep,
    MomentumRNNStep,
    ReferenceStep,
    RNNStep,
)

State = tuple[Tensor, ...]


class Cell(nn.Module):
    """Base class: parameters, init, validation and the time loop shared by every cell."""

    gates: ClassVar[int] = 1
    state_names: ClassVar[tuple[str, ...]] = ("h",)
    has_fused: ClassVar[bool] = True
    readouts: ClassVar[tuple[str, ...]] = ()  # what step_readout reports beside h, each (N, H)
    sigmoid_gates: ClassVar[tuple[str, ...]] = ()  # the readouts that are sigmoid gates, in (0, 1)
    forget_gate: ClassVar[int | None] = None  # the gate block a forget bias initialises (chargen.inits)
    fast: ClassVar[type[FastStep]] = ReferenceStep

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # a fast step is written for one update: one inherited from the parent would run the parent's
        # equations (the phased LSTM is an LSTM plus a time gate), so an undeclared one is the reference
        if "fast" not in cls.__dict__:
            cls.fast = ReferenceStep

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(
                f"{type(self).__name__}: input_size and hidden_size must be positive, "
                f"got {input_size} and {hidden_size}"
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        width = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(width, input_size))
        self.weight_hh = nn.Parameter(torch.empty(width, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(width))
        self.bias_hh = nn.Parameter(torch.empty(width))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's init: every weight and bias from U(-1/sqrt(H), 1/sqrt(H)); sub-modules init themselves."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self._weights():
            nn.init.uniform_(p, -bound, bound)
        for child in self.children():  # e.g. the phased LSTM's time gate, once it is built
            child.reset_parameters()

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"

    # -- state -------------------------------------------------------------------------
    def state_sizes(self) -> tuple[int, ...]:
        """The width of each state tensor, in ``state_names`` order."""
        return (self.hidden_size,) * len(self.state_names)

    def init_state(
        self, batch: int, *, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> State:
        """Zeros for every state tensor, each ``(batch, size)``."""
        ref = self.weight_hh
        return tuple(
            torch.zeros(batch, size, device=device or ref.device, dtype=dtype or ref.dtype)
            for size in self.state_sizes()
        )

    def check_state(self, state: State, batch: int) -> None:
        """Raise a ValueError that says what was expected when ``state`` does not fit."""
        expected = [(batch, size) for size in self.state_sizes()]
        got = [tuple(s.shape) for s in state]
        if len(state) != len(expected) or got != expected:
            names = ", ".join(self.state_names)
            raise ValueError(
                f"{type(self).__name__}: expected state ({names}) shaped {expected}, got {got}"
            )

    # -- computation -------------------------------------------------------------------
    def project(self, x: Tensor) -> Tensor:
        """``W_ih x + b_ih`` over any leading dims: ``(..., D) -> (..., G*H)``."""
        return F.linear(x, self.weight_ih, self.bias_ih)

    def step(self, xp: Tensor, state: State) -> tuple[Tensor, State]:
        """One time step from the projected input ``xp (N, G*H)``."""
        h, state, _ = self.step_readout(xp, state)
        return h, state

    def step_readout(self, xp: Tensor, state: State) -> tuple[Tensor, State, dict[str, Tensor]]:
        """``step``, plus the quantities named in ``readouts`` (``(N, H)`` each) that ``inspect`` records."""
        raise NotImplementedError

    def fast_step(self, batch: int, first: bool) -> FastStep:
        """This cell's step for generation on ``batch`` streams, on buffers allocated once (eval, no autograd).

        ``first``: the bottom layer, which reads a row of the table ``fold`` makes instead of ``W_ih x``.
        """
        return self.fast(self, batch, first)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One step from the raw input ``x (N, D)``: returns ``(h (N, H), new_state)``."""
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__}: expected input (N, {self.input_size}), got {tuple(x.shape)}"
            )
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        else:
            self.check_state(state, x.shape[0])
        return self.step(self.project(x), state)

    def loop(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """Reference engine: ``x (T, N, D) -> (outputs (T, N, H), state)``, one step at a time."""
        xp = self.project(x)  # (T, N, G*H): hoisted, one matmul for all steps
        outputs = []
        # unbind, not xp[t]: each indexed step would backpropagate a zero-filled (T, N, G*H) gradient
        for xp_t in xp.unbind(0):
            h, state = self.step(xp_t, state)
            outputs.append(h)
        return torch.stack(outputs), state

    def fused(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """Fused engine: the same map as ``loop`` on torch's kernels (oneDNN / cuDNN)."""
        if not self.has_fused:
            raise NotImplementedError(f"{type(self).__name__} has no fused kernel; use engine='loop'")
        return self._kernel(x, state, self._weights())

    def _kernel(self, x: Tensor, state: State, weights: list[Tensor]) -> tuple[Tensor, State]:
        """Torch's multi-step kernel for this cell's update on ``x (T, N, D')`` with
        ``weights = [w_ih (G*H, D'), w_hh, b_ih, b_hh]``: returns ``(outputs (T, N, H), state)``."""
        raise NotImplementedError(f"{type(self).__name__} has no fused kernel; use engine='loop'")

    def _weights(self) -> list[Tensor]:
        return [self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh]


class RNNCell(Cell):
    """Elman RNN: ``h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``."""

    gates = 1
    state_names = ("h",)
    fast = RNNStep

    def step_readout(self, xp: Tensor, state: State) -> tuple[Tensor, State, dict[str, Tensor]]:
        (h,) = state
        h = torch.tanh(xp + F.linear(h, self.weight_hh, self.bias_hh))
        return h, (h,), {}

    def _kernel(self, x: Tensor, state: State, weights: list[Tensor]) -> tuple[Tensor, State]:
        out, h = torch.rnn_tanh(
            x, state[0].unsqueeze(0), weights, True, 1, 0.0, self.training, False, False
        )
        return out, (h.squeeze(0),)


class LSTMCell(Cell):
    """LSTM: gates i, f, g, o from ``W_ih x + b_ih + W_hh h + b_hh``; ``c = f*c + i*g``, ``h = o*tanh(c)``."""

    gates = 4
    state_names = ("h", "c")
    readouts = ("c", "i", "f", "g", "o")  # g is a tanh candidate, not a gate: it cannot saturate towards 0/1
    sigmoid_gates = ("i", "f", "o")
    forget_gate = 1
    fast = LSTMStep

    def step_readout(self, xp: Tensor, state: State) -> tuple[Tensor, State, dict[str, Tensor]]:
        h, c = state
        i, f, g, o = (xp + F.linear(h, self.weight_hh, self.bias_hh)).chunk(4, dim=1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c + i * g
        h = o * torch.tanh(c)
        return h, (h, c), {"c": c, "i": i, "f": f, "g": g, "o": o}

    def _kernel(self, x: Tensor, state: State, weights: list[Tensor]) -> tuple[Tensor, State]:
        h0, c0 = (s.unsqueeze(0) for s in state)
        out, h, c = torch.lstm(x, (h0, c0), weights, True, 1, 0.0, self.training, False, False)
        return out, (h.squeeze(0), c.squeeze(0))


class GRUCell(Cell):
    """GRU with PyTorch's gate order r, z, n: ``r, z = sigmoid(W_i{r,z} x + b_i{r,z} + W_h{r,z} h + b_h{r,z})``,
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h = (1 - z) * n + z * h``.

    ``b_hn`` sits inside the reset gate's product, so the recurrent projection ``W_hh h + b_hh`` is
    kept apart from the (hoisted) input projection instead of summed with it as in the RNN and LSTM.
    """

    gates = 3
    state_names = ("h",)
    readouts = ("r", "z", "n")  # n is a tanh candidate; z is the share of the old h kept
    sigmoid_gates = ("r", "z")
    fast = GRUStep

    def step_readout(self, xp: Tensor, state: State) -> tuple[Tensor, State, dict[str, Tensor]]:
        (h,) = state
        x_r, x_z, x_n = xp.chunk(3, dim=1)
        h_r, h_z, h_n = F.linear(h, self.weight_hh, self.bias_hh).chunk(3, dim=1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        h = torch.lerp(n, h, z)  # (1 - z) n + z h
        return h, (h,), {"r": r, "z": z, "n": n}

    def _kernel(self, x: Tensor, state: State, weights: list[Tensor]) -> tuple[Tensor, State]:
        out, h = torch.gru(x, state[0].unsqueeze(0), weights, True, 1, 0.0, self.training, False, False)
        return out, (h.squeeze(0),)


class MomentumCell(Cell):
    """Momentum on the input projection (Nguyen et al., NeurIPS 2020), for any base cell.

    ``v_t = mu * v_{t-1} + s * (W_ih x_t + b_ih)`` takes the place of ``W_ih x_t + b_ih`` in the
    base cell's update; the velocity ``v (N, G*H)`` is the last state tensor, so it is carried
    across chunks like ``h``. Mix in before the base cell: ``class M(MomentumCell, LSTMCell)``.

    ``mu`` (momentum) and ``s`` (step size) are scalars stored under the same names whether fixed
    (buffers) or learned (``learn_momentum=True``: parameters), so a checkpoint loads into either
    kind and ``parameters()`` lists only what trains. Learned values are not clamped.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        mu: float = 0.6,
        s: float = 0.6,
        learn_momentum: bool = False,
    ) -> None:
        name = type(self).__name__
        if not 0.0 <= mu < 1.0:
            raise ValueError(f"{name}: mu (momentum) must be in [0, 1), got {mu}")
        if not (s > 0.0 and math.isfinite(s)):
            raise ValueError(f"{name}: s (step size) must be a positive number, got {s}")
        super().__init__(input_size, hidden_size)
        self.learn_momentum = learn_momentum
        for key, value in (("mu", mu), ("s", s)):
            scalar = torch.tensor(float(value), dtype=self.weight_ih.dtype)
            if learn_momentum:
                self.register_parameter(key, nn.Parameter(scalar))
            else:
                self.register_buffer(key, scalar)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, mu={self.mu.item():.4g}, s={self.s.item():.4g}, "
            f"learn_momentum={self.learn_momentum}"
        )

    def state_sizes(self) -> tuple[int, ...]:
        """The base cell's ``H`` per state, then ``G*H`` for the velocity."""
        return (self.hidden_size,) * (len(self.state_names) - 1) + (self.gates * self.hidden_size,)

    def step_readout(self, xp: Tensor, state: State) -> tuple[Tensor, State, dict[str, Tensor]]:
        *inner, v = state
        v = self.mu * v + self.s * xp  # (N, G*H)
        h, inner_state, readouts = super().step_readout(v, tuple(inner))
        return h, (*inner_state, v), readouts

    def fused(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """The base cell's kernel fed the momentum-filtered input.

        Unrolled from the carried ``v_0``, ``v_t = mu^t v_0 + W (s x~_t) + b (s a_t)`` with
        ``x~_t = mu x~_{t-1} + x_t`` and ``a_t = mu a_{t-1} + 1`` started at zero: the kernel's
        input is ``[s x~_t, s a_t, carry_t]`` and its input weight ``[W_ih, b_ih, C]``, where
        ``C carry_t = mu^t v_0`` (see ``_carry``). The last kernel input row gives ``v_T``.
        """
        *inner, v0 = state
        steps, batch = x.shape[:2]
        lag = torch.arange(steps, device=x.device, dtype=x.dtype)
        lag = lag[:, None] - lag[None, :]  # (T, T): t - k
        # clamped: mu to a negative power above the diagonal would be inf at mu = 0, and NaN in backward
        decay = torch.tril(self.mu ** lag.clamp(min=0))  # (T, T): mu^(t-k) for k <= t, else 0
        scaled = self.s * decay
        x_f = (scaled @ x.flatten(1)).view_as(x)  # (T, N, D): s x~_t
        a_f = scaled.sum(1).view(steps, 1, 1).expand(steps, batch, 1)  # (T, N, 1): s a_t
        channels, columns = [x_f, a_f], [self.weight_ih, self.bias_ih.unsqueeze(1)]
        # a sequence's first chunk starts from v_0 = 0: skipping the carry spares the kernel r inputs
        if v0.requires_grad or bool(v0.any()):
            carry, weight = self._carry(v0, self.mu * decay[:, 0])  # mu^t for t = 1..T
            channels.append(carry)
            columns.append(weight)
        inputs = torch.cat(channels, dim=2)  # (T, N, D + 1 [+ r])
        w_ih = torch.cat(columns, dim=1)  # (G*H, D + 1 [+ r])
        # the bias b_ih rides in the input channel a_t, so the kernel's input bias is zero
        weights = [w_ih, self.weight_hh, torch.zeros_like(self.bias_ih), self.bias_hh]
        out, inner_state = self._kernel(inputs, tuple(inner), weights)
        v = F.linear(inputs[-1], w_ih)  # (N, G*H): v_T
        return out, (*inner_state, v)

    @staticmethod
    def _carry(v0: Tensor, powers: Tensor) -> tuple[Tensor, Tensor]:
        """Input channels ``(T, N, r)`` and weight columns ``(G*H, r)`` that add ``powers[t] * v0``.

        Whichever is narrower: one channel per sequence (``r = N``) weighted by that sequence's
        velocity, or the velocity itself as ``G*H`` channels weighted by the identity.
        """
        batch, width = v0.shape
        if batch <= width:
            eye = torch.eye(batch, device=v0.device, dtype=v0.dtype)
            return powers.view(-1, 1, 1) * eye, v0.T
        eye = torch.eye(width, device=v0.device, dtype=v0.dtype)
        return powers.view(-1, 1, 1) * v0, eye


class MomentumRNNCell(MomentumCell, RNNCell):
    """MomentumRNN: ``v_t = mu v_{t-1} + s (W_ih x_t + b_ih)``, ``h_t = tanh(W_hh h_{t-1} + b_hh + v_t)``."""

    state_names = ("h", "v")
    fast = MomentumRNNStep


class MomentumLSTMCell(MomentumCell, LSTMCell):
    """MomentumLSTM: the momentum on the 4H-wide input projection of all gates, then the LSTM update."""

    state_names = ("h", "c", "v")
    fast = MomentumLSTMStep


class MomentumGRUCell(MomentumCell, GRUCell):
    """MomentumGRU: ``v_t = mu v_{t-1} + s (W_ih x_t + b_ih)`` in place of ``W_ih x_t + b_ih``, then the GRU update.

    The velocity covers all three gates' input projections (3H wide); ``b_hn`` stays inside the
    reset gate's product, outside the momentum, as ``b_hh`` does for the other momentum cells.
    """

    state_names = ("h", "v")
    fast = MomentumGRUStep


class TimeGate(nn.Module):
    """The phased LSTM's time gate (Neil et al., NIPS 2016): each unit opens for a fraction ``r_on`` of its period.

    ``phi = ((t - shift) mod period) / period``; ``k = 2 phi / r_on`` while ``phi < r_on/2``,
    ``2 - 2 phi / r_on`` while ``phi < r_on``, and ``leak * phi`` for the rest of the period
    (the leak only in training mode, zero in eval mode, as in the paper's code).
    """

    def __init__(
        self,
        hidden_size: int,
        r_on: float = 0.05,
        leak: float = 1e-3,
        period_range: tuple[float, float] = (math.e, math.e**6),
    ) -> None:
        super().__init__()
        if not 0.0 < r_on <= 1.0:
            raise ValueError(f"TimeGate: r_on (open fraction of a period) must be in (0, 1], got {r_on}")
        if not 0.0 <= leak < 1.0:
            raise ValueError(f"TimeGate: leak must be in [0, 1), got {leak}")
        low, high = period_range
        if not 0.0 < low <= high:
            raise ValueError(f"TimeGate: period_range must be (low, high) with 0 < low <= high, got {period_range}")
        self.r_on = r_on
        self.leak = leak
        self.period_range = (low, high)
        self.period = nn.Parameter(torch.empty(hidden_size))  # tau
        self.shift = nn.Parameter(torch.empty(hidden_size))  # s
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Periods log-uniform over ``period_range`` (the paper's README), shifts uniform over each period."""
        low, high = (math.log(p) for p in self.period_range)
        with torch.no_grad():
            self.period.uniform_(low, high).exp_()
            self.shift.uniform_(0.0, 1.0).mul_(self.period)

    def extra_repr(self) -> str:
        return f"{self.period.numel()}, r_on={self.r_on}, leak={self.leak}"

    def forward(self, t: Tensor) -> Tensor:
        """Openness ``k (N, H)`` at times ``t (N, 1)``."""
        period = self.period.abs()  # as in the reference code: a period learned through zero keeps its size
        phase = torch.remainder(t - self.shift, period) / period  # (N, H), in [0, 1)
        rising = 2.0 * phase / self.r_on
        leak = self.leak if self.training else 0.0
        return torch.where(
            phase < self.r_on / 2, rising, torch.where(phase < self.r_on, 2.0 - rising, leak * phase)
        )


class PhasedLSTMCell(LSTMCell):
    """Phased LSTM: the LSTM update ``h~, c~`` let through by the time gate ``k_t``.

    ``c_t = k c~_t + (1 - k) c_{t-1}`` and ``h_t = k h~_t + (1 - k) h_{t-1}``. The time ``t`` is
    the state's third tensor ``(N, 1)``: a float step counter from 0, carried across chunks so a
    chunked run equals the whole one (exact up to 2^24 steps in float32). Loop engine only.
    """

    state_names = ("h", "c", "t")
    has_fused = False
    readouts = (*LSTMCell.readouts, "k")  # k: the time gate's openness; i, f, g, o of the candidate update

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        r_on: float = 0.05,
        leak: float = 1e-3,
        period_range: tuple[float, float] = (math.e, math.e**6),
    ) -> None:
        super().__init__(input_size, hidden_size)
        self.gate = TimeGate(hidden_size, r_on, leak, period_range)

    def state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size, self.hidden_size, 1)

    def step_readout(self, xp: Tensor, state: State) -> tuple[Tensor, State, dict[str, Tensor]]:
        h, c, t = state
        h_new, (_, c_new), readouts = super().step_readout(xp, (h, c))  # the ordinary LSTM update: h~, c~
        k = self.gate(t)  # (N, H)
        c = torch.lerp(c, c_new, k)
        h = torch.lerp(h, h_new, k)
        return h, (h, c, t + 1.0), {**readouts, "c": c, "k": k}


CELLS: dict[str, type[Cell]] = {
    "rnn": RNNCell,
    "lstm": LSTMCell,
    "momentum-rnn": MomentumRNNCell,
    "momentum-lstm": MomentumLSTMCell,
    "phased-lstm": PhasedLSTMCell,
    "gru": GRUCell,
    "momentum-gru": MomentumGRUCell,
}


def default_engine(cell: str) -> str:
    """The engine a cell runs on unless told otherwise: torch's fused kernel where it has one, else the loop."""
    kind = CELLS.get(cell)
    return "loop" if kind is not None and not kind.has_fused else "fused"


def resolve_cells(cells: Sequence[str] | str) -> list[str]:
    """Registered cell names from a list or a comma-separated string, in order, without repeats.

    An empty list or an unknown name is a UsageError (these lists are what a user typed).
    """
    if isinstance(cells, str):
        cells = cells.split(",")
    names = list(dict.fromkeys(c.strip() for c in cells if c.strip()))
    if not names:
        raise UsageError("cells: give at least one cell, e.g. rnn,lstm", params="cells")
    unknown = [c for c in names if c not in CELLS]
    if unknown:
        raise UsageError(f"cells: unknown cell {unknown[0]!r}; known cells: {', '.join(CELLS)}", params="cells")
    return names


def get_cell(name: str) -> type[Cell]:
    """The cell class registered as ``name``; a ValueError lists the known names otherwise."""
    try:
        return CELLS[name]
    except KeyError:
        known = ", ".join(sorted(CELLS))
        raise ValueError(f"unknown cell {name!r}; known cells: {known}") from None
