"""Transformer generation with the key/value cache: time per character for a short and a long text (flat = the cache works).

    python benchmarks/transformer_generate.py [--model RUN] [--short 1000 --long 10000 --repeats 3 --threads 1]
    python benchmarks/transformer_generate.py --tiny      # a small random model, seconds: proves the script runs

Without ``--model`` a random model of the default transformer shape (``ModelConfig``'s: 4 blocks of
width 128, 4 heads, context 128, learned positions) over a 96-character vocabulary is timed: the
weights do not change the arithmetic. Rows, repetitions interleaved so that machine noise hits
them alike, each row's best repetition reported, in CPU time of this process (threads fixed):

- ``cached, SHORT`` and ``cached, LONG``: ``chargen.sample.generate`` (what ``chargen sample`` runs),
  one position per character on the cache, half the window re-primed whenever it is full;
- ``uncached, SHORT``: the same text with the full window's forward at every character
  (``lean=False``), for scale.

The issue's target: the long text's time per character within 20 % of the short one's (``ratio``
at most 1.20). Both texts cross the context many times, so both pay the re-primes at the same rate.
"""

from __future__ import annotations

import argparse
import time

import torch

from chargen import checkpoint
from chargen.models import ModelConfig, TransformerLM, build_model
from chargen.sample import generate
from chargen.vocab import Vocab

TARGET = 1.20


def random_model(tiny: bool) -> tuple[TransformerLM, Vocab]:
    vocab = Vocab.from_text("".join(chr(c) for c in range(32, 127)) + "\n")
    sizes = dict(n_layer=2, n_head=2, d_model=32, context=32) if tiny else {}
    torch.manual_seed(0)
    model = build_model(ModelConfig(family="transformer", vocab_size=len(vocab), **sizes))
    assert isinstance(model, TransformerLM)
    return model.eval(), vocab


def per_char(model: TransformerLM, vocab: Vocab, length: int, lean: bool) -> float:
    """CPU seconds per character (the process's own time: another process on the cores does not count)."""
    started = time.process_time()
    text = "".join(generate(model, vocab, length=length, seed=1, lean=lean, chunk_size=250))
    elapsed = time.process_time() - started
    assert len(text) == length
    return elapsed / length


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a transformer run directory (default: a random model of the default shape)")
    parser.add_argument("--short", type=int, default=1000)
    parser.add_argument("--long", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tiny", action="store_true", help="a small random model, 200 vs 2000 characters, 1 repeat")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.tiny:
        args.short, args.long, args.repeats = 200, 2000, 1
    if args.model:
        loaded = checkpoint.load(args.model, task="lm")
        if not isinstance(loaded.model, TransformerLM):
            parser.error(f"{args.model} is not a transformer")
        model, vocab = loaded.model, loaded.vocab
    else:
        model, vocab = random_model(args.tiny)
    cfg = model.cfg
    print(f"transformer {cfg.n_layer} x {cfg.d_model}, {cfg.n_head} heads, context {cfg.context}, {cfg.positions} "
          f"positions; {sum(p.numel() for p in model.parameters()):,} parameters; {args.threads} thread(s)")
    rows = {f"cached, {args.short:,}": (args.short, True), f"cached, {args.long:,}": (args.long, True),
            f"uncached, {args.short:,}": (args.short, False)}
    best = {name: float("inf") for name in rows}
    per_char(model, vocab, min(args.short, 100), True)  # warm-up: first-call allocations and kernel choice
    for _ in range(args.repeats):
        for name, (length, lean) in rows.items():
            best[name] = min(best[name], per_char(model, vocab, length, lean))
    for name, seconds in best.items():
        print(f"{name:>20} characters: {seconds * 1e6:9.1f} CPU us/char  ({1 / seconds:,.0f} chars per CPU second)")
    short, long = best[f"cached, {args.short:,}"], best[f"cached, {args.long:,}"]
    ratio = long / short
    verdict = "flat (target met)" if ratio <= TARGET else "NOT flat (target missed)"
    print(f"ratio long/short per character: {ratio:.3f} (target <= {TARGET:.2f}): {verdict}")
    print(f"the cache against the full window per character: {best[f'uncached, {args.short:,}'] / short:.2f}x faster")


if __name__ == "__main__":
    main()
