"""Textbook references made executable: a numpy RNN with hand-written BPTT, and a hand-weighted LSTM.

- ``chargen.reference.text``: the 27-symbol reduction (a-z and space) of the classic exercise;
- ``chargen.reference.numpy_rnn``: a ReLU RNN language model in numpy alone, its forward pass and
  backpropagation through time written out by hand, trained with Adam and truncated BPTT;
- ``chargen.reference.hand_lstm``: ``chargen.cells.LSTMCell`` with weights set by hand so its gates
  act as switches (store a bit on a flag, show it later), traced step by step;
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
from chargen.reference.hand_lstm import DEMO, memory_cell, trace_memory
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
    "fit_rnn",
    "load_reduced",
    "load_results",
    "memory_cell",
    "reduce_text",
    "run_reference",
    "trace_memory",
]
