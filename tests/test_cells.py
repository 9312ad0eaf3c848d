"""Cells: equality with torch's cells, gradient checks, momentum (loop == fused), the phased LSTM's time gate, fast steps."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from chargen.cells import (
    CELLS,
    Cell,
    GRUCell,
    MomentumCell,
    MomentumGRUCell,
    MomentumLSTMCell,
    MomentumRNNCell,
    PhasedLSTMCell,
    State,
    TimeGate,
    get_cell,
)
from chargen.fast_steps import ReferenceStep

from twins import CELL_OPTIONS, TORCH_TWINS  # noqa: E402

F64 = torch.float64
BASE = {name: (CELLS[name], twin[0]) for name, twin in TORCH_TWINS.items()}
# every momentum cell of the registry with its base cell (momentum-X is X with momentum)
MOMENTUM = {
    name: (kind, CELLS[name.removeprefix("momentum-")]) for name, kind in CELLS.items() if issubclass(kind, MomentumCell)
}


def random_state(cell: Cell, batch: int, *, requires_grad: bool = True) -> State:
    return tuple(
        torch.randn(batch, size, dtype=F64).requires_grad_(requires_grad) for size in cell.state_sizes()
    )


def weighted_sum(tensors: list[Tensor] | tuple[Tensor, ...]) -> Tensor:
    """A scalar that depends on every entry with a different weight, so gradients are all distinct."""
    gen = torch.Generator().manual_seed(123)
    return sum((t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum() for t in tensors)


def grads(loss: Tensor, tensors: list[Tensor]) -> list[Tensor]:
    return list(torch.autograd.grad(loss, tensors))


def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(dst, name).copy_(getattr(src, name))


def assert_all_close(got: list[Tensor], want: list[Tensor], atol: float = 1e-10) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=atol, rtol=0)


# -- base cells against torch ------------------------------------------------------------------


@pytest.mark.parametrize("kind", BASE)
@pytest.mark.parametrize("batch", [1, 3])
def test_base_cell_equals_torch_cell_forward_and_backward(kind: str, batch: int) -> None:
    torch.manual_seed(0)
    ours_cls, torch_cls = BASE[kind]
    ours = ours_cls(5, 4).to(F64)
    theirs = torch_cls(5, 4).to(F64)
    copy_weights(ours, theirs)
    x = torch.randn(batch, 5, dtype=F64, requires_grad=True)
    state = random_state(ours, batch)

    h, new_state = ours(x, state)
    ref = theirs(x, state if len(state) > 1 else state[0])  # nn.LSTMCell takes (h, c); the others h
    ref_state = ref if len(state) > 1 else (ref,)
    assert_all_close([h, *new_state], [ref_state[0], *ref_state])

    wrt = [x, *state]
    got = grads(weighted_sum(new_state), wrt + list(ours.parameters()))
    want = grads(weighted_sum(ref_state), wrt + list(theirs.parameters()))
    assert_all_close(got, want)


@pytest.mark.parametrize("kind", BASE)
def test_float32_matches_torch_to_1e_6(kind: str) -> None:
    torch.manual_seed(1)
    ours_cls, torch_cls = BASE[kind]
    ours, theirs = ours_cls(8, 16), torch_cls(8, 16)
    copy_weights(ours, theirs)
    x = torch.randn(4, 8)
    h, _ = ours(x)
    ref = theirs(x)
    torch.testing.assert_close(h, ref[0] if isinstance(ref, tuple) else ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", BASE)
def test_state_none_means_zeros(kind: str) -> None:
    cell = BASE[kind][0](3, 4)
    x = torch.randn(2, 3)
    h, state = cell(x)
    h_zero, state_zero = cell(x, cell.init_state(2))
    assert torch.equal(h, h_zero)
    assert all(torch.equal(a, b) for a, b in zip(state, state_zero))
    assert [tuple(s.shape) for s in state] == [(2, 4)] * len(cell.state_names)


@pytest.mark.parametrize("kind", BASE)
def test_bad_shapes_raise_value_errors_saying_what_was_expected(kind: str) -> None:
    cell = BASE[kind][0](3, 4)
    with pytest.raises(ValueError, match=r"expected input \(N, 3\), got \(2, 5\)"):
        cell(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"expected input \(N, 3\), got \(4, 2, 3\)"):
        cell(torch.randn(4, 2, 3))
    with pytest.raises(ValueError, match=r"expected state .* shaped \[\(2, 4\).*got \[\(3, 4\)"):
        cell(torch.randn(2, 3), tuple(torch.zeros(3, 4) for _ in cell.state_names))
    with pytest.raises(ValueError, match="expected state"):
        cell(torch.randn(2, 3), (torch.zeros(2, 4),) * (len(cell.state_names) + 1))
    with pytest.raises(ValueError, match="must be positive"):
        BASE[kind][0](0, 4)


@pytest.mark.parametrize("kind", BASE)
def test_gradcheck_base_cells(kind: str) -> None:
    torch.manual_seed(2)
    cell = BASE[kind][0](3, 2).to(F64)
    x = torch.randn(2, 3, dtype=F64, requires_grad=True)
    state = random_state(cell, 2)
    params = list(cell.parameters())
    # gradcheck perturbs its inputs in place, so passing the parameters checks their gradients too
    assert torch.autograd.gradcheck(lambda x, *rest: cell(x, rest[: len(state)])[1], (x, *state, *params))


def test_the_clis_help_lists_the_registry() -> None:
    from typer.testing import CliRunner

    from chargen.cli import app
    from chargen.cli.ui import CELL_NAMES

    assert CELL_NAMES == ", ".join(CELLS)  # help text cannot import the registry (it would load torch)
    shown = " ".join(CliRunner().invoke(app, ["train", "--cell", "gru", "--help"], env={"COLUMNS": "300"}).stdout.split())
    assert f"Recurrent cell from the registry: {CELL_NAMES}." in shown


def test_registry_and_unknown_name() -> None:
    assert get_cell("momentum-lstm") is MomentumLSTMCell
    assert get_cell("gru") is GRUCell and get_cell("momentum-gru") is MomentumGRUCell
    assert set(CELLS) >= {"rnn", "lstm", "gru", "momentum-rnn", "momentum-lstm", "momentum-gru", "phased-lstm"}
    assert set(MOMENTUM) == {"momentum-rnn", "momentum-lstm", "momentum-gru"}
    with pytest.raises(ValueError, match=f"unknown cell 'no-such-cell'; known cells: {', '.join(sorted(CELLS))}$"):
        get_cell("no-such-cell")


# -- momentum cells ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mu": 1.0}, r"mu \(momentum\) must be in \[0, 1\), got 1.0"),
        ({"mu": -0.1}, "mu"),
        ({"mu": math.nan}, "mu"),
        ({"s": 0.0}, r"s \(step size\) must be a positive number, got 0.0"),
        ({"s": -1.0}, "step size"),
        ({"s": math.inf}, "step size"),
    ],
)
def test_momentum_hyperparameters_are_validated(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MomentumLSTMCell(3, 4, **options)


def test_momentum_state_layout() -> None:
    assert MomentumRNNCell(3, 4).state_sizes() == (4, 4)
    assert MomentumLSTMCell(3, 4).state_sizes() == (4, 4, 16)
    assert MomentumGRUCell(3, 4).state_sizes() == (4, 12)
    assert MomentumLSTMCell.state_names == ("h", "c", "v")
    h, (h2, c, v) = MomentumLSTMCell(3, 4)(torch.randn(1, 3))
    assert h.shape == c.shape == (1, 4) and v.shape == (1, 16) and h is h2


def test_momentum_storage_same_keys_fixed_or_learned() -> None:
    fixed = MomentumLSTMCell(3, 4, mu=0.3, s=0.7)
    learned = MomentumLSTMCell(3, 4, mu=0.5, s=0.2, learn_momentum=True)
    assert fixed.state_dict().keys() == learned.state_dict().keys()
    assert "mu" not in dict(fixed.named_parameters()) and "mu" in dict(fixed.named_buffers())
    assert {"mu", "s"} <= set(dict(learned.named_parameters()))
    fixed.load_state_dict(learned.state_dict())  # a learned checkpoint loads into a fixed model
    assert fixed.mu.item() == pytest.approx(0.5) and fixed.s.item() == pytest.approx(0.2)
    assert not fixed.mu.requires_grad
    assert "mu=0.5" in repr(fixed)
    assert fixed.to(F64).mu.dtype == F64


@pytest.mark.parametrize("kind", MOMENTUM)
@pytest.mark.parametrize("batch", [1, 3])
def test_momentum_with_mu_0_s_1_is_the_base_cell(kind: str, batch: int) -> None:
    torch.manual_seed(3)
    momentum_cls, base_cls = MOMENTUM[kind]
    momentum = momentum_cls(5, 4, mu=0.0, s=1.0).to(F64)
    base = base_cls(5, 4).to(F64)
    copy_weights(momentum, base)
    x = torch.randn(6, batch, 5, dtype=F64)
    state = random_state(momentum, batch, requires_grad=False)
    out, new_state = momentum.loop(x, state)
    ref_out, ref_state = base.loop(x, state[:-1])
    assert torch.equal(out, ref_out)  # exactly: 0 * v + 1 * xp == xp
    assert all(torch.equal(a, b) for a, b in zip(new_state, ref_state))
    fused_out, _ = momentum.fused(x, state)
    torch.testing.assert_close(fused_out, base.fused(x, state[:-1])[0], atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", MOMENTUM)
@pytest.mark.parametrize(
    ("mu", "s", "learn"), [(0.0, 1.0, True), (0.6, 0.6, False), (0.9, 0.3, True), (0.3, 2.0, False)]
)
@pytest.mark.parametrize(("batch", "carried"), [(1, True), (3, True), (3, False), (9, True)])
def test_momentum_loop_equals_fused(
    kind: str, mu: float, s: float, learn: bool, batch: int, carried: bool
) -> None:
    # batch 9 > G*H = 4, 6 or 8 carries the velocity as G*H channels rather than one per sequence
    torch.manual_seed(4)
    kind_cls = MOMENTUM[kind][0]
    cell = kind_cls(3, 2 if kind_cls.gates > 1 else 4, mu=mu, s=s, learn_momentum=learn).to(F64)
    x = torch.randn(5, batch, 3, dtype=F64, requires_grad=True)
    if carried:
        state = random_state(cell, batch)
    else:
        state = cell.init_state(batch, dtype=F64)
    wrt = [x, *(t for t in state if t.requires_grad), *cell.parameters()]

    loop_out, loop_state = cell.loop(x, state)
    fused_out, fused_state = cell.fused(x, state)
    assert_all_close([fused_out, *fused_state], [loop_out, *loop_state])
    assert_all_close(
        grads(weighted_sum([fused_out, *fused_state]), wrt), grads(weighted_sum([loop_out, *loop_state]), wrt)
    )


@pytest.mark.parametrize("kind", MOMENTUM)
@pytest.mark.parametrize("engine", ["loop", "fused"])
def test_gradcheck_momentum_cells(kind: str, engine: str) -> None:
    torch.manual_seed(5)
    cell = MOMENTUM[kind][0](2, 2, mu=0.7, s=0.5, learn_momentum=True).to(F64)
    x = torch.randn(3, 2, 2, dtype=F64, requires_grad=True)
    state = random_state(cell, 2)
    params = list(cell.parameters())  # includes mu and s
    run = getattr(cell, engine)

    def outputs(x: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        out, new_state = run(x, rest[: len(state)])
        return (out, *new_state)

    assert torch.autograd.gradcheck(outputs, (x, *state, *params))


# -- phased LSTM -------------------------------------------------------------------------------


def fixed_gate(period: list[float], shift: list[float], r_on: float) -> TimeGate:
    gate = TimeGate(len(period), r_on=r_on)
    with torch.no_grad():
        gate.period.copy_(torch.tensor(period))
        gate.shift.copy_(torch.tensor(shift))
    return gate


def test_time_gate_follows_the_piecewise_formula() -> None:
    # period 10 and r_on 0.2: rising while the phase is below 0.1, falling below 0.2, then closed
    gate = fixed_gate([10.0] * 4, [0.0, 3.0, 1.0, -4.0], r_on=0.2)
    t = torch.tensor([[0.5], [4.0], [6.0], [1.5]])  # (N, 1)
    # phases ((t - shift) mod 10) / 10, wrapping below zero (Python's mod):
    #   t=0.5: 0.05 0.75 0.95 0.45 | t=4: 0.4 0.1 0.3 0.8 | t=6: 0.6 0.3 0.5 0.0 | t=1.5: 0.15 0.85 0.05 0.55
    def expected(leak: float) -> Tensor:
        return torch.tensor(
            [
                [0.5, leak * 0.75, leak * 0.95, leak * 0.45],
                [leak * 0.4, 1.0, leak * 0.3, leak * 0.8],
                [leak * 0.6, leak * 0.3, leak * 0.5, 0.0],
                [2 - 2 * 0.15 / 0.2, leak * 0.85, 0.5, leak * 0.55],
            ]
        )

    torch.testing.assert_close(gate.train()(t), expected(1e-3), atol=1e-6, rtol=0)
    torch.testing.assert_close(gate.eval()(t), expected(0.0), atol=1e-6, rtol=0)  # no leak in eval mode


def test_time_gate_init_and_validation() -> None:
    torch.manual_seed(6)
    gate = TimeGate(1000)
    assert math.e <= gate.period.min().item() and gate.period.max().item() <= math.e**6 * (1 + 1e-6)
    assert (gate.shift >= 0).all() and (gate.shift < gate.period).all()
    log_period = gate.period.log()
    assert 3.3 < log_period.mean().item() < 3.7  # log-uniform on [1, 6]
    for options in ({"r_on": 0.0}, {"r_on": 1.5}, {"leak": -1.0}, {"period_range": (5.0, 1.0)}):
        with pytest.raises(ValueError, match="TimeGate"):
            TimeGate(4, **options)


def test_phased_state_and_engines() -> None:
    cell = PhasedLSTMCell(3, 4)
    assert cell.state_sizes() == (4, 4, 1) and not cell.has_fused
    out, (h, c, t) = cell.loop(torch.randn(7, 2, 3), cell.init_state(2))
    assert out.shape == (7, 2, 4) and torch.equal(t, torch.full((2, 1), 7.0))
    with pytest.raises(NotImplementedError, match="no fused kernel"):
        cell.fused(torch.randn(7, 2, 3), cell.init_state(2))
    params = dict(cell.named_parameters())
    assert {"gate.period", "gate.shift"} <= set(params)
    before = cell.gate.period.clone()
    cell.reset_parameters()  # resets the time gate too
    assert not torch.equal(before, cell.gate.period)


def test_phased_closed_gate_keeps_the_state_in_eval_mode() -> None:
    cell = PhasedLSTMCell(3, 4, r_on=0.1).eval()
    with torch.no_grad():
        cell.gate.period.fill_(100.0)
        cell.gate.shift.fill_(50.0)  # t = 0..9: phases 0.5..0.59, all closed
    state = (torch.randn(2, 4), torch.randn(2, 4), torch.zeros(2, 1))
    out, (h, c, t) = cell.loop(torch.randn(10, 2, 3), state)
    assert torch.equal(h, state[0]) and torch.equal(c, state[1]) and torch.equal(out[-1], state[0])
    cell.train()  # the leak lets a little through
    _, (h_train, _, _) = cell.loop(torch.randn(10, 2, 3), state)
    assert not torch.equal(h_train, state[0])


def test_phased_chunked_equals_whole() -> None:
    torch.manual_seed(7)
    cell = PhasedLSTMCell(3, 5, period_range=(2.0, 8.0)).to(F64)
    x = torch.randn(12, 2, 3, dtype=F64)
    whole, whole_state = cell.loop(x, cell.init_state(2))
    state, parts = cell.init_state(2), []
    for chunk in x.split(4):
        out, state = cell.loop(chunk, state)
        parts.append(out)
    assert_all_close([torch.cat(parts), *state], [whole, *whole_state], atol=0.0)


def test_gradcheck_phased_cell() -> None:
    torch.manual_seed(8)
    cell = PhasedLSTMCell(2, 3, r_on=0.5).to(F64)
    with torch.no_grad():
        # phases at t = 0.3..2.3 stay clear of the kinks at 0, r_on / 2 and r_on
        cell.gate.period.copy_(torch.tensor([4.0, 5.0, 3.0], dtype=F64))
        cell.gate.shift.copy_(torch.tensor([0.1, 4.6, 2.0], dtype=F64))
    x = torch.randn(3, 2, 2, dtype=F64, requires_grad=True)
    h0, c0 = (torch.randn(2, 3, dtype=F64, requires_grad=True) for _ in range(2))
    t0 = torch.tensor([[0.3], [0.35]], dtype=F64, requires_grad=True)
    params = list(cell.parameters())

    def outputs(x: Tensor, h: Tensor, c: Tensor, t: Tensor, *_: Tensor) -> tuple[Tensor, ...]:
        out, state = cell.loop(x, (h, c, t))
        return (out, *state)

    assert torch.autograd.gradcheck(outputs, (x, h0, c0, t0, *params))


# -- GRU ---------------------------------------------------------------------------------------


def test_gru_layout_is_torchs() -> None:
    cell, twin = GRUCell(5, 4), nn.GRUCell(5, 4)
    assert [(n, p.shape) for n, p in cell.named_parameters()] == [(n, p.shape) for n, p in twin.named_parameters()]
    assert cell.state_sizes() == (4,) and cell.has_fused and cell.readouts == ("r", "z", "n")


def test_gru_reset_gate_multiplies_b_hn() -> None:
    """With the reset gate shut, n = tanh(W_in x + b_in): b_hn (inside r's product) no longer reaches h."""
    torch.manual_seed(9)
    cell = GRUCell(3, 4).to(F64)
    x, h = torch.randn(2, 3, dtype=F64), torch.randn(2, 4, dtype=F64)
    with torch.no_grad():
        cell.bias_ih[:4] = -1e3  # r = sigmoid(-1000) = 0
        before, _ = cell(x, (h,))
        cell.bias_hh[8:] += 5.0  # b_hn
        after, _ = cell(x, (h,))
        cell.bias_ih[8:] += 5.0  # b_in is outside the product: it does
        moved, _ = cell(x, (h,))
    assert torch.equal(before, after) and not torch.allclose(before, moved)


# -- fast steps --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("first", [True, False])
def test_fast_step_equals_the_cells_own_step(kind: str, first: bool) -> None:
    """A fast step loaded with a state and fed inputs gives the cell's step, its state (in the cell's layout) too."""
    torch.manual_seed(10)
    cell = CELLS[kind](3, 5, **CELL_OPTIONS.get(kind, {})).eval()
    with torch.no_grad():  # larger weights than the init: the state matters
        for p in cell.parameters():
            p.mul_(2.0)
    batch, gen = 3, torch.Generator().manual_seed(11)
    state = tuple(torch.randn(batch, size, generator=gen) for size in cell.state_sizes())
    if "t" in cell.state_names:
        state = (*state[:-1], torch.tensor([[0.0], [3.0], [7.0]]))  # the phased LSTM's time: whole steps
    table = torch.randn(6, 3, generator=gen)  # as if 6 characters' embeddings
    with torch.no_grad():
        fast = cell.fast_step(batch, first)
        rows = fast.fold(table, cell.weight_ih) if first else None
        fast.load(state)
        for ids in ([0, 5, 2], [1, 1, 4], [3, 0, 0]):
            x = table[ids]
            want, state = cell(x, state)
            got = fast.run(rows[ids] if first else x)
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
            for a, b in zip(fast.export(), state, strict=True):
                torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_fused_cells_have_in_place_fast_steps_and_a_subclass_does_not_inherit_one() -> None:
    # the reference step is the correct fallback, but a cell that runs on torch's kernels for training
    # should not generate through it; a subclass changes the update, so it must declare its own
    assert all(kind.fast is not ReferenceStep for kind in CELLS.values() if kind.has_fused)
    assert PhasedLSTMCell.fast is ReferenceStep

    class Tweaked(GRUCell):
        pass

    assert Tweaked.fast is ReferenceStep


@pytest.mark.parametrize("kind", ["gru", "momentum-gru"])
def test_gru_paper_init_and_no_forget_bias(kind: str) -> None:
    """The paper init gives the GRU orthogonal W_ih, the identity in each of its r, z, n blocks and zero biases;
    a forget bias is refused (the GRU has no forget gate: chargen.inits says why z's bias is not one)."""
    from chargen.errors import UsageError
    from chargen.inits import initialise
    from chargen.models import ModelConfig, settings_for_cell

    torch.manual_seed(0)
    cell = CELLS[kind](6, 5)
    initialise(cell, "paper")
    w = cell.weight_ih.detach()  # (15, 6): orthonormal columns
    torch.testing.assert_close(w.T @ w, torch.eye(6), atol=1e-5, rtol=0)
    for block in cell.weight_hh.detach().chunk(3, dim=0):
        torch.testing.assert_close(block, torch.eye(5))
    assert not cell.bias_ih.any() and not cell.bias_hh.any()
    with pytest.raises(ValueError, match="forget_bias: .*has no forget gate"):
        initialise(cell, "paper", forget_bias=1.0)
    with pytest.raises(UsageError, match=f"forget_bias: cell '{kind}' has no forget gate") as caught:
        ModelConfig(cell=kind, forget_bias=1.0).check()
    assert caught.value.params == ("forget_bias",)
    shared = {"mu": 0.6, "s": 0.6, "forget_bias": 2.0, "init": "paper"}
    kept = {"init": "paper"} if kind == "gru" else {"mu": 0.6, "s": 0.6, "init": "paper"}
    assert settings_for_cell(kind, shared) == kept  # a mixed --cells list gives each cell what it takes


def test_momentum_gru_at_mu_0_s_1_with_paper_init_equals_the_gru() -> None:
    from chargen.models import ModelConfig, build_model

    x = torch.randint(0, 5, (7, 3))
    outs = []
    for cell, momentum in (("gru", {}), ("momentum-gru", {"mu": 0.0, "s": 1.0})):
        torch.manual_seed(5)
        cfg = ModelConfig(kind="lm", vocab_size=5, embed_dim=3, cell=cell, hidden_size=4, num_layers=2,
                          init="paper", **momentum)
        outs.append(build_model(cfg)(x)[0])
    torch.testing.assert_close(outs[0], outs[1], atol=1e-6, rtol=0)
