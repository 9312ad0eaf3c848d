"""Data-parallel training with torchrun: two gloo processes follow the one-process run, stop together, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from chargen import checkpoint
from chargen.data.streams import StreamBatcher, WindowBatcher
from chargen.models import ModelConfig
from chargen.tasks import build_task
from chargen.train import TrainConfig, fit

TEXT = "Hansel and Gretel followed the white pebbles home through the dark forest. " * 40
MODEL = dict(cell="lstm", hidden_size=16, num_layers=1, embed_dim=8)
TRAIN = dict(steps=12, lr=1e-2, warmup=2, eval_every=4, sample_every=5, log_every=1, seed=5, device="cpu",
             deterministic=True)
TASK = dict(seq_len=8, batch_size=4)  # the global batch: two streams per rank under two processes

# Runs fit() under torchrun, as `chargen train` does, with one extra: rank 0 alone sends itself SIGINT
# from its step callback, so the stop must travel to the other rank through the per-step all-reduce.
WORKER = f"""
import os, signal, sys
import torch
from chargen.errors import RunInterrupted
from chargen.models import ModelConfig
from chargen.tasks import build_task
from chargen.train import Callbacks, TrainConfig, fit

class SignalAt(Callbacks):
    def on_step(self, step, metrics):
        if step == int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGINT)

torch.set_num_threads(1)
task = build_task("lm", seed=3, corpus=sys.argv[1], **{TASK!r})
try:
    fit(task, ModelConfig(**{MODEL!r}), TrainConfig(**{TRAIN!r}), sys.argv[2], SignalAt())
except RunInterrupted as e:
    print(f"rank {{os.environ['RANK']}}: {{e}}", file=sys.stderr)
    sys.exit(e.exit_code)
"""


def torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           *args], env=env, text=True, capture_output=True, timeout=120)


def train_losses(run: Path) -> list[float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["split"] == "train"]


def test_global_batch_is_split_between_ranks_exactly() -> None:
    data = torch.arange(1000)
    for batcher in (StreamBatcher, WindowBatcher):
        whole = batcher(data, batch_size=4, seq_len=5, seed=1)
        halves = [batcher(data, batch_size=4, seq_len=5, seed=1, rank=r, world_size=2) for r in (0, 1)]
        for _ in range(60):  # across epoch boundaries
            x, y, reset = whole.next()
            parts = [h.next() for h in halves]
            assert torch.equal(torch.cat([p[0] for p in parts], dim=1), x)
            assert torch.equal(torch.cat([p[1] for p in parts], dim=1), y)
            assert all(p[2] == reset for p in parts)
    with pytest.raises(ValueError, match="does not split evenly over 3 processes"):
        StreamBatcher(data, batch_size=4, seq_len=5, world_size=3)


@pytest.mark.parametrize("task, options", [
    ("lm", {"corpus": "grimm"}), ("classify", {}), ("generate", {}), ("palindrome", {"length": 5}), ("digits", {}),
])
def test_every_task_refuses_a_global_batch_that_does_not_split_over_the_processes(
    task: str, options: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chargen.errors import UsageError

    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(UsageError, match="batch_size 64 is the global batch; it must split evenly over 3 processes"):
        build_task(task, batch_size=64, **options)


@pytest.mark.slow
def test_two_gloo_processes_follow_one_process_and_stop_and_resume_together(tmp_path: Path) -> None:
    corpus = tmp_path / "tale.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fit(build_task("lm", seed=3, corpus=str(corpus), **TASK), ModelConfig(**MODEL), TrainConfig(**TRAIN),
            tmp_path / "one")
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(False)

    run = tmp_path / "two"
    (tmp_path / "worker.py").write_text(WORKER)
    stopped = torchrun(str(tmp_path / "worker.py"), str(corpus), str(run), "6")
    assert stopped.returncode != 0  # torchrun reports the workers' exit 130 as a failure
    assert "rank 0: stopped by Ctrl-C at step 7; checkpoint saved in" in stopped.stderr, stopped.stderr
    assert "rank 1: stopped by Ctrl-C at step 7" in stopped.stderr  # the other rank stopped on the same step
    assert "torchrun --nproc-per-node 2 -m chargen train --resume" in stopped.stderr
    assert json.loads((run / checkpoint.CONFIG).read_text())["step"] == 7

    resumed = torchrun("-m", "chargen", "train", "--resume", str(run), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.count("saved to") == 1  # rank 0 alone reports

    # Same global batch, same curve: the gradients differ only by float summation order.
    one, two = train_losses(tmp_path / "one"), train_losses(run)
    assert len(one) == len(two) == TRAIN["steps"]
    assert two == pytest.approx(one, abs=1e-4)
    config = json.loads((run / checkpoint.CONFIG).read_text())
    assert config["world_size"] == 2
    assert config["metrics"]["val_loss"] == pytest.approx(
        json.loads((tmp_path / "one" / checkpoint.CONFIG).read_text())["metrics"]["val_loss"], abs=1e-4)
    loaded = checkpoint.load(run)  # the unwrapped model, loadable in one process
    reference = checkpoint.load(tmp_path / "one").model.state_dict()
    for name, tensor in loaded.model.state_dict().items():
        torch.testing.assert_close(tensor, reference[name], atol=1e-4, rtol=0)
