"""The logits pipeline: each decoding control on hand-computed distributions, against brute force, and its invariants."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor
from typer.testing import CliRunner

from chargen import checkpoint
from chargen.generation.beam import beam_search
from chargen.cli import app
from chargen.errors import UsageError
from chargen.generation.logits import DeadEnd, DecodeConfig, LogitsPipeline, decode_config
from chargen.generation.schedule import parse_schedule
from chargen.models import CharLM, ModelConfig
from chargen.paths import PROJECT_ROOT
from chargen.generation.sample import generate, generate_streams, sample_next
from chargen.tasks.generate import generate_names
from chargen.vocab import Vocab

VOCAB = Vocab.from_text("abcdefghijklmnopqrs .")
P4 = [0.5, 0.3, 0.15, 0.05]  # a hand-sized distribution: its logits are log(P4)
# every control on, and each alone (the names are DecodeConfig's)
ALL_ON: dict[str, Any] = dict(temperature=0.8, top_k=12, top_p=0.9, min_p=0.02, typical=0.95, repetition_penalty=1.3,
                              repetition_window=10, no_repeat=6)
ALONE = [dict(temperature="1.2:0.5"), dict(top_p=0.8), dict(min_p=0.1), dict(typical=0.7),
         dict(repetition_penalty=1.5, repetition_window=8), dict(no_repeat=4), dict(top_k=5, top_p=0.7)]


def probs(config: DecodeConfig | dict[str, Any], logits: Tensor, context: list[int] | None = None) -> Tensor:
    """The distribution a character is drawn from after the pipeline (one step, no history but ``context``)."""
    config = decode_config(config) if isinstance(config, dict) else config
    pipeline = LogitsPipeline(config, logits.shape[0], logits.shape[1], context=context or [])
    return torch.softmax(pipeline.process(logits), dim=-1)


def log4() -> Tensor:
    return torch.tensor([P4]).log()


def tiny(seed: int = 0) -> CharLM:
    torch.manual_seed(seed)
    model = CharLM(ModelConfig(vocab_size=len(VOCAB), embed_dim=8, cell="lstm", hidden_size=16, num_layers=2))
    with torch.no_grad():  # sharper distributions than the init, so the controls bite
        for p in model.parameters():
            p.mul_(2.0)
    return model.eval()


def text(model: CharLM, **kwargs: Any) -> str:
    return "".join(generate(model, VOCAB, **kwargs))


# --------------------------------------------------------------------------- hand-computed distributions


def test_top_p_keeps_the_likeliest_until_the_mass_is_reached() -> None:
    # 0.5 < 0.7, then 0.5 + 0.3 >= 0.7: two characters, renormalised
    torch.testing.assert_close(probs(dict(top_p=0.7), log4()), torch.tensor([[0.625, 0.375, 0, 0]]))
    torch.testing.assert_close(probs(dict(top_p=0.85), log4()), torch.tensor([[0.5, 0.3, 0.15, 0]]) / 0.95)
    torch.testing.assert_close(probs(dict(top_p=0.3), log4()), torch.tensor([[1.0, 0, 0, 0]]))


def test_min_p_is_relative_to_the_likeliest() -> None:
    # min_p 0.25: threshold 0.125 drops 0.05; min_p 0.5: threshold 0.25 drops 0.15 too
    torch.testing.assert_close(probs(dict(min_p=0.25), log4()), torch.tensor([[0.5, 0.3, 0.15, 0]]) / 0.95)
    torch.testing.assert_close(probs(dict(min_p=0.5), log4()), torch.tensor([[0.625, 0.375, 0, 0]]))


def test_typical_keeps_the_characters_nearest_the_entropy() -> None:
    # H = 1.1422 nats; surprisals 0.693, 1.204, 1.897, 2.996 are 0.449, 0.062, 0.755, 1.854 from H:
    # ranked 1, 0, 2, 3. Mass 0.5: 0.3 < 0.5 keeps 0 too, 0.8 >= 0.5 stops. Mass 0.2: only 1, not the argmax.
    entropy = -sum(p * math.log(p) for p in P4)
    assert entropy == pytest.approx(1.1422, abs=1e-4)
    torch.testing.assert_close(probs(dict(typical=0.5), log4()), torch.tensor([[0.625, 0.375, 0, 0]]))
    torch.testing.assert_close(probs(dict(typical=0.2), log4()), torch.tensor([[0.0, 1.0, 0, 0]]))


def test_temperature_and_top_k() -> None:
    want = torch.tensor([P4]) ** 2
    torch.testing.assert_close(probs(dict(temperature=0.5), log4()), want / want.sum())
    torch.testing.assert_close(probs(dict(top_k=2), log4()), torch.tensor([[0.625, 0.375, 0, 0]]))


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits_in_the_window() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    pipeline = LogitsPipeline(DecodeConfig(repetition_penalty=2.0, repetition_window=2), 1, 4, context=[0, 0, 1, 2])
    torch.testing.assert_close(pipeline.process(logits), torch.tensor([[2.0, -2.0, 0.25, 3.0]]))  # 0 left the window
    pipeline.advance(torch.tensor([3]))  # window now "2 3": 1 is free again, 3 is penalised once
    torch.testing.assert_close(pipeline.process(logits), torch.tensor([[2.0, -1.0, 0.25, 1.5]]))
    unprimed = LogitsPipeline(DecodeConfig(repetition_penalty=2.0), 1, 4)
    torch.testing.assert_close(unprimed.process(logits), logits)  # nothing written yet
    unprimed.advance(torch.tensor([0]))
    torch.testing.assert_close(unprimed.process(logits), torch.tensor([[1.0, -1.0, 0.5, 3.0]]))


def test_greedy_is_argmax_after_the_penalty() -> None:
    logits = torch.tensor([[3.0, 2.9, -1.0]])
    assert int(sample_next(logits, 0.0)) == 0
    pipeline = LogitsPipeline(DecodeConfig(greedy=True, repetition_penalty=2.0), 1, 3, context=[0])
    scores = pipeline.process(logits)
    assert pipeline.step_greedy and int(scores.argmax()) == 1  # 3.0 / 2 < 2.9


def test_no_repeat_bans_the_characters_that_complete_a_written_ngram() -> None:
    a, b, c, d = 0, 1, 2, 3
    pipeline = LogitsPipeline(DecodeConfig(no_repeat=3), 1, 5, context=[a, b, c, a, b])  # "ab" was followed by c
    scores = pipeline.process(torch.zeros(1, 5))
    assert torch.isneginf(scores).tolist() == [[False, False, True, False, False]]
    pipeline.advance(torch.tensor([d]))  # "abd" written: now "bd" has been followed by nothing
    assert not torch.isneginf(pipeline.process(torch.zeros(1, 5))).any()
    for x in (a, b):
        pipeline.advance(torch.tensor([x]))  # "...b d a b": "ab" was followed by c and d
    assert torch.isneginf(pipeline.process(torch.zeros(1, 5))).tolist() == [[False, False, True, True, False]]
    one = LogitsPipeline(DecodeConfig(no_repeat=1), 1, 3, context=[2])
    one.advance(torch.tensor([0]))
    assert torch.isneginf(one.process(torch.zeros(1, 3))).tolist() == [[True, False, True]]
    one.advance(torch.tensor([1]))
    with pytest.raises(DeadEnd, match="no_repeat=1"):
        one.process(torch.zeros(1, 3))


def test_temperature_schedules() -> None:
    assert [parse_schedule("1:0").at(t, 5) for t in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert [parse_schedule("0.8:0.4@3").at(t, 100) for t in range(5)] == pytest.approx([0.8, 0.6, 0.4, 0.4, 0.4])
    assert [parse_schedule("1.0,0.7@2,0.4@4").at(t, 9) for t in range(6)] == [1.0, 1.0, 0.7, 0.7, 0.4, 0.4]
    assert parse_schedule("0.5").at(7, 9) == 0.5 and parse_schedule(2).at(0, 1) == 2.0
    assert parse_schedule("1:0.5").at(0, 1) == 1.0  # a one-character sample starts where the schedule starts
    assert DecodeConfig(temperature="0.7").temperature == 0.7  # a constant spec is a number


class EvenOnly:
    """A CharMask: only even ids, and a stream that has written ``stop_after`` characters may write nothing."""

    def __init__(self, stop_after: int = 10**9) -> None:
        self.stop_after = stop_after

    def start(self, batch: int, prime: str = "") -> list[int]:
        return [0] * batch

    def allowed(self, state: list[int], remaining: int) -> Tensor:
        allowed = torch.zeros(len(state), len(VOCAB), dtype=torch.bool)
        allowed[:, ::2] = True
        allowed[torch.tensor(state) >= self.stop_after] = False
        return allowed

    def advance(self, state: list[int], ids: Tensor) -> list[int]:
        assert all(i % 2 == 0 for i in ids.tolist())
        return [s + 1 for s in state]

    def dead_end(self, state: list[int], row: int) -> str:
        return f"the mask ends after {self.stop_after} characters"


def test_masks_apply_before_the_warpers_and_say_why_at_a_dead_end() -> None:
    logits = torch.randn(3, len(VOCAB), generator=torch.Generator().manual_seed(0))
    pipeline = LogitsPipeline(DecodeConfig(top_p=0.5), 3, len(VOCAB), masks=[EvenOnly()])
    got = torch.softmax(pipeline.process(logits), dim=-1)
    masked = logits.clone()
    masked[:, 1::2] = float("-inf")
    torch.testing.assert_close(got, torch.softmax(reference_warp(masked, dict(top_p=0.5)), dim=-1))
    model = tiny()
    out = text(model, prime="ab", length=40, seed=1, masks=[EvenOnly()], top_p=0.9)
    assert all(VOCAB.id(ch) % 2 == 0 for ch in out) and len(out) == 40
    lean_and_ref = {text(model, prime="ab", length=40, seed=1, masks=[EvenOnly()], top_p=0.9, lean=lean)
                    for lean in (True, False)}
    assert lean_and_ref == {out}
    with pytest.raises(DeadEnd, match="stream 0: the mask ends after 5 characters"):
        text(model, prime="ab", length=40, seed=1, masks=[EvenOnly(stop_after=5)])


# --------------------------------------------------------------------------- brute force: each warper from its definition


def reference_warp(logits: Tensor, controls: dict[str, Any]) -> Tensor:
    """HF's warpers written out row by row in plain Python (temperature, top-k, top-p, min-p, typical)."""
    out = []
    for row in logits.double().tolist():
        t = controls.get("temperature", 1.0)
        x = [v / t for v in row]
        keep = [v > float("-inf") for v in x]

        def dist() -> list[float]:
            m = max(v for v, k in zip(x, keep) if k)
            e = [math.exp(v - m) if k else 0.0 for v, k in zip(x, keep)]
            return [v / sum(e) for v in e]

        def nucleus(ranked: list[int], mass: float) -> None:
            p, before = dist(), 0.0
            for i in ranked:
                if before >= mass:
                    keep[i] = False
                before += p[i]

        if controls.get("top_k"):
            for i in sorted(range(len(x)), key=lambda i: -x[i])[controls["top_k"] :]:
                keep[i] = False
        if controls.get("top_p", 1) < 1:
            nucleus(sorted((i for i in range(len(x)) if keep[i]), key=lambda i: -x[i]), controls["top_p"])
        if controls.get("min_p", 0) > 0:
            p = dist()
            keep = [k and p[i] >= controls["min_p"] * max(p) for i, k in enumerate(keep)]
        if controls.get("typical", 1) < 1:
            p = dist()
            entropy = -sum(q * math.log(q) for q in p if q > 0)
            kept = [i for i in range(len(x)) if keep[i]]
            nucleus(sorted(kept, key=lambda i: abs(-math.log(p[i]) - entropy)), controls["typical"])
        out.append([v if k else float("-inf") for v, k in zip(x, keep)])
    return torch.tensor(out, dtype=logits.dtype)


@pytest.mark.parametrize("controls", [dict(top_p=0.6), dict(top_p=0.95, temperature=0.7), dict(min_p=0.05),
                                      dict(min_p=0.3, temperature=1.5), dict(typical=0.5), dict(typical=0.9),
                                      dict(top_k=7, top_p=0.8), dict(top_k=9), ALL_ON], ids=str)
def test_each_warper_equals_its_definition_on_random_logits(controls: dict[str, Any]) -> None:
    warp = {k: v for k, v in controls.items() if k not in ("repetition_penalty", "repetition_window", "no_repeat")}
    logits = torch.randn(64, 30, generator=torch.Generator().manual_seed(3)) * 2.5
    torch.testing.assert_close(probs(warp, logits), torch.softmax(reference_warp(logits, warp), dim=-1),
                               rtol=1e-5, atol=1e-6)


def test_repetition_penalty_equals_its_definition_on_random_text() -> None:
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(5, 12, generator=gen) * 2
    history = torch.randint(12, (5, 30), generator=gen).tolist()
    for window in (1, 7, 30, 64):
        pipeline = LogitsPipeline(DecodeConfig(repetition_penalty=1.7, repetition_window=window), 5, 12,
                                  context=[h[:3] for h in history])
        for t in range(3, 30):
            want = logits.clone()
            for row, ids in enumerate(history):
                for i in set(ids[max(0, t - window) : t]):
                    want[row, i] = want[row, i] / 1.7 if want[row, i] > 0 else want[row, i] * 1.7
            torch.testing.assert_close(pipeline.process(logits), want)
            pipeline.advance(torch.tensor([h[t] for h in history]))


# --------------------------------------------------------------------------- invariants on generated text


def test_neutral_settings_change_nothing() -> None:
    model = tiny()
    kwargs = dict(prime="sea", length=150, seed=2, temperature=0.9)
    plain = text(model, **kwargs)
    for neutral in (dict(top_p=1.0), dict(min_p=0.0), dict(typical=1.0), dict(repetition_penalty=1.0),
                    dict(top_p=1.0, min_p=0.0, typical=1.0, repetition_penalty=1.0, no_repeat=0)):
        assert text(model, **kwargs, **neutral) == plain, neutral


def test_top_p_to_zero_and_min_p_one_are_greedy() -> None:
    model = tiny()
    greedy = text(model, prime="sea", length=120, temperature=0)
    for control in (dict(top_p=1e-9), dict(min_p=1.0), dict(top_p=1e-9, temperature=1.7)):
        assert text(model, prime="sea", length=120, seed=3, **control) == greedy, control
    assert text(model, prime="sea", length=120, seed=3) != greedy


@pytest.mark.parametrize("controls", [ALL_ON, *ALONE], ids=str)
def test_seeded_batched_chunked_and_lean_text_agree_with_every_control(controls: dict[str, Any]) -> None:
    model = tiny()
    kwargs = dict(prime="sea ", length=90, chunk_size=25, **controls)
    batch = list(generate_streams(model, VOCAB, n=3, seed=40, **kwargs))
    streams = ["".join(chunk[i] for chunk in batch) for i in range(3)]
    alone = [text(model, seed=40 + i, **kwargs) for i in range(3)]
    assert streams == alone and len(set(streams)) == 3  # a batch is its members generated alone
    assert text(model, seed=41, **kwargs) == alone[1]  # the same seed, the same text
    assert text(model, seed=41, **{**kwargs, "chunk_size": 90}) == alone[1]  # the history carries across chunks
    assert text(model, seed=41, lean=False, **kwargs) == alone[1]  # the reference path, the same one pipeline
    assert text(model, seed=41, decode=DecodeConfig(**controls), **{k: v for k, v in kwargs.items()
                                                                     if k not in controls}) == alone[1]


def test_unprimed_streams_draw_their_first_character_within_the_masks() -> None:
    model = tiny()
    # this vocabulary has no newline: an unprimed stream's first character is drawn uniformly (among what the
    # masks allow); the penalty and no-repeat start from it
    kwargs = dict(length=60, chunk_size=20, masks=[EvenOnly()], **{**ALL_ON, "no_repeat": 3})
    batch = list(generate_streams(model, VOCAB, n=3, seed=7, **kwargs))
    streams = ["".join(chunk[i] for chunk in batch) for i in range(3)]
    assert streams == [text(model, seed=7 + i, **kwargs) for i in range(3)]
    assert streams == ["".join(generate(model, VOCAB, seed=7 + i, lean=False, **kwargs)) for i in range(3)]
    for out in streams:
        assert len(out) == 60 and all(VOCAB.id(ch) % 2 == 0 for ch in out)
        assert len({out[i : i + 3] for i in range(58)}) == 58  # no 3-gram twice
    assert len({text(model, seed=s, length=1) for s in range(20)}) > 3  # a uniform first character


def test_no_repeat_holds_over_prime_and_text_and_breaks_greedy_loops() -> None:
    model = tiny(1)
    prime = "sea and sea "
    looping = text(model, prime=prime, length=300, temperature=0)
    full = prime + text(model, prime=prime, length=300, temperature=0, no_repeat=8)
    grams = [full[i : i + 8] for i in range(len(full) - 7)]
    assert len(grams) == len(set(grams))  # brute force: no 8-gram twice, the prime's included
    loop_grams = [(prime + looping)[i : i + 8] for i in range(len(prime + looping) - 7)]
    assert len(loop_grams) > len(set(loop_grams))  # and plain greedy did repeat itself


def test_a_schedule_that_reaches_zero_is_greedy_from_there() -> None:
    model = tiny()
    scheduled = text(model, prime="sea", length=80, seed=6, temperature="1.3,0@40")
    assert scheduled[:40] == text(model, prime="sea", length=40, seed=6, temperature=1.3)
    assert scheduled[40:] == text(model, prime="sea" + scheduled[:40], length=40, temperature=0)


def test_the_name_generator_takes_the_controls_on_both_paths() -> None:
    vocab = Vocab.from_text("abcdefghij", specials=("<pad>", "<bos>", "<eos>"))
    torch.manual_seed(4)
    model = CharLM(ModelConfig(vocab_size=len(vocab), embed_dim=8, cell="lstm", hidden_size=16,
                               num_conditions=3, condition_dim=4)).eval()
    cond = torch.tensor([0, 1, 2, 1, 0, 2])
    for controls in (ALL_ON, dict(no_repeat=2), dict(top_p=0.5, temperature="1.5:0.5")):
        names = [generate_names(model, vocab, cond, start="a", generator=torch.Generator().manual_seed(9), lean=lean,
                                **controls) for lean in (True, False)]
        assert names[0] == names[1] and all(name.startswith("a") for name in names[0]), controls
    for name in generate_names(model, vocab, cond, start="ab", generator=torch.Generator().manual_seed(1), no_repeat=2):
        grams = [name[i : i + 2] for i in range(len(name) - 1)]
        assert len(grams) == len(set(grams)), name


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(("controls", "says", "params"), [
    (dict(temperature=float("nan")), "temperature must be a finite number", ("temperature",)),
    (dict(temperature=-0.1), "temperature must be 0 .greedy. or positive", ("temperature",)),
    (dict(temperature="0.8:x"), "'x' is not a number", ("temperature",)),
    (dict(temperature="1,0.5"), "needs @CHARACTER", ("temperature",)),
    (dict(temperature="1,0.5@9,0.2@3"), "must increase", ("temperature",)),
    (dict(temperature="1:0.5@-3"), "not a character index", ("temperature",)),
    (dict(temperature="0.8:-1"), "temperature must be 0", ("temperature",)),
    (dict(top_k=0), "top_k must be at least 1", ("top_k",)),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\]", ("top_p",)),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\]", ("top_p",)),
    (dict(top_p=float("nan")), "top_p must be a finite number", ("top_p",)),
    (dict(min_p=-0.1), r"min_p must be in \[0, 1\]", ("min_p",)),
    (dict(typical=0.0), r"typical must be in \(0, 1\]", ("typical",)),
    (dict(typical="0.9"), "typical must be a number", ("typical",)),
    (dict(repetition_penalty=0.0), "repetition_penalty must be positive", ("repetition_penalty",)),
    (dict(repetition_penalty=float("inf")), "repetition_penalty must be a finite number", ("repetition_penalty",)),
    (dict(repetition_window=0), "repetition_window must be between 1", ("repetition_window",)),
    (dict(no_repeat=-2), "no_repeat must be between 1", ("no_repeat",)),
    (dict(no_repeat=2.5), "no_repeat must be a whole number", ("no_repeat",)),
    (dict(greedy=True, top_p=0.9), "greedy and top_p contradict each other", ("greedy", "top_p")),
    (dict(greedy=True, temperature=0.5), "greedy and temperature 0.5 contradict", ("greedy", "temperature")),
    (dict(greedy=True, temperature="1:0"), "greedy and temperature '1:0' contradict", ("greedy", "temperature")),
    (dict(temperature=0, min_p=0.1), "temperature 0 and min_p contradict", ("temperature", "min_p")),
    (dict(greedy="yes"), "greedy must be true or false", ("greedy",)),
], ids=lambda v: str(v) if isinstance(v, dict) else "")
def test_bad_controls_are_usage_errors_naming_the_parameter(controls: dict[str, Any], says: str,
                                                            params: tuple[str, ...]) -> None:
    with pytest.raises(UsageError, match=says) as caught:
        DecodeConfig(**controls)
    assert caught.value.params == params
    with pytest.raises(UsageError, match=says):
        DecodeConfig.from_dict(controls)  # the server's path: the same checks


def test_from_dict_round_trips_and_refuses_unknown_names() -> None:
    config = DecodeConfig(**ALL_ON)
    assert DecodeConfig.from_dict(config.to_dict()) == config
    assert DecodeConfig.from_dict({"temperature": None, "top_p": 0.9}) == DecodeConfig(top_p=0.9)
    body = {"prime": "The", "length": 80, "seed": 1, "top_p": 0.9, "no_repeat": 12}  # a request body
    assert DecodeConfig.from_dict(body, others=("prime", "length", "seed")) == DecodeConfig(top_p=0.9, no_repeat=12)
    with pytest.raises(UsageError, match="unknown decoding control seed"):
        DecodeConfig.from_dict(body, others=("prime", "length"))
    with pytest.raises(UsageError, match="unknown decoding control top_q; known: temperature, top_k") as caught:
        DecodeConfig.from_dict({"top_q": 0.9})
    assert caught.value.params == ("top_q",)
    with pytest.raises(UsageError, match="either as decode or as keywords"):
        decode_config(DecodeConfig(), top_p=0.5)
    with pytest.raises(UsageError, match="beam search is deterministic .*drop temperature, top_p") as beam:
        DecodeConfig(temperature=0.7, top_p=0.9).check_beam()
    assert beam.value.params == ("beams", "temperature", "top_p")
    DecodeConfig(repetition_window=10).check_beam()  # a window without a penalty changes nothing
    with pytest.raises(UsageError, match="drop no_repeat, greedy"):
        beam_search(tiny(), VOCAB, "ab", 5, 2, DecodeConfig(greedy=True, no_repeat=3))
    assert beam_search(tiny(), VOCAB, "ab", 5, 2, DecodeConfig()).text == beam_search(tiny(), VOCAB, "ab", 5, 2).text


# --------------------------------------------------------------------------- the CLI

SHIPPED = PROJECT_ROOT / "checkpoints" / "grimm"


def test_cli_sample_takes_every_control_and_n_equals_the_seeds_alone(one_torch_thread: None) -> None:
    args = ["sample", "--prime", "The", "--length", "60", "--seed", "5", "-n", "2", "--temp", "0.9:0.5",
            "--top-p", "0.9", "--min-p", "0.05", "--typical", "0.95", "--repetition-penalty", "1.2",
            "--repetition-window", "20", "--no-repeat", "10", "--top-k", "30", "--stop", "\\n\\n"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    loaded = checkpoint.load(SHIPPED, task="lm")
    controls = dict(temperature="0.9:0.5", top_p=0.9, min_p=0.05, typical=0.95, repetition_penalty=1.2,
                    repetition_window=20, no_repeat=10, top_k=30)
    alone = ["The" + "".join(generate(loaded.model, loaded.vocab, prime="The", length=60, seed=5 + i, **controls))
             for i in range(2)]
    assert result.stdout == "\n\n".join(t.split("\n\n")[0] for t in alone) + "\n"


@pytest.mark.parametrize(("args", "says"), [
    (["--top-p", "0"], "--top-p must be in (0, 1]"),
    (["--greedy", "--top-p", "0.9"], "--greedy and --top-p contradict each other"),
    (["--greedy", "--temp", "0.7"], "--greedy and --temp 0.7 contradict each other"),
    (["--temp", "0", "--min-p", "0.1"], "--temp 0 and --min-p contradict each other"),
    (["--temp", "1:zz"], "--temp schedule '1:zz'"),
    (["--no-repeat", "-1"], "--no-repeat must be between 1"),
    (["--prime", "The", "--beam", "3", "--temp", "0.5"], "beam search is deterministic and takes no decoding controls; drop --temp"),
    (["--prime", "The", "--beam", "3", "--no-repeat", "8"], "drop --no-repeat"),
])
def test_cli_refuses_bad_controls_in_one_line(args: list[str], says: str) -> None:
    result = CliRunner().invoke(app, ["sample", *args])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and says in result.stderr, result.stderr


def test_cli_name_generator_takes_the_controls(one_torch_thread: None) -> None:
    args = ["sample", "--model", "surnames-gen", "--lang", "German", "-n", "4", "--seed", "0"]
    plain = CliRunner().invoke(app, args)
    nucleus = CliRunner().invoke(app, [*args, "--top-p", "1e-9"])
    greedy = CliRunner().invoke(app, [*args, "--greedy"])
    assert plain.exit_code == nucleus.exit_code == 0 and nucleus.stdout == greedy.stdout != plain.stdout
