"""The hand-weighted LSTM exercise: weights chosen so the gates act as switches, run by ``chargen.cells.LSTMCell``.

One memory unit (``H = 1``) and three inputs per step, ``x_t = (bit, store, read)``:

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

