"""The palindrome probe: the data, the task through the shared training loop, the grid, and `chargen probe`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from chargen import checkpoint
from chargen.cli import app
from chargen.cli.probe import parse_lengths
from chargen.data.palindromes import HELD_OUT_SIZE, PalindromeStream, held_out, palindromes, split
from chargen.errors import UsageError
from chargen.models import ModelConfig
from chargen.experiments.probe import (
    ProbeSettings, longest_kept, probe_run, run_probe, steps_for_length, summarise,
)
from chargen.tasks import build_task, evaluate_saved
from chargen.tasks.palindrome import PalindromeTask
from chargen.tasks.resolve import task_defaults
from chargen.train import TrainConfig, fit

runner = CliRunner()


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as the probe runs: small nets on a shared 2-core machine are fastest so."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# -- data ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [3, 4, 9, 10])
def test_palindromes_are_palindromes_and_the_target_is_the_first_digit(length: int) -> None:
    seqs = palindromes(500, length, torch.Generator().manual_seed(0))
    assert seqs.shape == (500, length) and seqs.dtype == torch.long
    assert torch.equal(seqs, seqs.flip(1))
    assert int(seqs.min()) >= 0 and int(seqs.max()) <= 9
    inputs, targets = split(seqs)
    assert inputs.shape == (length - 1, 500) and targets.shape == (500,)  # time-major: (T-1, N)
    assert torch.equal(targets, inputs[0])
    assert len(set(targets.tolist())) == 10  # all ten digits come up as targets


def test_held_out_set_is_fixed_by_its_seed() -> None:
    x1, y1 = held_out(12)
    x2, y2 = held_out(12)
    assert x1.shape == (11, HELD_OUT_SIZE)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    x3, _ = held_out(12, seed=7)
    assert not torch.equal(x1, x3)
    # the training stream of any seed is drawn elsewhere: it does not replay the held-out set
    train_x, _ = PalindromeStream(12, HELD_OUT_SIZE, seed=0).next()
    assert not torch.equal(train_x, x1)


def test_stream_resumes_exactly_and_rejects_short_lengths() -> None:
    a = PalindromeStream(8, 16, seed=3)
    for _ in range(5):
        a.next()
    b = PalindromeStream(8, 16, seed=99)
    b.load_state_dict(a.state_dict())
    for _ in range(3):
        (xa, ya), (xb, yb) = a.next(), b.next()
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    with pytest.raises(ValueError, match="at least 3"):
        PalindromeStream(2, 16)


# -- the task -------------------------------------------------------------------------------------------


def test_task_is_registered_with_the_classic_defaults() -> None:
    model, train, options = task_defaults("palindrome")
    assert model == {"cell": "lstm", "hidden_size": 128, "num_layers": 1, "embed_dim": 10}
    assert train["optimizer"] == "rmsprop" and train["lr"] == 1e-3 and train["schedule"] == "constant"
    assert options == {"length": 10}
    task = build_task("palindrome", seed=0, length=6)
    cfg = task.model_config(ModelConfig())
    assert (cfg.kind, cfg.vocab_size, cfg.num_classes) == ("classifier", 10, 10)
    with pytest.raises(UsageError, match="at least 3"):
        build_task("palindrome", length=2)
    with pytest.raises(UsageError, match="seq_len"):
        build_task("palindrome", seq_len=30)
    with pytest.raises(UsageError, match="reads no corpus"):
        build_task("palindrome", corpus="grimm")


def test_early_stop_needs_the_accuracy_to_hold() -> None:
    task = PalindromeTask(length=5)
    assert [task.should_stop({"accuracy": a}) for a in (0.999, 0.98, 0.996, 1.0)] == [False, False, False, True]
    assert task.state_dict()["streak"] == 2


def test_lstm_at_length_5_clears_90_percent_and_stops_early() -> None:
    results = run_probe(["lstm"], [5], [0], steps=300, threads=1)
    (run,) = results["runs"]
    assert run["accuracy"] >= 0.9, run
    assert run["stopped_early"] and run["steps"] < 300  # the accuracy held, so the loop stopped
    assert results["summary"][0]["mean"] == run["accuracy"]
    assert results["longest_90"] == {"lstm": 5}
    json.dumps(results)  # JSON-ready as it is


def test_a_probe_with_an_out_folder_resumes_and_runs_only_what_is_missing(tmp_path: Path) -> None:
    settings = ProbeSettings(steps=20, hidden_size=8, eval_every=10)
    first = run_probe(["rnn"], [4], [0], settings=settings, out=tmp_path)
    started: list[dict] = []
    progress = lambda done, total, info: started.append(info) if info["event"] == "start" else None  # noqa: E731
    wider = run_probe(["rnn"], [4], [0, 1], settings=settings, out=tmp_path, progress=progress)
    assert [(i["cell"], i["length"], i["seed"]) for i in started] == [("rnn", 4, 1)]  # seed 0 was saved
    assert wider["runs"][0] == first["runs"][0] and len(wider["runs"]) == 2
    assert wider["settings"]["init"] == "paper"  # the default shows what the cells can do


def test_same_seed_same_result() -> None:
    settings = ProbeSettings(steps=60, eval_every=20)
    a = probe_run("rnn", 7, seed=4, settings=settings)
    b = probe_run("rnn", 7, seed=4, settings=settings)
    c = probe_run("rnn", 7, seed=5, settings=settings)
    same = ("accuracy", "val_loss", "steps")
    assert {k: a[k] for k in same} == {k: b[k] for k in same}
    assert a["val_loss"] != c["val_loss"]


def test_saved_model_is_judged_again_on_the_same_palindromes(tmp_path: Path) -> None:
    task = PalindromeTask(seed=0, length=6)
    cfg = TrainConfig(**{**PalindromeTask.train_defaults, "steps": 40, "eval_every": 20, "device": "cpu"})
    run = fit(task, ModelConfig(cell="rnn", hidden_size=32, num_layers=1, embed_dim=10), cfg, tmp_path / "run")
    loaded = checkpoint.load(tmp_path / "run", task="palindrome")
    metrics = evaluate_saved(loaded, torch.device("cpu"))["metrics"]
    assert metrics["accuracy"] == pytest.approx(run.metrics["accuracy"])
    assert metrics["val_loss"] == pytest.approx(run.metrics["val_loss"], rel=1e-5)
    assert metrics["length"] == 6


def test_summary_and_longest_length_kept() -> None:
    runs = [{"cell": "rnn", "length": t, "seed": s, "accuracy": a, "steps": 10}
            for t, accs in {5: (1.0, 1.0), 10: (0.9, 0.96), 15: (0.5, 0.2), 20: (1.0, 1.0)}.items()
            for s, a in enumerate(accs)]
    summary = summarise(runs, ["rnn"], [5, 10, 15, 20])
    assert [round(r["mean"], 3) for r in summary] == [1.0, 0.93, 0.35, 1.0]
    assert summary[1]["std"] == pytest.approx(0.0424264, rel=1e-4)  # sample std over seeds
    # "keeps": a lucky longer length after a failure does not count
    assert longest_kept(summary, ["rnn"]) == {"rnn": 10}
    assert longest_kept(summary[2:3], ["rnn"]) == {"rnn": None}


def test_step_budget_grows_with_length_and_is_capped() -> None:
    assert steps_for_length(5) < steps_for_length(10) <= steps_for_length(35) == steps_for_length(100)


# -- the command line -----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, lengths", [
    ("5:35:5", [5, 10, 15, 20, 25, 30, 35]),
    ("5:20:5", [5, 10, 15, 20]),
    ("5:7", [5, 6, 7]),
    ("5,10,20", [5, 10, 20]),
    ("12", [12]),
    (" 5, 10 ", [5, 10]),
])
def test_parse_lengths(spec: str, lengths: list[int]) -> None:
    assert parse_lengths(spec) == lengths


@pytest.mark.parametrize("spec", ["5:x", "35:5:5", "5:35:0", "5;10", "", "5:10:2:1", "-5:10"])
def test_parse_lengths_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(UsageError, match="--lengths"):
        parse_lengths(spec)


@pytest.mark.parametrize("args, message", [
    (["--lengths", "5:x"], "--lengths"),
    (["--lengths", "2,5"], "at least 3"),
    (["--cells", "rnn,no-such-cell"], "unknown cell 'no-such-cell'"),
    (["--seeds", "0"], "--seeds"),
    (["--steps", "0"], "--steps"),
])
def test_cli_usage_errors_are_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("chargen.experiments.probe.run_probe", _no_run)
    result = runner.invoke(app, ["probe", "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def _no_run(*args: Any, **kwargs: Any) -> dict[str, Any]:
    raise AssertionError("the probe must not start on bad options")


def test_cli_builds_the_grid_prints_the_table_and_saves_json_and_plot(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_probe(cells, lengths, seeds, *, settings, threads, progress, out=None):
        seen.update(cells=cells, lengths=lengths, seeds=seeds, settings=settings, threads=threads)
        runs = []
        for t in lengths:
            for cell in cells:
                for s in seeds:
                    progress(len(runs), 12, {"event": "start", "cell": cell, "length": t, "seed": s})
                    acc = 1.0 if t < 15 or cell == "lstm" else 0.1 + 0.01 * s
                    runs.append({"cell": cell, "length": t, "seed": s, "accuracy": acc, "val_loss": 0.1,
                                 "steps": 100, "budget": 500, "stopped_early": True, "seconds": 0.1})
                    progress(len(runs), 12, {"event": "end", **runs[-1]})
        summary = summarise(runs, cells, lengths)
        return {"cells": cells, "lengths": lengths, "seeds": seeds, "runs": runs, "summary": summary,
                "longest_90": longest_kept(summary, cells), "elapsed_s": 1.0,
                "settings": {"steps": {str(t): steps_for_length(t) for t in lengths}, "chance": 0.1, "threshold": 0.9}}

    monkeypatch.setattr("chargen.experiments.probe.run_probe", fake_probe)
    out = tmp_path / "probe"
    result = runner.invoke(app, ["probe", "--cells", "rnn,lstm", "--lengths", "5:15:5", "--seeds", "2",
                                 "--steps", "123", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert seen["cells"] == ["rnn", "lstm"] and seen["lengths"] == [5, 10, 15] and seen["seeds"] == [0, 1]
    assert seen["settings"].steps == 123 and seen["settings"].hidden_size == 128 and seen["threads"] == 1
    assert "T=15" in result.output and "0.105 ± 0.007" in result.output  # rnn at T=15: mean ± std
    assert "1.000 ± 0.000" in result.output
    saved = json.loads((out / "probe.json").read_text())
    assert saved["longest_90"] == {"rnn": 10, "lstm": 15}
    assert (out / "probe.png").stat().st_size > 10_000

    as_json = runner.invoke(app, ["probe", "--cells", "rnn,lstm", "--lengths", "5,10,15", "--seeds", "2",
                                  "--out", str(tmp_path / "again"), "--json", "--quiet"])
    assert as_json.exit_code == 0, as_json.output
    payload = json.loads(as_json.stdout)
    assert payload["longest_90"] == {"rnn": 10, "lstm": 15}


def test_cli_real_tiny_probe(tmp_path: Path) -> None:
    result = runner.invoke(app, ["probe", "--cells", "rnn", "--lengths", "3", "--seeds", "1", "--steps", "20",
                                 "--hidden", "16", "--out", str(tmp_path), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["runs"][0]["steps"] == 20 and payload["settings"]["hidden_size"] == 16
    assert (tmp_path / "probe.json").exists() and (tmp_path / "probe.png").exists()


def test_chargen_train_runs_the_palindrome_task(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--task", "palindrome", "--length", "5", "--hidden", "16", "--steps", "20",
                                 "--eval-every", "10", "--device", "cpu", "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["task"] == "palindrome" and config["task_config"]["options"]["length"] == 5
    assert config["model"]["kind"] == "classifier"
