"""The hand-weighted LSTM exercises, run by ``chargen.cells.LSTMCell``: the course's own weights, and a store/read switch.

**The exercise** (one unit, three inputs, ``v_t = [h_{t-1}; x_t]``): ``W_f = [0 8 0 0], b_f = -4``;
``W_i = [0 0 9 0], b_i = -4.5``; ``W_o = [0 0 0 10], b_o = -5``; ``W_C = [1 0 0 0], b_C = 0``;
``h_0 = 0.05``, ``C_0 = -0.02``. So ``f = sigmoid(8 x_1 - 4)``, ``i = sigmoid(9 x_2 - 4.5)``,
``o = sigmoid(10 x_3 - 5)``, the candidate ``tanh(h_{t-1})``, ``C_t = f C_{t-1} + i tanh(h_{t-1})`` and
``h_t = o tanh(C_t)``: each input switches one gate (``x_1`` keeps the cell, ``x_2`` writes the old
output into it, ``x_3`` shows it). ``exercise_cell`` loads these weights into chargen's cell (gate
rows i, f, g, o; the single bias per gate in ``bias_ih``, ``bias_hh = 0``); ``exercise_table`` gives
f, i, o, C_t, h_t for the three inputs asked; ``exercise_answers`` demonstrates (b) ``x = [1 1 0]``
gives ``C_t ~ C_{t-1} + h_{t-1}`` and (c) ``x = [0.5 0.5 1]`` gives ``h_t ~ (C_{t-1} + h_{t-1}) / 2``
(tanh(z) ~ z for small z).

**The store/read switch** (``memory_cell``, ``trace_memory``), a second worked example with
``x_t = (bit, store, read)``:

- input gate ``i = sigmoid(k (2 store - 1))``: open exactly when ``store`` is on;
- forget gate ``f = sigmoid(k (1 - 2 store))``: keeps the cell unless a new bit is stored over it;
- candidate ``g = tanh(k (2 bit - 1))``: +1 for a 1, -1 for a 0;
- output gate ``o = sigmoid(k (2 read - 1))``: shows the cell only when ``read`` is on.

So ``c_t = f c_{t-1} + i g`` holds +-1 from a store step until the next one, whatever bits arrive in
between, and ``h_t = o tanh(c_t)`` is +-tanh(1) = +-0.76 on a read step and ~0 otherwise.

With the gain ``k = 10`` a closed gate lets through ``sigmoid(-10) = 4.5e-5`` and an open one
``1 - 4.5e-5``. Between stores ``f = 1 - i``, so ``c`` slides towards the current candidate by that
fraction per step: against a run of opposite bits ``c_t = -c_0 + 2 c_0 f^t`` (0.91 after 1,000 steps),
and the stored sign survives about ``ln 2 / 4.5e-5 = 15,000`` of them. A larger gain remembers longer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from chargen.cells import LSTMCell

DEFAULT_GAIN = 10.0
INPUTS = ("bit", "store", "read")

# (bit, store, read) per step: store a 1, ignore other bits, read it twice; store a 0 over it, read it.
DEMO: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),
    (1, 1, 0),
    (0, 0, 0),
    (1, 0, 0),
    (0, 0, 1),
    (0, 0, 0),
    (1, 0, 1),
    (0, 1, 0),
    (1, 0, 0),
    (1, 0, 0),
    (0, 0, 1),
)


def memory_cell(gain: float = DEFAULT_GAIN) -> Any:
    """A float64 ``chargen.cells.LSTMCell(3, 1)`` with the weights above (gate rows i, f, g, o; no recurrence)."""
    cell = LSTMCell(len(INPUTS), 1).double()
    k = gain
    #                                bit      store    read
    weight_ih = torch.tensor([[0.0, 2 * k, 0.0],  # i: open when storing
                              [0.0, -2 * k, 0.0],  # f: closed (forget) when storing
                              [2 * k, 0.0, 0.0],  # g: the bit as +-1
                              [0.0, 0.0, 2 * k]], dtype=torch.float64)  # o: open when reading
    bias_ih = torch.tensor([-k, k, -k, -k], dtype=torch.float64)
    with torch.no_grad():
        cell.weight_ih.copy_(weight_ih)
        cell.bias_ih.copy_(bias_ih)
        cell.weight_hh.zero_()  # the switches listen to the inputs only
        cell.bias_hh.zero_()
    return cell


def trace_memory(
    steps: Sequence[tuple[int, int, int]] = DEMO, gain: float = DEFAULT_GAIN
) -> list[dict[str, Any]]:
    """Run ``memory_cell(gain)`` over ``steps`` of ``(bit, store, read)`` from a zero state.

    One dict per step, for a table: ``t`` (from 1), the inputs ``bit``, ``store``, ``read``, the gates
    ``i``, ``f``, ``g``, ``o``, the state ``c``, ``h`` (floats) and ``output``: on a read step the bit
    the unit shows (1 if ``h > 0`` else 0), otherwise None. The states come from the cell's own
    ``forward``; the gates are its pre-activations through the same nonlinearities.
    """
    cell = memory_cell(gain)
    state = cell.init_state(1, dtype=torch.float64)
    rows = []
    with torch.no_grad():
        for t, (bit, store, read) in enumerate(steps, start=1):
            if {bit, store, read} - {0, 1}:
                raise ValueError(f"step {t}: bit, store and read must each be 0 or 1, got {(bit, store, read)}")
            x = torch.tensor([[bit, store, read]], dtype=torch.float64)  # (1, 3)
            preact = cell.project(x) + F.linear(state[0], cell.weight_hh, cell.bias_hh)  # (1, 4): i, f, g, o
            i, f, g, o = preact.chunk(4, dim=1)
            h, state = cell(x, state)
            rows.append({
                "t": t, "bit": bit, "store": store, "read": read,
                "i": float(torch.sigmoid(i)), "f": float(torch.sigmoid(f)), "g": float(torch.tanh(g)),
                "o": float(torch.sigmoid(o)), "c": float(state[1]), "h": float(h),
                "output": (1 if float(h) > 0 else 0) if read else None,
            })
    return rows



# -- the course exercise ---------------------------------------------------------------------------
EXERCISE_H0, EXERCISE_C0 = 0.05, -0.02
# one row per gate over v_t = [h_{t-1}; x_1; x_2; x_3], and its single bias
EXERCISE_WEIGHTS: dict[str, tuple[tuple[float, float, float, float], float]] = {
    "f": ((0.0, 8.0, 0.0, 0.0), -4.0),
    "i": ((0.0, 0.0, 9.0, 0.0), -4.5),
    "o": ((0.0, 0.0, 0.0, 10.0), -5.0),
    "C": ((1.0, 0.0, 0.0, 0.0), 0.0),
}
EXERCISE_INPUTS: tuple[tuple[float, float, float], ...] = ((1, 0, 0), (0, 1, 0), (1, 0, 1))
ANSWER_B: tuple[float, float, float] = (1, 1, 0)  # keep the cell and write h_{t-1} into it
ANSWER_C: tuple[float, float, float] = (0.5, 0.5, 1)  # half keep, half write, show it all


def exercise_cell() -> Any:
    """A float64 ``LSTMCell(3, 1)`` holding the exercise's weights (gate rows i, f, g, o).

    ``v_t = [h_{t-1}; x_t]``, so a gate's first weight goes to ``weight_hh`` and the other three to
    ``weight_ih``; the exercise has one bias per gate, put in ``bias_ih`` with ``bias_hh = 0``.
    """
    import torch

    from chargen.cells import LSTMCell

    cell = LSTMCell(3, 1).double()
    rows = [EXERCISE_WEIGHTS[g] for g in ("i", "f", "C", "o")]  # torch's gate order; the candidate is g
    with torch.no_grad():
        cell.weight_hh.copy_(torch.tensor([[w[0]] for w, _ in rows], dtype=torch.float64))
        cell.weight_ih.copy_(torch.tensor([list(w[1:]) for w, _ in rows], dtype=torch.float64))
        cell.bias_ih.copy_(torch.tensor([b for _, b in rows], dtype=torch.float64))
        cell.bias_hh.zero_()
    return cell


def exercise_step(
    x: Sequence[float], h_prev: float = EXERCISE_H0, c_prev: float = EXERCISE_C0
) -> dict[str, float]:
    """One step of ``exercise_cell`` from ``(h_prev, c_prev)``: the gates f, i, o, the candidate g, C_t and h_t."""
    import torch
    import torch.nn.functional as F

    if len(x) != 3:
        raise ValueError(f"x must have 3 entries, got {len(x)}")
    cell = exercise_cell()
    xt = torch.tensor([list(x)], dtype=torch.float64)  # (1, 3)
    state = (torch.tensor([[h_prev]], dtype=torch.float64), torch.tensor([[c_prev]], dtype=torch.float64))
    with torch.no_grad():
        preact = cell.project(xt) + F.linear(state[0], cell.weight_hh, cell.bias_hh)  # (1, 4): i, f, g, o
        i, f, g, o = preact.chunk(4, dim=1)
        h, (_, c) = cell(xt, state)
    return {
        "x": [float(v) for v in x], "h_prev": h_prev, "C_prev": c_prev,
        "f": float(torch.sigmoid(f)), "i": float(torch.sigmoid(i)), "o": float(torch.sigmoid(o)),
        "g": float(torch.tanh(g)), "C": float(c), "h": float(h),
    }


def exercise_table(inputs: Sequence[Sequence[float]] = EXERCISE_INPUTS) -> list[dict[str, float]]:
    """(a): one ``exercise_step`` from ``h_0 = 0.05, C_0 = -0.02`` per input."""
    return [exercise_step(x) for x in inputs]


def exercise_answers(
    starts: Sequence[tuple[float, float]] = ((EXERCISE_H0, EXERCISE_C0), (0.1, 0.08), (-0.06, 0.03)),
) -> dict[str, Any]:
    """(b) and (c), demonstrated from the exercise's start and two other small states.

    For each ``(h_prev, c_prev)``: the step's ``C_t`` against ``C_{t-1} + h_{t-1}`` under ``ANSWER_B``,
    and ``h_t`` against ``(C_{t-1} + h_{t-1}) / 2`` under ``ANSWER_C``, with the absolute errors.
    """
    b_rows, c_rows = [], []
    for h_prev, c_prev in starts:
        sb = exercise_step(ANSWER_B, h_prev, c_prev)
        b_rows.append({**sb, "target": c_prev + h_prev, "error": abs(sb["C"] - (c_prev + h_prev))})
        sc = exercise_step(ANSWER_C, h_prev, c_prev)
        c_rows.append({**sc, "target": (c_prev + h_prev) / 2, "error": abs(sc["h"] - (c_prev + h_prev) / 2)})
    return {"b": {"x": list(ANSWER_B), "rows": b_rows}, "c": {"x": list(ANSWER_C), "rows": c_rows}}


def lstm_parameter_count(input_size: int, hidden_size: int, biases_per_gate: int = 1) -> int:
    """Parameters of one LSTM layer: ``4n(d + n + b)`` for ``d`` inputs, ``n`` units, ``b`` biases per gate.

    With the textbook's single bias per gate that is ``4n(d + n + 1)``; PyTorch (and chargen's cells)
    keep two, ``bias_ih`` and ``bias_hh``, whose sum is all that matters, hence ``4n(d + n + 2)``. The
    batch size never enters: every sequence of a batch shares the same weights.
    """
    return 4 * hidden_size * (input_size + hidden_size + biases_per_gate)
