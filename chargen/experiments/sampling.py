"""The sampling study (issue 22 part 4): which decoding knob to use, measured as quality against diversity per corpus.

Per corpus three kinds of part, run in this order by ``chargen study sampling``:

- ``<corpus>-sampler`` (tinyshakespeare; grimm samples from the shipped ``checkpoints/grimm``): one
  training run of the model that samples, for a CPU budget of its own process;
- ``<corpus>-grader``: one training run of a *second*, smaller model of the same corpus with another
  seed, the grader. Quality is the grader's NLL of the samples: the sampling model never grades itself
  (it would reward exactly the mode-seeking its own temperature controls). Each model is kept as a run
  directory under ``<out>/models/`` named by its run's key, so a changed size trains a new one;
- ``<corpus>``: the grid. Plain sampling at temperature 1.0 is the reference; each sampler is a curve
  of settings across its range (``SETTINGS``). Every (setting, seed) draws ``samples`` samples of
  ``length`` characters, an equal share after each of the corpus's fixed primes, as ``-n`` batches.

Metrics of a run (``measure``): per sample the grader's nats/char, the repetition rate (the share of
its word 3-grams that already occurred earlier in it), a loop flag (``looped``) and the copy share
(characters inside spans of >= 20 characters copied from the corpus, ``chargen.generation.copies``);
per seed the distinct word 2- and 3-gram ratios over all its samples. ``summary`` gives bootstrap
intervals over samples (NLL, repetition, copy share; seeds pooled), over seeds (distinct n-grams) and
Wilson intervals for the loop rate; the frontier and the recommendation follow ``RULE``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from chargen import checkpoint
from chargen.data.corpora import load_corpus
from chargen.errors import UsageError
from chargen.experiments.harness import RunRelay
from chargen.experiments.stats import bootstrap_interval, wilson
from chargen.experiments.study import Part, RunContext, Spec, Study
from chargen.generation.copies import COPY_SPAN, CorpusIndex, novelty, text_sha256
from chargen.paths import checkpoints_dir
from chargen.generation.sample import generate_streams
from chargen.generation.score import score_lines
from chargen.tasks import build_task
from chargen.tasks.resolve import resolve_model, resolve_train

NAME = "sampling"
CORPORA = ("grimm", "tinyshakespeare")
SEEDS = (0, 1, 2)
SHIPPED = {"grimm": "grimm"}  # corpora whose sampling model ships (its name under checkpoints/); the others train one
PRIMES: dict[str, tuple[str, ...]] = {
    "grimm": ("Once upon a time", "The king said", "Then the", "\n"),
    "tinyshakespeare": ("ROMEO:\n", "First Citizen:\n", "KING HENRY VI:\n", "\n"),
}
REFERENCE = ("temperature", 1.0)
# Each sampler's curve across its range; plain temperature 1.0 is the reference every curve starts from.
SETTINGS: dict[str, tuple[float, ...]] = {
    "temperature": (0.5, 0.7, 0.85, 1.2),
    "top_k": (2, 3, 5, 10, 20),
    "top_p": (0.5, 0.7, 0.8, 0.9, 0.95),
    "min_p": (0.02, 0.05, 0.1, 0.2, 0.3),
    "typical": (0.2, 0.5, 0.7, 0.9, 0.95),
    "repetition_penalty": (1.05, 1.1, 1.2, 1.3, 1.5),
}
DIVERSITY = "distinct3"  # the frontier's diversity axis: distinct word 3-grams over a seed's samples
TOLERANCE = 0.10
RULE = (f"among the settings whose distinct word 3-gram ratio is at least {1 - TOLERANCE:.0%} of temperature "
        "1.0's, the one with the lowest grader NLL (it is on the frontier: a setting better on both axes would "
        "qualify and score lower)")
LOOP_WINDOW, LOOP_SPAN, LOOP_TIMES = 100, 20, 3
RESAMPLES = 1000  # bootstrap resamples per interval: 600 samples x 30 settings x 2 corpora stays seconds


@dataclass(frozen=True)
class ModelPlan:
    """A model the study trains: its settings (``resolve_model``'s), batching, CPU-minute budget and seed."""

    model: Mapping[str, Any]
    minutes: float
    seed: int
    steps: int | None = None  # a step budget instead (tests: a tiny model in a second)
    data: Mapping[str, Any] = field(default_factory=lambda: {"seq_len": 64, "batch_size": 32})

    def params(self, corpus: str, role: str) -> dict[str, Any]:
        return {"corpus": corpus, "role": role, "model": dict(self.model), "minutes": self.minutes,
                "steps": self.steps, **self.data}


@dataclass(frozen=True)
class Scale:
    """How big the study is: samples and length per run, the settings, the models it trains."""

    samples: int = 200
    length: int = 300
    settings: Mapping[str, Sequence[float]] = field(default_factory=lambda: dict(SETTINGS))
    primes: Mapping[str, Sequence[str]] = field(default_factory=lambda: dict(PRIMES))
    shipped: Mapping[str, str] = field(default_factory=lambda: dict(SHIPPED))
    # the grader: small enough to train in a few CPU-minutes, a seed no sampler uses
    grader: ModelPlan = ModelPlan({"cell": "lstm", "embed_dim": 32, "hidden_size": 128, "num_layers": 1,
                                   "dropout": 0.0}, minutes=4.0, seed=7919)
    # the sampler where none ships: the shipped grimm model's shape
    sampler: ModelPlan = ModelPlan({"cell": "lstm", "embed_dim": 64, "hidden_size": 256, "num_layers": 2,
                                    "dropout": 0.1}, minutes=20.0, seed=1337)

    def __post_init__(self) -> None:
        if self.samples < 1 or self.length < 1:
            raise UsageError(f"samples and length must be positive, got {self.samples} and {self.length}",
                             params=("samples", "length"))

    def config(self) -> dict[str, Any]:
        """What changes every grid run's result (the models are in it: a retrained grader is a new grid)."""
        return {"samples": self.samples, "length": self.length, "primes": {k: list(v) for k, v in self.primes.items()},
                "shipped": {corpus: [name, shipped_digest(name)] for corpus, name in self.shipped.items()},
                "grader": self.grader.params("", "grader"),
                "sampler": self.sampler.params("", "sampler"), "copy_span": COPY_SPAN}


def shipped_model(name: str) -> Path:
    return checkpoints_dir() / name


def shipped_digest(name: str) -> str | None:
    """The sha256 (16 hex digits) of a shipped model's weights: a retrained model is a new grid, never mixed in."""
    weights = shipped_model(name) / "model.pt"
    return hashlib.sha256(weights.read_bytes()).hexdigest()[:16] if weights.is_file() else None


# --------------------------------------------------------------------------- metrics of text

_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")


def words(text: str) -> list[str]:
    """The words of ``text``, lower-cased: runs of letters, with inner apostrophes (straight or curly)."""
    return _WORD.findall(text.lower())


def ngrams(items: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(items[i:i + n]) for i in range(len(items) - n + 1)]


def distinct_ratio(texts: Sequence[str], n: int) -> float | None:
    """Distinct word n-grams over all n-grams of ``texts`` (each text's own, none across two); None: no n-gram."""
    grams = [g for text in texts for g in ngrams(words(text), n)]
    return len(set(grams)) / len(grams) if grams else None


def repetition_rate(text: str, n: int = 3) -> float:
    """The share of ``text``'s word n-grams that already occurred earlier in it (0 when it has none)."""
    seen: set[tuple[str, ...]] = set()
    repeats = total = 0
    for gram in ngrams(words(text), n):
        total += 1
        repeats += gram in seen
        seen.add(gram)
    return repeats / total if total else 0.0


def looped(text: str, window: int = LOOP_WINDOW, span: int = LOOP_SPAN, times: int = LOOP_TIMES) -> bool:
    """Whether the last ``window`` characters hold a substring of at least ``span`` characters ``times`` times or
    more without overlap: a sample stuck in a loop. A longer repeated string holds its first ``span`` characters
    at the same places, so checking the ``span``-grams alone decides it."""
    tail = text[-window:]
    starts: dict[str, list[int]] = {}
    for i in range(len(tail) - span + 1):
        starts.setdefault(tail[i:i + span], []).append(i)
    for positions in starts.values():
        count, free = 0, 0
        for p in positions:  # greedy left to right: the most non-overlapping occurrences
            if p >= free:
                count, free = count + 1, p + span
        if count >= times:
            return True
    return False


# --------------------------------------------------------------------------- the grid


def setting_label(sampler: str, value: float) -> str:
    return f"{sampler}={value:g}"


def grid(corpus: str, scale: Scale, seeds: Sequence[int]) -> list[Spec]:
    """The reference then each sampler's curve, seed-major: a part stopped early compares settings on equal seeds."""
    settings = [REFERENCE, *((s, v) for s, values in scale.settings.items() for v in values if (s, v) != REFERENCE)]
    return [Spec(corpus, {"corpus": corpus, "sampler": s, "value": v}, seed, title=f"{corpus} {setting_label(s, v)}")
            for seed in seeds for s, v in settings]


def decode_for(sampler: str, value: float) -> dict[str, Any]:
    """The decoding controls of one setting (top_k is a whole number)."""
    return {sampler: int(value) if sampler == "top_k" else value}


def stream_seed(seed: int, prime_index: int) -> int:
    """The batch seed of a prime's samples: streams take ``seed + i``, so primes and seeds never share a stream."""
    return seed * 1_000_003 + prime_index * 10_007


def shares(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal counts (the first ones one larger)."""
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


class SamplingRuns:
    """The study's run function: trains its models, or samples and measures one (setting, seed)."""

    def __init__(self, out: Path, scale: Scale) -> None:
        self.out, self.scale = Path(out), scale
        self.study: Study | None = None
        self._models: dict[str, checkpoint.Loaded] = {}
        self._indexes: dict[str, CorpusIndex] = {}

    def __call__(self, spec: Spec, ctx: RunContext) -> dict[str, Any]:
        if "role" in spec.params:
            return self.train(spec, ctx)
        return self.sample(spec, ctx)

    # -- the models ---------------------------------------------------------------------------------

    def train(self, spec: Spec, ctx: RunContext) -> dict[str, Any]:
        """Train the part's model into ``<out>/models/<part>-<key>`` (built aside, renamed when whole)."""
        from chargen.train import fit  # the loop, imported where it runs

        assert self.study is not None
        p = spec.params
        final = self.out / "models" / f"{spec.part}-{self.study.key(spec)}"
        scratch = final.with_name(final.name + ".partial")
        shutil.rmtree(scratch, ignore_errors=True)  # a run killed mid-training starts again
        task = build_task("lm", seed=spec.seed, corpus=p["corpus"], seq_len=p["seq_len"], batch_size=p["batch_size"])
        never = 10**9
        budget = {"steps": p["steps"], "cpu_limit": None} if p["steps"] else {"steps": None,
                                                                             "cpu_limit": 60.0 * p["minutes"]}
        train_cfg = resolve_train("lm", {**budget, "threads": ctx.threads, "seed": spec.seed, "device": "cpu",
                                         "eval_every": never, "sample_every": never, "log_every": 50, "lr": 3e-3,
                                         "optimizer": "adam", "clip": 5.0, "warmup": 20, "schedule": "cosine"})
        relay = RunRelay()
        run = fit(task, resolve_model("lm", dict(p["model"])), train_cfg, scratch, relay,
                  command=f"chargen study sampling --only {spec.part}")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(scratch, final)
        return {"run_dir": str(final.relative_to(self.out)), "val_loss": run.metrics.get("val_loss"),
                "steps": run.step, "parameters": relay.parameters, "train_cpu_seconds": round(run.cpu_seconds, 3)}

    def model(self, corpus: str, role: str) -> checkpoint.Loaded:
        """The corpus's sampler (shipped, or trained by its part) or grader; a part not run yet is a UsageError."""
        if role == "sampler" and corpus in self.scale.shipped:
            where = shipped_model(self.scale.shipped[corpus])
        else:
            assert self.study is not None
            part = f"{corpus}-{role}"
            records = self.study.records(part)
            if not records:
                raise UsageError(f"only: the {role} of {corpus} is not trained yet; run part {part} first "
                                 f"(chargen study sampling --only {part})", params="only")
            where = self.out / records[0]["run_dir"]
        key = str(where)
        if key not in self._models:
            self._models[key] = checkpoint.load(where, task="lm")
            self._models[key].model.eval()
        return self._models[key]

    def index(self, corpus: str) -> CorpusIndex:
        """The copy index of the corpus text, cached as ``<out>/models/copies-<sha>.npz``."""
        if corpus not in self._indexes:
            text = load_corpus(corpus).text
            path = self.out / "models" / f"copies-{text_sha256(text)[:16]}.npz"
            index = CorpusIndex.load(path, text) if path.is_file() else None
            if index is None:
                index = CorpusIndex.build(text)
                path.parent.mkdir(parents=True, exist_ok=True)
                index.save(path)
            self._indexes[corpus] = index
        return self._indexes[corpus]

    # -- one grid run -------------------------------------------------------------------------------

    def sample(self, spec: Spec, ctx: RunContext) -> dict[str, Any]:
        p = spec.params
        corpus = p["corpus"]
        sampler, grader = self.model(corpus, "sampler"), self.model(corpus, "grader")
        primes = list(self.scale.primes.get(corpus) or ("\n",))
        texts: list[str] = []
        prime_of: list[str] = []
        for j, (prime, n) in enumerate(zip(primes, shares(self.scale.samples, len(primes)))):
            if n == 0:
                continue
            pieces = [""] * n
            for chunk in generate_streams(sampler.model, sampler.vocab, n=n, prime=prime, length=self.scale.length,
                                          seed=stream_seed(spec.seed, j), chunk_size=self.scale.length,
                                          decode=decode_for(p["sampler"], p["value"])):
                pieces = [a + b for a, b in zip(pieces, chunk)]
            texts += pieces
            prime_of += [prime] * n
        return measure(texts, prime_of, grader, self.index(corpus))


def measure(texts: Sequence[str], primes: Sequence[str], grader: checkpoint.Loaded,
            index: CorpusIndex) -> dict[str, Any]:
    """The metrics of one run's samples (each written after its prime): per-sample lists and per-run ratios."""
    nll: list[float | None] = []
    skipped = 0
    for prime in dict.fromkeys(primes):
        group = [t for t, q in zip(texts, primes) if q == prime]
        # a sample's own characters, predicted after its prime; skip_unknown: a character the grader lacks
        for _, score in score_lines(grader.model, grader.vocab, group, prime=prime, skip_unknown=True,
                                    batch=len(group)):
            nll.append(round(score.nats_per_char, 5) if score.chars else None)
            skipped += score.skipped
    ordered = [t for prime in dict.fromkeys(primes) for t, q in zip(texts, primes) if q == prime]
    return {
        "samples": len(ordered), "chars": sum(len(t) for t in ordered), "grader_skipped": skipped,
        "nll": nll,
        "repetition": [round(repetition_rate(t), 5) for t in ordered],
        "looped": [looped(t) for t in ordered],
        "copy_share": [round(novelty(t, index)["long_copy_share"], 5) for t in ordered],
        "distinct2": distinct_ratio(ordered, 2), "distinct3": distinct_ratio(ordered, 3),
        "example": (next(iter(dict.fromkeys(primes))) + ordered[0])[:200] if ordered else "",  # as a reader sees it
    }


# --------------------------------------------------------------------------- the study


def build(out: Path, *, seeds: Sequence[int] | None = None, minutes: float | None = None, threads: int = 1,
          corpora: Sequence[str] = CORPORA, scale: Scale | None = None) -> Study:
    """The sampling study under ``out``; ``minutes``: the CPU-minutes of every model it trains instead of its own."""
    scale = scale or Scale()
    if minutes is not None:
        if not 0 < minutes < float("inf"):
            raise UsageError(f"minutes must be a positive number, got {minutes}", params="minutes")
        scale = replace(scale, grader=replace(scale.grader, minutes=minutes),
                        sampler=replace(scale.sampler, minutes=minutes))
    seed_list = list(seeds) if seeds is not None else list(SEEDS)
    parts: list[Part] = []
    for corpus in corpora:
        if corpus not in scale.shipped:
            parts.append(Part(f"{corpus}-sampler", [Spec(f"{corpus}-sampler", scale.sampler.params(corpus, "sampler"),
                                                         scale.sampler.seed, title=f"{corpus} sampling model")],
                              f"train the model that samples ({scale.sampler.minutes:g} CPU-min)"))
        parts.append(Part(f"{corpus}-grader", [Spec(f"{corpus}-grader", scale.grader.params(corpus, "grader"),
                                                    scale.grader.seed, title=f"{corpus} grader")],
                          f"train the grader, a second smaller model ({scale.grader.minutes:g} CPU-min)"))
        specs = grid(corpus, scale, seed_list)
        parts.append(Part(corpus, specs, f"{len(specs)} runs of {scale.samples} samples x {scale.length} characters"))
    runs = SamplingRuns(out, scale)
    study = Study(NAME, parts, runs, out, threads=threads, config=scale.config())
    runs.study = study
    return study


def _interval(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    low, high = bootstrap_interval(values, resamples=RESAMPLES)
    return {"n": len(values), "mean": statistics.fmean(values), "ci": [low, high]}


def setting_row(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One setting's metrics over its seeds: bootstrap over samples (pooled) or over seeds; Wilson for loops."""
    first = records[0]["params"]
    pooled = {name: [v for r in records for v in r[name] if v is not None]
              for name in ("nll", "repetition", "copy_share")}
    loops = [bool(v) for r in records for v in r["looped"]]
    low, high = wilson(sum(loops), len(loops))
    row = {"sampler": first["sampler"], "value": first["value"],
           "label": setting_label(first["sampler"], first["value"]),
           "seeds": len(records), "samples": len(loops),
           **{name: _interval(values) for name, values in pooled.items()},
           "loop_rate": {"count": sum(loops), "n": len(loops), "rate": sum(loops) / len(loops) if loops else None,
                         "ci": [low, high]},
           "example": records[0].get("example", "")}
    for name in ("distinct2", "distinct3"):
        row[name] = _interval([r[name] for r in records if r.get(name) is not None])
    return row


def frontier(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The labels no other setting beats on both axes (higher diversity and lower NLL, one at least strictly)."""
    points = [(r["label"], r[DIVERSITY].get("mean"), r["nll"].get("mean")) for r in rows]
    points = [p for p in points if p[1] is not None and p[2] is not None]
    return [label for label, d, q in points
            if not any(d2 >= d and q2 <= q and (d2 > d or q2 < q) for _, d2, q2 in points)]


def recommend(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """``RULE`` applied: the eligible settings and the chosen one (None without the reference)."""
    reference = next((r for r in rows if (r["sampler"], r["value"]) == REFERENCE), None)
    if reference is None or reference[DIVERSITY].get("mean") is None:
        return None
    floor = (1 - TOLERANCE) * reference[DIVERSITY]["mean"]
    eligible = [r for r in rows if (r[DIVERSITY].get("mean") or -1) >= floor and r["nll"].get("mean") is not None]
    best = min(eligible, key=lambda r: r["nll"]["mean"])
    per_sampler = {}
    for r in eligible:
        if r["sampler"] not in per_sampler or r["nll"]["mean"] < per_sampler[r["sampler"]]["nll"]["mean"]:
            per_sampler[r["sampler"]] = r
    return {"label": best["label"], "floor": floor, "reference": reference["label"],
            "eligible": [r["label"] for r in eligible],
            "best_per_sampler": {s: r["label"] for s, r in per_sampler.items()}}


def summary(study: Study) -> dict[str, Any]:
    """Per corpus: the models, a row per setting with intervals, the frontier and the recommendation."""
    corpora: dict[str, Any] = {}
    for name, part in study.parts.items():
        records = study.records(name)
        if name.endswith(("-sampler", "-grader")) or not records:
            continue
        by_setting: dict[tuple[str, float], list[dict[str, Any]]] = {}
        for r in records:
            by_setting.setdefault((r["params"]["sampler"], r["params"]["value"]), []).append(r)
        rows = [setting_row(rs) for rs in by_setting.values()]
        models = {}
        for role in ("sampler", "grader"):
            found = study.records(f"{name}-{role}") if f"{name}-{role}" in study.parts else []
            models[role] = ({k: found[0].get(k) for k in ("run_dir", "val_loss", "parameters", "train_cpu_seconds")}
                            | {"model": found[0]["params"]["model"]}) if found else None
        shipped = study.config["shipped"].get(name)
        if models["sampler"] is None and shipped:
            config = checkpoint.load_config(shipped_model(shipped[0])) if shipped[1] else {}
            models["sampler"] = {"run_dir": str(shipped_model(shipped[0])), "shipped": True,
                                 "val_loss": (config.get("metrics") or {}).get("val_loss"),
                                 "model": config.get("model")}
        planned = len(part.specs(records))
        corpora[name] = {"rows": rows, "frontier": frontier(rows), "recommendation": recommend(rows),
                         "models": models, "runs": len(records), "planned": planned,
                         "complete": len(records) == planned,
                         "cpu_seconds": sum(r.get("cpu_seconds") or 0 for r in records),
                         "samples_per_run": study.config["samples"], "length": study.config["length"]}
    return {"study": NAME, "rule": RULE, "tolerance": TOLERANCE, "diversity": DIVERSITY, "corpora": corpora,
            "loop": {"window": LOOP_WINDOW, "span": LOOP_SPAN, "times": LOOP_TIMES}, "copy_span": COPY_SPAN}


__all__ = ["CORPORA", "DIVERSITY", "NAME", "PRIMES", "RULE", "SETTINGS", "ModelPlan", "SamplingRuns", "Scale", "build",
           "decode_for", "distinct_ratio", "frontier", "grid", "looped", "measure", "recommend", "repetition_rate",
           "summary", "words"]
