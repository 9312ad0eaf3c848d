"""chargen.reference: the numpy RNN's hand-written BPTT, the 27-symbol reduction, the CLI."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from chargen.cli import app
from chargen.cli.reference import numpy_rnn as numpy_rnn_command
from chargen.errors import UsageError
from chargen.models import CharLM, ModelConfig
from chargen.experiments.reference import evaluate_torch_lm, load_reduced, load_results, run_reference
from chargen.reference import (
    SYMBOLS,
    Adam,
    NumpyRNN,
    RNNSettings,
    encode,
    fit_rnn,
    reduce_text,
)
from chargen.reference.numpy_rnn import as_streams
from chargen.tasks.lm import LanguageModelTask, LMData, evaluate_lm
from chargen.vocab import Vocab

runner = CliRunner()
V, H, N = 5, 6, 3
TALE = "The miller's daughter spun straw into gold, and the little man danced round the fire. " * 40


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rnn64(seed: int = 0) -> NumpyRNN:
    """A float64 RNN with every weight perturbed, so units are a mix of active and inactive."""
    model = NumpyRNN(V, H, seed=seed, hh_scale=0.9, dtype=np.float64)
    rng = np.random.default_rng(seed + 100)
    for p in model.params.values():
        p += rng.normal(0.0, 0.4, p.shape)
    return model


def batch(T: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(V, size=(T, N)), rng.integers(V, size=(T, N)), np.abs(rng.normal(size=(N, H)))


# -- BPTT ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [1, 2, 7])
def test_bptt_matches_central_finite_differences(T: int) -> None:
    model = rnn64(T)
    inputs, targets, h0 = batch(T, seed=T)
    bp = model.loss_and_grads(inputs, targets, h0)
    eps = 1e-6

    def loss(h: np.ndarray = h0) -> float:
        return model.loss_and_grads(inputs, targets, h).loss

    for name, p in model.params.items():
        numeric = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + eps
            up = loss()
            p[i] = old - eps
            down = loss()
            p[i] = old
            numeric[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(bp.grads[name], numeric, rtol=1e-5, atol=1e-8, err_msg=name)
    numeric = np.zeros_like(h0)
    for i in np.ndindex(h0.shape):
        step = np.zeros_like(h0)
        step[i] = eps
        numeric[i] = (loss(h0 + step) - loss(h0 - step)) / (2 * eps)
    np.testing.assert_allclose(bp.dh0, numeric, rtol=1e-5, atol=1e-8, err_msg="h0")


@pytest.mark.parametrize("T", [1, 3, 17])
def test_bptt_equals_torch_autograd_with_copied_weights(T: int) -> None:
    model = rnn64(T)
    inputs, targets, h0 = batch(T, seed=T)
    bp = model.loss_and_grads(inputs, targets, h0)

    p = {k: torch.tensor(v) for k, v in model.params.items()}
    rnn = torch.nn.RNN(V, H, nonlinearity="relu").double()
    head = torch.nn.Linear(H, V).double()
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(p["W_xh"])
        rnn.weight_hh_l0.copy_(p["W_hh"])
        rnn.bias_ih_l0.copy_(p["b_h"])
        rnn.bias_hh_l0.zero_()
        head.weight.copy_(p["W_hy"])
        head.bias.copy_(p["b_y"])
    x = torch.nn.functional.one_hot(torch.tensor(inputs), V).double()  # (T, N, V)
    h0_t = torch.tensor(h0).unsqueeze(0).requires_grad_()  # (1, N, H)
    out, h_last = rnn(x, h0_t)
    loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, V), torch.tensor(targets).reshape(-1))
    loss.backward()

    assert bp.loss == pytest.approx(loss.item(), rel=1e-12)
    torch_grads = {"W_xh": rnn.weight_ih_l0.grad, "W_hh": rnn.weight_hh_l0.grad, "b_h": rnn.bias_ih_l0.grad,
                   "W_hy": head.weight.grad, "b_y": head.bias.grad}
    for name, grad in torch_grads.items():
        np.testing.assert_allclose(bp.grads[name], grad.numpy(), rtol=1e-10, atol=1e-13, err_msg=name)
    np.testing.assert_allclose(bp.dh0, h0_t.grad[0].numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(bp.h, h_last[0].detach().numpy(), rtol=1e-12, atol=1e-14)


def test_chunked_evaluation_equals_one_pass() -> None:
    model = rnn64()
    streams = np.random.default_rng(1).integers(V, size=(41, 4))
    whole = model.evaluate(streams, chunk=1000)
    assert model.evaluate(streams, chunk=7) == pytest.approx(whole, rel=1e-12)
    bp = model.loss_and_grads(streams[:-1], streams[1:])
    assert whole[0] == pytest.approx(bp.loss, rel=1e-12)


def test_loss_falls_on_a_tiny_text_in_a_few_steps() -> None:
    ids = np.array(encode(reduce_text("the cat sat on the mat " * 20)))
    streams = as_streams(ids, 4)  # (115, 4)
    model = NumpyRNN(len(SYMBOLS), 32, seed=0)
    optimizer = Adam(model.params, lr=1e-2)
    losses = []
    for _ in range(40):
        bp = model.loss_and_grads(streams[:20], streams[1:21])
        optimizer.step(model.params, bp.grads)
        losses.append(bp.loss)
    assert losses[0] == pytest.approx(np.log(27), abs=0.05)
    assert losses[-1] < 0.4 * losses[0]


def test_training_is_seeded() -> None:
    ids = np.array(encode(reduce_text(TALE)))
    val = as_streams(ids[-200:], 4)
    settings = RNNSettings(hidden_size=16, epochs=2, seq_len=8, batch_size=4, seed=3)
    a, history_a = fit_rnn(ids[:-200], val, len(SYMBOLS), settings)
    b, history_b = fit_rnn(ids[:-200], val, len(SYMBOLS), settings)
    c, _ = fit_rnn(ids[:-200], val, len(SYMBOLS), RNNSettings(**{**settings.__dict__, "seed": 4}))
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
    assert [(e.train_loss, e.val_loss, e.val_accuracy) for e in history_a] == \
        [(e.train_loss, e.val_loss, e.val_accuracy) for e in history_b]
    assert not np.array_equal(a.params["W_hh"], c.params["W_hh"])
    assert history_a[-1].train_loss < history_a[0].train_loss


# -- data ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "reduced"), [
    ("Hello, World!", "hello world"),
    ("Æsop’s Fables, 2nd ed.\n\n", "aesop s fables nd ed"),
    ("naïve café — Übermensch", "naive cafe ubermensch"),
    ("Straße, cœur, ﬁne, Øre", "strasse coeur fine ore"),
    ("  tabs\tand\r\nnewlines  ", "tabs and newlines"),
    ("Ἀθῆναι 東京 ok", "ok"),
])
def test_reduction_to_27_symbols(raw: str, reduced: str) -> None:
    assert reduce_text(raw) == reduced
    assert reduce_text(reduced) == reduced  # idempotent
    assert set(reduced) <= set(SYMBOLS) and "  " not in reduced


def test_encoding_is_the_vocabulary_of_the_reduced_text() -> None:
    text = reduce_text(TALE)
    assert encode(" az") == [0, 1, 26]
    assert "".join(SYMBOLS[i] for i in encode(text)) == text
    with pytest.raises(ValueError, match="not one of the 27 symbols"):
        encode("Abc")


def test_split_is_the_lm_tasks_and_the_hook_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "tale.txt"
    path.write_text(TALE, encoding="utf-8")
    data = load_reduced(str(path))
    reduced_file = tmp_path / "reduced.txt"
    reduced_file.write_text(reduce_text(TALE), encoding="utf-8")
    lm = LMData.load(str(reduced_file), 0.1, vocab=Vocab(SYMBOLS))  # the LM task's own split of the same text
    assert lm.train.tolist() == data.train.tolist() and lm.val.tolist() == data.val.tolist()

    given = LMData("tale-27", "0" * 64, lm.vocab, torch.from_numpy(data.train), torch.from_numpy(data.val))
    task = LanguageModelTask(seed=0, corpus=str(path), data=given, seq_len=8, batch_size=4)
    assert task.data is given and task.vocab is lm.vocab


def test_origin_reduced(corpus_mirror: Path) -> None:
    data = load_reduced("origin")
    n = len(data.ids)
    assert 1_150_000 < n < 1_300_000 and data.n_val == int(n * 0.1)
    assert "".join(SYMBOLS[i] for i in data.ids[:25]) == "on the origin of species "
    assert set(np.unique(data.ids)) == set(range(27))


def test_torch_evaluation_reads_the_same_positions_as_the_lm_task() -> None:
    torch.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=V, embed_dim=4, hidden_size=8, num_layers=1)).eval()
    ids = np.random.default_rng(0).integers(V, size=403)
    loss, accuracy = evaluate_torch_lm(model, as_streams(ids, 4), chunk=16)
    assert loss == pytest.approx(evaluate_lm(model, torch.from_numpy(ids), torch.device("cpu"), streams=4), rel=1e-6)
    streams = torch.from_numpy(as_streams(ids, 4))
    logits, _, _ = model(streams[:-1])
    assert accuracy == pytest.approx((logits.argmax(2) == streams[1:]).double().mean().item())


# -- the experiment and the CLI --------------------------------------------------------------------


def test_settings_are_checked_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="hidden_size must be positive"):
        run_reference("atlantis", RNNSettings(hidden_size=0), out_dir=tmp_path / "out")
    with pytest.raises(UsageError, match="lstm_steps"):
        run_reference("atlantis", lstm_steps=-1, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_defaults_are_the_library_defaults() -> None:
    defaults = {p.name: p.default for p in inspect.signature(numpy_rnn_command).parameters.values()}
    settings = RNNSettings()
    assert (defaults["hidden"], defaults["epochs"], defaults["seq_len"], defaults["batch_size"], defaults["lr"],
            defaults["clip"]) == (settings.hidden_size, settings.epochs, settings.seq_len, settings.batch_size,
                                  settings.lr, settings.clip)


@pytest.mark.parametrize(("args", "code", "says"), [
    (["--hidden", "0"], 2, "--hidden must be positive, got 0"),
    (["--epochs", "0"], 2, "--epochs must be positive, got 0"),
    (["--batch-size", "-1"], 2, "--batch-size must be positive"),
    (["--corpus", "atlantis"], 1, "unknown corpus 'atlantis'"),
])
def test_cli_bad_input_is_one_line(args: list[str], code: int, says: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["reference", "numpy-rnn", *args, "--out", str(tmp_path / "ref")])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == code and len(lines) == 1
    assert lines[0].startswith("error: ") and says in lines[0]
    assert not (tmp_path / "ref").exists()


def test_cli_end_to_end_on_a_small_text(tmp_path: Path) -> None:
    text = tmp_path / "tale.txt"
    text.write_text(TALE, encoding="utf-8")
    out = tmp_path / "ref"
    args = ["reference", "numpy-rnn", "--corpus", str(text), "--hidden", "16", "--epochs", "2", "--seq-len", "8",
            "--batch-size", "4", "--lstm-steps", "2", "--out", str(out), "--json", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["results"] == str(out / "reference.json")
    assert list(printed)[1:6] == ["format", "command", "created", "environment", "data"]

    saved = load_results(out)
    assert saved.to_dict() == {k: v for k, v in printed.items() if k != "results"}
    assert saved.data["symbols"] == SYMBOLS and saved.data["val_chars"] == int(saved.data["chars"] * 0.1)
    assert [e.epoch for e in saved.numpy_rnn.epochs] == [1, 2]
    assert saved.numpy_rnn.final["val_accuracy"] == saved.numpy_rnn.epochs[-1].val_accuracy
    assert saved.lstm is not None and saved.lstm.steps == 2 and saved.lstm.model["cell"] == "lstm"
    assert 0 <= saved.lstm.final["val_accuracy"] <= 1 and saved.lstm.run_dir == "lstm"
    assert (out / "lstm" / "metrics.jsonl").exists() and not (out / "lstm" / "model.pt").exists()

    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "already holds reference.json" in again.stderr
