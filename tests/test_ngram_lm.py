"""The Kneser–Ney n-gram LM: counts against brute force, distributions against a dict-based reference and
NLTK, the recurrent LM's contract (chunks, evaluate_lm, score, sample), saving and the CLI."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from chargen import checkpoint
from chargen.generation.beam import beam_search
from chargen.cli import app
from chargen.errors import CheckpointError, UsageError
from chargen.models import ModelConfig, build_model
from chargen.models.ngram_lm import (
    FALLBACK,
    MAX_ORDER,
    NGramLM,
    baseline_for,
    choose_order,
    count_ngrams,
    eval_layout,
    fit,
    modified_discounts,
    ney_discount,
)
from chargen.generation.sample import generate
from chargen.generation.score import score_text
from chargen.tasks import evaluate_saved
from chargen.tasks.lm import LMData, evaluate_lm
from chargen.tasks.lm_ngram import train_ngram, unregistered_baseline
from chargen.vocab import Vocab

runner = CliRunner()
CPU = torch.device("cpu")

TALE = (
    "There was once a king who had three daughters. The youngest was so beautiful that the sun itself, "
    "which has seen so much, was astonished whenever it shone in her face. Close by the king's castle lay "
    "a great dark forest, and under an old lime-tree in the forest was a well, and when the day was very "
    "warm, the king's child went out into the forest and sat down by the side of the cool fountain; and "
    "when she was bored she took a golden ball, and threw it up on high and caught it; and this ball was "
    "her favourite plaything. Now it so happened that on one occasion the princess's golden ball did not "
    "fall into the little hand which she was holding up for it, but on to the ground beyond, and rolled "
    "straight into the water. The king's daughter followed it with her eyes, but it vanished, and the well "
    "was deep, so deep that the bottom could not be seen.\n"
)


def markov_text(n: int, vocab: int, seed: int) -> np.ndarray:
    """ids from a random second-order Markov chain over ``vocab - 1`` symbols (the last id never occurs),
    peaked enough that n-grams repeat with counts 1, 2, 3, 4 and more."""
    rng = np.random.default_rng(seed)
    used = vocab - 1
    table = rng.dirichlet([0.3] * used, size=(used, used))
    out = [0, 1]
    for _ in range(n - 2):
        out.append(int(rng.choice(used, p=table[out[-2], out[-1]])))
    return np.array(out)


def node_strings(counts) -> list[list[tuple[int, ...]]]:
    """Each level's n-grams, decoded from the trie's keys (parent * V + char)."""
    V, strings, below = counts.vocab_size, [], [()]
    for keys, _, _ in counts.levels:
        level = [below[k // V] + (int(k % V),) for k in keys]
        strings.append(level)
        below = level
    return strings


class ReferenceKN:
    """Interpolated KN written from the formula over plain dicts: what the vectorised trie must equal."""

    def __init__(self, text: list[int], vocab: int, order: int, discounts: np.ndarray) -> None:
        self.V, self.order, self.discounts = vocab, order, discounts
        self.counts = []
        for j in range(1, order + 1):
            raw = Counter(tuple(text[i : i + j]) for i in range(len(text) - j + 1))
            if j == order:
                self.counts.append(raw)
                continue
            left: dict[tuple[int, ...], set[int]] = defaultdict(set)
            for i in range(1, len(text) - j + 1):
                left[tuple(text[i : i + j])].add(text[i - 1])
            self.counts.append({g: len(left[g]) for g in raw})

    def prob(self, w: int, history: tuple[int, ...]) -> float:
        p = 1.0 / self.V
        for j in range(1, self.order + 1):
            if j - 1 > len(history):
                break
            h = history[len(history) - (j - 1) :]
            children = {g[-1]: c for g, c in self.counts[j - 1].items() if g[:-1] == h}
            total = sum(children.values())
            if total == 0:
                continue

            def d(c: int) -> float:
                return 0.0 if c == 0 else float(self.discounts[j - 1][min(c, 3) - 1])

            gamma = sum(d(c) for c in children.values()) / total
            c = children.get(w, 0)
            p = (c - d(c)) / total + gamma * p
        return p


# -- counts -------------------------------------------------------------------------------------


def test_counts_equal_brute_force_raw_and_continuation_counts() -> None:
    text = markov_text(700, vocab=6, seed=0)
    counts = count_ngrams(text, 6, max_order=5)
    assert counts.max_order == 5 and counts.levels[-1][2] is None
    for j, (grams, (keys, raw, cont)) in enumerate(zip(node_strings(counts), counts.levels), start=1):
        assert (np.diff(keys) > 0).all()  # sorted, distinct: a node's children are one run
        expected = Counter(tuple(text[i : i + j]) for i in range(len(text) - j + 1))
        assert dict(zip(grams, raw.tolist())) == expected
        if cont is not None:
            left: dict[tuple[int, ...], set[int]] = defaultdict(set)
            for i in range(1, len(text) - j + 1):
                left[tuple(text[i : i + j])].add(int(text[i - 1]))
            assert dict(zip(grams, cont.tolist())) == {g: len(left[g]) for g in expected}


def test_a_text_shorter_than_the_order_counts_what_it_has() -> None:
    counts = count_ngrams([1, 2, 1], 3, max_order=5)
    assert [len(keys) for keys, _, _ in counts.levels] == [2, 2, 1, 0, 0]
    model = counts.model(5)
    p = model.next_distribution([1, 2])
    assert p.sum() == pytest.approx(1, abs=1e-12) and (p > 0).all()
    seq = np.array([1, 2, 1, 2, 0, 1])
    assert model.log_probs(seq)[:, 0] == pytest.approx([math.log(model.next_distribution(seq[:t])[seq[t]])
                                                        for t in range(1, 6)], abs=1e-12)


# -- discounts ----------------------------------------------------------------------------------


def test_modified_discounts_follow_chen_and_goodman_and_fall_back_like_kenlm() -> None:
    counts = np.array([1] * 10 + [2] * 5 + [3] * 3 + [4] * 2 + [9] * 7)
    y = 10 / (10 + 2 * 5)
    assert modified_discounts(counts) == pytest.approx((1 - 2 * y * 5 / 10, 2 - 3 * y * 3 / 5, 3 - 4 * y * 2 / 3))
    assert modified_discounts(np.array([1, 1, 2, 3, 9])) == FALLBACK  # no count of 4: undefined
    assert ney_discount(counts) == pytest.approx(y)


def test_discounts_that_would_not_give_probabilities_are_refused() -> None:
    counts = count_ngrams(markov_text(200, 5, 1), 5, 3)
    with pytest.raises(UsageError, match="discounts must lie") as e:
        counts.model(3, np.array([[0.5, 1.0, 3.5]] * 3))
    assert e.value.params == ("discount",)
    with pytest.raises(UsageError, match="discount must be"):
        counts.model(3, "absolute")


# -- distributions ------------------------------------------------------------------------------


@pytest.mark.parametrize("discount", ["modified", "ney", 0.7])
@pytest.mark.parametrize("order", [1, 2, 4])
def test_distributions_equal_the_dict_reference_for_seen_unseen_and_short_contexts(order: int, discount) -> None:
    V = 6  # id 5 never occurs in training
    train = markov_text(500, V, seed=2)
    model = count_ngrams(train, V, order).model(order, discount)
    ref = ReferenceKN(train.tolist(), V, order, model.discounts.numpy())
    rng = np.random.default_rng(3)
    contexts = [(), (5,), (5, 5, 5), tuple(train[40:43].tolist()), tuple(train[:1].tolist()),
                tuple(train[7:9].tolist())]
    contexts += [tuple(rng.integers(0, V, size=int(rng.integers(0, 5))).tolist()) for _ in range(12)]
    for context in contexts:
        p = model.next_distribution(context)
        h = context[max(0, len(context) - (order - 1)) :] if order > 1 else ()
        assert p == pytest.approx([ref.prob(w, h) for w in range(V)], rel=1e-12, abs=1e-15)
        assert p.sum() == pytest.approx(1, abs=1e-12)
        assert (p > 0).all()  # the unseen character too: the uniform floor below the unigrams


def test_forward_in_chunks_equals_one_pass_and_the_target_only_path() -> None:
    V, order = 6, 4
    train = markov_text(800, V, seed=4)
    model = count_ngrams(train, V, order).model(order)
    text = torch.tensor(markov_text(120, V, seed=5)).view(-1, 2)  # (60, 2): two streams
    whole, _, state = model(text)
    assert state[0].shape == (1, 2, order - 1) and state[0].tolist() == text[-(order - 1) :].T.unsqueeze(0).tolist()
    pieces, carried = [], None
    for chunk in text.split([1, 7, 30, 22]):
        logits, _, carried = model(chunk, carried)
        pieces.append(logits)
    assert torch.equal(torch.cat(pieces), whole)
    assert torch.allclose(whole.double().exp().sum(-1), torch.ones(60, 2, dtype=torch.float64), atol=1e-6)
    target_only = model.log_probs(text.numpy())  # (59, 2)
    gathered = whole[:-1].gather(2, text[1:].unsqueeze(-1)).squeeze(-1).double().numpy()
    assert target_only == pytest.approx(gathered, abs=1e-5)
    _, loss, _ = model(text[:-1], None, targets=text[1:])
    assert float(loss) == pytest.approx(-target_only.mean(), abs=1e-5)


def test_validation_nats_are_evaluate_lm_on_the_same_characters() -> None:
    V = 7
    text = markov_text(3413, V, seed=6)
    train, val = text[:3000], text[3000:]  # 413: a tail of 413 % 8 that no stream holds
    model = count_ngrams(train, V, 5).model(5)
    layout = eval_layout(val)
    assert layout.shape == (413 // 8, 8)  # what evaluate_lm reads: 8 streams, the last 413 % 8 dropped
    assert model.validation_nats(val) == pytest.approx(evaluate_lm(model, torch.tensor(val), CPU), abs=1e-6)
    assert model.validation_nats(val[:5]) == pytest.approx(evaluate_lm(model, torch.tensor(val[:5]), CPU), abs=1e-6)


def test_order_is_chosen_on_validation_among_the_orders_asked_for() -> None:
    V = 6
    text = markov_text(4600, V, seed=8)  # one chain: validation continues the training text
    train, val = text[:4000], text[4000:]
    counts = count_ngrams(train, V, 6)
    choice = choose_order(counts, val)
    direct = {n: count_ngrams(train, V, n).model(n).validation_nats(val) for n in range(1, 7)}
    assert choice.by_order == pytest.approx(direct, abs=1e-12)
    assert choice.order == min(direct, key=direct.get) and choice.nats == pytest.approx(direct[choice.order])
    assert 2 <= choice.order  # the text is second-order Markov: a unigram model cannot be best
    model, fixed, _ = fit(train, V, val, order=3)
    assert model.order == 3 and fixed.by_order == pytest.approx({3: direct[3]}, abs=1e-12)


def test_baseline_for_texts_reads_characters_and_scores_the_evaluated_ones() -> None:
    train, val = TALE * 3, "The king's daughter sat by the well and threw her golden ball up on high. Zq"
    order, nats = baseline_for(train, val, orders=range(1, 5))
    chars = sorted(set(train) | set(val))  # 'Z' and 'q' unseen in training: the uniform floor
    ids = {ch: i for i, ch in enumerate(chars)}
    counts = count_ngrams([ids[c] for c in train], len(chars), 4)
    expected = {n: counts.model(n).validation_nats([ids[c] for c in val]) for n in range(1, 5)}
    assert (order, nats) == (min(expected, key=expected.get), pytest.approx(min(expected.values()), abs=1e-12))
    with pytest.raises(UsageError) as e:
        baseline_for(train, val, orders=[0, 3])
    assert e.value.params == ("order",)


def test_orders_and_ids_out_of_range_are_refused() -> None:
    for bad in (0, MAX_ORDER + 1, 2.5, True):
        with pytest.raises(UsageError, match="order must be an integer") as e:
            fit([0, 1, 0], 2, [0, 1], order=bad)  # type: ignore[arg-type]
        assert e.value.params == ("order",)
    with pytest.raises(UsageError, match=r"ids must lie in \[0, 2\)"):
        count_ngrams([0, 2], 2, 2)
    model = count_ngrams([0, 1, 0], 2, 2).model(2)
    with pytest.raises(ValueError, match="ids must lie"):
        model(torch.tensor([[3]]))


# -- sampling, scoring, saving ------------------------------------------------------------------


def small_run(tmp_path: Path, order: int | None = None) -> Path:
    corpus = tmp_path / "tale.txt"
    corpus.write_text(TALE * 4, encoding="utf-8")
    run = tmp_path / "run"
    train_ngram(str(corpus), run, order=order, max_order=5)
    return run


def test_a_saved_run_loads_without_pickle_and_scores_as_recorded(tmp_path: Path) -> None:
    run = small_run(tmp_path)
    config = json.loads((run / checkpoint.CONFIG).read_text())
    assert config["model"]["family"] == "ngram" and config["ngram"]["order"] in range(1, 6)
    loaded = checkpoint.load(run, task="lm")
    assert isinstance(loaded.model, NGramLM) and loaded.model.order == config["ngram"]["order"]
    again = evaluate_saved(loaded, CPU)["metrics"]
    assert again["val_loss"] == pytest.approx(config["metrics"]["val_loss"], abs=1e-6)
    data = LMData.load(str(tmp_path / "tale.txt"), 0.1)
    fresh, _, _ = fit(data.train, len(data.vocab), data.val, order=loaded.model.order)
    for context in ([], data.val[:9].tolist(), [0, 0, 0, 0]):
        assert np.array_equal(loaded.model.next_distribution(context), fresh.next_distribution(context))
    # score: the same log-probabilities whatever the chunk size, and the model's own
    text = "the king's daughter went out into the forest"
    whole, _ = score_text(loaded.model, loaded.vocab, text, chunk_size=1024)
    chunked, _ = score_text(loaded.model, loaded.vocab, text, chunk_size=3)
    ids = loaded.vocab.encode(text)
    direct = sum(math.log(loaded.model.next_distribution(ids[:t])[ids[t]]) for t in range(1, len(ids)))
    assert whole.log_prob == pytest.approx(direct, abs=1e-4) and chunked.log_prob == pytest.approx(whole.log_prob)
    assert loaded.model.nats_per_char(ids) == pytest.approx(whole.nats_per_char, abs=1e-6)


@pytest.mark.parametrize("damage, message", [
    (lambda w: w.update(keys_1=w["keys_1"].flip(0)), "keys must be increasing"),
    (lambda w: w.update(counts_1=-w["counts_1"]), "counts must be non-negative"),
    (lambda w: w.update(extra=torch.zeros(1, dtype=torch.float64)), "unexpected: \\['extra'\\]"),
    (lambda w: w.pop("discounts"), "discounts"),
    (lambda w: w.update(discounts=w["discounts"] * 9), "would not give probabilities"),
])
def test_damaged_tables_are_refused_with_the_reason(tmp_path: Path, damage, message: str) -> None:
    run = small_run(tmp_path, order=3)
    weights = checkpoint.load_tensors(run / checkpoint.WEIGHTS)
    damage(weights)
    torch.save(weights, run / checkpoint.WEIGHTS)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load(run, task="lm")


def test_an_empty_model_from_its_config_is_filled_by_load_state_dict() -> None:
    model = count_ngrams(markov_text(300, 5, 10), 5, 3).model(3)
    empty = build_model(ModelConfig(kind="lm", family="ngram", vocab_size=5))
    assert isinstance(empty, NGramLM) and empty.order == 0
    empty.load_state_dict(model.state_dict())
    assert empty.order == 3 and np.array_equal(empty.next_distribution([1, 2]), model.next_distribution([1, 2]))
    assert all(t.dtype == torch.float64 for t in model.state_dict().values())


def test_sampling_is_seeded_and_temperature_zero_follows_the_likeliest_character() -> None:
    V, order = 6, 3
    model = count_ngrams(markov_text(2000, V, seed=11), V, order).model(order).eval()
    vocab = Vocab([chr(ord("a") + i) for i in range(V)])
    first = "".join(generate(model, vocab, prime="ab", length=80, seed=5))
    assert first == "".join(generate(model, vocab, prime="ab", length=80, seed=5))
    assert first != "".join(generate(model, vocab, prime="ab", length=80, seed=6))
    greedy = "".join(generate(model, vocab, prime="ab", length=30, temperature=0))
    ids = vocab.encode("ab")
    for _ in range(30):
        ids.append(int(np.argmax(model.next_distribution(ids))))
    assert greedy == vocab.decode(ids[2:])
    assert "".join(generate(model, vocab, prime="ab", length=30, top_k=1, seed=3)) == greedy
    assert beam_search(model, vocab, "ab", 30, 1).text == greedy  # one beam is greedy decoding
    wide = beam_search(model, vocab, "ab", 30, 4)
    direct = sum(math.log(model.next_distribution(vocab.encode("ab" + wide.text[:t]))[vocab.id(wide.text[t])])
                 for t in range(30))
    assert wide.log_prob == pytest.approx(direct, abs=1e-4)


def test_sampling_draws_from_the_kn_distribution() -> None:
    V, order = 4, 2
    model = count_ngrams(markov_text(500, V, seed=12), V, order).model(order).eval()
    vocab = Vocab(["a", "b", "c", "d"])
    draws = Counter()
    for seed in range(400):
        draws["".join(generate(model, vocab, prime="b", length=1, seed=seed))] += 1
    p = model.next_distribution([1])
    for ch, pk in zip("abcd", p):  # binomial: 400 draws, 4.5 standard deviations
        assert abs(draws[ch] / 400 - pk) <= 4.5 * math.sqrt(pk * (1 - pk) / 400) + 1e-9


# -- the CLI ------------------------------------------------------------------------------------


def test_cli_trains_scores_and_samples_an_ngram_run(tmp_path: Path) -> None:
    corpus = tmp_path / "tale.txt"
    corpus.write_text(TALE * 4, encoding="utf-8")
    run = tmp_path / "ng"
    result = runner.invoke(app, ["train", "--family", "ngram", "--corpus", str(corpus), "--order", "4",
                                 "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert "a 4-gram" in result.stderr and "val_loss" in result.stderr
    scored = runner.invoke(app, ["score", "--model", str(run), "--json", str(corpus)])
    assert scored.exit_code == 0, scored.output
    assert 0 < json.loads(scored.stdout)["nats_per_char"] < 2
    args = ["sample", "--model", str(run), "--prime", "The king", "--length", "40", "--seed", "1"]
    sampled = runner.invoke(app, args)
    assert sampled.exit_code == 0, sampled.output
    assert sampled.stdout.startswith("The king") and len(sampled.stdout) == len("The king") + 40 + 1
    again = runner.invoke(app, args)
    assert again.stdout == sampled.stdout


def test_cli_refuses_recurrent_options_for_an_ngram_and_order_without_it(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--family", "ngram", "--hidden", "64", "--steps", "9", "--out",
                                 str(tmp_path / "x")])
    assert result.exit_code != 0 and "--hidden, --steps would be ignored" in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = runner.invoke(app, ["train", "--order", "3", "--out", str(tmp_path / "y")])
    assert result.exit_code != 0 and "--family ngram" in result.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_an_ngram_run_is_not_a_parent_to_fine_tune(tmp_path: Path) -> None:
    run = small_run(tmp_path, order=3)
    result = runner.invoke(app, ["train", "--init-from", str(run), "--corpus", str(tmp_path / "tale.txt"),
                                 "--steps", "1", "--out", str(tmp_path / "child")])
    assert result.exit_code != 0 and "--init-from" in result.output and "n-gram model" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_text_that_is_not_registered_gets_its_baseline_before_training(tmp_path: Path) -> None:
    corpus = tmp_path / "tale.txt"
    corpus.write_text(TALE * 6, encoding="utf-8")
    task = type("T", (), {"data": LMData.load(str(corpus), 0.1)})()
    found = unregistered_baseline(task, str(corpus))  # type: ignore[arg-type]
    assert found is not None and 1 <= found[0].order <= 8 and found[0].nats > 0
    assert unregistered_baseline(task, "grimm") is None  # registered: the study's numbers speak for it
    result = runner.invoke(app, [
        "train", "--corpus", str(corpus), "--hidden", "8", "--embed", "4", "--layers", "1", "--seq-len", "8",
        "--batch-size", "2", "--steps", "1", "--eval-every", "1", "--sample-every", "5", "--out", str(tmp_path / "r"),
    ])
    assert result.exit_code == 0, result.output
    article = "an" if found[0].order == 8 else "a"
    line = f"baseline: {article} {found[0].order}-gram gets {found[0].nats:.2f} nats/char on this validation text"
    assert line in result.stderr
    # and at each evaluation the run is put beside it
    assert f" beside {found[0].order}-gram {found[0].nats:.2f} (counted on this text): +" in result.stderr


# -- a real corpus ------------------------------------------------------------------------------


def test_grimm_fits_in_seconds_and_matches_evaluate_lm(corpus_mirror: Path) -> None:
    data = LMData.load("grimm", 0.1)
    model, choice, seconds = fit(data.train, len(data.vocab), data.val)
    assert 5 <= choice.order <= 8 and 1.2 < choice.nats < 1.45
    assert seconds < 30  # about 1 s of CPU on one core; generous for a loaded machine
    assert model.validation_nats(data.val) == pytest.approx(evaluate_lm(model, data.val, CPU), abs=1e-5)


# -- NLTK ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", [2, 3, 4])
def test_nltk_kneser_ney_interpolated_agrees_where_the_two_are_the_same_model(order: int) -> None:
    """NLTK's KneserNeyInterpolated is plain interpolated KN with one fixed discount at every order but
    the unigram, whose continuation-count distribution it leaves undiscounted and without a uniform floor;
    so this model with discounts ``[0] + [D] * (order - 1)`` is the same model. One difference remains:
    below the top order NLTK counts a context's distinct followers in the raw counts, this model in the
    continuation counts, and these differ only for an n-gram seen at the very start of the text alone. A
    sentinel character that opens the text and appears nowhere else (nor in any queried context) keeps
    that case out. What is left is float rounding in a different order of additions: 1e-12."""
    nltk_lm = pytest.importorskip("nltk.lm", reason="nltk is not installed (pip install -e '.[bench]')")
    from nltk.util import everygrams

    text = "\x02" + TALE
    chars = sorted(set(text))
    ids = {ch: i for i, ch in enumerate(chars)}
    discount = 0.75
    lm = nltk_lm.KneserNeyInterpolated(order, discount=discount)
    lm.fit([list(everygrams(list(text), max_len=order))], vocabulary_text=list(text))
    ours = count_ngrams([ids[c] for c in text], len(chars), order).model(
        order, np.array([[0.0] * 3] + [[discount] * 3] * (order - 1)))
    queries = ["the king's", "golden ball", "forest w", "Now it so", "wfwT", ""]  # wfwT: contexts never seen
    for query in queries:
        for cut in range(len(query) + 1):
            context = query[max(0, cut - (order - 1)) : cut] if order > 1 else ""
            p = ours.next_distribution([ids[c] for c in context])
            expected = [lm.unmasked_score(ch, tuple(context) or None) for ch in chars]
            assert p == pytest.approx(expected, rel=1e-12, abs=1e-15), (order, context)
            assert p.sum() == pytest.approx(1, abs=1e-12)
