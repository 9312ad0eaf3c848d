"""Stop strings: end a stream of generated text at the first occurrence of any of them.

A wrapper over any iterator of text pieces (sampling, beam search, a future lean stepper), so
every generation path gets stop strings without knowing about them. The stop string itself is
not part of the output, as in the OpenAI and Hugging Face APIs: ``"\\n\\n"`` ends a paragraph
without printing the blank line. Text is passed on as soon as it can no longer be the start of
a stop string, so streaming stays streaming (at most ``max(len(stop)) - 1`` characters wait).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

from chargen.errors import UsageError

_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|U[0-9a-fA-F]{8}|.)", re.DOTALL)
_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b",
           "f": "\f", "v": "\v"}


def unescape(text: str) -> str:
    """Python-style escapes (``\\n``, ``\\t``, ``\\\\``, ``\\xHH``, ``\\uHHHH``) decoded; other characters,
    non-ASCII included, are kept as they are (``codecs``' unicode_escape would mangle them)."""

    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if code[0] in "xuU" and len(code) > 1:
            return chr(int(code[1:], 16))
        if code in _SIMPLE:
            return _SIMPLE[code]
        raise UsageError(f"unknown escape sequence \\{code} in stop string {text!r} (known: \\n \\t \\r \\\\ \\xHH \\uHHHH)")

    if text.endswith("\\") and not text.endswith("\\\\"):
        raise UsageError(f"stop string {text!r} ends with a lone backslash (write \\\\ for a backslash)")
    return _ESCAPE.sub(one, text)


def check_stops(stops: Sequence[str]) -> None:
    if any(stop == "" for stop in stops):
        raise UsageError("a stop string cannot be empty")


def stop_at(pieces: Iterable[str], stops: Sequence[str]) -> Iterator[str]:
    """Yield ``pieces`` until the first occurrence of any of ``stops`` (not yielded), then stop
    pulling from ``pieces`` (closing it if it is a generator, so no more text is generated)."""
    check_stops(stops)
    if not stops:
        yield from pieces
        return
    hold = max(map(len, stops)) - 1  # a stop string may straddle pieces: keep back what could start one
    pending = ""
    iterator = iter(pieces)
    try:
        for piece in iterator:
            pending += piece
            cut = _first_stop(pending, stops)
            if cut is not None:
                if pending[:cut]:
                    yield pending[:cut]
                return
            ready = len(pending) - hold
            if ready > 0:
                yield pending[:ready]
                pending = pending[ready:]
        if pending:
            yield pending
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    found = [i for i in (text.find(stop) for stop in stops) if i >= 0]
    return min(found) if found else None
