"""chargen report --check: the committed report is what its saved results build; a changed report, a stale, missing or
untraced result is one line each; the seeded sections show spreads and decide verdicts from them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chargen.cli import app
from chargen.paths import PROJECT_ROOT
from chargen.report import REPORT_MD, RESULTS, build_report, check_report
from chargen.report.build import record_version
from chargen.report.check import sources
from chargen.report.runners import VERSION_FIELD
from chargen.report.numbers import Numbers
from chargen.report.questions import question_map
from chargen.report.seeded import Spread, optimisers_section, tutorial_section

REPORT = PROJECT_ROOT / "docs" / "report"
runner = CliRunner()


@pytest.fixture()
def report_copy(tmp_path: Path) -> Path:
    out = tmp_path / "report"
    shutil.copytree(REPORT, out, ignore=shutil.ignore_patterns("runs", "*.jsonl"))
    build_report(out)  # every result is there: this only writes the text, which names its folder
    return out


def test_the_committed_report_is_what_its_saved_results_build() -> None:
    result = runner.invoke(app, ["report", "--check", "--out", str(REPORT.relative_to(PROJECT_ROOT))]) \
        if Path.cwd() == PROJECT_ROOT else None
    problems = check_report(Path("docs/report")) if Path.cwd() == PROJECT_ROOT else None
    if problems is None:
        pytest.skip("run from the repository root (the report names its folder as given)")
    assert problems == [] and result is not None and result.exit_code == 0, (problems, result and result.output)


def test_a_changed_number_in_the_report_is_a_problem(report_copy: Path) -> None:
    assert check_report(report_copy) == []
    path = report_copy / REPORT_MD
    path.write_text(path.read_text(encoding="utf-8").replace("| 1.1 |", "| 1.7 |", 1), encoding="utf-8")
    problems = check_report(report_copy)
    assert len(problems) == 1 and problems[0].startswith(f"{REPORT_MD}: differs") and "line" in problems[0]
    result = runner.invoke(app, ["report", "--check", "--out", str(report_copy)])
    assert result.exit_code == 1 and result.stderr.strip() == problems[0]


def test_a_result_from_another_code_version_is_stale(report_copy: Path) -> None:
    record_version(report_copy / RESULTS, "bptt.json", 7)  # as the report's own experiments record it
    path = report_copy / RESULTS / "exercises" / "tutorial.json"  # as a result that records its own version
    path.write_text(json.dumps({**json.loads(path.read_text()), VERSION_FIELD: 5}))
    problems = check_report(report_copy)
    assert any(p.startswith(f"{RESULTS}/bptt.json: written by version 7") and "--rerun bptt" in p for p in problems)
    assert any(p.startswith(f"{RESULTS}/exercises/tutorial.json: written by version 5") for p in problems)
    record_version(report_copy / RESULTS, "bptt.json", 1)
    assert not any("bptt" in p for p in check_report(report_copy))


def test_a_missing_result_names_its_command_and_nothing_is_written(report_copy: Path) -> None:
    (report_copy / RESULTS / "exercises" / "hand_lstm.json").unlink()
    (report_copy / RESULTS / "surnames.json").unlink()
    before = sorted(p for p in report_copy.rglob("*"))
    problems = check_report(report_copy)
    assert any("exercises/hand_lstm.json: missing" in p and "chargen.experiments.exercises" in p for p in problems)
    assert any(p.startswith(f"{RESULTS}/surnames.json: missing") for p in problems)
    assert sorted(p for p in report_copy.rglob("*")) == before


def test_every_source_the_check_knows_is_a_file_the_report_reads() -> None:
    text = (REPORT / REPORT_MD).read_text(encoding="utf-8")
    for source in sources(REPORT):
        assert source.optional or (REPORT / RESULTS / source.path).is_file(), source.path
    assert "/tmp/" not in text  # no temporary folder printed into the report


def test_the_question_map_numbers_every_question_once_and_links_real_sections() -> None:
    text = (REPORT / REPORT_MD).read_text(encoding="utf-8")
    rows = question_map()
    assert len({r["number"] for r in rows}) == len(rows)
    assert any("MomentumRNN" in r["question"] and "Momentum:" in r["section"] for r in rows)
    for r in rows:
        assert f"## {r['section']}\n" in text, r["section"]


def test_spread_decides_by_the_standard_error_or_by_the_noise_for_one_run() -> None:
    tight_a, tight_b = Spread.of([1.0, 1.01, 0.99]), Spread.of([1.1, 1.11, 1.09])
    loose_a, loose_b = Spread.of([1.0, 1.3, 0.7]), Spread.of([1.1, 1.4, 0.8])
    assert tight_a.differs(tight_b, 0.5) and not loose_a.differs(loose_b, 0.0)
    assert Spread.of([1.0]).differs(Spread.of([1.04]), 0.03) and not Spread.of([1.0]).differs(Spread.of([1.02]), 0.03)
    assert Spread.of([2.0, 4.0]).std == pytest.approx(2 ** 0.5)


def _optimisers(tmp_path: Path, losses: dict[str, dict[float, list[float]]]) -> str:
    runs = [{"optimiser": o, "lr": lr, "seed": s, "final_val_loss": v, "curve": [], "seconds": 1.0}
            for o, by_lr in losses.items() for lr, vs in by_lr.items() for s, v in enumerate(vs)]
    settings = {"corpus": "grimm", "chars": 1000, "hidden_size": 8, "seq_len": 4, "batch_size": 2, "steps": 3,
                "eval_every": 1, "clip": 5.0, "seed": 0, "grid": {o: list(v) for o, v in losses.items()}}
    (tmp_path / "optimisers.json").write_text(json.dumps({"settings": settings, "runs": runs}))
    return optimisers_section(tmp_path, Numbers())


def test_the_learning_rate_sensitivity_sentence_is_computed_from_the_table(tmp_path: Path) -> None:
    flat, steep = {0.1: [2.0, 2.01, 2.0], 1.0: [2.02, 2.0, 2.01]}, {0.1: [2.0, 2.01, 2.0], 1.0: [3.0, 3.1, 2.9]}
    text = _optimisers(tmp_path, {"sgd": steep, "sgd-momentum": steep, "rmsprop": flat, "adam": flat})
    assert "adaptive optimisers are less sensitive" in text and "± " in text and "(n = 3)" in text
    text = _optimisers(tmp_path, {"sgd": flat, "sgd-momentum": flat, "rmsprop": steep, "adam": steep})
    assert "adaptive optimisers are more sensitive" in text
    one = _optimisers(tmp_path, {"sgd": {0.1: [2.0]}, "adam": {0.1: [2.5]}})
    assert "(one run)" in one and "one run's" in one


def test_the_tutorial_tables_show_the_spread_over_seeds(tmp_path: Path) -> None:
    runs = [{"task": "classify", "model": m, "hidden": 8, "seed": s, "parameters": 10, "test_accuracy": a + 0.001 * s}
            for m, a in (("tutorial", 0.5), ("rnn", 0.6), ("lstm", 0.7)) for s in range(3)]
    doc = {"settings": {"models": ["tutorial", "rnn", "lstm"], "steps": 5, "batch_size": 2, "seed": 0}, "runs": runs}
    (tmp_path / "tutorial.json").write_text(json.dumps(doc))
    text = tutorial_section(tmp_path, Numbers())
    assert "mean ± standard deviation over seeds 0, 1, 2" in text and "(n = 3)" in text
    assert "*Would an LSTM help?* At hidden 8: yes" in text


def test_a_folder_without_a_report_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", "--check", "--out", str(tmp_path / "nothing")])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1 and "no report here" in result.stderr
    assert not (tmp_path / "nothing").exists()
