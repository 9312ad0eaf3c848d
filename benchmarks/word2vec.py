"""word2vec benchmarks: time per update against vocabulary size (full softmax vs negative sampling), and
chargen's skip-gram against gensim's (sg=1) on the same corpus and settings: time, loss, WordSim353, analogies.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/word2vec.py            # both parts
    python benchmarks/word2vec.py --part updates                         # the complexity table only

Needs the ``bench`` extra (``pip install -e .[bench]``: gensim, whose test data ships wordsim353.tsv and
questions-words.txt). Both trainers run in this one process with the same thread count, one after the
other, so their times are comparable even on a loaded machine (the load average is recorded).
Writes ``docs/report/results/exercises/word2vec.json`` (read by ``chargen.report.exercises``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from chargen.experiments import word2vec as w2v

OUT = Path(__file__).resolve().parents[1] / "docs" / "report" / "results" / "exercises" / "word2vec.json"


def time_updates(vocab_sizes: list[int], dim: int = 100, batch: int = 256, negatives: int = 5,
                 reps: int = 5) -> list[dict[str, float]]:
    """Milliseconds per SGD update of ``batch`` pairs (gradients + parameter update) for each loss and V."""
    rows = []
    gen = torch.Generator().manual_seed(0)
    for V in vocab_sizes:
        w_in = torch.randn(V, dim, generator=gen) * 0.1
        w_out = torch.randn(V, dim, generator=gen) * 0.1
        c = torch.randint(V, (batch,), generator=gen)
        o = torch.randint(V, (batch,), generator=gen)
        noise = torch.randint(V, (batch, negatives), generator=gen)

        def negative() -> None:
            _, g_v, g_o, g_k = w2v.negative_loss_grads(w_in[c], w_out[o], w_out[noise])
            rows_ = torch.cat([o.unsqueeze(1), noise], 1).view(-1)
            w_out.index_add_(0, rows_, torch.cat([g_o.unsqueeze(1), g_k], 1).view(-1, dim), alpha=-1e-3)
            w_in.index_add_(0, c, g_v, alpha=-1e-3)

        def softmax() -> None:
            _, g_v, g_u = w2v.softmax_loss_grads(w_in[c], o, w_out)
            w_out.add_(g_u, alpha=-1e-3)
            w_in.index_add_(0, c, g_v, alpha=-1e-3)

        row: dict[str, float] = {"vocab": V}
        for name, fn in (("negative_ms", negative), ("softmax_ms", softmax)):
            fn()  # warm-up
            times = []
            for _ in range(reps):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            row[name] = 1e3 * float(np.median(times))
        row["ratio"] = row["softmax_ms"] / row["negative_ms"]
        rows.append(row)
        print(f"V={V:>7,}  negative {row['negative_ms']:8.2f} ms  softmax {row['softmax_ms']:9.2f} ms  "
              f"x{row['ratio']:.0f}", flush=True)
    return rows


def compare_gensim(seeds: list[int], threads: int, epochs: int) -> dict:
    from gensim.models import Word2Vec as GensimWord2Vec
    from gensim.models import KeyedVectors
    from gensim.test.utils import datapath

    sentences = w2v.load_sentences(w2v.BOOKS)
    pairs = w2v.read_word_pairs(datapath("wordsim353.tsv"))
    settings = w2v.Word2VecSettings(epochs=epochs)
    runs = []
    for seed in seeds:
        t = time.perf_counter()
        g = GensimWord2Vec(sentences, vector_size=settings.dim, window=settings.window, min_count=settings.min_count,
                           sample=settings.sample, sg=1, hs=0, negative=settings.negatives, ns_exponent=0.75,
                           alpha=settings.lr, epochs=settings.epochs, workers=threads, seed=seed)
        g_seconds = time.perf_counter() - t
        settings.seed = seed
        t = time.perf_counter()
        ours = w2v.train(sentences, settings)
        our_seconds = time.perf_counter() - t

        ours_look = w2v.vector_lookup(ours)
        def gensim_look(word: str):  # noqa: E306
            return g.wv[word] if word in g.wv else None
        # judge both on the pairs both cover, so the two correlations use the same pairs
        both = [p for p in pairs if ours_look(p[0]) is not None and ours_look(p[1]) is not None
                and gensim_look(p[0]) is not None and gensim_look(p[1]) is not None]
        kv = KeyedVectors(settings.dim)
        kv.add_vectors(ours.vocab.words, ours.input.numpy())
        run = {
            "seed": seed,
            "gensim": {"seconds": g_seconds, "vocab": len(g.wv),
                       "wordsim353": w2v.word_similarity(gensim_look, both)["spearman"],
                       "analogy": g.wv.evaluate_word_analogies(datapath("questions-words.txt"))[0]},
            "chargen": {"seconds": our_seconds, "vocab": len(ours.vocab), "pairs": sum(h["pairs"] for h in ours.history),
                        "bce": ours.history[-1]["bce"], "loss_per_pair": ours.history[-1]["loss"],
                        "history": ours.history,
                        "wordsim353": w2v.word_similarity(ours_look, both)["spearman"],
                        "analogy": kv.evaluate_word_analogies(datapath("questions-words.txt"))[0]},
            "wordsim_pairs_covered": len(both), "wordsim_pairs": len(pairs),
            "neighbours": {w: {"chargen": [x for x, _ in w2v.neighbours(ours, w, 5)],
                               "gensim": [x for x, _ in g.wv.most_similar(w, topn=5)]}
                           for w in ("king", "species", "water", "love") if w in g.wv and w in ours.vocab.index},
        }
        runs.append(run)
        print(json.dumps({k: v for k, v in run.items() if k != "neighbours"}, default=str)[:600], flush=True)
    return {
        "corpus": list(w2v.BOOKS), "tokens": sum(map(len, sentences)), "sentences": len(sentences),
        "settings": {**w2v.Word2VecSettings(epochs=epochs).__dict__, "seed": seeds}, "threads": threads,
        "runs": runs,
    }


def _commit() -> str | None:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "updates", "gensim"], default="all")
    parser.add_argument("--threads", type=int, default=1, help="torch threads and gensim workers (the same)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--vocab-sizes", default="1000,4000,16000,64000")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    doc = json.loads(args.out.read_text()) if args.out.exists() else {}
    doc["machine"] = {"cpu_count": os.cpu_count(), "threads": args.threads, "load_average": os.getloadavg(),
                      "python": platform.python_version(), "torch": torch.__version__,
                      "command": " ".join(["python", *sys.argv]), "commit": _commit()}
    if args.part in ("all", "updates"):
        doc["updates"] = {"batch": 256, "dim": 100, "negatives": 5, "threads": args.threads,
                          "command": doc["machine"]["command"], "load_average": os.getloadavg(),
                          "rows": time_updates([int(v) for v in args.vocab_sizes.split(",")])}
    if args.part in ("all", "gensim"):
        doc["gensim"] = compare_gensim([int(s) for s in args.seeds.split(",")], args.threads, args.epochs)
        doc["gensim"]["command"] = doc["machine"]["command"]
        doc["machine"]["load_average_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
