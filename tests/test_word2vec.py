"""word2vec: the hand-written gradients against autograd and finite differences, pairs, subsampling, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chargen.errors import CheckpointError, UsageError, VocabularyError
from chargen.experiments import word2vec as w2v


def _fd_grad(f, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Central finite differences of the scalar ``f()`` w.r.t. every entry of ``x`` (float64)."""
    grad = torch.zeros_like(x)
    flat, gflat = x.view(-1), grad.view(-1)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + eps
        up = f().item()
        flat[i] = old - eps
        down = f().item()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


def test_softmax_gradient_matches_autograd_and_finite_differences():
    g = torch.Generator().manual_seed(0)
    B, V, d = 3, 7, 4
    v_c = torch.randn(B, d, generator=g, dtype=torch.float64)
    U = torch.randn(V, d, generator=g, dtype=torch.float64)
    target = torch.tensor([2, 5, 2])
    loss, g_v, g_U = w2v.softmax_loss_grads(v_c, target, U)

    v_a, U_a = v_c.clone().requires_grad_(), U.clone().requires_grad_()
    ref = torch.nn.functional.cross_entropy(v_a @ U_a.T, target, reduction="sum")
    ref.backward()
    assert torch.allclose(loss, ref.detach(), atol=1e-12)
    assert torch.allclose(g_v, v_a.grad, atol=1e-10)
    assert torch.allclose(g_U, U_a.grad, atol=1e-10)

    f = lambda: w2v.softmax_loss_grads(v_c, target, U)[0]  # noqa: E731
    assert torch.allclose(g_v, _fd_grad(f, v_c), atol=1e-7)
    assert torch.allclose(g_U, _fd_grad(f, U), atol=1e-7)

    # the textbook form: dL/dv_c = -(u_o - sum_j P(w_j|w_c) u_j), one row per pair
    P = torch.softmax(v_c @ U.T, dim=1)
    assert torch.allclose(g_v, -(U[target] - P @ U), atol=1e-12)


def test_negative_sampling_gradient_matches_autograd_and_finite_differences():
    g = torch.Generator().manual_seed(1)
    B, K, d = 3, 4, 5
    v_c = torch.randn(B, d, generator=g, dtype=torch.float64)
    u_o = torch.randn(B, d, generator=g, dtype=torch.float64)
    u_k = torch.randn(B, K, d, generator=g, dtype=torch.float64)
    loss, g_v, g_o, g_k = w2v.negative_loss_grads(v_c, u_o, u_k)

    args = [t.clone().requires_grad_() for t in (v_c, u_o, u_k)]
    a_v, a_o, a_k = args
    ref = -(torch.nn.functional.logsigmoid((a_o * a_v).sum(-1)).sum()
            + torch.nn.functional.logsigmoid(-torch.einsum("bkd,bd->bk", a_k, a_v)).sum())
    ref.backward()
    assert torch.allclose(loss, ref.detach(), atol=1e-12)
    for mine, theirs in zip((g_v, g_o, g_k), (a_v.grad, a_o.grad, a_k.grad)):
        assert torch.allclose(mine, theirs, atol=1e-10)

    f = lambda: w2v.negative_loss_grads(v_c, u_o, u_k)[0]  # noqa: E731
    for mine, x in zip((g_v, g_o, g_k), (v_c, u_o, u_k)):
        assert torch.allclose(mine, _fd_grad(f, x), atol=1e-7)

    # the textbook form: -(1 - s(u_o.v_c)) u_o + sum_k s(u_k.v_c) u_k
    s_o = torch.sigmoid((u_o * v_c).sum(-1, keepdim=True))
    s_k = torch.sigmoid(torch.einsum("bkd,bd->bk", u_k, v_c)).unsqueeze(2)
    assert torch.allclose(g_v, -(1 - s_o) * u_o + (s_k * u_k).sum(1), atol=1e-12)


def test_tokenize_splits_sentences_and_lowercases():
    assert w2v.tokenize("The King's horse. It ran!\n\nAway, away") == [
        ["the", "king's", "horse"], ["it", "ran"], ["away", "away"]]


def test_skipgram_pairs_stay_in_window_and_sentence():
    ids = np.arange(12)
    sentence = np.array([0] * 7 + [1] * 5)
    c, o = w2v.skipgram_pairs(ids, sentence, 3, np.random.default_rng(0))
    assert len(c) > 0
    assert np.all(np.abs(c - o) <= 3) and np.all(c != o)
    assert np.all(sentence[c] == sentence[o])
    # window 1 is deterministic: every neighbour pair, both ways
    c1, o1 = w2v.skipgram_pairs(ids, sentence, 1, np.random.default_rng(0))
    assert sorted(zip(c1.tolist(), o1.tolist())) == sorted(
        [(i, i + 1) for i in range(11) if i != 6] + [(i + 1, i) for i in range(11) if i != 6])


def test_subsampling_keeps_rare_words_and_drops_frequent_ones():
    keep = w2v.keep_probabilities([1_000_000, 100, 1], t=1e-4)
    assert keep[0] < 0.02 and keep[2] == 1.0
    assert np.all(w2v.keep_probabilities([5, 5], t=0) == 1.0)


def test_noise_distribution_is_unigram_to_the_three_quarters():
    cdf = w2v.noise_distribution([81, 16, 1])
    p = torch.diff(cdf, prepend=torch.zeros(1))
    expected = torch.tensor([27.0, 8.0, 1.0], dtype=torch.float64) / 36
    assert torch.allclose(p, expected)


def test_spearman_with_ties():
    assert w2v.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert w2v.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert list(w2v.rank([3, 1, 3])) == [2.5, 1.0, 2.5]


def _toy_sentences() -> list[list[str]]:
    rng = np.random.default_rng(0)
    animals, foods = ["cat", "dog", "cow", "pig"], ["bread", "milk", "cheese", "rice"]
    out = []
    for _ in range(150):
        if rng.random() < 0.5:
            out.append(["the", str(rng.choice(animals)), "runs", "and", "barks", str(rng.choice(animals))])
        else:
            out.append(["we", "eat", str(rng.choice(foods)), "with", "hot", str(rng.choice(foods))])
    return out


@pytest.mark.parametrize("loss", w2v.LOSSES)
def test_training_learns_topics_and_round_trips(loss, tmp_path, one_torch_thread):
    torch.manual_seed(0)
    settings = w2v.Word2VecSettings(dim=16, window=2, min_count=1, sample=0, loss=loss, epochs=4,
                                    batch_size=128, lr=0.05)
    model = w2v.train(_toy_sentences(), settings)
    assert model.history[-1]["loss"] < model.history[0]["loss"]
    near = [word for word, _ in w2v.neighbours(model, "cat", k=3)]
    assert set(near) <= {"dog", "cow", "pig", "the", "runs", "barks", "and"}

    w2v.save(model, tmp_path / "m")
    again = w2v.load(tmp_path / "m")
    assert again.vocab.words == model.vocab.words
    assert torch.equal(again.input, model.input) and torch.equal(again.output, model.output)
    assert again.settings == model.settings
    assert w2v.neighbours(again, "cat", 3) == w2v.neighbours(model, "cat", 3)


def test_training_is_reproducible_from_a_seed():
    settings = w2v.Word2VecSettings(dim=8, window=2, min_count=1, epochs=1, batch_size=32)
    a = w2v.train(_toy_sentences(), settings)
    b = w2v.train(_toy_sentences(), settings)
    assert torch.equal(a.input, b.input)


def test_errors_are_chargen_errors(tmp_path):
    with pytest.raises(UsageError, match="loss"):
        w2v.train(_toy_sentences(), w2v.Word2VecSettings(loss="hierarchical"))
    with pytest.raises(UsageError, match="min_count"):
        w2v.build_vocab(_toy_sentences(), min_count=10_000)
    model = w2v.train(_toy_sentences(), w2v.Word2VecSettings(dim=4, min_count=1, epochs=1))
    with pytest.raises(VocabularyError, match="zebra"):
        w2v.neighbours(model, "zebra")
    with pytest.raises(CheckpointError):
        w2v.load(tmp_path / "nothing")
    w2v.save(model, tmp_path / "m")
    torch.save({"input": torch.zeros(2, 4)}, tmp_path / "m" / w2v.EMBEDDINGS)
    with pytest.raises(CheckpointError, match="expected input and output"):
        w2v.load(tmp_path / "m")


def test_a_pickled_object_is_refused(tmp_path):
    model = w2v.train(_toy_sentences(), w2v.Word2VecSettings(dim=4, min_count=1, epochs=1))
    w2v.save(model, tmp_path / "m")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"input": Evil(), "output": torch.zeros(1)}, tmp_path / "m" / w2v.EMBEDDINGS)
    with pytest.raises(CheckpointError, match="refused|corrupt"):
        w2v.load(tmp_path / "m")


def test_cli_trains_saves_and_queries(tmp_path, one_torch_thread):
    import json as _json

    from typer.testing import CliRunner

    from chargen.cli import app

    runner = CliRunner()
    corpus = tmp_path / "toy.txt"
    corpus.write_text(". ".join(" ".join(s) for s in _toy_sentences()) + ".\n")
    out = tmp_path / "w2v"
    result = runner.invoke(app, ["word2vec", "--corpus", str(corpus), "--epochs", "2", "--dim", "8", "--min-count", "1",
                                 "--sample", "0", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    found = runner.invoke(app, ["word2vec", "--similar", "cat", "--model", str(out), "--top", "3", "--json"])
    assert found.exit_code == 0, found.output
    assert len(_json.loads(found.stdout)) == 3
    unknown = runner.invoke(app, ["word2vec", "--similar", "zebra", "--model", str(out)])
    assert unknown.exit_code == 1 and "zebra" in unknown.output and "Traceback" not in unknown.output
    usage = runner.invoke(app, ["word2vec", "--similar", "cat"])
    assert usage.exit_code == 2
    bad = runner.invoke(app, ["word2vec", "--corpus", "no-such-corpus", "--quiet"])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
