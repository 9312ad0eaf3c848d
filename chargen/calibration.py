"""Calibration of a classifier's probabilities: the fused score, temperature fitting, expected calibration error.

The shipped surname classifier scores a name as

    z = log p_net(c | name) + ngram_weight * log p_nb(c | name) - prior_weight * log prior(c)
    p(c | name) = softmax(z / temperature)

(``p_nb``: the n-gram naive Bayes posterior under a uniform prior; ``prior``: the languages'
shares of the training names). Every parameter is a plain number in the checkpoint's
``config.json``. The weights are chosen on validation data; the temperature is then fitted on
the validation split by minimising the negative log likelihood. Dividing every score of a name
by the same positive number never changes which language ranks first, so calibration cannot
change accuracy (a test holds it to that).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass
class Fusion:
    """How a classifier's network, n-gram model and class prior combine, and the temperature."""

    ngram_weight: float = 0.0
    prior_weight: float = 0.0
    temperature: float = 1.0
    log_prior: list[float] = field(default_factory=list)  # training share of each language, log

    def scores(self, net_logp: Tensor, nb_logp: Tensor | None = None) -> Tensor:
        """Fused scores before the temperature: ``(N, C)``."""
        z = net_logp.float()
        if self.ngram_weight:
            if nb_logp is None:
                raise ValueError("this fusion needs the n-gram model's log probabilities")
            z = z + self.ngram_weight * nb_logp.float()
        if self.prior_weight:
            z = z - self.prior_weight * torch.tensor(self.log_prior, dtype=z.dtype)
        return z

    def log_probs(self, net_logp: Tensor, nb_logp: Tensor | None = None) -> Tensor:
        return torch.log_softmax(self.scores(net_logp, nb_logp) / self.temperature, dim=1)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Fusion:
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})


def set_log_likelihood(log_probs: Tensor, targets: Tensor) -> Tensor:
    """Mean ``log p(any of the name's classes)``; ``targets`` is ``(N, C)`` boolean."""
    return torch.logsumexp(log_probs.masked_fill(~targets, float("-inf")), dim=1).mean()


def fit_temperature(scores: Tensor, targets: Tensor, lo: float = 0.05, hi: float = 20.0, iters: int = 60) -> float:
    """The temperature minimising the validation NLL of ``softmax(scores / T)``: golden-section search on log T.

    The NLL is convex in 1/T, hence unimodal in log T: the search is exact up to its tolerance
    and deterministic (no optimizer state, no seed).
    """
    scores = scores.double()

    def nll(log_t: float) -> float:
        return -float(set_log_likelihood(torch.log_softmax(scores / math.exp(log_t), dim=1), targets))

    a, b = math.log(lo), math.log(hi)
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = nll(c), nll(d)
    for _ in range(iters):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = nll(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = nll(d)
    return math.exp((a + b) / 2)


def reliability(probs: Tensor, targets: Sequence[frozenset[int]], bins: int = 15) -> dict[str, Any]:
    """Expected calibration error of the top-1 confidence, and the per-bin table behind the diagram.

    Bins split ``(0, 1]`` into equal widths; ECE is the names-weighted mean of ``|accuracy -
    mean confidence|`` over the bins. A guess is right when it is any of the name's languages.
    """
    conf, pred = probs.float().max(dim=1)
    right = torch.tensor([int(p) in t for p, t in zip(pred.tolist(), targets)], dtype=torch.float)
    edges = torch.linspace(0, 1, bins + 1)
    which = torch.bucketize(conf, edges[1:-1], right=True)  # bin i holds (edges[i], edges[i+1]]
    rows, ece = [], 0.0
    n = max(1, len(targets))
    for i in range(bins):
        mask = which == i
        count = int(mask.sum())
        if count:
            acc, mean_conf = float(right[mask].mean()), float(conf[mask].mean())
            ece += count / n * abs(acc - mean_conf)
            rows.append({"low": float(edges[i]), "high": float(edges[i + 1]), "count": count,
                         "accuracy": acc, "confidence": mean_conf})
    return {"ece": ece, "bins": rows, "accuracy": float(right.mean()) if len(targets) else 0.0,
            "mean_confidence": float(conf.mean()) if len(targets) else 0.0}


def top_k_accuracy(log_probs: Tensor, targets: Sequence[frozenset[int]], k: int) -> float:
    """Share of names with any of their classes among the ``k`` highest scores."""
    ids = log_probs.topk(min(k, log_probs.shape[1]), dim=1).indices.tolist()
    return sum(bool(set(i) & t) for i, t in zip(ids, targets)) / max(1, len(targets))


def accuracy_coverage(probs: Tensor, targets: Sequence[frozenset[int]],
                      coverages: Sequence[float] = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)) -> list[dict[str, float]]:
    """Accuracy when answering only the most confident share of names: one row per coverage.

    Names are ranked by their top-1 confidence (ties in input order); a coverage ``x`` answers
    the first ``ceil(x * N)`` of them. ``threshold`` is the lowest confidence answered.
    """
    conf, pred = probs.float().max(dim=1)
    right = [int(p) in t for p, t in zip(pred.tolist(), targets)]
    order = sorted(range(len(right)), key=lambda i: -float(conf[i]))
    rows = []
    for x in coverages:
        k = max(1, math.ceil(x * len(order))) if order else 0
        answered = order[:k]
        rows.append({"coverage": x, "answered": k, "accuracy": sum(right[i] for i in answered) / max(1, k),
                     "threshold": float(conf[answered[-1]]) if answered else 1.0})
    return rows


def unsure_threshold(probs: Tensor, targets: Sequence[frozenset[int]], grid: Sequence[float] | None = None) -> float:
    """The confidence below which a top-1 guess is better called unsure: the ``t`` on a grid
    maximising (right - wrong) among the guesses with confidence >= ``t``, i.e. a guess is
    worth giving when it is more often right than wrong. The smallest such ``t`` on ties."""
    grid = grid if grid is not None else [i / 100 for i in range(0, 100, 5)]
    conf, pred = probs.float().max(dim=1)
    right = torch.tensor([int(p) in t for p, t in zip(pred.tolist(), targets)], dtype=torch.float)
    gains = [float(((2 * right - 1) * (conf >= t).float()).sum()) for t in grid]
    return grid[max(range(len(grid)), key=lambda i: (gains[i], -i))]
