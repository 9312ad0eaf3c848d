"""The name generator task (``generate``): a language-conditioned character LM over surnames, scoring and sampling names."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from chargen import checkpoint
from chargen.data.corpora import ProgressFn
from chargen.data.faker_names import EXTRA, training_names
from chargen.data.names import fold, has_letter, load_names
from chargen.errors import CheckpointError, UsageError, VocabularyError
from chargen.generation.logits import DecodeConfig, LogitsPipeline, decode_config
from chargen.generation.masks import CharMask
from chargen.generation.inference import make_stepper
from chargen.models import CharLM, ModelConfig
from chargen.runtime import check_batch_size
from chargen.generation.sample import Controls, make_draw, sample_steps
from chargen.tasks.base import register
from chargen.tasks.classify import classifier_log_probs
from chargen.tasks.names import (
    BOS, DEFAULT_CLASSIFIER, EOS, EVAL_SAMPLE_SEED, EVAL_SAMPLES_PER_LANGUAGE, MAX_NAME_LENGTH, NAMES_CORPUS,
    PAD, IndexBatches, NamesBatchState, check_corpus, check_data, generator_vocab, pad_batch,
)
from chargen.vocab import Vocab


@dataclass
class GenerateConfig:
    """Data of a name-generator run."""

    corpus: str = NAMES_CORPUS
    batch_size: int = 64
    extra: str = "none"  # training names beside the tutorial's split: "faker" (chargen.data.faker_names)

    def __post_init__(self) -> None:
        check_corpus(self.corpus)
        check_batch_size(self.batch_size)
        if self.extra not in EXTRA:
            raise UsageError(f"extra must be one of {', '.join(EXTRA)}, got {self.extra!r}", params="extra")


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


@torch.inference_mode()
def generate_names(
    model: CharLM,
    vocab: Vocab,
    conditions: Tensor,
    *,
    start: str = "",
    generator: torch.Generator | None = None,
    max_length: int = MAX_NAME_LENGTH,
    lean: bool = True,
    decode: Controls = None,
    masks: Sequence[CharMask] = (),
    **controls: Any,
) -> list[str]:
    """One name per condition id in ``conditions (N,)``, all drawn together, each ending at ``<eos>``.

    The prime ``<bos> start`` runs once; then one step per character with the state carried, on the
    lean path in eval mode (``chargen.generation.inference``; the model's own forward with ``lean=False``).
    ``<pad>`` and ``<bos>`` are never drawn. All names draw from the one ``generator``, as one
    ``torch.multinomial`` over the batch would. The decoding controls (``decode``, or the same names
    as keywords) run in ``chargen.generation.logits``' pipeline, ``start`` being each name's text so
    far; a temperature schedule runs over the longest name allowed.
    """
    config = decode_config(decode, **controls)
    device = next(model.parameters()).device
    n = len(conditions)
    if n == 0:
        return []
    cond = conditions.to(device)
    start_ids = vocab.encode(start, what="start")
    x = torch.tensor([vocab.id(BOS), *start_ids], device=device).view(-1, 1).expand(-1, n)
    stepper = make_stepper(model, n, cond, lean=lean)
    steps = max(0, max_length - len(start))
    pipeline = LogitsPipeline(config, n, len(vocab), length=steps, context=start_ids, masks=masks, prime=start,
                              banned=[vocab.id(PAD), vocab.id(BOS)], device=device)
    draw = make_draw(pipeline, generator, lean)
    out = torch.empty(steps, n, dtype=torch.long, device=device)
    eos = vocab.id(EOS)
    _, written = sample_steps(stepper.step, draw, stepper.prime(x), out.unbind(0), stop_id=eos,
                              done=torch.zeros(n, dtype=torch.bool, device=device))
    rows = out[:written].T.tolist()
    return [start + vocab.decode(ids[: ids.index(eos)] if eos in ids else ids) for ids in rows]


def _language_id(languages: list[str], lang: str) -> int:
    lowered = {language.lower(): i for i, language in enumerate(languages)}
    if lang.lower() not in lowered:
        raise VocabularyError(f"unknown language {lang!r}; this model knows: {', '.join(languages)}")
    return lowered[lang.lower()]


def sample_names(
    loaded: Any,
    *,
    lang: str | None = None,
    start: str | None = None,
    n: int = 1,
    seed: int | None = None,
    batch: int = 256,
    decode: Controls = None,
    pattern: str | None = None,
    include: Sequence[str] = (),
    **controls: Any,
) -> Iterator[str]:
    """``n`` names from a trained generator in ``lang`` (case-insensitive; None: a random language
    for each name), each beginning with ``start`` (folded as in training), with the decoding controls
    ``decode`` (or the same names as keywords). ``pattern``: every name (``start`` included) matches this
    regular expression in full; ``include``: every name contains each of these (``pattern.PatternMask``,
    with ``<eos>`` as the end token: a name may end only where it matches)."""
    if loaded.config.get("task") != "generate":
        raise CheckpointError(f"{loaded.path}: this is a {loaded.config.get('task')!r} model, not a name generator")
    config = decode_config(decode, **controls)
    languages = loaded.config["task_config"]["languages"]
    prefix = ""
    if start:
        prefix = fold(start)
        if not has_letter(prefix):
            raise UsageError(f"start {start!r} has no usable letter (A-Z after folding accents)", params="start")
    masks: list[CharMask] = []
    if pattern is not None or include:
        from chargen.generation.pattern import PatternMask  # the constraints extra, only when asked for

        try:
            masks.append(PatternMask(pattern, loaded.vocab, MAX_NAME_LENGTH - len(prefix), include=include, end=EOS,
                                     prime=prefix))
        except UsageError as e:  # a name's prime is its start
            if "prime" not in e.params:
                raise
            raise UsageError(str(e).replace("the prime", "the start"),
                             params=tuple("start" if p == "prime" else p for p in e.params)) from None
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
        yield from generate_names(loaded.model, loaded.vocab, conds, start=prefix, generator=generator, decode=config,
                                  masks=masks)


def sample_saved(loaded: Any, *, prime: str = "", length: int = 0, n: int = 1, seed: int | None = None,
                 lang: str | None = None, start: str | None = None, stop: Sequence[str] = (),
                 decode: DecodeConfig | None = None, pattern: str | None = None,
                 include: Sequence[str] = ()) -> Iterator[str]:
    """``n`` names from a saved generator, a line each (``prime``, ``length`` and ``stop`` are the text models');
    ``pattern`` and ``include`` as for :func:`sample_names`."""
    if stop:
        raise UsageError("stop strings are for text models; a name ends at its <eos>", params="stop")
    for name in sample_names(loaded, lang=lang, start=start, n=n, seed=seed, decode=decode, pattern=pattern,
                             include=include):
        yield name + "\n"


@register("generate")
class GenerateTask(NamesBatchState):
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
        self.train = training_names(self.data, self.cfg.extra)
        pairs = [(n, c) for n, t in zip(self.train.names, self.train.targets) for c in sorted(t)]
        self.inputs, self.targets = lm_batch(self.vocab, [n for n, _ in pairs])
        self.lengths = torch.tensor([len(n) + 1 for n, _ in pairs])
        self.cond = torch.tensor([c for _, c in pairs], dtype=torch.long)
        self.batches = IndexBatches(len(pairs), self.cfg.batch_size, seed)
        val = self.data.pairs("val")
        self.val_inputs, self.val_targets = lm_batch(self.vocab, [n for n, _ in val])
        self.val_cond = torch.tensor([c for _, c in val], dtype=torch.long)

    def model_config(self, base: ModelConfig) -> ModelConfig:
        longest = int(self.lengths.max())  # <bos> and the name, or the name and <eos>
        if base.family == "transformer" and base.context < longest:
            raise UsageError(f"context must hold the longest training name and its end token ({longest} "
                             f"positions), got {base.context}", params="context")
        return ModelConfig(**{**asdict(base), "kind": "lm", "vocab_size": len(self.vocab),
                              "num_conditions": len(self.data.languages),
                              "condition_dim": base.condition_dim or 16})

    def config(self) -> dict[str, Any]:
        return {"options": asdict(self.cfg), "languages": self.data.languages, "data_sha256": self.data.digest,
                "split_sizes": self.data.sizes()["names"], "train_pairs": len(self.cond),
                "extra_sha256": self.train.sha256}

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

    sample_saved = staticmethod(sample_saved)

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
          are not training names (the tutorial's and, if it trained on them, the Faker ones) (``in_test_share``: the share that are held-out test names).
        - ``classifier_agrees``: the share the shipped classifier (``checkpoints/surnames``) puts in
          the requested language, top-1.
        """
        task_config = loaded.config["task_config"]
        data = load_names(progress=progress)
        check_data(data, task_config)
        languages = data.languages
        L = len(languages)
        model, vocab = loaded.model, loaded.vocab
        names = data.splits["test"]
        logp = conditional_log_probs(model, vocab, names, L, device)  # (N, L)
        trained = training_names(data, task_config.get("options", {}).get("extra", "none"))
        prior = torch.bincount(torch.tensor([c for t in trained.targets for c in t]), minlength=L).double()
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

        train_names, test_names = set(trained.names), set(data.splits["test"])
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
