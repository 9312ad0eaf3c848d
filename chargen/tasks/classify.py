"""The surname classifier task (``classify``): surname -> language(s), its scoring, and classifying with a saved model."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from chargen.calibration import Fusion
from chargen.data.corpora import ProgressFn, load_names_raw
from chargen.data.faker_names import EXTRA, output_path, training_names
from chargen.data.labelled import read_labelled
from chargen.data.names import fold_input, has_letter, load_names, typed_case
from chargen.errors import CheckpointError, UsageError, VocabularyError
from chargen.models import ModelConfig, SequenceClassifier
from chargen.ngram import NaiveBayes
from chargen.plots import plot_confusion
from chargen.runtime import check_batch_size
from chargen.tasks.base import register
from chargen.tasks.names import (
    BALANCE, MAX_CLASSIFY_LENGTH, NAMES_CORPUS, PAD, IndexBatches, NamesBatchState, check_corpus, check_data,
    classifier_vocab, pad_batch,
)
from chargen.vocab import Vocab

NGRAM_FILE = "ngram.json"  # a calibrated classifier's n-gram counts, beside its model.pt

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
    extra: str = "none"  # training data beside the tutorial's split: "faker" (chargen.data.faker_names)
    augment: float = 0.0  # training only: chance a name is respelled (another spelling, or all lower/upper case)

    def __post_init__(self) -> None:
        check_corpus(self.corpus)
        check_batch_size(self.batch_size)
        if self.balance not in BALANCE:
            raise UsageError(f"balance must be one of {', '.join(BALANCE)}, got {self.balance!r}", params="balance")
        if not 0.0 <= self.balance_power <= 1.0:
            raise UsageError(f"balance_power must be in [0, 1], got {self.balance_power}", params="balance_power")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UsageError(f"label smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.char_dropout < 0.5:
            raise UsageError(f"char_dropout must be in [0, 0.5), got {self.char_dropout}", params="char_dropout")
        if self.extra not in EXTRA:
            raise UsageError(f"extra must be one of {', '.join(EXTRA)}, got {self.extra!r}", params="extra")
        if not 0.0 <= self.augment <= 1.0:
            raise UsageError(f"augment must be in [0, 1], got {self.augment}", params="augment")


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
            nb = NaiveBayes.load(path)
            if nb.languages != loaded.config["task_config"]["languages"]:
                raise CheckpointError(f"{path}: its languages are not the classifier's")
            _NGRAM_CACHE[key] = nb
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




@register("classify")
class ClassifyTask(NamesBatchState):
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
        raw = load_names_raw(progress=progress) if self.cfg.augment else None
        self.train = training_names(self.data, self.cfg.extra, raw)
        names = self.train.names
        self.encoded = [self.vocab.encode(n) for n in names]
        # a respelling: another spelling of the name, or the whole name in lower or upper case
        self.respelled = [[self.vocab.encode(v) for v in (*self.train.spellings.get(n, ()), n.lower(), n.upper())
                           if v != n] for n in names]
        self.targets = multi_hot(self.train.targets, len(self.data.languages))  # (N, C)
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
        dev = read_labelled(output_path("dev"), self.data.languages)
        self.dev_names = list(dev)
        self.dev_targets = [frozenset(self.data.index[lang] for lang in ls) for ls in dev.values()]

    def _batch(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """The names of ``idx``, each respelled with chance ``augment`` (draws from the batch generator)."""
        seqs = [self.encoded[i] for i in idx.tolist()]
        if self.cfg.augment:
            coins = torch.rand(len(seqs), generator=self.batches.generator).tolist()
            picks = torch.randint(1 << 30, (len(seqs),), generator=self.batches.generator).tolist()
            for j, (i, coin, pick) in enumerate(zip(idx.tolist(), coins, picks)):
                if coin < self.cfg.augment and self.respelled[i]:
                    seqs[j] = self.respelled[i][pick % len(self.respelled[i])]
        return pad_batch(seqs, self.vocab.id(PAD))

    def model_config(self, base: ModelConfig) -> ModelConfig:
        return ModelConfig(**{**asdict(base), "kind": "classifier", "vocab_size": len(self.vocab),
                              "num_classes": len(self.data.languages)})

    def config(self) -> dict[str, Any]:
        return {"options": asdict(self.cfg), "languages": self.data.languages, "data_sha256": self.data.digest,
                "split_sizes": self.data.sizes()["names"], "train_names": len(self.train.names),
                "extra_sha256": self.train.sha256}

    def train_loss(self, model: SequenceClassifier, device: torch.device) -> tuple[Tensor, int]:
        idx = self.batches.next()
        x, lengths = self._batch(idx)
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
        out: dict[str, float] = {}
        for key, names, targets in (("val", self.val_names, self.val_targets), ("dev", self.dev_names, self.dev_targets)):
            logp = name_log_probs(model, self.vocab, names, device)
            # -log p(the name's languages), unweighted, whatever the training loss
            loss = set_nll(logp, multi_hot(targets, logp.shape[1]))
            m = score(logp.argmax(1).tolist(), targets, len(self.data.languages))
            out.update({f"{key}_loss": float(loss.mean()), f"{key}_accuracy": m["accuracy"],
                        f"{key}_balanced_accuracy": m["balanced_accuracy"]})
        return out

    def sample_text(self, model: SequenceClassifier, generator: torch.Generator, device: torch.device) -> None:
        return None

    @staticmethod
    def evaluate_saved(loaded: Any, device: torch.device, progress: ProgressFn | None = None) -> dict[str, Any]:
        """Test-split metrics, a per-language table, and ``confusion.png`` beside the checkpoint."""
        task_config = loaded.config["task_config"]
        data = load_names(progress=progress)
        check_data(data, task_config)
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
    """The ``top`` likeliest languages of each name, folded as user input (``names.fold_input``), and
    written in the lists' case if typed all in lower or upper case (``names.typed_case``).

    Returns one dict per name, in order: ``{"name", "predictions": [{"language", "log_prob", "prob"}],
    "unsure"}``, or ``{"name", "error"}`` for a name that cannot be read (no Latin letter, or
    longer than any surname); the other names are still answered. ``unsure`` is True when the top
    probability is below the threshold the calibration chose on the development names (a guess
    there is wrong more often than right); False when there is none.
    """
    if loaded.config.get("task") != "classify":
        raise CheckpointError(f"{loaded.path}: this is a {loaded.config.get('task')!r} model, not a classifier")
    if top < 1:
        raise UsageError(f"top must be at least 1, got {top}", params="top")
    languages = loaded.config["task_config"]["languages"]
    results: list[dict[str, Any]] = []
    todo: list[tuple[int, str]] = []
    for i, raw in enumerate(names):
        folded = typed_case(fold_input(raw))
        if not has_letter(folded):
            what = ("no usable letter (A-Z after folding accents)" if not any(c.isalpha() for c in raw) else
                    "no usable letter: the model reads names in the Latin alphabet (transliterate it first)")
            results.append({"name": raw if len(raw) <= 40 else raw[:20] + "...", "error": what})
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
        threshold = float(loaded.config.get("calibration", {}).get("threshold", 0.0))
        for (i, _), vals, idx in zip(todo, values.tolist(), ids.tolist()):
            results[i]["predictions"] = [{"language": languages[c], "log_prob": v, "prob": math.exp(v)}
                                         for v, c in zip(vals, idx)]
            results[i]["unsure"] = math.exp(vals[0]) < threshold
    return results
