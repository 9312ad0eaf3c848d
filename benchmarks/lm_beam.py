"""Beam search against greedy decoding: the log-probability of the continuation each finds, per prime.

    python benchmarks/lm_beam.py                       # the shipped grimm model, beams 1, 3, 8
    python benchmarks/lm_beam.py --model RUN --length 80 --beams 1 2 4 16

Greedy's text is scored with chargen.generation.score (the same measure `chargen score` prints); beam search
reports its own, which a test proves equal to the score of its text. One thread, so the timing
column is comparable between rows of one run (not across machines).
"""

from __future__ import annotations

import argparse
import time

import torch

from chargen import checkpoint
from chargen.generation.beam import beam_search
from chargen.generation.sample import generate
from chargen.generation.score import score_text

PRIMES = ["The king", "Once upon a time", "She said", "In the forest", "Hansel", "The wolf", "At night", "The miller"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="grimm")
    parser.add_argument("--length", type=int, default=40)
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 3, 8])
    args = parser.parse_args()
    torch.set_num_threads(1)
    path, _ = checkpoint.choose(args.model)
    loaded = checkpoint.load(path, task="lm")
    print(f"model {path}, {args.length} characters after each of {len(PRIMES)} primes; log-probability in nats")
    print(f"{'prime':<18}{'greedy':>9}" + "".join(f"{'beam ' + str(k):>9}" for k in args.beams))
    totals = [0.0] * (1 + len(args.beams))
    seconds = [0.0] * (1 + len(args.beams))
    for prime in PRIMES:
        start = time.perf_counter()
        text = "".join(generate(loaded.model, loaded.vocab, prime=prime, length=args.length, temperature=0))
        seconds[0] += time.perf_counter() - start
        row = [score_text(loaded.model, loaded.vocab, text, prime=prime)[0].log_prob]
        for i, k in enumerate(args.beams, 1):
            start = time.perf_counter()
            row.append(beam_search(loaded.model, loaded.vocab, prime, args.length, k).log_prob)
            seconds[i] += time.perf_counter() - start
        totals = [t + r for t, r in zip(totals, row)]
        print(f"{prime:<18}" + "".join(f"{r:>9.2f}" for r in row))
    print(f"{'mean':<18}" + "".join(f"{t / len(PRIMES):>9.2f}" for t in totals))
    print(f"{'seconds (total)':<18}" + "".join(f"{s:>9.2f}" for s in seconds))


if __name__ == "__main__":
    main()
