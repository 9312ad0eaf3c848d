"""The surname classifier side by side (issue 25): candidates on the development sets, then the shipped one on the test sets.

    python benchmarks/classifier.py [--model surnames] [--candidate NAME=RUN[,RUN...] ...]
                                    [--generator surnames-gen] [--dev-only] [--json out.json]

1. **Development** (every choice is made here): the tutorial's validation split ("val", in
   distribution) and the Faker development part ("dev", out of distribution). For each candidate
   (``--candidate lstm=RUN1,RUN2,RUN3``: one network shape, one run per seed) the mean and
   spread over seeds of the network alone (its softmax), and fused with the n-gram naive Bayes at
   the weight chosen on the development sets (``classify_calibrate.choose_fusion``); beside them
   the n-gram alone, trained on the tutorial only and on the same names as the networks.
2. **The shipped classifier** (``--model``): per-language error analysis on dev, the
   accuracy-coverage curve on dev and on the Faker test part, and its "unsure" threshold.
3. **Test, read once**: the tutorial test split (accuracy, balanced accuracy, ECE) and the Faker
   test part (top-1, top-3, ECE) against the n-gram baseline on the same training names, with
   the issue's targets marked met / MISSED; the speed of 10,000 names on one thread.
4. **The generator** (``--generator``): the share of its names the shipped classifier puts in
   the language asked for, and the share that are new.

Needs the names corpus (``CHARGEN_MIRROR`` or the network). One torch thread throughout.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from chargen import checkpoint
from chargen.calibration import accuracy_coverage, reliability
from chargen.data.faker_names import output_path, training_names
from chargen.data.names import load_names
from chargen.ngram import BASELINE_ALPHA, NaiveBayes, train_baseline
from chargen.tasks.classify import classifier_log_probs, classify_names, name_log_probs
from chargen.tasks.classify_calibrate import choose_fusion, labelled_set
from chargen.tasks.classify_eval import (
    baseline_for, error_table, evaluate_file, evaluate_test_split, extra_of, labelled_metrics,
)
from chargen.tasks.generate import GenerateTask

CPU = torch.device("cpu")
Sets = dict[str, tuple[list[str], list[frozenset[int]]]]


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Print a plain aligned table (floats with 4 decimals)."""
    cells = [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))


def spread(values: list[float]) -> str:
    """``mean ± sd`` over seeds (just the value for one)."""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def dev_row(logp: dict[str, torch.Tensor], sets: Sets, C: int) -> dict[str, float]:
    """val top-1 and balanced accuracy, dev top-1, top-3, balanced accuracy and ECE, and dev top-1
    with the names typed in lower case (``dev_lower``: what case augmentation is for)."""
    val = labelled_metrics(logp["val"], sets["val"][1], C)
    dev = labelled_metrics(logp["dev"], sets["dev"][1], C)
    lower = labelled_metrics(logp["dev_lower"], sets["dev"][1], C)
    return {"val_top1": val["top1"], "val_balanced": val["balanced_accuracy"], "dev_top1": dev["top1"],
            "dev_top3": dev["top3"], "dev_balanced": dev["balanced_accuracy"], "dev_ece": dev["ece"],
            "dev_lower_top1": lower["top1"]}


COLUMNS = ["val_top1", "val_balanced", "dev_top1", "dev_top3", "dev_balanced", "dev_ece", "dev_lower_top1"]


def compare_candidates(candidates: dict[str, list[Path]], sets: Sets, data: Any) -> dict[str, Any]:
    """Every candidate alone and fused on the development sets; the n-gram models beside them."""
    C = len(data.languages)
    results: dict[str, Any] = {}
    nbs = {"n-gram, tutorial only": train_baseline(data, alpha=BASELINE_ALPHA)}
    trained = training_names(data, "faker")
    nbs["n-gram, tutorial + Faker train"] = NaiveBayes(data.languages, alpha=BASELINE_ALPHA).fit(trained.names,
                                                                                                 trained.targets)
    typed = {**{k: names for k, (names, _) in sets.items()}, "dev_lower": [n.lower() for n in sets["dev"][0]]}
    nb_logp = {name: {k: nb.log_probs(names) for k, names in typed.items()} for name, nb in nbs.items()}
    for name, logp in nb_logp.items():
        results[name] = {"seeds": 1, **{k: [v] for k, v in dev_row(logp, sets, C).items()}}
    for label, runs in candidates.items():
        alone: dict[str, list[float]] = {}
        fused: dict[str, list[float]] = {}
        weights = []
        for run in runs:
            loaded = checkpoint.load(run, task="classify")
            extra = loaded.config["task_config"]["options"].get("extra", "none")
            ngram = nb_logp["n-gram, tutorial + Faker train" if extra == "faker" else "n-gram, tutorial only"]
            net = {k: name_log_probs(loaded.model, loaded.vocab, names, CPU) for k, names in typed.items()}
            train = training_names(data, extra)
            counts = torch.zeros(C, dtype=torch.float64)
            for t in train.targets:
                counts[list(t)] += 1
            fusion, _, _ = choose_fusion({k: net[k] for k in sets}, ngram, sets, (counts / counts.sum()).log().tolist())
            weights.append(f"{fusion.ngram_weight}/{fusion.prior_weight}")
            for k, v in dev_row(net, sets, C).items():
                alone.setdefault(k, []).append(v)
            z = {k: torch.log_softmax(fusion.scores(net[k], ngram[k]), dim=1) for k in typed}
            for k, v in dev_row(z, sets, C).items():
                fused.setdefault(k, []).append(v)
        results[f"{label} alone"] = {"seeds": len(runs), **alone}
        results[f"{label} + n-gram ({', '.join(weights)})"] = {"seeds": len(runs), **fused}
    rows = [[name, r["seeds"], *(spread(r[c]) for c in COLUMNS)] for name, r in results.items()]
    table("Development sets (val: tutorial validation split; dev: Faker development part); mean ± sd over seeds; "
          "fused: n-gram weight / prior weight chosen on val + dev, before temperature (ECE there: T = 1)",
          ["model", "seeds", *COLUMNS], rows)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="surnames")
    parser.add_argument("--candidate", action="append", default=[], metavar="NAME=RUN[,RUN...]",
                        help="runs to compare on the development sets (one per seed)")
    parser.add_argument("--generator", default="surnames-gen", help="'' to skip the generator")
    parser.add_argument("--dev-only", action="store_true",
                        help="stop after the development sets and the shipped model's dev analysis (for choosing)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_names()
    C = len(data.languages)
    sets: Sets = {"val": (data.splits["val"], data.targets("val")), "dev": labelled_set(output_path("dev"), data.languages)}
    result: dict[str, Any] = {}
    if args.candidate:
        candidates = {}
        for spec in args.candidate:
            label, _, runs = spec.partition("=")
            candidates[label] = [Path(r) for r in runs.split(",") if r]
        result["candidates"] = compare_candidates(candidates, sets, data)

    loaded = checkpoint.load(args.model, task="classify")
    calibration = loaded.config.get("calibration", {})
    threshold = float(calibration.get("threshold", 0.0))
    print(f"\nshipped: {loaded.path} (n-gram weight {calibration.get('ngram_weight')}, prior weight "
          f"{calibration.get('prior_weight')}, temperature {calibration.get('temperature', 1.0):.3f}, "
          f"unsure below {threshold})")
    dev_logp = classifier_log_probs(loaded, sets["dev"][0], CPU)
    shipped_nb = baseline_for(data, extra_of(loaded))
    nb_rows = {r[0]: r for r in error_table(shipped_nb.log_probs(sets["dev"][0]), sets["dev"][1], data.languages)}
    table("Per-language errors on the Faker development part: the shipped classifier, and the n-gram alone "
          "trained on the same names",
          ["language", "names", "top-1 recall", "top-3 recall", "most mistaken for", "n-gram top-1", "n-gram mistakes"],
          [[*r, nb_rows[r[0]][2], nb_rows[r[0]][4]] for r in error_table(dev_logp, sets["dev"][1], data.languages)])
    if args.dev_only:
        table("Accuracy-coverage on the Faker development part", ["coverage", "accuracy", "threshold"],
              [[f"{d['coverage']:.0%}", d["accuracy"], d["threshold"]]
               for d in accuracy_coverage(dev_logp.exp(), sets["dev"][1])])
        return
    test_set = labelled_set(output_path("test"), data.languages)
    test_logp = classifier_log_probs(loaded, test_set[0], CPU)
    curves = {"dev": accuracy_coverage(dev_logp.exp(), sets["dev"][1]),
              "test": accuracy_coverage(test_logp.exp(), test_set[1])}
    table("Accuracy-coverage (answer only the most confident x% of names; Faker dev / Faker test)",
          ["coverage", "dev accuracy", "dev threshold", "test accuracy", "test threshold"],
          [[f"{d['coverage']:.0%}", d["accuracy"], d["threshold"], t["accuracy"], t["threshold"]]
           for d, t in zip(curves["dev"], curves["test"])])
    unsure = {k: float((lp.exp().max(1).values < threshold).float().mean()) for k, lp in
              (("dev", dev_logp), ("test", test_logp))}
    answered = {k: reliability(lp.exp(), ts) for k, lp, ts in (("dev", dev_logp, sets["dev"][1]),
                                                                ("test", test_logp, test_set[1]))}
    result.update({"coverage": curves, "unsure_share": unsure, "threshold": threshold})

    test = evaluate_test_split(loaded, CPU)["metrics"]
    ood = evaluate_file(loaded, CPU, output_path("test"))["metrics"]
    nb_tutorial = labelled_metrics(train_baseline(data, alpha=BASELINE_ALPHA).log_probs(test_set[0]), test_set[1], C)
    rng = random.Random(0)
    pool = data.splits["test"] + test_set[0]
    many = [rng.choice(pool) for _ in range(10_000)]
    start, cpu_start = time.perf_counter(), time.process_time()
    classify_names(loaded, many)
    batched_s, batched_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    size_mb = sum(f.stat().st_size for f in loaded.path.iterdir() if f.suffix in (".pt", ".json")) / 1e6
    rows = [
        ("tutorial test accuracy", test["accuracy"], ">= 0.85", test["accuracy"] >= 0.85),
        ("tutorial test balanced accuracy", test["balanced_accuracy"], ">= 0.75", test["balanced_accuracy"] >= 0.75),
        ("tutorial test ECE (in distribution)", test["ece"], "<= 0.05", test["ece"] <= 0.05),
        ("tutorial test accuracy, n-gram same data", test["baseline_accuracy"], "", None),
        ("tutorial test balanced accuracy, n-gram", test["baseline_balanced_accuracy"], "", None),
        ("Faker test top-1", ood["top1"], f">= {ood['baseline_top1'] + 0.05:.4f} (n-gram + 0.05)",
         ood["top1"] >= ood["baseline_top1"] + 0.05),
        ("Faker test top-1, n-gram same data", ood["baseline_top1"], "", None),
        ("Faker test top-1, n-gram tutorial only", nb_tutorial["top1"], "", None),
        ("Faker test top-3", ood["top3"], ">= 0.92", ood["top3"] >= 0.92),
        ("Faker test top-3, n-gram same data", ood["baseline_top3"], "", None),
        ("Faker test ECE (out of distribution)", ood["ece"], "<= 0.05", ood["ece"] <= 0.05),
        ("Faker test balanced accuracy", ood["balanced_accuracy"], f"n-gram {ood['baseline_balanced_accuracy']:.4f}",
         ood["balanced_accuracy"] > ood["baseline_balanced_accuracy"]),
        ("Faker dev / test share marked unsure", unsure["dev"], f"test {unsure['test']:.4f}", None),
        ("Faker dev ECE", answered["dev"]["ece"], "", None),
        ("classify 10,000 names: wall s, 1 thread", batched_s, "(includes waiting on a busy machine)", None),
        ("classify 10,000 names: CPU s", batched_cpu_s, "<= 5", batched_cpu_s <= 5),
        ("model size, MB (model.pt + JSON)", size_mb, "<= 10", size_mb <= 10),
    ]
    result.update({"test": test, "faker_test": ood, "faker_test_ngram_tutorial_only": nb_tutorial["top1"],
                   "classify_10k_s": batched_s, "classify_10k_cpu_s": batched_cpu_s, "size_mb": size_mb})
    if args.generator:
        gen = checkpoint.load(args.generator, task="generate")
        g = GenerateTask.evaluate_saved(gen, CPU)["metrics"]
        result["generator"] = g
        agrees = g.get("classifier_agrees", float("nan"))
        rows += [("generator: classified as asked", agrees, ">= 0.70", agrees >= 0.70),
                 ("generator: new names (in no training list)", g["new_share"], "(reported)", None)]
    width = max(len(r[0]) for r in rows)
    print(f"\nTest sets, read once (torch threads: {torch.get_num_threads()})")
    for name, value, target, ok in rows:
        mark = "" if ok is None else ("met" if ok else "MISSED")
        print(f"{name:<{width}}  {value:>9.4f}  {target:<34} {mark}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    sys.exit(0)


if __name__ == "__main__":
    main()
