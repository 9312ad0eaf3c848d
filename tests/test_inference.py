"""The lean inference path: equal to the model's own forward (state, logits, text) for every cell, sampler, batches."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from chargen import checkpoint
from chargen.cells import CELLS
from chargen.cli import app
from chargen.errors import UsageError
from chargen.inference import LeanSampler, LeanStepper, ReferenceStepper, make_stepper
from chargen.models import CharLM, ModelConfig
from chargen.paths import PROJECT_ROOT
from chargen.sample import MAX_SEED, generate, generate_streams, sample_next
from chargen.tasks.generate import generate_names
from chargen.vocab import Vocab

VOCAB = Vocab.from_text("abcdefghijklmnopqrs .")
OPTIONS = {"momentum-rnn": {"mu": 0.7, "s": 0.4}, "momentum-lstm": {"mu": 0.7, "s": 0.4}, "phased-lstm": {"r_on": 0.3},
           "momentum-gru": {"mu": 0.7, "s": 0.4}}
# (temperature, top_k): greedy, the model's distribution, sharper and flatter, with and without top-k
SETTINGS = [(0.0, None), (1.0, None), (0.7, 3), (1.5, None), (1.2, 10)]


def tiny(cell: str, *, conditions: int = 0, seed: int = 0) -> CharLM:
    torch.manual_seed(seed)
    engine = "loop" if not CELLS[cell].has_fused else "fused"
    cfg = ModelConfig(vocab_size=len(VOCAB), embed_dim=8, cell=cell, hidden_size=16, num_layers=2, engine=engine,
                      cell_options=OPTIONS.get(cell, {}), num_conditions=conditions, condition_dim=3 if conditions else 0)
    model = CharLM(cfg)
    with torch.no_grad():  # larger weights than the init: sharper distributions, state that matters
        for p in model.parameters():
            p.mul_(2.0)
    return model.eval()


@pytest.mark.parametrize("cell", list(CELLS))
def test_lean_steps_equal_the_model_forward_in_state_and_logits(cell: str) -> None:
    model = tiny(cell)
    ids = torch.randint(len(VOCAB), (40, 3), generator=torch.Generator().manual_seed(1))
    lean, ref = LeanStepper(model, 3), ReferenceStepper(model, 3)
    torch.testing.assert_close(lean.prime(ids[:5]), ref.prime(ids[:5]), rtol=0, atol=0)  # the same forward
    for t in range(5, 40):
        torch.testing.assert_close(lean.step(ids[t]), ref.step(ids[t]), rtol=1e-5, atol=1e-5)
    # the whole carried state (v for momentum, the time t for the phased LSTM) in the core's layout
    assert len(lean.state) == len(ref.state) == len(model.encoder.core.state_names)
    for a, b in zip(lean.state, ref.state):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", list(CELLS))
def test_lean_text_equals_reference_text_for_every_setting(cell: str) -> None:
    model = tiny(cell)
    for temperature, top_k in SETTINGS:
        for prime in ("sea", ""):
            kwargs = dict(prime=prime, length=150, temperature=temperature, top_k=top_k, seed=5)
            lean = "".join(generate(model, VOCAB, **kwargs))
            ref = "".join(generate(model, VOCAB, lean=False, **kwargs))
            assert len(lean) == 150 and lean == ref, (temperature, top_k, prime)
    assert len(set("".join(generate(model, VOCAB, length=150, seed=5)))) > 3  # a real sample, not one letter


@pytest.mark.parametrize("cell", ["lstm", "momentum-lstm", "phased-lstm", "momentum-gru"])
def test_lean_generation_chunked_equals_unchunked(cell: str) -> None:
    model = tiny(cell)
    kwargs = dict(prime="abc", length=200, temperature=1.0, seed=11)
    one = "".join(generate(model, VOCAB, chunk_size=200, **kwargs))
    pieces = list(generate(model, VOCAB, chunk_size=30, **kwargs))
    assert all(len(p) == 30 for p in pieces[:-1]) and "".join(pieces) == one
    assert "".join(generate(model, VOCAB, chunk_size=7, **kwargs)) == one
    assert "".join(generate(model, VOCAB, **{**kwargs, "seed": 12})) != one


@pytest.mark.parametrize("cell", ["rnn", "lstm", "momentum-rnn", "momentum-lstm", "gru"])
def test_stream_i_of_a_batch_is_the_single_stream_with_seed_plus_i(cell: str) -> None:
    model = tiny(cell)
    for prime, top_k in (("sea", None), ("", 5)):
        kwargs = dict(prime=prime, length=120, temperature=1.0, top_k=top_k, chunk_size=30)
        batch = list(generate_streams(model, VOCAB, n=4, seed=20, **kwargs))
        streams = ["".join(chunk[i] for chunk in batch) for i in range(4)]
        assert streams == ["".join(generate(model, VOCAB, seed=20 + i, **kwargs)) for i in range(4)]
        assert len(set(streams)) == 4
        # reproducible, and independent of the batch it runs in
        again = list(generate_streams(model, VOCAB, n=2, seed=22, **kwargs))
        assert ["".join(chunk[i] for chunk in again) for i in range(2)] == streams[2:]


def test_a_stream_that_draws_stop_ends_while_the_others_go_on() -> None:
    vocab = Vocab.from_text("abcdefgh", specials=("<eos>",))
    torch.manual_seed(3)
    model = CharLM(ModelConfig(vocab_size=len(vocab), embed_dim=8, cell="lstm", hidden_size=16)).eval()
    kwargs = dict(prime="ab", length=80, temperature=1.5, stop="<eos>", chunk_size=9)
    batch = list(generate_streams(model, vocab, n=6, seed=0, **kwargs))
    streams = ["".join(chunk[i] for chunk in batch) for i in range(6)]
    singles = ["".join(generate(model, vocab, seed=i, **kwargs)) for i in range(6)]
    assert streams == singles
    assert min(map(len, streams)) < 80  # some stream stopped early
    assert all(len(s) <= 80 and "<eos>" not in s for s in streams)


@pytest.mark.parametrize("cell", ["lstm", "momentum-lstm", "phased-lstm", "gru", "momentum-gru"])
def test_conditioned_lean_steps_equal_the_reference(cell: str) -> None:
    model = tiny(cell, conditions=4)
    cond = torch.tensor([0, 3, 1, 3, 2])
    ids = torch.randint(len(VOCAB), (30, 5), generator=torch.Generator().manual_seed(2))
    lean, ref = LeanStepper(model, 5, cond), ReferenceStepper(model, 5, cond)
    lean.prime(ids[:2])
    ref.prime(ids[:2])
    for t in range(2, 30):
        torch.testing.assert_close(lean.step(ids[t]), ref.step(ids[t]), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="conditioned"):
        LeanStepper(model, 5)


def test_the_name_generator_writes_the_same_names_on_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    vocab = Vocab.from_text("abcdefghij", specials=("<pad>", "<bos>", "<eos>"))
    torch.manual_seed(4)
    model = CharLM(ModelConfig(vocab_size=len(vocab), embed_dim=8, cell="lstm", hidden_size=16,
                               num_conditions=3, condition_dim=4)).eval()
    cond = torch.tensor([0, 1, 2, 1])

    def names(temperature: float, top_k: int | None) -> list[str]:
        return generate_names(model, vocab, cond, start="a", temperature=temperature, top_k=top_k,
                              generator=torch.Generator().manual_seed(9))

    lean = {setting: names(*setting) for setting in SETTINGS}

    class SampleNext:  # the reference draw: one sample_next over the batch from the one generator
        def __init__(self, n: int, v: int, temperature: float, top_k: int | None, generator: torch.Generator,
                     device: torch.device) -> None:
            self.args = (temperature, top_k, generator)

        def __call__(self, logits: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
            return out.copy_(sample_next(logits, *self.args))

    monkeypatch.setattr("chargen.tasks.generate.make_stepper", lambda m, n, c: ReferenceStepper(m, n, c))
    monkeypatch.setattr("chargen.tasks.generate.LeanSampler", SampleNext)
    for setting, got in lean.items():
        assert got == names(*setting) and all(name.startswith("a") for name in got), setting
    assert generate_names(model, vocab, torch.tensor([], dtype=torch.long)) == []


@pytest.mark.parametrize("temperature, top_k", [*SETTINGS, (1e-45, None), (1e-300, 3), (1e-30, None), (1e6, 4)])
def test_lean_sampler_draws_what_sample_next_draws(temperature: float, top_k: int | None) -> None:
    logits = torch.randn(4, 30, generator=torch.Generator().manual_seed(0)) * 3
    # one generator per stream
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    sampler = LeanSampler(4, 30, temperature, top_k, [torch.Generator().manual_seed(i) for i in range(4)])
    for _ in range(50):
        want = torch.cat([sample_next(logits[i : i + 1], temperature, top_k, g) for i, g in enumerate(gens)])
        assert torch.equal(sampler(logits), want)
    # one generator for the whole batch: the draws of one multinomial on (N, V)
    shared = LeanSampler(4, 30, temperature, top_k, torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)
    draws = [shared(logits).clone() for _ in range(50)]
    assert all(torch.equal(d, sample_next(logits, temperature, top_k, gen)) for d in draws)
    if 0.01 < temperature:
        assert len({tuple(d.tolist()) for d in draws}) > 1


def test_training_mode_uses_the_reference_stepper_and_bad_input_is_refused() -> None:
    model = tiny("lstm")
    assert isinstance(make_stepper(model), LeanStepper)
    assert isinstance(make_stepper(model, lean=False), ReferenceStepper)
    model.train()
    assert isinstance(make_stepper(model), ReferenceStepper)
    with pytest.raises(ValueError, match="eval mode"):
        LeanStepper(model)
    model.eval()
    with pytest.raises(ValueError, match="batch"):
        LeanStepper(model, 0)
    with pytest.raises(ValueError, match="one generator per stream"):
        LeanSampler(3, 10, 1.0, None, [torch.Generator()])
    with pytest.raises(UsageError, match="n .*at least 1"):
        list(generate_streams(model, VOCAB, n=0))
    with pytest.raises(UsageError, match="chunk_size"):
        list(generate_streams(model, VOCAB, chunk_size=0))


SHIPPED = PROJECT_ROOT / "checkpoints" / "grimm"


def test_the_shipped_model_writes_the_same_text_on_both_paths(one_torch_thread: None) -> None:
    loaded = checkpoint.load(SHIPPED, task="lm")
    for temperature, top_k in ((0.0, None), (1.0, None), (0.5, 5)):
        kwargs = dict(prime="The king", length=300, temperature=temperature, top_k=top_k, seed=3)
        lean = "".join(generate(loaded.model, loaded.vocab, **kwargs))
        assert lean == "".join(generate(loaded.model, loaded.vocab, lean=False, **kwargs))


def test_cli_n_samples_are_one_batch_equal_to_the_seeds_one_by_one(one_torch_thread: None) -> None:
    result = CliRunner().invoke(app, ["sample", "--prime", "The", "--length", "60", "--seed", "5", "-n", "3"])
    assert result.exit_code == 0, result.output
    loaded = checkpoint.load(SHIPPED, task="lm")
    one_by_one = ["The" + "".join(generate(loaded.model, loaded.vocab, prime="The", length=60, seed=5 + i, lean=False))
                  for i in range(3)]
    assert result.stdout == "\n\n".join(one_by_one) + "\n"


def test_unprimed_streams_start_after_a_newline_on_both_paths() -> None:
    """Without a prime every stream continues a newline (fed, not written); the wrapped seeds of a batch too."""
    vocab = Vocab.from_text("abcdefgh .\n")
    torch.manual_seed(5)
    model = CharLM(ModelConfig(vocab_size=len(vocab), embed_dim=8, cell="lstm", hidden_size=16)).eval()
    kwargs = dict(length=60, temperature=1.2, top_k=6, chunk_size=25)
    batch = list(generate_streams(model, vocab, n=3, seed=MAX_SEED, **kwargs))
    streams = ["".join(chunk[i] for chunk in batch) for i in range(3)]
    seeds = [MAX_SEED, 0, 1]  # seed + i wraps within range
    assert streams == ["".join(generate(model, vocab, seed=s, lean=False, **kwargs)) for s in seeds]
    assert all(len(s) == 60 for s in streams) and len(set(streams)) == 3
    greedy = {"".join(generate(model, vocab, length=20, temperature=0, seed=s)) for s in range(3)}
    assert len(greedy) == 1  # no random first character: greedy text is one text
