"""The course exercises: the hand-weighted LSTM's numbers, the LSTM parameter count, the tutorials' networks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from chargen.cells import LSTMCell
from chargen.reference import (
    exercise_answers,
    exercise_cell,
    exercise_step,
    exercise_table,
    lstm_parameter_count,
)
from chargen.experiments.tutorial import TutorialClassifier, TutorialGenerator


def _sig(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def test_hand_lstm_table_pins_the_exercise_values():
    rows = exercise_table()
    # (a) f, i, o, C_t, h_t for x = [1 0 0], [0 1 0], [1 0 1] from h_0 = 0.05, C_0 = -0.02
    expected = [
        (0.982014, 0.010987, 0.006693, -0.019091, -0.000128),
        (0.017986, 0.989013, 0.006693, 0.049050, 0.000328),
        (0.982014, 0.010987, 0.993307, -0.019091, -0.018961),
    ]
    for row, (f, i, o, c, h) in zip(rows, expected):
        assert (row["f"], row["i"], row["o"], row["C"], row["h"]) == pytest.approx((f, i, o, c, h), abs=1e-6)


def test_hand_lstm_cell_is_the_exercise_equations():
    for x in ([1, 0, 0], [0, 1, 0], [1, 0, 1], [0.3, 0.7, 0.2]):
        h0, c0 = 0.05, -0.02
        f, i, o = _sig(8 * x[0] - 4), _sig(9 * x[1] - 4.5), _sig(10 * x[2] - 5)
        c = f * c0 + i * math.tanh(h0)
        step = exercise_step(x)
        assert step["C"] == pytest.approx(c, abs=1e-12)
        assert step["h"] == pytest.approx(o * math.tanh(c), abs=1e-12)
    cell = exercise_cell()
    assert torch.count_nonzero(cell.bias_hh) == 0  # one bias per gate, all in bias_ih


def test_answer_b_adds_h_to_c_and_answer_c_averages_them():
    answers = exercise_answers()
    for row in answers["b"]["rows"]:  # C_t ~ C_{t-1} + h_{t-1}
        assert abs(row["C"] - (row["C_prev"] + row["h_prev"])) < 0.03 * abs(row["C_prev"] + row["h_prev"]) + 1e-3
    for row in answers["c"]["rows"]:  # h_t ~ (C_{t-1} + h_{t-1}) / 2
        assert abs(row["h"] - (row["C_prev"] + row["h_prev"]) / 2) < 0.03 * abs(row["C_prev"] + row["h_prev"]) + 1e-3
    # and the inputs of (a) do not do it: x = [1 0 0] keeps C, it does not add h
    kept = exercise_step([1, 0, 0])
    assert abs(kept["C"] - (kept["C_prev"] + kept["h_prev"])) > 0.04


@pytest.mark.parametrize(("d", "n"), [(3, 1), (10, 20), (65, 256)])
@pytest.mark.parametrize("batch", [1, 7])
def test_lstm_parameter_count_one_bias_per_gate(d: int, n: int, batch: int):
    cell = LSTMCell(d, n)
    cell(torch.randn(batch, d))  # the batch size m changes nothing
    total = sum(p.numel() for p in cell.parameters())
    assert total - cell.bias_hh.numel() == lstm_parameter_count(d, n) == 4 * n * (d + n + 1)
    assert total == lstm_parameter_count(d, n, biases_per_gate=2)
    assert total == sum(p.numel() for p in nn.LSTMCell(d, n).parameters())


def test_tutorial_classifier_hidden_update_is_linear():
    torch.manual_seed(0)
    model = TutorialClassifier(4, 3, 2)
    x = torch.randn(5, 2, 4)
    lengths = torch.tensor([5, 3])
    out = model(x, lengths)
    assert out.shape == (2, 2) and torch.allclose(out.exp().sum(1), torch.ones(2))
    # the second name's output is the same alone, truncated to its length (padding after it is ignored)
    alone = model(x[:3, 1:2], torch.tensor([3]))
    assert torch.allclose(out[1:2], alone, atol=1e-6)
    # linear: with zero biases, scaling the input scales the hidden state
    with torch.no_grad():
        model.i2h.bias.zero_()
    h = torch.zeros(1, 3)
    for x_t in x[:, :1]:
        h = model.i2h(torch.cat([x_t, h], 1))
    h2 = torch.zeros(1, 3)
    for x_t in 2 * x[:, :1]:
        h2 = model.i2h(torch.cat([x_t, h2], 1))
    assert torch.allclose(h2, 2 * h, atol=1e-5)


def test_tutorial_generator_shapes_and_conditioning():
    torch.manual_seed(0)
    model = TutorialGenerator(3, 5, 8, 5).eval()
    cat = torch.eye(3)[[0, 2]]
    out = model(cat, torch.randn(4, 2, 5))
    assert out.shape == (4, 2, 5) and torch.allclose(out.exp().sum(-1), torch.ones(4, 2), atol=1e-6)
    other = model(torch.eye(3)[[1, 1]], torch.randn(4, 2, 5))
    assert not torch.allclose(out, other)


def test_optimiser_grid_resumes_and_widens(tmp_path, one_torch_thread):
    from chargen.experiments.optimisers import OptimiserSettings, best_per_optimiser, run_optimisers

    corpus = tmp_path / "toy.txt"
    corpus.write_text("abracadabra, the cat sat on the mat. " * 200)
    small = OptimiserSettings(corpus=str(corpus), chars=4000, hidden_size=8, seq_len=8, batch_size=4, steps=4,
                              eval_every=2, grid={"sgd": (0.1,), "adam": (0.01,)})
    first = run_optimisers(small, tmp_path)
    assert [(r["optimiser"], r["lr"]) for r in first["runs"]] == [("sgd", 0.1), ("adam", 0.01)]
    assert all(len(r["curve"]) == 3 for r in first["runs"])  # step 0, 2, 4
    seen = []
    wider = OptimiserSettings(**{**small.__dict__, "grid": {"sgd": (0.1, 1.0), "adam": (0.01,)}})
    second = run_optimisers(wider, tmp_path, progress=seen.append)
    assert [(r["optimiser"], r["lr"]) for r in seen] == [("sgd", 1.0)]  # only the new run trained
    assert second["runs"][0] == first["runs"][0]
    assert [r["optimiser"] for r in best_per_optimiser(second)] == ["sgd", "adam"]


@pytest.mark.corpus
def test_tutorial_study_trains_and_scores_on_the_split(tmp_path, corpus_mirror, one_torch_thread):
    from chargen.experiments.tutorial import TutorialSettings, run_tutorial_study

    settings = TutorialSettings(hidden_sizes=(8,), models=("tutorial", "lstm"), steps=3, batch_size=8)
    doc = run_tutorial_study(settings, tmp_path)
    keys = {(r["task"], r["model"]) for r in doc["runs"]}
    assert keys == {("classify", "tutorial"), ("classify", "lstm"), ("generate", "tutorial"), ("generate", "lstm")}
    for r in doc["runs"]:
        if r["task"] == "classify":
            assert 0.0 <= r["test_accuracy"] <= 1.0
        else:
            assert 0.0 < r["test_nats_per_char"] < 10.0
    again = run_tutorial_study(settings, tmp_path, progress=lambda r: pytest.fail("resumed run retrained"))
    assert again["runs"] == doc["runs"]
