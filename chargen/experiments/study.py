"""The one resumable Study: a grid x seeds of runs in named parts, each result appended with its environment as it ends.

Every experiment is a ``Study``: named *parts* (subsets of the grid a process can run alone), each
a list of ``Spec``s (settings and a seed) or a planner that lists them from the runs finished so
far (a learning rate chosen on selection seeds, then the reported runs). ``Study.run``:

- runs each spec not yet in its part's ``runs.jsonl`` under fixed torch threads (1 by default, so
  two studies share two cores), with the study's budget in steps or in the run's own CPU seconds;
- appends the result the moment a run ends, as one line written by one ``write`` call and fsync'd,
  with its environment (torch, threads, CPU model, load average, git commit, command): a study
  killed at any moment loses at most the run in flight, and rerunning the same command resumes;
- names each run by a key over its part, settings, seed, budget and the study's configuration, so
  a changed grid or configuration never mixes with old results: those stay in the file, unused;
- reports progress with an ETA through a callback (the CLI draws it; the library prints nothing).

``summarise`` turns the records into rows with intervals: Wilson for rates, bootstrap for means
and medians, and ``rank_tests`` compares arms by Mann–Whitney U.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Union

import torch

from chargen.errors import ChargenError, RunInterrupted, UsageError
from chargen.experiments.harness import torch_threads
from chargen.experiments.stats import bootstrap_interval, mann_whitney, wilson
from chargen.tracking import read_jsonl, write_json

RUNS_JSONL = "runs.jsonl"
# what a Study adds to a run's own result in its record (a document of results may leave these out)
STUDY_FIELDS = ("study", "part", "params", "study_budget", "wall_seconds", "cpu_seconds", "env", "key")


@dataclass(frozen=True)
class StudyBudget:
    """Each run's budget: ``steps``, ``cpu_seconds`` of the run's own process CPU time (not wall time), or both."""

    steps: int | None = None
    cpu_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.steps is None and self.cpu_seconds is None:
            raise UsageError("give a budget: steps, cpu_seconds, or both", params=("steps", "cpu_seconds"))
        if self.steps is not None and self.steps < 1:
            raise UsageError(f"steps must be positive, got {self.steps}", params="steps")
        if self.cpu_seconds is not None and not 0 < self.cpu_seconds < float("inf"):
            raise UsageError(f"cpu_seconds must be a positive number, got {self.cpu_seconds}", params="cpu_seconds")

    @classmethod
    def minutes(cls, minutes: float) -> StudyBudget:
        """A budget of ``minutes`` CPU-minutes per run."""
        if not 0 < minutes < float("inf"):
            raise UsageError(f"minutes must be a positive number, got {minutes}", params="minutes")
        return cls(cpu_seconds=60.0 * minutes)

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "cpu_seconds": self.cpu_seconds}


@dataclass(frozen=True)
class Spec:
    """One run of a study: its part, its settings and its seed; ``key`` (default: derived) names it in the results."""

    part: str
    params: Mapping[str, Any]
    seed: int
    key: str = ""
    title: str = ""  # how progress names the run (default: its scalar settings)

    @property
    def label(self) -> str:
        if self.title:
            return f"{self.title} seed {self.seed}"
        shown = " ".join(f"{k}={v}" for k, v in self.params.items() if v is not None and not isinstance(v, Mapping))
        return f"{self.part}: {shown} seed {self.seed}"


@dataclass(frozen=True)
class RunContext:
    """What a run function gets beside its spec: the threads it runs under, the budget and a way to say a line."""

    threads: int
    budget: StudyBudget | None
    note: Callable[[str], None]


Runner = Callable[[Spec, RunContext], dict[str, Any]]
# a staged part lists its specs from the records of its part finished so far
Planner = Callable[[Sequence[dict[str, Any]]], Sequence[Spec]]


@dataclass
class Part:
    """A named subset of a study's grid: its specs, or a planner of them."""

    name: str
    runs: Union[Sequence[Spec], Planner]
    description: str = ""

    def specs(self, records: Sequence[dict[str, Any]]) -> list[Spec]:
        return list(self.runs(records) if callable(self.runs) else self.runs)


@dataclass(frozen=True)
class Event:
    """A progress event: ``kind`` is "start" (a run begins), "end" (its record is saved) or "note" (a line to show)."""

    kind: str
    part: str
    done: int
    total: int
    eta_seconds: float | None = None
    spec: Spec | None = None
    record: dict[str, Any] | None = None
    message: str = ""


Progress = Callable[[Event], None]


@dataclass
class Outcome:
    """What ``Study.run`` did: runs it ran now, runs it found finished, runs still to do (stopped by the deadline)."""

    ran: int = 0
    found: int = 0
    pending: int = 0
    stale: dict[str, int] = field(default_factory=dict)  # part -> records of another configuration, kept unused

    @property
    def complete(self) -> bool:
        return self.pending == 0


class Study:
    """A grid x seeds of runs in named parts, resumable, saved under ``out/<part>/runs.jsonl``."""

    def __init__(self, name: str, parts: Sequence[Part], run: Runner, out: Path, *, threads: int = 1,
                 budget: StudyBudget | None = None, config: Mapping[str, Any] | None = None,
                 notes: Sequence[str] = ()) -> None:
        """``notes``: lines to show when the study runs (e.g. a family left out of this checkout's plan)."""
        if threads < 1:
            raise UsageError(f"threads must be at least 1, got {threads}", params="threads")
        names = [p.name for p in parts]
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"study {name}: part names must be unique and non-empty, got {names}")
        self.name, self.parts, self.runner, self.out = name, {p.name: p for p in parts}, run, Path(out)
        self.threads, self.budget, self.config, self.notes = threads, budget, dict(config or {}), list(notes)

    # -- keys and records --------------------------------------------------------------------------

    def key(self, spec: Spec) -> str:
        """The spec's own key, else a digest of everything that changes its result."""
        if spec.key:
            return spec.key
        payload = {"study": self.name, "part": spec.part, "params": dict(spec.params), "seed": spec.seed,
                   "budget": self.budget.to_dict() if self.budget else None, "config": self.config}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def results_path(self, part: str) -> Path:
        return self.out / part / RUNS_JSONL

    def saved(self, part: str) -> list[dict[str, Any]]:
        """Every record in the part's file, any configuration (a torn last line is skipped)."""
        return [r for r in read_jsonl(self.results_path(part)) if isinstance(r, dict) and "key" in r]

    def records(self, part: str) -> list[dict[str, Any]]:
        """The part's records of this configuration: the first one of each current spec, in plan order."""
        saved = self.saved(part)
        by_key: dict[str, dict[str, Any]] = {}
        for r in saved:
            by_key.setdefault(r["key"], r)
        current = []
        for spec in self.parts[part].specs(saved):
            record = by_key.get(self.key(spec))
            if record is not None:
                current.append(record)
        return current

    def select(self, only: Iterable[str] | None) -> list[str]:
        """The parts named in ``only`` (all when empty), in the study's order; an unknown name is a UsageError."""
        wanted = list(dict.fromkeys(only or ()))
        unknown = [n for n in wanted if n not in self.parts]
        if unknown:
            raise UsageError(f"only: {self.name} has no part {unknown[0]!r}; parts: {', '.join(self.parts)}",
                             params="only")
        return [n for n in self.parts if not wanted or n in wanted]

    # -- running -----------------------------------------------------------------------------------

    def run(self, only: Iterable[str] | None = None, progress: Progress | None = None,
            deadline: float | None = None) -> Outcome:
        """Run every unfinished spec of the selected parts in order; ``deadline`` (a ``time.time()``) starts no run after it."""
        names = self.select(only)
        outcome = Outcome()
        emit = progress or (lambda event: None)
        durations: list[float] = []
        for message in self.notes:
            emit(Event("note", "", 0, 0, message=f"{self.name}: {message}"))
        for name in names:
            part = self.parts[name]
            while True:
                saved = self.saved(name)
                done = {r["key"] for r in saved}
                specs = part.specs(saved)
                pending = [s for s in specs if self.key(s) not in done]
                total, finished = self._totals(names)
                if not pending:
                    break
                if deadline is not None and time.time() > deadline:
                    outcome.pending += len(pending)
                    emit(Event("note", name, finished, total, message=f"{self.name}: deadline reached; "
                               f"{len(pending)} run(s) of {name} left, rerun the same command to resume"))
                    break
                spec = pending[0]
                eta = self._eta(durations, total - finished)
                emit(Event("start", name, finished, total, eta, spec))
                try:
                    record, seconds = self._run_one(spec, lambda message: emit(Event("note", name, finished, total,
                                                                                     message=message)))
                except RunInterrupted as e:  # the run's own message points at its temporary directory
                    who = "Ctrl-C" if e.signum == signal.SIGINT else signal.Signals(e.signum).name
                    raise RunInterrupted(
                        f"{self.name} stopped by {who} in run {finished + 1} of {total} ({spec.label}); the {finished} "
                        f"finished runs are saved under {self.out}: rerun the same command to resume", e.signum) from None
                durations.append(seconds)
                outcome.ran += 1
                emit(Event("end", name, finished + 1, total, self._eta(durations, total - finished - 1), spec, record))
            keys = {self.key(s) for s in part.specs(self.saved(name))}
            stale = sum(1 for r in self.saved(name) if r["key"] not in keys)
            if stale:
                outcome.stale[name] = stale
                total, finished = self._totals(names)
                emit(Event("note", name, finished, total, message=(
                    f"{self.results_path(name)}: {stale} saved run(s) belong to another grid or configuration; "
                    "kept, not used")))
        outcome.found = sum(len(self.records(n)) for n in names) - outcome.ran
        return outcome

    def _totals(self, names: Sequence[str]) -> tuple[int, int]:
        """(runs planned, runs finished) over ``names`` as far as the plan is known now."""
        total = finished = 0
        for name in names:
            saved = self.saved(name)
            done = {r["key"] for r in saved}
            specs = self.parts[name].specs(saved)
            total += len(specs)
            finished += sum(1 for s in specs if self.key(s) in done)
        return total, finished

    def _eta(self, durations: Sequence[float], remaining: int) -> float | None:
        if durations:
            return statistics.fmean(durations) * remaining
        if self.budget and self.budget.cpu_seconds:  # one thread: a run's CPU time is about its wall time
            return self.budget.cpu_seconds * remaining
        return None

    def _run_one(self, spec: Spec, note: Callable[[str], None]) -> tuple[dict[str, Any], float]:
        started, cpu_started = time.perf_counter(), time.process_time()
        with torch_threads(self.threads) as threads:
            result = self.runner(spec, RunContext(threads, self.budget, note))
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        record = {"study": self.name, "part": spec.part, "seed": spec.seed, "params": dict(spec.params),
                  **result, "study_budget": self.budget.to_dict() if self.budget else None,
                  "wall_seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
                  "env": environment_record(threads), "key": self.key(spec)}
        append_record(self.results_path(spec.part), record)
        return record, wall


def run_documented(study: Study, part: str, document: Callable[[list[dict[str, Any]]], dict[str, Any]],
                   path: Path | None, on_record: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run ``study`` and keep one JSON document of ``part``'s runs (``document(records)``), rewritten at ``path``
    after every run (None: not written) so that a reader sees the runs so far; returns the final document."""

    def on_event(event: Event) -> None:
        if event.kind == "end" and event.record is not None:
            if path is not None:
                write_json(path, document(study.records(part)))
            if on_record is not None:
                on_record(event.record)

    study.run(progress=on_event)
    doc = document(study.records(part))
    if path is not None:
        write_json(path, doc)
    return doc


def grid_progress(progress: Callable[[int, int, dict[str, Any]], None],
                  describe: Callable[[Spec], dict[str, Any]]) -> Progress:
    """Study events as the older grid protocol ``progress(done, total, info)``: info["event"] is "start" (with
    ``describe(spec)``) or "end" (with the run's record); notes are dropped."""

    def on_event(event: Event) -> None:
        if event.kind == "start" and event.spec is not None:
            progress(event.done, event.total, {"event": "start", **describe(event.spec)})
        elif event.kind == "end" and event.record is not None:
            progress(event.done, event.total, {"event": "end", **event.record})

    return on_event


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line in one ``write`` and fsync it: a kill leaves whole lines, or one torn last line.

    A torn line left by an earlier kill gets a newline first, so the new record starts a line of its own.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    line = b"\n" + line
        written = 0
        while written < len(line):
            written += os.write(fd, line[written:])
        os.fsync(fd)
    except OSError as e:
        raise ChargenError(f"cannot append to {path}: {e.strerror or e}") from None
    finally:
        os.close(fd)


# -- the environment record -------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _static_environment() -> dict[str, Any]:
    numpy = sys.modules.get("numpy")
    return {
        "torch": torch.__version__, "python": platform.python_version(),
        "numpy": getattr(numpy, "__version__", None), "machine": platform.machine(), "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(), "git_commit": git_commit(),
        "command": " ".join(sys.argv) if sys.argv else None,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def environment_record(threads: int) -> dict[str, Any]:
    """Where and how a run was measured: versions, CPU model, threads, load average, git commit, command."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {**_static_environment(), "threads": threads, "load_average": load,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S %z")}


def cpu_model() -> str | None:
    """The CPU's model name (/proc/cpuinfo on Linux, else the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def git_commit() -> str | None:
    """The commit of the chargen checkout that runs (``+dirty`` with uncommitted changes); None outside git."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head or None


# -- summaries ----------------------------------------------------------------------------------------


def field_value(record: Mapping[str, Any], name: str) -> Any:
    """A record's ``name``: its own field, else its spec's setting."""
    if name in record:
        return record[name]
    params = record.get("params")
    return params.get(name) if isinstance(params, Mapping) else None


def _groups(records: Sequence[Mapping[str, Any]], by: Sequence[str]) -> dict[tuple[Any, ...], list[Mapping[str, Any]]]:
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault(tuple(field_value(r, k) for k in by), []).append(r)
    return groups


def _numbers(records: Sequence[Mapping[str, Any]], name: str) -> list[float]:
    out = []
    for r in records:
        v = field_value(r, name)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf"):
            out.append(float(v))
    return out


def summarise(records: Sequence[Mapping[str, Any]], by: Sequence[str], rates: Sequence[str] = (),
              values: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One row per group of ``by``: n and seeds; per rate field the Wilson 95% interval of its true share;
    per value field mean and median with bootstrap 95% intervals (runs without a finite value left out, counted)."""
    rows = []
    for group, these in _groups(records, by).items():
        row: dict[str, Any] = {**dict(zip(by, group)), "n": len(these),
                               "seeds": sorted({field_value(r, "seed") for r in these}, key=str)}
        for name in rates:
            hits = sum(1 for r in these if field_value(r, name))
            low, high = wilson(hits, len(these))
            row[name] = {"count": hits, "n": len(these), "rate": hits / len(these), "ci_low": low, "ci_high": high}
        for name in values:
            xs = _numbers(these, name)
            if not xs:
                row[name] = {"n": 0}
                continue
            mean_ci = bootstrap_interval(xs)
            median_ci = bootstrap_interval(xs, statistics.median)
            row[name] = {"n": len(xs), "mean": statistics.fmean(xs), "mean_ci": list(mean_ci),
                         "median": statistics.median(xs), "median_ci": list(median_ci),
                         "sd": statistics.stdev(xs) if len(xs) > 1 else None, "min": min(xs), "max": max(xs)}
        rows.append(row)
    return rows


def rank_tests(records: Sequence[Mapping[str, Any]], by: Sequence[str], value: str,
               baseline: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """Mann–Whitney U of ``value`` between each group of ``by`` and ``baseline`` (default: the first group)."""
    groups = _groups(records, by)
    if not groups:
        return []
    base = tuple(baseline) if baseline is not None else next(iter(groups))
    if base not in groups:
        raise ValueError(f"rank_tests: no group {base} among {list(groups)}")
    base_values = _numbers(groups[base], value)
    tests = []
    for group, these in groups.items():
        xs = _numbers(these, value)
        if group == base or not xs or not base_values:
            continue
        test = mann_whitney(xs, base_values)
        tests.append({"group": dict(zip(by, group)), "baseline": dict(zip(by, base)), "value": value,
                      "u": test.u, "p_value": test.p_value, "n": test.n1, "n_baseline": test.n2,
                      "method": test.method})
    return tests


__all__ = [
    "Event", "Outcome", "STUDY_FIELDS", "Part", "Progress", "RUNS_JSONL", "RunContext", "Runner", "Spec", "Study", "StudyBudget",
    "append_record", "environment_record", "field_value", "grid_progress", "rank_tests", "run_documented", "summarise",
]
