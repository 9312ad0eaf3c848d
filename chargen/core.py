"""The recurrent core: a stack of layers of one registered cell kind, run by the loop, torch-cell or fused engine."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from chargen.cells import CELLS, Cell, GRUCell, LSTMCell, RNNCell, State, get_cell

ENGINES = ("fused", "loop", "torch-cell")

# only the plain cells have an nn.*Cell twin (the same parameters, gate order and state); the
# subclasses (momentum, phased) change the update, so the exact class is looked up, not a base
_TORCH_CELLS: dict[type[Cell], type[nn.Module]] = {RNNCell: nn.RNNCell, LSTMCell: nn.LSTMCell, GRUCell: nn.GRUCell}


class _TorchCellLoop(nn.Module):
    """The tutorials' "RNNCell rewrite": a Python loop over ``nn.RNNCell``/``nn.LSTMCell``/``nn.GRUCell``, one call per step."""

    def __init__(self, kind: type[Cell], input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.cell = _TORCH_CELLS[kind](input_size, hidden_size)

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        outputs = []
        if len(state) == 1:  # nn.RNNCell, nn.GRUCell: h in, h out
            (h,) = state
            for x_t in x.unbind(0):
                h = self.cell(x_t, h)
                outputs.append(h)
            return torch.stack(outputs), (h,)
        for x_t in x.unbind(0):
            state = self.cell(x_t, state)  # nn.LSTMCell: (h, c) in, (h, c) out
            outputs.append(state[0])
        return torch.stack(outputs), tuple(state)


def has_torch_cell(kind: type[Cell]) -> bool:
    """Whether the torch-cell engine can run cells of ``kind`` (an ``nn.*Cell`` twin exists)."""
    return kind in _TORCH_CELLS


def torch_cell_names() -> list[str]:
    """The registered cells the torch-cell engine runs."""
    return [name for name, kind in CELLS.items() if has_torch_cell(kind)]


def _torch_cell_run(layer: Cell, runners: dict[int, nn.Module], x: Tensor, state: State) -> tuple[Tensor, State]:
    """Run ``layer`` through torch's own cell module, reading the layer's parameters (so gradients reach them)."""
    runner = runners.get(id(layer))
    if runner is None:
        runner = runners[id(layer)] = _TorchCellLoop(type(layer), layer.input_size, layer.hidden_size)
    params = {f"cell.{name}": p for name, p in layer.named_parameters()}
    return functional_call(runner, params, (x, state))


class Recurrent(nn.Module):
    """``num_layers`` cells of one kind, time-major like ``nn.LSTM``.

    ``forward(inputs (T, N, D), state) -> (outputs (T, N, H), state)``. The state is a tuple
    with one tensor per state name of the cell, each ``(num_layers, N, size)`` — the same
    layout as ``nn.LSTM``'s ``(h, c)`` — so it can be carried from one call to the next.

    Every engine reads the same parameters, so ``engine`` may be switched on a trained model:
    ``loop`` steps the from-scratch cell (the readable reference); ``torch-cell`` loops torch's
    ``nn.RNNCell``/``nn.LSTMCell``/``nn.GRUCell`` (the tutorials' rewrite; rnn, lstm and gru
    only); ``fused`` runs the layer on torch's kernels.
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 2,
        dropout: float = 0.0,
        engine: str = "fused",
        **cell_options: Any,
    ) -> None:
        super().__init__()
        cell_cls = get_cell(cell)
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.cell = cell
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = dropout
        self.layers = nn.ModuleList(
            cell_cls(input_size if i == 0 else hidden_size, hidden_size, **cell_options)
            for i in range(num_layers)
        )
        self._torch_cells: dict[int, nn.Module] = {}  # built on first use; not submodules, so no extra parameters
        self.engine = engine

    @property
    def engine(self) -> str:
        return self._engine

    @engine.setter
    def engine(self, engine: str) -> None:
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
        if engine == "fused" and not self.layers[0].has_fused:
            raise ValueError(f"cell {self.cell!r} has no fused kernel; use engine='loop'")
        if engine == "torch-cell" and not has_torch_cell(type(self.layers[0])):
            raise ValueError(f"engine 'torch-cell' runs the {', '.join(torch_cell_names())} cells only, "
                             f"not {self.cell!r}")
        self._engine = engine

    @property
    def state_names(self) -> tuple[str, ...]:
        return self.layers[0].state_names

    def extra_repr(self) -> str:
        return f"cell={self.cell!r}, engine={self.engine!r}, dropout={self.dropout}"

    def init_state(
        self, batch: int, *, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> State:
        """Zeros: one ``(num_layers, batch, size)`` tensor per state name."""
        per_layer = [layer.init_state(batch, device=device, dtype=dtype) for layer in self.layers]
        return tuple(torch.stack(parts) for parts in zip(*per_layer))

    def forward(self, inputs: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if inputs.dim() != 3 or inputs.shape[2] != self.input_size:
            raise ValueError(
                f"Recurrent: expected inputs (T, N, {self.input_size}), got {tuple(inputs.shape)}"
            )
        batch = inputs.shape[1]
        if state is None:
            state = self.init_state(batch, device=inputs.device, dtype=inputs.dtype)
        else:
            self._check_state(state, batch)
        x = inputs
        new_state: list[State] = []
        for i, layer in enumerate(self.layers):
            if i > 0 and self.dropout > 0.0:
                x = F.dropout(x, self.dropout, self.training)
            layer_state_in = tuple(s[i] for s in state)
            if self.engine == "torch-cell":
                x, layer_state = _torch_cell_run(layer, self._torch_cells, x, layer_state_in)
            else:
                run = layer.fused if self.engine == "fused" else layer.loop
                x, layer_state = run(x, layer_state_in)
            new_state.append(layer_state)
        return x, tuple(torch.stack(parts) for parts in zip(*new_state))

    def _check_state(self, state: State, batch: int) -> None:
        layer: Cell = self.layers[0]
        expected = [(self.num_layers, batch, size) for size in layer.state_sizes()]
        got = [tuple(s.shape) for s in state]
        if len(state) != len(expected) or got != expected:
            names = ", ".join(layer.state_names)
            raise ValueError(f"Recurrent: expected state ({names}) shaped {expected}, got {got}")


def detach_state(state: State | None) -> State | None:
    """Cut the graph behind a carried state (truncated backpropagation through time)."""
    return None if state is None else tuple(s.detach() for s in state)
