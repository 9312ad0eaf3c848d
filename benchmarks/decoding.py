"""What the decoding controls cost per character on the shipped grimm model: plain temperature sampling, all controls, each alone.

    python benchmarks/decoding.py [--model grimm --chars 2000 --repeats 5 --threads 1]

One process, one thread (unless ``--threads``), one lean stream (``chargen.sample.generate``, what
``chargen sample`` runs); repetitions interleaved across the rows so that machine noise hits them
alike; each row's best repetition is compared with the plain row's. Times are this process's CPU
time (one thread), so other processes on a busy machine inflate them less than wall time. The
issue's target: all the controls on add at most 15% to the per-character time of plain
temperature sampling.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch

from chargen import checkpoint
from chargen.generation.logits import DecodeConfig, LogitsPipeline
from chargen.inference import LeanSampler, LeanStepper
from chargen.sample import generate

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
TARGET = 1.15  # all controls / plain, per character


def timed(model: Any, vocab: Any, chars: int, controls: dict[str, Any]) -> Callable[[], float]:
    def run() -> float:
        start = time.process_time()
        written = sum(map(len, generate(model, vocab, prime="The king", length=chars, seed=0, **controls)))
        assert written == chars
        return (time.process_time() - start) / chars

    return run


def sampler_only(model: Any, vocab: Any, chars: int, controls: dict[str, Any]) -> Callable[[], float]:
    """The pipeline and the draw alone, over the logits of one plain sample (recorded once): no model step."""
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
                                  context=vocab.encode("The king"))
        draw = LeanSampler(1, len(vocab), generators=[torch.Generator().manual_seed(0)], pipeline=pipeline)
        out = torch.empty(1, dtype=torch.long)
        with torch.inference_mode():
            start = time.process_time()
            for logits in recorded:
                draw(logits, out)
            return (time.process_time() - start) / chars

    return run


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
    rows = {"plain (temperature 0.8)": PLAIN, "all controls": {**PLAIN, **every}}
    rows.update({f"  {name} alone": {**PLAIN, **controls} for name, controls in ALONE.items()})
    runs = {name: timed(loaded.model, loaded.vocab, args.chars, controls) for name, controls in rows.items()}
    alone = {name: sampler_only(loaded.model, loaded.vocab, args.chars, controls) for name, controls in rows.items()}
    for run in [*runs.values(), *alone.values()]:  # warm-up
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    sampler: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name in runs:
            times[name].append(runs[name]())
            sampler[name].append(alone[name]())
    best = {name: min(t) for name, t in times.items()}
    plain = best["plain (temperature 0.8)"]
    cfg = loaded.model.cfg
    print(f"model {args.model}: {cfg.num_layers} x {cfg.hidden_size} {cfg.cell}, vocab {cfg.vocab_size}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.chars} characters x "
          f"{args.repeats} interleaved repeats; CPU time per character")
    print(f"{'row':<34}{'best us/char':>13}{'median':>9}{'vs plain':>10}{'sampler alone us':>18}")
    for name, t in times.items():
        print(f"{name:<34}{best[name] * 1e6:>13.1f}{sorted(t)[len(t) // 2] * 1e6:>9.1f}{best[name] / plain:>9.2f}x"
              f"{min(sampler[name]) * 1e6:>18.1f}")
    ratio = best["all controls"] / plain
    print(f"\nall controls / plain: {ratio:.3f} (target <= {TARGET}: {'ok' if ratio <= TARGET else 'MISSED'})")


if __name__ == "__main__":
    main()
