"""What constraints cost and whether max-copy holds, on the shipped grimm model: plain sampling, copy tracking,
the max-copy mask and a pattern, side by side, then a brute-force check of max-copy over many samples.

    python benchmarks/constraints.py [--model grimm --chars 2000 --repeats 5 --samples 100 --length 500
                                      --max-copy 12 --threads 1 --corpora tinyshakespeare]

One process, one thread (unless ``--threads``); rows interleaved within each repetition so machine noise
hits them alike; per-character times use each row's best repetition. Every row is one stream of
``chargen.generation.sample.generate_streams`` (the logits pipeline ``chargen sample`` runs); only the constraint differs:

- ``plain``: no constraint (the yardstick);
- ``copy tracking``: plus a ``CopyTracker`` fed each character (what ``novelty`` costs; target <= 25 %);
- ``max-copy N``: plus ``CopyMask(N)``'s ``allowed`` and ``advance`` each step (target <= 25 %);
- ``pattern``: plus a ``PatternMask`` of at most 50 states (target <= 50 %).

Then ``--samples`` samples of ``--length`` characters under ``--max-copy`` (one batch), every window of
N + 1 characters searched in the corpus with ``str.find`` (target: none found), beside the same samples
without the mask for scale; and the index's build time, size and peak memory for the run's corpus (and
for each of ``--corpora``).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch

from chargen import checkpoint
from chargen.data.corpora import load_corpus
from chargen.generation.copies import CopyMask, CopyTracker, CorpusIndex, index_for_run, novelty
from chargen.generation.pattern import PatternMask
from chargen.generation.sample import generate_streams
from chargen.vocab import Vocab

# sentences about a king, a queen or a miller, as many as the length holds (30 states on grimm's characters)
PATTERN = r"(The (king|queen|miller) (was|had|said) [a-z ,]+[.!?] )+"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def build_stats(name: str, text: str) -> dict[str, Any]:
    """Build time, array size and the growth of peak memory (meaningful for the first build of a process)."""
    before = peak_mb()
    start = time.perf_counter()
    index = CorpusIndex.build(text)
    seconds = time.perf_counter() - start
    return {"corpus": name, "chars": len(text), "states": index.states, "edges": len(index.edge_char),
            "build_s": round(seconds, 2), "arrays_mb": round(index.nbytes / 2**20, 1),
            "peak_growth_mb": round(peak_mb() - before, 1)}


def sample(model: torch.nn.Module, vocab: Vocab, n: int, length: int, seed: int, masks: Sequence[Any] = (),
           tracker: bool = False, index: CorpusIndex | None = None) -> tuple[list[str], float]:
    """``n`` streams of ``length`` characters at temperature 1 through ``chargen.generation.sample.generate_streams`` (the
    logits pipeline ``chargen sample`` runs) under ``masks``, with a ``CopyTracker`` fed each piece when
    ``tracker``; the texts and the seconds taken."""
    trackers = [CopyTracker(index) for _ in range(n)] if tracker and index is not None else []
    texts = [""] * n
    start = time.perf_counter()
    for pieces in generate_streams(model, vocab, n=n, length=length, seed=seed, masks=masks):
        for tr, piece in zip(trackers, pieces):
            tr.feed(piece)
        texts = [t + p for t, p in zip(texts, pieces)]
    return texts, time.perf_counter() - start


def overheads(model: torch.nn.Module, vocab: Vocab, index: CorpusIndex, chars: int, repeats: int,
              max_copy: int) -> dict[str, Any]:
    pattern = PatternMask(PATTERN, vocab, chars, end="\n")
    rows: dict[str, dict[str, Any]] = {
        "plain": {},
        "copy tracking": {"tracker": True, "index": index},
        f"max-copy {max_copy}": {"masks": [CopyMask(index, vocab, max_copy)]},
        f"pattern ({pattern.states} states)": {"masks": [pattern]},
    }
    best = {name: float("inf") for name in rows}
    sample(model, vocab, 1, 50, 0)  # warm-up
    for r in range(repeats):
        for name, kw in rows.items():
            _, seconds = sample(model, vocab, 1, chars, seed=r, **kw)
            best[name] = min(best[name], seconds)
    base = best["plain"] / chars
    return {name: {"us_per_char": round(best[name] / chars * 1e6, 1),
                   "overhead": round(best[name] / chars / base - 1, 3)} for name in rows}


def max_copy_check(model: torch.nn.Module, vocab: Vocab, index: CorpusIndex, samples: int, length: int,
                   max_copy: int) -> dict[str, Any]:
    corpus = index.text
    texts, seconds = sample(model, vocab, samples, length, seed=1, masks=[CopyMask(index, vocab, max_copy)])
    plain, _ = sample(model, vocab, samples, length, seed=1)
    w = max_copy + 1
    found = [t[i : i + w] for t in texts for i in range(len(t) - w + 1) if corpus.find(t[i : i + w]) >= 0]
    reports = [novelty(t, index) for t in texts]
    plain_reports = [novelty(t, index) for t in plain]
    return {
        "samples": samples, "length": length, "max_copy": max_copy, "seconds": round(seconds, 2),
        "windows_checked": sum(max(0, len(t) - w + 1) for t in texts),
        f"spans_of_{w}_plus_found": len(found), "examples": found[:3],
        "longest_copy": max(r["longest_copy"] for r in reports),
        "longest_copy_without_mask": max(r["longest_copy"] for r in plain_reports),
        "mean_copy_without_mask": round(statistics.mean(r["longest_copy"] for r in plain_reports), 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="grimm")
    parser.add_argument("--chars", type=int, default=2000, help="characters per timed sample")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--length", type=int, default=500)
    parser.add_argument("--max-copy", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--corpora", nargs="*", default=[], help="more corpora to time the index build on")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    loaded = checkpoint.load(args.model, task="lm")
    corpus_name = loaded.config["task_config"]["options"]["corpus"]
    results: dict[str, Any] = {"model": str(loaded.path), "threads": args.threads, "pattern": PATTERN}
    results["index"] = [build_stats(corpus_name, load_corpus(corpus_name).text)]
    results["index"] += [build_stats(name, load_corpus(name).text) for name in args.corpora]
    start = time.perf_counter()
    index = index_for_run(loaded.path, loaded.config)  # the cache beside the checkpoint, built on first use
    results["index_for_run_s"] = round(time.perf_counter() - start, 2)
    results["overhead"] = overheads(loaded.model, loaded.vocab, index, args.chars, args.repeats, args.max_copy)
    results["max_copy"] = max_copy_check(loaded.model, loaded.vocab, index, args.samples, args.length, args.max_copy)

    for row in results["index"]:
        print(f"index {row['corpus']}: {row['chars']:,} chars -> {row['states']:,} states, {row['edges']:,} edges; "
              f"built in {row['build_s']} s, {row['arrays_mb']} MB of arrays, peak memory +{row['peak_growth_mb']} MB")
    print(f"index_for_run (cache beside the checkpoint, or a build): {results['index_for_run_s']} s")
    print(f"\nper character, one stream, {args.threads} thread(s), best of {args.repeats} x {args.chars} chars:")
    for name, row in results["overhead"].items():
        print(f"  {name:<24} {row['us_per_char']:>8} us   {row['overhead']:+.1%}")
    check = results["max_copy"]
    w = args.max_copy + 1
    print(f"\nmax-copy {args.max_copy}: {check['samples']} samples x {check['length']} chars in {check['seconds']} s; "
          f"{check['windows_checked']:,} windows of {w} searched: {check[f'spans_of_{w}_plus_found']} found in the "
          f"corpus; longest copy {check['longest_copy']} (without the mask: longest "
          f"{check['longest_copy_without_mask']}, mean {check['mean_copy_without_mask']})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
    return 1 if check[f"spans_of_{w}_plus_found"] else 0


if __name__ == "__main__":
    sys.exit(main())
