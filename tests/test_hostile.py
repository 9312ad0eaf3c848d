"""Issue 15 at the library level: crafted journals rename nothing, new runs never take over a user's
folder, resume checks the corpus, sampling survives extreme temperatures and seeds, SIGHUP saves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from chargen import checkpoint, schema
from chargen.cli import app
from chargen.errors import CheckpointError, TrainingError, UsageError
from chargen.models import ModelConfig, build_model
from chargen.safeio import FileTooLarge, NotRegularFile, open_regular, read_regular
from chargen.sample import MAX_SEED, generate, nth_seed, sample_next
from chargen.tasks import build_task
from chargen.train import Callbacks, TrainConfig, check_new_run_dir, fit
from chargen.vocab import Vocab

TALE = "Once upon a time a miller had a daughter who could spin straw into gold, or so he said.\n" * 30
TINY = ModelConfig(cell="lstm", hidden_size=8, num_layers=1, embed_dim=4)
runner = CliRunner()


@pytest.fixture
def tale(tmp_path: Path) -> Path:
    path = tmp_path / "tale.txt"
    path.write_text(TALE, encoding="utf-8")
    return path


def train_tiny(corpus: Path, run: Path, steps: int = 2) -> None:
    task = build_task("lm", seed=0, corpus=str(corpus), seq_len=8, batch_size=4)
    fit(task, TINY, TrainConfig(steps=steps, eval_every=steps, device="cpu"), run)


# --------------------------------------------------------------------------- F1: the save journal


def saved(run: Path) -> None:
    cfg = ModelConfig(**{**TINY.to_dict(), "vocab_size": 3})
    checkpoint.save(run, {"task": "lm", "model": cfg.to_dict(), "vocab": Vocab("abc").to_json()}, build_model(cfg))


@pytest.mark.parametrize("names", [
    lambda root: {str(root / "victim.txt"): "payload"},
    lambda root: {"../victim.txt": "payload"},
    lambda root: {"model.pt": str(root / "victim.txt")},
    lambda root: {"model.pt": "config.json"},
    lambda root: {"model.pt": ".config.json.abcd1234.tmp"},  # another file's temporary name
    lambda root: ["model.pt"],
])
def test_a_crafted_journal_renames_nothing(tmp_path: Path, names, one_torch_thread) -> None:
    run = tmp_path / "run"
    saved(run)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (run / "payload").write_text("attacker\n")
    (run / ".config.json.abcd1234.tmp").write_text("{}")
    (run / checkpoint.JOURNAL).write_text(json.dumps(names(tmp_path)))
    before = {p.name: p.read_bytes() for p in [*run.iterdir(), victim]}
    with pytest.raises(CheckpointError, match="nothing was renamed"):
        checkpoint.load(run)
    assert {p.name: p.read_bytes() for p in [*run.iterdir(), victim]} == before


def test_a_genuine_interrupted_save_still_rolls_forward(tmp_path: Path, one_torch_thread) -> None:
    run = tmp_path / "run"
    saved(run)
    config = json.loads((run / checkpoint.CONFIG).read_text())
    tmp = ".config.json.k3y_9abc.tmp"
    (run / tmp).write_text(json.dumps({**config, "step": 7}))
    (run / checkpoint.JOURNAL).write_text(json.dumps({checkpoint.CONFIG: tmp}))
    (run / ".notes.tmp").write_text("someone else's temporary file\n")
    assert checkpoint.load(run).config["step"] == 7
    assert not (run / checkpoint.JOURNAL).exists() and (run / ".notes.tmp").exists()


# --------------------------------------------------------------------------- F8, F9: special files


def test_special_files_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(NotRegularFile):
            open_regular(path)
    assert time.monotonic() - started < 5
    big = tmp_path / "big"
    big.write_bytes(b"x" * 101)
    with pytest.raises(FileTooLarge):
        read_regular(big, 100)
    assert read_regular(big, 101) == b"x" * 101


# --------------------------------------------------------------------------- F2: the output folder


def test_a_new_run_never_takes_over_a_folder_of_the_users_files(tmp_path: Path, tale: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.jsonl").write_text('{"my": "log"}\n')
    with pytest.raises(UsageError, match="not a chargen run"):
        check_new_run_dir(mine)
    check_new_run_dir(tmp_path / "new")  # a new folder, and an empty one, are fine
    (tmp_path / "empty").mkdir()
    check_new_run_dir(tmp_path / "empty")


def test_a_failed_run_in_a_killed_runs_folder_keeps_the_files_it_found(tmp_path: Path, tale: Path,
                                                                       one_torch_thread) -> None:
    # What a run killed before its first checkpoint leaves: a stale lock and its logs.
    run = tmp_path / "run"
    run.mkdir()
    (run / checkpoint.LOCK).write_text(json.dumps({"pid": 2**31 - 2, "host": os.uname().nodename}))
    (run / "metrics.jsonl").write_text('{"step": 10, "split": "train", "loss": 3.0}\n')
    task = build_task("lm", seed=0, corpus=str(tale), seq_len=8, batch_size=4)
    class FailsAtStart(Callbacks):
        def on_start(self, info: dict) -> None:
            raise TrainingError("failed before the first checkpoint")

    with pytest.raises(TrainingError):
        fit(task, TINY, TrainConfig(steps=50, eval_every=50, device="cpu"), run, FailsAtStart())
    assert (run / "metrics.jsonl").read_text().startswith('{"step": 10')


# --------------------------------------------------------------------------- F3, resume history


def test_resume_refuses_a_changed_corpus_and_keeps_the_command_history(tmp_path: Path, tale: Path,
                                                                       one_torch_thread) -> None:
    run = tmp_path / "run"
    train_tiny(tale, run)
    recorded = json.loads((run / checkpoint.CONFIG).read_text())["task_config"]["corpus_sha256"]
    tale.write_text(TALE[37:] + TALE[:37], encoding="utf-8")  # the same characters, other text
    result = runner.invoke(app, ["train", "--resume", str(run), "--steps", "4", "--quiet"])
    assert result.exit_code == 1 and "has changed since" in result.stderr and str(tale) in result.stderr
    config = json.loads((run / checkpoint.CONFIG).read_text())
    assert config["task_config"]["corpus_sha256"] == recorded and config["step"] == 2

    tale.write_text(TALE, encoding="utf-8")
    result = runner.invoke(app, ["train", "--resume", str(run), "--steps", "4", "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"resuming {run} from step 2 to step 4" in result.stderr
    config = json.loads((run / checkpoint.CONFIG).read_text())
    assert config["step"] == 4 and len(config["commands"]) == 2
    assert config["commands"][0] == config["command"]  # the command that started the run stays "command"


# --------------------------------------------------------------------------- F4, F5: sampling


def test_a_subnormal_temperature_is_greedy_decoding() -> None:
    logits = torch.tensor([[1e30, -3.0, 2.0, 1e30 - 1e24]])
    generator = torch.Generator().manual_seed(0)
    for temperature in (1e-45, 5e-324, 1e-300):
        assert int(sample_next(logits, temperature, None, generator)) == int(sample_next(logits, 0.0))


def test_seeds_of_a_batch_wrap_within_64_bits() -> None:
    assert nth_seed(MAX_SEED, 1) == 0 and nth_seed(5, 2) == 7 and nth_seed(None, 3) is None
    torch.Generator().manual_seed(nth_seed(MAX_SEED, 0))  # in range for torch


def test_unprimed_greedy_text_is_the_same_every_time(one_torch_thread) -> None:
    vocab = Vocab("\nabc ")
    model = build_model(ModelConfig(**{**TINY.to_dict(), "vocab_size": len(vocab)})).eval()
    texts = {"".join(generate(model, vocab, length=20, temperature=0, seed=s)) for s in range(3)}
    assert len(texts) == 1


# --------------------------------------------------------------------------- F6, F7: the schema


def test_the_schema_knows_every_model_setting() -> None:
    """A new ModelConfig field must be given a type and range in chargen.schema."""
    checked = {"kind", "cell", "engine", "vocab_size", "embed_dim", "hidden_size", "num_layers", "dropout",
               "num_classes", "num_conditions", "condition_dim", "cell_options", "members",
               "init", "forget_bias", "mu", "s",  # issue 14: the init and momentum settings
               "family", "n_layer", "n_head", "d_model", "context", "positions", "tie_weights"}  # issue 23
    assert set(ModelConfig.__dataclass_fields__) == checked
    schema.check_model(ModelConfig(vocab_size=80).to_dict())


@pytest.mark.parametrize(("change", "says"), [
    ({"members": 0}, "model.members must be an integer from 1 to 64"),
    ({"members": 10**6}, "model.members must be an integer"),
    ({"members": True}, "model.members must be an integer"),
])
def test_the_schema_bounds_a_classifier_ensemble(change: dict, says: str) -> None:
    config = {"format_version": 1, "model": {**ModelConfig(vocab_size=80).to_dict(), **change}}
    with pytest.raises(schema.SchemaError, match=says):
        schema.check_config(config, 1)


@pytest.mark.parametrize(("calibration", "says"), [
    ({"temperature": 0.0}, "calibration.temperature must be a number"),
    ({"temperature": float("nan")}, "calibration.temperature must be a number"),
    ({"ngram_weight": "0.3"}, "calibration.ngram_weight must be a number"),
    ({"log_prior": [0.0, float("inf")]}, "calibration.log_prior must be a list of finite numbers"),
    ({"log_prior": [0.0, 0.0, 0.0]}, "log_prior has 3 entries but the model has 2 classes"),
    ({"ngram_file": "../other/ngram.json"}, "calibration.ngram_file must be a file name inside the run directory"),
    ({"ngram_file": 7}, "calibration.ngram_file must be a string"),
    ([], "calibration must be an object"),
])
def test_the_schema_checks_a_classifier_calibration(calibration: object, says: str) -> None:
    model = ModelConfig(kind="classifier", vocab_size=80, num_classes=2).to_dict()
    with pytest.raises(schema.SchemaError, match=says):
        schema.check_config({"format_version": 1, "model": model, "calibration": calibration}, 1)
    schema.check_config({"format_version": 1, "model": model, "calibration": {
        "ngram_weight": 0.3, "prior_weight": 0.0, "temperature": 2.6, "log_prior": [-0.5, -1.0],
        "ngram_file": "ngram.json"}}, 1)


def test_an_ensemble_is_estimated_as_all_its_members() -> None:
    one = ModelConfig(kind="classifier", vocab_size=30, hidden_size=12, num_layers=2, embed_dim=5, num_classes=4)
    two = ModelConfig(**{**one.to_dict(), "members": 2})
    actual = sum(p.numel() for p in build_model(two).parameters())
    assert actual == 2 * sum(p.numel() for p in build_model(one).parameters())
    assert actual <= schema.parameter_estimate(two.to_dict()) == 2 * schema.parameter_estimate(one.to_dict())


def test_the_parameter_estimate_bounds_every_cell() -> None:
    from chargen.cells import CELLS

    for cell in CELLS:
        cfg = ModelConfig(cell=cell, vocab_size=30, hidden_size=12, num_layers=3, embed_dim=5,
                          engine="fused" if CELLS[cell].has_fused else "loop")
        actual = sum(p.numel() for p in build_model(cfg).parameters())
        assert actual <= schema.parameter_estimate(cfg.to_dict()), cell


# --------------------------------------------------------------------------- F12, F15: real processes


def chargen(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.Popen([sys.executable, "-m", "chargen", *args], env=env, text=True,
                            stderr=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]


@pytest.mark.slow  # a real process: starts torch
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_under_stdout_is_one_line_and_exit_1(tmp_path: Path, tale: Path, one_torch_thread) -> None:
    run = tmp_path / "run"
    train_tiny(tale, run)
    with open("/dev/full", "w") as full:
        proc = chargen("sample", "--model", str(run / "best"), "--length", "200", stdout=full)  # no which-checkpoint note
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert err.strip() == "error: cannot write the output to stdout: No space left on device"


@pytest.mark.slow  # a real process: starts torch, trains
def test_sighup_saves_like_sigterm_and_releases_the_lock(tmp_path: Path, tale: Path) -> None:
    run = tmp_path / "run"
    train = chargen("train", "--corpus", str(tale), "--steps", "100000", "--eval-every", "100000", "--hidden", "8",
                    "--embed", "4", "--layers", "1", "--seq-len", "8", "--batch-size", "4", "--quiet",
                    "--out", str(run), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (run / "metrics.jsonl").exists() and time.monotonic() < deadline and train.poll() is None:
        time.sleep(0.05)
    train.send_signal(signal.SIGHUP)
    _, err = train.communicate(timeout=60)
    assert train.returncode == 128 + signal.SIGHUP, err
    step = json.loads((run / checkpoint.CONFIG).read_text())["step"]
    assert step >= 10 and f"stopped by SIGHUP at step {step:,}" in err
    assert not (run / checkpoint.LOCK).exists() and "Traceback" not in err


# --------------------------------------------------------------------------- threads on purpose


def test_threads_are_chosen_on_purpose(monkeypatch: pytest.MonkeyPatch) -> None:
    from chargen import runtime

    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert runtime.choose_threads(parameters=100_000) == 1  # small models and generation: one
    assert runtime.choose_threads(parameters=10_000_000) == 8
    assert runtime.choose_threads(parameters=10_000_000, processes=3) == 2  # processes x threads <= cores
    assert runtime.choose_threads(3, parameters=100_000) == 3  # what the user asks for
    with pytest.raises(UsageError, match="threads must be at least 1"):
        runtime.choose_threads(0)


def test_training_sets_its_threads_and_gives_the_callers_back(tmp_path: Path, tale: Path) -> None:
    seen: list[int] = []

    class Watch(Callbacks):
        def on_start(self, info: dict) -> None:
            seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    task = build_task("lm", seed=0, corpus=str(tale), seq_len=8, batch_size=4)
    fit(task, TINY, TrainConfig(steps=1, eval_every=1, device="cpu"), tmp_path / "run", Watch())
    assert seen == [1] and torch.get_num_threads() == before


# --------------------------------------------------------------------------- help a new user can read


def _commands() -> list[list[str]]:
    from chargen.cli.app import app as root

    words = [[c.name or c.callback.__name__.replace("_", "-")] for c in root.registered_commands if c.callback]
    for group in root.registered_groups:
        words += [[group.name, c.name or c.callback.__name__.replace("_", "-")]
                  for c in group.typer_instance.registered_commands if c.callback]
    return words


def test_help_at_80_columns_cuts_nothing_and_shows_no_bool_type() -> None:
    for words in _commands():
        result = runner.invoke(app, [*words, "--help"], env={"COLUMNS": "80"})
        assert result.exit_code == 0, words
        assert "…" not in result.stdout and "<bool>" not in result.stdout, (words, result.stdout)


def test_train_help_shows_each_tasks_defaults() -> None:
    from chargen.cli.train import HELP_DEFAULTS
    from chargen.tasks import task_names
    from chargen.tasks.classify import ClassifyConfig
    from chargen.tasks.generate import GenerateConfig
    from chargen.tasks.lm import LMConfig
    from chargen.tasks.resolve import task_defaults
    from chargen.tasks.palindrome import PalindromeConfig

    configs = {"lm": LMConfig, "classify": ClassifyConfig, "generate": GenerateConfig, "palindrome": PalindromeConfig}

    def per_task(values: dict[str, object]) -> str:
        groups: dict[str, list[str]] = {}
        for task, value in values.items():
            groups.setdefault("off" if isinstance(value, int) and value >= 10**9 else str(value), []).append(task)
        return next(iter(groups)) if len(groups) == 1 else "; ".join(f"{v} ({', '.join(t)})" for v, t in groups.items())

    model = {"cell": "cell", "layers": "num_layers", "hidden": "hidden_size", "embed": "embed_dim", "dropout": "dropout"}
    train = {k: k for k in ("steps", "lr", "optimizer", "clip", "eval_every", "sample_every", "seed")}
    expected = {k: per_task({t: task_defaults(t).model.get(f, ModelConfig.__dataclass_fields__[f].default)
                             for t in task_names()}) for k, f in model.items()}
    expected |= {k: per_task({t: task_defaults(t).train.get(f, TrainConfig.__dataclass_fields__[f].default)
                              for t in task_names()}) for k, f in train.items()}
    expected["seq_len"] = str(LMConfig.__dataclass_fields__["seq_len"].default)
    expected["batch_size"] = per_task({t: configs[t].__dataclass_fields__["batch_size"].default for t in task_names()})
    assert HELP_DEFAULTS == expected
    shown = " ".join(runner.invoke(app, ["train", "--help"], env={"COLUMNS": "300"}).stdout.split())
    assert "Hidden units per layer. Default: 256 (classify, generate, lm); 128 (palindrome)." in shown


def test_an_error_in_train_is_the_only_thing_on_stderr(tmp_path: Path) -> None:
    fifo = tmp_path / "text.fifo"
    os.mkfifo(fifo)
    result = runner.invoke(app, ["train", "--corpus", str(fifo), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert result.stderr == f"error: cannot read {fifo}: it is a FIFO (named pipe), not a regular file; " \
                            "save the text to a file first\n"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("args", [["--version"], ["sample", "--help"]])
def test_help_and_version_into_a_full_disk_are_one_line(args: list[str]) -> None:
    with open("/dev/full", "w") as full:
        proc = chargen(*args, stdout=full)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert err == "error: cannot write the output to stdout: No space left on device\n"
