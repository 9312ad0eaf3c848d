"""chargen report: the quick report builds end to end, its figures exist, and no number in it was typed by hand."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from chargen.cli import app
from chargen.errors import UsageError
from chargen.paths import PROJECT_ROOT
from chargen.report import EXPERIMENTS, REPORT_MD, RESULTS, Numbers, build_report, untraced_numbers
from chargen.report import exercises as rx

runner = CliRunner()
SHIPPED = ("grimm", "surnames", "surnames-gen")


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    mirror = os.environ.get("CHARGEN_MIRROR")
    if not mirror or not Path(mirror).is_dir():
        pytest.skip("no corpus mirror: set CHARGEN_MIRROR to a folder like ../shared/corpora")
    missing = [m for m in SHIPPED if not (PROJECT_ROOT / "checkpoints" / m / "config.json").exists()]
    assert not missing, f"the report reads the shipped models; missing: {missing}"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the quick budgets run many tiny models: one thread is steadier
    out = tmp_path_factory.mktemp("report") / "quick"
    try:
        result = runner.invoke(app, ["report", "--out", str(out), "--quick"])
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and "done" in result.stderr
    yield out


def test_the_quick_report_runs_every_experiment_and_keeps_its_results(quick_report: Path) -> None:
    for experiment in EXPERIMENTS:  # an optional study (hours) runs only when asked for
        assert (quick_report / RESULTS / experiment.path).is_file() != experiment.optional, experiment.name
    text = (quick_report / REPORT_MD).read_text(encoding="utf-8")
    for heading in ("## Momentum: from gradient descent to the heavy ball", "## The palindrome probe",
                    "## Surnames: the classifier and the generator", "## A numpy RNN with hand-written BPTT"):
        assert heading in text


def test_every_figure_the_report_shows_exists(quick_report: Path) -> None:
    text = (quick_report / REPORT_MD).read_text(encoding="utf-8")
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(figures) >= 7
    for figure in figures:
        path = quick_report / figure
        assert path.is_file() and path.stat().st_size > 1000, figure


def test_no_number_in_the_report_was_typed_by_hand(quick_report: Path) -> None:
    path, numbers = build_report(quick_report, quick=True)  # everything is read back: nothing runs again
    text = path.read_text(encoding="utf-8")
    assert text == (quick_report / REPORT_MD).read_text(encoding="utf-8")
    assert untraced_numbers(text, numbers.emitted) == []
    assert len(numbers.emitted) > 100


def test_the_question_map_is_at_the_top_and_every_anchor_is_a_heading(quick_report: Path) -> None:
    text = (quick_report / REPORT_MD).read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings[0] == "Where each exercise is answered"
    anchors = {rx._anchor(h) for h in headings}
    for q in rx.question_map():
        assert f"](#{q['anchor']})" in text and q["anchor"] in anchors, q
    for target in re.findall(r"\]\(#([^)]+)\)", text):  # the contents and every other link inside the report
        assert target in anchors, target


# the exercise's own answers for x = [1 0 0], [0 1 0], [1 0 1] from h_0 = 0.05, C_0 = -0.02: f, i, o, C_t, h_t
HAND_LSTM = {
    "[1 0 0]": (0.982014, 0.010987, 0.006693, -0.019091, -0.000128),
    "[0 1 0]": (0.017986, 0.989013, 0.006693, 0.049050, 0.000328),
    "[1 0 1]": (0.982014, 0.010987, 0.993307, -0.019091, -0.018961),
}


def test_the_report_shows_the_hand_weighted_lstm_exercise_numbers(quick_report: Path) -> None:
    text = (quick_report / REPORT_MD).read_text(encoding="utf-8")
    section = text.split("## The hand-weighted LSTM exercise", 1)[1].split("\n## ", 1)[0]
    for x, expected in HAND_LSTM.items():
        row = re.search(rf"^\| {re.escape(x)} \|(.+)\|$", section, re.M)
        assert row, x
        shown = [float(v) for v in row.group(1).split("|")]
        assert shown == pytest.approx(expected, abs=6e-5), x  # printed to 4 (gates) and 5 (C, h) decimals
        assert [float(v) for v in shown[3:]] == pytest.approx(expected[3:], abs=6e-6), x
    assert "store" not in section and "DEFAULT_GAIN" not in text  # the old invented demo is gone


def test_a_rerun_measures_one_experiment_again(quick_report: Path) -> None:
    samples = quick_report / RESULTS / "lm-samples.json"
    gradients = quick_report / RESULTS / "gradients" / "gradients.json"
    before = (samples.stat().st_mtime_ns, gradients.stat().st_mtime_ns)
    build_report(quick_report, quick=True, rerun=["lm-samples"])
    assert samples.stat().st_mtime_ns != before[0] and gradients.stat().st_mtime_ns == before[1]


def test_only_runs_its_part_and_the_report_waits_for_the_rest(quick_report: Path, tmp_path: Path) -> None:
    part = tmp_path / "report"
    shutil.copytree(quick_report, part)
    (part / REPORT_MD).unlink()
    bptt, samples = part / RESULTS / "bptt.json", part / RESULTS / "lm-samples.json"
    bptt.unlink(), samples.unlink()
    path, _ = build_report(part, quick=True, only=["bptt"])
    assert path is None and bptt.exists() and not samples.exists() and not (part / REPORT_MD).exists()
    path, _ = build_report(part, quick=True, only=["lm-samples"])
    assert path == part / REPORT_MD and samples.exists() and path.exists()


def test_untraced_numbers_sees_typed_numbers_and_skips_math_and_code() -> None:
    n = Numbers()
    text = (f"accuracy {n(0.8512)} after {n.int(12000)} steps; typed 0.75 here. "
            "Math $x^2 + 1$, code `steps=30`, $$\\sum_{k=1}^{T}$$, a figure ![a](figures/fig-2.png).")
    assert untraced_numbers(text, n.emitted) == ["0.75"]


def test_an_unknown_experiment_is_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown experiment 'everything'"):
        build_report(tmp_path / "report", rerun=["everything"])
    with pytest.raises(UsageError, match="only: unknown experiment 'probes'"):
        build_report(tmp_path / "report", only=["probes"])
    assert not (tmp_path / "report").exists()
