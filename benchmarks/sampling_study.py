"""What the sampling study costs: one grid run on the shipped grimm model, and the full study extrapolated.

    python benchmarks/sampling_study.py [--samples 200 --length 300 --grader-steps 20 --out /tmp/sampling-cost]

One thread. It trains the study's grader shape for ``--grader-steps`` steps only (inference costs the same
whatever the training), then times the reference setting's run (generation as -n batches, grading, metrics,
copy share) in CPU seconds of this process, apart from the copy index's one-time build. The extrapolation
assumes the tiny Shakespeare sampler has grimm's shape (the study's default), so a character costs the same.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--length", type=int, default=300)
    parser.add_argument("--grader-steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("/tmp/sampling-cost"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from chargen.experiments import sampling

    full = sampling.Scale()
    scale = replace(full, samples=args.samples, length=args.length, settings={},
                    grader=replace(full.grader, steps=args.grader_steps))
    study = sampling.build(args.out, seeds=[0], corpora=["grimm"], scale=scale)
    study.run(only=["grimm-grader"])
    runs = study.runner
    started = time.process_time()
    runs.index("grimm")
    index_seconds = time.process_time() - started
    study.run(only=["grimm"])
    (record,) = study.records("grimm")
    per_char = record["cpu_seconds"] / (args.samples * args.length)
    grid_runs = sum(len(p.specs([])) for name, p in sampling.build(Path("unused")).parts.items()
                    if not name.endswith(("-sampler", "-grader")))
    grid_seconds = per_char * full.samples * full.length * grid_runs
    training = 60 * (full.sampler.minutes * sum(c not in full.shipped for c in sampling.CORPORA)
                     + full.grader.minutes * len(sampling.CORPORA))
    result = {"samples": args.samples, "length": args.length, "run_cpu_seconds": record["cpu_seconds"],
              "cpu_microseconds_per_char": round(1e6 * per_char, 1), "index_build_cpu_seconds": round(index_seconds, 2),
              "full_grid_runs": grid_runs, "full_grid_cpu_minutes": round(grid_seconds / 60, 1),
              "full_training_cpu_minutes": training / 60,
              "full_study_cpu_minutes": round((grid_seconds + training + 2 * 2 * index_seconds) / 60, 1)}
    json.dump(result, sys.stdout, indent=2)
    print()
    return result


if __name__ == "__main__":
    main()
