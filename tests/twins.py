"""The tests' one map over the cell registry: each cell's torch twin (for parity) and the options its tests build it with.

Registering a cell in ``chargen.cells.CELLS`` puts it in every registry-driven test; a cell with a
torch twin adds one line to ``TORCH_TWINS`` and is then checked against it (forward and gradients).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from chargen.cells import CELLS

UNKNOWN_CELL = "no-such-cell"  # a name no registry holds

# cell -> (torch's cell, torch's multi-layer module) with the same weights, gate order and init
TORCH_TWINS: dict[str, tuple[type[nn.Module], type[nn.Module]]] = {
    "rnn": (nn.RNNCell, nn.RNN),
    "lstm": (nn.LSTMCell, nn.LSTM),
    "gru": (nn.GRUCell, nn.GRU),
}

# constructor options the tests use (non-trivial values, so a mix-up shows)
CELL_OPTIONS: dict[str, dict[str, Any]] = {
    "momentum-rnn": {"mu": 0.6, "s": 0.6},
    "momentum-lstm": {"mu": 0.8, "s": 0.4, "learn_momentum": True},
    "phased-lstm": {"period_range": (2.0, 8.0)},
    "momentum-gru": {"mu": 0.7, "s": 0.5},
}

FUSED_CELLS: dict[str, dict[str, Any]] = {
    name: CELL_OPTIONS.get(name, {}) for name, cls in CELLS.items() if cls.has_fused
}
