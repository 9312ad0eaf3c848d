"""Surname tasks: a language classifier (``classify``) and a language-conditioned name generator (``generate``).

Both read the folded, deduplicated names with their persisted stratified split
(``chargen.data.names``) and batch variable-length names time-major, right-padded, with their
lengths. The cores are causal, so padding after a name's last character cannot reach what is
read from that name: the classifier reads the output at each name's own last character, and
the generator's padded targets are ignored by the loss.

A name listed under several languages counts as correct when any of them is predicted, and
the classifier's loss is ``-log p(any of its languages)``; the generator learns the name under
each of its languages (see ``chargen.data.names``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from chargen.calibration import Fusion
from chargen.data.corpora import ProgressFn
from chargen.data.names import FOLD_ALPHABET, NamesData, fold, has_letter, load_names
from chargen.errors import CheckpointError, CorpusError, UsageError, VocabularyError
from chargen.models import CharLM, ModelConfig, SequenceClassifier
from chargen.ngram import NaiveBayes
from chargen.runtime import check_batch_size, rank, world_size
from chargen.sample import check_sampling, sample_next
from chargen.tasks.base import register
from chargen.vocab import Vocab

NAMES_CORPUS = "names"
BALANCE = ("weighted", "sampler", "adjusted", "none")
PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
MAX_NAME_LENGTH = 40  # generated names stop here if no end token came (the longest training name has 20)
MAX_CLASSIFY_LENGTH = 100  # longer input is not a surname; refusing it keeps one typo from costing a long forward pass
DEFAULT_CLASSIFIER = "surnames"
EVAL_SAMPLES_PER_LANGUAGE = 100
EVAL_SAMPLE_SEED = 0
NGRAM_FILE = "ngram.json"  # a calibrated classifier's n-gram counts, beside its model.pt


def classifier_vocab() -> Vocab:
    """Every character folding can leave, so any folded input encodes; ``<pad>`` is id 0."""
    return Vocab(sorted(FOLD_ALPHABET), [PAD])


def generator_vocab() -> Vocab:
    return Vocab(sorted(FOLD_ALPHABET), [PAD, BOS, EOS])


def _check_corpus(corpus: str) -> None:
    if corpus != NAMES_CORPUS:
        raise UsageError(f"the surname tasks train on the {NAMES_CORPUS!r} corpus; pass --corpus {NAMES_CORPUS} (got {corpus!r})")


def pad_batch(seqs: Sequence[Sequence[int]], pad: int = 0) -> tuple[Tensor, Tensor]:
    """Right-padded time-major ids ``(T, N)`` and lengths ``(N,)`` (T = the longest sequence)."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    steps = int(lengths.max()) if len(seqs) else 0
    rows = [[*s, *[pad] * (steps - len(s))] for s in seqs]
    return torch.tensor(rows, dtype=torch.long).view(len(seqs), steps).T.contiguous(), lengths  # (T, N)


class IndexBatches:
    """Indices of training examples: shuffled epochs, or (with ``weights``) draws with replacement.

    Seeded by its own generator; ``state_dict`` holds the generator, the epoch's permutation and
    the position, so a resumed run draws exactly the batches it would have drawn. Under torchrun
    every rank draws the same global batch and keeps its own slice.
    """

    def __init__(self, n: int, batch_size: int, seed: int, weights: Tensor | None = None) -> None:
        self.n, self.batch_size, self.weights = n, batch_size, weights
        self.generator = torch.Generator().manual_seed(seed)
        self.perm: Tensor | None = None
        self.pos = 0

    def next(self) -> Tensor:
        if self.weights is not None:
            idx = torch.multinomial(self.weights, self.batch_size, replacement=True, generator=self.generator)
        else:
            parts, need = [], self.batch_size
            while need:
                if self.perm is None or self.pos >= self.n:
                    self.perm, self.pos = torch.randperm(self.n, generator=self.generator), 0
                part = self.perm[self.pos : self.pos + need]
                self.pos += len(part)
                need -= len(part)
                parts.append(part)
            idx = torch.cat(parts)
        return idx[rank() :: world_size()]

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "perm": self.perm, "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.perm, self.pos = state["perm"], int(state["pos"])


def _check_data(data: NamesData, task_config: dict[str, Any]) -> None:
    if data.digest != task_config["data_sha256"] or data.languages != task_config["languages"]:
        raise CorpusError("the names data or its split is not what this model was trained on")


# --------------------------------------------------------------------------- classifier


@dataclass
class ClassifyConfig:
    """Data and loss of a classifier run.

    The defaults are the shipped classifier's recipe, chosen on the validation split: logit
    adjustment at half strength trades a little accuracy on Russian and English for recall on
    the small languages (at full strength, or as a class-weighted loss, it costs more accuracy
    than it buys), and character dropout keeps the model from memorising their 50-100 training
    names (with no balancing, final validation loss 0.46 with it at 0.2, 0.75 without).
    """

    corpus: str = NAMES_CORPUS
    batch_size: int = 64
    balance: str = "adjusted"  # logit-adjusted loss, class-weighted loss, class-balanced sampler, or none
    balance_power: float = 0.5  # weight/draw probability ~ count ** -power; adjusted: logits + power * log prior
    label_smoothing: float = 0.0
    char_dropout: float = 0.2  # training only: each character is replaced by <pad> with this probability

    def __post_init__(self) -> None:
        _check_corpus(self.corpus)
        check_batch_size(self.batch_size)
        if self.balance not in BALANCE:
            raise UsageError(f"--balance must be one of {', '.join(BALANCE)}, got {self.balance!r}")
        if not 0.0 <= self.balance_power <= 1.0:
            raise UsageError(f"--balance-power must be in [0, 1], got {self.balance_power}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UsageError(f"label smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.char_dropout < 0.5:
            raise UsageError(f"--char-dropout must be in [0, 0.5), got {self.char_dropout}")


@torch.no_grad()
def name_log_probs(
    model: SequenceClassifier, vocab: Vocab, names: Sequence[str], device: torch.device, chunk: int = 2048
) -> Tensor:
    """Log probabilities of the languages ``(N, C)`` for already folded names, in batches."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(names), chunk):
        seqs = [vocab.encode(n, what=f"name {n!r}") for n in names[start : start + chunk]]
        x, lengths = pad_batch(seqs, vocab.id(PAD))
        out.append(F.log_softmax(model(x.to(device), lengths.to(device)), dim=-1).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, model.cfg.num_classes)


_NGRAM_CACHE: dict[tuple[str, float], NaiveBayes] = {}


def classifier_log_probs(loaded: Any, names: Sequence[str], device: torch.device) -> Tensor:
    """A saved classifier's log probabilities ``(N, C)`` for folded names: its network, fused with the
    n-gram model and scaled by the temperature that its config's ``calibration`` names (see
    ``chargen.calibration``); the network's own softmax when it has none.

    Each distinct name is scored once, and the names go through the network in order of length,
    so a batch is padded only to names of about its own length (the answers are the same:
    padding never reaches a name's last character).
    """
    distinct = sorted(set(names), key=lambda n: (len(n), n))
    if distinct != list(names):
        where = {n: i for i, n in enumerate(distinct)}
        return classifier_log_probs(loaded, distinct, device)[[where[n] for n in names]]
    logp = name_log_probs(loaded.model, loaded.vocab, names, device)
    doc = loaded.config.get("calibration")
    if not doc:
        return logp
    fusion = Fusion.from_json(doc)
    nb_logp = None
    if fusion.ngram_weight:
        path = loaded.path / doc.get("ngram_file", NGRAM_FILE)
        key = (str(path), path.stat().st_mtime if path.exists() else 0.0)
        if key not in _NGRAM_CACHE:
            _NGRAM_CACHE[key] = NaiveBayes.load(path)
        nb_logp = _NGRAM_CACHE[key].log_probs(names)
    return fusion.log_probs(logp, nb_logp)


def score(pred: Sequence[int], targets: Sequence[frozenset[int]], num_classes: int) -> dict[str, Any]:
    """Accuracy, balanced accuracy, per-language precision/recall and the confusion counts.

    A prediction is correct when it is any of the name's languages. Per language, every test
    name listed under it counts once: recall is the share of them predicted correctly, and a
    correct prediction sits on the confusion matrix's diagonal (rows: actual language, columns:
    guessed). Precision of language c: of the names guessed c, the share listed under c.
    Balanced accuracy is the mean recall over languages.
    """
    support = torch.zeros(num_classes)
    hits = torch.zeros(num_classes)
    guessed = torch.zeros(num_classes)
    right = torch.zeros(num_classes)
    confusion = torch.zeros(num_classes, num_classes)
    correct = 0
    for p, t in zip(pred, targets):
        ok = p in t
        correct += ok
        guessed[p] += 1
        right[p] += ok
        for c in t:
            support[c] += 1
            hits[c] += ok
            confusion[c, c if ok else p] += 1
    recall = hits / support.clamp(min=1)
    precision = right / guessed.clamp(min=1)
    present = support > 0
    return {
        "accuracy": correct / max(1, len(targets)),
        "balanced_accuracy": float(recall[present].mean()) if bool(present.any()) else 0.0,
        "recall": recall.tolist(),
        "precision": precision.tolist(),
        "support": support.long().tolist(),
        "confusion": confusion,
    }


def multi_hot(targets: Sequence[frozenset[int]], num_classes: int) -> Tensor:
    """``(N, C)`` booleans: True for each of a name's languages."""
    out = torch.zeros(len(targets), num_classes, dtype=torch.bool)
    for i, t in enumerate(targets):
        out[i, list(t)] = True
    return out


def set_nll(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """``-log p(set)`` per name: the probability of any of its languages (plain cross-entropy for one).

    With label smoothing, ``(1 - eps)`` of it plus ``eps`` times the mean of ``-log p(c)`` over all
    languages, as in ``F.cross_entropy(label_smoothing=eps)``.
    """
    logp = F.log_softmax(logits.float(), dim=-1)  # (N, C)
    loss = -torch.logsumexp(logp.masked_fill(~targets, float("-inf")), dim=-1)
    if label_smoothing:
        loss = (1 - label_smoothing) * loss - label_smoothing * logp.mean(-1)
    return loss


class _NamesBatches:
    """Resume state shared by both surname tasks: their data position is their batch sampler's."""

    batches: IndexBatches

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches.load_state_dict(state["batches"])


@register("classify")
class ClassifyTask(_NamesBatches):
    """Surname -> language, read from the core's output at each name's last character."""

    name: ClassVar[str] = "classify"
    unit: ClassVar[str] = "names"
    model_defaults: ClassVar[dict[str, Any]] = {
        "cell": "lstm", "hidden_size": 256, "num_layers": 2, "embed_dim": 32, "dropout": 0.3,
    }
    train_defaults: ClassVar[dict[str, Any]] = {
        "steps": 4000, "lr": 2e-3, "eval_every": 500, "sample_every": 10**9, "log_every": 25,
    }
    option_defaults: ClassVar[dict[str, Any]] = {"corpus": NAMES_CORPUS}  # the rest: ClassifyConfig's defaults

    def __init__(self, seed: int = 0, progress: ProgressFn | None = None, **options: Any) -> None:
        self.cfg = ClassifyConfig(**options)
        self.data = load_names(progress=progress)
        self.vocab = classifier_vocab()
        names = self.data.splits["train"]
        self.x, self.lengths = pad_batch([self.vocab.encode(n) for n in names], self.vocab.id(PAD))
        self.targets = multi_hot(self.data.targets("train"), len(self.data.languages))  # (N, C)
        counts = self.targets.sum(0).float()  # names listed under each language
        self.log_prior = (counts / counts.sum()).clamp(min=1e-12).log()
        # Inverse class frequency to a power, and a name weighs as much as all its languages
        # together (as in the balanced accuracy), scaled to a mean weight of 1 per name.
        class_weight = counts.clamp(min=1) ** -self.cfg.balance_power
        weight = (self.targets * class_weight).sum(1)
        self.weight = weight / weight.mean()
        self.batches = IndexBatches(len(names), self.cfg.batch_size, seed,
                                    self.weight if self.cfg.balance == "sampler" else None)
        self.val_names = self.data.splits["val"]
        self.val_targets = self.data.targets("val")

    def model_config(self, base: ModelConfig) -> ModelConfig:
        return ModelConfig(**{**asdict(base), "kind": "classifier", "vocab_size": len(self.vocab),
                              "num_classes": len(self.data.languages)})

    def config(self) -> dict[str, Any]:
        return {"options": asdict(self.cfg), "languages": self.data.languages, "data_sha256": self.data.digest,
                "split_sizes": self.data.sizes()["names"]}

    def train_loss(self, model: SequenceClassifier, device: torch.device) -> tuple[Tensor, int]:
        idx = self.batches.next()
        lengths = self.lengths[idx]
        x = self.x[: int(lengths.max()), idx]
        if self.cfg.char_dropout:
            drop = torch.rand(x.shape, generator=self.batches.generator) < self.cfg.char_dropout
            x = x.masked_fill(drop, self.vocab.id(PAD))
        logits = model(x.to(device), lengths.to(device))  # (N, C)
        if self.cfg.balance == "adjusted":  # logit adjustment: the model's own logits learn p(x | c)-like scores
            logits = logits + self.cfg.balance_power * self.log_prior.to(device)
        loss = set_nll(logits, self.targets[idx].to(device), self.cfg.label_smoothing)  # (N,)
        if self.cfg.balance == "weighted":
            w = self.weight[idx].to(device)
            return (loss * w).sum() / w.sum(), len(idx)
        return loss.mean(), len(idx)

    def evaluate(self, model: SequenceClassifier, device: torch.device) -> dict[str, float]:
        logp = name_log_probs(model, self.vocab, self.val_names, device)
        # val_loss: -log p(the name's languages), unweighted, whatever the training loss
        loss = set_nll(logp, multi_hot(self.val_targets, logp.shape[1]))
        m = score(logp.argmax(1).tolist(), self.val_targets, len(self.data.languages))
        return {"val_loss": float(loss.mean()), "val_accuracy": m["accuracy"],
                "val_balanced_accuracy": m["balanced_accuracy"]}

    def sample_text(self, model: SequenceClassifier, generator: torch.Generator, device: torch.device) -> None:
        return None

    @staticmethod
    def evaluate_saved(loaded: Any, device: torch.device, progress: ProgressFn | None = None) -> dict[str, Any]:
        """Test-split metrics, a per-language table, and ``confusion.png`` beside the checkpoint."""
        from chargen.plots import plot_confusion

        task_config = loaded.config["task_config"]
        data = load_names(progress=progress)
        _check_data(data, task_config)
        languages, names, targets = data.languages, data.splits["test"], data.targets("test")
        logp = classifier_log_probs(loaded, names, device)
        pred = logp.argmax(1).tolist()
        m = score(pred, targets, len(languages))
        single = [i for i, t in enumerate(targets) if len(t) == 1]
        strict = score([pred[i] for i in single], [targets[i] for i in single], len(languages))
        train_counts = [0] * len(languages)
        for _, c in data.pairs("train"):
            train_counts[c] += 1
        majority = max(range(len(languages)), key=train_counts.__getitem__)
        confusion = m["confusion"]
        rows = confusion / confusion.sum(1, keepdim=True).clamp(min=1)
        png = loaded.path / "confusion.png"
        try:
            plot_confusion(rows.tolist(), languages, png, title=f"{loaded.path.name}: test split, row-normalised")
            png_note = str(png)
        except OSError as e:
            png_note = f"not written ({e.strerror or e})"
        table = []
        for c, lang in enumerate(languages):
            off = rows[c].clone()
            off[c] = 0
            worst = int(off.argmax())
            confused = f"{languages[worst]} ({float(off[worst]):.2f})" if float(off[worst]) > 0 else "-"
            table.append([lang, train_counts[c], m["support"][c], m["precision"][c], m["recall"][c], confused])
        metrics = {
            "test_names": len(names),
            "accuracy": m["accuracy"],
            "balanced_accuracy": m["balanced_accuracy"],
            "majority_rate": sum(majority in t for t in targets) / len(targets),
            "test_names_unambiguous": len(single),
            "accuracy_unambiguous": strict["accuracy"],
            "balanced_accuracy_unambiguous": strict["balanced_accuracy"],
            "step": loaded.config.get("step", 0),
            "confusion_png": png_note,
        }
        return {"metrics": metrics, "tables": [{
            "title": "per language (test split; a guess of any of a name's languages is correct)",
            "columns": ["language", "train", "test", "precision", "recall", "most confused with"],
            "rows": table,
        }]}


def classify_names(loaded: Any, names: Sequence[str], top: int = 3) -> list[dict[str, Any]]:
    """The ``top`` likeliest languages of each name, folded as in training.

    Returns one dict per name, in order: ``{"name", "predictions": [{"language", "log_prob", "prob"}]}``,
    or ``{"name", "error"}`` for a name with no usable letter; the other names are still answered.
    """
    if loaded.config.get("task") != "classify":
        raise CheckpointError(f"{loaded.path}: this is a {loaded.config.get('task')!r} model, not a classifier")
    if top < 1:
        raise UsageError(f"--top must be at least 1, got {top}")
    languages = loaded.config["task_config"]["languages"]
    results: list[dict[str, Any]] = []
    todo: list[tuple[int, str]] = []
    for i, raw in enumerate(names):
        folded = fold(raw)
        if not has_letter(folded):
            results.append({"name": raw, "error": "no usable letter (A-Z after folding accents)"})
            continue
        if len(folded) > MAX_CLASSIFY_LENGTH:
            results.append({"name": raw[:20] + "...", "error": f"too long for a surname: {len(folded):,} characters "
                                                             f"(at most {MAX_CLASSIFY_LENGTH})"})
            continue
        try:
            loaded.vocab.encode(folded)
        except VocabularyError as e:
            results.append({"name": raw, "error": str(e)})
            continue
        results.append({"name": raw})
        todo.append((i, folded))
    if todo:
        device = next(loaded.model.parameters()).device
        logp = classifier_log_probs(loaded, [f for _, f in todo], device)
        values, ids = logp.topk(min(top, len(languages)), dim=1)
        for (i, _), vals, idx in zip(todo, values.tolist(), ids.tolist()):
            results[i]["predictions"] = [{"language": languages[c], "log_prob": v, "prob": math.exp(v)}
                                         for v, c in zip(vals, idx)]
    return results


# --------------------------------------------------------------------------- generator


@dataclass
class GenerateConfig:
    """Data of a name-generator run."""

    corpus: str = NAMES_CORPUS
    batch_size: int = 64

    def __post_init__(self) -> None:
        _check_corpus(self.corpus)
        check_batch_size(self.batch_size)


def lm_batch(vocab: Vocab, names: Sequence[str]) -> tuple[Tensor, Tensor]:
    """Inputs ``<bos> name`` and targets ``name <eos>``, both ``(T, N)``; padded targets are -100."""
    seqs = [vocab.encode(n, what=f"name {n!r}") for n in names]
    bos, eos = vocab.id(BOS), vocab.id(EOS)
    inputs, _ = pad_batch([[bos, *s] for s in seqs], vocab.id(PAD))
    targets, _ = pad_batch([[*s, eos] for s in seqs], -100)
    return inputs, targets


@torch.no_grad()
def conditional_log_probs(
    model: CharLM, vocab: Vocab, names: Sequence[str], num_conditions: int, device: torch.device, chunk: int = 512
) -> Tensor:
    """``log p(name <eos> | <bos>, language)`` for every name and every language: ``(N, L)``."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(names), chunk):
        inputs, targets = lm_batch(vocab, names[start : start + chunk])
        n = inputs.shape[1]
        cond = torch.arange(num_conditions).repeat_interleave(n)  # (L*n,): language-major
        x, y = inputs.repeat(1, num_conditions), targets.repeat(1, num_conditions)  # (T, L*n)
        logits, _, _ = model(x.to(device), None, condition=cond.to(device))
        logp = F.log_softmax(logits.float(), dim=-1)
        mask = y.to(device) >= 0
        picked = logp.gather(2, y.clamp(min=0).to(device).unsqueeze(2)).squeeze(2) * mask  # (T, L*n)
        out.append(picked.sum(0).view(num_conditions, n).T.cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, num_conditions)


@torch.no_grad()
def generate_names(
    model: CharLM,
    vocab: Vocab,
    conditions: Tensor,
    *,
    start: str = "",
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    max_length: int = MAX_NAME_LENGTH,
) -> list[str]:
    """One name per condition id in ``conditions (N,)``, all drawn together, each ending at ``<eos>``.

    The prime ``<bos> start`` runs once; then one step per character with the state carried.
    ``<pad>`` and ``<bos>`` are never drawn.
    """
    device = next(model.parameters()).device
    n = len(conditions)
    cond = conditions.to(device)
    prime = [vocab.id(BOS), *vocab.encode(start, what="--start")]
    x = torch.tensor(prime, device=device).view(-1, 1).expand(-1, n)
    logits, _, state = model(x, None, condition=cond)
    last = logits[-1]  # (N, V)
    eos = vocab.id(EOS)
    banned = [vocab.id(PAD), vocab.id(BOS)]
    out: list[list[int]] = [[] for _ in range(n)]
    done = torch.zeros(n, dtype=torch.bool, device=device)
    for _ in range(max(0, max_length - len(start))):
        last = last.clone()
        last[:, banned] = float("-inf")
        nxt = sample_next(last, temperature, top_k, generator)  # (N,)
        for i in torch.nonzero(~done & (nxt != eos)).flatten().tolist():
            out[i].append(int(nxt[i]))
        done |= nxt == eos
        if bool(done.all()):
            break
        logits, _, state = model(nxt.view(1, -1), state, condition=cond)
        last = logits[-1]
    return [start + vocab.decode(ids) for ids in out]


def _language_id(languages: list[str], lang: str) -> int:
    lowered = {language.lower(): i for i, language in enumerate(languages)}
    if lang.lower() not in lowered:
        raise UsageError(f"unknown language {lang!r}; this model knows: {', '.join(languages)}")
    return lowered[lang.lower()]


def sample_names(
    loaded: Any,
    *,
    lang: str | None = None,
    start: str | None = None,
    n: int = 1,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    batch: int = 256,
) -> Iterator[str]:
    """``n`` names from a trained generator in ``lang`` (case-insensitive; None: a random language
    for each name), each beginning with ``start`` (folded as in training)."""
    if loaded.config.get("task") != "generate":
        raise CheckpointError(f"{loaded.path}: this is a {loaded.config.get('task')!r} model, not a name generator")
    check_sampling(temperature, top_k, 0)
    languages = loaded.config["task_config"]["languages"]
    prefix = ""
    if start:
        prefix = fold(start)
        if not has_letter(prefix):
            raise UsageError(f"--start {start!r} has no usable letter (A-Z after folding accents)")
    device = next(loaded.model.parameters()).device
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else int(torch.randint(2**62, (1,))))
    fixed = None if lang is None else _language_id(languages, lang)
    for begin in range(0, n, batch):
        size = min(batch, n - begin)
        if fixed is None:
            conds = torch.randint(len(languages), (size,), generator=generator, device=device)
        else:
            conds = torch.full((size,), fixed, dtype=torch.long)
        yield from generate_names(loaded.model, loaded.vocab, conds, start=prefix, temperature=temperature,
                                  top_k=top_k, generator=generator)


@register("generate")
class GenerateTask(_NamesBatches):
    """A character LM over ``<bos> name <eos>`` with the language's embedding at every step."""

    name: ClassVar[str] = "generate"
    unit: ClassVar[str] = "chars"
    model_defaults: ClassVar[dict[str, Any]] = {
        "cell": "lstm", "hidden_size": 256, "num_layers": 2, "embed_dim": 32, "condition_dim": 16, "dropout": 0.3,
    }
    train_defaults: ClassVar[dict[str, Any]] = {
        "steps": 4000, "lr": 2e-3, "eval_every": 500, "sample_every": 500, "log_every": 25,
    }
    option_defaults: ClassVar[dict[str, Any]] = {"corpus": NAMES_CORPUS}

    def __init__(self, seed: int = 0, progress: ProgressFn | None = None, **options: Any) -> None:
        self.cfg = GenerateConfig(**options)
        self.data = load_names(progress=progress)
        self.vocab = generator_vocab()
        pairs = self.data.pairs("train")
        self.inputs, self.targets = lm_batch(self.vocab, [n for n, _ in pairs])
        self.lengths = torch.tensor([len(n) + 1 for n, _ in pairs])
        self.cond = torch.tensor([c for _, c in pairs], dtype=torch.long)
        self.batches = IndexBatches(len(pairs), self.cfg.batch_size, seed)
        val = self.data.pairs("val")
        self.val_inputs, self.val_targets = lm_batch(self.vocab, [n for n, _ in val])
        self.val_cond = torch.tensor([c for _, c in val], dtype=torch.long)

    def model_config(self, base: ModelConfig) -> ModelConfig:
        return ModelConfig(**{**asdict(base), "kind": "lm", "vocab_size": len(self.vocab),
                              "num_conditions": len(self.data.languages),
                              "condition_dim": base.condition_dim or 16})

    def config(self) -> dict[str, Any]:
        return {"options": asdict(self.cfg), "languages": self.data.languages, "data_sha256": self.data.digest,
                "split_sizes": self.data.sizes()["names"], "train_pairs": len(self.cond)}

    def train_loss(self, model: CharLM, device: torch.device) -> tuple[Tensor, int]:
        idx = self.batches.next()
        steps = int(self.lengths[idx].max())
        targets = self.targets[:steps, idx].to(device)
        _, loss, _ = model(self.inputs[:steps, idx].to(device), None, targets, condition=self.cond[idx].to(device))
        return loss, int((targets >= 0).sum())

    @torch.no_grad()
    def evaluate(self, model: CharLM, device: torch.device) -> dict[str, float]:
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        for start in range(0, self.val_cond.numel(), 1024):
            sl = slice(start, start + 1024)
            targets = self.val_targets[:, sl].to(device)
            logits, _, _ = model(self.val_inputs[:, sl].to(device), None, condition=self.val_cond[sl].to(device))
            total += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="sum").item()
            count += int((targets >= 0).sum())
        model.train(was_training)
        return {"val_loss": total / count}

    def sample_text(self, model: CharLM, generator: torch.Generator, device: torch.device) -> str:
        was_training = model.training
        model.eval()
        conds = torch.randint(len(self.data.languages), (3,), generator=generator)
        seed = int(torch.randint(2**31, (1,), generator=generator))
        names = generate_names(model, self.vocab, conds, generator=torch.Generator(device=device).manual_seed(seed))
        model.train(was_training)
        return "  ".join(f"{self.data.languages[int(c)]}: {n}" for c, n in zip(conds, names))

    @staticmethod
    def evaluate_saved(loaded: Any, device: torch.device, progress: ProgressFn | None = None) -> dict[str, Any]:
        """Held-out NLL per character with and without the language, and what generated names look like.

        - ``nll_conditioned``: ``-log p(name <eos> | language)`` over the test (name, language)
          pairs, per predicted token (the name's characters and the end token), in nats.
        - ``nll_unconditioned``: the same tokens under the model's marginal
          ``p(name) = sum_l p(l) p(name | l)``, with ``p(l)`` the languages' share of the training
          pairs: what the model knows of a name when nobody says its language. The gap is what
          the language tells about the letters.
        - ``new_share``: of 100 names drawn per language (temperature 1, seed 0), the share that
          are not training names (``in_test_share``: the share that are held-out test names).
        - ``classifier_agrees``: the share the shipped classifier (``checkpoints/surnames``) puts in
          the requested language, top-1.
        """
        from chargen import checkpoint

        task_config = loaded.config["task_config"]
        data = load_names(progress=progress)
        _check_data(data, task_config)
        languages = data.languages
        L = len(languages)
        model, vocab = loaded.model, loaded.vocab
        names = data.splits["test"]
        logp = conditional_log_probs(model, vocab, names, L, device)  # (N, L)
        prior = torch.bincount(torch.tensor([c for _, c in data.pairs("train")]), minlength=L).double()
        log_prior = (prior / prior.sum()).log()
        marginal = torch.logsumexp(logp.double() + log_prior, dim=1)  # (N,)
        cond_sum = [0.0] * L
        marg_sum = [0.0] * L
        tokens = [0] * L
        for i, name in enumerate(names):
            for lang in data.labels[name]:
                c = data.index[lang]
                cond_sum[c] -= float(logp[i, c])
                marg_sum[c] -= float(marginal[i])
                tokens[c] += len(name) + 1

        train_names, test_names = set(data.splits["train"]), set(data.splits["test"])
        generator = torch.Generator(device=device).manual_seed(EVAL_SAMPLE_SEED)
        samples = {
            lang: generate_names(model, vocab, torch.full((EVAL_SAMPLES_PER_LANGUAGE,), c, dtype=torch.long),
                                 generator=generator)
            for c, lang in enumerate(languages)
        }
        agrees: dict[str, float] | None = None
        classifier_note = f"checkpoints/{DEFAULT_CLASSIFIER}"
        try:
            clf = checkpoint.load(DEFAULT_CLASSIFIER, task="classify", device=device)
        except CheckpointError as e:
            classifier_note = f"unavailable ({e})"
        else:
            clf_langs = clf.config["task_config"]["languages"]
            agrees = {}
            for lang, generated in samples.items():
                usable = [g for g in generated if has_letter(g)]
                top = classifier_log_probs(clf, usable, device).argmax(1).tolist() if usable else []
                agrees[lang] = sum(clf_langs[t] == lang for t in top) / len(generated)
        rows = []
        for c, lang in enumerate(languages):
            generated = samples[lang]
            rows.append([
                lang, cond_sum[c] / max(1, tokens[c]), marg_sum[c] / max(1, tokens[c]),
                sum(g not in train_names for g in generated) / len(generated),
                agrees[lang] if agrees is not None else "-",
                ", ".join(generated[:4]),
            ])
        all_generated = [g for generated in samples.values() for g in generated]
        metrics: dict[str, Any] = {
            "test_pairs": len(data.pairs("test")),
            "nll_conditioned": sum(cond_sum) / sum(tokens),
            "nll_unconditioned": sum(marg_sum) / sum(tokens),
            "generated": len(all_generated),
            "new_share": sum(g not in train_names for g in all_generated) / len(all_generated),
            "in_test_share": sum(g in test_names for g in all_generated) / len(all_generated),
        }
        if agrees is not None:
            metrics["classifier_agrees"] = sum(agrees.values()) / L
        metrics["classifier"] = classifier_note
        metrics["step"] = loaded.config.get("step", 0)
        return {"metrics": metrics, "tables": [{
            "title": f"per language (test NLL in nats per character; {EVAL_SAMPLES_PER_LANGUAGE} samples each at T=1)",
            "columns": ["language", "nll | lang", "nll marginal", "new", "classifier agrees", "samples"],
            "rows": rows,
        }]}
