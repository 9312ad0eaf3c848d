"""A numpy RNN language model whose forward pass and backpropagation through time are written out by hand.

The model (one hidden layer of ReLU units, one-hot characters in, a softmax over characters out)::

    h_t = relu(W_xh x_t + W_hh h_{t-1} + b_h)        x_t: one-hot (V,), h_t: (H,)
    y_t = softmax(W_hy h_t + b_y)                     y_t: (V,)
    L   = mean over steps t and streams n of -log y_t[target_t]

BPTT, read off the chain rule from the last step back (``*`` is elementwise)::

    dL/dz_t      = (y_t - onehot(target_t)) / (T N)             z_t = W_hy h_t + b_y
    dL/dh_t      = W_hy^T dL/dz_t + W_hh^T dL/da_{t+1}           the second term is 0 at t = T
    dL/da_t      = dL/dh_t * [a_t > 0]                           a_t = W_xh x_t + W_hh h_{t-1} + b_h
    dL/dW_hh     = sum_t dL/da_t h_{t-1}^T      dL/dW_xh = sum_t dL/da_t x_t^T      dL/db_h = sum_t dL/da_t
    dL/dW_hy     = sum_t dL/dz_t h_t^T          dL/db_y  = sum_t dL/dz_t
    dL/dh_0      = W_hh^T dL/da_1

Rows are batch entries, so in code ``W x`` reads ``x @ W.T``. Only the two recurrences (``h`` forward,
``dL/dh`` backward) loop over time; every other product covers all ``T * N`` positions in one
matmul. Training cuts the text into contiguous streams and walks them in chunks with truncated BPTT:
the state is carried from chunk to chunk but no gradient flows across a chunk boundary.

Besides chargen's error classes, this module imports numpy only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from chargen.errors import CorpusError, TrainingError, UsageError

Params = dict[str, np.ndarray]


@dataclass
class Backprop:
    """One forward and backward pass: the mean loss, a gradient per parameter, and the two state ends."""

    loss: float
    grads: Params
    dh0: np.ndarray  # (N, H): dL/dh_0, the gradient with respect to the initial state
    h: np.ndarray  # (N, H): h_T, the state to carry into the next chunk


class NumpyRNN:
    """A ReLU RNN language model over ``vocab_size`` one-hot symbols; ``params`` holds its arrays by name.

    Init: ``W_hh = hh_scale * I``, the IRNN of Le, Jaitly and Hinton (2015) scaled below 1 so that
    activity decays rather than grows until training says otherwise (0.5 trained better here than
    0.9); ``W_xh`` and ``W_hy`` from ``N(0, 1/H)``, so the first predictions are near uniform (loss
    ``ln V``); zero biases.
    """

    def __init__(
        self, vocab_size: int, hidden_size: int, *, seed: int = 0, hh_scale: float = 0.5, dtype: Any = np.float32
    ) -> None:
        if vocab_size < 1 or hidden_size < 1:
            raise ValueError(f"NumpyRNN: vocab_size and hidden_size must be positive, got {vocab_size} and {hidden_size}")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.dtype = np.dtype(dtype)
        rng = np.random.default_rng(seed)
        H, V = hidden_size, vocab_size
        self.params: Params = {
            "W_xh": rng.normal(0.0, 1.0 / math.sqrt(H), (H, V)),
            "W_hh": hh_scale * np.eye(H),
            "b_h": np.zeros(H),
            "W_hy": rng.normal(0.0, 1.0 / math.sqrt(H), (V, H)),
            "b_y": np.zeros(V),
        }
        self.params = {k: v.astype(self.dtype) for k, v in self.params.items()}

    def num_parameters(self) -> int:
        return sum(p.size for p in self.params.values())

    def zero_state(self, batch: int) -> np.ndarray:
        return np.zeros((batch, self.hidden_size), dtype=self.dtype)

    # -- forward -----------------------------------------------------------------------------

    def hidden_states(self, inputs: np.ndarray, h0: np.ndarray) -> np.ndarray:
        """``inputs (T, N)`` symbol ids from ``h0 (N, H)`` -> ``hs (T + 1, N, H)`` with ``hs[0] = h0``."""
        p = self.params
        T, N = inputs.shape
        xw = p["W_xh"].T[inputs] + p["b_h"]  # (T, N, H): W_xh times a one-hot x_t is one column of W_xh
        w_hh_t = np.ascontiguousarray(p["W_hh"].T)
        hs = np.empty((T + 1, N, self.hidden_size), dtype=self.dtype)
        hs[0] = h0
        for t in range(T):
            np.maximum(xw[t] + hs[t] @ w_hh_t, 0.0, out=hs[t + 1])
        return hs

    def logits(self, hs: np.ndarray) -> np.ndarray:
        """``hs (T, N, H) -> logits (T, N, V)``."""
        return hs @ self.params["W_hy"].T + self.params["b_y"]

    # -- loss and gradients ------------------------------------------------------------------

    def loss_and_grads(self, inputs: np.ndarray, targets: np.ndarray, h0: np.ndarray | None = None) -> Backprop:
        """Mean cross-entropy of ``targets (T, N)`` given ``inputs (T, N)``, and BPTT over all ``T`` steps."""
        p = self.params
        T, N = inputs.shape
        H, V = self.hidden_size, self.vocab_size
        h0 = self.zero_state(N) if h0 is None else np.asarray(h0, dtype=self.dtype)
        hs = self.hidden_states(inputs, h0)  # (T + 1, N, H)
        h = hs[1:]  # (T, N, H): h_1 .. h_T
        logp = log_softmax(self.logits(h))  # (T, N, V)
        picked = np.take_along_axis(logp, targets[..., None], axis=2)  # (T, N, 1)
        loss = -float(picked.mean())

        dz = np.exp(logp)  # (T, N, V): softmax - onehot, divided by the T*N positions the loss averages over
        dz[np.arange(T)[:, None], np.arange(N)[None, :], targets] -= 1.0
        dz /= T * N
        dh_out = dz @ p["W_hy"]  # (T, N, H): each step's own output's pull on h_t

        da = np.empty((T, N, H), dtype=self.dtype)  # dL/da_t for every step
        dh_next = np.zeros((N, H), dtype=self.dtype)  # W_hh^T dL/da_{t+1}: what the future asks of h_t
        w_hh = p["W_hh"]
        for t in range(T - 1, -1, -1):
            # relu'(a_t) = [a_t > 0] = [h_t > 0], so the pre-activations need not be kept
            np.multiply(dh_out[t] + dh_next, h[t] > 0, out=da[t])
            dh_next = da[t] @ w_hh  # (N, H)

        da_flat = da.reshape(T * N, H)
        # x_t is one-hot, so sum_t dL/da_t x_t^T adds each step's dL/da_t into its symbol's column
        onehot = np.zeros((T * N, V), dtype=self.dtype)
        onehot[np.arange(T * N), inputs.reshape(-1)] = 1.0
        grads = {
            "W_xh": da_flat.T @ onehot,  # (H, V)
            "W_hh": da_flat.T @ hs[:-1].reshape(T * N, H),  # (H, H): sum_t dL/da_t h_{t-1}^T
            "b_h": da_flat.sum(0),
            "W_hy": dz.reshape(T * N, V).T @ h.reshape(T * N, H),  # (V, H)
            "b_y": dz.reshape(T * N, V).sum(0),
        }
        return Backprop(loss, grads, dh_next, hs[-1].copy())  # a copy: a view would keep all of hs alive

    # -- evaluation --------------------------------------------------------------------------

    def evaluate(self, streams: np.ndarray, chunk: int = 256) -> tuple[float, float]:
        """Mean loss (nats) and next-symbol accuracy over ``streams (L, S)`` read with carried state.

        Every position but each stream's first is predicted (``S * (L - 1)`` of them), each from
        all the stream's symbols before it; the state starts at zero.
        """
        L, S = streams.shape
        h = self.zero_state(S)
        total_loss, correct = 0.0, 0
        for start in range(0, L - 1, chunk):
            x = streams[start : start + chunk + 1]
            inputs, targets = x[:-1], x[1:]  # (T, S)
            hs = self.hidden_states(inputs, h)
            logits = self.logits(hs[1:])  # (T, S, V)
            logp = log_softmax(logits)
            total_loss -= float(np.take_along_axis(logp, targets[..., None], axis=2).sum())
            correct += int((logits.argmax(2) == targets).sum())
            h = hs[-1]
        positions = S * (L - 1)
        return total_loss / positions, correct / positions


def log_softmax(z: np.ndarray) -> np.ndarray:
    """``log softmax`` over the last axis, shifted by the max so ``exp`` cannot overflow."""
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


# -- training ----------------------------------------------------------------------------------


class Adam:
    """Adam (Kingma and Ba 2015) on a dict of numpy arrays, updated in place."""

    def __init__(self, params: Params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, params: Params, grads: Params, lr: float | None = None) -> None:
        self.t += 1
        lr = self.lr if lr is None else lr
        # the bias corrections folded into the step size, as in the paper's section 2
        scale = lr * math.sqrt(1 - self.beta2**self.t) / (1 - self.beta1**self.t)
        for k, g in grads.items():
            m, v = self.m[k], self.v[k]
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            params[k] -= scale * m / (np.sqrt(v) + self.eps)


def clip_grads(grads: Params, max_norm: float) -> float:
    """Scale ``grads`` in place so their global norm is at most ``max_norm`` (0 = off); return the norm before."""
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
    if max_norm and norm > max_norm:
        for g in grads.values():
            g *= max_norm / norm
    return norm


def as_streams(ids: np.ndarray, num_streams: int) -> np.ndarray:
    """``ids (n,)`` cut into ``num_streams`` contiguous rows, time-major ``(L, S)``; the tail that does not
    fill a row is dropped (the layout of ``chargen.data.streams.as_streams``)."""
    length = len(ids) // num_streams
    return ids[: length * num_streams].reshape(num_streams, length).T


def chunks(streams: np.ndarray, seq_len: int, offset: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(inputs, targets)``, each ``(seq_len, S)``, walking down the streams from ``offset``; chunk ``k + 1``
    continues chunk ``k`` in every column. A last chunk shorter than ``seq_len`` is dropped."""
    for start in range(offset, streams.shape[0] - seq_len, seq_len):
        x = streams[start : start + seq_len + 1]
        yield x[:-1], x[1:]


@dataclass
class RNNSettings:
    """How to build and train the numpy RNN; ``check`` words its complaints as the CLI's options.

    The defaults were picked on origin reduced to 27 symbols at H = 400, by held-out accuracy after
    two epochs (cosine schedule over the two): streams x chunk length at lr 2e-3: 64 x 50: 49.2%;
    32 x 50: 55.4%; 32 x 25: 60.1%; 16 x 25: 61.7%; 8 x 25: 62.4% but 1.5x slower per epoch. At
    16 x 25, lr 1e-3 gave 58.7%. Many small updates suit this model.
    """

    hidden_size: int = 400
    epochs: int = 15
    seq_len: int = 25
    batch_size: int = 16
    lr: float = 2e-3
    min_lr_ratio: float = 0.1  # cosine decay from lr to lr * min_lr_ratio over all epochs
    # Adam moves every weight by about lr in the sign of its gradient; W_hh's gradient is nearly
    # rank 1 (h >= 0), so early steps push W_hh coherently by about lr * H and can blow the ReLU
    # recurrence up for a few chunks (losses in the hundreds). Clipping bounds those steps and
    # Adam recovers within the epoch. A tenth of the rate for W_hh avoided the spikes but trained
    # worse (49.2% against 55.4% at 32 x 50); a 200-step warmup only delayed them.
    clip: float = 5.0
    hh_scale: float = 0.5
    seed: int = 0

    def check(self) -> None:
        for name in ("hidden_size", "epochs", "seq_len", "batch_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be positive, got {getattr(self, name)}", params=name)
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UsageError(f"lr must be positive, got {self.lr}", params="lr")
        if not self.clip >= 0:
            raise UsageError(f"clip must be 0 (off) or positive, got {self.clip}", params="clip")


@dataclass
class EpochRecord:
    """One epoch of the numpy RNN: mean training loss, held-out loss and accuracy, and its timings."""

    epoch: int
    train_loss: float  # mean over the epoch's chunks, nats per character, as the weights moved
    val_loss: float  # nats per character on the held-out streams after the epoch
    val_bpc: float
    val_accuracy: float  # fraction of held-out positions whose argmax prediction is the next symbol
    lr: float  # the learning rate at the epoch's last update
    train_seconds: float
    eval_seconds: float
    chars_per_second: float  # training characters per second of train_seconds


RNNProgress = Callable[[dict[str, Any]], None]
"""``progress(info)``: ``info["event"]`` is ``"chunk"`` (epoch, chunk, chunks, loss) or ``"epoch"`` (record)."""


def fit_rnn(
    train_ids: np.ndarray,
    val_streams: np.ndarray,
    vocab_size: int,
    settings: RNNSettings,
    progress: RNNProgress | None = None,
) -> tuple[NumpyRNN, list[EpochRecord]]:
    """Train a ``NumpyRNN`` on ``train_ids (n,)`` with Adam and truncated BPTT; evaluate after every epoch.

    The text is cut into ``batch_size`` contiguous streams; chunks of ``seq_len`` characters walk down
    them with the state carried across chunks (not across epochs). Each epoch starts at a random
    offset below ``seq_len``, so chunk boundaries move from epoch to epoch.
    """
    settings.check()
    streams = as_streams(train_ids, settings.batch_size)  # (L, N)
    if streams.shape[0] < settings.seq_len + 1:
        raise CorpusError(
            f"the training text has {len(train_ids):,} symbols; one batch of {settings.batch_size} streams x "
            f"{settings.seq_len + 1} symbols needs {settings.batch_size * (settings.seq_len + 1):,}"
        )
    rng = np.random.default_rng(settings.seed)
    model = NumpyRNN(vocab_size, settings.hidden_size, seed=settings.seed, hh_scale=settings.hh_scale)
    optimizer = Adam(model.params, settings.lr)
    per_epoch = (streams.shape[0] - 1) // settings.seq_len  # an upper bound: the random offset may cost one
    total = settings.epochs * per_epoch
    history: list[EpochRecord] = []
    lr = settings.lr
    for epoch in range(1, settings.epochs + 1):
        started = time.perf_counter()
        h = model.zero_state(settings.batch_size)
        losses = []
        offset = int(rng.integers(settings.seq_len))
        for k, (inputs, targets) in enumerate(chunks(streams, settings.seq_len, offset)):
            bp = model.loss_and_grads(inputs, targets, h)
            if not (math.isfinite(bp.loss) and math.isfinite(clip_grads(bp.grads, settings.clip))):
                raise TrainingError(f"the numpy RNN's loss or gradient became non-finite in epoch {epoch}; "
                                    "try a lower lr or clip")
            lr = cosine(settings.lr, settings.min_lr_ratio, optimizer.t / total)
            optimizer.step(model.params, bp.grads, lr)
            h = bp.h  # carried into the next chunk; its gradient stops here (truncated BPTT)
            losses.append(bp.loss)
            if progress:
                progress({"event": "chunk", "epoch": epoch, "chunk": k + 1, "chunks": per_epoch, "loss": bp.loss})
        train_seconds = time.perf_counter() - started
        val_loss, accuracy = model.evaluate(val_streams)
        record = EpochRecord(
            epoch=epoch,
            train_loss=float(np.mean(losses)),
            val_loss=val_loss,
            val_bpc=val_loss / math.log(2),
            val_accuracy=accuracy,
            lr=lr,
            train_seconds=train_seconds,
            eval_seconds=time.perf_counter() - started - train_seconds,
            chars_per_second=len(losses) * settings.seq_len * settings.batch_size / train_seconds,
        )
        history.append(record)
        if progress:
            progress({"event": "epoch", "record": record})
    return model, history


def cosine(lr: float, min_ratio: float, fraction: float) -> float:
    """``lr`` decayed along half a cosine to ``lr * min_ratio`` as ``fraction`` goes from 0 to 1."""
    floor = lr * min_ratio
    return floor + (lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, fraction)))
