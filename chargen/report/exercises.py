"""The report's course-exercise sections: Markdown built from the JSON under ``results/exercises/`` (the question map
is ``chargen.report.questions``).

Every function takes the exercises results folder (``docs/report/results/exercises``) and an optional
number formatter with the interface of the report's ``Numbers`` (``n(value, spec)``, ``n.int``,
``n.pct``, ``n.sci``, ``n.list``), so each number printed is traced to a results file. A section whose results
file is missing says which command makes it instead of failing. The files and their makers:

- ``word2vec.json``: ``OMP_NUM_THREADS=1 nice -n 10 python benchmarks/word2vec.py``
- ``tutorial.json``: ``chargen.experiments.tutorial.run_tutorial_study``
- ``optimisers.json``: ``chargen.experiments.optimisers.run_optimisers``
- ``hand_lstm.json``, ``lstm_params.json``, ``engines.json``, ``observations.json``:
  ``python -m chargen.experiments.exercises``
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chargen.report.context import public_command
from chargen.report.numbers import Numbers
from chargen.report.seeded import Spread, optimisers_section, show, tutorial_section

from chargen.experiments.exercises import CURVES, PARITY
from chargen.report.questions import (MAKERS, QUESTIONS, _anchor, load_result, missing_result, question_map,  # noqa: F401  (read here too)
                                      question_map_section)

# the word2vec issue's targets: WordSim353 within a band of gensim, the loss, five epochs' time on the cores
TARGETS = {"wordsim_band": 0.05, "bce": 0.40, "epochs": 5, "seconds": 180, "cores": 2}


Formatter = Numbers  # the report's, or a fresh one when a section is built on its own


# -- word2vec ------------------------------------------------------------------------------------
def word2vec_section(results: Path, n: Formatter | None = None) -> str:
    n = n or Numbers()
    doc = load_result(results, "word2vec.json")
    theory = r"""## word2vec: skip-gram with full softmax and negative sampling

**The softmax loss is a cross-entropy.** Skip-gram predicts a context word $o$ from a centre word $c$ with
$P(w_o \mid w_c) = \exp(u_o^\top v_c) / \sum_{i} \exp(u_i^\top v_c)$. The true distribution $y$ puts all its mass on
$o$, so the cross-entropy $-\sum_w y_w \log \hat y_w$ between $y$ and the predicted $\hat y = P(\cdot \mid w_c)$ keeps one
term: $J = -\log P(w_o \mid w_c)$.

**Its gradient is observed minus expected.**

$$\frac{\partial J}{\partial v_c} = -u_o + \sum_{j} P(w_j \mid w_c)\, u_j = -\Big(u_o - \mathbb{E}_{j \sim P(\cdot\mid w_c)}[u_j]\Big),
\qquad \frac{\partial J}{\partial u_j} = \big(P(w_j \mid w_c) - [j = o]\big)\, v_c .$$

The update moves $v_c$ towards the vector of the word actually observed and away from the vectors the model expected.
Both gradients touch every one of the $|V|$ output vectors: $O(|V| d)$ per pair, and the gradient in $U$ is dense, so
a large vocabulary makes every update as slow as the vocabulary is large.

**Negative sampling** replaces the normaliser by $K$ noise words drawn from the unigram distribution raised to $3/4$:

$$J_{\text{neg}} = -\log \sigma(u_o^\top v_c) - \sum_{k=1}^{K} \log \sigma(-u_k^\top v_c), \qquad
\frac{\partial J_{\text{neg}}}{\partial v_c} = -\big(1 - \sigma(u_o^\top v_c)\big)\, u_o + \sum_{k=1}^{K} \sigma(u_k^\top v_c)\, u_k ,$$

with $\partial J/\partial u_o = -(1 - \sigma(u_o^\top v_c))\, v_c$ and $\partial J/\partial u_k = \sigma(u_k^\top v_c)\, v_c$. It
asks a binary question (is this a true context or noise?) for $K + 1$ words only, so it costs $O(K d)$ per pair,
whatever the vocabulary size; only $K + 2$ rows change.

**Executable.** `chargen.experiments.word2vec.softmax_loss_grads` and `negative_loss_grads` write these gradients by
hand; `tests/test_word2vec.py` checks them against autograd and against central finite differences in float64, and
against the textbook forms above. Training uses them directly (minibatch SGD, word2vec's linearly decaying learning
rate, `index_add_` on the rows a batch touches), with word2vec's subsampling ($t = 10^{-4}$: a word of frequency $f$ is
kept with probability $\sqrt{t/f} + t/f$) and a window drawn from $1..5$ for each centre."""
    if doc is None:
        return theory + "\n\n" + missing_result("word2vec.json")
    parts = [theory]
    up = doc.get("updates")
    machine = doc.get("machine", {})
    if up:
        rows = ["| vocabulary | negative sampling (ms) | full softmax (ms) | softmax / negative |", "|---:|---:|---:|---:|"]
        for r in up["rows"]:
            rows.append(f"| {n.int(r['vocab'])} | {n(r['negative_ms'], '.2f')} | {n(r['softmax_ms'], '.1f')} | "
                        f"{n(r['ratio'], '.0f')}× |")
        first, last = up["rows"][0], up["rows"][-1]
        grow_s = last["softmax_ms"] / first["softmax_ms"]
        grow_n = last["negative_ms"] / first["negative_ms"]
        parts.append(
            f"**The cost, measured** (`{up.get('command', MAKERS['word2vec.json'])}`; one update of "
            f"{n.int(up['batch'])} pairs, $d$ = {n.int(up['dim'])}, $K$ = {n.int(up['negatives'])}, "
            f"{n.int(up.get('threads', machine.get('threads', 1)))} thread(s), median of repeated updates):\n\n" + "\n".join(rows)
            + f"\n\nFrom {n.int(first['vocab'])} to {n.int(last['vocab'])} words the softmax update grows "
            f"{n(grow_s, '.0f')}-fold, in step with the vocabulary; the negative-sampling update changes by a factor of "
            f"{n(grow_n, '.1f')}: flat, whatever the vocabulary (what varies is noise and cache effects).")
    g = doc.get("gensim")
    if g and g.get("runs"):
        runs = g["runs"]
        s = g["settings"]
        rows = ["| seed | chargen s | gensim s | chargen loss (BCE) | chargen WordSim ρ | gensim WordSim ρ | "
                "chargen analogies | gensim analogies |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in runs:
            c, gg = r["chargen"], r["gensim"]
            rows.append(f"| {n.int(r['seed'])} | {n(c['seconds'], '.0f')} | {n(gg['seconds'], '.0f')} | {n(c['bce'], '.3f')} | "
                        f"{n(c['wordsim353'], '.3f')} | {n(gg['wordsim353'], '.3f')} | {n.pct(c['analogy'])} | {n.pct(gg['analogy'])} |")
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        c_rho = mean([r["chargen"]["wordsim353"] for r in runs])
        g_rho = mean([r["gensim"]["wordsim353"] for r in runs])
        c_sec = mean([r["chargen"]["seconds"] for r in runs])
        g_sec = mean([r["gensim"]["seconds"] for r in runs])
        c_bce = mean([r["chargen"]["bce"] for r in runs])
        covered = runs[0]["wordsim_pairs_covered"]
        load = machine.get("load_average")
        cores = machine.get("cpu_count")
        load_text = (f" The load average was {n(load[0], '.1f')} when it started"
                     + (f" ({n.int(cores)} cores, shared)." if cores else ".")) if load else ""
        band, bce_target, seconds_target = TARGETS["wordsim_band"], TARGETS["bce"], TARGETS["seconds"]
        verdict_rho = ("within" if abs(c_rho - g_rho) <= band else ("above" if c_rho > g_rho else "below"))
        parts.append(
            f"**Against gensim** (`{g.get('command', MAKERS['word2vec.json'])}`): both train skip-gram on the four "
            f"books ({n.int(g['tokens'])} word tokens in {n.int(g['sentences'])} sentences) with $d$ = {n.int(s['dim'])}, "
            f"window {n.int(s['window'])}, min count {n.int(s['min_count'])}, $t$ = {n.sci(s['sample'])}, $K$ = "
            f"{n.int(s['negatives'])}, {n.int(s['epochs'])} epochs, learning rate {n(s['lr'], 'g')}, one after the other in one "
            f"process with {n.int(g['threads'])} thread(s) each.{load_text} WordSim353 is Spearman's ρ on the "
            f"{n.int(covered)} of {n.int(runs[0]['wordsim_pairs'])} pairs both vocabularies cover; analogies are gensim's "
            f"`evaluate_word_analogies` on questions-words.txt for both.\n\n" + "\n".join(rows)
            + f"\n\nMean ± standard deviation over seeds: chargen ρ = "
            f"{show(Spread.of([r['chargen']['wordsim353'] for r in runs]), n)}, gensim ρ = "
            f"{show(Spread.of([r['gensim']['wordsim353'] for r in runs]), n)} (chargen {verdict_rho} "
            f"the {n(band, 'g')} band around gensim, by the means); chargen took "
            f"{show(Spread.of([r['chargen']['seconds'] for r in runs]), n, spec='.0f')} s against gensim's "
            f"{show(Spread.of([r['gensim']['seconds'] for r in runs]), n, spec='.0f')} s "
            f"({n(c_sec / g_sec, '.1f')}× — gensim's inner loop is compiled C, chargen's is batched torch from Python), "
            f"and its last-epoch loss, the mean over the $1 + K$ binary terms as d2l reports it, was {n(c_bce, '.3f')} "
            f"(target ≤ {n(bce_target, '.2f')}). On a corpus of well under a million words few WordSim pairs are covered and both "
            f"correlations are low and noisy: these books are too small for good general-purpose vectors, which is "
            f"why the comparison is made seed by seed on the same pairs.")
        within_time = c_sec <= seconds_target
        parts.append(
            f"**Targets.** WordSim353 within {n(band, 'g')} of gensim: chargen is {n(c_rho - g_rho, '+.3f')} from it "
            f"({'met' if abs(c_rho - g_rho) <= band else ('above the band, not below it' if c_rho > g_rho else 'missed')}). "
            f"Loss ≤ {n(bce_target, '.2f')}: {n(c_bce, '.3f')} ({'met' if c_bce <= bce_target else 'missed'}). "
            f"{n.int(TARGETS['epochs'])} epochs in ≤ {n.int(seconds_target)} s on {n.int(TARGETS['cores'])} cores: "
            f"{n(c_sec, '.0f')} s with {n.int(g['threads'])} thread(s) ({'met' if within_time else 'missed here'}); "
            f"gensim, timed beside it, took {n(g_sec, '.0f')} s.")
        cli = load_result(results, "word2vec-cli.json")
        if cli and cli.get("history"):
            parts.append(_word2vec_cli(cli, s, g, machine, n))
        nb = runs[0].get("neighbours", {})
        if nb:
            lines = [f"- *{w}*: chargen {', '.join(v['chargen'])}; gensim {', '.join(v['gensim'])}" for w, v in nb.items()]
            parts.append("Nearest words by cosine (seed " + n.int(runs[0]["seed"]) + "):\n\n" + "\n".join(lines))
    return "\n\n".join(parts)


def _word2vec_cli(cli: dict[str, Any], bench: dict[str, Any], g: dict[str, Any], machine: dict[str, Any],
                  n: Formatter) -> str:
    """The command-line run beside the benchmark: what differs between the two, stated, never called "the same"."""
    h = cli["history"][-1]
    command = public_command(cli["command"])  # where it saved is no reader's business
    ran = cli["settings"]
    differ = [f"{key} {n.quote(str(ran[key]))} against {n.quote(str(bench[key]))}" for key in ran
              if key in bench and key not in ("seed",) and ran[key] != bench[key]]
    threads = re.search(r"OMP_NUM_THREADS=(\d+)", cli["command"])
    if threads and int(threads.group(1)) != g["threads"]:
        differ.append(f"{n.int(int(threads.group(1)))} thread(s) against {n.int(g['threads'])}")
    loads = cli.get("load_average_before"), machine.get("load_average")
    if loads[0] and loads[1]:
        differ.append(f"load average {n(loads[0][0], '.1f')} against {n(loads[1][0], '.1f')} when each started")
    within = h["seconds"] <= TARGETS["seconds"]
    return (f"**From the command line** (`{command}`, one run, seed {n.int(ran['seed'])}): {n(h['seconds'], '.0f')} s for "
            f"{n.int(sum(e['pairs'] for e in cli['history']))} pairs, last-epoch loss {n(h['bce'], '.3f')} "
            f"({'within' if within else 'outside'} the time target). It differs from the benchmark's runs above in "
            + ("; ".join(differ) if differ else "nothing but the seed")
            + ", so neither its time nor its loss is a like-for-like comparison with them.")


# -- engines ---------------------------------------------------------------------------------------
def engines_section(results: Path, n: Formatter | None = None) -> str:
    n = n or Numbers()
    doc = load_result(results, "engines.json")
    head = r"""## Three engines: loop, torch-cell, fused

The tutorials ask for their from-scratch RNN rewritten with `nn.RNNCell` (a forward method that loops over the
characters), then with `nn.RNN`. chargen's recurrent core has all three as engines over one set of parameters:
`loop` steps chargen's own cells (written from the equations), `torch-cell` loops torch's `nn.RNNCell`/`nn.LSTMCell`
(called through `torch.func.functional_call` on the layer's own weights, so nothing is copied and gradients reach the
model), and `fused` runs `nn.RNN`/`nn.LSTM`'s kernels. `tests/test_torch_cell.py` demands agreement to floating-point
tolerance from the same weights, forward and backward, and for the training curves from one seed."""
    if doc is None:
        return head + "\n\n" + missing_result("engines.json")
    rows = ["| cell | dtype | engine | forward max \\|Δ\\| vs loop | gradient max \\|Δ\\| vs loop | relative to the gradient's scale |",
            "|---|---|---|---:|---:|---:|"]
    for r in doc["parity"]:
        rows.append(f"| {r['cell']} | {r['dtype']} | {r['engine']} | {n.sci(r['forward_max_abs'])} | "
                    f"{n.sci(r['backward_max_abs'])} | {n.sci(r.get('backward_max_rel'))} |")
    curve_lines = []
    for cell, curves in doc["curves"].items():
        ref = curves["loop"]
        worst = max(abs(a - b) for e, c in curves.items() for a, b in zip(c, ref))
        curve_lines.append(f"{cell}: loss {n(ref[0], '.3f')} → {n(ref[-1], '.3f')} over {n.int(len(ref))} Adam steps, "
                           f"largest difference between engines at any step {n.sci(worst)}")
    shapes = doc.get("settings", {"parity": PARITY, "curves": CURVES})  # files older than the record: the code's own
    p, c = shapes["parity"], shapes["curves"]
    return (head + f"\n\n{n.int(p['layers'])} layers, hidden {n.int(p['hidden'])}, {n.int(p['steps'])} steps, batch "
            f"{n.int(p['batch'])} (`{MAKERS['engines.json']}`):\n\n" + "\n".join(rows)
            + f"\n\nShort training runs from one seed ({n.int(c['layers'])} layer(s), hidden {n.int(c['hidden'])}, windows "
            f"of {n.int(c['steps'])}, batch {n.int(c['batch'])}, a character LM on a repeated sentence): "
            + "; ".join(curve_lines) + ".")


# -- the hand-weighted LSTM -------------------------------------------------------------------------
def hand_lstm_section(results: Path, n: Formatter | None = None) -> str:
    n = n or Numbers()
    doc = load_result(results, "hand_lstm.json")
    head = r"""## The hand-weighted LSTM exercise

One unit, three inputs, $v_t = [h_{t-1}; x_t]$: $W_f = [0\ 8\ 0\ 0],\ b_f = -4$; $W_i = [0\ 0\ 9\ 0],\ b_i = -4.5$;
$W_o = [0\ 0\ 0\ 10],\ b_o = -5$; $W_C = [1\ 0\ 0\ 0],\ b_C = 0$; $h_0 = 0.05$, $C_0 = -0.02$. So

$$f = \sigma(8x_1 - 4),\quad i = \sigma(9x_2 - 4.5),\quad o = \sigma(10x_3 - 5),\quad \tilde C_t = \tanh(h_{t-1}),\quad
C_t = f\,C_{t-1} + i\,\tilde C_t,\quad h_t = o\tanh(C_t).$$

Each input drives one gate from nearly shut ($\sigma(-4) \approx 0.018$) to nearly open ($\sigma(4) \approx 0.982$):
$x_1$ keeps the cell, $x_2$ writes the previous output into it, $x_3$ shows it. And $\tanh\varphi \approx \varphi$ for the
small values here, so $\tilde C_t \approx h_{t-1}$ and $h_t \approx o\,C_t$. The numbers below are chargen's own
`LSTMCell` loaded with these weights (`chargen.reference.exercise_cell`: gate rows $i, f, g, o$; the single bias of each
gate in `bias_ih`, `bias_hh` = 0); `tests/test_exercises.py` pins them."""
    if doc is None:
        return head + "\n\n" + missing_result("hand_lstm.json")
    rows = ["| $x_t$ | f | i | o | $C_t$ | $h_t$ |", "|---|---:|---:|---:|---:|---:|"]
    for r in doc["table"]:
        x = "[" + " ".join(n(v, "g") for v in r["x"]) + "]"
        rows.append(f"| {x} | {n(r['f'], '.4f')} | {n(r['i'], '.4f')} | {n(r['o'], '.4f')} | {n(r['C'], '.5f')} | {n(r['h'], '.5f')} |")
    t = doc["table"]
    a_text = (
        f"**(a)** With $x_t$ = [1 0 0] the forget gate is open and the others shut: the cell keeps its value "
        f"($C_t$ = {n(t[0]['C'], '.4f')} ≈ $C_{{t-1}}$) and the output is hidden ($h_t$ = {n(t[0]['h'], '.5f')} ≈ 0). "
        f"With [0 1 0] the cell is overwritten by the previous output ($C_t$ = {n(t[1]['C'], '.4f')} ≈ $h_{{t-1}}$), still "
        f"hidden ($h_t$ = {n(t[1]['h'], '.5f')}). With [1 0 1] the cell is kept and shown: $h_t$ = {n(t[2]['h'], '.4f')} ≈ "
        f"$\\tanh(C_{{t-1}}) \\approx C_{{t-1}}$.")
    ans = doc["answers"]

    def demo(part: str, what: str, value: str) -> str:
        lines = ["| $h_{t-1}$ | $C_{t-1}$ | target | " + what + " | error |", "|---:|---:|---:|---:|---:|"]
        for r in ans[part]["rows"]:
            lines.append(f"| {n(r['h_prev'], 'g')} | {n(r['C_prev'], 'g')} | {n(r['target'], '.4f')} | "
                         f"{n(r[value], '.4f')} | {n.sci(r['error'])} |")
        return "\n".join(lines)

    xb = "[" + " ".join(n(v, "g") for v in ans["b"]["x"]) + "]"
    xc = "[" + " ".join(n(v, "g") for v in ans["c"]["x"]) + "]"
    b_text = (f"**(b)** $C_t \\approx C_{{t-1}} + h_{{t-1}}$ needs $f \\approx 1$ and $i \\approx 1$ (keep the cell *and* add "
              f"$\\tilde C_t \\approx h_{{t-1}}$), so $x_1 = x_2 = 1$; $x_3$ only changes $h_t$. With $x_t$ = {xb}, from the "
              f"exercise's state and two others:\n\n" + demo("b", "$C_t$", "C"))
    c_text = (f"**(c)** $h_t \\approx \\tfrac12 (C_{{t-1}} + h_{{t-1}})$: with $f = i = \\sigma(0) = 0.5$ (that is $x_1 = x_2 = 0.5$) "
              f"the cell becomes the average $\\tfrac12 C_{{t-1}} + \\tfrac12 \\tanh h_{{t-1}}$, and with the output gate open "
              f"($x_3 = 1$) $h_t = o \\tanh C_t \\approx C_t$. (Keeping $f = i = 1$ and halving the output gate, $x_3 = 0.5$, "
              f"works too.) With $x_t$ = {xc}:\n\n" + demo("c", "$h_t$", "h"))
    return "\n\n".join([head, "\n".join(rows), a_text, b_text, c_text])


# -- parameter count -------------------------------------------------------------------------------
def lstm_params_section(results: Path, n: Formatter | None = None) -> str:
    n = n or Numbers()
    doc = load_result(results, "lstm_params.json")
    head = r"""## The LSTM parameter count, one bias per gate

With $d$ inputs and $n$ units, each of the four gates ($i, f, o$ and the candidate) has an $n \times d$ input matrix,
an $n \times n$ recurrent matrix and one bias vector of $n$: $4n(d + n + 1)$ parameters. The batch size $m$ does not
enter: the same weights are applied to every sequence of a batch (only the activations grow with $m$). PyTorch — and
chargen's cells, which keep its layout so weights copy across — carry two bias vectors per gate, `bias_ih` and
`bias_hh`, whose sum is the only thing the cell uses; that redundancy makes $4n(d + n + 2)$, and dropping one of them
gives the textbook count back."""
    if doc is None:
        return head + "\n\n" + missing_result("lstm_params.json")
    rows = ["| d | n | batch m | $4n(d+n+1)$ | chargen cell | chargen minus `bias_hh` | `nn.LSTMCell` |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in doc["rows"]:
        rows.append(f"| {n.int(r['d'])} | {n.int(r['n'])} | {n.int(r['m'])} | {n.int(r['formula_one_bias'])} | "
                    f"{n.int(r['chargen_cell'])} | {n.int(r['chargen_minus_bias_hh'])} | {n.int(r['torch_lstmcell'])} |")
    return head + f"\n\nCounted after a forward pass with each batch size (`{MAKERS['lstm_params.json']}`; " \
        "`tests/test_exercises.py` checks the formula):\n\n" + "\n".join(rows)


# -- phased LSTM answers ---------------------------------------------------------------------------
def phased_answers_section(results: Path | None = None, n: Formatter | None = None) -> str:
    return r"""## Phased LSTM: when the time gate helps, what can be learned

**When the time gate helps.**

- *Long sequences*: while a unit's gate is closed its state is copied unchanged, so
over most steps the gradient passes through an identity and the effective depth of backpropagation through time is
only the number of open phases; memory over thousands of steps is easier than for an LSTM that must hold its forget gate
at one.
- *Inputs sampled irregularly or at several rates* (event-based sensors, asynchronous streams, sensor fusion):
the gate is driven by the time stamp, not the step index, so the cell updates at the times it is designed for and
different units can specialise to different rhythms.
- *Periodic structure*: units with different periods
$\tau$ act like a bank of oscillators and pick up rhythms of different lengths.
- *Cost*: closed units need no update,
so with sparse updates computation falls roughly in proportion to $r_{on}$.

When every step matters equally and
sequences are short, the gate mostly withholds updates and there is little for it to gain.

**Which parameters can be learned.** The period $\tau$ and the phase shift $s$: yes, by gradient descent, since $k_t$
is piecewise linear in $(t - s) \bmod \tau$ (the authors learn both, initialising $\tau$ log-uniformly). The open
ratio $r_{on}$: it can be learned too — $k_t$ is piecewise differentiable in $r_{on}$ — but nothing stops a learned
$r_{on}$ from growing (more updates, less of the gate's benefit), which is one reason to fix it.
chargen's `PhasedLSTMCell` learns $\tau$ and $s$ and keeps $r_{on}$ and the leak $\alpha$ fixed (see [the phased LSTM
section](#the-time-gated-phased-lstm) for the gate's equations and a drawing)."""


# -- observations ----------------------------------------------------------------------------------
def observations_section(results: Path, n: Formatter | None = None) -> str:
    n = n or Numbers()
    doc = load_result(results, "observations.json")
    head = "## Observations: training and temperature"
    if doc is None:
        return head + "\n\n" + missing_result("observations.json")
    tr = doc["during_training"]
    te = doc["temperatures"]
    parts = [head, f"Measured on the samples saved with the book model (`{doc.get('model_command')}`): the share of "
             f"generated words that are words of *{doc['corpus']}*, and the share of distinct words among them "
             f"(`{MAKERS['observations.json']}`)."]
    if tr:
        rows = ["| step | training loss | sample | real words | distinct |", "|---:|---:|---|---:|---:|"]
        for r in tr:
            rows.append(f"| {n.int(r['step'])} | {n(r['loss'], '.3f')} | `{_code(r['text'])}` | "
                        f"{n.pct(r['real_word_share'], 0)} | {n.pct(r['distinct_share'], 0)} |")
        first, last = tr[0], tr[-1]
        parts.append("\n".join(rows))
        shares = ", ".join(f"{n.pct(r['real_word_share'], 0)} at step {n.int(r['step'])}" for r in tr)
        steady = all(a["real_word_share"] <= b["real_word_share"] for a, b in zip(tr, tr[1:]))
        words = [r["words"] for r in tr if "words" in r]
        parts.append(
            f"**As training evolves** the training loss falls from {n(first['loss'], '.3f')} to {n(last['loss'], '.3f')}, "
            f"and the share of real words in the logged samples goes {shares}"
            + ("" if steady else ": up overall, but not steadily")
            + "." + (f" Each logged sample is a handful of words ({n.int(min(words))} to {n.int(max(words))}), so one word "
                     f"more or less moves the share by a large step: the loss is the steadier measure." if words else "")
            + " One training run.")
    if te:
        rows = ["| temperature | real words | distinct words |", "|---:|---:|---:|"]
        for r in te:
            rows.append(f"| {n(r['temperature'], 'g')} | {n.pct(r['real_word_share'], 0)} | {n.pct(r['distinct_share'], 0)} |")
        cold, hot = te[0], te[-1]
        parts.append("\n".join(rows))
        parts.append(
            f"**At each temperature**: at {n(cold['temperature'], 'g')} (greedy) every step takes the likeliest character, so "
            f"the words are real ({n.pct(cold['real_word_share'], 0)}) but the text loops — only "
            f"{n.pct(cold['distinct_share'], 0)} of its words are distinct, the same phrase comes round again. Raising "
            f"the temperature flattens the distribution: more variety (distinct words up to "
            f"{n.pct(hot['distinct_share'], 0)} at {n(hot['temperature'], 'g')}) at the price of correctness — at "
            f"{n(hot['temperature'], 'g')} only {n.pct(hot['real_word_share'], 0)} of the words are real and the punctuation "
            f"and line breaks scatter." + _between(te, n)
            + " One sample per temperature from one model (one run): the shares are that sample's, without an interval.")
    return "\n\n".join(parts)


def _between(te: list[dict[str, Any]], n: Formatter) -> str:
    """What the temperatures between the coldest and the hottest show, from their own numbers."""
    middle = te[1:-1]
    if not middle:
        return ""
    shares = [r["real_word_share"] for r in middle]
    return (f" In between ({n.list([r['temperature'] for r in middle], 'g')}) "
            f"{n.pct(min(shares), 0)} to {n.pct(max(shares), 0)} of the words are real, with "
            f"{n.pct(min(r['distinct_share'] for r in middle), 0)} to {n.pct(max(r['distinct_share'] for r in middle), 0)} distinct.")


def _code(text: str) -> str:
    return text.replace("\n", "⏎").replace("`", "'").replace("|", "¦")


# -- LSTM vs RNN -----------------------------------------------------------------------------------
def lstm_vs_rnn_section(results: Path, n: Formatter | None = None) -> str:
    n = n or Numbers()
    reasons = r"""## Why an LSTM rather than an RNN

**Reasons.** An Elman RNN rewrites its whole state at every step through a squashing nonlinearity, so what it
learned $k$ steps ago reaches the loss through a product of $k$ Jacobians $\mathrm{diag}(\tanh')\,U$: the gradient
shrinks (or explodes) geometrically and the network learns mostly from the last few characters. The LSTM's cell is
updated additively, $C_t = f_t C_{t-1} + i_t \tilde C_t$, so $\partial C_t / \partial C_{t-1} = \mathrm{diag}(f_t)$:
with the forget gate open, information and gradient pass unchanged across many steps, and the gates learn *when* to
write, keep and show. It pays with four times the parameters and compute per unit. It should help most where the task
needs memory beyond a few steps (the palindrome probe's mirrored halves); whether it does at a given model size and
training budget is a measurement, and the ones this report has follow."""
    parts = [reasons]
    tut = load_result(results, "tutorial.json")
    if tut:
        runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
        for r in tut["runs"]:
            runs.setdefault((r["task"], r["model"], r["hidden"]), []).append(r)
        bits = []
        for (task, m, h), found in sorted(runs.items()):
            if m != "lstm" or (task, "rnn", h) not in runs:
                continue
            key = "test_accuracy" if task == "classify" else "test_nats_per_char"
            lstm, rnn = (Spread.of([r[key] for r in rs]) for rs in (found, runs[(task, "rnn", h)]))
            if task == "classify":
                bits.append(f"surname accuracy at hidden {n.int(h)}: LSTM {show(lstm, n, pct=True)}, RNN "
                            f"{show(rnn, n, pct=True)}")
            else:
                bits.append(f"name generation at hidden {n.int(h)}: LSTM {show(lstm, n)} nats per "
                            f"character, RNN {show(rnn, n)}")
        if bits:
            parts.append("**Measured** ([the tutorials' study](#" + _anchor("The tutorials' own networks") + ")): " + "; ".join(bits) + ".")
    for key, label, metric in (("compare-lm", "book language model", "val_loss"),
                               ("compare-classify", "surname classifier", "val_loss")):
        path = Path(results).parent / key / "compare.json"
        if not path.exists():
            continue
        cmp = json.loads(path.read_text())
        summ = cmp.get("summary", {})
        if "rnn" in summ and "lstm" in summ:
            r, l_ = summ["rnn"][metric], summ["lstm"][metric]
            steps = cmp.get("train", {}).get("steps")
            diff = l_["mean"] - r["mean"]
            spread = math.hypot(l_.get("std") or 0.0, r.get("std") or 0.0)
            text = (f"In the report's {label} comparison (`{key}/compare.json`, {n.int(r['n'])} seed(s)"
                    + (f", {n.int(steps)} steps" if steps else "") + f") the mean final validation loss is "
                    f"{n(l_['mean'], '.3f')} for the LSTM and {n(r['mean'], '.3f')} for the RNN (LSTM minus RNN "
                    f"{n(diff, '+.3f')}, seed-to-seed spread {n(spread, '.3f')})")
            if min(r.get("n", 0), l_.get("n", 0)) < 2:
                text += ": one seed, no spread to judge by."
            elif abs(diff) <= 2 * spread:
                text += ": within twice the spread, no clear difference at this budget."
            elif diff < 0:
                text += ": the LSTM is ahead."
            else:
                text += (": at this budget the RNN is ahead. The comparison gives both the same number of units, so the "
                         "LSTM has four times the recurrent weights to fit in the same steps; whether it overtakes "
                         "the RNN on a longer run is not measured here.")
            parts.append(text)
    probe = Path(results).parent / "probe" / "probe.json"
    if probe.exists():
        doc = json.loads(probe.read_text())
        kept, level = doc.get("longest_90", {}), doc.get("settings", {}).get("threshold")
        if "rnn" in kept and "lstm" in kept and level is not None:
            def held(cell: str) -> str:
                return f"T = {n.int(kept[cell])}" if kept[cell] else "no length"
            parts.append(f"In the [palindrome probe](#{_anchor('The palindrome probe')}) the LSTM keeps {n.pct(level, 0)} accuracy up to "
                         f"{held('lstm')} and the RNN up to {held('rnn')}; the probe's table shows what happens beyond.")
    return "\n\n".join(parts)


SECTIONS: list[Callable[..., str]] = [
    word2vec_section, engines_section, tutorial_section, lstm_vs_rnn_section, hand_lstm_section,
    lstm_params_section, optimisers_section, phased_answers_section, observations_section,
]


def exercises_markdown(results: Path, n: Formatter | None = None) -> str:
    """The question map and every exercise section, in report order."""
    n = n or Numbers()
    return "\n\n".join([question_map_section(), *(section(results, n) for section in SECTIONS)]) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(exercises_markdown(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/report/results/exercises")))
