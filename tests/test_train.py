"""The training loop under faults: exact resume after Ctrl-C, SIGTERM, a second Ctrl-C, a non-finite loss, a locked run."""

from __future__ import annotations

import copy
import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from chargen import checkpoint
from chargen.errors import RunInterrupted, RunLocked, TrainingError, UsageError
from chargen.models import ModelConfig
from chargen.tasks import build_task
from chargen.train import Callbacks, TrainConfig, fit

TEXT = "Once upon a time a miller had three sons, a mill, a donkey and a cat. " * 40
MODEL = ModelConfig(cell="lstm", hidden_size=16, num_layers=1, embed_dim=8)


@pytest.fixture(autouse=True)
def quick_and_exact(one_torch_thread: None) -> Iterator[None]:
    """One thread (see conftest); deterministic kernels reset afterwards."""
    yield
    torch.use_deterministic_algorithms(False)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "tale.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def lm_task(corpus: Path, **options: Any) -> Any:
    return build_task("lm", seed=3, corpus=str(corpus), seq_len=8, batch_size=4, **options)


def train_cfg(steps: int = 10, **overrides: Any) -> TrainConfig:
    settings: dict[str, Any] = dict(steps=steps, lr=1e-2, warmup=2, eval_every=4, sample_every=3, log_every=1,
                                    seed=5, device="cpu", deterministic=True)
    return TrainConfig(**{**settings, **overrides})


class SignalAt(Callbacks):
    """Sends ``signals`` to this process from the callback of ``step``, as a terminal or a scheduler would."""

    def __init__(self, step: int, *signals: int) -> None:
        self.step, self.signals = step, signals

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        if step == self.step:
            for sig in self.signals:
                os.kill(os.getpid(), sig)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load_tensors(run_dir / checkpoint.WEIGHTS)


def saved_step(run_dir: Path) -> int:
    return json.loads((run_dir / checkpoint.CONFIG).read_text())["step"]


def log(run_dir: Path, name: str, drop: tuple[str, ...] = ("rate", "elapsed", "cpu_seconds")) -> list[dict[str, Any]]:
    """A JSONL log without its wall-clock fields, which no two runs share."""
    lines = (run_dir / name).read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in lines]


def assert_same_run(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), f"{name} differs"
    assert log(a, "metrics.jsonl") == log(b, "metrics.jsonl")
    ta, tb = (checkpoint.load_tensors(d / checkpoint.TRAINER) for d in (a, b))
    assert ta["step"] == tb["step"]
    for state_a, state_b in zip(ta["optimizer"]["state"].values(), tb["optimizer"]["state"].values()):
        assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def interrupted_then_resumed(make_task: Callable[[], Any], cfg: TrainConfig, model: ModelConfig, run: Path,
                             at: int, sig: int = signal.SIGINT) -> int:
    """Train until a signal at step ``at``, then resume to the end; returns the step the interruption saved."""
    with pytest.raises(RunInterrupted) as stopped:
        fit(make_task(), model, cfg, run, SignalAt(at, sig))
    assert stopped.value.exit_code == 128 + sig
    assert "--resume" in str(stopped.value) and str(run) in str(stopped.value)
    step = saved_step(run)
    fit(make_task(), model, cfg, run, resume=True)
    return step


# --------------------------------------------------------------------------- exact resume


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_lm_interrupted_and_resumed_equals_the_straight_run(corpus: Path, tmp_path: Path, sig: int) -> None:
    cfg = train_cfg(steps=10)
    fit(lm_task(corpus), MODEL, cfg, tmp_path / "straight")
    # Signalled during step 6's callbacks, the loop stops at the end of step 7: between evaluations
    # (4, 8) and samples (3, 6, 9), with the cosine schedule mid-way and state carried across batches.
    step = interrupted_then_resumed(lambda: lm_task(corpus), cfg, MODEL, tmp_path / "resumed", at=6, sig=sig)
    assert step == 7
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")
    assert log(tmp_path / "straight", "samples.jsonl") == log(tmp_path / "resumed", "samples.jsonl")


def test_lm_with_random_windows_and_dropout_resumes_exactly(corpus: Path, tmp_path: Path) -> None:
    # dropout draws from the global torch RNG, windows from the batcher's own generator: both must be restored
    model = ModelConfig(cell="lstm", hidden_size=16, num_layers=2, embed_dim=8, dropout=0.3)
    cfg = train_cfg(steps=8)
    fit(lm_task(corpus, batching="windows"), model, cfg, tmp_path / "straight")
    interrupted_then_resumed(lambda: lm_task(corpus, batching="windows"), cfg, model, tmp_path / "resumed", at=2)
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")


def test_palindrome_interrupted_and_resumed_equals_the_straight_run(tmp_path: Path) -> None:
    pytest.importorskip("chargen.tasks.palindrome")
    make = lambda: build_task("palindrome", seed=1, length=5, batch_size=16)  # noqa: E731
    cfg = train_cfg(steps=8, optimizer="rmsprop")
    fit(make(), MODEL, cfg, tmp_path / "straight")
    interrupted_then_resumed(make, cfg, MODEL, tmp_path / "resumed", at=4)
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")


@pytest.mark.corpus
def test_classifier_interrupted_and_resumed_equals_the_straight_run(corpus_mirror: Path, tmp_path: Path) -> None:
    pytest.importorskip("chargen.tasks.classify")
    task = build_task("classify", seed=1, balance="weighted", batch_size=16)  # loading the names takes a while: once
    cfg = train_cfg(steps=6, eval_every=3)
    fit(copy.deepcopy(task), MODEL, cfg, tmp_path / "straight")
    interrupted_then_resumed(lambda: copy.deepcopy(task), cfg, MODEL, tmp_path / "resumed", at=3)
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")


# --------------------------------------------------------------------------- signals


def test_a_second_ctrl_c_aborts_without_saving(corpus: Path, tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunInterrupted, match=r"aborted at step 6 without saving; .*\(step 4\) is kept") as aborted:
        fit(lm_task(corpus), MODEL, train_cfg(steps=10), tmp_path / "run", SignalAt(6, signal.SIGINT, signal.SIGINT))
    assert aborted.value.exit_code == 130
    assert saved_step(tmp_path / "run") == 4  # the checkpoint of the last evaluation, untouched
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # handlers restored
    assert not (tmp_path / "run" / checkpoint.LOCK).exists()


def test_a_run_outside_the_main_thread_leaves_signals_alone(corpus: Path, tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def train() -> None:
        try:
            fit(lm_task(corpus), MODEL, train_cfg(steps=2, deterministic=False), tmp_path / "run")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    thread = threading.Thread(target=train)
    thread.start()
    thread.join()
    assert not errors and saved_step(tmp_path / "run") == 2


# --------------------------------------------------------------------------- non-finite loss


def test_a_nan_loss_stops_with_step_and_batch_and_keeps_the_last_good_checkpoint(corpus: Path, tmp_path: Path) -> None:
    task = lm_task(corpus)
    clean = task.train_loss
    calls = 0

    def poisoned(model: Any, device: torch.device) -> tuple[torch.Tensor, int]:
        nonlocal calls
        calls += 1
        loss, units = clean(model, device)
        return (loss * float("nan") if calls == 5 else loss), units

    task.train_loss = poisoned
    run = tmp_path / "run"
    with pytest.raises(TrainingError) as stopped:
        fit(task, MODEL, train_cfg(steps=10), run)
    message = str(stopped.value)
    assert "loss became nan at step 5 (training batch 5; epoch 0, characters" in message
    assert f"{run} (step 4) is kept" in message and "\n" not in message
    assert saved_step(run) == 4
    assert all(torch.isfinite(t).all() for t in weights(run).values())


def test_a_run_that_fails_before_its_first_checkpoint_leaves_nothing(corpus: Path, tmp_path: Path) -> None:
    task = lm_task(corpus)
    clean = task.train_loss
    task.train_loss = lambda model, device: (clean(model, device)[0] * float("inf"), 1)
    with pytest.raises(TrainingError, match="no checkpoint had been saved yet"):
        fit(task, MODEL, train_cfg(steps=10), tmp_path / "run")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- the run directory


def test_a_locked_run_directory_is_refused(corpus: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    with checkpoint.RunLock(run):  # held by this very process, as by another live one
        with pytest.raises(RunLocked, match=rf"{run} is in use by another training run \(pid {os.getpid()}"):
            fit(lm_task(corpus), MODEL, train_cfg(steps=2), run)
        assert (run / checkpoint.LOCK).exists()  # the owner's lock stays
    assert os.listdir(run) == []  # and the refused run wrote nothing


def test_a_stale_lock_is_taken_over_with_a_note(corpus: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)  # a pid that no longer runs
    (run / checkpoint.LOCK).write_text(json.dumps({"pid": dead, "host": os.uname().nodename, "since": "then"}))
    notes: list[str] = []

    class Notes(Callbacks):
        def on_note(self, message: str) -> None:
            notes.append(message)

    fit(lm_task(corpus), MODEL, train_cfg(steps=2), run, Notes())
    assert notes == [f"took over a stale lock on {run} (pid {dead} is no longer running)"]
    assert saved_step(run) == 2 and not (run / checkpoint.LOCK).exists()


def test_resume_with_a_different_process_count_is_refused(corpus: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    fit(lm_task(corpus), MODEL, train_cfg(steps=2), run)
    trainer = checkpoint.load_tensors(run / checkpoint.TRAINER)
    (run / checkpoint.TRAINER).write_bytes(checkpoint.tensor_bytes({**trainer, "world_size": 2}))
    with pytest.raises(UsageError, match="trained by 2 process"):
        fit(lm_task(corpus), MODEL, train_cfg(steps=4), run, resume=True)


class SleepingCallbacks(Callbacks):
    """Wall time passes at every step while this process uses no CPU: a loaded machine, as the budget sees it."""

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        import time

        time.sleep(0.02)


def test_a_cpu_budget_counts_the_process_cpu_time_not_the_wall_clock(corpus: Path, tmp_path: Path) -> None:
    cfg = train_cfg(steps=None, cpu_limit=0.25, log_every=1, eval_every=10_000, sample_every=10_000)
    run = fit(lm_task(corpus), ModelConfig(hidden_size=16, embed_dim=8), cfg, tmp_path / "run", SleepingCallbacks())
    assert run.cpu_seconds >= 0.25  # it ran until its own CPU time was spent...
    assert run.elapsed > run.cpu_seconds + 0.02 * run.step * 0.8  # ...while the sleeps ran the wall clock on
    trainer = checkpoint.load_tensors(tmp_path / "run" / checkpoint.TRAINER)
    assert trainer["cpu_seconds"] == pytest.approx(run.cpu_seconds)
    records = [r for r in log(tmp_path / "run", "metrics.jsonl", drop=()) if r["split"] == "train"]
    assert all(a["cpu_seconds"] <= b["cpu_seconds"] for a, b in zip(records, records[1:]))


def test_a_cpu_budget_must_be_positive() -> None:
    with pytest.raises(UsageError, match="cpu_limit must be positive") as caught:
        TrainConfig(steps=None, cpu_limit=0)
    assert caught.value.params == ("cpu_limit",)
    assert TrainConfig(steps=None, cpu_limit=1.0).cpu_limit == 1.0
