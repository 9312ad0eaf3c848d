"""The baselines study: every available family on one corpus at a tiny CPU budget, families not here yet skipped with a note."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from chargen.errors import UsageError
from chargen.experiments import baselines
from chargen.experiments.studies import build_study, run_study
from chargen.experiments.study import Event


def test_the_grid_is_corpus_by_budget_parts_of_families_by_seeds() -> None:
    study = build_study("baselines", Path("unused"))
    assert list(study.parts) == [baselines.part_name(c, m) for c in baselines.CORPORA for m in baselines.MINUTES]
    available = [f for f in baselines.FAMILIES if baselines.missing_family(f) is None]
    specs = study.parts["grimm-5m"].specs([])
    assert [s.params["family"] for s in specs[: len(available)]] == available
    assert [s.seed for s in specs] == [s for s in baselines.SEEDS for _ in available]
    assert all(s.params["minutes"] == 5 for s in specs)
    assert [n.split(" ")[0] for n in study.notes] == [f for f in baselines.FAMILIES if f not in available]
    assert baselines.missing_family("lstm") is None and "unknown family" in baselines.missing_family("nope")


def test_a_changed_size_is_a_new_run() -> None:
    study = build_study("baselines", Path("unused"))
    (spec,) = [s for s in study.parts["grimm-1m"].specs([]) if s.params["family"] == "lstm" and s.seed == 0]
    bigger = type(spec)(spec.part, {**spec.params, "model": {**spec.params["model"], "hidden_size": 999}}, spec.seed)
    assert study.key(spec) != study.key(bigger)


def test_budgets_must_be_positive() -> None:
    with pytest.raises(UsageError, match="minutes must be a positive number"):
        build_study("baselines", Path("unused"), minutes=0)
    with pytest.raises(UsageError, match="unknown study 'nope'"):
        build_study("nope")


@pytest.mark.slow
def test_a_tiny_budget_runs_each_family_for_its_cpu_seconds(corpus_mirror: Path, tmp_path: Path,
                                                             one_torch_thread: None) -> None:
    events: list[Event] = []
    minutes = 0.01  # 0.6 CPU-seconds per run
    outcome, summary = run_study("baselines", tmp_path, only=["firstnames-0.01m"], seeds=1, minutes=minutes,
                                 progress=events.append)
    study = build_study("baselines", tmp_path, seeds=1, minutes=minutes)
    records = study.records("firstnames-0.01m")
    trained = [r for r in records if r["params"]["family"] != "ngram"]
    assert outcome.complete and trained and len(records) == outcome.ran
    for r in trained:
        assert r["train_cpu_seconds"] >= 0.6 and math.isfinite(r["val_loss"]) and r["parameters"] > 0
        assert r["env"]["threads"] == 1 and r["val_loss"] < math.log(40)  # better than uniform over the characters
    part = summary["parts"]["firstnames-0.01m"]
    assert part["complete"] and {row["family"] for row in part["rows"]} == {r["params"]["family"] for r in records}
    assert (tmp_path / "summary.json").exists()
    again, _ = run_study("baselines", tmp_path, only=["firstnames-0.01m"], seeds=1, minutes=minutes)
    assert again.ran == 0


def test_the_report_section_traces_every_number_and_names_the_command_until_measured(tmp_path: Path) -> None:
    from chargen.experiments.stats import bootstrap_interval
    from chargen.report.baselines import baselines_section
    from chargen.report.numbers import Numbers, untraced_numbers
    from chargen.tracking import write_json

    assert "chargen study baselines" in baselines_section(tmp_path / "none", Numbers())
    losses = [1.61, 1.58, 1.64]
    row = {"family": "lstm", "n": 3, "val_loss": {"n": 3, "mean": sum(losses) / 3, "mean_ci": list(bootstrap_interval(losses))},
           "parameters": {"n": 3, "mean": 95824}, "chars_per_second": {"n": 3, "mean": 19694.2}}
    write_json(tmp_path / "summary.json", {"study": "baselines", "notes": ["gru skipped: not here yet"], "parts": {
        "tinyshakespeare-1m": {"rows": [row], "complete": False}}})
    numbers = Numbers()
    text = baselines_section(tmp_path, numbers)
    assert "| lstm | 1.610 [" in text and "95,824" in text and "Still running: tinyshakespeare-1m" in text
    assert "1.47 nats/char" in text and "_Not measured yet: `chargen study baselines --only grimm-1m`._" in text
    assert untraced_numbers(text, numbers.emitted) == []
    shown: list[str] = []
    with_figure = baselines_section(tmp_path, Numbers(), lambda path, name: shown.append(name) or f"![{name}]({path})")
    assert shown == ["baselines-tinyshakespeare.png"] and (tmp_path / "tinyshakespeare.png").stat().st_size > 5000
    assert "![baselines-tinyshakespeare.png]" in with_figure


def test_the_study_command_lists_parts_and_refuses_an_unknown_study(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from chargen.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["study", "--list"])
    assert listed.exit_code == 0 and "grimm-1m:" in listed.output and "firstnames-5m:" in listed.output
    unknown = runner.invoke(app, ["study", "nope", "--out", str(tmp_path)])
    assert unknown.exit_code == 2 and "unknown study 'nope'" in unknown.output and "Traceback" not in unknown.output
    part = runner.invoke(app, ["study", "baselines", "--only", "grimm-2m", "--out", str(tmp_path)])
    assert part.exit_code == 2 and "no part 'grimm-2m'" in part.output
