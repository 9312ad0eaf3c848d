"""The momentum study's report sections (issue 14): Markdown built only from the JSON saved under a results folder.

Every function takes the study's results folder (``<report>/results/momentum``: ``adjoint.json``
and one sub-folder per part with ``summary.json``) and the report's ``Numbers``, and returns
Markdown; a part not yet measured becomes a line that says so and gives the command that measures
it. Every number goes through ``Numbers`` (read from those files), and every verdict is computed
from the table above it (two solve rates differ only when their 95% Wilson intervals do not overlap).
The study itself is ``chargen momentum-study`` (``chargen.experiments.momentum``): hours of runs,
so the report reads its saved results and never runs it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chargen.experiments.momentum import parts
from chargen.report.numbers import Numbers

STUDY_COMMAND = "chargen momentum-study --only {part}"
SUMMARY = "summary.json"
CONFIDENCE = 95  # the Wilson intervals' level, in percent (chargen.experiments.sweep.wilson's z = 1.96)
TARGET_SEEDS, TARGET_FAILURES = 10, 2  # the LSTM target: >= 99% on at least 9 of 10 seeds


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _command(part: str, results: Path) -> str:
    # always the folder, explicitly: the study's default is the report's own, and a copied command must say so
    return f"{STUDY_COMMAND.format(part=part)} --out {results}"


def _missing(part: str, results: Path) -> str:
    return f"_Not measured yet: run `{_command(part, results)}` (it resumes where it stopped)._\n"


def _arm(row: dict[str, Any]) -> str:
    return f"`{row['arm']}`"


def _rate(row: dict[str, Any], n: Numbers) -> str:
    if not row["n"]:
        return "–"
    return f"{n.int(row['solved'])}/{n.int(row['n'])} [{n(row['ci_low'], '.2f')}, {n(row['ci_high'], '.2f')}]"


def _steps(row: dict[str, Any], n: Numbers) -> str:
    return n(row["steps_to_solve_median"], ",.0f") if row.get("steps_to_solve_median") is not None else "–"


def _budget(summary: dict[str, Any], results: Path, n: Numbers) -> str:
    seeds, probe, env = summary["seeds"], summary["probe"], summary["environment"]
    text = (f"Budget: up to {n.int(summary['steps'])} steps per run, seeds {n.int(seeds[0])}–{n.int(seeds[-1])} "
            f"planned; RMSProp, hidden {n.int(probe['hidden_size'])}, batch {n.int(probe['batch_size'])}, clip "
            f"{n(probe['clip'], 'g')}; early stop: {n.quote(probe['early_stop'])}; solved: final held-out accuracy "
            f">= {n.pct(summary['solved_threshold'], 0)}; intervals: {n.int(CONFIDENCE)}% Wilson. Measured with torch "
            f"`{env['torch']}` on {n.int(env['threads'])} thread(s), last updated {n.quote(env['updated'])}.")
    if not summary.get("complete"):
        text += (f" **Incomplete**: not every planned run has finished (`{_command(summary['part'], results)}` "
                 f"resumes it); each row's n says how many did.")
    return text


def _table(rows: Sequence[dict[str, Any]], n: Numbers, extra: str | None = None) -> str:
    head = f"| arm | T | solved / n [{n.int(CONFIDENCE)}% CI] | median steps to solve | mean accuracy |"
    rule = "|---|---:|---:|---:|---:|"
    if extra:
        head += f" {extra} |"
        rule += "---:|"
    lines = [head, rule]
    for row in rows:
        line = f"| {_arm(row)} | {n.int(row['length'])} | {_rate(row, n)} | {_steps(row, n)} | {n(row.get('accuracy_mean'))} |"
        if extra:
            value = row.get("effective_forget_bias")
            line += f" {n(value, 'g')} |" if value is not None else " – |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def differs(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two solve rates differ when their 95% Wilson intervals do not overlap (a conservative test)."""
    return bool(a["n"] and b["n"] and (a["ci_low"] > b["ci_high"] or b["ci_low"] > a["ci_high"]))


def _compare_words(a: dict[str, Any], b: dict[str, Any]) -> str:
    if not (a["n"] and b["n"]):
        return "cannot be compared yet (a row has no runs)"
    if differs(a, b):
        better = a if a["solved"] / a["n"] > b["solved"] / b["n"] else b
        return f"differ: {_arm(better)} solves more often (the intervals do not overlap)"
    return "are not distinguishable at this number of seeds (the intervals overlap)"


# -- sections ---------------------------------------------------------------------------------------------


def derivation_section(results: Path, n: Numbers) -> str:
    """What momentum does and does not do to gradients, with the saved adjoint check."""
    text = """**What momentum does and does not do to gradients.** MomentumRNN replaces the input projection by a
velocity, $v_t = \\mu v_{t-1} + s(W x_t + b)$ and $h_t = \\tanh(U h_{t-1} + b_h + v_t)$. The velocity depends on the
inputs only — never on $h$ — so with $D_k = \\mathrm{diag}(1 - h_k^2)$ the gradient of a loss $L$ read at step $T$ with
respect to the hidden state obeys exactly the plain RNN's recursion

$$\\frac{\\partial L}{\\partial h_{t-1}} = U^\\top D_t \\frac{\\partial L}{\\partial h_t},
\\qquad \\frac{\\partial L}{\\partial h_t} = \\Big(\\prod_{k=t+1}^{T} U^\\top D_k\\Big)\\frac{\\partial L}{\\partial h_T},$$

in which $\\mu$ does not appear: the bound $(\\gamma \\lVert U\\rVert)^{T-t}$ above holds for MomentumRNN unchanged.
Eliminating $v$ gives $a_t = U\\sigma(a_{t-1}) + \\mu\\, a_{t-1} - \\mu U \\sigma(a_{t-2}) + s W x_t + (1-\\mu) b$ for the
pre-activation $a_t$, and reading its Jacobian $\\partial a_t / \\partial a_{t-1} = U D_{t-1} + \\mu I$ as "an identity
path like the LSTM's cell state" is wrong: the extra $\\mu$ path runs through $v$, and $v$ feeds nothing but later
$v$'s. What it carries is the gradient to the *inputs and input weights*: with $g_k = D_k\\, \\partial L/\\partial h_k$ and
$e_t = \\partial L / \\partial v_t = g_t + \\mu e_{t+1}$,

$$\\frac{\\partial L}{\\partial x_t} = s W^\\top \\sum_{k \\ge t} \\mu^{k-t} g_k, \\qquad
\\frac{\\partial L}{\\partial W} = s \\sum_t e_t x_t^\\top, \\qquad \\frac{\\partial L}{\\partial b} = s \\sum_t e_t,$$

a sum whose far terms decay as $\\mu^{T-t}$: once the hidden path has died out, the gradient reaching $x_t$,
$W_{ih}$ and $b_{ih}$ from step $T$ still falls only by a factor $\\mu$ per step. It never reaches $h$ or $U$ that way.
So momentum lets an early input *influence the loss through the input weights* for longer; it does not lengthen the
memory the hidden state can be trained to keep.

"""
    found = _load(Path(results) / "adjoint.json")
    if found is None:
        return text + _missing("adjoint", results)
    rows = ["| $\\mu$ | max abs difference | per-step decay of dL/dh | per-step decay of dL/dx |", "|---:|---:|---:|---:|"]
    for c in found["checks"]:
        rows.append(f"| {n(c['mu'], 'g')} | {n.sci(c['max_abs_diff'])} | {n(c['hidden_grad_decay'])} | "
                    f"{n(c['input_grad_decay'])} |")
    first = found["checks"][0]
    worst = max(c["max_abs_diff"] for c in found["checks"])
    return text + (
        f"**The adjoint check** (`{_command('adjoint', results)}`; float64, $T$ = {n.int(first['length'])}, hidden "
        f"{n.int(first['hidden_size'])}, $s$ = {n(first['s'], 'g')}, recurrent weights scaled by "
        f"{n(first['recurrent_scale'], 'g')}; `tests/test_momentum_study.py` asserts it): autograd's "
        f"$\\partial L/\\partial h_t$ for MomentumRNN against the plain-RNN recursion above, largest difference "
        f"{n.sci(worst)}. The input gradient decays per step at $\\mu$; the hidden gradient's decay is set by $U$ and "
        f"does not follow $\\mu$:\n\n" + "\n".join(rows) + "\n"
    )


def study_section(results: Path, n: Numbers) -> str:
    """The study's heading, what it measured, and the LSTM target (paper init, palindromes at T >= 30)."""
    head = f"""## Does momentum help recurrent cells?

The comparisons of momentum cells with their base cells above hold one setting of momentum and one learning
rate for every cell. This study (`chargen momentum-study`) asks the question more fairly on the palindrome
task, where memory is what is measured: the paper's initialisation (orthogonal $W_{{ih}}$, identity $W_{{hh}}$, a
forget-gate bias), many seeds, solve rates with {n.int(CONFIDENCE)}% Wilson intervals, a learning rate chosen per arm,
and controls for what momentum changes besides momentum (the input scale $s$ and, for the LSTM, the forget bias: a
momentum cell multiplies its input bias by $s/(1-\\mu)$ once the velocity settles). The runs are deterministic on one
machine; per-seed outcomes can differ between machines, so only the rates and their intervals are compared.

### The LSTM with the paper's initialisation

"""
    target = _load(Path(results) / "lstm-target" / SUMMARY)
    if target is None:
        return head + _missing("lstm-target", results)
    rows = [r for r in target["rows"] if r["n"]]
    control = _load(Path(results) / "forget-bias" / SUMMARY)
    if control is not None:  # the forget-bias part's first arm is the same LSTM at T = 50
        first = control["rows"][0]
        if first["n"] and first["cell"] == "lstm" and first["lr"] == target["rows"][0]["lr"]:
            rows.append(first)
    verdicts = []
    for row in rows:
        failed = row["n"] - row["solved"]
        state = ("not met" if failed >= TARGET_FAILURES else "met" if row["n"] >= TARGET_SEEDS
                 else f"open: only {n.int(row['n'])} of {n.int(TARGET_SEEDS)} seeds have run")
        verdicts.append(f"$T$ = {n.int(row['length'])}: {n.int(row['solved'])} of {n.int(row['n'])} seeds at >= "
                        f"{n.pct(target['solved_threshold'], 0)} (target: at least {n.int(TARGET_SEEDS - TARGET_FAILURES + 1)} "
                        f"of {n.int(TARGET_SEEDS)}) — {state}.")
    return (head + f"{n.quote(target['description'])} {_budget(target, results, n)}\n\n" + _table(rows, n) + "\n"
            + " ".join(verdicts) + "\n")


def forget_bias_section(results: Path, n: Numbers) -> str:
    """LSTM and MomentumLSTM at each other's effective forget bias, T = 50."""
    head = "### The forget-bias control\n\n"
    found = _load(Path(results) / "forget-bias" / SUMMARY)
    if found is None:
        return head + _missing("forget-bias", results)
    rows = found["rows"]
    lines = [head, f"{n.quote(found['description'])} {_budget(found, results, n)}\n\n",
             _table(rows, n, "effective forget bias"), "\n"]
    lstm = [r for r in rows if r["cell"] == "lstm"]
    mlstm = [r for r in rows if r["cell"] == "momentum-lstm"]
    pairs = [(a, b) for a in lstm for b in mlstm if a["effective_forget_bias"] == b["effective_forget_bias"]]
    for a, b in pairs:
        lines.append(f"- At effective forget bias {n(a['effective_forget_bias'], 'g')}, {_arm(a)} and {_arm(b)} "
                     f"{_compare_words(a, b)}.\n")
    if len(lstm) == 2:
        lines.append(f"- The two LSTMs (forget bias {n(lstm[0]['effective_forget_bias'], 'g')} vs "
                     f"{n(lstm[1]['effective_forget_bias'], 'g')}) {_compare_words(lstm[0], lstm[1])}.\n")
    if found.get("paired_seeds") is not None:
        lines.append(f"- Seeds every arm finished: {n.int(len(found['paired_seeds']))}.\n")
    return "".join(lines)


def fair_section(results: Path, n: Numbers) -> str:
    """RNN vs MomentumRNN with each arm's learning rate chosen on selection seeds."""
    return _tuned_section("fair-rnn", "### A fair comparison: RNN vs MomentumRNN, learning rate chosen per arm\n\n",
                          "rnn", results, n)


def long_section(results: Path, n: Numbers) -> str:
    """Where the base cells start to fail (issue 24): the LSTM at T = 100, the RNN at T = 20, lr tuned per arm."""
    return "".join(_tuned_section(part, head, control, results, n) + "\n" for part, head, control in (
        ("lstm-long", "### Where the LSTM starts to fail: LSTM vs MomentumLSTM on long palindromes\n\n", "lstm"),
        ("rnn-long", "### Where the RNN starts to fail: RNN vs MomentumRNN on longer palindromes\n\n", "rnn"),
    )).rstrip("\n") + "\n"


def _tuned_section(part: str, head: str, control_cell: str, results: Path, n: Numbers) -> str:
    """A part whose arms each ran at the learning rate chosen on selection seeds: the selection, the table, each
    arm against the control (intervals), and the rank test on steps to solve where the summary has one."""
    found = _load(Path(results) / part / SUMMARY)
    if found is None:
        return head + _missing(part, results)
    lines = [head, f"{n.quote(found['description'])} {_budget(found, results, n)}\n\n"]
    if found["selection"]:
        sel: dict[str, list[float]] = {}
        for r in found["selection"]:
            sel.setdefault(r["arm"], []).append(r["accuracy"])
        lines.append("Selection runs (mean held-out accuracy over the selection seeds): "
                     + "; ".join(f"`{arm}`: {n(sum(v) / len(v))}" for arm, v in sel.items()) + ".\n\n")
    rows = found["rows"]
    if not rows:
        lines.append("_The learning-rate selection has not finished; no reported runs yet._\n")
        return "".join(lines)
    lines.append(_table(rows, n) + "\n")
    control = next((r for r in rows if r["cell"] == control_cell), None)
    for row in rows:
        if control is not None and row is not control:
            lines.append(f"- {_arm(row)} vs the control {_arm(control)}: {_compare_words(row, control)}.\n")
    for test in found.get("rank_tests", []):
        lines.append(f"- Steps to solve at T = {n.int(test['length'])}, `{test['arm']}` vs `{test['control']}` "
                     f"(Mann–Whitney U, a run that never solved counts as past the budget): U = {n(test['u'], 'g')}, "
                     f"two-sided p = {n(test['p_value'], '.3f')}, over {n.int(test['n'])} and "
                     f"{n.int(test['n_baseline'])} seeds.\n")
    return "".join(lines)


def verdict_section(results: Path, n: Numbers) -> str:
    """What the study's tables support, and no more."""
    found = {name: _load(Path(results) / name / SUMMARY) for name in ("forget-bias", "fair-rnn")}
    lines = ["### Verdict so far\n\n"]
    fb, fair = found["forget-bias"], found["fair-rnn"]
    if fb is not None:
        rows = [r for r in fb["rows"] if r["n"]]
        split = any(differs(a, b) for a in rows for b in rows)
        lines.append(f"- Palindromes at $T$ = {n.int(fb['lengths'][0])}, LSTM family, paper init: "
                     + ("some arms differ (see the bullets under the table)." if split else
                        "every arm — LSTM and MomentumLSTM, at either effective forget bias — solves at rates whose "
                        "intervals overlap: at this length and budget, no difference from momentum (or between the "
                        "two forget biases tried) that this many seeds can resolve.") + "\n")
    if fair is not None and fair["rows"]:
        rows = fair["rows"]
        split = any(differs(a, b) for a in rows for b in rows)
        lines.append(f"- Palindromes at $T$ = {n.int(fair['lengths'][0])}, RNN family, PyTorch init, learning rate "
                     "chosen per arm: " + ("some arms differ (see above)." if split else
                                           "the RNN control and the MomentumRNN arms are not distinguishable.") + "\n")
    lines.append("- Not measured here: longer palindromes for the RNN family, the language model and the surname "
                 "classifier at tuned settings (the sweeps below). Until they run, the tables above support "
                 "\"no measurable difference where measured\", not \"momentum helps\" or \"momentum hurts\"; "
                 "the earlier comparison's losses belong to its one setting.\n")
    return "".join(lines)


def remaining_section(results: Path, n: Numbers) -> str:
    """What each part has measured and how to run what is left."""
    lines = ["### Running the rest\n\n", "| part | state | command |\n|---|---|---|\n"]
    adjoint = (Path(results) / "adjoint.json").exists()
    lines.append(f"| adjoint | {'done' if adjoint else 'not run'} | `{_command('adjoint', results)}` |\n")
    for name in parts():
        found = _load(Path(results) / name / SUMMARY)
        state = "not run" if found is None else "complete" if found.get("complete") else (
            f"incomplete: {n.int(sum(r['n'] for r in found['rows']))} reported runs")
        lines.append(f"| {name} | {state} | `{_command(name, results)}` |\n")
    lines.append("\nEach part saves every run as it finishes and resumes from `runs.jsonl`; `--stop-after N` stops "
                 "starting runs after N minutes, so a part can be spread over several sittings.\n\n")
    lines.append("The rest of the full study runs as sweeps (each (variant, lr) is saved as it finishes and "
                 "reused when the command is run again):\n\n")
    for what, command, note in FULL_STUDY:
        lines.append(f"- {what}: `{command}`" + (f"; {note}" if note else "") + "\n")
    return "".join(lines)


SWEEP = "chargen compare --grid mu=0,0.3,0.6,0.9 --grid lr=1e-3,3e-3 --s 1"
FULL_STUDY = (  # the parts of issue 14's full study that are sweeps rather than solve-rate probes
    ("palindromes, both families, two lengths, paper init",
     f"{SWEEP} --task palindrome --length 20 --cells momentum-rnn,momentum-lstm --init paper --seeds 10 --steps 3000 "
     "--out docs/report/results/momentum/sweep-palindrome-20", "then `--length 50` into `sweep-palindrome-50`"),
    ("the grimm LM gap as a function of budget",
     f"{SWEEP} --task lm --corpus grimm --cells momentum-rnn,momentum-lstm --seeds 3 --steps 500 "
     "--out docs/report/results/momentum/sweep-lm-500", "then `--steps 1000` and `--steps 2000` into their own folders"),
    ("the paper's PTB recipe (`mu = 0`) and its pixel-MNIST recipe (`mu = 0.6, s = 0.6`) on the LM",
     "chargen compare --task lm --corpus grimm --cells lstm,momentum-lstm --mu 0.6 --s 0.6 --seeds 3 --steps 1000",
     "the `mu = 0` recipe is the lstm row"),
    ("the surname classifier",
     f"{SWEEP} --task classify --cells momentum-rnn,momentum-lstm --seeds 3 --steps 1500 "
     "--out docs/report/results/momentum/sweep-classify", ""),
)
SECTIONS = (study_section, forget_bias_section, fair_section, long_section, verdict_section, remaining_section)


def momentum_report(results: Path, n: Numbers | None = None) -> str:
    """The derivation and all the study's sections, in order (``chargen momentum-study --markdown``)."""
    n = n or Numbers()
    return "\n".join(section(results, n) for section in SECTIONS) + "\n" + derivation_section(results, n)
