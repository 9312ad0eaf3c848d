"""Interpolated Kneser–Ney character n-gram LM: level-wise counts, full next-character distributions, order choice.

The model (Chen & Goodman 1999, "interpolated modified Kneser–Ney"): for a history ``h`` of up
to ``n - 1`` characters, with ``h'`` ``h`` without its first character,

    P_j(w | h) = (c_j(h w) - D_j(c_j(h w))) / T_j(h) + gamma_j(h) * P_{j-1}(w | h')
    gamma_j(h) = (D_j1 N1(h .) + D_j2 N2(h .) + D_j3+ N3+(h .)) / T_j(h),   T_j(h) = sum_w c_j(h w)

down to ``P_0(w) = 1 / V`` (uniform), so every character of the vocabulary, seen in training or
not, has a positive probability, and each level's distribution sums to one (``D(c) <= c``). At
the top level ``c_n`` is the raw count of the n-gram; below it ``c_j(g)`` is its continuation
count ``N1+(. g)``, the number of distinct characters seen before ``g`` (Kneser–Ney's point: a
lower order is consulted only when the longer context failed, so it should say how many contexts
a character continues, not how often it occurs). A history never seen (``T_j(h) = 0``), or cut
short at the start of a stream, defers to the level below as if its weight were one.

Discounts: *modified* KN, three per level (counts 1, 2, 3+), from that level's count-of-counts
``n1..n4``: ``Y = n1 / (n1 + 2 n2)``, ``D1 = 1 - 2Y n2/n1``, ``D2 = 2 - 3Y n3/n2``,
``D3+ = 3 - 4Y n4/n3``. Chen & Goodman found it better than one discount per order on every corpus
they tried, and it costs nothing here. A level whose counts-of-counts leave an estimate undefined
or outside ``(0, k]`` (the unigram level of a small alphabet, often) takes KenLM's fallback
``0.5, 1, 1.5``. ``discount="ney"`` gives plain interpolated KN (``D = Y`` at every count), a
number fixes one discount everywhere, an ``(n, 3)`` array sets each level's own.

Counts live in a trie stored level by level: level ``j``'s nodes are the distinct j-grams of the
training text, each keyed ``parent * V + char`` (parent: its (j-1)-gram prefix's node) and sorted
by key, so a node's children are one contiguous run and a lookup is one ``searchsorted``. Counting
a level is one ``np.unique`` over the text (seconds for a few MB, any order up to ``MAX_ORDER``).

The model follows the recurrent LM's contract, ``forward(idx (T, N), state) -> (log P (T, N, V),
loss, state)``, with the state the last ``n - 1`` characters of each stream (``-1``: none yet),
so ``evaluate_lm``, ``score``, ``sample`` and beam search run it unchanged; its "logits" are log-probabilities,
so sampling at temperature ``T`` draws from ``P^(1/T)`` renormalised (``T = 1``: the KN distribution itself)
and top-k keeps the k likeliest characters. Its tables are saved as
float64 tensors (exact for integers below 2**53) and loaded with ``torch.load(weights_only=True)``.

Validation characters: :func:`eval_layout` cuts the validation ids as ``chargen.tasks.lm.evaluate_lm``
does: ``S = max(1, min(8, (n_val - 1) // 2))`` contiguous streams of ``L = n_val // S`` characters
(the last ``n_val - S L`` are dropped), and every character of a stream but its first is scored,
from the characters before it in its own stream: ``S (L - 1)`` predictions, each with exactly the
context the recurrent model's evaluation gives it (cold at a stream's start). The tests check that
:meth:`NGramLM.validation_nats` equals ``evaluate_lm`` on the same model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from chargen.data.streams import as_streams
from chargen.errors import UsageError

MAX_ORDER = 10
BASELINE_ORDERS = range(1, 9)  # what ``baseline_for`` and an automatic order choose among
FALLBACK = (0.5, 1.0, 1.5)  # KenLM's --discount_fallback, for a level whose counts-of-counts say nothing
EVAL_STREAMS = 8  # chargen.tasks.lm.evaluate_lm's default; a test holds the two together
EXACT = 2**53  # float64 holds every integer below this: the largest key or count a saved table may hold
NO_CHAR = -1  # a history slot before a stream's first character


def check_order(order: int, high: int = MAX_ORDER) -> int:
    """``order`` as an int, or a UsageError naming it when it is not an integer in ``1..high``."""
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 1 <= order <= high:
        raise UsageError(f"order must be an integer from 1 to {high}, got {order!r}", params="order")
    return int(order)


@dataclass
class NGramCounts:
    """Every j-gram (j = 1..max_order) of a text: sorted keys, raw counts and continuation counts per level.

    ``levels[j - 1]``: ``(keys, raw, cont)``; ``cont`` is None at ``max_order``, which has no level above
    it to count left extensions from (an order-``max_order`` model reads raw counts there anyway).
    """

    vocab_size: int
    levels: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]

    @property
    def max_order(self) -> int:
        return len(self.levels)

    def model(self, order: int, discount: str | float | np.ndarray = "modified") -> NGramLM:
        """The order-``order`` interpolated KN model over these counts (raw at the top level, continuation below)."""
        check_order(order, self.max_order)
        counts: list[np.ndarray] = [cont if j < order - 1 and cont is not None else raw
                                    for j, (_, raw, cont) in enumerate(self.levels[:order])]
        model = NGramLM(self.vocab_size)
        model.set_tables([keys for keys, _, _ in self.levels[:order]], counts, discounts_for(counts, discount))
        return model


def count_ngrams(ids: Sequence[int] | np.ndarray | Tensor, vocab_size: int, max_order: int) -> NGramCounts:
    """The trie of ``ids`` up to ``max_order`` (see the module docstring)."""
    check_order(max_order)
    text = _ids(ids, vocab_size)
    V = vocab_size
    node = np.zeros(len(text), dtype=np.int64)  # node of text[i : i + j - 1]; level 0 is the root, node 0
    levels: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
    for j in range(1, max_order + 1):
        n = max(0, len(text) - j + 1)  # j-grams start at 0 .. n - 1
        key = node[:n] * V + text[j - 1 : j - 1 + n]
        keys, first, inverse, raw = _unique(key)
        if levels:
            # The (j-1)-gram left when a j-gram loses its first character starts one later:
            # each distinct j-gram adds one left extension to that suffix's continuation count.
            below, below_raw, _ = levels[-1]
            levels[-1] = (below, below_raw, np.bincount(node[first + 1], minlength=len(below)))
        levels.append((keys, raw, None))
        node = inverse
    return NGramCounts(V, levels)


def _unique(key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique`` with index, inverse and counts, on an unstable sort (twice as fast): the index is
    *an* occurrence of each value, not the first, which is all a suffix needs."""
    perm = np.argsort(key, kind="quicksort")
    ordered = key[perm]
    new = np.empty(len(key), dtype=bool)
    new[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    inverse = np.empty(len(key), dtype=np.int64)
    inverse[perm] = np.cumsum(new) - 1
    return ordered[starts], perm[starts], inverse, np.diff(np.append(starts, len(key)))


def _ids(ids: Sequence[int] | np.ndarray | Tensor, vocab_size: int) -> np.ndarray:
    if vocab_size < 1:
        raise UsageError(f"vocab_size must be positive, got {vocab_size}", params="vocab_size")
    text = ids.cpu().numpy() if isinstance(ids, Tensor) else np.asarray(ids)
    text = text.astype(np.int64).reshape(-1)
    if text.size and (text.min() < 0 or text.max() >= vocab_size):
        raise UsageError(f"ids must lie in [0, {vocab_size}), got {text.min()}..{text.max()}", params="ids")
    return text


def modified_discounts(counts: np.ndarray) -> tuple[float, float, float]:
    """``D1, D2, D3+`` from the counts-of-counts (Chen & Goodman's estimate), or KenLM's fallback."""
    n1, n2, n3, n4 = (int(np.count_nonzero(counts == k)) for k in (1, 2, 3, 4))
    if min(n1, n2, n3, n4) == 0:
        return FALLBACK
    y = n1 / (n1 + 2 * n2)
    d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    return d if all(0 < dk <= k for k, dk in enumerate(d, start=1)) else FALLBACK


def ney_discount(counts: np.ndarray) -> float:
    """One discount for every count, ``n1 / (n1 + 2 n2)`` (Ney, Essen & Kneser 1994), or 0.5 when undefined."""
    n1, n2 = int(np.count_nonzero(counts == 1)), int(np.count_nonzero(counts == 2))
    return n1 / (n1 + 2 * n2) if n1 else FALLBACK[0]


def discounts_for(counts: Sequence[np.ndarray], discount: str | float | np.ndarray) -> np.ndarray:
    """The ``(n, 3)`` discounts (counts 1, 2, 3+) of each level, as ``discount`` asks."""
    n = len(counts)
    if isinstance(discount, str):
        if discount == "modified":
            table = np.array([modified_discounts(c) for c in counts], dtype=np.float64)
        elif discount == "ney":
            table = np.array([[ney_discount(c)] * 3 for c in counts], dtype=np.float64)
        else:
            raise UsageError(f"discount must be 'modified', 'ney', a number or an (order, 3) table, got {discount!r}",
                             params="discount")
    else:
        table = np.broadcast_to(np.asarray(discount, dtype=np.float64), (n, 3)).copy()
    if not (np.isfinite(table).all() and (table >= 0).all() and (table <= [1, 2, 3]).all()):
        raise UsageError("discounts must lie in [0, 1], [0, 2], [0, 3] for counts 1, 2, 3+ (else probabilities "
                         f"would not sum to one), got {table.tolist()}", params="discount")
    return table


@dataclass
class _Level:
    """One level's table and what every context (a node of the level below) needs from it."""

    keys: np.ndarray  # (U,) sorted parent * V + char
    counts: np.ndarray  # (U,) raw (top level) or continuation counts
    discounts: np.ndarray  # (4,) the discount of a count of 0, 1, 2, 3+
    parents: int  # nodes in the level below (1 at level 1: the root)
    V: int
    total: np.ndarray = field(init=False)  # (P,) T(h)
    gamma: np.ndarray = field(init=False)  # (P,) weight of the level below, 1 for an unseen context
    start: np.ndarray = field(init=False)  # (P,) first child
    width: np.ndarray = field(init=False)  # (P,) number of children

    def __post_init__(self) -> None:
        parent = self.keys // self.V
        self.width = np.bincount(parent, minlength=self.parents)
        self.start = np.cumsum(self.width) - self.width
        self.total = np.bincount(parent, weights=self.counts, minlength=self.parents)
        lost = self.discounts[np.minimum(self.counts, 3)]  # D(c) per child, 0 for a zero count
        seen = self.total > 0
        self.gamma = np.ones(self.parents)
        self.gamma[seen] = np.bincount(parent, weights=lost, minlength=self.parents)[seen] / self.total[seen]

    def child(self, parent: np.ndarray, char: np.ndarray) -> np.ndarray:
        """Node ids of ``parent`` extended by ``char`` (same shapes); -1 where either is -1 or it was never seen."""
        ok = (parent >= 0) & (char >= 0)
        if not len(self.keys):
            return np.full(parent.shape, -1, dtype=np.int64)
        key = np.where(ok, parent * self.V + char, -1)
        pos = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
        return np.where(ok & (self.keys[pos] == key), pos, -1)

    def mix(self, context: np.ndarray, below: np.ndarray) -> np.ndarray:
        """``P_j(. | h)`` for contexts ``(B,)`` from ``P_{j-1}(. | h')`` ``(B, V)``."""
        seen = np.flatnonzero(context >= 0)
        seen = seen[self.total[context[seen]] > 0]
        if not seen.size:
            return below
        h = context[seen]
        width = self.width[h]
        rows = np.repeat(np.arange(seen.size), width)
        offsets = np.arange(int(width.sum())) - np.repeat(np.cumsum(width) - width, width)
        child = np.repeat(self.start[h], width) + offsets
        kept = np.zeros((seen.size, self.V))
        c = self.counts[child]
        kept[rows, self.keys[child] % self.V] = c - self.discounts[np.minimum(c, 3)]
        out = below.copy()
        out[seen] = kept / self.total[h, None] + self.gamma[h, None] * below[seen]
        return out

    def mix_one(self, context: np.ndarray, char: np.ndarray, below: np.ndarray,
                node: np.ndarray | None = None) -> np.ndarray:
        """``P_j(char | h)`` for contexts and characters ``(B,)`` from ``P_{j-1}(char | h')`` ``(B,)``;
        ``node``: the node of ``h char`` when known (it depends on the keys only, not on the counts)."""
        if not len(self.keys):  # a text shorter than this order: no context has a count here
            return below
        seen = context >= 0
        safe = np.where(seen, context, 0)
        seen &= self.total[safe] > 0
        if node is None:
            node = self.child(context, char)
        c = np.where(seen & (node >= 0), self.counts[np.maximum(node, 0)], 0)
        kept = (c - self.discounts[np.minimum(c, 3)]) / np.where(seen, self.total[safe], 1.0)
        return np.where(seen, kept + self.gamma[safe] * below, below)


class NGramLM(nn.Module):
    """An interpolated KN character LM with the recurrent LM's contract (see the module docstring).

    Built empty from the vocabulary size (as ``build_model`` does before a checkpoint is loaded);
    :meth:`set_tables` or ``load_state_dict`` fills it. ``order`` is the number of levels.
    """

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be positive, got {vocab_size}")
        self.vocab_size = vocab_size
        # The discounts are the model's only estimated numbers; a parameter (never trained) also
        # gives callers that ask ``next(model.parameters())`` for the device an answer.
        self.discounts = nn.Parameter(torch.zeros(0, 3, dtype=torch.float64), requires_grad=False)
        self._levels: list[_Level] = []

    @property
    def order(self) -> int:
        return len(self._levels)

    def set_tables(self, keys: Sequence[np.ndarray], counts: Sequence[np.ndarray], discounts: np.ndarray) -> None:
        """Install level tables (sorted keys, counts) and ``(n, 3)`` discounts."""
        for name in [n for n, _ in self.named_buffers()]:
            delattr(self, name)
        self.discounts = nn.Parameter(torch.as_tensor(np.asarray(discounts, dtype=np.float64)), requires_grad=False)
        self._levels = []
        parents = 1
        for j, (k, c) in enumerate(zip(keys, counts), start=1):
            k, c = np.asarray(k, dtype=np.int64), np.asarray(c, dtype=np.int64)
            self.register_buffer(f"keys_{j}", torch.from_numpy(k.astype(np.float64)))
            self.register_buffer(f"counts_{j}", torch.from_numpy(c.astype(np.float64)))
            d = np.concatenate([[0.0], np.asarray(discounts[j - 1], dtype=np.float64)])
            self._levels.append(_Level(k, c, d, parents, self.vocab_size))
            parents = len(k)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Check and install saved tables (their sizes come from the data, so none is declared beforehand).

        Raises RuntimeError, as ``nn.Module.load_state_dict`` does, naming what does not fit.
        """
        keys, counts, discounts = _check_tables(dict(state_dict), self.vocab_size)
        self.set_tables(keys, counts, discounts)
        return nn.modules.module._IncompatibleKeys([], [])

    def _contexts(self, seq: np.ndarray) -> list[np.ndarray]:
        """``nodes[k][i]``: the node of the k characters of ``seq (L, N)`` ending at row ``i`` (-1: none), k < order."""
        nodes = [np.zeros(seq.shape, dtype=np.int64)]
        for k in range(1, self.order):
            prev = np.full(seq.shape, -1, dtype=np.int64)
            if k == 1:
                prev[:] = 0  # every single character extends the root
            else:
                prev[1:] = nodes[-1][:-1]
            nodes.append(self._levels[k - 1].child(prev, seq))
        return nodes

    def distributions(self, contexts: Sequence[np.ndarray]) -> np.ndarray:
        """``P(. | h)`` ``(B, V)`` for contexts given as node ids per length ``k = 0..order-1``, each ``(B,)``."""
        p = np.full((contexts[0].shape[0], self.vocab_size), 1.0 / self.vocab_size)
        for level, context in zip(self._levels, contexts):
            p = level.mix(context, p)
        return p

    def next_distribution(self, context: Sequence[int] | np.ndarray) -> np.ndarray:
        """``P(. | context)`` as a float64 ``(V,)`` array summing to one; only the last ``order - 1`` ids count,
        and a context shorter than that is read as the start of a stream."""
        ids = np.asarray(context, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"ids must lie in [0, {self.vocab_size}), got {ids.min()}..{ids.max()}")
        h = self.order - 1
        seq = np.full((max(h, 1), 1), NO_CHAR, dtype=np.int64)
        tail = ids[max(0, ids.size - h) :] if h else ids[:0]
        seq[seq.shape[0] - tail.size :, 0] = tail
        return self.distributions([k[-1] for k in self._contexts(seq)])[0]

    def forward(
        self,
        idx: Tensor,
        state: tuple[Tensor, ...] | None = None,
        targets: Tensor | None = None,
        condition: Tensor | None = None,
        ignore_index: int = -100,
    ) -> tuple[Tensor, Tensor | None, tuple[Tensor, ...]]:
        """``idx (T, N)`` -> next-character log-probabilities ``(T, N, V)``, loss, state ``((1, N, order - 1),)``."""
        if condition is not None:
            raise ValueError("an n-gram model is not conditioned; pass no condition")
        if not self._levels:
            raise RuntimeError("this n-gram model has no tables yet: fit it or load a checkpoint")
        T, N = idx.shape
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.vocab_size):
            raise ValueError(f"ids must lie in [0, {self.vocab_size}), got {int(idx.min())}..{int(idx.max())}")
        history = self._history(state, N)
        seq = np.concatenate([history, idx.detach().cpu().numpy().astype(np.int64)])  # (order-1+T, N)
        h = self.order - 1
        nodes = [k[h:].reshape(-1) for k in self._contexts(seq)]  # contexts ending at each input
        p = self.distributions(nodes).reshape(T, N, self.vocab_size)
        with np.errstate(divide="ignore"):  # a character a zero-discount unigram level never saw: log 0
            logits = torch.from_numpy(np.log(p)).to(device=idx.device, dtype=torch.float32)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=ignore_index)
        new_state = torch.from_numpy(np.ascontiguousarray(seq[seq.shape[0] - h :].T)).to(idx.device)
        return logits, loss, (new_state.unsqueeze(0),)

    def _history(self, state: tuple[Tensor, ...] | None, batch: int) -> np.ndarray:
        """The carried last ``order - 1`` characters, time-major ``(order - 1, N)``."""
        h = self.order - 1
        if state is None:
            return np.full((h, batch), NO_CHAR, dtype=np.int64)
        (carried,) = state
        if tuple(carried.shape) != (1, batch, h):
            raise ValueError(f"an order-{self.order} state is one (1, N, {h}) tensor of ids, "
                             f"got {tuple(carried.shape)}")
        return carried[0].cpu().numpy().astype(np.int64).T

    def log_probs(self, seq: np.ndarray, nodes: tuple[list[np.ndarray], list[np.ndarray]] | None = None) -> np.ndarray:
        """``log P(seq[t] | seq[:t])`` for ``t >= 1`` of each column of ``seq (L, S)``: ``(L - 1, S)``.

        The target-only path: one lookup per level instead of a full distribution. ``nodes``: what
        :meth:`lookups` gives for ``seq``, from this model or one of higher order over the same counts.
        """
        seq = np.asarray(seq, dtype=np.int64)
        if seq.ndim == 1:
            seq = seq[:, None]
        if seq.shape[0] < 2:
            return np.zeros((0, seq.shape[1]))
        contexts, found = nodes or self.lookups(seq)
        p = np.full(seq[1:].shape, 1.0 / self.vocab_size)
        for level, context, node in zip(self._levels, contexts, found):
            p = level.mix_one(context, seq[1:], p, node)
        with np.errstate(divide="ignore"):
            return np.log(p)

    def lookups(self, seq: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """For each target ``seq[t]`` (``t >= 1``) and level ``j``: the node of its ``j - 1`` context characters
        and that of those characters followed by the target. Both depend on the keys alone, not the counts."""
        contexts = [k[:-1] for k in self._contexts(seq)]
        found = [level.child(context, seq[1:]) for level, context in zip(self._levels, contexts)]
        return contexts, found

    def nats_per_char(self, ids: Sequence[int] | np.ndarray | Tensor) -> float:
        """Mean ``-log P`` of a text read as one stream: every character after the first, from all before it
        (as ``chargen.generation.score.score_text`` without a prime)."""
        text = _ids(ids, self.vocab_size)
        return float(-self.log_probs(text).mean()) if text.size > 1 else math.nan

    def validation_nats(self, val_ids: Sequence[int] | np.ndarray | Tensor) -> float:
        """Mean nats per character over the validation characters ``evaluate_lm`` scores (``eval_layout``)."""
        return float(-self.log_probs(eval_layout(val_ids)).mean())


def _check_tables(state: dict[str, Any], vocab_size: int) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """The saved tables as arrays, after checking everything a crafted file could get wrong."""
    discounts = state.pop("discounts", None)
    if not isinstance(discounts, Tensor) or discounts.ndim != 2 or discounts.shape[1] != 3 \
            or not 1 <= discounts.shape[0] <= MAX_ORDER:
        raise RuntimeError(f"an n-gram model needs a (order, 3) 'discounts' tensor with order 1..{MAX_ORDER}")
    table = discounts.double().numpy()
    if not ((table >= 0).all() and (table <= [1, 2, 3]).all()):
        raise RuntimeError("discounts outside [0, 1], [0, 2], [0, 3] would not give probabilities")
    order = table.shape[0]
    expected = {f"{kind}_{j}" for j in range(1, order + 1) for kind in ("keys", "counts")}
    if set(state) != expected:
        extra, missing = sorted(set(state) - expected), sorted(expected - set(state))
        raise RuntimeError(f"an order-{order} n-gram model holds {', '.join(sorted(expected))}; "
                           f"unexpected: {extra}, missing: {missing}")
    keys, counts, parents = [], [], 1
    for j in range(1, order + 1):
        k, c = state[f"keys_{j}"].double().numpy(), state[f"counts_{j}"].double().numpy()
        if k.ndim != 1 or c.shape != k.shape:
            raise RuntimeError(f"level {j}: keys and counts must be 1-D and the same length")
        limit = parents * vocab_size
        if limit >= EXACT or ((k != np.round(k)) | (k < 0) | (k >= limit)).any() or (np.diff(k) <= 0).any():
            raise RuntimeError(f"level {j}: keys must be increasing integers below {limit:,}")
        if ((c != np.round(c)) | (c < 0) | (c >= EXACT)).any():
            raise RuntimeError(f"level {j}: counts must be non-negative integers")
        keys.append(k.astype(np.int64))
        counts.append(c.astype(np.int64))
        parents = len(k)
    return keys, counts, table


def eval_layout(val_ids: Sequence[int] | np.ndarray | Tensor, streams: int = EVAL_STREAMS) -> np.ndarray:
    """The validation ids as ``evaluate_lm`` reads them: ``(L, S)`` contiguous streams (see the module docstring)."""
    ids = torch.as_tensor(np.asarray(val_ids.cpu() if isinstance(val_ids, Tensor) else val_ids, dtype=np.int64))
    streams = max(1, min(streams, (ids.numel() - 1) // 2))
    return as_streams(ids, streams).numpy()


@dataclass
class OrderChoice:
    """The order with the lowest validation nats/char, and every order's."""

    order: int
    nats: float
    by_order: dict[int, float]


def choose_order(counts: NGramCounts, val_ids: Sequence[int] | np.ndarray | Tensor, orders: Iterable[int] | None = None,
                 discount: str | float | np.ndarray = "modified") -> OrderChoice:
    """Score every order of ``orders`` (default: all the counts hold) on the validation text; ties go to the smaller."""
    layout = eval_layout(val_ids)
    orders = list(orders or range(1, counts.max_order + 1))
    # the keys, so every lookup, are the same at every order: look them up once, with the largest
    contexts, found = counts.model(max(orders), discount).lookups(layout)
    by_order = {}
    for n in orders:
        by_order[n] = float(-counts.model(n, discount).log_probs(layout, (contexts[:n], found[:n])).mean())
    best = min(by_order, key=lambda n: (by_order[n], n))
    return OrderChoice(best, by_order[best], by_order)


def fit(train_ids: Sequence[int] | np.ndarray | Tensor, vocab_size: int, val_ids: Sequence[int] | np.ndarray | Tensor,
        order: int | None = None, max_order: int = max(BASELINE_ORDERS),
        discount: str | float | np.ndarray = "modified") -> tuple[NGramLM, OrderChoice, float]:
    """Count ``train_ids``, pick the order on ``val_ids`` (or take ``order``): the model, the choice, fit seconds."""
    started = time.perf_counter()
    top = check_order(order) if order is not None else check_order(max_order)
    counts = count_ngrams(train_ids, vocab_size, top)
    choice = choose_order(counts, val_ids, [order] if order is not None else None, discount)
    model = counts.model(choice.order, discount)
    return model, choice, time.perf_counter() - started


def baseline_for(train_text: str, val_text: str, orders: Iterable[int] = BASELINE_ORDERS) -> tuple[int, float]:
    """The best KN order among ``orders`` on ``val_text`` after counting ``train_text``, and its nats/char.

    The vocabulary is every character of either text (an unseen one gets the uniform floor's share),
    and the validation characters are the ones ``evaluate_lm`` scores.
    """
    orders = list(orders)
    for n in orders:
        check_order(n)
    if len(val_text) < 2:
        raise UsageError(f"val_text needs at least 2 characters, got {len(val_text)}", params="val_text")
    chars = {ch: i for i, ch in enumerate(sorted(set(train_text) | set(val_text)))}
    train = np.fromiter((chars[ch] for ch in train_text), dtype=np.int64, count=len(train_text))
    val = np.fromiter((chars[ch] for ch in val_text), dtype=np.int64, count=len(val_text))
    choice = choose_order(count_ngrams(train, len(chars), max(orders)), val, orders)
    return choice.order, choice.nats

