"""The report's question map: each course exercise, the section that answers it and the command that makes its results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chargen.report.numbers import Numbers

MAKERS = {
    "word2vec.json": "python benchmarks/word2vec.py --part all --seeds 0,1,2 --threads 2",
    "tutorial.json": "python -c 'from chargen.experiments.tutorial import *; "
                     "run_tutorial_study(TutorialSettings(steps=1200), \"docs/report/results/exercises\", seeds=[0, 1, 2])'",
    "optimisers.json": "python -c 'from chargen.experiments.optimisers import *; "
                       "run_optimisers(OptimiserSettings(), \"docs/report/results/exercises\", seeds=[0, 1, 2])'",
    "hand_lstm.json": "python -m chargen.experiments.exercises --only hand_lstm --out docs/report/results/exercises",
    "lstm_params.json": "python -m chargen.experiments.exercises --only lstm_params --out docs/report/results/exercises",
    "engines.json": "python -m chargen.experiments.exercises --only engines --out docs/report/results/exercises",
    "observations.json": "python -m chargen.experiments.exercises --only observations --out docs/report/results/exercises",
}


def load_result(results: Path, name: str) -> dict[str, Any] | None:
    """The exercise results file ``name`` under ``results`` (None: not made yet)."""
    path = Path(results) / name
    return json.loads(path.read_text()) if path.exists() else None


def missing_result(name: str) -> str:
    """The line a section shows while ``name`` is not made yet: the command that makes it."""
    return f"*No `{name}` yet: make it with `{MAKERS[name]}`.*"


# -- the map ----------------------------------------------------------------------------------------
SURNAMES, TUTORIALS, PALINDROMES = ("surnames (RNN / LSTM / MomentumRNN)", "name tutorials",
                                    "palindromes / phased LSTM / book LSTM")
NUMPY, WORD2VEC, LSTM_PALINDROMES = "numpy RNN + hand LSTM", "word2vec", "LSTM palindromes"
W2V, HAND, PHASED = ("word2vec: skip-gram with full softmax and negative sampling", "The hand-weighted LSTM exercise",
                     "Phased LSTM: when the time gate helps, what can be learned")
TUTORIAL_NETS = "The tutorials' own networks"
QUESTIONS: list[dict[str, str]] = [
    # (assignment, question, section, command); numbered in this order within each assignment (question_map)
    {"assignment": SURNAMES, "question": "derive the MomentumRNN cell from gradient descent with momentum",
     "section": "Momentum: from gradient descent to the heavy ball", "command": "chargen momentum-study --only adjoint --out DIR"},
    {"assignment": SURNAMES, "question": "train an RNN, an LSTM and their momentum versions as classifiers; compare accuracy",
     "section": "RNN vs MomentumRNN, LSTM vs MomentumLSTM", "command": "chargen compare --task classify --cells rnn,lstm,momentum-rnn,momentum-lstm"},
    {"assignment": SURNAMES, "question": "why would an LSTM beat an RNN?",
     "section": "Why an LSTM rather than an RNN", "command": "chargen compare --task classify --cells rnn,lstm"},
    {"assignment": SURNAMES, "question": "momentum and adaptive learning rates vs plain SGD",
     "section": "Optimisers: SGD, momentum, RMSProp, Adam", "command": MAKERS["optimisers.json"]},
    {"assignment": TUTORIALS, "question": "rewrite the from-scratch RNN with nn.RNNCell, then nn.RNN",
     "section": "Three engines: loop, torch-cell, fused", "command": "Recurrent('rnn', D, H, engine='torch-cell') (chargen.core); " + MAKERS["engines.json"]},
    {"assignment": TUTORIALS, "question": "would an LSTM improve the classifier's accuracy?",
     "section": TUTORIAL_NETS, "command": MAKERS["tutorial.json"]},
    {"assignment": TUTORIALS, "question": "the generator: sketch it with an RNN cell, its forward equations, how it is trained",
     "section": TUTORIAL_NETS, "command": MAKERS["tutorial.json"]},
    {"assignment": TUTORIALS, "question": "would a bigger network or an LSTM generate better names?",
     "section": TUTORIAL_NETS, "command": MAKERS["tutorial.json"]},
    {"assignment": PALINDROMES, "question": "how far back can an RNN and an LSTM remember?",
     "section": "The palindrome probe", "command": "chargen probe"},
    {"assignment": PALINDROMES, "question": "when does the time gate help?", "section": PHASED,
     "command": "chargen train --cell phased-lstm --engine loop"},
    {"assignment": PALINDROMES, "question": "which of tau, s, r_on can be learned?", "section": PHASED,
     "command": "chargen train --cell phased-lstm --engine loop"},
    {"assignment": PALINDROMES, "question": "what changes as training evolves?",
     "section": "Observations: training and temperature", "command": "chargen train --corpus grimm"},
    {"assignment": PALINDROMES, "question": "what do you observe at each temperature?",
     "section": "Observations: training and temperature", "command": "chargen sample --temp T"},
    {"assignment": NUMPY, "question": "BPTT by hand, checked against finite differences and autograd",
     "section": "Backpropagation through time in the vanilla RNN", "command": "chargen report --out DIR --rerun bptt"},
    {"assignment": NUMPY, "question": "train the numpy RNN on a text",
     "section": "A numpy RNN with hand-written BPTT", "command": "chargen reference numpy-rnn"},
    {"assignment": NUMPY, "question": "LSTM parameter count, one bias per gate",
     "section": "The LSTM parameter count, one bias per gate", "command": MAKERS["lstm_params.json"]},
    {"assignment": NUMPY, "question": "hand-weighted LSTM (a): C_t and h_t for three inputs", "section": HAND,
     "command": MAKERS["hand_lstm.json"]},
    {"assignment": NUMPY, "question": "hand-weighted LSTM (b): which input gives `C_t ≈ C_{t-1} + h_{t-1}`?", "section": HAND,
     "command": MAKERS["hand_lstm.json"]},
    {"assignment": NUMPY, "question": "hand-weighted LSTM (c): which input gives `h_t ≈ (C_{t-1} + h_{t-1}) / 2`?",
     "section": HAND, "command": MAKERS["hand_lstm.json"]},
    {"assignment": WORD2VEC, "question": "the softmax loss as a cross-entropy", "section": W2V, "command": "chargen word2vec"},
    {"assignment": WORD2VEC, "question": "its gradient with respect to v_c: observed minus expected", "section": W2V,
     "command": "chargen word2vec"},
    {"assignment": WORD2VEC, "question": "the cost of each gradient; why a huge vocabulary hurts", "section": W2V,
     "command": MAKERS["word2vec.json"]},
    {"assignment": WORD2VEC, "question": "the negative-sampling loss and its gradient; does its cost grow with the vocabulary?",
     "section": W2V, "command": MAKERS["word2vec.json"]},
    {"assignment": WORD2VEC, "question": "nearest words of a trained model", "section": W2V,
     "command": "chargen word2vec --similar king --model DIR"},
    {"assignment": LSTM_PALINDROMES, "question": "train an LSTM to predict a palindrome's last digit; how does length matter?",
     "section": "The palindrome probe", "command": "chargen probe --cells lstm"},
]


def _anchor(title: str) -> str:
    keep = "".join(ch for ch in title.lower() if ch.isalnum() or ch in " -")
    return keep.replace(" ", "-")


def question_map() -> list[dict[str, str]]:
    """Each assignment question, numbered ``A.Q`` (assignment in order of first mention, question within it), with
    the report section and the command that answer it."""
    assignments = list(dict.fromkeys(q["assignment"] for q in QUESTIONS))
    counts: dict[str, int] = {}
    rows = []
    for q in QUESTIONS:
        counts[q["assignment"]] = counts.get(q["assignment"], 0) + 1
        number = f"{assignments.index(q['assignment']) + 1}.{counts[q['assignment']]}"
        rows.append(dict(q, number=number, anchor=_anchor(q["section"])))
    return rows


def question_map_section(n: Numbers | None = None) -> str:
    rows = ["| # | assignment | question | answered in | command |", "|---|---|---|---|---|"]
    for q in question_map():
        rows.append(f"| {(n or Numbers()).label(q['number'])} | {q['assignment']} | {q['question']} | [{q['section']}](#{q['anchor']}) "
                    f"| `{q['command']}` |")
    return "## Where each exercise is answered\n\n" + "\n".join(rows)
