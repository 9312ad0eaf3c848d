"""The report's question map: each course exercise, the section that answers it and the command that makes its results."""

from __future__ import annotations

MAKERS = {
    "word2vec.json": "python benchmarks/word2vec.py --part all --seeds 0,1,2 --threads 2",
    "tutorial.json": "python -c 'from chargen.experiments.tutorial import *; "
                     "run_tutorial_study(TutorialSettings(steps=1200), \"docs/report/results/exercises\")'",
    "optimisers.json": "python -c 'from chargen.experiments.optimisers import *; "
                       "run_optimisers(OptimiserSettings(), \"docs/report/results/exercises\")'",
    "hand_lstm.json": "python -m chargen.experiments.exercises --only hand_lstm",
    "lstm_params.json": "python -m chargen.experiments.exercises --only lstm_params",
    "engines.json": "python -m chargen.experiments.exercises --only engines",
    "observations.json": "python -m chargen.experiments.exercises --only observations",
}


# -- the map ----------------------------------------------------------------------------------------
QUESTIONS: list[dict[str, str]] = [
    # (assignment, question, section, command)
    {"assignment": "surnames (RNN / LSTM / MomentumRNN)", "question": "train an RNN and an LSTM classifier; compare accuracy",
     "section": "RNN vs MomentumRNN, LSTM vs MomentumLSTM", "command": "chargen compare --task classify --cells rnn,lstm"},
    {"assignment": "surnames (RNN / LSTM / MomentumRNN)", "question": "why would an LSTM beat an RNN?",
     "section": "Why an LSTM rather than an RNN", "command": "chargen compare --task lm --cells rnn,lstm"},
    {"assignment": "surnames (RNN / LSTM / MomentumRNN)", "question": "momentum and adaptive learning rates vs plain SGD",
     "section": "Optimisers: SGD, momentum, RMSProp, Adam", "command": MAKERS["optimisers.json"]},
    {"assignment": "name tutorials", "question": "rewrite the from-scratch RNN with nn.RNNCell, then nn.RNN",
     "section": "Three engines: loop, torch-cell, fused", "command": "Recurrent('lstm', D, H, engine='torch-cell') (chargen.core); python -m chargen.experiments.exercises --only engines"},
    {"assignment": "name tutorials", "question": "would an LSTM improve accuracy? would a bigger network?",
     "section": "The tutorials' own networks", "command": MAKERS["tutorial.json"]},
    {"assignment": "name tutorials", "question": "the generator: sketch, forward equations, training",
     "section": "The tutorials' own networks", "command": "chargen train --task generate"},
    {"assignment": "palindromes / phased LSTM / book LSTM", "question": "how far back can an RNN and an LSTM remember?",
     "section": "The palindrome probe", "command": "chargen probe"},
    {"assignment": "palindromes / phased LSTM / book LSTM", "question": "when does the time gate help? which of tau, s, r_on can be learned?",
     "section": "Phased LSTM: when the time gate helps, what can be learned", "command": "chargen train --cell phased-lstm --engine loop"},
    {"assignment": "palindromes / phased LSTM / book LSTM", "question": "what changes as training evolves? what at each temperature?",
     "section": "Observations: training and temperature", "command": "chargen train --corpus grimm; chargen sample --temp T"},
    {"assignment": "numpy RNN + hand LSTM", "question": "BPTT by hand, checked",
     "section": "Backpropagation through time in the vanilla RNN", "command": "chargen reference numpy-rnn"},
    {"assignment": "numpy RNN + hand LSTM", "question": "LSTM parameter count",
     "section": "The LSTM parameter count, one bias per gate", "command": "python -m chargen.experiments.exercises --only lstm_params"},
    {"assignment": "numpy RNN + hand LSTM", "question": "hand-weighted LSTM (a), (b), (c)",
     "section": "The hand-weighted LSTM exercise", "command": "python -m chargen.experiments.exercises --only hand_lstm"},
    {"assignment": "word2vec", "question": "softmax loss as cross-entropy; its gradient; cost; negative sampling and its gradient",
     "section": "word2vec: skip-gram with full softmax and negative sampling", "command": "chargen word2vec"},
    {"assignment": "word2vec", "question": "nearest words of a trained model",
     "section": "word2vec: skip-gram with full softmax and negative sampling", "command": "chargen word2vec --similar king --model DIR"},
    {"assignment": "LSTM palindromes", "question": "train an LSTM to tell palindromes; how does length matter?",
     "section": "The palindrome probe", "command": "chargen probe --cells lstm"},
]


def _anchor(title: str) -> str:
    keep = "".join(ch for ch in title.lower() if ch.isalnum() or ch in " -")
    return keep.replace(" ", "-")


def question_map() -> list[dict[str, str]]:
    """Each assignment question with the report section and the command that answer it."""
    return [dict(q, anchor=_anchor(q["section"])) for q in QUESTIONS]


def question_map_section() -> str:
    rows = ["| assignment | question | answered in | command |", "|---|---|---|---|"]
    for q in question_map():
        rows.append(f"| {q['assignment']} | {q['question']} | [{q['section']}](#{q['anchor']}) | `{q['command']}` |")
    return "## Where each exercise is answered\n\n" + "\n".join(rows)
