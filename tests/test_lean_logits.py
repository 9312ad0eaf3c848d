"""The one-stream fast path of the logits pipeline equals the general torch path bit for bit, scores and draws."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from chargen.generation.lean_logits import OneStream
from chargen.generation.logits import DecodeConfig, LogitsPipeline
from chargen.generation.inference import LeanSampler, LeanStepper
from tests.test_logits import ALL_ON, ALONE, VOCAB, EvenOnly, tiny

V = len(VOCAB)
CASES: list[dict[str, Any]] = [
    ALL_ON, *ALONE, dict(top_k=4), dict(top_k=6, typical=0.8), dict(top_k=5, min_p=0.2),
    dict(top_k=3, top_p=0.95, min_p=0.3, temperature=1.3), dict(top_p=0.9, typical=0.9),
    dict(temperature="1.0,0.7@30", repetition_penalty=1.3), dict(temperature="1.0:0", no_repeat=3, top_p=0.8), dict(greedy=True, repetition_penalty=1.4),
    dict(repetition_penalty=0.7, repetition_window=3), dict(no_repeat=2, top_p=0.5), dict(top_p=1e-9),
    dict(min_p=1.0), dict(typical=0.05),
]


def pair(controls: dict[str, Any], context: list[int], **kwargs: Any) -> tuple[LogitsPipeline, LogitsPipeline]:
    """The same controls on the fast path and forced onto the general one."""
    config = DecodeConfig(**controls)
    fast = LogitsPipeline(config, 1, V, length=60, context=context, **kwargs)
    slow = LogitsPipeline(config, 1, V, length=60, context=context, lean=False, **kwargs)
    # the fast path takes every stream of one with a control to apply; plain sampling stays on the general one
    controlled = bool(config.warpers() or config.repetition_penalty != 1 or config.no_repeat)
    assert (fast.lean is not None) == controlled and slow.lean is None
    return fast, slow


def rough_logits(gen: torch.Generator) -> torch.Tensor:
    """Random logits rounded to quarters, so that equal scores (the sorts' ties) are common."""
    return (torch.randn(1, V, generator=gen) * 3).mul(4).round().div(4)


@pytest.mark.parametrize("exactly", [False, True], ids=["decided", "always-exact"])
@pytest.mark.parametrize("controls", CASES, ids=str)
def test_fast_scores_equal_the_general_path_bit_for_bit(controls: dict[str, Any], exactly: bool,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # decided: float64 decisions where their margin is clear, the float32 route otherwise; always-exact: the latter
    if exactly:
        monkeypatch.setattr(OneStream, "MARGIN", math.inf)
    gen = torch.Generator().manual_seed(11)
    for context in ([], [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]):
        fast, slow = pair(controls, context, banned=[0])
        for _ in range(60):
            logits = rough_logits(gen) if torch.rand(1, generator=gen) < 0.5 else torch.randn(1, V, generator=gen)
            want = slow.process(logits).clone()
            got = fast.process(logits)
            assert fast.step_greedy == slow.step_greedy
            assert torch.equal(got, want), (controls, got - want)
            assert torch.equal(logits, logits.clone())  # the logits themselves are never written
            probs = torch.softmax(want, dim=-1)
            i = int(want.argmax()) if slow.step_greedy else int(torch.multinomial(probs, 1, generator=gen))
            fast.advance(torch.tensor([i]))
            slow.advance(torch.tensor([i]), i)


def test_the_float64_decisions_carry_almost_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    exact = []
    exactly = OneStream._warp_exactly
    monkeypatch.setattr(OneStream, "_warp_exactly", lambda self: exact.append(1) or exactly(self))
    gen = torch.Generator().manual_seed(2)
    fast, slow = pair(ALL_ON, [1, 2, 3])
    for _ in range(300):
        logits = torch.randn(1, V, generator=gen) * 2
        assert torch.equal(fast.process(logits), slow.process(logits))
        i = int(torch.multinomial(torch.softmax(slow.scores, dim=-1), 1, generator=gen))
        fast.advance(torch.tensor([i]))
        slow.advance(torch.tensor([i]))
    assert len(exact) < 15  # continuous logits rarely fall within the margin of a cut


def test_fast_masks_and_dead_ends_equal_the_general_path() -> None:
    fast, slow = pair(dict(no_repeat=3, top_p=0.9), [0, 2, 4], masks=[EvenOnly(stop_after=40)])
    gen = torch.Generator().manual_seed(5)
    for t in range(45):
        logits = torch.randn(1, V, generator=gen)
        try:
            want = slow.process(logits).clone()
        except Exception as error:
            with pytest.raises(type(error), match="stream 0"):
                fast.process(logits)
            assert t == 40
            return
        assert torch.equal(fast.process(logits), want)
        i = int(torch.multinomial(torch.softmax(want, dim=-1), 1, generator=gen))
        fast.advance(torch.tensor([i]))
        slow.advance(torch.tensor([i]))
    raise AssertionError("the mask should have left no character after 40 steps")


@pytest.mark.parametrize("controls", [dict(top_p=0.9), ALL_ON, dict(top_k=5, temperature=0.6)], ids=str)
def test_fast_draws_write_the_text_of_the_general_path(controls: dict[str, Any]) -> None:
    model, prime = tiny(), VOCAB.encode("sea and s")
    texts = []
    for lean in (True, False):
        pipeline = LogitsPipeline(DecodeConfig(**controls), 1, V, length=400, context=prime, lean=lean)
        draw = LeanSampler(1, V, generators=[torch.Generator().manual_seed(9)], pipeline=pipeline)
        stepper = LeanStepper(model, 1)
        with torch.inference_mode():
            last = stepper.prime(torch.tensor(prime).view(-1, 1))
            ids = []
            for _ in range(400):
                ids.append(int(draw(last)[0]))
                last = stepper.step(draw.ids)
        texts.append(VOCAB.decode(ids))
    assert texts[0] == texts[1]
    assert len(set(texts[0])) >= 3
