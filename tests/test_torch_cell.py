"""The torch-cell engine (a loop over nn.RNNCell / nn.LSTMCell / nn.GRUCell) equals the loop and fused engines."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from chargen.cells import CELLS
from chargen.core import ENGINES, Recurrent, has_torch_cell, torch_cell_names

from twins import TORCH_TWINS  # noqa: E402

WITHOUT_TWIN = [name for name, kind in CELLS.items() if not has_torch_cell(kind)]


def _weighted(tensors):
    gen = torch.Generator().manual_seed(7)
    return sum((t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum() for t in tensors)


def test_the_cells_with_a_torch_cell_are_the_twinned_ones() -> None:
    assert torch_cell_names() == list(TORCH_TWINS)


@pytest.mark.parametrize("cell", list(TORCH_TWINS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_three_engines_agree_forward_and_backward(cell: str, dtype: torch.dtype, one_torch_thread: None) -> None:
    torch.manual_seed(0)
    core = Recurrent(cell, 3, 5, num_layers=2).to(dtype)
    x = torch.randn(7, 2, 3, dtype=dtype, requires_grad=True)
    state = tuple(torch.randn(s.shape, dtype=dtype).requires_grad_() for s in core.init_state(2))
    wrt = [x, *state, *core.parameters()]
    results = {}
    for engine in ENGINES:
        core.engine = engine
        out, new_state = core(x, state)
        results[engine] = [out, *new_state, *torch.autograd.grad(_weighted([out, *new_state]), wrt)]
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    for engine in ("fused", "torch-cell"):
        for got, want in zip(results[engine], results["loop"]):
            torch.testing.assert_close(got, want, atol=tol, rtol=0)


@pytest.mark.parametrize("cell", list(TORCH_TWINS))
def test_torch_cell_runs_torch_modules_and_adds_no_parameters(cell: str) -> None:
    core = Recurrent(cell, 3, 4, num_layers=1, engine="torch-cell")
    before = [n for n, _ in core.named_parameters()]
    core(torch.randn(2, 1, 3))
    assert [n for n, _ in core.named_parameters()] == before
    assert all(type(r.cell) is TORCH_TWINS[cell][0] for r in core._torch_cells.values())


@pytest.mark.parametrize("cell", WITHOUT_TWIN)
def test_torch_cell_refuses_cells_torch_has_no_module_for(cell: str) -> None:
    with pytest.raises(ValueError, match=f"torch-cell' runs the {', '.join(TORCH_TWINS)} cells only, not '{cell}'"):
        Recurrent(cell, 3, 4, engine="torch-cell")


def _curve(engine: str, cell: str, steps: int = 15) -> list[float]:
    """A short training run: the same seed, data and optimiser; only the engine differs."""
    torch.manual_seed(3)
    core = Recurrent(cell, 4, 8, num_layers=2, engine=engine)
    head = nn.Linear(8, 4)
    params = [*core.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=0.01)
    gen = torch.Generator().manual_seed(4)
    data = torch.randint(0, 4, (13, 6), generator=gen)  # (T+1, N) symbols
    x = nn.functional.one_hot(data[:-1], 4).float()
    losses = []
    for _ in range(steps):
        out, _ = core(x)
        loss = nn.functional.cross_entropy(head(out).reshape(-1, 4), data[1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("cell", list(TORCH_TWINS))
def test_equal_training_curves_from_one_seed(cell: str, one_torch_thread: None) -> None:
    curves = {engine: _curve(engine, cell) for engine in ENGINES}
    assert curves["loop"][-1] < curves["loop"][0]
    for engine in ("fused", "torch-cell"):
        assert curves[engine] == pytest.approx(curves["loop"], abs=1e-5)
