"""Where a training run stands: the baselines study's yardstick for its corpus and budget, and an over-fitting watch.

The baselines study (issue 23 part 4) appends one JSON line per finished run to
``docs/report/results/baselines/<corpus>.jsonl`` — this module owns that format
(:class:`BaselineRun`) and reads it; a missing or unreadable file means no yardstick, never an
error. ``chargen train`` wraps its progress callbacks in :class:`Standing`, which after each
evaluation puts the run beside the study's best at the nearest budget, and warns once when
the validation loss climbs while the training loss keeps falling (:class:`OverfitWatch`).
Messages name library parameters (``dropout``, ``early_stop``); the CLI swaps in its flags.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chargen.data.corpora import load_registry
from chargen.paths import PROJECT_ROOT
from chargen.tasks.lm_ngram import unregistered_baseline
from chargen.tracking import append_jsonl

BASELINES_DIR = PROJECT_ROOT / "docs" / "report" / "results" / "baselines"
# two-sided 95% Student t quantiles by degrees of freedom (n - 1); past 30 the normal's 1.96 is close enough
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       15: 2.131, 20: 2.086, 30: 2.042}


@dataclass(frozen=True)
class BaselineRun:
    """One finished run of the baselines study: one JSON object per line of ``<corpus>.jsonl``.

    ``label`` is what a reader sees (``"LSTM 2x256"``, ``"6-gram"``); ``family`` and ``cell`` say
    which model it was (``cell`` None outside the recurrent family); ``budget_s`` is the CPU-second
    budget the run had; ``val_loss`` its validation nats per character.
    """

    corpus: str
    budget_s: float
    label: str
    family: str
    seed: int
    val_loss: float
    cell: str | None = None
    parameters: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BaselineRun:
        """A run from one parsed line; KeyError, TypeError or ValueError when it is not one."""
        run = cls(str(d["corpus"]), float(d["budget_s"]), str(d["label"]), str(d["family"]), int(d["seed"]),
                  float(d["val_loss"]), d.get("cell"), d.get("parameters"))
        if not (math.isfinite(run.val_loss) and run.budget_s > 0):
            raise ValueError("val_loss must be finite and budget_s positive")
        return run

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def record_baseline(run: BaselineRun, directory: Path = BASELINES_DIR) -> Path:
    """Append ``run`` to its corpus's results file (the study calls this as each run ends); returns the file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{run.corpus}.jsonl"
    append_jsonl(path, run.to_dict())
    return path


@dataclass(frozen=True)
class Mark:
    """A number to stand a run beside: the mean validation loss of ``runs`` seeds, with a 95% half-width."""

    label: str
    val_loss: float
    half_width: float | None  # None: one run, no interval
    runs: int
    where: str  # "grimm at 5 CPU-min (baselines study)"

    def describe(self) -> str:
        spread = f" ± {self.half_width:.2f}" if self.half_width is not None else ""
        return f"{self.label} {self.val_loss:.2f}{spread} ({self.where})"


def mean_interval(values: list[float]) -> tuple[float, float | None]:
    """The mean and the half-width of its 95% t interval (None for a single value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    df = len(values) - 1
    t = T95[max(k for k in T95 if k <= df)] if df <= 30 else 1.96
    return mean, t * statistics.stdev(values) / math.sqrt(len(values))


def read_baselines(corpus: str, directory: Path = BASELINES_DIR) -> list[BaselineRun]:
    """Every well-formed run of ``corpus``: the baselines Study's records (``<corpus>-<N>m/runs.jsonl``, one
    folder per part) and ``<corpus>.jsonl`` lines; a missing file or a bad line is skipped."""
    runs = []
    files = sorted(directory.glob(f"{glob_escape(corpus)}-*m/runs.jsonl")) + [directory / f"{corpus}.jsonl"]
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError, ValueError):  # ValueError: a corpus name no file can have
            continue
        for line in lines:
            try:
                record = json.loads(line)
                run = BaselineRun.from_dict(record if "label" in record else from_study_record(record))
            except (ValueError, KeyError, TypeError, AttributeError):  # a line cut by a crash mid-write, or another format
                continue
            if run.corpus == corpus:
                runs.append(run)
    return runs


def glob_escape(text: str) -> str:
    """``text`` with glob's special characters taken literally."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def from_study_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A baselines Study record (``chargen.experiments.baselines``: its ``params`` and ``val_loss``) as a BaselineRun's fields."""
    p, model = record["params"], record["params"]["model"]
    kind = p["family"]
    if kind == "ngram":
        family, cell, label = "ngram", None, f"{record['order']}-gram"
    elif kind == "transformer":
        family, cell = "transformer", None
        label = f"transformer {model['n_layer']}x{model['d_model']}"
    else:
        family, cell = "recurrent", kind
        label = f"{kind.upper() if kind in ('rnn', 'gru', 'lstm') else kind} {model['num_layers']}x{model['hidden_size']}"
    return {"corpus": p["corpus"], "budget_s": 60.0 * float(p["minutes"]), "label": label, "family": family,
            "seed": record["seed"], "val_loss": record["val_loss"], "cell": cell, "parameters": record.get("parameters")}


def _budget_words(seconds: float) -> str:
    return f"{seconds / 60:g} CPU-min" if seconds >= 60 else f"{seconds:g} CPU-s"


def yardstick(runs: Iterable[BaselineRun], budget_s: float | None, family: str | None = None,
              cell: str | None = None) -> list[Mark]:
    """The study's best model at the budget nearest ``budget_s`` (the largest budget when None), and the
    study's number for this run's own kind (``family``/``cell``) at that budget when it is another one."""
    runs = list(runs)
    if not runs:
        return []
    budgets = sorted({r.budget_s for r in runs})
    budget = budgets[-1] if budget_s is None else min(budgets, key=lambda b: abs(math.log(b / max(budget_s, 1e-9))))
    by_label: dict[str, list[BaselineRun]] = {}
    for r in runs:
        if r.budget_s == budget:
            by_label.setdefault(r.label, []).append(r)
    where = f"{runs[0].corpus} at {_budget_words(budget)}, baselines study"
    marks = {label: Mark(label, *mean_interval([r.val_loss for r in group]), len(group), where)
             for label, group in by_label.items()}
    best = min(marks.values(), key=lambda m: m.val_loss)
    own = [marks[label] for label, group in by_label.items()
           if group[0].family == family and (family != "recurrent" or group[0].cell == cell)]
    return [best, *(m for m in sorted(own, key=lambda m: m.val_loss)[:1] if m is not best)]


@dataclass
class OverfitWatch:
    """Over-fitting, said once: the validation loss stays more than ``margin`` (relative) above its best for
    ``patience`` evaluations in a row, each time at a training loss below the one the best was reached at.

    Noise around a plateau stays inside the margin; a run whose training loss rises too (a learning
    rate too high, divergence) is not over-fitting and is not reported.
    """

    margin: float = 0.01
    patience: int = 2
    best_val: float = math.inf
    train_at_best: float = math.inf
    best_step: int = 0
    streak: int = 0
    fired: bool = False

    def update(self, step: int, train_loss: float | None, val_loss: float) -> str | None:
        """Feed one evaluation; the warning (naming parameters) the first time the rule holds, else None."""
        if not math.isfinite(val_loss):
            return None
        if val_loss < self.best_val:
            self.best_val, self.best_step, self.streak = val_loss, step, 0
            self.train_at_best = train_loss if train_loss is not None else math.inf
            return None
        risen = val_loss > self.best_val * (1 + self.margin)
        train_fell = train_loss is not None and train_loss < self.train_at_best
        self.streak = self.streak + 1 if risen and train_fell else 0
        if self.fired or self.streak < self.patience:
            return None
        self.fired = True
        return (f"over-fitting: the validation loss ({val_loss:.3f}) has stayed above its best ({self.best_val:.3f} "
                f"at step {self.best_step:,}) for {self.streak} evaluations while the training loss fell to "
                f"{train_loss:.3f}; remedies: more dropout, a smaller model, or stopping early with early_stop "
                "(the best checkpoint is kept either way)")


@dataclass
class Standing:
    """Training callbacks that pass everything to ``inner`` and, after each evaluation, add where the run stands.

    ``marks``: what to compare with (the study's, or an n-gram fitted on this text); ``render`` turns a
    message and the parameters it names into the line ``inner.on_note`` shows.
    """

    inner: Any
    marks: list[Mark] = field(default_factory=list)
    render: Callable[[str, tuple[str, ...]], str] = lambda message, params: message
    watch: OverfitWatch = field(default_factory=OverfitWatch)
    train_loss: float | None = None

    def __getattr__(self, name: str) -> Any:  # hooks this class does not watch go straight through
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        self.train_loss = metrics.get("loss", self.train_loss)
        self.inner.on_step(step, metrics)

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        self.inner.on_eval(step, metrics)
        val = metrics.get("val_loss")
        if val is None:
            return
        if self.marks:
            self.inner.on_note(f"val_loss {val:.3f} beside " + "; ".join(
                f"{m.describe()}: {val - m.val_loss:+.2f}" for m in self.marks))
        if warning := self.watch.update(step, self.train_loss, val):
            self.inner.on_note(self.render(warning, ("dropout", "early_stop")))


def marks_for(task: Any, corpus: str | None, family: str, cell: str | None, time_limit: float | None,
              directory: Path = BASELINES_DIR) -> tuple[list[Mark], str | None]:
    """What a language-model run on ``corpus`` is measured against, and a line saying what was fitted for it:
    the study's numbers for a registered corpus (none until the study saved some), else an n-gram of its text."""
    if not corpus:
        return [], None
    if corpus in load_registry():
        return yardstick(read_baselines(corpus, directory), time_limit, family, cell), None
    if (found := unregistered_baseline(task, corpus)) is None:
        return [], None
    choice, seconds = found
    gram = f"{choice.order}-gram"
    return ([Mark(gram, choice.nats, None, 1, "counted on this text")],
            f"baseline: {'an' if gram[0] == '8' else 'a'} {gram} gets {choice.nats:.2f} nats/char on this "
            f"validation text (counted in {seconds:.1f}s)")
