"""Copy detection: a suffix automaton of a corpus, the longest copied span of a text, and the max-copy mask.

The index is the suffix automaton of the corpus the run was given (the whole cleaned text, training and
validation parts alike), held in flat numpy arrays: per state its longest length, suffix link and first
end position, and its transitions as one sorted edge list (CSR). Walking a text through it with suffix
links gives, in amortised O(1) per character, the longest suffix of the text so far that occurs in the
corpus: the longest copied span ending at each position. ``novelty`` reports on a finished text,
``CopyTracker`` follows one as it grows, and ``CopyMask`` (a ``CharMask``) forbids every next character
that would make a copied span longer than ``max_copy``.

What a full mask means: a character is forbidden only when the copied suffix is exactly ``max_copy`` long
and the corpus has that ``max_copy``-gram followed by the character. Every character of the vocabulary
is masked only when the corpus continues that one n-gram with every character the model knows (with
real text and ``max_copy`` >= 3 it does not happen; a vocabulary with a token the corpus lacks, such as
``<eos>``, can never be fully masked). The guarantee is never relaxed: the stream has no allowed
character, and ``dead_end`` names the n-gram that trapped it, so the decoder ends that stream early.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from chargen.data.corpora import ProgressFn, load_corpus
from chargen.errors import ChargenError, CorpusError, UsageError
from chargen.vocab import Vocab

__all__ = ["COPY_SPAN", "CopyMask", "CopyState", "CopyTracker", "CorpusIndex", "copy_lengths", "index_for_run",
           "novelty"]

COPY_SPAN = 20  # novelty's "long copy": the share of characters inside copied spans at least this long
_FORMAT = 1  # of the cached npz; another value is rebuilt, never misread
_ARRAYS = ("alphabet", "length", "link", "firstpos", "offsets", "edge_char", "edge_target")


def text_sha256(text: str) -> str:
    """The key of a text's index: the sha256 of the cleaned text itself (cleaning rules may change)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(eq=False)
class CorpusIndex:
    """The suffix automaton of ``text``: state 0 is the empty string; every state holds the strings
    ``text`` ends with at one set of positions, of lengths ``length[link[s]] + 1 .. length[s]``.

    ``firstpos[s]``: where the first occurrence of those strings ends in ``text`` (inclusive).
    The transitions of state ``s`` are ``edge_char/edge_target[offsets[s]:offsets[s+1]]``, sorted by
    character code (an index into ``alphabet``, the text's distinct code points in order).
    """

    text: str
    alphabet: np.ndarray  # (A,) int32 code points
    length: np.ndarray  # (S,) int32
    link: np.ndarray  # (S,) int32, -1 for the root
    firstpos: np.ndarray  # (S,) int32
    offsets: np.ndarray  # (S+1,) int64
    edge_char: np.ndarray  # (E,) int16
    edge_target: np.ndarray  # (E,) int32
    sha256: str = ""
    codes: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.sha256 = self.sha256 or text_sha256(self.text)
        self.codes = {chr(int(cp)): i for i, cp in enumerate(self.alphabet)}
        # memoryviews index to Python ints in tens of nanoseconds, and bisect searches them in C:
        # the walk runs once per generated character, so it stays out of numpy's per-call overhead.
        self._offsets = memoryview(self.offsets)
        self._chars = memoryview(self.edge_char)
        self._targets = memoryview(self.edge_target)
        self._length = memoryview(self.length)
        self._link = memoryview(self.link)

    @property
    def states(self) -> int:
        return len(self.length)

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in _ARRAYS)

    # ------------------------------------------------------------------ building

    @classmethod
    def build(cls, text: str) -> CorpusIndex:
        """The automaton by the online construction (Blumer et al.; Crochemore), one character at a time.

        Transitions live in one dict keyed ``state * A + char`` while building (a dict per state would
        cost ten times the memory), and each state's out-characters as a bitmask so that a clone copies
        its original's edges without scanning the alphabet; both become flat arrays at the end.
        """
        if not text:
            raise CorpusError("cannot index an empty text")
        points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        alphabet = np.unique(points)
        a = len(alphabet)
        chars = np.searchsorted(alphabet, points).tolist()
        n = len(chars)
        # int32 arrays, not lists: a list holds a pointer and an int object per entry, 9x the memory
        length, link, first = array("i", bytes(8 * n)), array("i", [-1]) * (2 * n), array("i", [-1]) * (2 * n)
        outs = [0] * (2 * n)
        trans: dict[int, int] = {}
        size, last = 1, 0
        for i, c in enumerate(chars):
            cur = size
            size += 1
            length[cur], first[cur] = length[last] + 1, i
            bit = 1 << c
            p = last
            while p != -1 and not outs[p] & bit:
                trans[p * a + c] = cur
                outs[p] |= bit
                p = link[p]
            if p == -1:
                link[cur] = 0
            else:
                q = trans[p * a + c]
                if length[p] + 1 == length[q]:
                    link[cur] = q
                else:
                    clone = size
                    size += 1
                    length[clone], link[clone], first[clone], outs[clone] = length[p] + 1, link[q], first[q], outs[q]
                    m, base_q, base_clone = outs[q], q * a, clone * a
                    while m:
                        low = m & -m
                        k = low.bit_length() - 1
                        trans[base_clone + k] = trans[base_q + k]
                        m ^= low
                    while p != -1 and trans.get(p * a + c) == q:
                        trans[p * a + c] = clone
                        p = link[p]
                    link[q] = link[cur] = clone
            last = cur
        del outs
        keys = np.fromiter(trans.keys(), dtype=np.int64, count=len(trans))
        targets = np.fromiter(trans.values(), dtype=np.int32, count=len(trans))
        del trans
        order = np.argsort(keys, kind="stable")
        keys, targets = keys[order], targets[order]
        offsets = np.zeros(size + 1, dtype=np.int64)
        np.cumsum(np.bincount(keys // a, minlength=size), out=offsets[1:])
        return cls(
            text=text,
            alphabet=alphabet.astype(np.int32),
            length=np.frombuffer(length, dtype=np.int32)[:size].copy(),
            link=np.frombuffer(link, dtype=np.int32)[:size].copy(),
            firstpos=np.frombuffer(first, dtype=np.int32)[:size].copy(),
            offsets=offsets,
            edge_char=(keys % a).astype(np.int16),
            edge_target=targets,
        )

    # ------------------------------------------------------------------ cache

    def save(self, path: Path) -> None:
        """Write the arrays to ``path`` (npz, no pickle) atomically: a temp file beside it, then a rename."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                np.savez(out, format=np.int64(_FORMAT), sha256=np.array(self.sha256),
                         **{name: getattr(self, name) for name in _ARRAYS})
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path, text: str) -> CorpusIndex | None:
        """The index of ``text`` cached at ``path``; None when it is missing, stale, damaged or of another text."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if int(data["format"]) != _FORMAT or str(data["sha256"]) != text_sha256(text):
                    return None
                arrays = {name: data[name] for name in _ARRAYS}
        except (OSError, ValueError, KeyError, EOFError):
            return None
        index = cls(text=text, **arrays)
        return index if index._consistent() else None

    def _consistent(self) -> bool:
        """Cheap checks that a loaded file cannot send the walk out of its arrays."""
        s, e = self.states, len(self.edge_char)
        dtypes = {"alphabet": np.int32, "length": np.int32, "link": np.int32, "firstpos": np.int32,
                  "offsets": np.int64, "edge_char": np.int16, "edge_target": np.int32}
        return (
            all(getattr(self, k).dtype == v and getattr(self, k).ndim == 1 for k, v in dtypes.items())
            and s >= 1 and len(self.link) == len(self.firstpos) == s and len(self.offsets) == s + 1
            and len(self.edge_target) == e and int(self.offsets[0]) == 0 and int(self.offsets[-1]) == e
            and bool(np.all(np.diff(self.offsets) >= 0))
            and bool(np.all((self.link[1:] >= 0) & (self.link[1:] < s))) and int(self.link[0]) == -1
            and bool(np.all((self.edge_target > 0) & (self.edge_target < s)))
            and bool(np.all((self.edge_char >= 0) & (self.edge_char < len(self.alphabet))))
            and bool(np.all((self.firstpos[1:] >= 0) & (self.firstpos[1:] < len(self.text))))
            and int(self.length.max()) <= len(self.text)
        )

    # ------------------------------------------------------------------ walking

    def step(self, state: int, matched: int, code: int) -> tuple[int, int]:
        """After appending the character ``code`` (an alphabet index; -1: not in the corpus) to a text whose
        longest copied suffix is ``matched`` characters long in ``state``: the new state and length."""
        if code < 0:
            return 0, 0
        offsets, chars = self._offsets, self._chars
        while True:
            lo, hi = offsets[state], offsets[state + 1]
            j = bisect_left(chars, code, lo, hi)
            if j < hi and chars[j] == code:
                return self._targets[j], matched + 1
            if state == 0:
                return 0, 0
            state = self._link[state]
            matched = self._length[state]

    def shorten(self, state: int, matched: int, limit: int) -> tuple[int, int]:
        """The state of the last ``limit`` characters of a copied suffix ``matched`` long (no change if shorter)."""
        if matched <= limit:
            return state, matched
        while self._length[self._link[state]] >= limit:
            state = self._link[state]
        return state, limit

    def next_codes(self, state: int) -> np.ndarray:
        """The alphabet indices that follow the strings of ``state`` somewhere in the corpus."""
        return self.edge_char[self.offsets[state] : self.offsets[state + 1]]

    def source(self, state: int, matched: int) -> tuple[int, int]:
        """``[start, end)`` in the corpus of the first occurrence of the copied suffix ``matched`` long."""
        end = int(self.firstpos[state]) + 1
        return end - matched, end

    def edge(self, state: int, code: int) -> int:
        """The state reached from ``state`` by the character ``code``; -1 when the corpus has no such string."""
        lo, hi = self._offsets[state], self._offsets[state + 1]
        j = bisect_left(self._chars, code, lo, hi)
        return self._targets[j] if j < hi and self._chars[j] == code else -1

    def occurs(self, s: str) -> bool:
        """Whether ``s`` occurs in the corpus (a walk without suffix links)."""
        state = 0
        for ch in s:
            state = self.edge(state, self.codes.get(ch, -1))
            if state < 0:
                return False
        return True


# ---------------------------------------------------------------------- reports


class CopyTracker:
    """The copies of a growing text: fed one character at a time, O(1) amortised each.

    ``matched`` is the longest suffix of the text so far that occurs in the corpus. The spans ending at
    successive positions start at non-decreasing positions (a copy ending at i+1 minus its last character
    is a copy ending at i), so the copies of at least ``min_span`` characters merge into ``spans`` (the
    ``[start, end)`` ranges to highlight) as the text grows, without a second pass.
    """

    def __init__(self, index: CorpusIndex, min_span: int = COPY_SPAN) -> None:
        self.index, self.min_span = index, min_span
        self.state = self.matched = self.chars = 0
        self.longest, self.longest_end, self.longest_source = 0, 0, (0, 0)
        self.spans: list[list[int]] = []

    def feed(self, text: str) -> None:
        codes, step = self.index.codes, self.index.step
        for ch in text:
            self.state, self.matched = step(self.state, self.matched, codes.get(ch, -1))
            self.chars += 1
            if self.matched > self.longest:
                self.longest, self.longest_end = self.matched, self.chars
                self.longest_source = self.index.source(self.state, self.matched)
            if self.matched >= self.min_span:
                start = self.chars - self.matched
                if self.spans and start <= self.spans[-1][1]:
                    self.spans[-1][1] = self.chars
                else:
                    self.spans.append([start, self.chars])

    def report(self) -> dict[str, Any]:
        """What ``novelty`` returns, for the text fed so far."""
        start, end = self.longest_source
        corpus = self.index.text
        covered = sum(b - a for a, b in self.spans)
        out: dict[str, Any] = {
            "chars": self.chars,
            "longest_copy": self.longest,
            # where the span sits in the text and where it comes from in the corpus, both [start, end)
            "copy_start": self.longest_end - self.longest,
            "copy_end": self.longest_end,
            "corpus_start": start,
            "corpus_end": end,
            "corpus_line": corpus.count("\n", 0, start) + 1 if self.longest else None,
            "span": corpus[start:end],
            "min_span": self.min_span,
            "long_copy_chars": covered,
            "long_copy_share": covered / self.chars if self.chars else 0.0,
            "long_copies": [tuple(span) for span in self.spans],  # [start, end) in the text, merged
        }
        return out


def novelty(text: str, index: CorpusIndex, min_span: int = COPY_SPAN) -> dict[str, Any]:
    """How much of ``text`` is copied from the corpus: the longest copied span, where it is in the text and
    in the corpus (``[start, end)``, and the corpus line it starts on), and the share of characters that
    lie inside copied spans of at least ``min_span`` characters, with those spans merged (``long_copies``)."""
    if min_span < 1:
        raise UsageError(f"min_span must be at least 1, got {min_span}", params="min_span")
    tracker = CopyTracker(index, min_span)
    tracker.feed(text)
    return tracker.report()


def copy_lengths(text: str, index: CorpusIndex) -> list[int]:
    """The longest copied span ending at each position of ``text``."""
    state = matched = 0
    out = []
    for ch in text:
        state, matched = index.step(state, matched, index.codes.get(ch, -1))
        out.append(matched)
    return out


# ---------------------------------------------------------------------- the run's corpus


def index_for_run(run_dir: Path, config: dict[str, Any], progress: ProgressFn | None = None,
                  param: str = "max_copy") -> CorpusIndex:
    """The index of the corpus a language-model run was trained on, cached beside its checkpoint.

    The corpus is loaded as training loaded it and must be the same text (its recorded sha256); the
    index is read from ``copies-<sha>.npz`` in the run directory, or built and written there (a run
    directory we cannot write to only costs a rebuild next time). Errors name ``param``, the option that
    needed the corpus.
    """
    task_config = config.get("task_config") or {}
    options = task_config.get("options") or {}
    corpus, recorded = options.get("corpus"), task_config.get("corpus_sha256")
    if not corpus or not recorded:
        raise CorpusError(f"{run_dir} does not record the corpus it was trained on; {param} needs it",
                          params=param)
    try:
        loaded = load_corpus(str(corpus), progress=progress)
    except ChargenError as e:
        raise CorpusError(f"{param} needs the text {run_dir} was trained on ({corpus!r}): {e}",
                          params=param) from None
    if loaded.sha256 != recorded:
        raise CorpusError(
            f"{param} needs the text {run_dir} was trained on, but {corpus!r} is not it now "
            f"(sha256 {loaded.sha256[:12]}... vs {str(recorded)[:12]}...)", params=param)
    path = Path(run_dir) / f"copies-{text_sha256(loaded.text)[:16]}.npz"
    index = CorpusIndex.load(path, loaded.text) if path.is_file() else None
    if index is None:
        index = CorpusIndex.build(loaded.text)
        try:
            index.save(path)
        except OSError:
            pass  # read-only run directory: the index was built for this call and is simply not kept
    return index


# ---------------------------------------------------------------------- the mask


@dataclass
class CopyState:
    """Per stream: the automaton state of its copied suffix and that suffix's length (at most ``max_copy``)."""

    states: list[int]
    matched: list[int]


class CopyMask:
    """A ``CharMask``: no span longer than ``max_copy`` characters that ends in generated text occurs in the corpus.

    The copied suffix never exceeds ``max_copy`` after a generated character, so a character is
    forbidden exactly when the suffix is ``max_copy`` long and the corpus continues it with that
    character. A prime is the user's text and may itself copy more: only its last ``max_copy``
    characters count, so that the first generated character cannot extend a copy past the limit either.
    Masks come back on ``device``, as ``(N, V)`` bool, to be read, not written (an all-True one is shared).
    """

    def __init__(self, index: CorpusIndex, vocab: Vocab, max_copy: int, *, device: torch.device | str = "cpu") -> None:
        if max_copy < 1:
            raise UsageError(f"max_copy must be at least 1, got {max_copy}", params="max_copy")
        self.index, self.vocab, self.max_copy, self.device = index, vocab, max_copy, torch.device(device)
        # vocabulary id -> corpus alphabet index (-1: a token the corpus never has, e.g. <eos>), and back
        self.code_of = [index.codes.get(tok, -1) if len(tok) == 1 else -1 for tok in vocab.tokens]
        self.id_of = np.full(len(index.alphabet) + 1, -1, dtype=np.int64)  # the extra slot maps -1
        self._all: Tensor | None = None
        self._forbidden: dict[int, np.ndarray] = {}  # limit state -> the vocabulary ids the corpus continues it with
        for i, code in enumerate(self.code_of):
            if code >= 0:
                self.id_of[code] = i

    def start(self, batch: int, prime: str = "") -> CopyState:
        state = matched = 0
        for ch in prime:
            state, matched = self.index.step(state, matched, self.index.codes.get(ch, -1))
        state, matched = self.index.shorten(state, matched, self.max_copy)
        return CopyState([state] * batch, [matched] * batch)

    def allowed(self, state: CopyState, remaining: int) -> Tensor:
        full = [row for row, m in enumerate(state.matched) if m >= self.max_copy]
        if not full:  # most steps: no stream is at the limit, and one shared all-True tensor serves
            return self._everything(len(state.states))
        mask = np.ones((len(state.states), len(self.vocab)), dtype=bool)
        for row in full:
            s = state.states[row]
            ids = self._forbidden.get(s)
            if ids is None:  # a sample meets few distinct limit states, and often meets them again
                ids = self.id_of[self.index.next_codes(s)]
                ids = self._forbidden[s] = ids[ids >= 0]
            mask[row, ids] = False
        return torch.from_numpy(mask).to(self.device)

    def _everything(self, batch: int) -> Tensor:
        if self._all is None or len(self._all) != batch:
            self._all = torch.ones(batch, len(self.vocab), dtype=torch.bool, device=self.device)
        return self._all

    def advance(self, state: CopyState, ids: Tensor) -> CopyState:
        step, code_of = self.index.step, self.code_of
        for row, i in enumerate(ids.tolist()):
            state.states[row], state.matched[row] = step(state.states[row], state.matched[row], code_of[i])
        return state

    def dead_end(self, state: CopyState, row: int) -> str:
        s, m = state.states[row], state.matched[row]
        start, end = self.index.source(s, m)
        return (f"max_copy {self.max_copy}: the corpus continues {self.index.text[start:end]!r} with every "
                f"character the model knows, so any next character would copy {m + 1}; this sample ends here")
