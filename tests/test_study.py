"""The one Study: resumable parts, one fsync'd line per run, keys that keep configurations apart, intervals and the rank test."""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from chargen.errors import UsageError
from chargen.experiments.stats import bootstrap_interval, mann_whitney, wilson
from chargen.experiments.study import (Event, Part, RunContext, Spec, Study, StudyBudget, append_record,
                                       rank_tests, summarise)
from chargen.tracking import read_jsonl


def grid(part: str, values: list[int], seeds: list[int]) -> list[Spec]:
    return [Spec(part, {"x": x}, seed) for x in values for seed in seeds]


def toy_study(out: Path, calls: list[Spec], **kwargs: Any) -> Study:
    """Runs are pure arithmetic: a result is a function of the spec, so a rerun can be checked for equality."""

    def run(spec: Spec, ctx: RunContext) -> dict[str, Any]:
        calls.append(spec)
        return {"loss": spec.params["x"] + spec.seed / 10, "solved": spec.seed % 2 == 0,
                "threads_seen": torch.get_num_threads()}

    parts = [Part("a", grid("a", [1, 2], [0, 1])), Part("b", grid("b", [3], [0, 1, 2]))]
    return Study("toy", parts, run, out, **kwargs)


def test_a_study_runs_every_spec_once_and_a_rerun_runs_nothing(tmp_path: Path) -> None:
    calls: list[Spec] = []
    events: list[Event] = []
    outcome = toy_study(tmp_path, calls, threads=1).run(progress=events.append)
    assert outcome.ran == 7 and outcome.complete and len(calls) == 7
    ends = [e for e in events if e.kind == "end"]
    assert [e.done for e in ends] == list(range(1, 8)) and all(e.total == 7 for e in ends)
    assert ends[-1].eta_seconds == 0
    records = list(read_jsonl(tmp_path / "a" / "runs.jsonl"))
    assert len(records) == 4 and all(r["threads_seen"] == 1 for r in records)
    env = records[0]["env"]
    assert {"torch", "threads", "cpu_model", "load_average", "git_commit", "command"} <= set(env)
    assert env["torch"] == torch.__version__ and env["threads"] == 1
    again: list[Spec] = []
    outcome = toy_study(tmp_path, again).run()
    assert again == [] and outcome.ran == 0 and outcome.found == 7


def test_threads_are_set_for_each_run_and_restored(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    toy_study(tmp_path, [], threads=2).run(only=["b"])
    assert torch.get_num_threads() == before
    assert {r["threads_seen"] for r in read_jsonl(tmp_path / "b" / "runs.jsonl")} == {2}


def test_only_runs_the_named_parts_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    calls: list[Spec] = []
    toy_study(tmp_path, calls).run(only=["b"])
    assert {s.part for s in calls} == {"b"} and not (tmp_path / "a").exists()
    with pytest.raises(UsageError, match="no part 'c'; parts: a, b") as caught:
        toy_study(tmp_path, calls).run(only=["c"])
    assert caught.value.params == ("only",)


def test_a_changed_configuration_is_kept_apart_by_its_key(tmp_path: Path) -> None:
    first: list[Spec] = []
    toy_study(tmp_path, first, budget=StudyBudget(steps=10)).run(only=["b"])
    second: list[Spec] = []
    notes: list[str] = []
    study = toy_study(tmp_path, second, budget=StudyBudget(steps=20))
    outcome = study.run(only=["b"], progress=lambda e: notes.append(e.message) if e.kind == "note" else None)
    assert len(second) == 3 and outcome.stale == {"b": 3}
    assert any("another grid or configuration" in n for n in notes)
    assert len(study.saved("b")) == 6 and len(study.records("b")) == 3
    assert {r["study_budget"]["steps"] for r in study.records("b")} == {20}


def test_a_torn_last_line_is_skipped_and_the_next_record_starts_a_line(tmp_path: Path) -> None:
    calls: list[Spec] = []
    study = toy_study(tmp_path, calls)
    study.run(only=["b"])
    path = tmp_path / "b" / "runs.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2]) + lines[2][:25])  # killed while writing the third record
    calls.clear()
    study.run(only=["b"])
    assert len(calls) == 1 and calls[0].seed == 2
    assert [r["seed"] for r in study.records("b")] == [0, 1, 2]


def test_a_deadline_starts_no_run_and_the_rest_resumes(tmp_path: Path) -> None:
    calls: list[Spec] = []
    outcome = toy_study(tmp_path, calls).run(deadline=time.time() - 1)
    assert outcome.ran == 0 and outcome.pending == 7 and not outcome.complete


def test_a_staged_part_plans_its_runs_from_the_finished_ones(tmp_path: Path) -> None:
    """Selection runs first; the reported runs use the setting the selection chose."""
    calls: list[Spec] = []

    def plan(records: list[dict[str, Any]]) -> list[Spec]:
        select = [Spec("p", {"phase": "select", "lr": lr}, 100) for lr in (1, 2)]
        done = [r for r in records if r["params"]["phase"] == "select"]
        if len(done) < len(select):
            return select
        best = min(done, key=lambda r: r["loss"])["params"]["lr"]
        return [*select, *(Spec("p", {"phase": "report", "lr": best}, s) for s in range(3))]

    def run(spec: Spec, ctx: RunContext) -> dict[str, Any]:
        calls.append(spec)
        return {"loss": abs(spec.params["lr"] - 2)}

    study = Study("staged", [Part("p", plan)], run, tmp_path)
    assert study.run().ran == 5
    assert [s.params["lr"] for s in calls if s.params["phase"] == "report"] == [2, 2, 2]


def test_budgets_and_threads_are_checked() -> None:
    with pytest.raises(UsageError, match="give a budget"):
        StudyBudget()
    with pytest.raises(UsageError, match="minutes must be a positive number"):
        StudyBudget.minutes(0)
    assert StudyBudget.minutes(1.5).cpu_seconds == 90
    with pytest.raises(UsageError, match="threads must be at least 1"):
        Study("s", [Part("a", [])], lambda s, c: {}, Path("."), threads=0)


def test_append_record_writes_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"key": "a"}\n{"key": "b", "x":')  # a torn line
    append_record(path, {"key": "c"})
    assert [r["key"] for r in read_jsonl(path)] == ["a", "c"]


# -- statistics -------------------------------------------------------------------------------------


def brute_force_p(first: list[float], second: list[float]) -> float:
    """Two-sided p of U by enumerating every split of the pooled values (the definition of the exact test)."""
    pooled = [*first, *second]
    n1 = len(first)

    def u_of(xs: list[float], ys: list[float]) -> float:
        return sum(1.0 if x > y else 0.5 if x == y else 0.0 for x in xs for y in ys)

    observed = u_of(first, second)
    centre = n1 * len(second) / 2
    splits = list(itertools.combinations(range(len(pooled)), n1))
    extreme = 0
    for idx in splits:
        xs = [pooled[i] for i in idx]
        ys = [pooled[i] for i in range(len(pooled)) if i not in idx]
        extreme += abs(u_of(xs, ys) - centre) >= abs(observed - centre) - 1e-12
    return extreme / len(splits)


@pytest.mark.parametrize("seed", range(6))
def test_the_exact_rank_test_matches_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    n1, n2 = rng.randint(2, 6), rng.randint(2, 6)
    values = rng.sample(range(100), n1 + n2)
    first, second = values[:n1], values[n1:]
    test = mann_whitney(first, second)
    assert test.method in ("exact", "scipy")
    assert test.u == sum(x > y for x in first for y in second)
    assert test.p_value == pytest.approx(brute_force_p(first, second), abs=1e-9)


def test_the_normal_rank_test_is_close_to_the_permutation_p_with_ties() -> None:
    first = [300, 350, 350, 400, 500, 500, 650, 700, 700]
    second = [500, 650, 700, 800, 900, 900, 1000, 1000, 3000]
    test = mann_whitney(first, second)
    assert test.method in ("normal", "scipy")
    assert test.p_value == pytest.approx(brute_force_p(first, second), abs=0.01)
    assert mann_whitney([5, 5, 5], [5, 5]).p_value == 1.0


def test_separated_samples_are_significant_and_identical_ones_are_not() -> None:
    assert mann_whitney(range(10), range(100, 110)).p_value < 0.001
    assert mann_whitney([1, 2, 3, 4], [1.5, 2.5, 3.5, 4.5]).p_value > 0.5


def test_bootstrap_intervals_are_seeded_and_cover_the_estimate() -> None:
    values = [1.2, 1.4, 1.3, 1.9, 1.1, 1.25]
    low, high = bootstrap_interval(values)
    assert low <= sum(values) / len(values) <= high and low >= min(values) and high <= max(values)
    assert bootstrap_interval(values) == (low, high)
    assert bootstrap_interval([3.0]) == (3.0, 3.0)


def test_summaries_carry_wilson_and_bootstrap_intervals_and_rank_tests() -> None:
    records = [{"params": {"arm": arm}, "seed": s, "solved": s < k, "steps": base + 10 * s}
               for arm, k, base in (("lstm", 3, 900), ("momentum", 5, 400)) for s in range(5)]
    rows = summarise(records, ["arm"], rates=["solved"], values=["steps"])
    lstm = rows[0]
    assert lstm["arm"] == "lstm" and lstm["n"] == 5 and lstm["seeds"] == [0, 1, 2, 3, 4]
    assert lstm["solved"]["count"] == 3
    assert (lstm["solved"]["ci_low"], lstm["solved"]["ci_high"]) == pytest.approx(wilson(3, 5))
    assert lstm["steps"]["median"] == 920 and lstm["steps"]["mean_ci"][0] <= 920 <= lstm["steps"]["mean_ci"][1]
    (test,) = rank_tests(records, ["arm"], "steps")
    assert test["group"] == {"arm": "momentum"} and test["u"] == 0 and test["p_value"] < 0.05
    assert math.isclose(test["p_value"], brute_force_p([400 + 10 * s for s in range(5)],
                                                       [900 + 10 * s for s in range(5)]))


# -- a kill at a random moment ----------------------------------------------------------------------

WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from chargen.experiments.study import Part, Spec, Study

    out, log = Path(sys.argv[1]), Path(sys.argv[2])

    def run(spec, ctx):
        with open(log, "a") as f:
            f.write(spec.part + " " + str(spec.params["x"]) + " " + str(spec.seed) + "\\n")
            f.flush()
        time.sleep(0.04)
        return {"value": spec.params["x"] * 100 + spec.seed}

    parts = [Part(p, [Spec(p, {"x": x}, s) for x in range(4) for s in range(4)]) for p in ("one", "two")]
    Study("killed", parts, run, out).run()
""")


@pytest.mark.parametrize("attempt", range(3))
def test_a_study_killed_at_a_random_moment_loses_at_most_the_run_in_flight(tmp_path: Path, attempt: int) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    out, log = tmp_path / "out", tmp_path / "started.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    command = [sys.executable, str(script), str(out), str(log)]
    process = subprocess.Popen(command, env=env)
    deadline = time.time() + 60
    while not log.exists() and time.time() < deadline:  # wait for the import (seconds) before the clock starts
        time.sleep(0.02)
    time.sleep(random.Random(attempt).uniform(0.0, 1.0))
    process.send_signal(signal.SIGKILL)
    process.wait()
    started_before = log.read_text().splitlines()

    def saved() -> list[dict[str, Any]]:
        return [r for p in ("one", "two") for r in read_jsonl(out / p / "runs.jsonl")]

    finished_before = saved()
    assert len(started_before) - len(finished_before) <= 1  # the one in flight, at most
    subprocess.run(command, env=env, check=True, timeout=120)
    started_after = log.read_text().splitlines()[len(started_before):]
    records = saved()
    assert len(records) == 32 and len({r["key"] for r in records}) == 32  # every run once, none twice
    assert len(started_after) == 32 - len(finished_before)  # the rerun ran only what had not finished
    assert all(r["value"] == r["params"]["x"] * 100 + r["seed"] for r in records)
    for path in (out / "one" / "runs.jsonl", out / "two" / "runs.jsonl"):
        assert all(json.loads(line) for line in path.read_text().splitlines() if line.strip())
