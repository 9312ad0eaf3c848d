"""``chargen report --check``: the report on disk is what its saved results build, every number in it is traced, and every result it reads exists at the code version that writes it.

What "matches the code version" means here: each result the report reads has a ``RESULT_VERSION``
(an integer beside the code that writes it, bumped when that code changes what it measures or how
it records it), and each results file records the version that wrote it in ``result_version``
(top level of a JSON document; every record of a JSONL study), or, for the files the report's own
experiments write in their readers' strict formats, ``results/versions.json`` does (path -> version).
A file recorded in neither predates the record and counts as version 1, the first of every result. A file whose version differs
from its code's is stale: the check names the command that writes it again. Nothing is run or written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chargen.experiments import optimisers, tutorial
from chargen.report.context import FULL, MOMENTUM, QUICK, REPORT_MD, RESULTS, Context
from chargen.report.numbers import untraced_numbers
from chargen.report.questions import MAKERS
from chargen.report.build import render
from chargen.report.runners import EXERCISES, EXPERIMENTS, FIRST_VERSION, VERSION_FIELD, VERSIONS_JSON



@dataclass(frozen=True)
class Source:
    """A saved result the report reads: its path under ``results/``, its code's version, the command that writes it."""

    path: str
    version: int
    maker: str
    optional: bool = False  # a long study: the report says "not measured yet" while it is missing


# the exercise files' own versions: the modules that write them own the constant; the others are at the first
_EXERCISE_VERSIONS = {tutorial.RESULTS_JSON: tutorial.RESULT_VERSION, optimisers.RESULTS_JSON: optimisers.RESULT_VERSION}
MOMENTUM_PARTS = ("lstm-target", "forget-bias", "fair-rnn")  # the momentum study's parts with a summary the report reads


def sources(out: Path) -> list[Source]:
    """Every saved result the report built in ``out`` reads."""
    found = [Source(e.path, e.version, f"chargen report --out {out} --rerun {e.name}", e.optional)
             for e in EXPERIMENTS]
    found += [Source(f"{EXERCISES}/{name}", _EXERCISE_VERSIONS.get(name, FIRST_VERSION), command)
              for name, command in MAKERS.items()]
    found += [Source(f"{MOMENTUM}/{part}/summary.json", FIRST_VERSION,
                     f"chargen momentum-study --only {part} --out {out / RESULTS / MOMENTUM}", optional=True)
              for part in MOMENTUM_PARTS]
    found.append(Source(f"{MOMENTUM}/adjoint.json", FIRST_VERSION,
                        f"chargen momentum-study --only adjoint --out {out / RESULTS / MOMENTUM}", optional=True))
    return found


def recorded_versions(path: Path, ledger: dict[str, int] | None = None, name: str = "") -> set[int]:
    """The versions a results file records: its own field, else its entry ``name`` in the report's ``ledger``
    (``results/versions.json``), else ``FIRST_VERSION``."""
    fallback = int((ledger or {}).get(name, FIRST_VERSION))
    if path.suffix == ".jsonl":
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return {int(r.get(VERSION_FIELD, fallback)) for r in records} or {fallback}
    doc: Any = json.loads(path.read_text(encoding="utf-8"))
    return {int(doc.get(VERSION_FIELD, fallback)) if isinstance(doc, dict) else fallback}


def source_problems(out: Path) -> list[str]:
    """A line for each result that is missing, unreadable or written by another version of its code."""
    problems = []
    ledger_path = out / RESULTS / VERSIONS_JSON
    try:
        ledger = json.loads(ledger_path.read_text(encoding="utf-8")) if ledger_path.is_file() else {}
    except (OSError, ValueError) as e:
        return [f"{RESULTS}/{VERSIONS_JSON}: unreadable ({e}); delete it and rerun the report's experiments"]
    for source in sources(out):
        path = out / RESULTS / source.path
        if not path.is_file():
            if not source.optional:
                problems.append(f"{RESULTS}/{source.path}: missing; write it with `{source.maker}`")
            continue
        try:
            versions = recorded_versions(path, ledger, source.path)
        except (OSError, ValueError, TypeError, AttributeError) as e:
            problems.append(f"{RESULTS}/{source.path}: unreadable ({e}); write it again with `{source.maker}`")
            continue
        stale = sorted(v for v in versions if v != source.version)
        if stale:
            problems.append(f"{RESULTS}/{source.path}: written by version {', '.join(map(str, stale))} of its code, "
                            f"which is at version {source.version}; write it again with `{source.maker}`")
    return problems


def check_report(out: Path, *, quick: bool = False) -> list[str]:
    """Every problem with the report in ``out``, one line each (none: the report is what its results build)."""
    out = Path(out)
    if not (out / RESULTS).is_dir():
        return [f"{out}: no report here (no {RESULTS}/ folder); build one with `chargen report --out {out}`"]
    problems = source_problems(out)
    if any(not s.optional and not (out / RESULTS / s.path).is_file() for s in sources(out)):
        return problems  # the text cannot be built without them; the lines above say what to run
    ctx = Context(out, QUICK if quick else FULL, dry=True)
    try:
        text = render(ctx)
    except (OSError, ValueError, KeyError, TypeError) as e:
        return [*problems, f"{REPORT_MD}: the saved results do not build a report ({type(e).__name__}: {e})"]
    problems += ctx.problems
    problems += [f"{REPORT_MD}: the number {number} is not traced to a saved result"
                 for number in sorted(set(untraced_numbers(text, ctx.numbers.emitted)))]
    on_disk = out / REPORT_MD
    if not on_disk.is_file():
        problems.append(f"{REPORT_MD}: missing; build it with `chargen report --out {out}`")
    elif on_disk.read_text(encoding="utf-8") != text:
        first = _first_difference(on_disk.read_text(encoding="utf-8"), text)
        problems.append(f"{REPORT_MD}: differs from what the saved results build (first at line {first}); "
                        f"rebuild it with `chargen report --out {out}`")
    return problems


def _first_difference(a: str, b: str) -> int:
    for i, (x, y) in enumerate(zip(a.splitlines(), b.splitlines()), 1):
        if x != y:
            return i
    return min(len(a.splitlines()), len(b.splitlines())) + 1


__all__ = ["Source", "check_report", "recorded_versions", "source_problems",
           "sources"]
