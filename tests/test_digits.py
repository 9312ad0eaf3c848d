"""The sequential-digits task: the data file, its fixed split and pixel order, training, resume, evaluation, errors."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from typer.testing import CliRunner

from chargen import checkpoint
from chargen.cells import CELLS, default_engine
from chargen.cli import app
from chargen.data import digits as data
from chargen.errors import CheckpointError, CorpusError, UsageError
from chargen.models import ModelConfig, build_model
from chargen.tasks import build_task, evaluate_saved
from chargen.tasks.resolve import resolve
from chargen.train import TrainConfig, fit

needs_digits = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                                  reason="the digits ship with scikit-learn: pip install 'chargen[study]'")
CPU = torch.device("cpu")
TINY = ModelConfig(cell="lstm", hidden_size=8, num_layers=1, embed_dim=2)


@pytest.fixture(autouse=True)
def quick(one_torch_thread: None) -> Iterator[None]:
    yield
    torch.use_deterministic_algorithms(False)


@pytest.fixture
def no_sklearn(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As if scikit-learn were not installed (the loaded digits are forgotten before and after)."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else find_spec(name, *a))
    data.load_digits.cache_clear()
    yield
    data.load_digits.cache_clear()


def train_cfg(steps: int, **overrides: Any) -> TrainConfig:
    settings: dict[str, Any] = dict(steps=steps, lr=1e-2, optimizer="rmsprop", schedule="constant", warmup=0,
                                    clip=10.0, eval_every=4, sample_every=10**9, log_every=1, seed=5, device="cpu")
    return TrainConfig(**{**settings, **overrides})


class Recorder(nn.Module):
    """Stands in for a classifier: keeps every input it is given and answers with trainable zeros."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(data.CLASSES))
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        assert bool((lengths == data.PIXELS).all()) and x.shape[0] == data.PIXELS
        self.seen.append(x.clone())
        return self.bias.expand(x.shape[1], -1)


# --------------------------------------------------------------------------- the data, without scikit-learn


def test_without_scikit_learn_the_task_fails_in_one_line_naming_the_extra(no_sklearn: None, tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"install the 'study' extra \(pip install 'chargen\[study\]'\)"):
        build_task("digits")
    result = CliRunner().invoke(app, ["train", "--task", "digits", "--steps", "1", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: the digits task reads scikit-learn's 8x8 digits: install the 'study' extra (pip install 'chargen[study]')"
    ]


@pytest.mark.parametrize("line, message", [
    ("0," * 64 + "x", "not a row of numbers"),
    ("0," * 63 + "0", "not 64 grey levels"),
    ("0," * 63 + "17,3", "not 64 grey levels"),
    ("0," * 63 + "1.5,3", "not 64 grey levels"),
    ("0," * 64 + "10", "a label outside 0-9"),
])
def test_a_damaged_data_file_is_refused_with_its_line(line: str, message: str) -> None:
    good = ",".join(["16"] * 64 + ["9"])
    assert data.parse(good)[0].tolist() == [16] * 64 + [9]
    with pytest.raises(CorpusError, match=message):
        data.parse(f"{good}\n{line}\n")


def test_split_is_stratified_disjoint_complete_and_the_same_every_time() -> None:
    labels = torch.randint(10, (1000,), generator=torch.Generator().manual_seed(0))
    parts = data.split(labels)
    again = data.split(labels)
    assert all(torch.equal(parts[k], again[k]) for k in parts)
    joined = torch.cat(list(parts.values()))
    assert sorted(joined.tolist()) == list(range(1000))  # disjoint and complete
    for name, share, slack in (("val", 1 / 6, 1), ("test", 1 / 6, 1), ("train", 4 / 6, 2)):  # train: the rest
        counts = torch.bincount(labels[parts[name]], minlength=10)
        expected = torch.bincount(labels, minlength=10) * share
        assert bool(((counts - expected).abs() <= slack).all()), name  # every class in its share
    other = data.split(labels, seed=data.SPLIT_SEED + 1)
    assert not torch.equal(other["test"], parts["test"])  # the seed decides the draw


def test_permutation_is_fixed_and_sequences_read_pixels_in_its_order() -> None:
    order = data.permutation()
    assert torch.equal(order, data.permutation()) and sorted(order.tolist()) == list(range(64))
    assert not torch.equal(order, torch.arange(64))
    pixels = torch.randint(17, (5, 64))
    raster, permuted = data.sequences(pixels), data.sequences(pixels, order)
    assert raster.shape == permuted.shape == (64, 5)
    for t in (0, 17, 63):
        assert torch.equal(raster[t], pixels[:, t]) and torch.equal(permuted[t], pixels[:, order[t]])
    assert torch.equal(data.check_permutation(order.tolist()), order)
    for bad in ([0] * 64, list(range(63)), "0-63"):
        with pytest.raises(CorpusError, match="not a permutation"):
            data.check_permutation(bad)


@pytest.mark.parametrize("options, message", [
    ({"permuted": "yes"}, "permuted must be true or false, got 'yes'"),
    ({"batch_size": 0}, "batch_size must be positive"),
    ({"corpus": "grimm"}, "reads no corpus"),
    ({"length": 5}, "task 'digits' does not take the option 'length'"),
])
def test_bad_options_are_one_line_usage_errors_before_any_data_is_read(no_sklearn: None, options: dict[str, Any],
                                                                       message: str) -> None:
    with pytest.raises(UsageError, match=message) as error:
        build_task("digits", **options)
    assert "\n" not in str(error.value)


def test_cli_bad_options_name_their_flags(tmp_path: Path) -> None:
    runner = CliRunner()
    cases = [(["--task", "digits", "--batch-size", "0"], "error: --batch-size must be positive, got 0"),
             (["--task", "palindrome", "--permuted"], "error: task 'palindrome' does not take the option 'permuted'")]
    for args, line in cases:
        result = runner.invoke(app, ["train", *args, "--steps", "1", "--out", str(tmp_path / "r")])
        assert result.exit_code == 2 and result.output.strip().splitlines() == [line]
    result = runner.invoke(app, ["study", "momentum-digits", "--minutes", "1", "--out", str(tmp_path / "s")])
    assert result.exit_code == 2 and result.output.strip().splitlines() == [
        "error: study momentum-digits compares steps to a target: it runs a step budget (2000), not --minutes"]


# --------------------------------------------------------------------------- the data, with scikit-learn


@needs_digits
def test_the_file_read_directly_is_what_scikit_learn_loads() -> None:
    from sklearn.datasets import load_digits as sklearn_digits

    loaded, reference = data.load_digits(), sklearn_digits()
    assert loaded.digest == data.DATA_SHA256
    assert loaded.pixels.tolist() == reference.data.astype(int).tolist()
    assert loaded.labels.tolist() == reference.target.tolist()
    parts = data.split(loaded.labels)
    assert {k: len(v) for k, v in parts.items()} == {"train": 1197, "val": 300, "test": 300}


@needs_digits
def test_task_options_resolve_and_the_config_records_the_split_and_the_order() -> None:
    resolved = resolve("digits", options={"permuted": True})
    assert resolved.options == {"permuted": True} and resolved.model.embed_dim == 1
    task = build_task("digits", **resolved.options)
    config = task.config()
    assert config["permutation"] == data.permutation().tolist() and config["split_sizes"]["test"] == 300
    assert build_task("digits").config()["permutation"] is None
    json.dumps(config)  # it goes into config.json


@needs_digits
@pytest.mark.parametrize("permuted", [False, True])
def test_training_and_evaluation_read_every_image_in_the_same_pixel_order(permuted: bool) -> None:
    task = build_task("digits", seed=2, permuted=permuted, batch_size=100)
    images = data.load_digits()
    parts = data.split(images.labels)
    order = data.permutation() if permuted else torch.arange(64)
    assert torch.equal(task.train_x.t(), images.pixels[parts["train"]][:, order])  # each image beside its label
    assert torch.equal(task.train_y, images.labels[parts["train"]])
    model = Recorder()
    for _ in range(12):  # the first epoch and a little more: every training image at least once
        loss, count = task.train_loss(model, CPU)
        assert count == 100 and loss.requires_grad
    batches = torch.cat(model.seen, dim=1).t()  # (images, 64) as the model read them
    expected = {tuple(row) for row in images.pixels[parts["train"]][:, order].tolist()}
    assert {tuple(row) for row in batches.tolist()} == expected
    model.seen.clear()
    metrics = task.evaluate(model, CPU)
    assert set(metrics) == {"val_loss", "val_accuracy"}
    assert torch.equal(model.seen[0].t(), images.pixels[parts["val"]][:, order])


@needs_digits
def test_a_tiny_lstm_learns_well_above_chance_and_logs_val_loss_at_every_evaluation(tmp_path: Path) -> None:
    model = ModelConfig(cell="lstm", hidden_size=32, num_layers=1, embed_dim=8)
    run = fit(build_task("digits", seed=0), model, train_cfg(300, eval_every=100, log_every=50, seed=1), tmp_path / "r")
    evals = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in evals if e["split"] == "val"]
    assert [e["step"] for e in evals] == [100, 200, 300]
    assert all(set(e) >= {"val_loss", "val_accuracy"} for e in evals)
    assert run.metrics["val_accuracy"] > 0.5  # chance is 0.1
    result = evaluate_saved(checkpoint.load(tmp_path / "r"), CPU)["metrics"]
    assert result["val_loss"] == pytest.approx(run.metrics["val_loss"], rel=1e-5)
    assert result["accuracy"] > 0.5 and result["test_images"] == 300  # the test split's


@needs_digits
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_every_cell_builds_and_takes_a_step(cell: str) -> None:
    task = build_task("digits", seed=0, batch_size=4, permuted=True)
    cfg = task.model_config(ModelConfig(cell=cell, hidden_size=6, num_layers=1, embed_dim=2,
                                        engine=default_engine(cell)))
    torch.manual_seed(0)
    model = build_model(cfg)
    before = [p.detach().clone() for p in model.parameters()]
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    loss, _ = task.train_loss(model, CPU)
    loss.backward()
    optimiser.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert set(task.evaluate(model, CPU)) == {"val_loss", "val_accuracy"}


@needs_digits
def test_an_interrupted_permuted_run_resumes_exactly(tmp_path: Path) -> None:
    from test_train import assert_same_run, interrupted_then_resumed

    make = lambda: build_task("digits", seed=1, permuted=True, batch_size=16)  # noqa: E731
    cfg = train_cfg(8, deterministic=True)
    fit(make(), TINY, cfg, tmp_path / "straight")
    interrupted_then_resumed(make, cfg, TINY, tmp_path / "resumed", at=5)
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")


@needs_digits
def test_evaluation_applies_the_order_the_run_stored_and_a_resume_refuses_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "r"
    fit(build_task("digits", seed=1, permuted=True), TINY, train_cfg(8), run)
    loaded = checkpoint.load(run)
    stored = evaluate_saved(loaded, CPU)["metrics"]
    assert stored["permuted"] is True
    assert stored["val_loss"] == pytest.approx(json.loads((run / checkpoint.CONFIG).read_text())["metrics"]["val_loss"],
                                               rel=1e-5)
    # This chargen's seed giving another order changes neither the evaluation (it reads the stored one)...
    monkeypatch.setattr("chargen.tasks.digits.permutation", lambda: torch.arange(64).flip(0))
    assert evaluate_saved(checkpoint.load(run), CPU)["metrics"] == stored
    # ...nor what a resume trains on: it refuses
    with pytest.raises(CheckpointError, match="another pixel order"):
        fit(build_task("digits", seed=1, permuted=True), TINY, train_cfg(12), run, resume=True)
    # a damaged stored order is refused
    loaded.config["task_config"]["permutation"] = [0] * 64
    with pytest.raises(CorpusError, match="not a permutation"):
        evaluate_saved(loaded, CPU)


# --------------------------------------------------------------------------- the momentum-digits study's pairing


def test_steps_to_the_lstms_best_are_paired_by_seed_and_a_miss_ranks_past_the_budget() -> None:
    from chargen.experiments.momentum_digits import EVAL_EVERY, paired, steps_to_reach

    def record(arm: str, seed: int, losses: list[float], phase: str = "report") -> dict[str, Any]:
        curve = [[EVAL_EVERY * (i + 1), loss] for i, loss in enumerate(losses)]
        return {"seed": seed, "params": {"phase": phase, "arm": arm, "steps": EVAL_EVERY * len(losses)},
                "val_curve": curve, "best_val_loss": min(losses)}

    assert steps_to_reach([[50, 2.0], [100, 1.0], [150, 0.5]], 1.0, 150) == (100, True)
    assert steps_to_reach([[50, 2.0]], 1.0, 50) == (50 + EVAL_EVERY, False)
    records = [record("lstm", 0, [2.0, 1.0, 0.8]), record("momentum-lstm", 0, [1.5, 0.7, 0.6]),
               record("lstm", 1, [2.0, 0.5, 0.9]), record("momentum-lstm", 1, [1.0, 0.9, 0.6]),
               record("momentum-lstm", 2, [0.1, 0.1, 0.1]),  # no LSTM run of seed 2: nothing to pair with
               record("lstm", 0, [0.1, 0.1, 0.1], phase="select")]  # selection runs are never reported
    got = {(r["params"]["arm"], r["seed"]): (r["steps_to_target"], r["reached"]) for r in paired(records)}
    assert got == {("lstm", 0): (150, True), ("momentum-lstm", 0): (100, True),
                   ("lstm", 1): (100, True), ("momentum-lstm", 1): (150 + EVAL_EVERY, False)}
