"""Where a run stands: the study's yardstick read from its results file, and the over-fitting watch."""

from __future__ import annotations

import json
import math
import random
import statistics
from pathlib import Path
from typing import Any

import pytest

from chargen.cli.train import _with_flags
from chargen.standing import (BaselineRun, Mark, OverfitWatch, Standing, marks_for, read_baselines, record_baseline,
                              yardstick)


def feed(watch: OverfitWatch, train: list[float], val: list[float]) -> list[tuple[int, str]]:
    """Every warning the watch gives over the evaluations, with the index of the one it came at."""
    return [(i, w) for i, (t, v) in enumerate(zip(train, val)) if (w := watch.update(100 * (i + 1), t, v))]


def test_over_fitting_is_said_once_at_the_second_evaluation_above_the_best() -> None:
    train = [3.0, 2.0, 1.6, 1.4, 1.3, 1.2, 1.1, 1.0, 0.9, 0.8]
    val = [3.1, 2.1, 1.70, 1.60, 1.62, 1.66, 1.70, 1.75, 1.80, 1.90]
    # best 1.60 at index 3; 1.62 is +1.25% (the first above the margin), 1.66 the second in a row
    warnings = feed(OverfitWatch(), train, val)
    assert [i for i, _ in warnings] == [5]
    assert "1.660" in warnings[0][1] and "best (1.600 at step 400)" in warnings[0][1]


def test_noise_around_a_plateau_never_fires() -> None:
    rng = random.Random(0)
    for _ in range(50):
        watch = OverfitWatch()
        train = [2.0 - 0.01 * i for i in range(60)]  # still falling
        val = [1.5 * (1 + rng.uniform(-0.004, 0.004)) for _ in range(60)]  # +-0.4%: inside the 1% margin
        assert feed(watch, train, val) == []


def test_not_over_fitting_when_the_training_loss_rises_too_or_the_rise_is_one_evaluation() -> None:
    diverging = feed(OverfitWatch(), [1.0, 0.9, 1.0, 1.2, 1.5], [1.5, 1.4, 1.5, 1.7, 2.0])
    assert diverging == []  # the learning rate, not over-fitting: train rose above its value at the best
    spike = feed(OverfitWatch(), [1.0, 0.9, 0.8, 0.7, 0.6], [1.5, 1.4, 1.6, 1.39, 1.6])
    assert spike == []  # one evaluation above, then a new best: the streak starts again
    unknown = feed(OverfitWatch(), [None, None, None, None], [1.5, 1.4, 1.6, 1.7])  # type: ignore[list-item]
    assert unknown == []


def write_study(directory: Path, rows: list[dict[str, Any]], extra: str = "") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "grimm.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + extra, encoding="utf-8")


def row(label: str, budget: float, seed: int, loss: float, family: str = "recurrent", cell: str | None = "lstm"):
    return {"corpus": "grimm", "budget_s": budget, "label": label, "family": family, "cell": cell, "seed": seed,
            "val_loss": loss}


def test_the_yardstick_is_the_best_mean_at_the_nearest_budget_with_a_t_interval(tmp_path: Path) -> None:
    lstm = [1.30, 1.28, 1.29]
    rows = [row("LSTM 2x256", 300, s, v) for s, v in enumerate(lstm)]
    rows += [row("GRU 2x256", 300, s, v, cell="gru") for s, v in enumerate([1.33, 1.34, 1.35])]
    rows += [row("LSTM 2x256", 60, s, v) for s, v in enumerate([1.6, 1.62, 1.61])]
    rows += [row("6-gram", 300, 0, 1.9, family="ngram", cell=None)]
    # a line cut by a crash, another corpus's line and a non-finite loss are all skipped
    write_study(tmp_path, rows, '{"corpus": "grimm", "budget_s": 300, "lab\n' + json.dumps(
        {**row("X", 300, 0, 0.1), "corpus": "names"}) + "\n" + json.dumps(row("Y", 300, 0, math.nan)) + "\n")
    runs = read_baselines("grimm", tmp_path)
    assert len(runs) == len(rows) and all(isinstance(r, BaselineRun) for r in runs)
    best, *rest = yardstick(runs, budget_s=600, family="recurrent", cell="gru")  # 600 s: nearer 300 than 60
    half = 4.303 * statistics.stdev(lstm) / math.sqrt(3)
    assert best.label == "LSTM 2x256" and best.val_loss == pytest.approx(statistics.fmean(lstm))
    assert best.half_width == pytest.approx(half) and best.runs == 3 and "5 CPU-min" in best.where
    assert [m.label for m in rest] == ["GRU 2x256"]  # this run's own kind, beside the best
    assert [m.label for m in yardstick(runs, 50, "recurrent", "lstm")] == ["LSTM 2x256"]  # 1 CPU-min
    assert yardstick(runs, 50, "recurrent", "lstm")[0].val_loss == pytest.approx(1.61)
    assert yardstick(runs, None)[0].where.endswith("5 CPU-min, baselines study")  # no time budget: the largest


def test_what_the_study_records_is_what_the_yardstick_reads(tmp_path: Path) -> None:
    runs = [BaselineRun("grimm", 60.0, "GRU 2x128", "recurrent", seed, loss, cell="gru", parameters=150_000)
            for seed, loss in enumerate([1.5, 1.52])]
    for run in runs:
        path = record_baseline(run, tmp_path / "baselines")
    assert path == tmp_path / "baselines" / "grimm.jsonl" and read_baselines("grimm", tmp_path / "baselines") == runs


def test_no_study_file_means_no_yardstick_and_no_error(tmp_path: Path) -> None:
    assert read_baselines("grimm", tmp_path / "absent") == [] and yardstick([], 60) == []
    assert marks_for(None, "grimm", "recurrent", "lstm", None, tmp_path / "absent") == ([], None)
    (tmp_path / "grimm.jsonl").mkdir(parents=True)  # a directory where the file should be
    assert read_baselines("grimm", tmp_path) == []
    assert marks_for(None, None, "recurrent", "lstm", None, tmp_path) == ([], None)


def test_a_registered_corpus_is_measured_against_the_study(tmp_path: Path) -> None:
    write_study(tmp_path, [row("LSTM 2x256", 300, s, v) for s, v in enumerate([1.27, 1.28])])
    marks, said = marks_for(None, "grimm", "transformer", None, 600, tmp_path)
    assert said is None and [m.label for m in marks] == ["LSTM 2x256"]
    assert marks[0].describe() == f"LSTM 2x256 1.27 ± {12.706 * statistics.stdev([1.27, 1.28]) / math.sqrt(2):.2f} " \
                                  "(grimm at 5 CPU-min, baselines study)"


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def on_step(self, step: int, m: dict[str, float]) -> None:
        self.calls.append(("step", step))

    def on_eval(self, step: int, m: dict[str, float]) -> None:
        self.calls.append(("eval", step))

    def on_note(self, message: str) -> None:
        self.calls.append(("note", message))

    def on_sample(self, step: int, loss: float, text: str) -> None:
        self.calls.append(("sample", text))


def test_standing_passes_every_hook_through_and_adds_its_lines_after_evaluations() -> None:
    inner = Recorder()
    mark = Mark("5-gram", 1.9, None, 1, "counted on this text")
    standing = Standing(inner, [mark], render=_with_flags)
    standing.on_sample(1, 2.0, "abc")  # not a hook Standing watches: straight through
    for step, (train, val) in enumerate(zip([2.0, 1.5, 1.2, 1.0, 0.9], [2.0, 1.6, 1.7, 1.8, 1.9]), 1):
        standing.on_step(step, {"loss": train})
        standing.on_eval(step, {"val_loss": val})
    notes = [c[1] for c in inner.calls if c[0] == "note"]
    assert inner.calls[0] == ("sample", "abc") and ("eval", 5) in inner.calls
    assert notes[0] == "val_loss 2.000 beside 5-gram 1.90 (counted on this text): +0.10"
    warnings = [n for n in notes if n.startswith("over-fitting")]
    assert len(warnings) == 1 and "more --dropout" in warnings[0] and "--early-stop" in warnings[0]
    assert len(notes) == 5 + 1  # one standing line per evaluation, the warning once


def test_the_yardstick_reads_the_baselines_studys_own_records(tmp_path: Path) -> None:
    part = tmp_path / "grimm-1m"
    part.mkdir()
    lines = [{"study": "baselines", "part": "grimm-1m", "seed": seed, "val_loss": loss, "parameters": 97_000,
              "params": {"corpus": "grimm", "minutes": 1, "family": "lstm",
                         "model": {"cell": "lstm", "hidden_size": 128, "num_layers": 1}}}
             for seed, loss in enumerate([1.45, 1.47])]
    lines.append({"study": "baselines", "part": "grimm-1m", "seed": 0, "val_loss": 1.31, "order": 8,
                  "params": {"corpus": "grimm", "minutes": 1, "family": "ngram", "model": {}}})
    (part / "runs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"cut', encoding="utf-8")
    runs = read_baselines("grimm", tmp_path)
    assert [(r.label, r.family, r.cell, r.budget_s) for r in runs] == [
        ("LSTM 1x128", "recurrent", "lstm", 60.0), ("LSTM 1x128", "recurrent", "lstm", 60.0),
        ("8-gram", "ngram", None, 60.0)]
    best = yardstick(runs, 60, "recurrent", "lstm")
    assert best[0].label == "8-gram" and best[0].val_loss == pytest.approx(1.31)
    assert best[1].label == "LSTM 1x128" and best[1].val_loss == pytest.approx(1.46)
