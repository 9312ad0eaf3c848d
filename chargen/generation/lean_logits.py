"""The logits pipeline's fast path for one stream on the CPU: the same scores, bit for bit, in fewer kernels.

At batch 1 over a character vocabulary (~80 ids) a kernel costs microseconds of dispatch for
nanoseconds of arithmetic, and the general pipeline (``chargen.generation.logits``) runs about 35
of them per character with every control on. :class:`OneStream` writes the same scores into the
pipeline's buffer (through a numpy view) along two routes:

- **decided** (top-p on, with top-k, min-p and typical behind it): one ``topk`` gives the 16
  likeliest characters (or the whole top-k); which of them survive is decided in float64 Python
  on that short list, and the rest are set to -inf in one write. Comparisons of scores are exact
  (float32 values are exact in float64); the masses and the typical ranking are estimates of the
  general path's float32 sums, trusted only when they clear every cut by ``MARGIN`` (1e-4, a
  hundred times float32's rounding here); a tie across a cut, a thinner margin or a wider nucleus
  takes the other route for that step;
- **exact** (everything else): the general path's arithmetic with numpy ufuncs where IEEE rounding
  makes them equal to torch's (subtract, divide, multiply, compare, max, select, stable sorts;
  cumulative sums in float64 rounded per prefix, as torch's CPU ``cumsum``), and torch itself for
  the softmaxes and the typical ``nansum``, whose rounding is torch's own.

Either way the bookkeeping is incremental: the repetition penalty keeps a count per id over the
window and a presence mask (updated by the emitted id, O(1)) instead of a ring gather/scatter, and
no-repeat bans the followers of the last n-1 characters with one indexed write.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

# The pipeline (chargen.generation.logits.LogitsPipeline) builds a OneStream and hands itself in;
# naming its type here would make the two modules import each other.
LogitsPipeline = Any

NEG_INF = np.float32(-np.inf)


def _pair(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> tuple[Tensor, np.ndarray]:
    """A buffer as a torch tensor and a numpy view of the same memory (torch kernels and ufuncs share it)."""
    tensor = torch.empty(shape, dtype=dtype)
    return tensor, tensor.numpy()


def _kept(probs: np.ndarray, before: np.ndarray, sums: np.ndarray, mass: np.float32) -> int:
    """How many of the characters ranked in ``probs``' order stay: those the mass ranked before falls short of.

    ``before`` (a float32 buffer, ``before[0] == 0``) receives the exclusive cumulative sum, accumulated in
    ``sums`` (float64) and rounded per prefix like torch's CPU cumsum; it never decreases, so the cut is a suffix.
    """
    probs[:-1].cumsum(dtype=np.float64, out=sums)  # ndarray methods: numpy's function wrappers cost as much again
    before[1:] = sums
    return int(before.searchsorted(mass))


class OneStream:
    """The scores of :meth:`LogitsPipeline._process` for a batch of one on the CPU, from float32 logits.

    Writes into ``pipeline.scores`` (through a numpy view) and returns it, or the logits themselves
    when no control changes them, exactly as the general path does.
    """

    MARGIN = 1e-4  # how far a float64 mass must clear a cut for its float32 twin to fall on the same side
    CANDIDATES = 16  # the likeliest characters top-p is decided on (a wider nucleus takes the float32 route)

    def __init__(self, pipeline: LogitsPipeline, context: Sequence[int]) -> None:
        config, size = pipeline.config, pipeline.vocab_size
        self.pipeline, self.config = pipeline, config
        self.x = pipeline.scores.numpy()[0]
        self.banned = None if pipeline.banned is None else pipeline.banned.numpy()
        self.factor = None if config.repetition_penalty == 1.0 else np.float32(config.repetition_penalty)
        self.pick = np.minimum if config.repetition_penalty > 1 else np.maximum
        self.recent: deque[int] = deque()
        self.counts = [0] * size
        self.present = np.zeros(size, dtype=bool)
        if self.factor is not None:
            for i in context[-config.repetition_window :]:
                self.remember(i)
        self.top_k, self.top_k_alone = pipeline.top_k, pipeline.top_k_alone
        # float32 values, as the general path holds them, kept as Python floats (exact) for the scalar code
        self.top_p = float(np.float32(config.top_p))
        self.log_min_p = float(np.float32(math.log(config.min_p))) if config.min_p > 0 else None
        self.typical = float(np.float32(config.typical))
        self.sorted_t, self.sorted = _pair((1, size))
        self.probs_t, self.probs = _pair((1, size))
        self.p_t, self.p = _pair((1, size))
        self.d_t, self.d = _pair((1, size))
        self.mean_t, self.mean = _pair((1, 1))
        self.before = np.zeros(size, dtype=np.float32)
        candidates = min(self.CANDIDATES, size if self.top_k is None else self.top_k) + 1
        self.top_size = min(size, max(candidates, self.top_k or 0))
        self.top_values, self.top_ids = torch.empty(1, self.top_size), torch.empty(1, self.top_size, dtype=torch.long)
        self.sums = np.empty(size - 1, dtype=np.float64)
        self.negated = np.empty(size, dtype=np.float32)
        self.warps = self.top_k is not None or config.top_p < 1 or config.min_p > 0 or config.typical < 1
        self.logits: Tensor | None = None
        self.logits_np = self.x
        self.touches = pipeline.temperature != 1.0 or not pipeline.constant or self.warps \
            or self.factor is not None or pipeline.hard

    # ------------------------------------------------------------------ history

    def remember(self, i: int) -> None:
        """The stream wrote ``i``: the window's counts and presence follow (the oldest id leaves a full window)."""
        if self.factor is None:
            return
        if len(self.recent) == self.config.repetition_window:
            old = self.recent.popleft()
            self.counts[old] -= 1
            if not self.counts[old]:
                self.present[old] = False
        self.recent.append(i)
        self.counts[i] += 1
        self.present[i] = True

    # ------------------------------------------------------------------ the steps

    def process(self, logits: Tensor) -> Tensor:
        pipeline, x = self.pipeline, self.x
        if not self.touches:
            return logits
        if logits is not self.logits:  # a stepper returns the same buffer every step: one view serves them all
            self.logits, self.logits_np = logits, (logits.detach() if logits.requires_grad else logits).numpy()[0]
        source, penalise = self.logits_np, self.factor is not None and self.recent
        if penalise or pipeline.hard:
            x[:] = source
            source = x
            if penalise:
                seen = x[self.present]
                x[self.present] = self.pick(seen / self.factor, seen * self.factor)
            if pipeline.hard:
                self._hard_masks()
        if pipeline.step_greedy or not (self.warps or pipeline.temperature != 1.0):
            if source is not x:
                x[:] = source
            return pipeline.scores
        np.subtract(source, np.maximum.reduce(source), out=x)  # the logits themselves are never written  # shift by the max first: a tiny temperature sends the rest to -inf
        if pipeline.temperature != 1.0:
            np.divide(x, np.float32(pipeline.temperature), out=x)
        if self.warps and not (self.config.top_p < 1 and self._decide()):
            self._warp_exactly()  # the float32 arithmetic of the general path decides
        return pipeline.scores

    def _warp_exactly(self) -> None:
        x = self.x
        if self.top_k_alone:
            kth = np.partition(x, x.size - self.top_k)[x.size - self.top_k]  # the k-th largest, as torch.topk's
            x[x < kth] = NEG_INF
        if self.config.top_p < 1:
            self._sorted_cuts()
        elif self.log_min_p is not None:
            x[x < self.log_min_p] = NEG_INF
        if self.config.typical < 1:
            self._typical()

    def _decide(self) -> bool:
        """Top-p (and top-k, min-p, typical behind it) decided on the few likeliest characters; False if unsure.

        The float32 scores are exact in float64, so every comparison of scores (top-k, min-p, the ranking)
        is exact here; the masses (top-p, typical) and the typical ranking are float64 estimates of the
        general path's float32 sums, trusted only when they clear each cut by ``MARGIN`` (float32
        rounding moves them by about 1e-6). Scores tied across a cut (whose order only the general
        path's stable sort settles) and nuclei wider than ``CANDIDATES`` are left to it as well.
        """
        x, margin = self.x, self.MARGIN
        size = min(self.CANDIDATES, x.size if self.top_k is None else self.top_k)
        # the candidates and one more, so that a tie across their edge is seen (and the whole top-k, for its mass);
        # equal scores come in any order: only a tie across a cut matters, and that is left to the general path
        torch.topk(self.pipeline.scores, self.top_size, dim=-1, out=(self.top_values, self.top_ids))
        ranked = self.top_values.tolist()[0]  # scores, likeliest first (their ids only if typical needs them)
        if self.top_k is None or self.top_k >= x.size:
            total = float(np.add.reduce(np.exp(x, out=self.negated)))  # float32 is ample for an estimate
        else:
            total = math.fsum(map(math.exp, ranked[: self.top_k]))
        mass, keep = 0.0, None
        for j, value in enumerate(ranked[:size]):  # keep j while the mass ranked before it is below top_p
            before = mass / total
            if abs(before - self.top_p) < margin:
                return False
            if before >= self.top_p:
                keep = j
                break
            mass += math.exp(value)
        if keep is None:
            if size < min(x.size, self.top_k or x.size):
                return False  # the nucleus reaches past the candidates
            keep = size
        if self.log_min_p is not None:  # min-p cuts a suffix of the same ranking
            while keep and ranked[keep - 1] < self.log_min_p:
                keep -= 1
        if 0 < keep < len(ranked) and ranked[keep - 1] == ranked[keep] != -math.inf:
            return False  # a tie across the cut: the general path keeps the lower id
        if not keep:
            return False
        if self.config.typical >= 1:  # the kept are the scores at or above the last one kept (no tie across)
            x[x < ranked[keep - 1]] = NEG_INF
            return True
        kept = self._typical_kept(sorted(zip(ranked[:keep], self.top_ids.tolist()[0]), key=lambda pair: pair[1]))
        if kept is None:
            return False
        x.fill(NEG_INF)
        x[[i for _, i in kept]] = [value for value, _ in kept]  # float32 values, exact as Python floats
        return True

    def _typical_kept(self, kept: list[tuple[float, int]]) -> list[tuple[float, int]] | None:
        """Which of ``kept`` ((score, id), by id) locally typical sampling keeps, or None if too close to call."""
        weights = [math.exp(value) for value, _ in kept]
        total = math.fsum(weights)
        mean = math.fsum(w * value for w, (value, _) in zip(weights, kept)) / total
        # stable: equal distances by id, as on the general path
        order = sorted(range(len(kept)), key=lambda j: abs(kept[j][0] - mean))
        # the float32 mean is off by about 1e-6 of the scores' size: nearer distances may swap
        near = self.MARGIN * (1.0 + max(abs(value) for value, _ in kept))
        mass, last = 0.0, -math.inf
        for n, j in enumerate(order):
            distance = abs(kept[j][0] - mean)
            if distance - last < near:
                return None
            last = distance
            before = mass / total
            if abs(before - self.typical) < self.MARGIN:
                return None
            if before >= self.typical:
                return sorted((kept[j] for j in order[:n]), key=lambda pair: pair[1])
            mass += weights[j]
        return kept

    def _hard_masks(self) -> None:
        pipeline, x = self.pipeline, self.x
        if self.banned is not None:
            x[self.banned] = NEG_INF
        pipeline._apply_masks(pipeline.scores)
        maybe_dead = False
        if pipeline.no_repeat is not None:
            followers = pipeline.no_repeat.followers(0)
            if followers:
                x[list(followers)] = NEG_INF
                maybe_dead = len(followers) >= pipeline.no_repeat.room
        if (maybe_dead or pipeline.masks) and np.isneginf(x).all():
            pipeline._dead_end(0)

    def _sorted_cuts(self) -> None:
        """Top-k (behind top-p), top-p and min-p: each keeps a prefix of one stable descending sort."""
        x, ranked = self.x, self.sorted[0]
        order = self.negate(x).argsort(kind="stable")  # among equal scores the lower id first, as torch's
        x.take(order, out=ranked)
        if self.top_k is not None:
            ranked[self.top_k :] = NEG_INF
        torch.softmax(self.sorted_t, dim=-1, out=self.probs_t)
        keep = _kept(self.probs[0], self.before, self.sums, self.top_p)
        if self.top_k is not None:
            keep = min(keep, self.top_k)
        if self.log_min_p is not None:  # scores at or above log(min_p) (max 0) are a prefix of the ranking
            keep = min(keep, int(np.count_nonzero(ranked >= self.log_min_p)))
        x[order[keep:]] = NEG_INF

    def negate(self, x: np.ndarray) -> np.ndarray:
        return np.negative(x, out=self.negated)

    def _typical(self) -> None:
        # the general path's arithmetic: see LogitsPipeline._typical
        x = self.x
        torch.softmax(self.pipeline.scores, dim=-1, out=self.p_t)
        torch.mul(self.p_t, self.pipeline.scores, out=self.d_t)  # torch: 0 * -inf is NaN without a warning
        torch.nansum(self.d_t, dim=-1, keepdim=True, out=self.mean_t)
        distance = self.d[0]
        np.subtract(x, self.mean[0, 0], out=distance)
        np.abs(distance, out=distance)
        order = distance.argsort(kind="stable")
        ranked = self.sorted[0]
        self.p[0].take(order, out=ranked)
        x[order[_kept(ranked, self.before, self.sums, self.typical) :]] = NEG_INF

    def draw(self, scores: Tensor, generator: torch.Generator | None, greedy: bool) -> int:
        """One id from ``scores (1, V)`` as ``LeanSampler`` draws it: argmax, or ``argmax(softmax / Exp(1))``."""
        if greedy:
            return int(scores.numpy()[0].argmax())  # the first of equal maxima, as torch.argmax
        torch.softmax(scores, dim=-1, out=self.probs_t)
        self.d_t.exponential_(generator=generator)
        np.divide(self.probs, self.d, out=self.d)
        return int(self.d[0].argmax())
