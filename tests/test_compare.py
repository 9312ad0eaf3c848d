"""`chargen compare` and `chargen gradients`: well-formed, reproducible results; checkable gradient flow; CLI errors."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from chargen.cli import app
from chargen.experiments.compare import CURVES_PNG, RESULTS_JSON, CompareResult, compare, load_results, stats
from chargen.experiments.gradients import gradient_flow, gradient_model, hidden_gradient_norms, load_gradients, save_gradients

runner = CliRunner()
WORDS = "the king and queen went to the forest where a wolf lived in a little house by the river".split()
TINY_MODEL = {"hidden_size": 8, "embed_dim": 4, "num_layers": 1}
TINY_TRAIN = {"steps": 6, "eval_every": 2, "log_every": 2, "device": "cpu"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "tale.txt"
    path.write_text(" ".join(WORDS[(i * 7) % len(WORDS)] for i in range(600)), encoding="utf-8")
    return path


def tiny_compare(corpus: Path, cells: list[str], seeds: Any, out_dir: Path | None, **kwargs: Any) -> CompareResult:
    return compare("lm", cells, seeds, task_options={"corpus": str(corpus), "batch_size": 4, "seq_len": 8},
                   model=TINY_MODEL, train=TINY_TRAIN, out_dir=out_dir, **kwargs)


@pytest.fixture(scope="module")
def compared(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[CompareResult, Path, list[tuple]]:
    out = tmp_path_factory.mktemp("compare") / "out"
    events: list[tuple] = []
    with pytest.MonkeyPatch.context() as patch:
        # each run's own loss.png (drawn by fit) is the slowest part of a tiny run and not what is tested here
        patch.setattr("chargen.training.rundir.plot_loss", lambda *args, **kwargs: None)
        result = tiny_compare(corpus, ["rnn", "momentum-rnn"], 2, out,
                              progress=lambda done, total, info: events.append((done, total, info["event"])))
    return result, out, events


# -- compare -------------------------------------------------------------------------------------


def test_compare_runs_every_cell_and_seed_under_one_budget(compared: tuple) -> None:
    result, out, events = compared
    assert result.cells == ["rnn", "momentum-rnn"] and result.seeds == [0, 1]
    assert sorted((r.cell, r.seed) for r in result.runs) == sorted(
        (c, s) for c in result.cells for s in result.seeds)
    for run in result.runs:
        assert run.steps == 6
        assert math.isfinite(run.final["val_loss"]) and run.final["val_loss"] > 0
        assert [p[0] for p in run.train_curve] == [2, 4, 6]
        assert [p[0] for p in run.val_curve] == [2, 4, 6]
        clock = [p[2] for p in run.train_curve]
        assert 0 < clock[0] <= clock[1] <= clock[2] == pytest.approx(run.train_seconds)
        assert run.train_seconds <= run.elapsed <= run.wall
        assert run.units_per_second == pytest.approx(6 * 4 * 8 / run.train_seconds)  # steps x batch x seq_len
        assert run.held_out["val_loss"] == pytest.approx(run.final["val_loss"], rel=1e-5)  # LM: the same split
        assert (out / run.run_dir / "metrics.jsonl").exists()
        assert not (out / run.run_dir / "model.pt").exists()  # logs only, unless keep_weights
    # the momentum cells got their own model config; the RNN no mu/s
    assert result.model["rnn"]["cell_options"] == {} and result.model["momentum-rnn"]["cell"] == "momentum-rnn"
    assert result.train["steps"] == 6 and "seed" not in result.train
    starts = [e for e in events if e[2] == "start"]
    ends = [e for e in events if e[2] == "end"]
    assert [e[0] for e in starts] == [0, 1, 2, 3] and [e[0] for e in ends] == [1, 2, 3, 4]
    assert any(e[2] == "step" for e in events)


def test_compare_summary_is_mean_and_sample_std_of_the_runs(compared: tuple) -> None:
    result, _, _ = compared
    for cell in result.cells:
        losses = [r.final["val_loss"] for r in result.runs_of(cell)]
        row = result.summary[cell]
        assert row["val_loss"]["n"] == 2
        assert row["val_loss"]["mean"] == pytest.approx(statistics.fmean(losses))
        assert row["val_loss"]["std"] == pytest.approx(statistics.stdev(losses))
        assert row["val_loss"]["min"] == min(losses) and row["val_loss"]["max"] == max(losses)
        assert row["units_per_second"]["mean"] == pytest.approx(
            statistics.fmean(r.units_per_second for r in result.runs_of(cell)))
        assert row["accuracy"]["mean"] is None  # an LM reports no accuracy
    assert result.accuracy_key is None


def test_compare_threshold_and_steps_to_reach_it(compared: tuple) -> None:
    result, _, _ = compared
    worst = max(result.summary[c]["val_loss"]["mean"] for c in result.cells)
    assert result.threshold == pytest.approx(worst)
    for run in result.runs:
        crossed = [s for s, loss in run.val_curve if loss <= result.threshold]
        assert run.steps_to_threshold == (crossed[0] if crossed else None)
        assert (run.seconds_to_threshold is None) == (run.steps_to_threshold is None)
    # some seed of every cell ends at or below its cell's mean, and every mean is at or below the worst one
    for cell in result.cells:
        assert any(r.steps_to_threshold is not None for r in result.runs_of(cell))


def test_compare_results_reload_and_plot(compared: tuple) -> None:
    result, out, _ = compared
    assert (out / CURVES_PNG).stat().st_size > 10_000
    data = json.loads((out / RESULTS_JSON).read_text())
    assert data["format"] == "chargen-compare/1" and data["task"] == "lm"
    loaded = load_results(out)
    assert loaded.to_dict() == json.loads(json.dumps(result.to_dict()))
    assert loaded.summary["rnn"]["val_loss"] == result.summary["rnn"]["val_loss"]
    from chargen.plots import plot_compare

    assert plot_compare(loaded, out / "again.png").exists()  # a report can redraw it from the JSON alone


def test_same_seed_gives_the_same_result(compared: tuple, corpus: Path) -> None:
    result, _, _ = compared
    again = tiny_compare(corpus, ["momentum-rnn"], [1], None, held_out=False)
    [first] = [r for r in result.runs if r.cell == "momentum-rnn" and r.seed == 1]
    [second] = again.runs
    assert [p[0] for p in second.val_curve] == [p[0] for p in first.val_curve]
    assert [p[1] for p in second.val_curve] == pytest.approx([p[1] for p in first.val_curve], rel=1e-6)
    assert [p[1] for p in second.train_curve] == pytest.approx([p[1] for p in first.train_curve], rel=1e-6)


def test_compare_refuses_an_existing_comparison_and_bad_settings(compared: tuple, corpus: Path) -> None:
    from chargen.errors import UsageError

    _, out, _ = compared
    with pytest.raises(UsageError, match="already holds a comparison"):
        tiny_compare(corpus, ["rnn"], 1, out)
    with pytest.raises(UsageError, match="unknown cell 'no-such-cell'"):
        tiny_compare(corpus, ["rnn", "no-such-cell"], 1, None)
    with pytest.raises(UsageError, match="seeds"):
        tiny_compare(corpus, ["rnn"], 0, None)
    with pytest.raises(UsageError, match="mu"):
        compare("lm", ["momentum-rnn"], 1, task_options={"corpus": str(corpus)},
                model={"cell_options": {"mu": 1.5}}, train=TINY_TRAIN)


def test_a_stopped_comparison_resumes_from_its_saved_runs(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = tiny_compare(corpus, ["rnn"], 2, out)
    (out / "compare.json").unlink()  # as if stopped before the end: the runs are saved, the table is not
    started: list[dict] = []
    again = tiny_compare(corpus, ["rnn", "lstm"], 2, out,
                         progress=lambda done, total, info: started.append(info) if info["event"] == "start" else None)
    assert [(i["cell"], i["seed"]) for i in started] == [("lstm", 0), ("lstm", 1)]  # only the new cell ran
    assert [r.final for r in again.runs_of("rnn")] == [r.final for r in first.runs_of("rnn")]


def test_stats_leaves_out_missing_values() -> None:
    row = stats([1.0, None, 3.0])
    assert row == {"n": 2, "missing": 1, "mean": 2.0, "std": pytest.approx(math.sqrt(2)), "min": 1.0, "max": 3.0}
    assert stats([None])["mean"] is None and stats([5.0])["std"] == 0.0


# -- gradients -----------------------------------------------------------------------------------


def test_gradient_flow_gives_one_finite_positive_curve_per_cell(tmp_path: Path) -> None:
    result = gradient_flow(["rnn", "momentum-lstm"], length=40, hidden_size=8, embed_dim=4, batch=2, seeds=2)
    assert list(result.curves) == ["rnn", "momentum-lstm"]
    for curve in result.curves.values():
        for values in (curve.hidden, curve.inputs):
            assert len(values) == 40
            assert all(math.isfinite(v) and v > 0 for v in values)
        assert len(curve.hidden_per_seed) == 2
        assert curve.hidden == pytest.approx([statistics.fmean(v) for v in zip(*curve.hidden_per_seed)])
    json_path, png = save_gradients(result, tmp_path)
    assert png.stat().st_size > 10_000
    assert load_gradients(tmp_path).to_dict() == json.loads(json_path.read_text())


def test_rnn_with_tiny_recurrent_weights_forgets_monotonically() -> None:
    torch.manual_seed(0)
    model = gradient_model("rnn", 10, embed_dim=4, hidden_size=8)
    with torch.no_grad():
        model.encoder.core.layers[0].weight_hh.mul_(0.1)  # spectral norm well below 1
    idx, target = torch.randint(10, (30, 3)), torch.randint(10, (3,))
    hidden, inputs = hidden_gradient_norms(model, idx, target)  # (T, N)
    assert hidden.shape == inputs.shape == (30, 3)
    assert bool((hidden[:-1] < hidden[1:]).all())  # every step further back from the loss, a smaller gradient
    assert float(hidden[0].max() / hidden[-1].min()) < 1e-15


def test_momentum_carries_the_input_gradient_back_as_mu_to_the_distance() -> None:
    """With no recurrence (W_hh = 0) the only way back is the velocity: ||dL/dx_t|| shrinks by exactly mu a step,
    where a plain RNN passes nothing to any earlier input."""
    torch.manual_seed(0)
    idx, target = torch.randint(10, (12, 2)), torch.randint(10, (2,))
    momentum = gradient_model("momentum-rnn", 10, embed_dim=4, hidden_size=8, cell_options={"mu": 0.6, "s": 0.6})
    plain = gradient_model("rnn", 10, embed_dim=4, hidden_size=8)
    for model in (momentum, plain):
        with torch.no_grad():
            model.encoder.core.layers[0].weight_hh.zero_()
    _, inputs = hidden_gradient_norms(momentum, idx, target)
    ratios = inputs[:-1] / inputs[1:]  # (T-1, N): dL/dx_t is per position, whatever the character
    mu = float(momentum.encoder.core.layers[0].mu)  # 0.6 as the cell stores it (float32, then widened)
    assert ratios.flatten().tolist() == pytest.approx([mu] * ratios.numel(), rel=1e-9)
    _, inputs = hidden_gradient_norms(plain, idx, target)
    assert bool((inputs[:-1] == 0).all()) and bool((inputs[-1] > 0).all())


# -- CLI -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["compare", "--cells", "rnn,no-such-cell"], "unknown cell 'no-such-cell'"),
    (["compare", "--cells", ","], "at least one cell"),
    (["compare", "--seeds", "0"], "--seeds must be at least 1"),
    (["compare", "--task", "poetry"], "unknown task 'poetry'"),
    (["compare", "--time", "soon"], "--time"),
    (["compare", "--steps", "0"], "--steps must be positive"),
    (["compare", "--cells", "momentum-rnn", "--mu", "1.5", "--steps", "2"], "mu"),
    (["compare", "--hidden", "0", "--steps", "2"], "--hidden must be positive"),
    (["gradients", "--cells", "lstm,no-such-cell"], "unknown cell 'no-such-cell'"),
    (["gradients", "--length", "1"], "--length must be at least 2"),
    (["gradients", "--seeds", "0"], "--seeds must be at least 1"),
    (["gradients", "--cells", "momentum-lstm", "--s", "-1"], "step size"),
])
def test_cli_bad_input_is_one_line_and_exit_2(args: list[str], message: str, corpus: Path, tmp_path: Path) -> None:
    extra = ["--corpus", str(corpus), "--out", str(tmp_path / "out")] if args[0] == "compare" else []
    result = runner.invoke(app, [*args, *extra])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert not (tmp_path / "out").exists()


def test_cli_compare_builds_the_configuration_and_prints_the_table(
    compared: tuple, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, _, _ = compared
    seen: dict[str, Any] = {}

    def fake_compare(task: str, cells: list[str], seeds: list[int], **kwargs: Any) -> CompareResult:
        seen.update(task=task, cells=cells, seeds=seeds, **kwargs)
        return result

    monkeypatch.setattr("chargen.experiments.compare.compare", fake_compare)
    out = tmp_path / "cmp"
    invoked = runner.invoke(app, ["compare", "--task", "lm", "--corpus", str(corpus), "--cells", "rnn,momentum-rnn",
                                  "--seeds", "2", "--time", "2m", "--hidden", "16", "--mu", "0.3", "--lr", "0.01",
                                  "--out", str(out), "-q"])
    assert invoked.exit_code == 0, invoked.output
    assert seen["task"] == "lm" and seen["cells"] == ["rnn", "momentum-rnn"] and seen["seeds"] == [0, 1]
    assert seen["train"] == {"device": "auto", "time_limit": 120.0, "lr": 0.01}
    assert seen["model"] == {"hidden_size": 16, "mu": 0.3}  # a ModelConfig field, given to the momentum cells only
    assert seen["task_options"] == {"corpus": str(corpus)} and seen["out_dir"] == out
    assert "momentum-rnn" in invoked.stdout and "val loss" in invoked.stdout and "±" in invoked.stdout

    invoked = runner.invoke(app, ["compare", "--corpus", str(corpus), "--out", str(out), "--json", "-q"])
    assert invoked.exit_code == 0, invoked.output
    payload = json.loads(invoked.stdout)
    assert payload["summary"]["rnn"]["val_loss"]["mean"] == pytest.approx(result.summary["rnn"]["val_loss"]["mean"])


def test_cli_gradients_json(tmp_path: Path) -> None:
    invoked = runner.invoke(app, ["gradients", "--cells", "rnn,lstm", "--length", "20", "--hidden", "8", "--embed", "4",
                                  "--batch", "2", "--seeds", "1", "--out", str(tmp_path), "--json", "-q"])
    assert invoked.exit_code == 0, invoked.output
    payload = json.loads(invoked.stdout)
    assert set(payload["summary"]) == {"rnn", "lstm"}
    assert (tmp_path / "gradients.png").exists() and (tmp_path / "gradients.json").exists()
    from rich.console import Console

    from chargen.cli.gradients import gradients_table

    console = Console(width=200, record=True)
    console.print(gradients_table(load_gradients(tmp_path)))
    text = console.export_text()
    assert "decay/step" in text and "lstm" in text
