"""The surname classifier's targets (issue 13), measured on the shipped checkpoints and printed as met/missed.

    python benchmarks/classifier.py [--model surnames] [--generator surnames-gen] [--json out.json]

- test split: accuracy >= 0.85, balanced accuracy >= 0.75, ECE <= 0.05 (and the n-gram baseline);
- Faker test half (``corpora/surnames_faker_test.tsv``): top-1 >= baseline + 0.05, top-3 >= 0.90;
- ``classify_names`` on 10,000 names in seconds (batched), beside one name at a time on 200
  names at equal threads, as a ratio;
- the name generator re-measured with this classifier: >= 70% of samples classified as asked,
  >= 85% new names.

Needs the names corpus (``CHARGEN_MIRROR`` or the network). One torch thread throughout.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

from chargen import checkpoint
from chargen.data.names import load_names
from chargen.paths import PROJECT_ROOT
from chargen.tasks.classify_eval import evaluate_file, evaluate_test_split
from chargen.tasks.classify import classify_names
from chargen.tasks.generate import GenerateTask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="surnames")
    parser.add_argument("--generator", default="surnames-gen", help="'' to skip the generator")
    parser.add_argument("--names", type=Path, default=PROJECT_ROOT / "corpora" / "surnames_faker_test.tsv")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    loaded = checkpoint.load(args.model, task="classify")
    test = evaluate_test_split(loaded, cpu)["metrics"]
    ood = evaluate_file(loaded, cpu, args.names)["metrics"]

    data = load_names()
    pool = [n for s in ("train", "val", "test") for n in data.splits[s]]
    rng = random.Random(0)
    many = [rng.choice(pool) for _ in range(10_000)]
    start, cpu_start = time.perf_counter(), time.process_time()
    classify_names(loaded, many)
    batched_s, batched_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    few = many[:200]
    start = time.perf_counter()
    for name in few:
        classify_names(loaded, [name])
    single_per_name = (time.perf_counter() - start) / len(few)
    per_name = batched_s / len(many)

    rows = [
        ("test accuracy", test["accuracy"], ">= 0.85", test["accuracy"] >= 0.85),
        ("test balanced accuracy", test["balanced_accuracy"], ">= 0.75", test["balanced_accuracy"] >= 0.75),
        ("test ECE", test["ece"], "<= 0.05", test["ece"] <= 0.05),
        ("test accuracy, baseline", test["baseline_accuracy"], "(beaten)", test["accuracy"] > test["baseline_accuracy"]),
        ("test balanced accuracy, baseline", test["baseline_balanced_accuracy"], "(beaten)",
         test["balanced_accuracy"] > test["baseline_balanced_accuracy"]),
        ("OOD test half top-1", ood["top1"], f">= {ood['baseline_top1'] + 0.05:.4f} (baseline + 0.05)",
         ood["top1"] >= ood["baseline_top1"] + 0.05),
        ("OOD test half top-1, baseline", ood["baseline_top1"], "", None),
        ("OOD test half top-3", ood["top3"], ">= 0.90", ood["top3"] >= 0.90),
        ("OOD test half top-3, baseline", ood["baseline_top3"], "", None),
        ("OOD test half balanced accuracy", ood["balanced_accuracy"],
         f"baseline {ood['baseline_balanced_accuracy']:.4f}", ood["balanced_accuracy"] > ood["baseline_balanced_accuracy"]),
        ("classify 10,000 names: wall s (loaded machine)", batched_s, "seconds", batched_s < 10),
        ("classify 10,000 names: CPU s of this process", batched_cpu_s, "seconds", batched_cpu_s < 10),
        ("one name at a time / batched, per name", single_per_name / per_name, "(ratio)", None),
    ]
    result: dict[str, object] = {"test": test, "ood": ood, "classify_10k_s": batched_s, "classify_10k_cpu_s": batched_cpu_s,
                                 "single_over_batched": single_per_name / per_name}
    if args.generator:
        gen = checkpoint.load(args.generator, task="generate")
        g = GenerateTask.evaluate_saved(gen, cpu)["metrics"]
        result["generator"] = g
        agrees = g.get("classifier_agrees", float("nan"))
        rows += [("generator: classified as asked", agrees, ">= 0.70", agrees >= 0.70),
                 ("generator: new names", g["new_share"], ">= 0.85", g["new_share"] >= 0.85)]
    width = max(len(r[0]) for r in rows)
    print(f"model {loaded.path}  (torch threads: {torch.get_num_threads()})")
    for name, value, target, ok in rows:
        mark = "" if ok is None else ("met" if ok else "MISSED")
        print(f"{name:<{width}}  {value:>9.4f}  {target:<34} {mark}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    sys.exit(0)


if __name__ == "__main__":
    main()
