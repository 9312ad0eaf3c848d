"""Data-parallel scaling: training throughput of `chargen train` under torchrun with 1 and 2 processes, side by side.

    python benchmarks/distributed.py [--corpus grimm --steps 200 --repeats 2] [-- extra chargen train options]

Every run trains the default LM on the same global batch (64 streams of 30 characters), so
``N`` processes each compute ``64 / N`` streams and DDP averages their gradients (gloo on the
CPU). Three configurations: one process on all the cores, one process on half of them, and two
processes on half each -- so the table gives both the scaling from one process to two at equal
threads per process, and what splitting this machine's cores into two ranks gains or loses. Throughput is
the global characters per second that the training loop logs (``rate`` in ``metrics.jsonl``),
the median over the run after its first logging window. Runs are interleaved across
configurations so that machine noise hits them alike. Needs the corpus (CHARGEN_MIRROR).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run(processes: int, threads: int, args: argparse.Namespace, out: Path) -> float:
    """Median global chars/s of one training run with ``processes`` ranks of ``threads`` threads each."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
        "-m", "chargen", "train", "--corpus", args.corpus, "--steps", str(args.steps), "--eval-every",
        str(args.steps), "--sample-every", str(10**9), "--device", "cpu", "--quiet", "--out", str(out), *args.extra,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [r["rate"] for r in records if r.get("split") == "train"][1:]  # the first window holds start-up
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="grimm")
    parser.add_argument("--steps", type=int, default=200, help="training steps per run")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved runs per configuration")
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)), help="cores to share out")
    parser.add_argument("extra", nargs="*", help="options passed to chargen train after --")
    args = parser.parse_args()

    half = max(1, args.cores // 2)
    configs = [(1, args.cores), (1, half), (2, half)]
    rates: dict[tuple[int, int], list[float]] = {c: [] for c in configs}
    with tempfile.TemporaryDirectory(prefix="chargen-ddp-bench-") as tmp:
        for repeat in range(args.repeats):
            for processes, threads in configs:
                out = Path(tmp) / f"p{processes}-t{threads}-r{repeat}"
                rates[(processes, threads)].append(run(processes, threads, args, out))

    print(f"corpus {args.corpus}, {args.steps} steps per run, {args.repeats} interleaved runs each, "
          f"{args.cores} cores, global batch of the LM defaults{' + ' + ' '.join(args.extra) if args.extra else ''}")
    print(f"{'processes':>9}{'threads each':>14}{'best chars/s':>14}{'median':>10}")
    for (processes, threads), values in rates.items():
        print(f"{processes:>9}{threads:>14}{max(values):>14,.0f}{statistics.median(values):>10,.0f}")
    whole, one, two = (max(rates[c]) for c in configs)
    print(f"\nscaling at {half} thread(s) per process, 2 processes / 1 process: {two / one:.2f} (ideal 2.00)")
    print(f"the machine's cores as 2 processes / as 1 process of {args.cores} threads: {two / whole:.2f}")


if __name__ == "__main__":
    main()
