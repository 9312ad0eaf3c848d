"""chargen sample --max-copy, --novelty, --pattern, --include: guarantees through the CLI, errors before output."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chargen.cli import app
from chargen.data.corpora import load_corpus
from chargen.paths import PROJECT_ROOT

runner = CliRunner()
PATTERN = r"[A-Z][a-z]+ (was|is) [a-z ]+\."


@pytest.fixture
def run(tmp_path: Path, corpus_mirror: Path) -> tuple[Path, str]:
    """The shipped grimm model in a run of its own, trained (so its config says) on a slice of grimm."""
    corpus = tmp_path / "slice.txt"
    corpus.write_text(load_corpus("grimm").text[30_000:50_000], encoding="utf-8")
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "model.pt"):
        shutil.copy(PROJECT_ROOT / "checkpoints" / "grimm" / name, run / name)
    config = json.loads((run / "config.json").read_text())
    config["task_config"]["options"]["corpus"] = str(corpus)
    config["task_config"]["corpus_sha256"] = load_corpus(str(corpus)).sha256
    (run / "config.json").write_text(json.dumps(config))
    return run, load_corpus(str(corpus)).text


def test_max_copy_holds_and_novelty_reports_each_sample(run: tuple[Path, str]) -> None:
    path, corpus = run
    result = runner.invoke(app, ["sample", "--model", str(path), "--max-copy", "6", "--novelty", "--length", "300",
                                 "--seed", "1", "--temp", "0.6"])
    assert result.exit_code == 0, result.output
    text = result.stdout.removesuffix("\n")
    assert len(text) == 300 and not [text[i : i + 7] for i in range(len(text) - 6) if text[i : i + 7] in corpus]
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("novelty, sample 1: longest copy 6 characters") and "copies of 20+" in line
    assert list(path.glob("copies-*.npz"))  # the index is cached beside the model
    plain = runner.invoke(app, ["sample", "--model", str(path), "--novelty", "-n", "3", "--length", "100"])
    assert plain.exit_code == 0 and len(plain.stderr.strip().splitlines()) == 3


def test_every_sample_matches_the_pattern_and_holds_the_words(run: tuple[Path, str]) -> None:
    path, _ = run
    result = runner.invoke(app, ["sample", "--model", str(path), "--pattern", PATTERN, "--include", "gold", "-n", "4",
                                 "--length", "80", "--seed", "2"])
    assert result.exit_code == 0, result.output
    samples = result.stdout.removesuffix("\n").split("\n\n")
    assert len(samples) == 4 and all(re.fullmatch(PATTERN, s) and "gold" in s for s in samples), samples
    primed = runner.invoke(app, ["sample", "--model", str(path), "--pattern", PATTERN, "--prime", "King", "--length",
                                 "60", "--seed", "3"])
    assert primed.exit_code == 0 and re.fullmatch(r"King[a-z]* (was|is) [a-z ]+\.\n", primed.stdout)


@pytest.mark.parametrize(("args", "code", "needle"), [
    (["--pattern", "("], 2, "--pattern '(' is not a valid regular expression"),
    (["--pattern", "x{600}", "--length", "50"], 2, "(the shortest needs 600); raise --length"),
    (["--include", "gold%"], 1, "--include word 'gold%'"),
    (["--max-copy", "0"], 2, "--max-copy must be at least 1"),
    (["--max-copy", "5", "--beam", "4", "--prime", "The"], 2, "--beam does not take --max-copy"),
    (["--max-copy", "5", "--prime", "100%"], 1, "the prime has 2 character(s) outside"),
])
def test_bad_constraints_are_one_line_errors_before_any_output(run: tuple[Path, str], args: list[str], code: int,
                                                                needle: str) -> None:
    result = runner.invoke(app, ["sample", "--model", str(run[0]), *args])
    assert result.exit_code == code and result.stdout == ""
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in run[0].iterdir()) == ["config.json", "model.pt"]  # no index was cached


def test_a_run_without_its_corpus_cannot_promise_max_copy(run: tuple[Path, str]) -> None:
    path, _ = run
    config = json.loads((path / "config.json").read_text())
    Path(config["task_config"]["options"]["corpus"]).unlink()
    for option in (["--max-copy", "8"], ["--novelty"]):
        result = runner.invoke(app, ["sample", "--model", str(path), *option])
        assert result.exit_code == 1 and result.stdout == "" and option[0] in result.stderr
        assert "needs the text" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_name_generators_are_told_the_copy_constraints_are_for_text() -> None:
    # --pattern and --include hold names too (tests/test_names.py); a name generator has no corpus index
    result = runner.invoke(app, ["sample", "--model", "surnames-gen", "--max-copy", "5", "--pattern", "[A-Z][a-z]+"])
    assert result.exit_code == 2 and "--max-copy is for text models" in result.stderr and result.stdout == ""
