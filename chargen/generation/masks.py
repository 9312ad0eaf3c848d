"""The protocol of a hard constraint on generation: which next characters each stream may take."""

from __future__ import annotations

from typing import Any, Protocol

from torch import Tensor


class CharMask(Protocol):
    """A constraint that forbids next characters, one state per stream, advanced as characters are emitted.

    The logits pipeline calls ``allowed`` before any warper (so top-p and friends renormalise over
    what the constraint permits) and ``advance`` with each emitted character. A stream whose row of
    ``allowed`` is all False cannot continue; the mask says why with ``dead_end``.
    """

    def start(self, batch: int, prime: str = "") -> Any:
        """The state of ``batch`` streams that have emitted ``prime`` (constraints may ignore the prime)."""

    def allowed(self, state: Any, remaining: int) -> Tensor:
        """Bool ``(N, V)``: the characters each stream may emit next with ``remaining`` steps left, this one included."""

    def advance(self, state: Any, ids: Tensor) -> Any:
        """The state after each stream emitted ``ids (N,)``."""

    def dead_end(self, state: Any, row: int) -> str:
        """One line saying why stream ``row`` has no allowed character."""
