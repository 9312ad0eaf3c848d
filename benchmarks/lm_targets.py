"""LM quality and speed targets: run the default `chargen train` per corpus, time it, compare with the targets.

    python benchmarks/lm_targets.py                   # grimm and tinyshakespeare, default settings
    python benchmarks/lm_targets.py --corpus grimm -- --hidden 384 --steps 8000

Prints, per corpus, the wall time against the 10-minute budget and the validation loss against
its target (ratios below 1.0 meet the target). Needs the corpora (CHARGEN_MIRROR or the cache).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"grimm": 1.40, "tinyshakespeare": 1.45}  # nats/char, issue "core"
BUDGET_S = 600.0


def run(corpus: str, extra: list[str]) -> tuple[float, float, int]:
    out = Path(tempfile.mkdtemp(prefix=f"bench-{corpus}-")) / "run"
    cmd = [sys.executable, "-m", "chargen", "train", "--corpus", corpus, "--out", str(out), "--quiet", *extra]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - start
    config = json.loads((out / "config.json").read_text())
    return wall, config["metrics"]["val_loss"], config["step"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", action="append", help="corpus to run (repeatable); default: all targets")
    parser.add_argument("extra", nargs="*", help="options passed to chargen train after --")
    args = parser.parse_args()
    print(f"{'corpus':<16}{'steps':>7}{'wall s':>9}{'/600s':>7}{'val nats':>10}{'target':>8}{'ratio':>7}")
    for corpus in args.corpus or list(TARGETS):
        wall, loss, steps = run(corpus, args.extra)
        target = TARGETS.get(corpus, float("nan"))
        print(f"{corpus:<16}{steps:>7}{wall:>9.0f}{wall / BUDGET_S:>7.2f}{loss:>10.4f}{target:>8.2f}{loss / target:>7.3f}",
              flush=True)


if __name__ == "__main__":
    main()
