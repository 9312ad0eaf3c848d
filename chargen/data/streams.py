"""Batches for stateful LM training: N contiguous streams (torch-rnn's layout) or random windows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


def as_streams(data: Tensor, num_streams: int) -> Tensor:
    """Cut a 1-D id tensor into ``num_streams`` contiguous rows, time-major: ``(L, N)``.

    Row ``n`` of batch ``i + 1`` continues row ``n`` of batch ``i``, so a state carried across
    batches has seen exactly the text before it. The tail that does not fill a row is dropped.
    """
    length = data.numel() // num_streams
    return data[: length * num_streams].view(num_streams, length).t()


@dataclass
class _Batches:
    """What both batchers are built from: ``batch_size`` is the global batch, ``rank`` takes its share."""

    data: Tensor  # (total,) token ids
    batch_size: int
    seq_len: int
    seed: int = 0
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.batch_size % self.world_size:
            raise ValueError(f"a batch of {self.batch_size} does not split evenly over {self.world_size} processes")
        self.share = self.batch_size // self.world_size  # streams (or windows) of this rank
        self.generator = torch.Generator().manual_seed(self.seed)
        self.epoch = 0


@dataclass
class StreamBatcher(_Batches):
    """Walks ``(seq_len + 1)``-long windows down contiguous streams; ``reset`` marks a new epoch.

    Each epoch starts at a random offset below ``seq_len`` (drawn from its own generator) so chunk
    boundaries move between epochs; the position is part of ``state_dict`` for exact resume.

    ``batch_size`` is the global batch: under torchrun the text is cut into ``batch_size``
    streams exactly as in one process, and rank ``r`` of ``world_size`` walks its own block of
    ``batch_size / world_size`` of them. Every rank draws the same offsets, so together the ranks
    see the single-process batch, and each rank's carried state stays with its own streams.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        needed = self.batch_size * (self.seq_len + 1)
        if self.data.numel() < needed:
            raise ValueError(
                f"the training text has {self.data.numel():,} characters; one batch of "
                f"{self.batch_size} streams x {self.seq_len + 1} characters needs {needed:,}"
            )
        streams = as_streams(self.data, self.batch_size)  # (L, N)
        self.streams = streams[:, self.rank * self.share : (self.rank + 1) * self.share]  # (L, N / world)
        self.pos = self._epoch_start()

    def _epoch_start(self) -> int:
        return int(torch.randint(self.seq_len, (1,), generator=self.generator))

    def next(self) -> tuple[Tensor, Tensor, bool]:
        """``(inputs (T, N), targets (T, N), reset)``; ``reset`` is True on an epoch's first batch."""
        if self.pos + self.seq_len + 1 > self.streams.shape[0]:
            self.epoch += 1
            self.pos = self._epoch_start()
        reset = self.pos < self.seq_len  # an epoch's first window (every epoch starts below seq_len)
        window = self.streams[self.pos : self.pos + self.seq_len + 1]
        self.pos += self.seq_len
        return window[:-1], window[1:], reset

    @property
    def steps_per_epoch(self) -> int:
        return (self.streams.shape[0] - 1) // self.seq_len

    def describe_last(self) -> str:
        """Where the last batch came from, for error messages."""
        start = self.pos - self.seq_len
        return f"epoch {self.epoch}, characters {start}-{start + self.seq_len} of each stream"

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "pos": self.pos, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self.generator.set_state(state["generator"])


@dataclass
class WindowBatcher(_Batches):
    """Independent random windows; every batch starts from a zero state (the simple mode).

    As with streams, ``batch_size`` is global: every rank draws the same windows and keeps its share.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.data.numel() < self.seq_len + 2:
            raise ValueError(
                f"the training text has {self.data.numel():,} characters; a window needs {self.seq_len + 2}"
            )
        self.starts = torch.zeros(0, dtype=torch.long)

    def next(self) -> tuple[Tensor, Tensor, bool]:
        starts = torch.randint(self.data.numel() - self.seq_len - 1, (self.batch_size,), generator=self.generator)
        self.starts = starts[self.rank * self.share : (self.rank + 1) * self.share]
        offsets = torch.arange(self.seq_len + 1)
        window = self.data[self.starts[None, :] + offsets[:, None]]  # (T+1, N / world)
        return window[:-1], window[1:], True

    @property
    def steps_per_epoch(self) -> int:
        return max(1, self.data.numel() // (self.batch_size * self.seq_len))

    def describe_last(self) -> str:
        shown = ", ".join(str(int(s)) for s in self.starts[:4])
        return f"random windows at characters {shown}{', ...' if len(self.starts) > 4 else ''}"

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
