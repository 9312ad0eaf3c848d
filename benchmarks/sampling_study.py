"""What the sampling study costs: one grid run on the shipped grimm model, and the full study extrapolated.

    python benchmarks/sampling_study.py [--samples 200 --length 300 --grader-steps 20 --out /tmp/sampling-cost
                                         --setting typical=0.9 --setting repetition_penalty=1.3]

One thread. It trains the study's grader shape for ``--grader-steps`` steps only (inference costs the same
whatever the training), then times the reference setting's run and each ``--setting``'s (generation as -n
batches, grading, metrics, copy share) in CPU seconds of this process, apart from the copy index's one-time
build (read back from ``--out`` on a rerun: remove it to time the build; tiny Shakespeare's text is about twice
grimm's, so both indexes cost about three of grimm's); the full grid is extrapolated from their mean cost per
character. The extrapolation
assumes the tiny Shakespeare sampler has grimm's shape (the study's default), so a character costs the same.
"""

from __future__ import annotations

import argparse
import json
import statistics
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
    parser.add_argument("--setting", action="append", default=[], help="SAMPLER=VALUE, e.g. typical=0.9")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from chargen.experiments import sampling

    full = sampling.Scale()
    settings: dict[str, tuple[float, ...]] = {}
    for setting in args.setting:
        sampler, _, value = setting.partition("=")
        settings[sampler] = (*settings.get(sampler, ()), float(value))
    scale = replace(full, samples=args.samples, length=args.length, settings=settings,
                    grader=replace(full.grader, steps=args.grader_steps))
    study = sampling.build(args.out, seeds=[0], corpora=["grimm"], scale=scale)
    study.run(only=["grimm-grader"])
    runs = study.runner
    started = time.process_time()
    runs.index("grimm")
    index_seconds = time.process_time() - started
    study.run(only=["grimm"])
    records = study.records("grimm")
    per_char = statistics.fmean(r["cpu_seconds"] for r in records) / (args.samples * args.length)
    grid_runs = sum(len(p.specs([])) for name, p in sampling.build(Path("unused")).parts.items()
                    if not name.endswith(("-sampler", "-grader")))
    grid_seconds = per_char * full.samples * full.length * grid_runs
    training = 60 * (full.sampler.minutes * sum(c not in full.shipped for c in sampling.CORPORA)
                     + full.grader.minutes * len(sampling.CORPORA))
    result = {"samples": args.samples, "length": args.length,
              "run_cpu_seconds": {sampling.setting_label(r["params"]["sampler"], r["params"]["value"]): r["cpu_seconds"]
                                  for r in records},
              "cpu_microseconds_per_char": round(1e6 * per_char, 1), "index_cpu_seconds": round(index_seconds, 2),
              "full_grid_runs": grid_runs, "full_grid_cpu_minutes": round(grid_seconds / 60, 1),
              "full_training_cpu_minutes": training / 60,
              "full_study_cpu_minutes": round((grid_seconds + training + 3 * index_seconds) / 60, 1)}
    json.dump(result, sys.stdout, indent=2)
    print()
    return result


if __name__ == "__main__":
    main()
