"""Checkpoints: atomic journalled saves under crashes and full disks, loading that never runs code, clear refusals, the run lock."""

from __future__ import annotations

import errno
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from chargen import checkpoint
from chargen.errors import CheckpointError, RunLocked
from chargen.models import ModelConfig, build_model
from chargen.vocab import Vocab

VOCAB = Vocab("abc ")
CFG = ModelConfig(vocab_size=len(VOCAB), embed_dim=4, hidden_size=8, num_layers=1)


def save_lm(run: Path, step: int = 1, **config: Any) -> nn.Module:
    """A tiny LM checkpoint whose every weight, config and trainer state says ``step``."""
    model = build_model(CFG)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(step)
    base = {"task": "lm", "model": CFG.to_dict(), "vocab": VOCAB.to_json(), "step": step}
    checkpoint.save(run, {**base, **config}, model, {"step": step})
    return model


def assert_consistent(run: Path) -> int:
    """The checkpoint in ``run`` loads and is one step throughout; returns that step."""
    loaded = checkpoint.load(run)
    step = loaded.config["step"]
    assert all(torch.all(t == step) for t in loaded.model.state_dict().values())
    assert checkpoint.load_tensors(run / checkpoint.TRAINER)["step"] == step
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp") or p.name == checkpoint.JOURNAL]
    return step


def test_round_trip(tmp_path: Path) -> None:
    save_lm(tmp_path / "run", step=3)
    assert assert_consistent(tmp_path / "run") == 3
    assert json.loads((tmp_path / "run" / "config.json").read_text())["format_version"] == checkpoint.FORMAT_VERSION


# --------------------------------------------------------------------------- crashes mid-save


def crash_on_call(monkeypatch: pytest.MonkeyPatch, name: str, n: int, error: BaseException) -> None:
    """Make the ``n``-th call of ``os.<name>`` raise ``error``, as if the process died or the disk filled there."""
    real = getattr(os, name)
    calls = 0

    def fake(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == n:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(os, name, fake)


def test_a_crash_before_the_journal_keeps_the_old_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    save_lm(run, step=1)
    crash_on_call(monkeypatch, "replace", 1, KeyboardInterrupt())  # the journal's rename: the commit point
    with pytest.raises(KeyboardInterrupt):
        save_lm(run, step=2)
    monkeypatch.undo()
    assert assert_consistent(run) == 1


def test_a_crash_after_the_journal_rolls_forward_on_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    save_lm(run, step=1)
    crash_on_call(monkeypatch, "replace", 3, KeyboardInterrupt())  # committed; model.pt renamed, trainer.pt not
    with pytest.raises(KeyboardInterrupt):
        save_lm(run, step=2)
    monkeypatch.undo()
    assert (run / checkpoint.JOURNAL).exists()
    assert assert_consistent(run) == 2


@pytest.mark.parametrize("failing_fsync", [1, 2, 3, 4], ids=["weights", "trainer", "config", "journal"])
def test_disk_full_while_saving_is_one_line_and_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing_fsync: int
) -> None:
    run = tmp_path / "run"
    save_lm(run, step=1)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    crash_on_call(monkeypatch, "fsync", failing_fsync, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    with pytest.raises(CheckpointError) as full:
        save_lm(run, step=2)
    monkeypatch.undo()
    assert str(full.value) == f"cannot save a checkpoint in {run}: No space left on device; the previous checkpoint there is intact"
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # no temporary file left, nothing changed
    assert assert_consistent(run) == 1


def test_disk_full_on_a_first_save_says_nothing_was_saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    crash_on_call(monkeypatch, "fsync", 1, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    with pytest.raises(CheckpointError, match="No space left on device; nothing was saved"):
        save_lm(tmp_path / "run")
    assert list((tmp_path / "run").iterdir()) == []


# --------------------------------------------------------------------------- loading never runs code


class RunsCode:
    """Unpickling this calls ``function(*args)``: what a malicious checkpoint does."""

    def __init__(self, function: Any, *args: Any) -> None:
        self.call = (function, args)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.call


@pytest.mark.parametrize("payload", ["os.system", "builtins.open"])
@pytest.mark.parametrize("target", [checkpoint.WEIGHTS, checkpoint.TRAINER])
def test_a_pickle_that_would_run_code_is_refused_and_never_runs(tmp_path: Path, payload: str, target: str) -> None:
    run = tmp_path / "run"
    save_lm(run)
    marker = tmp_path / "pwned"
    evil = RunsCode(os.system, f"touch {marker}") if payload == "os.system" else RunsCode(open, str(marker), "w")
    torch.save({"encoder.embed.weight": evil, "step": evil}, run / target)
    with pytest.raises(CheckpointError) as refused:
        checkpoint.load(run) if target == checkpoint.WEIGHTS else checkpoint.load_tensors(run / target)
    message = str(refused.value)
    assert message.startswith(f"{run / target}: refused: it holds a pickled Python object (")
    assert "could run code" in message and "\n" not in message
    assert not marker.exists()


# --------------------------------------------------------------------------- clear refusals


def corrupt(run: Path, how: str) -> None:
    """Damage the checkpoint in ``run`` one way."""
    weights, config = run / checkpoint.WEIGHTS, run / checkpoint.CONFIG
    data = json.loads(config.read_text())
    if how == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:100])
    elif how == "garbage weights":
        weights.write_bytes(bytes(range(256)) * 2)
    elif how == "empty weights":
        weights.write_bytes(b"")
    elif how == "weights not a dict":
        weights.write_bytes(checkpoint.tensor_bytes([torch.zeros(2)]))
    elif how == "missing weights":
        weights.unlink()
    elif how == "config not JSON":
        config.write_text("{not json")
    elif how == "config not chargen":
        config.write_text("[1, 2]")
    elif how == "newer format":
        config.write_text(json.dumps({**data, "format_version": checkpoint.FORMAT_VERSION + 1}))
    elif how == "vocabulary does not match the weights":
        config.write_text(json.dumps({**data, "vocab": Vocab("ab").to_json()}))
    elif how == "weights of another shape":
        config.write_text(json.dumps({**data, "model": {**data["model"], "hidden_size": 9}}))


@pytest.mark.parametrize("how, named, says", [
    ("truncated weights", checkpoint.WEIGHTS, "corrupt or truncated"),
    ("garbage weights", checkpoint.WEIGHTS, "corrupt"),
    ("empty weights", checkpoint.WEIGHTS, "corrupt or truncated"),
    ("weights not a dict", checkpoint.WEIGHTS, "not a flat dict of tensors"),
    ("missing weights", checkpoint.WEIGHTS, "missing"),
    ("config not JSON", checkpoint.CONFIG, "unreadable or corrupt JSON"),
    ("config not chargen", checkpoint.CONFIG, "not a chargen config"),
    ("newer format", checkpoint.CONFIG,
     f"format version {checkpoint.FORMAT_VERSION + 1} is newer than this chargen understands"),
    ("vocabulary does not match the weights", checkpoint.CONFIG, "vocabulary has 2 tokens but the model was built for 4"),
    ("weights of another shape", checkpoint.WEIGHTS, "weights do not fit the config"),
])
def test_a_damaged_checkpoint_is_one_clear_line_naming_the_file(tmp_path: Path, how: str, named: str, says: str) -> None:
    run = tmp_path / "run"
    save_lm(run)
    corrupt(run, how)
    with pytest.raises(CheckpointError) as refused:
        checkpoint.load(run)
    message = str(refused.value)
    assert message.startswith(f"{run / named}:") and says in message and "\n" not in message
    assert "refused" not in message  # damage is not reported as an attack


def test_a_checkpoint_of_another_task_is_refused(tmp_path: Path) -> None:
    save_lm(tmp_path / "run", task="classify")
    with pytest.raises(CheckpointError, match=r"run: this is a 'classify' model; this command needs a 'lm' or 'generate'"):
        checkpoint.load(tmp_path / "run", task=("lm", "generate"))


# --------------------------------------------------------------------------- the run lock


def test_the_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    with checkpoint.RunLock(tmp_path) as lock:
        owner = json.loads((tmp_path / checkpoint.LOCK).read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname() and lock.note is None
        with pytest.raises(RunLocked, match=rf"in use by another training run \(pid {os.getpid()} on "):
            checkpoint.RunLock(tmp_path).acquire()
    assert not (tmp_path / checkpoint.LOCK).exists()


@pytest.mark.parametrize("stale", [{"pid": 2**22 + 12345}, {}], ids=["dead pid", "torn lock"])
def test_a_stale_lock_is_taken_over(tmp_path: Path, stale: dict[str, Any]) -> None:
    (tmp_path / checkpoint.LOCK).write_text(json.dumps({**stale, "host": socket.gethostname()}) if stale else "")
    with checkpoint.RunLock(tmp_path) as lock:
        assert lock.note is not None and lock.note.startswith(f"took over a stale lock on {tmp_path}")
        assert json.loads((tmp_path / checkpoint.LOCK).read_text())["pid"] == os.getpid()


def test_a_lock_from_another_host_is_respected(tmp_path: Path) -> None:
    (tmp_path / checkpoint.LOCK).write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": "today"}))
    with pytest.raises(RunLocked, match=r"pid 1 on elsewhere, since today.*delete .*\.lock"):
        checkpoint.RunLock(tmp_path).acquire()


def test_readers_do_not_finish_a_live_writers_save(tmp_path: Path) -> None:
    run = tmp_path / "run"
    save_lm(run, step=1)
    stray = run / ".model.pt.abc.tmp"  # what a writer's save in progress looks like
    stray.write_bytes(b"half")
    (run / checkpoint.LOCK).write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    checkpoint.load(run)
    assert stray.exists()  # the writer (alive) owns it
    (run / checkpoint.LOCK).unlink()
    checkpoint.load(run)
    assert not stray.exists()  # no writer: a crash leftover, cleaned
