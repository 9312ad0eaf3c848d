"""Real processes, real signals: SIGKILL in the middle of saves, Ctrl-C on `chargen train` (then resume)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn
from typer.testing import CliRunner

from chargen import checkpoint
from chargen.cli import app

TEXT = "The wolf knocked at the door of the little house and said: let me in. " * 40


def save_forever(run: Path) -> None:
    """Save checkpoints of a growing step number until killed; every file of a save says its step."""
    model = nn.Linear(64, 64)
    step = checkpoint.load_config(run)["step"] if (run / checkpoint.CONFIG).exists() else 0
    while True:
        step += 1
        with torch.no_grad():
            model.weight.fill_(step)
        checkpoint.save(run, {"task": "test", "step": step}, model, {"step": step, "pad": torch.zeros(20_000)})


def test_sigkill_at_any_moment_leaves_a_loadable_consistent_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    rng = random.Random(0)
    last = 1
    for _ in range(6):
        pid = os.fork()  # fork, not spawn: torch is imported already, so the writer starts in microseconds
        if pid == 0:
            try:
                save_forever(run)
            finally:
                os._exit(1)
        deadline = time.monotonic() + 30
        while not (run / checkpoint.CONFIG).exists() and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        step = checkpoint.load_config(run)["step"]  # rolls a committed save forward
        assert torch.all(checkpoint.load_tensors(run / checkpoint.WEIGHTS)["weight"] == step)
        assert checkpoint.load_tensors(run / checkpoint.TRAINER)["step"] == step
        assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp") or p.name == checkpoint.JOURNAL]
        assert step >= last  # never goes back past a save that finished
        last = step


def chargen(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.Popen([sys.executable, "-m", "chargen", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]


def test_ctrl_c_on_chargen_train_saves_says_how_to_resume_and_exits_130(tmp_path: Path) -> None:
    corpus = tmp_path / "tale.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    run = tmp_path / "run"
    common = ["--hidden", "16", "--embed", "8", "--layers", "1", "--seq-len", "8", "--batch-size", "4", "--quiet"]
    train = chargen("train", "--corpus", str(corpus), "--steps", "100000", "--eval-every", "100000",
                    "--out", str(run), *common)
    deadline = time.monotonic() + 60
    while not (run / "metrics.jsonl").exists() and time.monotonic() < deadline and train.poll() is None:
        time.sleep(0.05)
    train.send_signal(signal.SIGINT)
    _, err = train.communicate(timeout=60)
    assert train.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    step = json.loads((run / checkpoint.CONFIG).read_text())["step"]
    assert lines[-1] == (f"interrupted: stopped by Ctrl-C at step {step:,}; checkpoint saved in {run}; "
                         f"continue with: chargen train --resume {run}")
    assert "Traceback" not in err and not (run / checkpoint.LOCK).exists()

    resumed = CliRunner().invoke(app, ["train", "--resume", str(run), "--steps", str(step + 5), "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((run / checkpoint.CONFIG).read_text())["step"] == step + 5
