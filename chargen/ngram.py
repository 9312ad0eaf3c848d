"""Character n-gram naive Bayes: the count-based baseline every surname-classifier claim is measured against.

A name is read as ``^name$``; its features are every substring of 1 to ``n_max`` characters
(``n_max = 4``: ``^``, ``B``, ..., ``^B``, ..., ``kker$``'s last four ``ker$``). Per language and
per order ``n`` the model keeps the count of each n-gram in that language's training names
(a name listed under several languages counts under each). The log likelihood of a name under
language ``c`` is the sum over its n-grams ``g`` of order ``n`` of

    log (count[c][g] + alpha) / (total[c][n] + alpha * (V[n] + 1))

with ``V[n]`` the distinct training n-grams of order ``n`` (the ``+ 1`` keeps a place for an
unseen one). The prior over languages is uniform, so the prediction is the language with the
highest likelihood: on a skewed corpus, a prior would only teach it the corpus's proportions.

The counts are saved as JSON (no code runs when loading), one object ``{gram: {language
index: count}}``: small enough to ship beside a checkpoint.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from chargen.errors import CheckpointError
from chargen.safeio import MiB, describe, read_regular

BOS, EOS = "^", "$"
FORMAT = "chargen-ngram-naive-bayes"
VERSION = 1
MAX_ORDER = 16  # a loaded file's n_max: each name yields about n_max * len(name) n-grams
MAX_FILE_BYTES = 256 * MiB
BASELINE_ALPHA = 0.1  # chosen on the validation split's balanced accuracy among 0.05, 0.1, 0.3, 0.5, 1


def ngrams(name: str, n_max: int = 4) -> list[str]:
    """Every substring of ``^name$`` of 1 to ``n_max`` characters, with repeats."""
    text = f"{BOS}{name}{EOS}"
    return [text[i : i + n] for n in range(1, n_max + 1) for i in range(len(text) - n + 1)]


class NaiveBayes:
    """Counts of character n-grams per language; ``log_likelihood`` scores names under every language."""

    def __init__(self, languages: Sequence[str], n_max: int = 4, alpha: float = BASELINE_ALPHA) -> None:
        if n_max < 1:
            raise ValueError(f"n_max must be at least 1, got {n_max}")
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        self.languages = list(languages)
        self.n_max, self.alpha = n_max, alpha
        self.counts: dict[str, Counter[int]] = {}
        self._table: tuple[dict[str, int], Tensor, Tensor] | None = None

    def fit(self, names: Iterable[str], targets: Iterable[Iterable[int]]) -> NaiveBayes:
        """Add the n-grams of each name to the counts of each of its language ids."""
        for name, langs in zip(names, targets):
            grams = Counter(ngrams(name, self.n_max))
            for c in langs:
                for g, k in grams.items():
                    self.counts.setdefault(g, Counter())[c] += k
        self._table = None
        return self

    def _compiled(self) -> tuple[dict[str, int], Tensor, Tensor]:
        """Gram -> row, the ``(G, C)`` log probabilities of the known grams, and ``(n_max, C)`` for unseen ones."""
        if self._table is None:
            C = len(self.languages)
            grams = sorted(self.counts)
            index = {g: i for i, g in enumerate(grams)}
            counts = torch.zeros(len(grams), C, dtype=torch.float64)
            for g, per in self.counts.items():
                for c, k in per.items():
                    counts[index[g], c] = k
            order = torch.tensor([len(g) for g in grams], dtype=torch.long)
            totals = torch.zeros(self.n_max, C, dtype=torch.float64)
            distinct = torch.zeros(self.n_max, dtype=torch.float64)
            if grams:
                totals.index_add_(0, order - 1, counts)
                distinct.index_add_(0, order - 1, torch.ones(len(grams), dtype=torch.float64))
            denom = (totals + self.alpha * (distinct[:, None] + 1)).log()  # (n_max, C)
            known = (counts + self.alpha).log() - denom[order - 1] if grams else counts
            unseen = math.log(self.alpha) - denom
            self._table = (index, known, unseen)
        return self._table

    def log_likelihood(self, names: Sequence[str]) -> Tensor:
        """``log p(name | language)`` up to a constant shared by all languages: ``(N, C)`` float64."""
        index, known, unseen = self._compiled()
        out = torch.zeros(len(names), len(self.languages), dtype=torch.float64)
        for i, name in enumerate(names):
            rows: list[int] = []
            missing = [0] * self.n_max
            for g in ngrams(name, self.n_max):
                r = index.get(g)
                if r is None:
                    missing[len(g) - 1] += 1
                else:
                    rows.append(r)
            if rows:
                out[i] = known[rows].sum(0)
            out[i] += (torch.tensor(missing, dtype=torch.float64)[:, None] * unseen).sum(0)
        return out

    def log_probs(self, names: Sequence[str]) -> Tensor:
        """Posterior log probabilities of the languages under a uniform prior: ``(N, C)`` float32."""
        return torch.log_softmax(self.log_likelihood(names), dim=1).float()

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "n_max": self.n_max, "alpha": self.alpha,
            "languages": self.languages,
            "counts": {g: {str(c): k for c, k in sorted(per.items())} for g, per in sorted(self.counts.items())},
        }

    @classmethod
    def from_json(cls, doc: Any) -> NaiveBayes:
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError("not a chargen n-gram naive Bayes file")
        if doc.get("version") != VERSION:
            raise ValueError(f"unknown version {doc.get('version')!r}")
        if not isinstance(doc.get("languages"), list) or not all(isinstance(x, str) for x in doc["languages"]):
            raise ValueError("languages must be a list of strings")
        if not 1 <= int(doc["n_max"]) <= MAX_ORDER or not math.isfinite(float(doc["alpha"])):
            raise ValueError(f"n_max must be from 1 to {MAX_ORDER} and alpha finite")
        if not isinstance(doc["counts"], dict):
            raise ValueError("counts must be an object")
        model = cls(doc["languages"], int(doc["n_max"]), float(doc["alpha"]))
        C = len(model.languages)
        for g, per in doc["counts"].items():
            counter: Counter[int] = Counter()
            if not isinstance(per, dict):
                raise ValueError(f"bad counts for {g!r}")
            for c, k in per.items():
                if not (0 <= int(c) < C) or int(k) < 0:
                    raise ValueError(f"bad count for {g!r}")
                counter[int(c)] = int(k)
            model.counts[str(g)] = counter
        return model

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps(self.to_json(), separators=(",", ":")) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> NaiveBayes:
        try:
            return cls.from_json(json.loads(read_regular(path, MAX_FILE_BYTES).decode("utf-8")))
        except FileNotFoundError:
            raise CheckpointError(f"{path}: missing") from None
        except OSError as e:
            raise CheckpointError(f"{path}: cannot read it ({describe(e)})") from None
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError) as e:
            raise CheckpointError(f"{path}: not a readable n-gram model ({' '.join(str(e).split())[:200]})") from None


def train_baseline(data: Any, split: str = "train", n_max: int = 4, alpha: float = BASELINE_ALPHA) -> NaiveBayes:
    """The baseline fitted on one split of a ``chargen.data.names.NamesData``."""
    return NaiveBayes(data.languages, n_max, alpha).fit(data.splits[split], data.targets(split))
