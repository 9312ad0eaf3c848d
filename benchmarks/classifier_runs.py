"""Run one training command and append what it was and how it ended to ``benchmarks/results/classifier_runs.jsonl``.

    python benchmarks/classifier_runs.py -- chargen train --task classify ... --out RUN

The record: the command, wall and CPU seconds (of the child), the exit status, and the run's
final metrics from ``RUN/config.json``: the log every number in the classifier's README is
traced to.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

LOG = Path(__file__).resolve().parent / "results" / "classifier_runs.jsonl"


def main(argv: list[str]) -> int:
    command = argv[1:] if argv and argv[0] == "--" else argv
    if not command:
        print("usage: python benchmarks/classifier_runs.py -- COMMAND ...", file=sys.stderr)
        return 2
    start = time.perf_counter()
    rc = subprocess.call([sys.executable, "-m", "chargen", *command[1:]] if command[0] == "chargen" else command)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    record: dict[str, object] = {"command": " ".join(command), "rc": rc, "wall_s": round(time.perf_counter() - start, 1),
                                 "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
                                 "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if "--out" in command:
        config = Path(command[command.index("--out") + 1]) / "config.json"
        if config.exists():
            doc = json.loads(config.read_text())
            record.update({"step": doc.get("step"), "metrics": doc.get("metrics")})
    LOG.parent.mkdir(parents=True, exist_ok=True)
    with LOG.open("a") as f:
        f.write(json.dumps(record) + "\n")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
