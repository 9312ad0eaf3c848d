"""Textbook references made executable: a numpy RNN with hand-written BPTT, and a hand-weighted LSTM.

- ``chargen.reference.text``: the 27-symbol reduction (a-z and space) of the classic exercise;
- ``chargen.reference.numpy_rnn``: a ReLU RNN language model in numpy alone, its forward pass and
  backpropagation through time written out by hand, trained with Adam and truncated BPTT;
- ``chargen.reference.hand_lstm``: ``chargen.cells.LSTMCell`` with weights set by hand: the course
  exercise's own weights (f, i, o, C_t, h_t per input), and a store/read switch traced step by step;
- ``chargen.reference.tutorial``: the PyTorch name tutorials' own i2h/i2o networks (linear hidden
  update) for classifying and generating names, trained beside an Elman RNN and an LSTM;
- ``chargen.reference.experiment``: the numpy RNN against chargen's LSTM on one reduced text
  (``chargen reference numpy-rnn``), saved as ``reference.json``.

``numpy_rnn`` and ``text`` need numpy alone; the comparison and the hand LSTM import torch.
"""

from __future__ import annotations

from chargen.reference.experiment import (
    FORMAT,
    RESULTS_JSON,
    ReferenceResult,
    evaluate_torch_lm,
    load_reduced,
    load_results,
    run_reference,
)
from chargen.reference.hand_lstm import (
    DEMO,
    exercise_answers,
    exercise_cell,
    exercise_step,
    exercise_table,
    lstm_parameter_count,
    memory_cell,
    trace_memory,
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
    "DEMO",
    "FORMAT",
    "REDUCTION_RULE",
    "RESULTS_JSON",
    "SYMBOLS",
    "Adam",
    "EpochRecord",
    "NumpyRNN",
    "RNNSettings",
    "ReferenceResult",
    "encode",
    "evaluate_torch_lm",
    "exercise_answers",
    "exercise_cell",
    "exercise_step",
    "exercise_table",
    "fit_rnn",
    "load_reduced",
    "load_results",
    "lstm_parameter_count",
    "memory_cell",
    "reduce_text",
    "run_reference",
    "trace_memory",
]
