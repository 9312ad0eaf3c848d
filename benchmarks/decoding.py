"""What the decoding controls cost per character on the shipped grimm model: plain temperature sampling, all controls, each alone.

    python benchmarks/decoding.py [--model grimm --chars 2000 --repeats 5 --threads 1]

One process, one thread (unless ``--threads``), one lean stream (``chargen.generation.sample.generate``, what
``chargen sample`` runs). Every repetition runs every row once, in the same order (A B C A B C),
so that drifts in machine load hit the rows alike; each row reports the median of its
repetitions, and its ratio is the median of its per-repetition ratios to the plain row of the same
repetition. Times are this process's CPU time (``time.process_time``), so other processes on a
busy machine inflate them less than wall time. Beside the whole generation, the sampler alone
(the logits pipeline and the draw, replayed on recorded logits, no model step) is timed on the
one-stream fast path (``chargen.generation.lean_logits``) and on the general torch path it equals.
The issue's target: the controls add at most 15% to the per-character time of plain temperature
sampling, checked (a) for each control alone and (b) for all of them together.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch

from chargen import checkpoint
from chargen.generation.logits import DecodeConfig, LogitsPipeline
from chargen.generation.inference import LeanSampler, LeanStepper
from chargen.generation.sample import generate

PLAIN: dict[str, Any] = {"temperature": 0.8}
ALONE: dict[str, dict[str, Any]] = {
    "schedule 0.9:0.6": {"temperature": "0.9:0.6"},
    "top_k 40": {"top_k": 40},
    "top_p 0.9": {"top_p": 0.9},
    "min_p 0.05": {"min_p": 0.05},
    "typical 0.95": {"typical": 0.95},
    "repetition_penalty 1.2": {"repetition_penalty": 1.2},
    "no_repeat 12": {"no_repeat": 12},
}
TARGET = 1.15  # controls / plain, per character (each alone, and all together)
PLAIN_ROW = "plain (temperature 0.8)"


def timed(model: Any, vocab: Any, chars: int, controls: dict[str, Any]) -> Callable[[], float]:
    def run() -> float:
        start = time.process_time()
        written = sum(map(len, generate(model, vocab, prime="The king", length=chars, seed=0, **controls)))
        assert written == chars
        return (time.process_time() - start) / chars

    return run


def sampler_only(model: Any, vocab: Any, chars: int, controls: dict[str, Any], lean: bool = True
                 ) -> Callable[[], float]:
    """The pipeline and the draw alone, over the logits of one plain sample (recorded once): no model step.

    Each step's logits are copied into one buffer first, as a stepper returns them (on every row alike).
    """
    stepper = LeanStepper(model, 1)
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        last = stepper.prime(torch.tensor(vocab.encode("The king")).view(-1, 1))
        recorded = []
        for _ in range(chars):
            recorded.append(last.clone())
            probs = torch.softmax(last / PLAIN["temperature"], dim=-1)
            last = stepper.step(torch.multinomial(probs, 1, generator=generator).view(1))

    def run() -> float:
        pipeline = LogitsPipeline(DecodeConfig(**controls), 1, len(vocab), length=chars,
                                  context=vocab.encode("The king"), lean=lean)
        draw = LeanSampler(1, len(vocab), generators=[torch.Generator().manual_seed(0)], pipeline=pipeline)
        out = torch.empty(1, dtype=torch.long)
        buffer = torch.empty_like(recorded[0])
        with torch.inference_mode():
            start = time.process_time()
            for logits in recorded:
                draw(buffer.copy_(logits), out)
            return (time.process_time() - start) / chars

    return run


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="grimm")
    parser.add_argument("--chars", type=int, default=2000, help="characters per repetition")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = checkpoint.load(args.model, task="lm")
    every = {k: v for controls in ALONE.values() for k, v in controls.items()}
    rows = {PLAIN_ROW: PLAIN, "all controls": {**PLAIN, **every}}
    rows.update({f"  {name} alone": {**PLAIN, **controls} for name, controls in ALONE.items()})
    model, vocab = loaded.model, loaded.vocab
    timers = {"whole": {name: timed(model, vocab, args.chars, c) for name, c in rows.items()},
              "sampler": {name: sampler_only(model, vocab, args.chars, c) for name, c in rows.items()},
              "general": {name: sampler_only(model, vocab, args.chars, c, lean=False) for name, c in rows.items()}}
    for kind in timers.values():  # warm-up
        for run in kind.values():
            run()
    times: dict[str, dict[str, list[float]]] = {kind: {name: [] for name in rows} for kind in timers}
    for _ in range(args.repeats):  # interleaved: every row once per repetition
        for name in rows:
            for kind, runs in timers.items():
                times[kind][name].append(runs[name]())
    whole = times["whole"]
    ratios = {name: median([t / p for t, p in zip(whole[name], whole[PLAIN_ROW])]) for name in rows}
    cfg = model.cfg
    print(f"model {args.model}: {cfg.num_layers} x {cfg.hidden_size} {cfg.cell}, vocab {cfg.vocab_size}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.chars} characters x "
          f"{args.repeats} interleaved repeats; CPU time per character, medians")
    # the sampler rows vary far less than the whole ones (whose time is mostly the model step): the added
    # sampler time over the whole plain time is a steadier estimate of the same ratio on a busy machine
    sampler = {name: median(times["sampler"][name]) for name in rows}
    implied = {name: 1 + (sampler[name] - sampler[PLAIN_ROW]) / median(whole[PLAIN_ROW]) for name in rows}
    print(f"{'row':<32}{'us/char':>9}{'vs plain':>10}{'implied':>9}{'sampler us':>12}{'general path us':>17}")
    for name in rows:
        print(f"{name:<32}{median(whole[name]) * 1e6:>9.1f}{ratios[name]:>9.3f}x{implied[name]:>8.3f}x"
              f"{sampler[name] * 1e6:>12.1f}{median(times['general'][name]) * 1e6:>17.1f}")
    alone = {name: r for name, r in ratios.items() if name.endswith(" alone")}
    worst = max(alone, key=alone.__getitem__)
    print(f"\n(a) each control alone / plain: worst {worst.strip()} {alone[worst]:.3f} "
          f"(target <= {TARGET}: {'ok' if alone[worst] <= TARGET else 'MISSED'}; "
          f"{sum(r <= TARGET for r in alone.values())} of {len(alone)} within)")
    print(f"(b) all controls / plain: {ratios['all controls']:.3f} "
          f"(target <= {TARGET}: {'ok' if ratios['all controls'] <= TARGET else 'MISSED'})")
    print(f"implied by the sampler rows: worst alone {max(implied[n] for n in alone):.3f}, "
          f"all {implied['all controls']:.3f}")


if __name__ == "__main__":
    main()
