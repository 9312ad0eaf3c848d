"""Exact constrained generation: every sample matches, the mask equals a brute-force search, errors come early."""

from __future__ import annotations

import itertools
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from chargen.data.corpora import load_corpus
from chargen.errors import ChargenError, UsageError, VocabularyError
from chargen.generation.pattern import PatternMask
from chargen.vocab import Vocab

pytest.importorskip("interegular", reason="the constraints extra is not installed")

END = "<eos>"


def matches(text: str, regex: str | None, include: tuple[str, ...] = ()) -> bool:
    return (regex is None or re.fullmatch(regex, text, re.ASCII) is not None) and all(w in text for w in include)


def decode(mask: PatternMask, vocab: Vocab, logits_at, n: int, length: int, prime: str = "",
           generator: torch.Generator | None = None, end: str = END) -> list[str]:
    """``n`` streams through the mask: sampled from ``logits_at(step, texts) (N, V)``, or greedy without a generator.
    A stream ends when its row is empty (it must then be accepting), at the ``end`` token (not written), or at
    the length."""
    state = mask.start(n, prime)
    texts, alive = [prime] * n, [True] * n
    for step, remaining in enumerate(range(length, 0, -1)):
        allowed = mask.allowed(state, remaining)
        logits = logits_at(step, texts).masked_fill(~allowed, float("-inf"))
        empty = ~allowed.any(dim=1)
        for i in torch.nonzero(empty).flatten().tolist():
            assert bool(mask.accepting(state)[i]), mask.dead_end(state, i)  # never a dead end
            alive[i] = False
        logits[empty] = 0.0  # a finished stream draws anything; it is not advanced
        if generator is None:
            ids = logits.argmax(dim=1)
        else:
            ids = torch.multinomial(logits.softmax(dim=1), 1, generator=generator).squeeze(1)
        live = np.array(alive)
        state = state.copy()
        state[live] = mask.advance(state[live], ids[torch.from_numpy(live)])  # a finished stream is not advanced
        for i, tok in enumerate(ids.tolist()):
            if alive[i]:
                if vocab.tokens[tok] == end:
                    alive[i] = False
                else:
                    texts[i] += vocab.tokens[tok]
        if not any(alive):
            break
    assert all(bool(a) for a in mask.accepting(state))
    return texts


PATTERNS = [
    (r"[A-Z][a-z]+ (was|is) [a-z ]+\.", (), 40),
    (r"(the|a) (king|queen|miller)('s)? (gold|daughter)", (), 30),
    (r"[A-Z][a-z]{2,8}(son|sen|ez)", (), 12),
    (None, ("king", "gold"), 30),
    (r"[a-z ]+\.", ("king", "gold", "once"), 40),
    (r"^(ab|ba)+\$?$", (), 20),  # anchors are redundant; the escaped \$ stays a character
]


@pytest.mark.parametrize("end", [None, "\n"])
@pytest.mark.parametrize(("regex", "include", "length"), PATTERNS)
def test_every_sampled_text_matches_in_full(regex: str | None, include: tuple[str, ...], length: int,
                                             end: str | None) -> None:
    vocab = Vocab("\n !$'.ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
    mask = PatternMask(regex, vocab, length, include=include, end=end)
    generator = torch.Generator().manual_seed(len(PATTERNS) + length)
    texts = decode(mask, vocab, lambda step, t: torch.randn(len(t), len(vocab), generator=generator) * 3,
                   n=100, length=length, generator=generator, end=end or END)
    bare = regex if regex is None else regex.removeprefix("^").removesuffix("$")
    assert all(matches(t, bare, include) and len(t) <= length for t in texts), texts
    assert len(set(texts)) > 10  # the samples are samples, not one forced string


def brute_force(alphabet: str, length: int, regex: str | None, include: tuple[str, ...]) -> set[str]:
    return {"".join(p) for n in range(length + 1) for p in itertools.product(alphabet, repeat=n)
            if matches("".join(p), regex, include)}


SMALL = [("(ab|b)*c?", ()), ("a+b{2}|c", ()), ("[ab]*aba[ab]*", ()), ("[abc]*", ("ca", "bb")), ("(a|bc)+", ("cb",)),
         ("a{7}", ()), ("a(?!a)[abc]{1,4}", ())]  # a lookahead inside the text is followed exactly


@pytest.mark.parametrize("end", [None, END])
@pytest.mark.parametrize(("regex", "include"), SMALL)
def test_the_mask_allows_exactly_the_viable_characters(regex: str, include: tuple[str, ...], end: str | None) -> None:
    length = 6
    vocab = Vocab("abc", specials=[END])
    language = brute_force("abc", length, regex, include)
    prefixes = {s[:i] for s in language for i in range(len(s) + 1)}
    if not language:
        with pytest.raises(ChargenError):
            PatternMask(regex, vocab, length, include=include, end=end)
        return
    mask = PatternMask(regex, vocab, length, include=include, end=end)
    for text in sorted(prefixes):  # every prefix of a match is reachable: walk it and compare rows
        state = mask.start(1, text)
        remaining = length - len(text)
        viable = [len(text) < length and any(s.startswith(text + c) for s in language) for c in "abc"]
        expected = [end is not None and text in language] + viable  # <eos> first, then a, b, c
        if remaining > 0:
            assert mask.allowed(state, remaining)[0].tolist() == expected, text
        assert bool(mask.accepting(state)[0]) == (text in language)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("regex", "include"), SMALL[:5])
def test_greedy_with_a_pattern_equals_greedy_over_a_brute_force_search(regex: str, include: tuple[str, ...],
                                                                        seed: int) -> None:
    """Greedy decoding takes, at each step, the likeliest character some full match within the length
    still begins with (a brute force over every string says which); fixed random logits per position."""
    length = 6
    vocab = Vocab("abc", specials=[END])
    table = torch.randn(length + 1, len(vocab), generator=torch.Generator().manual_seed(seed))
    mask = PatternMask(regex, vocab, length, include=include, end=END)
    [greedy] = decode(mask, vocab, lambda step, t: table[step].expand(len(t), -1).clone(), n=1, length=length)
    language = brute_force("abc", length, regex, include)
    text = ""
    while True:
        options = {c: table[len(text), vocab.id(c)] for c in "abc" if any(s.startswith(text + c) for s in language)
                   and len(text) < length}
        if text in language:
            options[END] = table[len(text), vocab.id(END)]
        if not options:
            break
        best = max(options, key=lambda c: float(options[c]))
        if best == END:
            break
        text += best
    assert greedy == text


@pytest.mark.parametrize(("regex", "states"), [
    (None, 1), ("(the|a) (king|queen)", 13), ("(ab|ab|ab)+", 3), ("[ab]*aba[ab]*", 4), ("x?", 2)])
def test_the_automaton_is_minimal(regex: str | None, states: int) -> None:
    """Minimal state counts worked by hand: ``(the|a) (king|queen)`` shares its suffixes (t-h-e and a meet
    before the space; k-i-n-g and q-u-e-e-n meet at the end): start, t, th, [the|a], space, k, ki, kin,
    q, qu, que, quee, end."""
    assert PatternMask(regex, Vocab("abeghiknqtux "), 20).states == states


def test_after_the_end_token_only_the_end_token_follows() -> None:
    vocab = Vocab("ab", specials=[END])
    mask = PatternMask("a+b?", vocab, 5, end=END)
    state = mask.start(2)
    assert mask.allowed(state, 5).tolist() == [[False, True, False]] * 2  # "" does not match: no end yet
    state = mask.advance(state, torch.tensor([vocab.id("a"), vocab.id("a")]))
    state = mask.advance(state, torch.tensor([vocab.id(END), vocab.id("b")]))
    assert mask.allowed(state, 3).tolist() == [[True, False, False], [True, False, False]]
    assert mask.accepting(state).tolist() == [True, True]
    state = mask.advance(state, torch.tensor([vocab.id(END), vocab.id(END)]))
    assert mask.allowed(state, 2).tolist() == [[True, False, False]] * 2
    with pytest.raises(RuntimeError):
        mask.advance(state, torch.tensor([vocab.id("a"), vocab.id(END)]))


def test_a_prime_is_part_of_the_match(corpus_mirror: Path) -> None:
    vocab = Vocab.from_text(load_corpus("grimm").text)
    regex = r"[A-Z][a-z]+ (was|is) [a-z ]+\."
    mask = PatternMask(regex, vocab, 30, prime="King")
    generator = torch.Generator().manual_seed(3)
    texts = decode(mask, vocab, lambda step, t: torch.randn(len(t), len(vocab), generator=generator), 20, 30,
                   prime="King", generator=generator)
    assert all(re.fullmatch(r"King[a-z]* (was|is) [a-z ]+\.", t) and len(t) <= 34 for t in texts)
    with pytest.raises(UsageError) as e:
        PatternMask(regex, vocab, 30, prime="king")
    assert e.value.params == ("prime", "pattern") and "'k'" in str(e.value)
    with pytest.raises(UsageError) as e:
        PatternMask(regex, vocab, 5, prime="King")  # " is a." is the shortest completion
    assert e.value.params == ("pattern", "length") and "the shortest needs 6" in str(e.value)
    PatternMask(regex, vocab, 6, prime="King")


@pytest.mark.parametrize(("regex", "kind", "needle"), [
    ("(ab", UsageError, "not a valid regular expression"),
    (r"(a)\1", UsageError, "cannot follow"),
    ("ab(?=c)", UsageError, "cannot follow"),  # looks past the end of the text
    ("(?<=a)b", UsageError, "cannot follow"),
    (r"\bab", UsageError, "cannot follow"),
    ("[0-9]+", VocabularyError, "no text made of the model's characters"),
    ("a{50}", UsageError, "the shortest needs 50"),
])
def test_a_pattern_no_sample_can_satisfy_is_refused_before_generation(regex: str, kind: type, needle: str) -> None:
    with pytest.raises(kind) as e:
        PatternMask(regex, Vocab("ab "), 10)
    assert needle in str(e.value) and "pattern" in e.value.params and "\n" not in str(e.value)


def test_required_words_are_checked_and_must_fit() -> None:
    vocab = Vocab("abcdefghijklmnopqrstuvwxyz ")
    with pytest.raises(UsageError) as e:
        PatternMask(None, vocab, 6, include=["king", "gold"])  # "kingold" needs 7
    assert e.value.params == ("include", "length") and "the shortest needs 7" in str(e.value)
    assert PatternMask(None, vocab, 7, include=["king", "gold"]).states > 1
    with pytest.raises(VocabularyError) as e:
        PatternMask(None, vocab, 20, include=["King"])
    assert e.value.params == ("include",)
    with pytest.raises(VocabularyError) as e:
        PatternMask("[a-c]+", vocab, 20, include=["king"])
    assert e.value.params == ("pattern", "include")
    with pytest.raises(UsageError):
        PatternMask(None, vocab, 20, include=[""])
    with pytest.raises(VocabularyError) as e:  # the end token is not the pattern's to use
        PatternMask("a b", vocab, 20, end=" ")
    assert "the end token ' ' only ends a sample" in str(e.value)


def test_without_the_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "interegular", None)  # import now raises ImportError
    with pytest.raises(ChargenError) as e:
        PatternMask("ab", Vocab("ab"), 5)
    assert "'constraints' extra" in str(e.value) and e.value.params == ("pattern",)
