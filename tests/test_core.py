"""The recurrent core: loop engine == fused engine == torch's nn.LSTM / nn.RNN / nn.GRU, chunking, engines, state layout."""

from __future__ import annotations


import pytest
import torch
from torch import Tensor, nn

from chargen.cells import CELLS, State
from chargen.core import ENGINES, Recurrent, detach_state

F64 = torch.float64
from twins import CELL_OPTIONS, FUSED_CELLS, TORCH_TWINS, UNKNOWN_CELL  # noqa: E402


def weighted_sum(tensors: list[Tensor] | tuple[Tensor, ...]) -> Tensor:
    """A scalar that depends on every entry with a different weight, so gradients are all distinct."""
    gen = torch.Generator().manual_seed(123)
    return sum((t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum() for t in tensors)


def assert_all_close(got: list[Tensor] | tuple[Tensor, ...], want: list[Tensor] | tuple[Tensor, ...]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-10, rtol=0)


def random_state(core: Recurrent, batch: int) -> State:
    return tuple(torch.randn(s.shape, dtype=F64) for s in core.init_state(batch))


@pytest.mark.parametrize("cell", FUSED_CELLS)
@pytest.mark.parametrize("batch", [1, 3])
def test_loop_engine_equals_fused_engine(cell: str, batch: int) -> None:
    torch.manual_seed(0)
    core = Recurrent(cell, 3, 4, num_layers=2, **FUSED_CELLS[cell]).to(F64)
    x = torch.randn(6, batch, 3, dtype=F64, requires_grad=True)
    state = tuple(s.requires_grad_() for s in random_state(core, batch))
    wrt = [x, *state, *core.parameters()]

    results = {}
    for engine in ("loop", "fused"):
        core.engine = engine
        out, new_state = core(x, state)
        results[engine] = ([out, *new_state], torch.autograd.grad(weighted_sum([out, *new_state]), wrt))
    assert_all_close(results["fused"][0], results["loop"][0])
    assert_all_close(results["fused"][1], results["loop"][1])


def torch_twin(core: Recurrent, torch_cls: type[nn.Module]) -> nn.Module:
    """torch's multi-layer module with the core's weights copied in."""
    ref = torch_cls(core.input_size, core.hidden_size, num_layers=core.num_layers)
    ref = ref.to(core.layers[0].weight_hh.dtype)
    with torch.no_grad():
        for i, layer in enumerate(core.layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(ref, f"{name}_l{i}").copy_(getattr(layer, name))
    return ref


def run_twin(ref: nn.Module, x: Tensor, state: State) -> tuple[Tensor, State]:
    """nn.LSTM takes and gives (h, c); nn.RNN and nn.GRU h alone."""
    out, ref_state = ref(x, state if len(state) > 1 else state[0])
    return out, tuple(ref_state) if len(state) > 1 else (ref_state,)


@pytest.mark.parametrize(("cell", "torch_cls"), [(cell, twin[1]) for cell, twin in TORCH_TWINS.items()])
def test_fused_equals_torch_module_with_copied_weights(cell: str, torch_cls: type[nn.Module]) -> None:
    torch.manual_seed(1)
    core = Recurrent(cell, 3, 4, num_layers=2).to(F64)
    ref = torch_twin(core, torch_cls)
    x = torch.randn(5, 2, 3, dtype=F64, requires_grad=True)
    state = random_state(core, 2)

    out, new_state = core(x, state)
    ref_out, ref_state = run_twin(ref, x, state)
    assert_all_close([out, *new_state], [ref_out, *ref_state])

    ours = torch.autograd.grad(weighted_sum([out, *new_state]), [x, *core.parameters()])
    theirs = torch.autograd.grad(weighted_sum([ref_out, *ref_state]), [x, *ref.parameters()])
    # core.parameters() is layer by layer in (weight_ih, weight_hh, bias_ih, bias_hh) order, as nn.LSTM
    assert_all_close(ours, theirs)


@pytest.mark.parametrize("cell", list(TORCH_TWINS))
@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_matches_torch_in_float32_to_1e_5(cell: str, engine: str) -> None:
    """The issue's target: parity with nn.LSTM / nn.RNN / nn.GRU <= 1e-5, forward and backward, on every engine."""
    torch.manual_seed(5)
    core = Recurrent(cell, 6, 16, num_layers=2, engine=engine)
    ref = torch_twin(core, TORCH_TWINS[cell][1])
    x = torch.randn(20, 3, 6, requires_grad=True)
    state = tuple(s.requires_grad_() for s in (torch.randn(t.shape) for t in core.init_state(3)))
    out, new_state = core(x, state)
    ref_out, ref_state = run_twin(ref, x, state)
    for got, want in zip([out, *new_state], [ref_out, *ref_state], strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    ours = torch.autograd.grad(weighted_sum([out, *new_state]), [x, *state, *core.parameters()])
    theirs = torch.autograd.grad(weighted_sum([ref_out, *ref_state]), [x, *state, *ref.parameters()])
    for got, want in zip(ours, theirs, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("cell", "engine"),
    [(cell, engine) for cell, kind in CELLS.items() for engine in (("loop", "fused") if kind.has_fused else ("loop",))],
)
def test_three_chunks_with_carried_state_equal_one_whole_sequence(cell: str, engine: str) -> None:
    torch.manual_seed(2)
    options = CELL_OPTIONS.get(cell, {})
    core = Recurrent(cell, 3, 4, num_layers=2, engine=engine, **options).to(F64)
    x = torch.randn(12, 2, 3, dtype=F64)
    whole, whole_state = core(x)
    state, parts = None, []
    for chunk in torch.split(x, [5, 4, 3]):
        out, state = core(chunk, state)
        parts.append(out)
    assert_all_close([torch.cat(parts), *state], [whole, *whole_state])


def test_switching_engine_on_a_built_module() -> None:
    torch.manual_seed(3)
    core = Recurrent("momentum-lstm", 3, 4).to(F64)
    x = torch.randn(4, 2, 3, dtype=F64)
    fused, _ = core(x)
    core.engine = "loop"
    assert core.engine == "loop" and "engine='loop'" in repr(core)
    loop, _ = core(x)
    assert_all_close([loop], [fused])


def test_bad_engine_or_cell_names_list_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown engine 'cuda'; choose one of fused, loop"):
        Recurrent("lstm", 3, 4, engine="cuda")
    core = Recurrent("lstm", 3, 4)
    with pytest.raises(ValueError, match="choose one of fused, loop"):
        core.engine = "scan"
    with pytest.raises(ValueError, match="unknown cell 'no-such-cell'; known cells: .*momentum-lstm"):
        Recurrent(UNKNOWN_CELL, 3, 4)
    with pytest.raises(ValueError, match="has no fused kernel; use engine='loop'"):
        Recurrent("phased-lstm", 3, 4)
    with pytest.raises(ValueError, match="num_layers"):
        Recurrent("lstm", 3, 4, num_layers=0)


def test_dropout_between_layers_only_in_training_mode() -> None:
    torch.manual_seed(4)
    core = Recurrent("lstm", 3, 4, num_layers=2, dropout=0.5)
    plain = Recurrent("lstm", 3, 4, num_layers=2)
    plain.load_state_dict(core.state_dict())
    x = torch.randn(5, 2, 3)
    core.eval()
    assert torch.equal(core(x)[0], plain(x)[0])
    core.train()
    first, second = core(x)[0], core(x)[0]
    assert not torch.equal(first, plain(x)[0]) and not torch.equal(first, second)
    single = Recurrent("lstm", 3, 4, num_layers=1, dropout=0.5)  # nothing between layers to drop
    assert torch.equal(single(x)[0], single(x)[0])


@pytest.mark.parametrize(
    ("cell", "sizes"),
    [
        ("rnn", [4]),
        ("lstm", [4, 4]),
        ("momentum-rnn", [4, 4]),
        ("momentum-lstm", [4, 4, 16]),
        ("phased-lstm", [4, 4, 1]),
        ("gru", [4]),
        ("momentum-gru", [4, 12]),
    ],
)
def test_state_layout_is_layers_batch_size(cell: str, sizes: list[int]) -> None:
    engine = "loop" if cell == "phased-lstm" else "fused"
    core = Recurrent(cell, 3, 4, num_layers=3, engine=engine)
    out, state = core(torch.randn(5, 2, 3))
    assert out.shape == (5, 2, 4)
    assert [tuple(s.shape) for s in state] == [(3, 2, size) for size in sizes]
    assert len(core.state_names) == len(sizes)
    assert all(not s.requires_grad for s in detach_state(state))
    with pytest.raises(ValueError, match=r"Recurrent: expected state .* shaped \[\(3, 2, 4\)"):
        core(torch.randn(5, 2, 3), tuple(s[:2] for s in state))
    with pytest.raises(ValueError, match=r"expected inputs \(T, N, 3\), got \(5, 3\)"):
        core(torch.randn(5, 3))


def test_cell_options_pass_through_to_every_layer() -> None:
    core = Recurrent("momentum-lstm", 3, 4, num_layers=2, mu=0.3, s=0.9, learn_momentum=True)
    names = dict(core.named_parameters())
    for i in range(2):
        assert names[f"layers.{i}.mu"].item() == pytest.approx(0.3)
        assert names[f"layers.{i}.s"].item() == pytest.approx(0.9)
    phased = Recurrent("phased-lstm", 3, 4, engine="loop", r_on=0.1)
    assert all(layer.gate.r_on == 0.1 for layer in phased.layers)
