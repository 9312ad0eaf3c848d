"""Copy detection: the suffix automaton, the copy tracker and the max-copy mask against brute-force searches."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from chargen.data.corpora import load_corpus
from chargen.errors import CorpusError, UsageError
from chargen.generation.copies import CopyMask, CorpusIndex, copy_lengths, index_for_run, novelty
from chargen.vocab import Vocab


def random_text(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def brute_lengths(query: str, corpus: str) -> list[int]:
    """The longest suffix of ``query[:i+1]`` that occurs in ``corpus``, for every i (substring search)."""
    out = []
    for i in range(len(query)):
        length = 0
        while length <= i and query[i - length : i + 1] in corpus:
            length += 1
        out.append(length)
    return out


def long_copy_chars(query: str, corpus: str, min_span: int) -> list[bool]:
    """Whether each character of ``query`` lies inside some span of at least ``min_span`` that occurs in ``corpus``."""
    covered = [False] * len(query)
    for i in range(len(query)):
        for j in range(i + min_span, len(query) + 1):
            if query[i:j] in corpus:
                covered[i:j] = [True] * (j - i)
    return covered


@pytest.mark.parametrize("seed", range(6))
def test_the_automaton_knows_exactly_the_substrings_of_its_text(seed: int) -> None:
    rng = random.Random(seed)
    text = random_text(rng, "abc"[: 2 + seed % 2], rng.randint(1, 120))
    index = CorpusIndex.build(text)
    n = len(text)
    assert index.states <= max(2 * n - 1, 2) and len(index.edge_char) <= max(3 * n - 4, n)
    for length in range(1, 8):
        for chars in np.ndindex(*(3,) * length) if length <= 5 else []:
            s = "".join("abc"[c] for c in chars)
            assert index.occurs(s) == (s in text), s
    for _ in range(200):  # longer probes, half of them taken from the text itself
        i = rng.randrange(n)
        s = text[i : i + rng.randint(1, 40)] if rng.random() < 0.5 else random_text(rng, "abcd", rng.randint(1, 12))
        assert index.occurs(s) == (s in text)


@pytest.mark.parametrize("seed", range(6))
def test_copy_lengths_and_novelty_equal_a_brute_force_search(seed: int) -> None:
    rng = random.Random(100 + seed)
    corpus = random_text(rng, "ab ", 300)
    # a query that copies long pieces of the corpus between random stretches
    query = ""
    while len(query) < 200:
        i = rng.randrange(len(corpus))
        query += corpus[i : i + rng.randint(0, 40)] + random_text(rng, "ab x", rng.randint(1, 8))
    index = CorpusIndex.build(corpus)
    lengths = copy_lengths(query, index)
    assert lengths == brute_lengths(query, corpus)
    report = novelty(query, index, min_span=12)
    assert report["longest_copy"] == max(lengths)
    span = query[report["copy_start"] : report["copy_end"]]
    assert span == report["span"] == corpus[report["corpus_start"] : report["corpus_end"]]
    assert corpus.find(span) == report["corpus_start"]  # the first occurrence
    covered = long_copy_chars(query, corpus, 12)
    assert report["long_copy_chars"] == sum(covered)
    marked = [False] * len(query)
    for start, end in report["long_copies"]:
        marked[start:end] = [True] * (end - start)
    assert marked == covered
    assert report["long_copy_share"] == pytest.approx(report["long_copy_chars"] / len(query))


def test_novelty_on_text_the_corpus_lacks_and_bad_min_span() -> None:
    index = CorpusIndex.build("the king has gold\n")
    report = novelty("zzz", index)
    assert report["longest_copy"] == 0 and report["long_copy_share"] == 0.0 and report["span"] == ""
    assert novelty("", index)["chars"] == 0
    with pytest.raises(UsageError) as e:
        novelty("x", index, min_span=0)
    assert e.value.params == ("min_span",)


def masked_walk(mask: CopyMask, vocab: Vocab, prime: str, length: int, rng: random.Random,
                prefer: CorpusIndex | None = None) -> tuple[str, str | None]:
    """Draw ``length`` characters among those the mask allows (uniformly, or preferring the ones that extend
    a copy of ``prefer``'s text: the worst case for the guarantee). Returns the text and a dead end's reason."""
    state = mask.start(1, prime)
    out = []
    for remaining in range(length, 0, -1):
        row = mask.allowed(state, remaining)[0]
        ids = torch.nonzero(row).flatten().tolist()
        if not ids:
            return "".join(out), mask.dead_end(state, 0)
        choice = rng.choice(ids)
        if prefer is not None and rng.random() < 0.9:
            extending = [i for i in ids if prefer.occurs((prime + "".join(out))[-8:] + vocab.tokens[i])]
            choice = rng.choice(extending) if extending else choice
        out.append(vocab.tokens[choice])
        state = mask.advance(state, torch.tensor([choice]))
    return "".join(out), None


def copies_over(text: str, corpus: str, limit: int, after: int) -> list[str]:
    """Every window of ``limit + 1`` characters ending at or after position ``after`` found in ``corpus``."""
    return [text[i - limit - 1 : i] for i in range(max(after + 1, limit + 1), len(text) + 1)
            if corpus.find(text[i - limit - 1 : i]) >= 0]


@pytest.mark.parametrize("seed", range(8))
def test_max_copy_holds_on_random_texts_and_masks_nothing_more(seed: int) -> None:
    rng = random.Random(seed)
    corpus = random_text(rng, "abcd", 400)
    vocab = Vocab("abcde")
    index = CorpusIndex.build(corpus)
    limit = rng.randint(2, 6)
    mask = CopyMask(index, vocab, limit)
    prime = corpus[50:80]  # a prime copied from the corpus: only its tail may count
    text, _ = masked_walk(mask, vocab, prime, 150, rng, prefer=index)
    assert not copies_over(prime + text, corpus, limit, after=len(prime))
    # and exactly those characters are masked: each forbidden one would have completed a copy
    state = mask.start(1, prime)
    full = prime
    for ch in text:
        row = mask.allowed(state, 1)[0].tolist()
        for i, tok in enumerate(vocab.tokens):
            assert row[i] == (corpus.find(full[-limit:] + tok) < 0 or len(full[-limit:]) < limit), (full, tok)
        full += ch
        state = mask.advance(state, torch.tensor([vocab.id(ch)]))


@pytest.mark.parametrize("limit", [4, 8, 12])
def test_max_copy_holds_on_a_real_corpus_slice(corpus_mirror: Path, limit: int) -> None:
    corpus = load_corpus("grimm").text[20_000:60_000]
    vocab = Vocab.from_text(corpus)
    index = CorpusIndex.build(corpus)
    mask = CopyMask(index, vocab, limit)
    rng = random.Random(limit)
    text, reason = masked_walk(mask, vocab, corpus[1000:1040], 300, rng, prefer=index)
    assert reason is None and len(text) == 300
    assert not copies_over(corpus[1000:1040] + text, corpus, limit, after=40)
    assert max(copy_lengths(text, index)) <= limit


def test_a_batch_tracks_each_stream_and_every_character_masked_is_a_dead_end() -> None:
    corpus = "aab abb ba a"  # 'a' is followed by a, b and ' '
    vocab = Vocab("ab ", specials=["<eos>"])
    mask = CopyMask(CorpusIndex.build(corpus), vocab, 1)
    state = mask.start(2)
    state = mask.advance(state, torch.tensor([vocab.id("a"), vocab.id("<eos>")]))
    rows = mask.allowed(state, 5)
    assert rows[0].tolist() == [True, False, False, False]  # only <eos>, which the corpus never has
    assert rows[1].all()  # the second stream copies nothing
    no_eos = CopyMask(CorpusIndex.build(corpus), Vocab("ab "), 1)
    state = no_eos.start(1, prime="a")
    assert not no_eos.allowed(state, 5).any()
    reason = no_eos.dead_end(state, 0)
    assert "max_copy 1" in reason and "'a'" in reason and "\n" not in reason
    with pytest.raises(UsageError) as e:
        CopyMask(CorpusIndex.build(corpus), vocab, 0)
    assert e.value.params == ("max_copy",)


def write_run(run: Path, corpus: Path, sha: str | None = None) -> dict:
    config = {"task": "lm", "task_config": {"options": {"corpus": str(corpus)},
                                            "corpus_sha256": sha or load_corpus(str(corpus)).sha256}}
    run.mkdir()
    (run / "config.json").write_text(json.dumps(config))
    return config


def test_the_index_is_cached_beside_the_run_and_rebuilt_when_damaged(tmp_path: Path) -> None:
    corpus = tmp_path / "tale.txt"
    corpus.write_text("Once upon a time there was a king who had gold.\n" * 3)
    run = tmp_path / "run"
    config = write_run(run, corpus)
    first = index_for_run(run, config)
    [cached] = run.glob("copies-*.npz")
    again = index_for_run(run, config)
    assert again is not first
    for name in ("length", "link", "firstpos", "offsets", "edge_char", "edge_target"):
        assert np.array_equal(getattr(again, name), getattr(first, name))
    cached.write_bytes(b"not an npz")
    rebuilt = index_for_run(run, config)
    assert rebuilt.occurs("king who") and not rebuilt.occurs("queen")
    assert np.load(cached, allow_pickle=False)["length"].shape == first.length.shape  # rewritten


def test_a_run_without_its_text_is_a_clear_error(tmp_path: Path) -> None:
    corpus = tmp_path / "tale.txt"
    corpus.write_text("Once upon a time.\n")
    run = tmp_path / "run"
    config = write_run(run, corpus, sha="0" * 64)
    with pytest.raises(CorpusError) as e:
        index_for_run(run, config)
    assert e.value.params == ("max_copy",) and "is not it now" in str(e.value)
    corpus.unlink()
    with pytest.raises(CorpusError) as e:
        index_for_run(run, config)
    assert e.value.params == ("max_copy",) and "no such file" in str(e.value)
    with pytest.raises(CorpusError) as e:
        index_for_run(run, {"task": "lm"}, param="novelty")
    assert e.value.params == ("novelty",) and "novelty needs it" in str(e.value)
    assert not list(run.glob("copies-*"))
