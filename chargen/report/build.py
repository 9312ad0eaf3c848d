"""``build_report``: run the experiments whose results are missing, then write ``report.md`` from the results alone."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from pathlib import Path

from chargen.errors import UsageError
from chargen.report.context import FULL, QUICK, REPORT_MD, RESULTS, Context, ReportCallbacks
from chargen.report.numbers import Numbers
from chargen.report.runners import EXPERIMENT_NAMES, EXPERIMENTS
from chargen.report import exercises as rx
from chargen.report.runners import VERSIONS_JSON
from chargen.report.sections import SECTIONS
from chargen.tracking import write_json

def build_report(
    out: Path,
    *,
    quick: bool = False,
    rerun: Sequence[str] = (),
    only: Sequence[str] = (),
    callbacks: ReportCallbacks | None = None,
) -> tuple[Path | None, Numbers]:
    """Run what is missing, then write ``out/report.md``; returns its path and the numbers it holds.

    ``only`` limits the experiments that may run, so that several processes (or machines sharing the
    folder) can each measure a part; the report is written once every result exists, and its path
    is None until then.
    """
    for option, names in (("rerun", rerun), ("only", only)):
        unknown = sorted(set(names) - set(EXPERIMENT_NAMES))
        if unknown:
            raise UsageError(f"{option}: unknown experiment {unknown[0]!r}; known: {', '.join(EXPERIMENT_NAMES)}",
                             params=option)
    out = Path(out)
    try:
        (out / RESULTS).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"out_dir: cannot create {out / RESULTS}: {e.strerror or e}", params="out_dir") from None
    ctx = Context(out, QUICK if quick else FULL, callbacks=callbacks or ReportCallbacks())
    started = time.perf_counter()
    missing: list[str] = []  # experiments outside --only that have no results yet
    for experiment in EXPERIMENTS:
        if experiment.optional:  # a long study: run (resumed) on request only, never awaited
            if experiment.name in only or experiment.name in rerun:
                ctx.say(f"{experiment.name}: running ({experiment.about})")
                experiment.run(ctx)
            continue
        done = (ctx.results / experiment.path).exists()
        if done and experiment.name not in rerun:
            ctx.say(f"{experiment.name}: reading {RESULTS}/{experiment.path}")
            continue
        if only and experiment.name not in only:
            if not done:
                missing.append(experiment.name)
            continue
        ctx.say(f"{experiment.name}: running ({experiment.about}, {ctx.budget.name} budget)")
        t0 = time.perf_counter()
        experiment.run(ctx)
        record_version(ctx.results, experiment.path, experiment.version)
        ctx.say(f"{experiment.name}: done in {time.perf_counter() - t0:.0f}s")
    if missing:
        ctx.say(f"{REPORT_MD} not written yet: no results for {', '.join(missing)} (outside only)")
        return None, ctx.numbers
    text = render(ctx)
    path = out / REPORT_MD
    path.write_text(text, encoding="utf-8")
    ctx.say(f"wrote {path} ({len(ctx.figures)} figures) in {time.perf_counter() - started:.0f}s")
    return path, ctx.numbers


def render(ctx: Context) -> str:
    """The report's Markdown from the saved results under ``ctx.out`` (runs nothing)."""
    header, *body = [section(ctx).strip() for section in SECTIONS]
    return "\n\n".join([header, contents(body), *body]) + "\n"


def contents(sections: list[str]) -> str:
    """A linked list of the ``## `` headings of ``sections`` (GitHub's anchors), for the top of the report."""
    titles = [m.group(1).strip() for text in sections for m in re.finditer(r"^## (.+)$", text, re.M)]
    return "**Contents**\n\n" + "\n".join(f"- [{t}](#{rx._anchor(t)})" for t in titles)


def record_version(results: Path, path: str, version: int) -> None:
    """Record that the code at ``version`` wrote ``results/path`` (in ``results/versions.json``: the files keep their
    own formats, which their readers load strictly); see ``chargen.report.check``."""
    target = results / VERSIONS_JSON
    versions = json.loads(target.read_text(encoding="utf-8")) if target.is_file() else {}
    if versions.get(path) != version:
        write_json(target, dict(sorted({**versions, path: version}.items())))
