"""Textbook references made executable: a numpy RNN with hand-written BPTT, and a hand-weighted LSTM.

- ``chargen.reference.text``: the 27-symbol reduction (a-z and space) of the classic exercise;
- ``chargen.reference.numpy_rnn``: a ReLU RNN language model in numpy alone, its forward pass and
  backpropagation through time written out by hand, trained with Adam and truncated BPTT;
- ``chargen.reference.hand_lstm``: ``chargen.cells.LSTMCell`` with weights set by hand: the course
  exercise's own weights (f, i, o, C_t, h_t per input), its answers (b), (c) and the LSTM parameter count;

The experiments that run them live above, in ``chargen.experiments``: ``experiments.reference`` (the
numpy RNN against chargen's LSTM on one reduced text, ``chargen reference numpy-rnn``) and
``experiments.tutorial`` (the PyTorch name tutorials' own networks beside an Elman RNN and an LSTM).

``numpy_rnn`` and ``text`` need numpy alone; the hand LSTM imports torch.
"""

from __future__ import annotations

from chargen.reference.hand_lstm import (
    exercise_answers,
    exercise_cell,
    exercise_step,
    exercise_table,
    lstm_parameter_count,
)
from chargen.reference.numpy_rnn import (
    Adam,
    EpochRecord,
    NumpyRNN,
    RNNSettings,
    fit_rnn,
)
from chargen.reference.text import REDUCTION_RULE, SYMBOLS, encode, reduce_text

__all__ = [
    "REDUCTION_RULE",
    "SYMBOLS",
    "Adam",
    "EpochRecord",
    "NumpyRNN",
    "RNNSettings",
    "encode",
    "exercise_answers",
    "exercise_cell",
    "exercise_step",
    "exercise_table",
    "fit_rnn",
    "lstm_parameter_count",
    "reduce_text",
]
