"""Random digit palindromes for the memorisation probe: the first T-1 digits in, the last digit out.

A palindrome of length ``T`` reads the same both ways, so its last digit is its first: to
predict it the network must carry one digit across ``T - 2`` steps of distracting digits.
Chance is 10%. The digits are token ids 0-9 (the model embeds them; ``DIGITS`` is the
vocabulary), drawn on the fly from a seeded ``torch.Generator`` so training data is endless
and reproducible; the held-out set of each length is drawn once from a fixed seed, so every
model of that length is judged on the same sequences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

DIGITS = "0123456789"
HELD_OUT_SEED = 2018  # the held-out set of length T comes from seed HELD_OUT_SEED * 1000 + T
HELD_OUT_SIZE = 1000
MIN_LENGTH = 3  # the shortest palindrome with a digit between the first and the last


def check_length(length: int) -> None:
    if length < MIN_LENGTH:
        raise ValueError(f"palindrome length must be at least {MIN_LENGTH}, got {length}")


def palindromes(count: int, length: int, generator: torch.Generator) -> Tensor:
    """``count`` random digit palindromes of ``length`` digits: ``(count, length)`` int64 in 0-9.

    The first ``ceil(length / 2)`` digits are uniform; the rest mirror them.
    """
    check_length(length)
    half = torch.randint(10, (count, (length + 1) // 2), generator=generator)  # (N, ceil(T/2))
    return torch.cat([half, half[:, : length // 2].flip(1)], dim=1)  # (N, T)


def split(sequences: Tensor) -> tuple[Tensor, Tensor]:
    """Palindromes ``(N, T)`` -> time-major inputs ``(T-1, N)`` and targets ``(N,)`` (the last digit)."""
    return sequences[:, :-1].t().contiguous(), sequences[:, -1].contiguous()


def held_out(length: int, size: int = HELD_OUT_SIZE, seed: int = HELD_OUT_SEED) -> tuple[Tensor, Tensor]:
    """The fixed evaluation set of ``length``: ``(inputs (T-1, size), targets (size,))``, the same on every call."""
    generator = torch.Generator().manual_seed(seed * 1000 + length)
    return split(palindromes(size, length, generator))


@dataclass
class PalindromeStream:
    """Endless training batches of one length from a seeded generator; its state resumes it exactly."""

    length: int
    batch_size: int
    seed: int = 0
    generator: torch.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_length(self.length)
        if self.batch_size < 1:
            raise ValueError(f"batch size must be positive, got {self.batch_size}")
        self.generator = torch.Generator().manual_seed(self.seed)

    def next(self) -> tuple[Tensor, Tensor]:
        """``(inputs (T-1, N), targets (N,))``."""
        return split(palindromes(self.batch_size, self.length, self.generator))

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
