"""The report's experiments: each runs one library experiment (compare, probe, gradients, reference, evaluations) at the budget of the mode and writes its results under ``results/``."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from chargen import checkpoint
from chargen.experiments import exercises
from chargen.experiments.compare import compare, save_results
from chargen.experiments.gradients import gradient_flow, save_gradients
from chargen.experiments.probe import ProbeSettings, run_probe
from chargen.plots import plot_accuracy_vs_length, plot_compare
from chargen.experiments.reference import run_reference as run_reference_experiment
from chargen.reference import NumpyRNN, RNNSettings
from chargen.report.context import PRIME, SAMPLE_SEED, TEMPERATURES, Context
from chargen.generation.sample import generate
from chargen.tasks import evaluate_saved
from chargen.tracking import read_jsonl, write_json

def run_gradients(ctx: Context) -> None:
    result = gradient_flow(**ctx.budget.gradients,
                           progress=lambda done, total, cell: ctx.callbacks.on_grid("gradients", done, total, cell))
    save_gradients(result, ctx.results / "gradients")


def _run_compare(ctx: Context, key: str) -> None:
    settings = dict(getattr(ctx.budget, key.replace("-", "_")))
    out = ctx.results / key
    if out.exists():  # a rerun replaces the old comparison
        shutil.rmtree(out)
    result = compare(**settings, out_dir=out, progress=ctx.grid(key, lambda i: f"{i['cell']} seed {i['seed']}"))
    save_results(result, out / "compare.json")
    plot_compare(result, out / "compare.png")


def run_probe_grid(ctx: Context) -> None:
    settings = dict(ctx.budget.probe)
    probe_settings = ProbeSettings(**settings.pop("settings", {}))
    results = run_probe(settings.pop("cells"), settings.pop("lengths"), settings.pop("seeds"), settings=probe_settings,
                        progress=ctx.grid("probe", lambda i: f"{i['cell']} T={i['length']} seed {i['seed']}"), **settings)
    out = ctx.results / "probe"
    write_json(out / "probe.json", results)
    plot_accuracy_vs_length(results, out / "probe.png")


def run_reference(ctx: Context) -> None:
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

    run_reference_experiment(rnn=rnn, **settings, threads=1, out_dir=out, progress=progress,
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
    loaded = checkpoint.load(model, task=task)
    report = evaluate_saved(loaded, torch.device("cpu"))
    report["model"] = model
    report["command"] = loaded.config.get("command")
    report["model_config"] = loaded.config["model"]
    report["task_config"] = loaded.config["task_config"]
    write_json(ctx.results / f"{model}.json", report)
    for figure in ("confusion.png", "reliability.png"):  # reliability: a classifier's calibration
        if (loaded.path / figure).exists():
            shutil.copyfile(loaded.path / figure, ctx.results / f"{model}-{figure}")


EXERCISES = "exercises"  # results/exercises/: the course exercises' JSON (chargen.experiments.exercises)


def _run_exercise(ctx: Context, part: str) -> None:
    """One of the cheap course-exercise results (``python -m chargen.experiments.exercises --only PART``).

    The slow ones (engines, the tutorials' networks, optimisers, word2vec) are never run by the report:
    their sections name the command that makes them.
    """
    makers = {
        "hand_lstm": exercises.hand_lstm_results,
        "lstm_params": exercises.lstm_param_results,
        "observations": lambda: exercises.observation_results(ctx.results / "lm-samples.json"),
    }
    write_json(ctx.results / EXERCISES / f"{part}.json", makers[part]())


VERSION_FIELD = "result_version"  # where a results file records the version of the code that wrote it
VERSIONS_JSON = "versions.json"  # under results/: the version of each file the report's own experiments wrote
FIRST_VERSION = 1  # a results file without VERSION_FIELD was written before versions were recorded


@dataclass(frozen=True)
class Experiment:
    name: str
    path: str  # relative to results/: what must exist for the experiment to count as done
    run: Callable[[Context], None]
    about: str
    # on demand: runs only when named in only/rerun (a long study), and its absence never holds the report back
    optional: bool = False
    # recorded in its results (chargen.report.check): bump it when the code changes what this experiment writes
    version: int = 1


def run_registered_study(ctx: Context, name: str) -> None:
    """Run (or resume) the registered study ``name`` under ``results/<name>``: each run is saved as it ends."""
    from chargen.experiments.studies import run_study

    def progress(event: Any) -> None:
        if event.kind == "note":
            ctx.say(event.message)
        elif event.kind == "end":
            ctx.callbacks.on_grid(name, event.done, event.total, event.spec.label)

    outcome, _ = run_study(name, ctx.results / name, progress=progress)
    ctx.say(f"{name}: ran {outcome.ran} run(s), {outcome.found} found finished")


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
    Experiment("hand-lstm", f"{EXERCISES}/hand_lstm.json", lambda c: _run_exercise(c, "hand_lstm"),
               "the hand-weighted LSTM exercise"),
    Experiment("lstm-params", f"{EXERCISES}/lstm_params.json", lambda c: _run_exercise(c, "lstm_params"),
               "LSTM parameter counts"),
    Experiment("observations", f"{EXERCISES}/observations.json", lambda c: _run_exercise(c, "observations"),
               "word statistics of the grimm samples (after lm-samples)"),
    Experiment("baselines", "baselines/summary.json", lambda c: run_registered_study(c, "baselines"),
               "every model family at equal CPU budgets (hours: run it on its own, e.g. with chargen study)",
               optional=True),
    Experiment("sampling", "sampling/summary.json", lambda c: run_registered_study(c, "sampling"),
               "which decoding knob to use, on grimm and tiny Shakespeare (about an hour: run it with chargen study)",
               optional=True),
)
EXPERIMENT_NAMES = tuple(e.name for e in EXPERIMENTS)
