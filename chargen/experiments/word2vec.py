"""word2vec skip-gram (full softmax or negative sampling) with hand-written gradients, batched in torch.

The course exercise made executable:

- ``tokenize`` / ``load_sentences``: lower-case word tokens, one list per sentence, from registered
  corpora (``chargen.data.corpora``) or files; the default is the four books together;
- ``build_vocab``: words seen at least ``min_count`` times; ``keep_probabilities``: the subsampling
  of frequent words (word2vec's rule, ``t = 1e-4``); ``skipgram_pairs``: (centre, context) pairs with
  a dynamic window drawn uniformly from 1..``window`` for every centre;
- ``softmax_loss_grads`` and ``negative_loss_grads``: the two losses and their gradients written by
  hand (the derivation questions), tested against autograd and finite differences;
- ``train``: minibatch SGD with a linearly decaying learning rate; every update touches only the
  rows a batch uses (``index_add_``), except the full softmax, whose gradient is dense in the
  output matrix — the complexity question, measured in ``benchmarks/word2vec.py``;
- ``save`` / ``load``: a flat tensor dict (``torch.load(weights_only=True)``) + a JSON vocabulary;
- ``neighbours`` (cosine) and ``word_similarity`` (Spearman against human ratings, e.g. WordSim353).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from chargen.checkpoint import EMBEDDINGS, WORDS, atomic_write, load_tensors, tensor_bytes
from chargen.data.corpora import load_corpus
from chargen.errors import CheckpointError, TrainingError, UsageError, VocabularyError
from chargen.safeio import describe, read_regular

FORMAT = 1
VOCAB = WORDS
BOOKS = ("grimm", "tinyshakespeare", "origin", "democracy")
LOSSES = ("negative", "softmax")

_TOKEN_RE = re.compile(r"[a-z]+(?:'[a-z]+)*")
# A sentence ends at . ! ? or a blank line; windows never cross one (as in word2vec's line input).
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+|\n\s*\n")

ProgressFn = Callable[[dict[str, Any]], None]


# -- text ---------------------------------------------------------------------------------
def tokenize(text: str) -> list[list[str]]:
    """Sentences of lower-case word tokens (letters with inner apostrophes); empty sentences dropped."""
    sentences = []
    for chunk in _SENTENCE_RE.split(text.lower().replace("\u2019", "'")):
        words = _TOKEN_RE.findall(chunk)
        if words:
            sentences.append(words)
    return sentences


def resolve_corpora(corpora: str | Sequence[str]) -> list[str]:
    """Names or paths from a list or a comma-separated string; ``books`` expands to the four books."""
    if isinstance(corpora, str):
        corpora = corpora.split(",")
    names: list[str] = []
    for c in (c.strip() for c in corpora):
        if c == "books":
            names.extend(BOOKS)
        elif c:
            names.append(c)
    if not names:
        raise UsageError("corpus: give at least one corpus name or file")
    return list(dict.fromkeys(names))


def load_sentences(corpora: str | Sequence[str] = BOOKS) -> list[list[str]]:
    """The tokenised sentences of every corpus in ``corpora`` (registered names or files), in order."""
    sentences: list[list[str]] = []
    for name in resolve_corpora(corpora):
        sentences.extend(tokenize(load_corpus(name).text))
    return sentences


# -- vocabulary and pairs --------------------------------------------------------------------
@dataclass
class WordVocab:
    """Words by descending count (ties alphabetical), so index 0 is the most frequent word."""

    words: list[str]
    counts: list[int]
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)


def build_vocab(sentences: Iterable[list[str]], min_count: int = 5, max_size: int | None = None) -> WordVocab:
    """Words seen at least ``min_count`` times (the ``max_size`` most frequent, if given)."""
    if min_count < 1:
        raise UsageError(f"min_count must be at least 1, got {min_count}")
    counts = Counter(w for s in sentences for w in s)
    kept = sorted(((w, c) for w, c in counts.items() if c >= min_count), key=lambda wc: (-wc[1], wc[0]))
    if max_size is not None:
        kept = kept[:max_size]
    if len(kept) < 2:
        raise UsageError(f"min_count={min_count} leaves {len(kept)} word(s); lower it or use a larger corpus")
    return WordVocab([w for w, _ in kept], [c for _, c in kept])


def encode(sentences: Iterable[list[str]], vocab: WordVocab) -> tuple[np.ndarray, np.ndarray]:
    """Word ids of the in-vocabulary tokens and the sentence number of each (out-of-vocabulary words dropped)."""
    ids: list[int] = []
    sent: list[int] = []
    index = vocab.index
    for n, s in enumerate(sentences):
        for w in s:
            i = index.get(w)
            if i is not None:
                ids.append(i)
                sent.append(n)
    return np.asarray(ids, dtype=np.int64), np.asarray(sent, dtype=np.int64)


def keep_probabilities(counts: Sequence[int], t: float = 1e-4) -> np.ndarray:
    """word2vec's subsampling: a word of frequency f is kept with probability ``sqrt(t/f) + t/f`` (capped at 1).

    ``t <= 0`` keeps every word.
    """
    c = np.asarray(counts, dtype=np.float64)
    if t <= 0:
        return np.ones_like(c)
    f = c / c.sum()
    return np.minimum(1.0, np.sqrt(t / f) + t / f)


def skipgram_pairs(
    ids: np.ndarray, sentence: np.ndarray, window: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(centre, context) id pairs: each centre draws its window ``b`` from 1..``window`` and pairs with
    every word at most ``b`` away in the same sentence (word2vec's dynamic window)."""
    if window < 1:
        raise UsageError(f"window must be at least 1, got {window}")
    n = len(ids)
    reach = rng.integers(1, window + 1, size=n)  # (n,) each centre's window
    centres, contexts = [], []
    for d in range(1, window + 1):
        if d >= n:
            break
        same = sentence[:-d] == sentence[d:]  # positions i, i+d in one sentence
        right = same & (reach[:-d] >= d)  # centre i, context i+d
        left = same & (reach[d:] >= d)  # centre i+d, context i
        centres += [ids[:-d][right], ids[d:][left]]
        contexts += [ids[d:][right], ids[:-d][left]]
    if not centres:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(centres), np.concatenate(contexts)


# -- the two losses and their gradients, by hand ---------------------------------------------
def softmax_loss_grads(v_c: Tensor, target: Tensor, U: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Full-softmax skip-gram: ``L = sum_b -log P(w_o | w_c)``, ``P = softmax(U v_c)``.

    ``v_c (B, d)`` centre vectors, ``target (B,)`` context ids, ``U (V, d)`` output vectors.
    Returns ``(L, dL/dv_c (B, d), dL/dU (V, d))`` with

        dL/dv_c = -(u_o - sum_j P(w_j|w_c) u_j)     ("observed - expected", negated)
        dL/du_j = (P(w_j|w_c) - [j = o]) v_c

    Both cost O(V d) per pair: every output vector enters the normaliser.
    """
    logits = v_c @ U.T  # (B, V)
    log_p = torch.log_softmax(logits, dim=1)
    rows = torch.arange(len(target), device=target.device)
    loss = -log_p[rows, target].sum()
    g = log_p.exp()  # (B, V) dL/dlogits = P - onehot(o)
    g[rows, target] -= 1.0
    return loss, g @ U, g.T @ v_c


def negative_loss_grads(v_c: Tensor, u_o: Tensor, u_k: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Negative sampling: ``L = sum_b [-log s(u_o.v_c) - sum_k log s(-u_k.v_c)]`` (s the sigmoid).

    ``v_c (B, d)``, ``u_o (B, d)`` the true context's output vector, ``u_k (B, K, d)`` the noise
    words'. Returns ``(L, dL/dv_c, dL/du_o, dL/du_k)`` with

        dL/dv_c = -(1 - s(u_o.v_c)) u_o + sum_k s(u_k.v_c) u_k
        dL/du_o = -(1 - s(u_o.v_c)) v_c,   dL/du_k = s(u_k.v_c) v_c

    Cost O(K d) per pair, whatever the vocabulary size.
    """
    loss, grad_v, grad_u = _negative_core(v_c, torch.cat([u_o.unsqueeze(1), u_k], 1))
    return loss, grad_v, grad_u[:, 0], grad_u[:, 1:]


def _negative_core(v_c: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``negative_loss_grads`` on ``u (B, 1+K, d)``, the true context first: ``(L, dL/dv_c, dL/du)``.

    Training gathers ``u`` in one indexing and scatters ``dL/du`` back with the same index.
    """
    scores = (u * v_c.unsqueeze(1)).sum(-1)  # (B, 1+K); elementwise beats bmm at these tiny shapes
    sign = torch.ones_like(scores)
    sign[:, 0] = -1.0
    loss = -F.logsigmoid(-sign * scores).sum()  # -log s(u_o.v) - sum_k log s(-u_k.v)
    g = torch.sigmoid(scores)  # dL/dscore: s(u_o.v) - 1 for the context, s(u_k.v) for the noise
    g[:, 0] -= 1.0
    grad_v = (g.unsqueeze(2) * u).sum(1)
    return loss, grad_v, g.unsqueeze(2) * v_c.unsqueeze(1)  # (B, d), (B, 1+K, d)


# -- training -----------------------------------------------------------------------------
@dataclass
class Word2VecSettings:
    """Skip-gram settings; the defaults are word2vec's (``-window 5 -sample 1e-4 -negative 5``)."""

    dim: int = 100
    window: int = 5
    min_count: int = 5
    sample: float = 1e-4
    loss: str = "negative"
    negatives: int = 5
    epochs: int = 5
    lr: float = 0.05  # per minibatch of 1,024 pairs; 0.025 (gensim's per-pair default) ends 5 epochs at loss 0.408
    batch_size: int = 1024
    seed: int = 0
    max_vocab: int | None = None

    def check(self) -> None:
        if self.loss not in LOSSES:
            raise UsageError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        for name in ("dim", "window", "min_count", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.loss == "negative" and self.negatives < 1:
            raise UsageError(f"negatives must be at least 1, got {self.negatives}")
        if not self.lr > 0:
            raise UsageError(f"lr must be positive, got {self.lr}")


@dataclass
class Word2Vec:
    """Trained embeddings: ``input`` (the word vectors v) and ``output`` (the context vectors u), each ``(V, d)``."""

    vocab: WordVocab
    input: Tensor
    output: Tensor
    settings: Word2VecSettings
    history: list[dict[str, float]] = field(default_factory=list)

    def vector(self, word: str) -> Tensor:
        return self.input[self._id(word)]

    def _id(self, word: str) -> int:
        i = self.vocab.index.get(word.lower())
        if i is None:
            raise VocabularyError(
                f"word {word!r} is not in the model's vocabulary ({len(self.vocab):,} words seen at least "
                f"{self.settings.min_count} times)"
            )
        return i


def noise_distribution(counts: Sequence[int], power: float = 0.75) -> Tensor:
    """The cumulative unigram^0.75 distribution negatives are drawn from (by ``searchsorted``)."""
    p = torch.tensor(counts, dtype=torch.float64) ** power
    cdf = torch.cumsum(p / p.sum(), 0)
    cdf[-1] = 1.0
    return cdf


def train(
    sentences: Sequence[list[str]],
    settings: Word2VecSettings | None = None,
    *,
    progress: ProgressFn | None = None,
    report_every: int = 50,
    vocab: WordVocab | None = None,
) -> Word2Vec:
    """Skip-gram by minibatch SGD; the loss of each epoch is in ``history`` (``loss`` per pair, and for
    negative sampling ``bce``: the mean over the 1 + K binary terms, the loss d2l reports).

    ``vocab``: one already built by ``build_vocab`` from these sentences and settings (else it is built here).
    """
    s = settings or Word2VecSettings()
    s.check()
    vocab = vocab or build_vocab(sentences, s.min_count, s.max_vocab)
    ids, sent = encode(sentences, vocab)
    keep = keep_probabilities(vocab.counts, s.sample)
    rng = np.random.default_rng(s.seed)
    gen = torch.Generator().manual_seed(s.seed)
    V, d = len(vocab), s.dim
    # word2vec's init: small random input vectors, zero output vectors
    w_in = (torch.rand(V, d, generator=gen) - 0.5) / d
    w_out = torch.zeros(V, d)
    cdf = noise_distribution(vocab.counts)
    model = Word2Vec(vocab, w_in, w_out, s)
    start = time.perf_counter()
    done_pairs = 0
    for epoch in range(s.epochs):
        kept = rng.random(len(ids)) < keep[ids]
        centres, contexts = skipgram_pairs(ids[kept], sent[kept], s.window, rng)
        order = rng.permutation(len(centres))
        centres_t = torch.from_numpy(centres[order])
        contexts_t = torch.from_numpy(contexts[order])
        n = len(centres_t)
        if s.loss == "negative":  # the whole epoch's noise words in one draw, beside each true context
            noise_all = torch.searchsorted(cdf, torch.rand(n * s.negatives, generator=gen, dtype=torch.float64))
            noise_all = noise_all.clamp_(max=V - 1).view(n, s.negatives)  # (n, K)
            targets_all = torch.cat([contexts_t.unsqueeze(1), noise_all], 1)  # (n, 1+K)
        total_loss, seen = 0.0, 0
        window_loss, window_seen = 0.0, 0
        for b, lo in enumerate(range(0, n, s.batch_size)):
            frac = (epoch + lo / max(n, 1)) / s.epochs
            lr = s.lr * max(1e-4, 1.0 - frac)  # word2vec's linear decay
            c = centres_t[lo:lo + s.batch_size]
            v_c = w_in[c]  # (B, d)
            if s.loss == "negative":
                rows = targets_all[lo:lo + s.batch_size].reshape(-1)  # (B*(1+K),)
                loss, g_v, g_u = _negative_core(v_c, w_out[rows].view(len(c), -1, d))
                w_out.index_add_(0, rows, g_u.view(-1, d), alpha=-lr)
            else:
                o = contexts_t[lo:lo + s.batch_size]
                loss, g_v, g_u = softmax_loss_grads(v_c, o, w_out)
                w_out.add_(g_u, alpha=-lr)  # dense: every output vector moves
            w_in.index_add_(0, c, g_v, alpha=-lr)
            lv = float(loss)
            if not math.isfinite(lv):
                raise TrainingError(f"the loss diverged at epoch {epoch + 1}; lower lr (now {s.lr})")
            total_loss += lv
            seen += len(c)
            window_loss += lv
            window_seen += len(c)
            if progress is not None and (b % report_every == 0 or lo + s.batch_size >= n):
                elapsed = time.perf_counter() - start
                progress({
                    "epoch": epoch + 1, "epochs": s.epochs, "fraction": (epoch + min(lo + s.batch_size, n) / n) / s.epochs,
                    "loss": _display_loss(window_loss / window_seen, s), "pairs_per_s": (done_pairs + seen) / max(elapsed, 1e-9),
                })
                window_loss, window_seen = 0.0, 0
        done_pairs += seen
        per_pair = total_loss / max(seen, 1)
        record = {"epoch": epoch + 1, "pairs": seen, "loss": per_pair, "seconds": time.perf_counter() - start}
        if s.loss == "negative":
            record["bce"] = per_pair / (1 + s.negatives)
        model.history.append(record)
    return model


def _display_loss(per_pair: float, s: Word2VecSettings) -> float:
    return per_pair / (1 + s.negatives) if s.loss == "negative" else per_pair


# -- saving, loading, querying ----------------------------------------------------------------
def save(model: Word2Vec, directory: str | Path) -> Path:
    """``embeddings.pt`` (``{"input", "output"}`` tensors) and ``vocab.json`` (words, counts, settings), atomically."""
    directory = Path(directory)
    meta = {
        "format": FORMAT, "kind": "word2vec", "words": model.vocab.words, "counts": model.vocab.counts,
        "settings": asdict(model.settings), "history": model.history,
    }
    atomic_write(directory, {
        EMBEDDINGS: tensor_bytes({"input": model.input.contiguous(), "output": model.output.contiguous()}),
        VOCAB: json.dumps(meta).encode(),
    })
    return directory


def load(directory: str | Path) -> Word2Vec:
    """A model saved by ``save``; only tensors and JSON are read (``weights_only=True``)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such word2vec model folder")
    try:
        meta = json.loads(read_regular(directory / VOCAB, 1 << 30).decode("utf-8"))  # never a FIFO or /dev/zero
    except FileNotFoundError:
        raise CheckpointError(f"{directory / VOCAB}: missing (is this a word2vec model folder?)") from None
    except (OSError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{directory / VOCAB}: unreadable ({describe(e) if isinstance(e, OSError) else e})") from None
    if not isinstance(meta, dict) or meta.get("kind") != "word2vec":
        raise CheckpointError(f"{directory / VOCAB}: not a word2vec vocabulary")
    if not isinstance(meta.get("format"), int) or meta["format"] > FORMAT:
        raise CheckpointError(f"{directory / VOCAB}: format {meta.get('format')} is newer than this chargen reads")
    tensors = load_tensors(directory / EMBEDDINGS)
    words = meta["words"]
    if (
        not isinstance(tensors, dict)
        or set(tensors) != {"input", "output"}
        or any(not isinstance(t, Tensor) or t.dim() != 2 or t.shape[0] != len(words) for t in tensors.values())
    ):
        raise CheckpointError(f"{directory / EMBEDDINGS}: expected input and output tensors of {len(words)} rows")
    known = Word2VecSettings.__dataclass_fields__
    settings = Word2VecSettings(**{k: v for k, v in meta.get("settings", {}).items() if k in known})
    return Word2Vec(WordVocab(words, meta["counts"]), tensors["input"], tensors["output"], settings, meta.get("history", []))


def neighbours(model: Word2Vec, word: str, k: int = 10) -> list[tuple[str, float]]:
    """The ``k`` words whose input vectors have the highest cosine with ``word``'s (itself excluded)."""
    if k < 1:
        raise UsageError(f"k must be at least 1, got {k}")
    i = model._id(word)
    unit = F.normalize(model.input, dim=1)
    cos = unit @ unit[i]
    cos[i] = -math.inf
    top = torch.topk(cos, min(k, len(cos) - 1))
    return [(model.vocab.words[j], float(v)) for v, j in zip(top.values, top.indices)]


def read_word_pairs(path: str | Path) -> list[tuple[str, str, float]]:
    """Human-rated word pairs ``word1<TAB>word2<TAB>score`` (``#`` comments), e.g. WordSim353."""
    pairs = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        a, b, score = line.split("\t")[:3]
        pairs.append((a.lower(), b.lower(), float(score)))
    return pairs


def rank(values: Sequence[float]) -> np.ndarray:
    """Ranks from 1 with ties given their average rank (as Spearman's rho needs)."""
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(v, kind="mergesort")
    ranks = np.empty(len(v))
    ranks[order] = np.arange(1, len(v) + 1)
    for value in np.unique(v):
        tied = v == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation: Pearson's correlation of the ranks."""
    ra, rb = rank(a), rank(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / math.sqrt((ra * ra).sum() * (rb * rb).sum()))


def word_similarity(
    vectors: Callable[[str], Tensor | np.ndarray | None],
    pairs: Sequence[tuple[str, str, float]],
) -> dict[str, Any]:
    """Spearman between human scores and cosine similarities on the pairs both words of which have a vector.

    ``vectors(word)`` returns a vector or None (out of vocabulary), so any model can be judged alike.
    """
    human, model_scores, covered = [], [], []
    for a, b, score in pairs:
        va, vb = vectors(a), vectors(b)
        if va is None or vb is None:
            continue
        va, vb = torch.as_tensor(va, dtype=torch.float64), torch.as_tensor(vb, dtype=torch.float64)
        human.append(score)
        model_scores.append(float(F.cosine_similarity(va, vb, dim=0)))
        covered.append((a, b))
    rho = spearman(human, model_scores) if len(human) > 2 else float("nan")
    return {"spearman": rho, "covered": len(human), "pairs": len(pairs), "covered_pairs": covered}


def vector_lookup(model: Word2Vec) -> Callable[[str], Tensor | None]:
    """``word -> input vector or None``, for ``word_similarity``."""
    def look(word: str) -> Tensor | None:
        i = model.vocab.index.get(word)
        return None if i is None else model.input[i]
    return look
