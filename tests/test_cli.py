"""The CLI end to end on a tiny corpus: train -> sample -> evaluate, streams, exit codes, --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chargen.cli import app

runner = CliRunner()
TEXT = "Sleeping beauty is asleep in the castle, and the prince rides by. " * 30


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    corpus = root / "tale.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    run = root / "run"
    result = runner.invoke(app, [
        "train", "--corpus", str(corpus), "--hidden", "32", "--embed", "8", "--seq-len", "16",
        "--batch-size", "4", "--steps", "40", "--eval-every", "20", "--sample-every", "20",
        "--lr", "1e-2", "--out", str(run), "--quiet", "--device", "cpu",
    ])
    assert result.exit_code == 0, result.output
    assert "saved to" in result.stderr and result.stdout == ""
    return run


def test_help_and_version() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("train", "sample", "evaluate", "corpora"):
        assert command in result.stdout
    assert runner.invoke(app, ["--version"]).stdout.startswith("chargen ")
    assert runner.invoke(app, ["train", "-h"]).exit_code == 0


def test_sample_streams_text_to_stdout_only(trained: Path) -> None:
    args = ["sample", "--model", str(trained), "--prime", "Sleeping beauty is", "--length", "50", "--seed", "4"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("Sleeping beauty is")
    assert len(first.stdout) == len("Sleeping beauty is") + 50 + 1
    assert first.stderr.startswith("using the best checkpoint") and first.stderr.count("\n") == 1  # which model: one line
    assert runner.invoke(app, args).stdout == first.stdout  # seeded
    greedy = runner.invoke(app, [*args[:-2], "--greedy", "-n", "2"])
    a, b = greedy.stdout.rstrip("\n").split("\n\n")
    assert a == b  # greedy decoding does not depend on the seed


def test_evaluate_recomputes_the_recorded_validation_loss(trained: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--model", str(trained), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    recorded = json.loads((trained / "config.json").read_text())["metrics"]["val_loss"]
    assert report["metrics"]["val_loss"] == pytest.approx(recorded, rel=1e-6)


def test_resume_extends_a_run(trained: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    result = runner.invoke(app, ["train", "--resume", str(run), "--steps", "50", "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["step"] == 50


def test_training_never_overwrites_a_trained_model(trained: Path) -> None:
    before = (trained / "model.pt").read_bytes()
    result = runner.invoke(app, ["train", "--corpus", "grimm", "--out", str(trained), "--steps", "1"])
    assert result.exit_code == 2
    assert "already holds a trained model" in result.stderr
    assert (trained / "model.pt").read_bytes() == before


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["sample", "--model", "no-such-model"], 1, "no model 'no-such-model'"),
        (["sample", "--temp", "-1"], 2, "--temp must be 0"),
        (["train", "--cell", "no-such-cell", "--steps", "1"], 2, "unknown cell 'no-such-cell'"),
        (["train", "--corpus", "atlantis", "--steps", "1"], 1, "unknown corpus"),
        (["train", "--time", "soon"], 2, "--time: cannot read"),
        (["sample", "--bogus"], 2, "No such option"),
    ],
)
def test_user_mistakes_are_one_line_errors(args: list[str], code: int, message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_prime_outside_the_vocabulary_is_refused_before_any_output(trained: Path) -> None:
    result = runner.invoke(app, ["sample", "--model", str(trained), "--prime", "Sleeping€"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "outside the model's vocabulary: '€'" in result.stderr


def test_corpora_lists_the_registry_as_json() -> None:
    result = runner.invoke(app, ["corpora", "--json"])
    assert result.exit_code == 0
    names = {row["name"] for row in json.loads(result.stdout)}
    assert {"grimm", "tinyshakespeare", "origin", "democracy", "names", "firstnames"} <= names


def test_a_cell_without_a_fused_kernel_trains_on_the_loop_engine_by_default(tmp_path: Path) -> None:
    corpus = tmp_path / "tale.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    args = ["train", "--corpus", str(corpus), "--cell", "phased-lstm", "--hidden", "8", "--layers", "1",
            "--seq-len", "8", "--batch-size", "2", "--steps", "2", "--quiet", "--device", "cpu"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["engine"] == "loop"
    refused = runner.invoke(app, [*args, "--engine", "fused", "--out", str(tmp_path / "fused")])
    assert refused.exit_code == 2 and "no fused kernel; use --engine loop" in refused.stderr

