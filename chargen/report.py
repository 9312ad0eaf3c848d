"""`chargen report`: a Markdown report built from saved results (running the missing ones), every number traceable.

The report lives in one folder::

    report.md      the text: derivations, tables, verdicts and the figures below
    figures/       PNGs drawn from the results (copied from the commands that make them, or drawn here)
    results/       the JSON each experiment wrote: gradients/, compare-classify/, compare-lm/, probe/,
                   reference/, bptt.json, lm-samples.json, surnames.json, surnames-gen.json

``build_report`` runs each experiment whose results file is missing (or is named in ``rerun``)
with the budget of the mode -- ``FULL`` for the committed report, ``QUICK`` for CI -- through the
same library calls as the commands (``chargen compare``, ``chargen probe``, ``chargen gradients``,
``chargen reference numpy-rnn``, ``chargen evaluate``), then writes the text from the results alone.

Every number in the text goes through ``Numbers``, which formats it and remembers it, so a test can
prove that no number outside equations and code was typed by hand (``untraced_numbers``).
"""

from __future__ import annotations

import math
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chargen.errors import UsageError
from chargen.tracking import read_json, write_json

REPORT_MD = "report.md"
RESULTS = "results"
FIGURES = "figures"
PAIRS = (("rnn", "momentum-rnn"), ("lstm", "momentum-lstm"))  # base cell, its momentum version
TEMPERATURES = (0.0, 0.5, 1.0, 2.0)
PRIME = "Sleeping beauty is"
SAMPLE_SEED = 0



class ReportCallbacks:
    """Progress of a report build; the CLI draws it with rich, these defaults say nothing."""

    def on_line(self, message: str) -> None: ...  # an experiment started, read back or finished

    def on_grid(self, experiment: str, done: int, total: int, label: str) -> None: ...  # runs inside one


@dataclass(frozen=True)
class Budget:
    """How much each experiment of the report runs."""

    name: str
    gradients: dict[str, Any]  # chargen.experiments.gradients.gradient_flow keywords
    compare_classify: dict[str, Any]  # chargen.experiments.compare.compare keywords
    compare_lm: dict[str, Any]
    probe: dict[str, Any]  # chargen.experiments.probe.run_probe keywords (+ "settings": ProbeSettings fields)
    reference: dict[str, Any]  # chargen.reference.run_reference keywords ("rnn": RNNSettings fields)
    long_sample: int  # characters generated past the prime


CELLS = ["rnn", "momentum-rnn", "lstm", "momentum-lstm"]

FULL = Budget(
    name="full",
    gradients={"cells": CELLS, "length": 200, "hidden_size": 128, "seeds": 3, "batch": 16},
    compare_classify={"task": "classify", "cells": CELLS, "seeds": 3, "train": {"steps": 1500}},
    compare_lm={"task": "lm", "cells": CELLS, "seeds": 3, "task_options": {"corpus": "grimm"},
                "train": {"steps": 1000}},
    probe={"cells": CELLS, "lengths": list(range(5, 40, 5)), "seeds": 3, "steps": 1500},
    reference={"corpus": "origin", "rnn": {"hidden_size": 400, "epochs": 15}, "lstm_steps": 3000},
    long_sample=1500,
)

QUICK = Budget(
    name="quick",
    gradients={"cells": CELLS, "length": 30, "hidden_size": 16, "seeds": 1, "batch": 2},
    compare_classify={"task": "classify", "cells": CELLS, "seeds": 1, "train": {"steps": 6, "eval_every": 3},
                      "model": {"hidden_size": 16, "num_layers": 1, "embed_dim": 8}},
    compare_lm={"task": "lm", "cells": CELLS, "seeds": 1, "task_options": {"corpus": "grimm", "batch_size": 8},
                "train": {"steps": 6, "eval_every": 3}, "model": {"hidden_size": 16, "num_layers": 1, "embed_dim": 8}},
    probe={"cells": CELLS, "lengths": [5, 8], "seeds": 1, "steps": 4,
           "settings": {"hidden_size": 16, "batch_size": 16, "eval_every": 2}},
    reference={"corpus": "origin", "rnn": {"hidden_size": 8, "epochs": 1}, "lstm_steps": 2},
    long_sample=90,
)


# -- numbers ---------------------------------------------------------------------------------------


class Numbers:
    """Formats the report's numbers and remembers each string it made (see ``untraced_numbers``)."""

    def __init__(self) -> None:
        self.emitted: set[str] = set()

    def __call__(self, value: float | int | None, spec: str = ".3f") -> str:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "n/a"
        text = format(value, spec)
        self.emitted.update(_NUMBER.findall(text))
        return text

    def int(self, value: int | float) -> str:
        return self(int(value), ",d")

    def pct(self, value: float | None, digits: int = 1) -> str:
        return "n/a" if value is None else self(100 * value, f".{digits}f") + "%"

    def sci(self, value: float | None) -> str:
        return self(value, ".1e")

    def mean_std(self, stat: dict[str, Any] | None, spec: str = ".3f") -> str:
        """``mean ± std`` of a stats dict from ``chargen.experiments.compare.stats``."""
        if not stat or stat.get("mean") is None:
            return "n/a"
        if stat.get("n", 0) > 1:
            return f"{self(stat['mean'], spec)} ± {self(stat['std'], spec)}"
        return self(stat["mean"], spec)

    def list(self, values: Sequence[float | int], spec: str = "g") -> str:
        return ", ".join(self(v, spec) for v in values)


_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[-+]?\d+)?")
_UNCHECKED = re.compile(
    r"```.*?```"  # fenced code
    r"|`[^`\n]*`"  # inline code
    r"|\$\$.*?\$\$|\$[^$\n]+\$"  # math
    r"|\]\([^)]*\)"  # link and image targets
    r"|<!--.*?-->",  # comments
    re.S,
)


def untraced_numbers(markdown: str, emitted: set[str]) -> list[str]:
    """Numbers in ``markdown`` outside code, math and link targets that ``Numbers`` did not make."""
    prose = _UNCHECKED.sub(" ", markdown)
    return [n for n in _NUMBER.findall(prose) if n.lstrip("+-") not in emitted and n not in emitted]


# -- the experiments -------------------------------------------------------------------------------


@dataclass
class Context:
    """What the experiments and sections share: the folder, the budget, the numbers, the progress line."""

    out: Path
    budget: Budget
    numbers: Numbers = field(default_factory=Numbers)
    callbacks: ReportCallbacks = field(default_factory=ReportCallbacks)
    figures: list[str] = field(default_factory=list)

    @property
    def results(self) -> Path:
        return self.out / RESULTS

    def say(self, message: str) -> None:
        self.callbacks.on_line(message)

    def grid(self, experiment: str, label: Callable[[dict[str, Any]], str]) -> Callable[[int, int, dict[str, Any]], None]:
        """A progress function for ``compare`` and ``run_probe`` that reports to ``on_grid``."""
        return lambda done, total, info: self.callbacks.on_grid(experiment, done, total, label(info))

    def figure(self, source: Path, name: str) -> str:
        """Copy a figure into ``figures/`` and return its Markdown image line."""
        target = self.out / FIGURES / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if Path(source).resolve() != target.resolve():
            shutil.copyfile(source, target)
        self.figures.append(f"{FIGURES}/{name}")
        return f"![{Path(name).stem}]({FIGURES}/{name})"


def _read_json(path: Path) -> dict[str, Any]:
    return read_json(path, "report results (delete it, or --rerun its experiment, to measure it again)")


def run_gradients(ctx: Context) -> None:
    from chargen.experiments.gradients import gradient_flow, save_gradients

    result = gradient_flow(**ctx.budget.gradients,
                           progress=lambda done, total, cell: ctx.callbacks.on_grid("gradients", done, total, cell))
    save_gradients(result, ctx.results / "gradients")


def _run_compare(ctx: Context, key: str) -> None:
    from chargen.experiments.compare import compare, save_results
    from chargen.plots import plot_compare

    settings = dict(getattr(ctx.budget, key.replace("-", "_")))
    out = ctx.results / key
    if out.exists():  # a rerun replaces the old comparison
        shutil.rmtree(out)
    result = compare(**settings, out_dir=out, progress=ctx.grid(key, lambda i: f"{i['cell']} seed {i['seed']}"))
    save_results(result, out / "compare.json")
    plot_compare(result, out / "compare.png")


def run_probe_grid(ctx: Context) -> None:
    from chargen.plots import plot_accuracy_vs_length
    from chargen.experiments.probe import ProbeSettings, run_probe

    settings = dict(ctx.budget.probe)
    probe_settings = ProbeSettings(**settings.pop("settings", {}))
    results = run_probe(settings.pop("cells"), settings.pop("lengths"), settings.pop("seeds"), settings=probe_settings,
                        progress=ctx.grid("probe", lambda i: f"{i['cell']} T={i['length']} seed {i['seed']}"), **settings)
    out = ctx.results / "probe"
    write_json(out / "probe.json", results)
    plot_accuracy_vs_length(results, out / "probe.png")


def run_reference(ctx: Context) -> None:
    from chargen.reference import RNNSettings, run_reference as run

    settings = dict(ctx.budget.reference)
    rnn = RNNSettings(**settings.pop("rnn"))
    out = ctx.results / "reference"
    if out.exists():  # a rerun replaces the old results
        shutil.rmtree(out)

    def progress(info: dict[str, Any]) -> None:
        if info["event"] == "chunk":
            ctx.callbacks.on_grid("reference", info["epoch"] - 1, rnn.epochs, f"numpy RNN epoch {info['epoch']}")
        elif info["event"] == "lstm_step":
            ctx.callbacks.on_grid("reference (LSTM)", info["step"], info["steps"], f"LSTM step {info['step']}")

    run(rnn=rnn, **settings, threads=1, out_dir=out, progress=progress,
        command=f"chargen report ({ctx.budget.name} budget)")


BPTT_LENGTHS = (1, 5, 20)


def run_bptt(ctx: Context) -> None:
    """The numpy RNN's hand-written BPTT against central finite differences and torch autograd (float64)."""
    checks = [dict(length=T, **_bptt_errors(T)) for T in BPTT_LENGTHS]
    write_json(ctx.results / "bptt.json", {"vocab": _BPTT_SHAPE[0], "hidden": _BPTT_SHAPE[1],
                                            "batch": _BPTT_SHAPE[2], "eps": _BPTT_EPS, "checks": checks})


_BPTT_SHAPE = (5, 6, 3)  # vocabulary, hidden units, sequences: small enough to perturb every weight
_BPTT_EPS = 1e-6


def _bptt_errors(length: int) -> dict[str, float]:
    """Largest norm-wise relative error, over the parameters, of the hand-written gradients against
    central finite differences and against torch autograd on an ``nn.RNN(relu)`` with the same weights."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from chargen.reference import NumpyRNN

    V, H, N = _BPTT_SHAPE
    rng = np.random.default_rng(length)
    model = NumpyRNN(V, H, seed=length, hh_scale=0.9, dtype=np.float64)
    for p in model.params.values():  # off the init, so units are a mix of active and inactive
        p += rng.normal(0.0, 0.4, p.shape)
    inputs, targets = rng.integers(V, size=(length, N)), rng.integers(V, size=(length, N))
    grads = model.loss_and_grads(inputs, targets).grads

    def relative(a: Any, b: Any) -> float:
        return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300))

    fd_error = 0.0
    for name, p in model.params.items():
        numeric = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + _BPTT_EPS
            up = model.loss_and_grads(inputs, targets).loss
            p[i] = old - _BPTT_EPS
            down = model.loss_and_grads(inputs, targets).loss
            p[i] = old
            numeric[i] = (up - down) / (2 * _BPTT_EPS)
        fd_error = max(fd_error, relative(grads[name], numeric))

    t = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    x = F.one_hot(torch.tensor(inputs), V).double()  # (T, N, V)
    h = torch.zeros(N, H, dtype=torch.float64)
    logits = []
    for x_t in x:  # the same model, differentiated by torch
        h = torch.relu(x_t @ t["W_xh"].T + h @ t["W_hh"].T + t["b_h"])
        logits.append(h @ t["W_hy"].T + t["b_y"])
    F.cross_entropy(torch.stack(logits).reshape(-1, V), torch.tensor(targets).reshape(-1)).backward()
    torch_error = max(relative(grads[k], t[k].grad.numpy()) for k in t)
    return {"finite_difference_error": fd_error, "torch_error": torch_error}


def run_lm_samples(ctx: Context) -> None:
    """From the shipped grimm model: samples logged during training, samples at several temperatures, a long text."""
    import torch

    from chargen import checkpoint
    from chargen.sample import generate
    from chargen.tracking import read_jsonl

    loaded = checkpoint.load("grimm", task="lm")
    logged = list(read_jsonl(loaded.path / "samples.jsonl"))
    picks = sorted({round(i * (len(logged) - 1) / 4) for i in range(5)}) if logged else []
    chunk = int(loaded.config["task_config"]["options"]["seq_len"])
    samples = []
    for temperature in TEMPERATURES:
        text = "".join(generate(loaded.model, loaded.vocab, prime=PRIME, length=200, temperature=temperature,
                                seed=SAMPLE_SEED, chunk_size=chunk))
        samples.append({"temperature": temperature, "text": text})
    pieces = list(generate(loaded.model, loaded.vocab, prime=PRIME, length=ctx.budget.long_sample, temperature=0.5,
                           seed=SAMPLE_SEED, chunk_size=chunk))
    parameters = {name: int(p.numel()) for name, p in loaded.model.named_parameters()}
    write_json(ctx.results / "lm-samples.json", {
        "model": str(loaded.path.name), "step": loaded.config.get("step"), "model_config": loaded.config["model"],
        "metrics": loaded.config.get("metrics", {}), "command": loaded.config.get("command"),
        "vocab_size": len(loaded.vocab), "parameters": parameters, "torch": torch.__version__,
        "during_training": [logged[i] for i in picks], "temperatures": samples,
        "long": {"prime": PRIME, "temperature": 0.5, "seed": SAMPLE_SEED, "chunk": chunk,
                 "chunks": len(pieces), "text": "".join(pieces)},
    })
    if (loaded.path / "loss.png").exists():
        shutil.copyfile(loaded.path / "loss.png", ctx.results / "grimm-loss.png")


def _run_evaluation(ctx: Context, model: str, task: str) -> None:
    import torch

    from chargen import checkpoint
    from chargen.tasks import evaluate_saved

    loaded = checkpoint.load(model, task=task)
    report = evaluate_saved(loaded, torch.device("cpu"))
    report["model"] = model
    report["command"] = loaded.config.get("command")
    report["model_config"] = loaded.config["model"]
    report["task_config"] = loaded.config["task_config"]
    write_json(ctx.results / f"{model}.json", report)
    if (loaded.path / "confusion.png").exists():
        shutil.copyfile(loaded.path / "confusion.png", ctx.results / f"{model}-confusion.png")


@dataclass(frozen=True)
class Experiment:
    name: str
    path: str  # relative to results/: what must exist for the experiment to count as done
    run: Callable[[Context], None]
    about: str


EXPERIMENTS = (
    Experiment("gradients", "gradients/gradients.json", run_gradients, "gradient flow at initialisation"),
    Experiment("compare-classify", "compare-classify/compare.json", lambda c: _run_compare(c, "compare-classify"),
               "cells compared on the surname classifier"),
    Experiment("compare-lm", "compare-lm/compare.json", lambda c: _run_compare(c, "compare-lm"),
               "cells compared on the grimm language model"),
    Experiment("probe", "probe/probe.json", run_probe_grid, "palindrome memorisation probe"),
    Experiment("reference", "reference/reference.json", run_reference, "numpy RNN with hand-written BPTT"),
    Experiment("bptt", "bptt.json", run_bptt, "BPTT gradient checks"),
    Experiment("lm-samples", "lm-samples.json", run_lm_samples, "samples of the shipped grimm model"),
    Experiment("surnames", "surnames.json", lambda c: _run_evaluation(c, "surnames", "classify"),
               "the shipped surname classifier on the test split"),
    Experiment("surnames-gen", "surnames-gen.json", lambda c: _run_evaluation(c, "surnames-gen", "generate"),
               "the shipped name generator"),
)
EXPERIMENT_NAMES = tuple(e.name for e in EXPERIMENTS)


# -- the report ------------------------------------------------------------------------------------


def build_report(
    out: Path,
    *,
    quick: bool = False,
    rerun: Sequence[str] = (),
    only: Sequence[str] = (),
    callbacks: ReportCallbacks | None = None,
) -> tuple[Path | None, Numbers]:
    """Run what is missing, then write ``out/report.md``; returns its path and the numbers it holds.

    ``only`` limits the experiments that may run, so that several processes (or machines sharing the
    folder) can each measure a part; the report is written once every result exists, and its path
    is None until then.
    """
    for option, names in (("--rerun", rerun), ("--only", only)):
        unknown = sorted(set(names) - set(EXPERIMENT_NAMES))
        if unknown:
            raise UsageError(f"{option}: unknown experiment {unknown[0]!r}; known: {', '.join(EXPERIMENT_NAMES)}")
    out = Path(out)
    try:
        (out / RESULTS).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out: cannot create {out / RESULTS}: {e.strerror or e}") from None
    ctx = Context(out, QUICK if quick else FULL, callbacks=callbacks or ReportCallbacks())
    started = time.perf_counter()
    missing: list[str] = []  # experiments outside --only that have no results yet
    for experiment in EXPERIMENTS:
        done = (ctx.results / experiment.path).exists()
        if done and experiment.name not in rerun:
            ctx.say(f"{experiment.name}: reading {RESULTS}/{experiment.path}")
            continue
        if only and experiment.name not in only:
            if not done:
                missing.append(experiment.name)
            continue
        ctx.say(f"{experiment.name}: running ({experiment.about}, {ctx.budget.name} budget)")
        t0 = time.perf_counter()
        experiment.run(ctx)
        ctx.say(f"{experiment.name}: done in {time.perf_counter() - t0:.0f}s")
    if missing:
        ctx.say(f"{REPORT_MD} not written yet: no results for {', '.join(missing)} (outside --only)")
        return None, ctx.numbers
    text = "\n\n".join(section(ctx) for section in SECTIONS).rstrip() + "\n"
    path = out / REPORT_MD
    path.write_text(text, encoding="utf-8")
    ctx.say(f"wrote {path} ({len(ctx.figures)} figures) in {time.perf_counter() - started:.0f}s")
    return path, ctx.numbers


# -- sections --------------------------------------------------------------------------------------


def _header(ctx: Context) -> str:
    mode = ("the **quick** budgets (a smoke test of the pipeline: the numbers mean nothing)"
            if ctx.budget.name == "quick" else "the full budgets")
    return f"""# chargen report: momentum in recurrent cells, memorisation, and the models chargen ships

Generated by `chargen report --out {ctx.out}{' --quick' if ctx.budget.name == 'quick' else ''}` with {mode}.
Every number below is read from the JSON files in `{RESULTS}/` (written by the commands named in each
section; delete one, or pass `--rerun NAME`, to measure it again), and every figure is in `{FIGURES}/`.
Losses are in nats per character unless stated; bits per character are nats divided by ln 2.

- [Momentum: from gradient descent to the heavy ball](#momentum-from-gradient-descent-to-the-heavy-ball)
- [RNN vs MomentumRNN, LSTM vs MomentumLSTM](#rnn-vs-momentumrnn-lstm-vs-momentumlstm)
- [The palindrome probe](#the-palindrome-probe)
- [Backpropagation through time in the vanilla RNN](#backpropagation-through-time-in-the-vanilla-rnn)
- [The LSTM: gates, nonlinearities, parameters](#the-lstm-gates-nonlinearities-parameters)
- [The time-gated (phased) LSTM](#the-time-gated-phased-lstm)
- [The book language model](#the-book-language-model)
- [Surnames: the classifier and the generator](#surnames-the-classifier-and-the-generator)
- [A numpy RNN with hand-written BPTT](#a-numpy-rnn-with-hand-written-bptt)"""


def _gradient_section(ctx: Context) -> str:
    from chargen.experiments.gradients import load_gradients

    from chargen.cells import MomentumRNNCell

    n = ctx.numbers
    result = load_gradients(ctx.results / "gradients")
    figure = ctx.figure(ctx.results / "gradients" / "gradients.png", "gradients.png")
    defaults = MomentumRNNCell(1, 1)  # the momentum the measurement used, unless it was given
    mu = float(result.cell_options.get("mu", defaults.mu.item()))
    s = float(result.cell_options.get("s", defaults.s.item()))
    far = min(100, result.length - 1)  # steps back from the last one that the table compares
    rows = []
    for cell in result.cells:
        curve = result.curves[cell]
        summary = curve.summary()
        rows.append(f"| {cell} | {n(summary['hidden']['decay_per_step'])} | {n(summary['inputs']['decay_per_step'])} | "
                    f"{n.sci(curve.at_distance('hidden', far) / curve.hidden[-1])} | "
                    f"{n.sci(curve.at_distance('inputs', far) / curve.inputs[-1])} |")
    momentum_rnn = result.curves.get("momentum-rnn")
    check = ""
    if momentum_rnn is not None:
        measured = momentum_rnn.summary()["inputs"]["decay_per_step"]
        check = (f" The measurement agrees: the input gradient of the MomentumRNN decays by a factor "
                 f"{n(measured)} per step, against $\\mu =$ {n(mu, 'g')}, while the plain RNN's decays by "
                 f"{n(result.curves['rnn'].summary()['inputs']['decay_per_step'])}." if "rnn" in result.curves else "")
    return f"""## Momentum: from gradient descent to the heavy ball

**The RNN step as a gradient step.** A vanilla RNN updates $h_t = \\sigma(U h_{{t-1}} + W x_t + b)$. Nguyen et al.
(*MomentumRNN*, NeurIPS) read the input term as one step of gradient descent on the hidden state: with
$-s\\nabla F(h_{{t-1}}) \\approx W x_t$, the pre-activation is "previous state plus a descent step". Gradient descent
is slow on ill-conditioned problems, and the heavy-ball method (Polyak) fixes that by accumulating a velocity:
$p_t = \\mu p_{{t-1}} + s\\nabla F$, $h_t = h_{{t-1}} - p_t$. Putting the velocity where the step was gives the
**MomentumRNN**:

$$v_t = \\mu v_{{t-1}} + s W x_t, \\qquad h_t = \\sigma(U h_{{t-1}} + v_t + b),$$

and the **MomentumLSTM** applies the same recurrence to the stacked input projection of all four gates,
$v_t = \\mu v_{{t-1}} + s (W x_t + b_x)$, then runs the LSTM update on $v_t + U h_{{t-1}} + b_h$. In chargen the
velocity is part of the state (`(h, v)`, `(h, c, v)`), zero at the start of a sequence and carried across chunks.

**Why it eases vanishing gradients.** In the plain RNN,
$\\partial h_T/\\partial h_t = \\prod_{{k=t+1}}^{{T}} D_k U$ with $D_k = \\mathrm{{diag}}(\\sigma'(a_k))$, so its norm is at most
$(\\gamma \\lVert U\\rVert)^{{T-t}}$ where $\\gamma$ bounds $\\sigma'$: with $\\gamma\\lVert U\\rVert < 1$ the signal from step $t$
shrinks geometrically. Eliminate $v$ from the MomentumRNN with $v_{{t-1}} = a_{{t-1}} - U h_{{t-2}} - b$ (where
$a_t$ is the pre-activation):

$$a_t = U\\sigma(a_{{t-1}}) + \\mu\\, a_{{t-1}} - \\mu U \\sigma(a_{{t-2}}) + s W x_t + (1-\\mu) b .$$

The Jacobian $\\partial a_t / \\partial a_{{t-1}} = U D_{{t-1}} + \\mu I$ now holds $\\mu I$: an identity path, like the LSTM's
cell state, along which a product of $T-t$ Jacobians contains $\\mu^{{T-t}}$, independent of $U$ and of the
saturation of $\\sigma$. Directly, $\\partial v_T / \\partial x_t = s\\,\\mu^{{T-t}} W$. So where $\\gamma\\lVert U\\rVert < \\mu$ the
gradient decays like $\\mu^{{T-t}}$ instead of $(\\gamma\\lVert U\\rVert)^{{T-t}}$. **What $\\mu$ and $s$ do:** $\\mu$ sets the
decay rate of that path (closer to one: longer memory, and a stronger low-pass filter on the input); $s$ scales
the input, whose steady-state gain is $s/(1-\\mu)$ (with $\\mu$ = {n(mu, 'g')}, $s$ = {n(s, 'g')} here: a gain of
{n(s / (1 - mu), '.2f')}).{check}

{figure}

`chargen gradients` ({result.source}, $T$ = {n.int(result.length)}, hidden {n.int(result.hidden_size)},
{n.int(len(result.seeds))} seed(s) x {n.int(result.batch)} sequences, at initialisation, float64): the loss is the
last step's cross-entropy; $\\lVert\\partial L/\\partial h_t\\rVert$ is measured at every step. Decay per step is the
geometric mean ratio between neighbouring steps; the last two columns compare {n.int(far)} steps back with the last step.

| cell | decay per step, $h$ | decay per step, $x$ | $h$, {n.int(far)} back / last | $x$, {n.int(far)} back / last |
|---|---:|---:|---:|---:|
{chr(10).join(rows)}

The LSTM's additive cell state keeps more gradient than the RNN, and momentum lengthens the reach of the input
gradient of both. None of this says the trained models will be better: that is measured next."""


def _verdict(base: dict[str, Any], other: dict[str, Any], n: Numbers, lower_is_better: bool = True) -> str:
    """An honest one-line verdict on two ``stats`` dicts: a difference inside twice the seed spread is no difference."""
    if not base or not other or base.get("mean") is None or other.get("mean") is None:
        return "not measured"
    diff = other["mean"] - base["mean"]
    spread = math.hypot(base.get("std") or 0.0, other.get("std") or 0.0)
    if min(base.get("n", 0), other.get("n", 0)) < 2:
        return f"{n(diff, '+.3f')} (one seed: no spread to judge by)"
    if abs(diff) <= 2 * spread:
        return f"{n(diff, '+.3f')}, within twice the seed-to-seed spread ({n(spread)}): no clear difference"
    better = diff < 0 if lower_is_better else diff > 0
    return f"{n(diff, '+.3f')}, beyond twice the spread ({n(spread)}): momentum is **{'better' if better else 'worse'}**"


def _compare_table(result: Any, n: Numbers) -> str:
    accuracy = result.accuracy_key is not None
    head = "| cell | final val loss | " + ("held-out accuracy | balanced accuracy | " if accuracy else "") + \
        "steps to threshold | training s | units/s |"
    rule = "|---|---:|" + ("---:|---:|" if accuracy else "") + "---:|---:|---:|"
    rows = [head, rule]
    for cell in result.cells:
        s = result.summary[cell]
        row = f"| {cell} | {n.mean_std(s['val_loss'])} | "
        if accuracy:
            balanced = s.get("held_out", {}).get("balanced_accuracy") or s.get("final", {}).get("val_balanced_accuracy")
            row += f"{n.mean_std(s['accuracy'])} | {n.mean_std(balanced)} | "
        reached = s["steps_to_threshold"]
        row += (f"{n.mean_std(reached, '.0f')} ({n.int(s['reached_threshold'])}/{n.int(s['runs'])} reached) | "
                f"{n.mean_std(s['train_seconds'], '.1f')} | {n.mean_std(s['units_per_second'], ',.0f')} |")
        rows.append(row)
    return "\n".join(rows)


def _compare_section(ctx: Context) -> str:
    from chargen.experiments.compare import load_results

    n = ctx.numbers
    parts = ["## RNN vs MomentumRNN, LSTM vs MomentumLSTM"]
    parts.append("Each comparison trains every cell with the same data order, initial-weight seed, model size and "
                 "step budget (`chargen compare`); the table gives mean ± standard deviation over seeds. "
                 "A difference within twice the combined seed-to-seed spread is reported as no clear difference.")
    for key, title in (("compare-classify", "Surname classifier"), ("compare-lm", "Book language model")):
        result = load_results(ctx.results / key)
        figure = ctx.figure(ctx.results / key / "compare.png", f"{key}.png")
        model = result.model[result.cells[0]]
        budget = result.train.get("steps")
        corpus = result.task_options.get("corpus", "")
        mu = result.model.get("momentum-lstm", result.model.get("momentum-rnn", {})).get("cell_options", {})
        parts.append(f"""### {title}

Task `{result.task}` on `{corpus}`, {n.int(model['num_layers'])} x {n.int(model['hidden_size'])} cells, embedding
{n.int(model['embed_dim'])}, {n.int(budget) if budget else 'a time budget of'} steps, seeds {n.list(result.seeds, 'd')};
threshold {n(result.threshold)} ({result.threshold_rule}).{' Momentum settings: ' + ', '.join(f'{k} = {n(v, "g")}' for k, v in mu.items()) + '.' if mu else ' Momentum cells at their defaults.'}

{_compare_table(result, n)}

{figure}""")
        verdicts = []
        for base, momentum in PAIRS:
            if base in result.summary and momentum in result.summary:
                b, m = result.summary[base], result.summary[momentum]
                line = f"- **{momentum} vs {base}**, final validation loss: {_verdict(b['val_loss'], m['val_loss'], n)}"
                if result.accuracy_key:
                    line += f"; accuracy: {_verdict(b['accuracy'], m['accuracy'], n, lower_is_better=False)}"
                verdicts.append(line + ".")
        parts.append("Verdict on this budget:\n\n" + "\n".join(verdicts))
    parts.append("Momentum filters the input through $v_t = \\mu v_{t-1} + s W x_t$: every step sees a blend of the "
                 "recent characters rather than the current one alone. For next-character prediction and short "
                 "names, where the current character matters most, that blur has to be undone by the recurrent "
                 "weights, which is one reading of the results above; the paper's gains came on long-sequence "
                 "tasks (pixel-by-pixel MNIST, TIMIT), not on character language modelling.")
    return "\n\n".join(parts)


def _probe_section(ctx: Context) -> str:
    n = ctx.numbers
    results = _read_json(ctx.results / "probe" / "probe.json")
    figure = ctx.figure(ctx.results / "probe" / "probe.png", "probe.png")
    settings = results["settings"]
    lengths = results["lengths"]
    level = n.pct(settings["threshold"], 0)
    head = "| cell | " + " | ".join(f"T = {n.int(t)}" for t in lengths) + f" | >= {level} up to |"
    rows = [head, "|---|" + "---:|" * (len(lengths) + 1)]
    for cell in results["cells"]:
        by_length = {r["length"]: r for r in results["summary"] if r["cell"] == cell}
        cells = [n.mean_std(by_length.get(t)) if t in by_length else "-" for t in lengths]
        kept = results["longest_90"].get(cell)
        rows.append(f"| {cell} | " + " | ".join(cells) + f" | {'T = ' + n.int(kept) if kept else 'none'} |")
    steps = settings["steps"]
    budgets = sorted(set(steps.values()))
    budget = n.int(budgets[0]) if len(budgets) == 1 else f"{n.int(budgets[0])} to {n.int(budgets[-1])}"
    breaks = []
    for cell in results["cells"]:
        kept = results["longest_90"].get(cell)
        longer = [t for t in lengths if kept is None or t > kept]
        if longer:
            first = longer[0]
            row = next(r for r in results["summary"] if r["cell"] == cell and r["length"] == first)
            breaks.append(f"**{cell}** {f'keeps {level} up to T = ' + n.int(kept) if kept else f'never reaches {level}'} and "
                          f"falls to {n(row['mean'])} at T = {n.int(first)}")
        else:
            breaks.append(f"**{cell}** keeps {level} at every length measured")
    return f"""## The palindrome probe

A digit palindrome of length $T$ ends with the digit it starts with, so predicting its last digit from the first
$T-1$ means carrying one digit across $T-2$ distracting ones; chance is {n.pct(settings['chance'], 0)}. Each run
(`chargen probe`) trains a fresh {n.int(settings['num_layers'])}-layer model of {n.int(settings['hidden_size'])} units
with {settings['optimizer']} (learning rate {n(settings['lr'], 'g')}), batches of {n.int(settings['batch_size'])},
gradient clipping at {n(settings['clip'], 'g')}, and a budget of {budget} steps, stopping early once held-out
accuracy stays at or above {n.pct(settings['early_stop']['accuracy'])}; it is judged on {n.int(settings['held_out'])}
fixed held-out palindromes. Mean ± standard deviation over {n.int(len(results['seeds']))} seed(s):

{chr(10).join(rows)}

{figure}

Where each cell breaks: {'; '.join(breaks)}. A short budget measures how *fast* a cell learns to remember as well
as whether it can: a longer budget moves every breaking point to longer palindromes, so compare cells with each
other here, not with runs of other budgets."""


def _bptt_section(ctx: Context) -> str:
    from chargen.experiments.gradients import load_gradients

    n = ctx.numbers
    study = _read_json(ctx.results / "bptt.json")
    checks = "\n".join(f"| {n.int(c['length'])} | {n.sci(c['finite_difference_error'])} | {n.sci(c['torch_error'])} |"
                       for c in study["checks"])
    flow = load_gradients(ctx.results / "gradients")
    rnn = flow.curves["rnn"].summary()["hidden"] if "rnn" in flow.curves else None
    measured = ""
    if rnn is not None:
        far = min(100, flow.length - 1)
        measured = (f" In the measurement of the first section, the plain RNN's $\\lVert\\partial L/\\partial h_t\\rVert$ "
                    f"shrinks by a factor {n(rnn['decay_per_step'])} per step at initialisation: {n.int(far)} steps "
                    f"back it is {n.sci(flow.curves['rnn'].at_distance('hidden', far) / flow.curves['rnn'].hidden[-1])} "
                    f"of its value at the last step.")
    return f"""## Backpropagation through time in the vanilla RNN

Take the RNN of the classic exercise: $h_t = \\tanh(W_{{hx}} x_t + W_{{hh}} h_{{t-1}} + b_h)$,
$p_t = W_{{ph}} h_t + b_p$, $\\hat y_t = \\mathrm{{softmax}}(p_t)$ and the loss $L^{{(T)}} = -\\sum_k y_{{T,k}} \\log \\hat y_{{T,k}}$ at
the last step. Then

$$\\frac{{\\partial L^{{(T)}}}}{{\\partial W_{{ph}}}} = (\\hat y_T - y_T)\\, h_T^\\top ,$$

which involves step $T$ alone: the output weights see only the current state. But $h_T$ depends on $W_{{hh}}$ through
every earlier state, so

$$\\frac{{\\partial L^{{(T)}}}}{{\\partial W_{{hh}}}} = \\sum_{{k=1}}^{{T}} \\frac{{\\partial L^{{(T)}}}}{{\\partial h_T}}
\\Big(\\prod_{{j=k+1}}^{{T}} \\frac{{\\partial h_j}}{{\\partial h_{{j-1}}}}\\Big) \\frac{{\\partial^+ h_k}}{{\\partial W_{{hh}}}},
\\qquad \\frac{{\\partial h_j}}{{\\partial h_{{j-1}}}} = \\mathrm{{diag}}(1 - h_j^2)\\, W_{{hh}},$$

where $\\partial^+$ is the immediate derivative (holding $h_{{k-1}}$ fixed). The gradient of the recurrent weights is a
sum over all earlier steps, each term carrying a product of $T-k$ Jacobians. When their norms sit below one the
distant terms vanish, so the weights learn only short dependencies; above one they explode, hence gradient clipping.
Truncated BPTT cuts the sum at the chunk boundary on purpose.{measured}

chargen's numpy RNN (`chargen.reference`, ReLU units, loss averaged over every step) writes this backward pass out by
hand. Its gradients against central finite differences (step {n.sci(study['eps'])}) and against torch autograd on the
same weights, in float64 with {n.int(study['vocab'])} symbols, {n.int(study['hidden'])} units and
{n.int(study['batch'])} sequences (largest norm-wise relative error over the parameters):

| sequence length | vs finite differences | vs torch autograd |
|---|---:|---:|
{checks}"""


def _lstm_section(ctx: Context) -> str:
    n = ctx.numbers
    samples = _read_json(ctx.results / "lm-samples.json")
    cfg = samples["model_config"]
    V, E, H, layers = samples["vocab_size"], cfg["embed_dim"], cfg["hidden_size"], cfg["num_layers"]
    counted = sum(samples["parameters"].values())
    per_layer = [4 * H * ((E if i == 0 else H) + H + 2) for i in range(layers)]
    formula = V * E + sum(per_layer) + H * V + V
    worked = _hand_lstm_table(n)
    return f"""## The LSTM: gates, nonlinearities, parameters

$$\\begin{{aligned}}
i_t &= \\sigma(W_{{ii}} x_t + b_{{ii}} + W_{{hi}} h_{{t-1}} + b_{{hi}}) && \\text{{input gate: how much of the candidate to write}}\\\\
f_t &= \\sigma(W_{{if}} x_t + b_{{if}} + W_{{hf}} h_{{t-1}} + b_{{hf}}) && \\text{{forget gate: how much of the cell to keep}}\\\\
g_t &= \\tanh(W_{{ig}} x_t + b_{{ig}} + W_{{hg}} h_{{t-1}} + b_{{hg}}) && \\text{{candidate values}}\\\\
o_t &= \\sigma(W_{{io}} x_t + b_{{io}} + W_{{ho}} h_{{t-1}} + b_{{ho}}) && \\text{{output gate: how much of the cell to show}}\\\\
c_t &= f_t \\odot c_{{t-1}} + i_t \\odot g_t, \\qquad h_t = o_t \\odot \\tanh(c_t)
\\end{{aligned}}$$

The gates use the sigmoid because a gate is a soft switch: its value in $(0, 1)$ scales what passes. The candidate
and the output use $\\tanh$ because they carry signed values centred on zero, bounded so the cell cannot blow up
through $g$. The cell update is additive, so $\\partial c_t/\\partial c_{{t-1}} = \\mathrm{{diag}}(f_t)$: with the forget gate
open, gradient flows back without passing through a squashing derivative. chargen's `LSTMCell` keeps PyTorch's
layout (gate order $i, f, g, o$ stacked in `weight_ih` of shape $(4H, D)$ and `weight_hh` of shape $(4H, H)$, two
bias vectors of $4H$), so a layer with input size $D$ and $H$ units has $4H(D + H + 2)$ parameters.

**The count, checked against the shipped grimm model.** Vocabulary $V$ = {n.int(V)}, embedding $E$ = {n.int(E)},
$H$ = {n.int(H)}, {n.int(layers)} layers: $VE + 4H(E + H + 2) + 4H(2H + 2) + HV + V$ =
{' + '.join(n.int(x) for x in [V * E, *per_layer, H * V, V])} = **{n.int(formula)}**; the model itself counts
**{n.int(counted)}** parameters{' (they agree)' if formula == counted else ' (they DISAGREE)'}.

**A hand-weighted LSTM.** The classic exercise sets the weights by hand so the gates act as switches. Below,
chargen's own `LSTMCell` with such weights (`chargen.reference.trace_memory`): {worked}"""


def _hand_lstm_table(n: Numbers) -> str:
    from chargen.reference import DEMO, trace_memory
    from chargen.reference.hand_lstm import DEFAULT_GAIN

    rows = ["| t | bit | store | read | i | f | g | o | c | h | reads |", "|" + "---:|" * 11]
    for r in trace_memory(DEMO):
        shown = "" if r["output"] is None else n.int(r["output"])
        rows.append(f"| {n.int(r['t'])} | {n.int(r['bit'])} | {n.int(r['store'])} | {n.int(r['read'])} | "
                    + " | ".join(n(r[k], ".2f") for k in "ifgoch") + f" | {shown} |")
    return f"""one unit, three inputs per step (a bit, a *store* flag, a *read* flag)
and a gain $k$ = {n(DEFAULT_GAIN, 'g')}. The input gate $i = \\sigma(k(2\\,\\mathrm{{store}} - 1))$ opens only on a store step, the
forget gate $f = \\sigma(k(1 - 2\\,\\mathrm{{store}}))$ keeps the cell except then, the candidate $g = \\tanh(k(2\\,\\mathrm{{bit}}-1))$
is the bit as $\\pm 1$, and the output gate $o = \\sigma(k(2\\,\\mathrm{{read}} - 1))$ opens only on a read step; the
recurrent weights are zero. So the cell holds the stored bit whatever bits arrive in between, and shows it only when
asked:

{chr(10).join(rows)}"""


def _phased_section(ctx: Context) -> str:
    from chargen.plots import plot_time_gate

    n = ctx.numbers
    # r_on wider than the default so the triangle is visible; the leak is the paper's
    period, shift, r_on, leak = 40.0, 10.0, 0.25, 1e-3
    path = plot_time_gate(ctx.out / FIGURES / "phased-gate.png", period=period, shift=shift, r_on=r_on, leak=leak)
    ctx.figures.append(f"{FIGURES}/{path.name}")
    from chargen.cells import PhasedLSTMCell

    cell = PhasedLSTMCell(1, 1)
    default_r_on = cell.gate.r_on
    learned = sorted(name for name, _ in cell.named_parameters())
    return f"""## The time-gated (phased) LSTM

The phased LSTM (Neil, Pfeiffer and Liu, *Phased LSTM*, NIPS) adds a time gate $k_t$ per unit that is open only during a
short window of every period:

$$\\phi_t = \\frac{{(t - s) \\bmod \\tau}}{{\\tau}}, \\qquad
k_t = \\begin{{cases}} 2\\phi_t / r_{{on}} & \\phi_t < r_{{on}}/2 \\\\ 2 - 2\\phi_t / r_{{on}} & r_{{on}}/2 \\le \\phi_t < r_{{on}} \\\\
\\alpha \\phi_t & \\text{{otherwise}} \\end{{cases}}$$

and lets the ordinary LSTM update $\\tilde c_t, \\tilde h_t$ through only as far as the gate is open:
$c_t = k_t \\tilde c_t + (1 - k_t) c_{{t-1}}$, $h_t = k_t \\tilde h_t + (1 - k_t) h_{{t-1}}$. While the gate is closed the state
is copied, so gradients pass through untouched over long stretches. The leak $\\alpha$ is used only in training, where
it lets gradient reach the closed phase; at evaluation it is zero.

![phased-gate]({FIGURES}/{path.name})

The drawing shows one unit with period $\\tau$ = {n(period, 'g')}, shift $s$ = {n(shift, 'g')}, open ratio
$r_{{on}}$ = {n(r_on, 'g')} (wider than the default {n(default_r_on, 'g')}, to make the shape visible) and leak
$\\alpha$ = {n(leak, 'g')}: the gate rises over the first half of the open window, falls over the second, and is
closed but for the leak ($\\alpha\\phi_t$, too small to see) for the rest of the period. **Learned:** the period $\\tau$ and shift $s$ of every
unit (initialised log-uniformly and uniformly over the period) together with the LSTM weights; $r_{{on}}$ and $\\alpha$
are fixed. In chargen's `PhasedLSTMCell` the learned tensors are `{'`, `'.join(learned)}`; the time $t$ is a state
tensor carried across chunks, so a chunked run equals the whole one. The cell runs on the loop engine only."""


def _lm_section(ctx: Context) -> str:
    n = ctx.numbers
    samples = _read_json(ctx.results / "lm-samples.json")
    metrics = samples["metrics"]
    during = "\n".join(f"- step {n.int(s['step'])} (training loss {n(s['loss'])}): `{_inline(s['text'])}`"
                       for s in samples["during_training"])
    temps = "\n".join(f"- temperature {n(t['temperature'], 'g')}{' (greedy)' if t['temperature'] == 0 else ''}: "
                      f"`{_inline(t['text'])}`" for t in samples["temperatures"])
    long = samples["long"]
    loss_figure = ""
    if (ctx.results / "grimm-loss.png").exists():
        loss_figure = ctx.figure(ctx.results / "grimm-loss.png", "grimm-loss.png")
    cfg = samples["model_config"]
    return f"""## The book language model

The shipped model `checkpoints/{samples['model']}` is a {n.int(cfg['num_layers'])} x {n.int(cfg['hidden_size'])}
{cfg['cell'].upper()} on Grimms' Fairy Tales, trained with `{samples['command']}`; after {n.int(samples['step'])}
steps its held-out loss is {n(metrics.get('val_loss'))} nats ({n(metrics.get('val_bpc'))} bits) per character.

{loss_figure}

**Samples logged during training** (random first character, temperature one):

{during}

**Temperature** (prime "{PRIME}", seed {n.int(SAMPLE_SEED)}): at zero the model always takes its likeliest character
and soon repeats itself; at one it samples its own distribution; at two the distribution flattens towards noise.

{temps}

**Past the training length.** The model was trained on chunks of {n.int(long['chunk'])} characters. Generation
carries $(h, c)$ from chunk to chunk ({n.int(long['chunks'])} chunks here, temperature {n(long['temperature'], 'g')}),
so it can write any length, and a test proves the chunked text equals the unchunked one:

> {_inline(long['prime'] + long['text'])}"""


def _inline(text: str) -> str:
    return " ".join(text.replace("`", "'").split())


def _surnames_section(ctx: Context) -> str:
    n = ctx.numbers
    clf = _read_json(ctx.results / "surnames.json")
    gen = _read_json(ctx.results / "surnames-gen.json")
    m, g = clf["metrics"], gen["metrics"]
    confusion = ""
    if (ctx.results / "surnames-confusion.png").exists():
        confusion = ctx.figure(ctx.results / "surnames-confusion.png", "surnames-confusion.png")
    sizes = clf["task_config"].get("split_sizes", {})
    table = clf["tables"][0]
    worst = sorted(table["rows"], key=lambda r: r[4])[:3]
    hard = ", ".join(f"{r[0]} (recall {n(r[4], '.2f')}, most confused with {_confused(r[5], n)})" for r in worst)
    gen_rows = gen["tables"][0]["rows"]
    shown = "\n".join(f"| {r[0]} | {n(r[1])} | {n(r[2])} | {n.pct(r[3], 0)} | "
                      f"{n.pct(r[4], 0) if isinstance(r[4], float) else r[4]} | {r[5]} |" for r in gen_rows)
    agrees = g.get("classifier_agrees")
    return f"""## Surnames: the classifier and the generator

**Data.** The names are folded to ASCII (NFD, combining marks dropped), deduplicated, and a name listed under several
languages is one item labelled with all of them, so no test name is ever a training name. The split is stratified
and persisted (`corpora/names_split.json`): {', '.join(f'{k} {n.int(v)}' for k, v in sizes.items())} names.

**The classifier** (`checkpoints/surnames`, trained with `{clf['command']}`) on the {n.int(m['test_names'])} test
names: accuracy **{n(m['accuracy'])}**, balanced accuracy (mean recall over languages) **{n(m['balanced_accuracy'])}**;
on the {n.int(m['test_names_unambiguous'])} names with one language only: {n(m['accuracy_unambiguous'])} and
{n(m['balanced_accuracy_unambiguous'])}. Always guessing the most frequent language would score
{n(m['majority_rate'])}. The hardest languages: {hard}.

{confusion}

**The generator** (`checkpoints/surnames-gen`, `{gen['command']}`): the language's embedding enters every step and an
end token stops each name. Held-out negative log-likelihood per character is {n(g['nll_conditioned'])} nats given the
language and {n(g['nll_unconditioned'])} without it (the model's marginal over languages): the language is worth
{n(g['nll_unconditioned'] - g['nll_conditioned'])} nats per character. Of {n.int(g['generated'])} generated names,
{n.pct(g['new_share'])} are not training names ({n.pct(g['in_test_share'])} are held-out test names: plausible names
the model never saw){', and the shipped classifier puts ' + n.pct(agrees) + ' of them in the language asked for' if agrees is not None else ''}.

| language | NLL given language | NLL marginal | new | classifier agrees | samples |
|---|---:|---:|---:|---:|---|
{shown}

**How to evaluate generated names.** No single number does it. Likelihood on held-out names measures how well the
model spreads probability over real names (and the gap with and without the language measures what the condition
adds), but not what sampling produces. Novelty guards against copying the training set, and the share of samples that
are held-out *test* names is the best evidence of generalisation: the model produced a real name it never saw.
Agreement with an independent classifier checks that the condition is obeyed, within the limits of that classifier's
own confusions (see the matrix above). Human judgement of plausibility, and diversity (distinct samples), complete
the picture."""


def _confused(cell: str, n: Numbers) -> str:
    """``evaluate``'s "most confused with" cell, ``Language (0.12)``, with its share as a tracked number."""
    found = re.fullmatch(r"(.+) \(([\d.]+)\)", cell)
    return f"{found.group(1)}, {n.pct(float(found.group(2)), 0)} of its names" if found else cell


def _reference_section(ctx: Context) -> str:
    from chargen.reference import load_results

    n = ctx.numbers
    result = load_results(ctx.results / "reference")
    data, rnn = result.data, result.numpy_rnn
    settings = rnn.settings
    epochs = rnn.epochs
    rows = "\n".join(f"| {n.int(e.epoch)} | {n(e.train_loss)} | {n(e.val_loss)} | {n.pct(e.val_accuracy, 2)} |"
                      for e in epochs)
    lstm = result.lstm
    versus = "The LSTM side was skipped."
    if lstm is not None:
        model = lstm.model
        versus = (f"chargen's torch LSTM ({n.int(model['num_layers'])} x {n.int(model['hidden_size'])}, "
                  f"{n.int(lstm.parameters)} parameters, {n.int(lstm.steps)} steps = {n(lstm.epochs_seen, '.1f')} "
                  f"epochs of the same training text, {n(lstm.train_seconds, '.0f')} s) scores "
                  f"**{n.pct(lstm.final['val_accuracy'], 2)}** at {n(lstm.final['val_loss'])} nats on the same positions.")
    return f"""## A numpy RNN with hand-written BPTT

The classic exercise: a one-hidden-layer RNN of ReLU units with one-hot characters in and a softmax out, its forward
pass and backpropagation through time written by hand in numpy (`chargen.reference.numpy_rnn`), trained on
`{data['corpus']}` reduced to {n.int(len(data['symbols']))} symbols (a-z and space: {data['reduction']}). The last
{n.pct(data['val_fraction'], 0)} of the reduced text ({n.int(data['val_chars'])} symbols) is held out and never
trained on; both models are scored on the same {n.int(data['eval_positions'])} positions, read as
{n.int(data['eval_streams'])} contiguous streams. Accuracy is the share of positions where the likeliest next symbol
is the right one; always guessing the commonest symbol ('{data['majority_symbol']}') scores
{n.pct(data['majority_accuracy'], 2)}.

Numpy RNN: {n.int(settings['hidden_size'])} hidden units ({n.int(rnn.parameters)} parameters), Adam at
{n(settings['lr'], 'g')} with cosine decay, {n.int(settings['batch_size'])} streams of {n.int(settings['seq_len'])}
symbols per update with the state carried (truncated BPTT); epochs: {n.int(len(epochs))}, in
{n(rnn.train_seconds, '.0f')} s of training:

| epoch | training loss | held-out loss | held-out accuracy |
|---|---:|---:|---:|
{rows}

After the last epoch it guesses **{n.pct(rnn.final['val_accuracy'], 2)}** of the next symbols ({n(rnn.final['val_bpc'])}
bits per symbol). {versus} The held-out slice is the end of the book: the close of the last chapter, the glossary
and the index, harder to predict than the body of the text."""


SECTIONS: tuple[Callable[[Context], str], ...] = (
    _header,
    _gradient_section,
    _compare_section,
    _probe_section,
    _bptt_section,
    _lstm_section,
    _phased_section,
    _lm_section,
    _surnames_section,
    _reference_section,
)


__all__ = ["Budget", "FULL", "QUICK", "EXPERIMENT_NAMES", "Numbers", "ReportCallbacks", "build_report",
           "untraced_numbers"]
