"""The Kneser–Ney n-gram baseline per corpus: fit time, the order chosen on validation, nats/char by order.

    python benchmarks/ngram.py                                  # grimm and tinyshakespeare, orders 1..8
    python benchmarks/ngram.py --corpora grimm --max-order 10   # up to 10-grams

The split and the scored characters are the LM task's (``LMData``, ``evaluate_lm``'s streams), so
the numbers stand beside a recurrent run's val_loss. Times are the process's CPU seconds (one
thread: numpy's sorts and lookups do not use more) and wall seconds; the corpus load is apart.
"""

from __future__ import annotations

import argparse
import time

from chargen.models.ngram_lm import choose_order, count_ngrams
from chargen.tasks.lm import LMData


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", nargs="+", default=["grimm", "tinyshakespeare"])
    parser.add_argument("--max-order", type=int, default=8)
    args = parser.parse_args()
    for corpus in args.corpora:
        data = LMData.load(corpus, 0.1)
        cpu, wall = time.process_time(), time.perf_counter()
        counts = count_ngrams(data.train, len(data.vocab), args.max_order)
        counted = time.process_time() - cpu, time.perf_counter() - wall
        choice = choose_order(counts, data.val)
        total = time.process_time() - cpu, time.perf_counter() - wall
        entries = sum(len(keys) for keys, _, _ in counts.levels[: choice.order])
        print(f"{corpus}: {data.train.numel():,} training characters, V = {len(data.vocab)}; "
              f"counted 1..{args.max_order} in {counted[0]:.2f} s CPU ({counted[1]:.2f} s wall), "
              f"chose in {total[0] - counted[0]:.2f} s CPU; fit {total[0]:.2f} s CPU ({total[1]:.2f} s wall)")
        print(f"  chosen: {choice.order}-gram, {choice.nats:.4f} nats/char on {data.val.numel():,} validation "
              f"characters; {entries:,} n-grams ({16 * entries / 2**20:.1f} MiB saved)")
        print("  by order: " + "  ".join(f"{n}: {v:.4f}" for n, v in choice.by_order.items()))


if __name__ == "__main__":
    main()
