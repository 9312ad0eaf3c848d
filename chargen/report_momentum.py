"""The momentum study's report sections: Markdown built only from the JSON saved under a results folder.

Every function takes the study's results folder (``docs/report/results/momentum``: ``adjoint.json``
and one sub-folder per part with ``summary.json``) and returns Markdown; a part not yet measured
becomes a line that says so and gives the command that measures it. No number here is typed by
hand: each one is read from those files, and every verdict is computed from the table above it
(two solve rates differ only when their 95% Wilson intervals do not overlap).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STUDY_COMMAND = "chargen momentum-study --only {part}"


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _missing(part: str) -> str:
    return f"_Not measured yet: run `{STUDY_COMMAND.format(part=part)}` (it resumes where it stopped)._\n"


def _rate(row: dict[str, Any]) -> str:
    if not row["n"]:
        return "–"
    return f"{row['solved']}/{row['n']} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def _steps(row: dict[str, Any]) -> str:
    return f"{row['steps_to_solve_median']:,.0f}" if row.get("steps_to_solve_median") is not None else "–"


def _budget(summary: dict[str, Any]) -> str:
    seeds = summary["seeds"]
    text = (f"Budget: up to {summary['steps']:,} steps per run, seeds {seeds[0]}–{seeds[-1]} planned; "
            f"RMSProp, hidden {summary['probe']['hidden_size']}, batch {summary['probe']['batch_size']}, "
            f"clip {summary['probe']['clip']:g}; early stop: {summary['probe']['early_stop']}; solved: final held-out "
            f"accuracy >= {summary['solved_threshold']:.0%}; intervals: 95% Wilson. "
            f"Measured with torch {summary['environment']['torch']} on {summary['environment']['threads']} thread(s), "
            f"last updated {summary['environment']['updated']}.")
    if not summary.get("complete"):
        text += (f" **Incomplete**: not every planned run has finished (`{STUDY_COMMAND.format(part=summary['part'])}` "
                 f"resumes it); each row's n says how many did.")
    return text


def _table(rows: Sequence[dict[str, Any]], extra: str | None = None) -> str:
    head = "| arm | T | solved / n [95% CI] | median steps to solve | mean accuracy |"
    rule = "|---|---:|---:|---:|---:|"
    if extra:
        head += f" {extra} |"
        rule += "---:|"
    lines = [head, rule]
    for row in rows:
        acc = f"{row['accuracy_mean']:.3f}" if row.get("accuracy_mean") is not None else "–"
        line = f"| {row['arm']} | {row['length']} | {_rate(row)} | {_steps(row)} | {acc} |"
        if extra:
            value = row.get("effective_forget_bias")
            line += f" {value:g} |" if value is not None else " – |"
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
        return f"differ: {better['arm']} solves more often (the intervals do not overlap)"
    return "are not distinguishable at this number of seeds (the intervals overlap)"


# -- sections ---------------------------------------------------------------------------------------------


def derivation_section(results: Path) -> str:
    """What momentum does and does not do to gradients, with the saved adjoint check."""
    text = """### What momentum does to gradients (corrected derivation)

MomentumRNN replaces the input projection by a velocity: $v_t = \\mu v_{t-1} + s(W x_t + b)$ and
$h_t = \\tanh(U h_{t-1} + b_h + v_t)$. The velocity depends on the inputs only — never on $h$ — so
with $D_k = \\mathrm{diag}(1 - h_k^2)$ the gradient of a loss $L$ read at step $T$ with respect to the
hidden state obeys exactly the plain RNN's recursion

$$\\frac{\\partial L}{\\partial h_{t-1}} = U^\\top D_t \\frac{\\partial L}{\\partial h_t},
\\qquad \\frac{\\partial L}{\\partial h_t} = \\Big(\\prod_{k=t+1}^{T} U^\\top D_k\\Big)\\frac{\\partial L}{\\partial h_T},$$

in which $\\mu$ does not appear. Eliminating $v$ and reading $\\partial a_t / \\partial a_{t-1} = U D + \\mu I$
(for the pre-activation $a_t$) as "an identity path like the LSTM's cell" is misleading: the extra
$\\mu$ path runs through $v$, and $v$ feeds back into nothing but later $v$'s. What it carries is the
gradient to the *inputs and input weights*: with $g_k = D_k\\, \\partial L/\\partial h_k$ and
$a_t = \\partial L / \\partial v_t = g_t + \\mu a_{t+1}$,

$$\\frac{\\partial L}{\\partial x_t} = s W^\\top \\sum_{k \\ge t} \\mu^{k-t} g_k, \\qquad
\\frac{\\partial L}{\\partial W} = s \\sum_t a_t x_t^\\top, \\qquad \\frac{\\partial L}{\\partial b} = s \\sum_t a_t,$$

a sum whose far terms decay as $\\mu^{T-t}$: once the hidden path has died out, the gradient reaching
$x_t$, $W_{ih}$ and $b_{ih}$ from step $T$ still falls by a factor $\\mu$ per step. It never reaches $h$
or $U$ that way. So momentum lets an early input *influence the loss through its weights* for longer;
it does not lengthen the memory the hidden state can be trained to keep.

"""
    found = _load(Path(results) / "adjoint.json")
    if found is None:
        return text + _missing("adjoint")
    rows = ["| mu | max abs difference | per-step decay of dL/dh | per-step decay of dL/dx |", "|---:|---:|---:|---:|"]
    for c in found["checks"]:
        rows.append(f"| {c['mu']:g} | {c['max_abs_diff']:.1e} | {c['hidden_grad_decay']:.3f} | {c['input_grad_decay']:.3f} |")
    first = found["checks"][0]
    worst = max(c["max_abs_diff"] for c in found["checks"])
    return text + (
        f"**The adjoint check** (float64, T = {first['length']}, hidden {first['hidden_size']}, s = {first['s']:g}, "
        f"recurrent weights scaled by {first['recurrent_scale']:g}; `tests/test_momentum_study.py` asserts it): "
        f"autograd's $\\partial L/\\partial h_t$ for MomentumRNN against the plain-RNN recursion above, "
        f"largest difference {worst:.1e}. The input gradient decays per step at $\\mu$; the hidden gradient's "
        f"decay is set by $U$ and does not follow $\\mu$:\n\n" + "\n".join(rows) + "\n"
    )


def lstm_target_section(results: Path) -> str:
    """The issue's target: an LSTM (paper init) >= 99% on palindromes at T >= 30 on >= 9 of 10 seeds."""
    head = "### The LSTM target: palindromes at T >= 30\n\n"
    target = _load(Path(results) / "lstm-target" / SUMMARY)
    if target is None:
        return head + _missing("lstm-target")
    rows = [r for r in target["rows"] if r["n"]]
    control = _load(Path(results) / "forget-bias" / SUMMARY)
    if control is not None:  # the forget-bias part's first arm is the same LSTM at T = 50
        first = control["rows"][0]
        if first["n"] and first["cell"] == "lstm" and first["lr"] == target["rows"][0]["lr"]:
            rows.append(first)
    verdicts = []
    for row in rows:
        failed = row["n"] - row["solved"]
        if failed >= 2:
            state = "not met"
        elif row["n"] >= 10:
            state = "met"
        else:
            state = f"open: only {row['n']} of 10 seeds have run"
        verdicts.append(f"T = {row['length']}: {row['solved']} of {row['n']} seeds at >= 99% — target {state}.")
    return (head + f"{target['description']} {_budget(target)}\n\n" + _table(rows) + "\n" + " ".join(verdicts) + "\n")


def forget_bias_section(results: Path) -> str:
    """LSTM and MomentumLSTM at each other's effective forget bias, T = 50."""
    head = "### The forget-bias control\n\n"
    found = _load(Path(results) / "forget-bias" / SUMMARY)
    if found is None:
        return head + _missing("forget-bias")
    rows = found["rows"]
    lines = [head, f"{found['description']} {_budget(found)}\n\n", _table(rows, "effective forget bias"), "\n"]
    lstm = [r for r in rows if r["cell"] == "lstm"]
    mlstm = [r for r in rows if r["cell"] == "momentum-lstm"]
    pairs = [(a, b) for a in lstm for b in mlstm if a["effective_forget_bias"] == b["effective_forget_bias"]]
    for a, b in pairs:
        lines.append(f"- At effective forget bias {a['effective_forget_bias']:g}, {a['arm']} and {b['arm']} "
                     f"{_compare_words(a, b)}.\n")
    if len(lstm) == 2:
        lines.append(f"- The two LSTMs (forget bias {lstm[0]['effective_forget_bias']:g} vs "
                     f"{lstm[1]['effective_forget_bias']:g}) {_compare_words(lstm[0], lstm[1])}.\n")
    if found.get("paired_seeds") is not None:
        lines.append(f"- Seeds every arm finished: {len(found['paired_seeds'])}.\n")
    return "".join(lines)


def fair_section(results: Path) -> str:
    """RNN vs MomentumRNN with each arm's learning rate chosen on selection seeds."""
    head = "### A fair comparison: RNN vs MomentumRNN, learning rate chosen per arm\n\n"
    found = _load(Path(results) / "fair-rnn" / SUMMARY)
    if found is None:
        return head + _missing("fair-rnn")
    lines = [head, f"{found['description']} {_budget(found)}\n\n"]
    if found["selection"]:
        sel = {}
        for r in found["selection"]:
            sel.setdefault((r["arm"]), []).append(r["accuracy"])
        lines.append("Selection runs (mean held-out accuracy over the selection seeds): "
                     + "; ".join(f"{arm}: {sum(v) / len(v):.3f}" for arm, v in sel.items()) + ".\n\n")
    rows = found["rows"]
    if not rows:
        lines.append("_The learning-rate selection has not finished; no reported runs yet._\n")
        return "".join(lines)
    lines.append(_table(rows) + "\n")
    control = next((r for r in rows if r["cell"] == "rnn"), None)
    for row in rows:
        if control is not None and row is not control:
            lines.append(f"- {row['arm']} vs the control {control['arm']}: {_compare_words(row, control)}.\n")
    return "".join(lines)


def remaining_section(results: Path) -> str:
    """What each part has measured and how to run what is left."""
    from chargen.momentum_study import parts

    lines = ["### Running the rest\n\n", "| part | state | command |\n|---|---|---|\n"]
    adjoint = (Path(results) / "adjoint.json").exists()
    lines.append(f"| adjoint | {'done' if adjoint else 'not run'} | `{STUDY_COMMAND.format(part='adjoint')}` |\n")
    for name in parts():
        found = _load(Path(results) / name / SUMMARY)
        state = "not run" if found is None else "complete" if found.get("complete") else (
            f"incomplete: {sum(r['n'] for r in found['rows'])} reported runs")
        lines.append(f"| {name} | {state} | `{STUDY_COMMAND.format(part=name)}` |\n")
    lines.append("\nEach part saves every run as it finishes and resumes from `runs.jsonl`; `--minutes N` stops "
                 "starting runs after N minutes, so a part can be spread over several sittings.\n\n")
    lines.append("The rest of the full study runs as sweeps (each (variant, lr) is saved as it finishes and "
                 "reused when the command is run again):\n\n")
    for what, command, note in FULL_STUDY:
        lines.append(f"- {what}: `{command}`" + (f"; {note}" if note else "") + "\n")
    return "".join(lines)


SUMMARY = "summary.json"
SWEEP = "chargen compare --grid mu=0,0.3,0.6,0.9 --grid lr=1e-3,3e-3 --s 1"
FULL_STUDY = (  # the parts of issue 14's full study that are sweeps rather than solve-rate probes
    ("palindromes, both families, T = 20 and 50, paper init",
     f"{SWEEP} --task palindrome --length 20 --cells momentum-rnn,momentum-lstm --init paper --seeds 10 --steps 3000 "
     "--out docs/report/results/momentum/sweep-palindrome-20", "then `--length 50` into `sweep-palindrome-50`"),
    ("the grimm LM gap as a function of budget",
     f"{SWEEP} --task lm --corpus grimm --cells momentum-rnn,momentum-lstm --seeds 3 --steps 500 "
     "--out docs/report/results/momentum/sweep-lm-500", "then `--steps 1000` and `--steps 2000` into their own folders"),
    ("the PTB recipe (mu = 0) and the pixel-MNIST recipe (mu = 0.6, s = 0.6) on the LM",
     "chargen compare --task lm --corpus grimm --cells lstm,momentum-lstm --mu 0.6 --s 0.6 --seeds 3 --steps 1000",
     "mu = 0 is the lstm row"),
    ("the surname classifier",
     f"{SWEEP} --task classify --cells momentum-rnn,momentum-lstm --seeds 3 --steps 1500 "
     "--out docs/report/results/momentum/sweep-classify", ""),
)
SECTIONS = (derivation_section, lstm_target_section, forget_bias_section, fair_section, remaining_section)


def momentum_report(results: Path) -> str:
    """All the study's sections, in order."""
    return "## Does momentum help recurrent cells?\n\n" + "\n".join(section(results) for section in SECTIONS)
