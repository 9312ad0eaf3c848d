"""Exact constrained generation: a regular expression and required words as one automaton over the vocabulary.

The regex (Python syntax, matched in full as by ``re.fullmatch(pattern, text, re.ASCII)``) becomes a DFA
with ``interegular`` (the ``constraints`` extra); each required word becomes the automaton that tracks the
longest prefix of it the text ends with (a Knuth-Morris-Pratt automaton, absorbing once the word has
appeared); their product, restricted to the vocabulary's characters and to the states from which
acceptance is reachable, is a table ``next[state, token]``. A breadth-first search backwards from the
accepting states gives ``dist[state]``, the fewest characters that complete a match. A token is allowed
only when ``dist`` after it fits in the characters left, so a sample never dead-ends and always matches
within its length; a pattern that cannot match within the length is refused before any generation.

How a stream ends (the decoder's rule for every ``CharMask``: a row of ``allowed`` with nothing in it
ends the stream; ``accepting`` says whether it ended satisfied):
- when the match is complete and the pattern allows nothing more (after the final ``.`` of
  ``[A-Z][a-z]+ (was|is) [a-z ]+\\.``): the row is empty and ``accepting`` is True;
- when the model chooses to stop: with ``end`` (a token such as ``"\\n"`` for a line of text or
  ``"<eos>"`` for a name), that token is allowed exactly where the text so far matches in full, with the
  model's own probability of ending there. The end token is not part of the match (the decoder cuts the
  text at it, as at a stop token) and the pattern cannot use it; once drawn, the end token is all the
  stream may write, so a decoder that keeps a batch going until every stream has stopped never sees an
  empty row from it;
- when the length runs out: by construction the text then matches.
Without ``end``, a pattern that may go on (``[a-z ]+``) runs to the full length.
The pattern constrains the whole sample as printed: a prime is fed through the automaton first.

Greedy decoding under a pattern writes, at each step, the likeliest character that some match within the
length still begins with: that is what the mask makes exact. It is not the likeliest matching string:
under ``ab|ba``, a model that slightly prefers ``a`` first and strongly prefers ``a`` second gets ``ab``
greedily while ``ba`` is likelier; finding that one takes a search (a beam over the masked scores).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from chargen.errors import ChargenError, UsageError, VocabularyError
from chargen.vocab import Vocab

__all__ = ["MAX_STATES", "PatternMask"]

MAX_STATES = 200_000  # of the product automaton: its tables are states x vocabulary ints
_UNREACHABLE = np.iinfo(np.int32).max // 2


def _parse(regex: str) -> Any:
    """The interegular FSM of ``regex``, or a one-line UsageError naming the parameter ``pattern``."""
    try:
        import interegular
    except ImportError:
        raise ChargenError("pattern needs the 'constraints' extra: pip install 'chargen[constraints]'",
                           params="pattern") from None
    try:
        re.compile(regex)
    except re.error as e:
        raise UsageError(f"pattern {regex!r} is not a valid regular expression: {e}", params="pattern") from None
    # The whole sample must match, so anchors say nothing; interegular does not take them.
    body = regex[1:] if regex.startswith("^") else regex
    if body.endswith("$") and (len(body) - 1 - len(body[:-1].rstrip("\\"))) % 2 == 0:  # not an escaped \$
        body = body[:-1]
    try:
        parsed = interegular.parse_pattern(body)
        if parsed.prefix_postfix != (0, 0):
            raise interegular.Unsupported("lookarounds")
        return parsed.to_fsm()
    except (interegular.Unsupported, interegular.InvalidSyntax) as e:
        raise UsageError(f"pattern {regex!r} uses what a finite automaton here cannot follow ({e}); use plain "
                         "characters, classes, groups, alternation and repetition", params="pattern") from None


def _regex_table(regex: str, vocab: Vocab, skip: set[int]) -> tuple[np.ndarray, np.ndarray, int]:
    """The regex's DFA over the vocabulary: ``next (S, V)`` (-1: no match can follow), accepting ``(S,)``, start."""
    fsm = _parse(regex)
    keys = [None if i in skip or len(tok) != 1 else fsm.alphabet[tok] for i, tok in enumerate(vocab.tokens)]
    number = {fsm.initial: 0}
    order = [fsm.initial]
    rows = []
    for state in order:  # breadth first over the states the vocabulary can reach
        moves = fsm.map.get(state, {})
        row = []
        for key in keys:
            target = moves.get(key) if key is not None else None
            if target is None:
                row.append(-1)
                continue
            if target not in number:
                number[target] = len(order)
                order.append(target)
            row.append(number[target])
        rows.append(row)
    accepting = np.array([s in fsm.finals for s in order])
    # minimal before any product with the words' automata, which would multiply the redundant states
    table, keep = _minimize(np.array(rows, dtype=np.int64).reshape(len(order), len(vocab)), accepting)
    return table, accepting[keep], 0


def _word_table(word: str, vocab: Vocab, skip: set[int]) -> tuple[np.ndarray, np.ndarray, int]:
    """State j: the text ends with ``word[:j]`` (the longest such j); state ``len(word)``: it has appeared."""
    n = len(word)
    table = np.empty((n + 1, len(vocab)), dtype=np.int64)
    for j in range(n + 1):
        for i, tok in enumerate(vocab.tokens):
            if j == n:
                table[j, i] = n
            elif i in skip or len(tok) != 1:
                table[j, i] = 0
            else:
                seen = word[:j] + tok
                table[j, i] = next(k for k in range(min(n, len(seen)), -1, -1) if seen.endswith(word[:k]))
    accepting = np.zeros(n + 1, dtype=bool)
    accepting[n] = True
    return table, accepting, 0


def _product(parts: Sequence[tuple[np.ndarray, np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray]:
    """The reachable product of automata (all must accept), states numbered from the start state 0.

    A product state is coded as one integer in mixed radix; each breadth-first level is expanded for
    all its states and tokens at once.
    """
    sizes = np.array([len(t) for t, _, _ in parts], dtype=np.int64)
    radix = np.concatenate([[1], np.cumprod(sizes[:-1])])
    if float(np.prod(sizes.astype(float))) >= 2**62:
        raise UsageError("the pattern and required words make too large an automaton", params=("pattern", "include"))
    start = sum(int(s) * int(r) for (_, _, s), r in zip(parts, radix))
    codes = {start: 0}
    frontier = np.array([start], dtype=np.int64)
    edges: list[tuple[np.ndarray, np.ndarray]] = []  # per level: the source codes and their (F, V) targets
    while len(frontier):
        target = np.zeros((len(frontier), parts[0][0].shape[1]), dtype=np.int64)
        dead = np.zeros_like(target, dtype=bool)
        for (table, _, _), size, r in zip(parts, sizes, radix):
            step = table[(frontier // r) % size]
            dead |= step < 0
            target += np.maximum(step, 0) * r
        target[dead] = -1
        edges.append((frontier, target))
        fresh = [int(c) for c in np.unique(target[~dead]) if int(c) not in codes]
        for c in fresh:
            codes[c] = len(codes)
        if len(codes) > MAX_STATES:
            raise UsageError(f"the pattern and required words need more than {MAX_STATES:,} automaton states; "
                             "use a simpler pattern or fewer words", params=("pattern", "include"))
        frontier = np.array(fresh, dtype=np.int64)
    known = np.array(sorted(codes), dtype=np.int64)
    number = np.array([codes[int(c)] for c in known], dtype=np.int64)
    table = np.full((len(codes), parts[0][0].shape[1]), -1, dtype=np.int64)
    for sources, targets in edges:
        rows = number[np.searchsorted(known, sources)]
        live = targets >= 0
        mapped = number[np.searchsorted(known, np.where(live, targets, known[0]))]
        table[rows] = np.where(live, mapped, -1)
    accepting = np.ones(len(codes), dtype=bool)
    for (_, acc, _), size, r in zip(parts, sizes, radix):
        accepting[number] &= acc[(known // r) % size]
    return table, accepting


def _distances(table: np.ndarray, accepting: np.ndarray) -> np.ndarray:
    """Fewest tokens from each state to an accepting one (``_UNREACHABLE`` where none can be reached)."""
    dist = np.full(len(table), _UNREACHABLE, dtype=np.int64)
    dist[accepting] = 0
    reached = np.append(accepting, False)  # the extra slot stands for -1, the dead state
    level = 0
    while True:
        level += 1
        new = ~reached[:-1] & reached[table].any(axis=1)
        if not new.any():
            return dist
        dist[new] = level
        reached[:-1] |= new


def _minimize(table: np.ndarray, accepting: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The minimal automaton (Moore's partition refinement) and, per new state, one old state it stands for.

    States are split by acceptance, then by the classes their tokens lead to, until no class splits;
    classes are numbered in order of their first state, so the start stays first. interegular's automata are not
    minimal (``(the|a) king`` keeps a path per alternative), and their product multiplies the waste.
    """
    _, classes = np.unique(accepting, return_inverse=True)
    classes, count = classes.reshape(-1).astype(np.int64), int(classes.max()) + 1
    while True:
        successors = np.where(table >= 0, classes[np.maximum(table, 0)], -1)
        _, refined = np.unique(np.column_stack([classes, successors]), axis=0, return_inverse=True)
        refined = refined.reshape(-1)
        if refined.max() + 1 == count:
            break
        classes, count = refined, int(refined.max()) + 1
    _, first = np.unique(classes, return_index=True)  # the first state of each class
    keep = np.sort(first)  # classes in order of their first state: the start's class is 0
    rank = np.empty(count, dtype=np.int64)
    rank[classes[keep]] = np.arange(count)
    small = np.where(table[keep] >= 0, rank[classes[np.maximum(table[keep], 0)]], -1)
    return small, keep


class PatternMask:
    """A ``CharMask`` under which every sample matches ``regex`` in full and contains each of ``include``.

    ``regex=None`` allows any text (only the words are required). ``length``: the most characters a
    sample generates after its prime; ``end``: the token that lets the model stop once the text matches
    (see the module docstring). Masks come back on ``device``, as ``(N, V)`` bool; a state is an ``(N,)``
    numpy array of automaton states.
    """

    def __init__(self, regex: str | None, vocab: Vocab, length: int, *, include: Sequence[str] = (),
                 end: str | None = None, prime: str = "", device: torch.device | str = "cpu") -> None:
        if end is not None and end not in vocab:
            raise UsageError(f"the end token {end!r} is not in the model's vocabulary", params="end")
        self.regex, self.vocab, self.length, self.include = regex, vocab, length, tuple(include)
        self.device = torch.device(device)
        skip = {vocab.id(end)} if end is not None else set()
        if length < 0:
            raise UsageError(f"length must be 0 or more, got {length}", params="length")
        for word in self.include:
            if not word:
                raise UsageError("include words cannot be empty", params="include")
            if missing := vocab.unknown(word):
                raise VocabularyError(f"include word {word!r} has characters outside the model's vocabulary: "
                                      f"{' '.join(map(repr, missing))}", params="include")
            if end is not None and end in word:
                raise UsageError(f"include word {word!r} holds the end token {end!r}", params="include")
        parts = [_regex_table(regex if regex is not None else r"(?s).*", vocab, skip)]
        parts += [_word_table(word, vocab, skip) for word in self.include]
        table, accepting = _product(parts) if len(parts) > 1 else parts[0][:2]
        dist = _distances(table, accepting)
        what = self._describe()
        if dist[0] >= _UNREACHABLE:  # the model's vocabulary does not fit the pattern: exit 1, as for a prime
            reserved = f" (the end token {end!r} only ends a sample)" if end is not None else ""
            raise VocabularyError(f"no text made of the model's characters{reserved} {what}", params=self._params())
        # keep the live states only, merged into the minimal automaton (start first), and the end token's
        # "finished" state after them
        live = np.flatnonzero(dist < _UNREACHABLE)
        renumber = np.full(len(table) + 1, -1, dtype=np.int64)
        renumber[live] = np.arange(len(live))
        nxt, keep = _minimize(renumber[table[live]], accepting[live])
        self.finished = len(nxt)
        self.dist = np.append(dist[live][keep], 0)
        self.accept = np.append(accepting[live][keep], True)
        nxt = np.vstack([nxt, np.full(len(vocab), -1, dtype=np.int64)])
        if end is not None:
            nxt[:, vocab.id(end)] = np.where(self.accept, self.finished, -1)
        # need[s, v]: the characters a sample must still have (this one included) to take v in state s
        need = np.where(nxt >= 0, self.dist[np.maximum(nxt, 0)] + 1, _UNREACHABLE)
        # numpy, not torch: a gather on a few rows costs a microsecond here and ten through torch's dispatcher
        self.next, self.need = nxt, need
        self.first = self._walk(prime)

    @property
    def states(self) -> int:
        """Live automaton states (the finished state not counted)."""
        return self.finished

    def _describe(self) -> str:
        parts = [f"matches pattern {self.regex!r}"] if self.regex is not None else []
        parts += [f"contains {', '.join(repr(w) for w in self.include)}"] if self.include else []
        return " and ".join(parts)

    def _params(self) -> tuple[str, ...]:
        return (("pattern",) if self.regex is not None else ()) + (("include",) if self.include else ())

    def _walk(self, prime: str) -> int:
        """The state after ``prime``, checked to leave a match within ``length``."""
        state = 0
        for i, tok_id in enumerate(self.vocab.encode(prime, what="the prime")):
            state = int(self.next[state, tok_id])
            if state < 0 or state == self.finished:
                raise UsageError(f"no text that starts with the prime {prime[: i + 1]!r} {self._describe()}",
                                 params=("prime", *self._params()))
        shortest = int(self.dist[state])
        if shortest > self.length:
            after = " after the prime" if prime else ""
            raise UsageError(f"no text of at most {self.length} characters{after} {self._describe()} (the shortest "
                             f"needs {shortest}); raise length", params=(*self._params(), "length"))
        return state

    # ------------------------------------------------------------------ CharMask

    def start(self, batch: int, prime: str = "") -> Tensor:
        return np.full(batch, self._walk(prime), dtype=np.int64)

    def allowed(self, state: np.ndarray, remaining: int) -> Tensor:
        return torch.from_numpy(self.need[state] <= remaining).to(self.device)

    def advance(self, state: np.ndarray, ids: Tensor) -> np.ndarray:
        new = self.next[state, ids.cpu().numpy()]
        if (new < 0).any():  # only a decoder that ignored ``allowed`` gets here
            raise RuntimeError("a stream drew a token its pattern forbids")
        return new

    def accepting(self, state: np.ndarray) -> Tensor:
        """Bool ``(N,)``: whether each stream's text so far matches in full (it may end here)."""
        return torch.from_numpy(self.accept[state]).to(self.device)

    def dead_end(self, state: np.ndarray, row: int) -> str:
        if bool(self.accept[int(state[row])]):
            return f"the sample {self._describe()} and the pattern allows nothing more"
        return f"the sample cannot be completed so that it {self._describe()} in the characters left"
