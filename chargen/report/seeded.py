"""The exercise sections measured over seeds (the tutorials' networks, the optimiser grid): each cell is the mean ± standard deviation over seeds, each verdict backed by an interval or marked one run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chargen.experiments.optimisers import MOMENTUM
from chargen.report.numbers import Numbers
from chargen.report.questions import MAKERS, load_result, missing_result

Formatter = Numbers


# -- the tutorials' networks ---------------------------------------------------------------------------
def tutorial_section(results: Path, n: Formatter | None = None) -> str:
    n = n or Numbers()
    doc = load_result(results, "tutorial.json")
    head = r"""## The tutorials' own networks

The classification tutorial's from-scratch RNN concatenates the one-hot character and the hidden state and applies
two linear layers to the result; the hidden update is **linear** (no $\tanh$):

$$z_t = [x_t; h_{t-1}], \qquad h_t = W_{ih} z_t + b_{ih}, \qquad \hat y = \mathrm{log\,softmax}(W_{io} z_T + b_{io}).$$

The generation tutorial's network also takes the category (the language, one-hot $\ell$) at every step, and adds a
second output layer and dropout:

$$z_t = [\ell; x_t; h_{t-1}], \quad h_t = W_{ih} z_t + b_{ih}, \quad o_t = W_{io} z_t + b_{io}, \quad
\hat y_t = \mathrm{log\,softmax}\big(\mathrm{dropout}(W_{oo} [h_t; o_t] + b_{oo})\big).$$

It is trained by teacher forcing: the input is $\langle bos\rangle$ followed by the name, the target is the name followed
by $\langle eos\rangle$, and the loss is the summed negative log-likelihood $-\sum_t \log \hat y_t[\text{next char}]$; to
sample, feed $\langle bos\rangle$ and the language, draw a character from $\hat y_t$, feed it back, stop at
$\langle eos\rangle$. Both are in `chargen.experiments.tutorial` (`TutorialClassifier`, `TutorialGenerator`) and are
trained below beside one layer of chargen's Elman RNN ($h_t = \tanh(W x_t + U h_{t-1} + b)$) and LSTM, on the same
one-hot inputs, persisted split, batches, optimiser (Adam, gradient clipping) and step budget."""
    if doc is None:
        return head + "\n\n" + missing_result("tutorial.json")
    s = doc["settings"]
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in doc["runs"]:
        runs.setdefault((r["task"], r["model"], r["hidden"]), []).append(r)
    sizes = sorted({r["hidden"] for r in doc["runs"]})
    models = [m for m in s["models"] if any(k[1] == m for k in runs)]
    seeds = sorted({r.get("seed", s.get("seed", 0)) for r in doc["runs"]})
    parts = [head]
    for task, key, label in (("classify", "test_accuracy", "test accuracy"),
                             ("generate", "test_nats_per_char", "test nats per character")):
        if not any(k[0] == task for k in runs):
            continue
        pct = task == "classify"
        rows = ["| model | " + " | ".join(f"hidden {n.int(h)}" for h in sizes) + " | parameters |",
                "|---|" + "---:|" * (len(sizes) + 1)]
        for m in models:
            cells = []
            for h in sizes:
                found = runs.get((task, m, h))
                cells.append("—" if not found else show(Spread.of([r[key] for r in found]), n, pct,
                                                        mark_one=len(seeds) > 1))
            params = " / ".join(n.int(runs[(task, m, h)][0]["parameters"]) for h in sizes if (task, m, h) in runs)
            rows.append(f"| {m} | " + " | ".join(cells) + f" | {params} |")
        parts.append(f"**{'Classifier' if task == 'classify' else 'Generator'}** ({label}; "
                     f"{n.int(s['steps'])} steps of {n.int(s['batch_size'])} names; {_seeds_text(seeds, n)}):\n\n"
                     + "\n".join(rows))
        parts.append(_tutorial_answers(task, key, runs, sizes, n))
    parts.append(_verdict_rule(len(seeds), n) + " The tutorial's network is linear from its one-hot inputs to its logits "
                 "(its hidden update has no nonlinearity), whatever its width.")
    return "\n\n".join(parts)


# what one run of the tutorial study cannot tell apart: a point of accuracy, a few hundredths of a nat
NOISE = {"classify": 0.01, "generate": 0.03}


@dataclass(frozen=True)
class Spread:
    """A metric over seeds: its mean, sample standard deviation (0 for one run) and count."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        mean = sum(values) / len(values)
        var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
        return cls(mean, math.sqrt(var), len(values))

    def differs(self, other: Spread, noise: float) -> bool:
        """Whether the means differ by more than chance: with seeds on both sides, by more than twice the standard
        error of the difference (about a 95% interval that excludes zero); with one run, by more than ``noise``."""
        if self.n > 1 and other.n > 1:
            return abs(self.mean - other.mean) > 2 * math.sqrt(self.std ** 2 / self.n + other.std ** 2 / other.n)
        return abs(self.mean - other.mean) >= noise


def show(x: Spread, n: Formatter, pct: bool = False, spec: str = ".3f", *, mark_one: bool = True) -> str:
    """``mean ± std (n = k)`` over seeds, or the value and "one run" (``mark_one=False``: a table whose heading
    already says every cell is one run)."""
    mean = n.pct(x.mean) if pct else n(x.mean, spec)
    if x.n > 1:
        return f"{mean} ± {n(100 * x.std, '.1f') if pct else n(x.std, spec)} (n = {n.int(x.n)})"
    return f"{mean} (one run)" if mark_one else mean


def _seeds_text(seeds: list[int], n: Formatter) -> str:
    if len(seeds) > 1:
        return f"mean ± standard deviation over seeds {n.list(seeds)}"
    return f"one run, seed {n.int(seeds[0])}"


def _verdict_rule(count: int, n: Formatter) -> str:
    if count > 1:
        return (f"Over {n.int(count)} seeds, the answers above call two numbers different only when their means differ "
                "by more than twice the standard error of the difference (about a 95% interval that excludes zero).")
    return (f"One run and a small budget, so the answers above call a difference smaller than "
            f"{n.pct(NOISE['classify'], 0)} of accuracy or {n(NOISE['generate'], '.2f')} nats per character no clear "
            "difference, and every verdict is one run's: another seed could change it.")


def _tutorial_answers(task: str, key: str, runs: dict[tuple[str, str, int], list[dict[str, Any]]], sizes: list[int],
                      n: Formatter) -> str:
    higher = task == "classify"

    def get(model: str, hidden: int) -> Spread | None:
        found = runs.get((task, model, hidden))
        return Spread.of([r[key] for r in found]) if found else None

    def fmt(x: Spread) -> str:
        return show(x, n, pct=higher)

    def compare(new: Spread, old: Spread) -> str:
        """``better``, ``worse`` or ``no clear difference`` for ``new`` against ``old``."""
        if not new.differs(old, NOISE[task]):
            return "no clear difference"
        gain = (new.mean - old.mean) if higher else (old.mean - new.mean)
        return "better" if gain > 0 else "worse"

    lines = []
    for h in sizes:
        t, r, l_ = (get(m, h) for m in ("tutorial", "rnn", "lstm"))
        if t and l_:
            vs_tutorial = compare(l_, t)
            verdict = {"better": "yes", "worse": "no", "no clear difference": "no clear difference"}[vs_tutorial]
            text = (f"*Would an LSTM help?* At hidden {n.int(h)}: {verdict} — LSTM {fmt(l_)} against the "
                    f"tutorial network's {fmt(t)}")
            if r:
                vs_rnn = compare(l_, r)
                text += f"; against the Elman RNN's {fmt(r)}: {vs_rnn}"
                if vs_tutorial == "better" and vs_rnn == "better":
                    text += (", so the gain is partly the nonlinearity the tutorial's linear update lacks (the RNN has "
                             "it) and partly the gates")
                elif vs_tutorial == "better" and compare(r, t) == "better":
                    text += ", so the gain here is the nonlinearity the tutorial's linear update lacks, not the gates"
            lines.append(text + ".")
    if len(sizes) > 1:
        small, big = sizes[0], sizes[-1]
        bits = []
        for m in ("tutorial", "rnn", "lstm"):
            a, b = get(m, small), get(m, big)
            if a and b:
                bits.append(f"{m} {fmt(a)} → {fmt(b)} ({compare(b, a)})")
        if bits:
            lines.append(f"*Would a bigger network help?* Hidden {n.int(small)} → {n.int(big)}: " + "; ".join(bits) + ".")
    return "\n\n".join(lines)


# -- optimisers ------------------------------------------------------------------------------------
def optimisers_section(results: Path, n: Formatter | None = None) -> str:
    n = n or Numbers()
    doc = load_result(results, "optimisers.json")
    head = r"""## Optimisers: SGD, momentum, RMSProp, Adam

Plain SGD takes a step $-\eta g_t$ along the current minibatch gradient, so it zig-zags across steep, narrow valleys
and crawls along their floor, and one learning rate has to suit every parameter. **Momentum** accumulates a velocity
$v_t = \beta v_{t-1} + g_t$ and steps along it: components that flip sign from batch to batch cancel, consistent ones
add up, so it goes further along the valley floor and is less thrown about by minibatch noise. **Adaptive learning
rates** (RMSProp, Adam) divide each parameter's step by a running root-mean-square of its own gradients, so rarely
or weakly updated parameters (an embedding of a rare character, a gate bias) take larger steps and steep directions
smaller ones; Adam adds momentum on top and bias-corrects both averages. They are often said to be less sensitive to
the learning rate and, for recurrent networks, whose gradient scales differ a great deal between weights, to train
faster per step; the grid below tests both on one task."""
    if doc is None:
        return head + "\n\n" + missing_result("optimisers.json")
    s = doc["settings"]
    grid: dict[str, dict[float, Spread]] = {}  # optimiser -> lr -> final validation loss over seeds
    found: dict[tuple[str, float], list[float]] = {}
    for r in doc["runs"]:
        found.setdefault((r["optimiser"], r["lr"]), []).append(r["final_val_loss"])
    for (name, lr), losses in found.items():
        grid.setdefault(name, {})[lr] = Spread.of(losses)
    seeds = sorted({r.get("seed", s.get("seed", 0)) for r in doc["runs"]})
    rows = ["| optimiser | learning rates tried: final validation loss | best |", "|---|---|---:|"]
    best: dict[str, tuple[float, Spread]] = {}
    for name in [g for g in s["grid"] if g in grid]:
        rates = sorted(grid[name])
        lr = min(rates, key=lambda x: grid[name][x].mean)
        best[name] = (lr, grid[name][lr])
        tried = ", ".join(f"{n(x, 'g')}: {show(grid[name][x], n, mark_one=len(seeds) > 1)}" for x in rates)
        edge = (" (largest rate tried)" if lr == rates[-1] else " (smallest rate tried)" if lr == rates[0] else "") \
            if len(rates) > 1 else ""
        rows.append(f"| {name} | {tried} | {show(best[name][1], n, mark_one=len(seeds) > 1)}{edge} |")
    text = (f"**Measured** on one task: a one-layer LSTM (hidden {n.int(s['hidden_size'])}) character model of the first "
            f"{n.int(s['chars'])} characters of *{s['corpus']}* (last tenth held out), {n.int(s['steps'])} steps of "
            f"{n.int(s['batch_size'])} windows of {n.int(s['seq_len'])}, the same batches for every optimiser at a seed, "
            f"gradient norm clipped at {n(s['clip'], 'g')}; momentum {n(MOMENTUM, 'g')}; {_seeds_text(seeds, n)} "
            f"(`{MAKERS['optimisers.json']}`):\n\n" + "\n".join(rows))
    if len(best) >= 2:
        text += "\n\n" + _optimiser_verdicts(grid, best, len(seeds), n)
    return head + "\n\n" + text


OPTIMISER_NOISE = 0.03  # nats per character one run cannot tell apart
TOLERANCE = 0.1  # a rate "works" when its loss ends within this many nats of the optimiser's best


def _optimiser_verdicts(grid: dict[str, dict[float, Spread]], best: dict[str, tuple[float, Spread]], seeds: int,
                        n: Formatter) -> str:
    """The sentences that compare optimisers, each decided by ``Spread.differs`` and computed from the table."""
    def versus(a: Spread, b: Spread) -> str:
        if not a.differs(b, OPTIMISER_NOISE):
            return "no clear difference"
        return ("lower" if a.mean < b.mean else "higher") + (" (one run each)" if min(a.n, b.n) == 1 else "")

    order = sorted(best, key=lambda k: best[k][1].mean)
    low, high = order[0], order[-1]
    lines = [f"Within this budget {low} (learning rate {n(best[low][0], 'g')}) ends lowest at {show(best[low][1], n)} "
             f"nats per character and {high} highest at {show(best[high][1], n)}"
             + ("" if best[low][1].differs(best[high][1], OPTIMISER_NOISE) else ", a difference within the noise") + "."]
    if "sgd" in best and "sgd-momentum" in best:
        a, b = best["sgd"][1], best["sgd-momentum"][1]
        lines.append(f"Momentum against plain SGD, each at its best rate: {show(b, n)} against {show(a, n)}: "
                     f"{versus(b, a)}.")
    if "sgd" in best and "adam" in best:
        a, b = best["sgd"][1], best["adam"][1]
        lines.append(f"Adam against SGD, each at its best rate: {show(b, n)} against {show(a, n)}: {versus(b, a)}.")
    works = {name: sum(1 for x in grid[name].values() if x.mean <= best[name][1].mean + TOLERANCE) for name in best}
    share = {name: works[name] / len(grid[name]) for name in best}
    counts = "; ".join(f"{name} {n.int(works[name])} of {n.int(len(grid[name]))} "
                       f"({n(min(grid[name]), 'g')} to {n(max(grid[name]), 'g')})" for name in best)
    adaptive = [share[k] for k in ("rmsprop", "adam") if k in share]
    plain = [share[k] for k in ("sgd", "sgd-momentum") if k in share]
    if adaptive and plain:
        a, p = sum(adaptive) / len(adaptive), sum(plain) / len(plain)
        claim = ("less sensitive to the learning rate than plain and momentum SGD" if a > p else
                 "more sensitive to the learning rate than plain and momentum SGD" if a < p else
                 "neither more nor less sensitive to the learning rate than plain and momentum SGD")
        lines.append(f"Sensitivity to the learning rate, as the rates of each grid that end within "
                     f"{n(TOLERANCE, 'g')} nats of that optimiser's best: {counts}. On this grid the adaptive optimisers "
                     f"are {claim} (a share of {n.pct(a, 0)} of their rates against {n.pct(p, 0)}"
                     + (", one run per rate)." if seeds == 1 else f", from the means over {n.int(seeds)} seeds)."))
    at_top = [name for name, (lr, _) in best.items() if len(grid[name]) > 1 and lr == max(grid[name])]
    if at_top:
        names = " and ".join(at_top) if len(at_top) <= 2 else ", ".join(at_top[:-1]) + " and " + at_top[-1]
        lines.append(f"The best rate{'s' if len(at_top) > 1 else ''} of {names} "
                     f"{'are' if len(at_top) > 1 else 'is'} the largest tried (marked), so a wider grid might lower "
                     f"{'those losses' if len(at_top) > 1 else 'that loss'}.")
    lines.append("A small model and a short budget; " + (
        f"differences are called only when the means differ by more than twice the standard error of the difference "
        f"over the {n.int(seeds)} seeds." if seeds > 1 else
        f"one run per rate, so a difference under {n(OPTIMISER_NOISE, 'g')} nats is called no clear difference and "
        "every verdict here is one run's."))
    return " ".join(lines)
