"""Weight initialisations for the recurrent cells: PyTorch's uniform init or the MomentumRNN paper's, and the forget-gate bias.

``init="pytorch"`` keeps every cell's own ``reset_parameters`` (U(-1/sqrt(H), 1/sqrt(H))).
``init="paper"`` is the init of Nguyen et al.'s MomentumRNN code: orthogonal ``W_ih``, the
identity in every gate's block of ``W_hh``, zero biases, and for the LSTM family a forget-gate
bias on both biases. ``forget_bias`` is the *sum* ``b_ih[f] + b_hh[f]`` a plain LSTM's forget
gate sees at init, written half on each bias (so ``2.0`` is the paper's 1.0 on each, char-rnn's
``1`` is 0.5 on each). A momentum cell multiplies its input bias by ``s / (1 - mu)`` once the
velocity settles, so its effective forget bias is ``forget_bias / 2 * (1 + s / (1 - mu))``:
see ``effective_forget_bias``.

The GRU family takes the paper init (identity in each of the r, z, n blocks of ``W_hh``) but no
forget bias. Its update gate z is the share of the old state kept, so a bias on z is the nearest
thing, but it is not the LSTM's forget bias under another name: z is coupled (``h = z h + (1 - z) n``,
keeping more writes less), while the LSTM's f keeps without stopping i from writing, and neither
char-rnn nor the MomentumRNN code sets one. Asking for one is an error, as for the RNN.
"""

from __future__ import annotations

from torch import nn

INITS = ("pytorch", "paper")
PAPER_FORGET_BIAS = 2.0  # the paper's code: 1.0 on b_ih and 1.0 on b_hh


def check_init(init: str, forget_bias: float | None) -> None:
    """A ValueError naming the parameter for an unknown init or a non-finite forget bias."""
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if forget_bias is not None and not (forget_bias == forget_bias and abs(forget_bias) < float("inf")):
        raise ValueError(f"forget_bias must be a finite number, got {forget_bias}")


def default_forget_bias(init: str, forget_bias: float | None) -> float | None:
    """The forget bias an init applies when none is given: the paper's 2.0 for ``paper``, none for ``pytorch``."""
    if forget_bias is not None:
        return forget_bias
    return PAPER_FORGET_BIAS if init == "paper" else None


def is_lstm_family(cell: nn.Module) -> bool:
    """Cells with a forget gate (LSTM, MomentumLSTM, phased LSTM): the cell names its block, ``forget_gate``."""
    return getattr(cell, "forget_gate", None) is not None


def initialise(cell: nn.Module, init: str = "pytorch", forget_bias: float | None = None) -> None:
    """Re-initialise one cell's ``weight_ih, weight_hh, bias_ih, bias_hh`` in place (draws from torch's global RNG).

    ``forget_bias`` on a cell without a forget gate is a ValueError: it would silently do nothing.
    """
    import torch

    check_init(init, forget_bias)
    bias = default_forget_bias(init, forget_bias)
    if forget_bias is not None and not is_lstm_family(cell):
        raise ValueError(f"forget_bias: {type(cell).__name__} has no forget gate")
    hidden = cell.hidden_size
    with torch.no_grad():
        if init == "paper":
            nn.init.orthogonal_(cell.weight_ih)
            eye = torch.eye(hidden, dtype=cell.weight_hh.dtype, device=cell.weight_hh.device)
            cell.weight_hh.copy_(eye.repeat(cell.gates, 1))  # identity in each gate's (H, H) block
            cell.bias_ih.zero_()
            cell.bias_hh.zero_()
        if bias is not None and is_lstm_family(cell):
            forget = slice(cell.forget_gate * hidden, (cell.forget_gate + 1) * hidden)  # gate order i, f, g, o
            cell.bias_ih[forget] = bias / 2
            cell.bias_hh[forget] = bias / 2


def effective_forget_bias(forget_bias: float, mu: float = 0.0, s: float = 1.0) -> float:
    """The forget gate's bias once the velocity settles: ``b_hh[f] + b_ih[f] * s / (1 - mu)`` with half on each.

    A plain LSTM (``mu = 0, s = 1``) sees ``forget_bias`` itself; MomentumLSTM at the paper's
    (0.6, 0.6) with the paper's 2.0 sees ``1 + 1.5 = 2.5``.
    """
    if not 0.0 <= mu < 1.0:
        raise ValueError(f"mu must be in [0, 1), got {mu}")
    return forget_bias / 2 * (1.0 + s / (1.0 - mu))
