"""Temperature schedules: a sample's temperature as a function of the generated character's index, from a spec string.

Specs (``temperature`` in ``chargen.generation.logits.DecodeConfig``, ``--temp`` on the command line):
``"0.8"`` constant; ``"0.8:0.4"`` linear from 0.8 at the first generated character to 0.4 at the
last (over the sample's length); ``"0.8:0.4@100"`` linear over the first 100 characters, then 0.4;
``"1.0,0.7@50,0.4@200"`` a step function: 1.0 from the start, 0.7 from character 50, 0.4 from
character 200. A temperature of 0 at a step is greedy at that step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from chargen.errors import UsageError


@dataclass(frozen=True)
class Schedule:
    """A temperature as a function of the generated character's index ``t`` (0-based).

    ``kind`` is ``"constant"`` (``values[0]``), ``"linear"`` (from ``values[0]`` to ``values[1]`` over
    ``span`` characters, or over the sample's length when ``span`` is None) or ``"steps"``
    (``values[i]`` from character ``starts[i]`` on).
    """

    kind: str
    values: tuple[float, ...]
    starts: tuple[int, ...] = (0,)
    span: int | None = None

    def at(self, t: int, length: int) -> float:
        """The temperature of generated character ``t`` of a sample of ``length`` characters."""
        if self.kind == "constant":
            return self.values[0]
        if self.kind == "linear":
            span = self.span if self.span is not None else length
            if span <= 1 or t >= span - 1:
                return self.values[1] if span > 1 or t > 0 else self.values[0]
            return self.values[0] + (self.values[1] - self.values[0]) * t / (span - 1)
        value = self.values[0]
        for start, v in zip(self.starts, self.values):
            if t >= start:
                value = v
        return value

    def is_constant(self) -> bool:
        return self.kind == "constant"


def _temperature_value(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"temperature schedule {spec!r}: {text.strip()!r} is not a number "
                         "(schedules: 0.8, 0.8:0.4, 0.8:0.4@100, 1.0,0.7@50)", params="temperature") from None
    _check_temperature(value)
    return value


def _schedule_start(text: str, spec: str) -> int:
    if not text.strip().isdigit():
        raise UsageError(f"temperature schedule {spec!r}: @{text.strip()} is not a character index (a whole number)",
                         params="temperature")
    return int(text)


def parse_schedule(spec: str | float | int) -> Schedule:
    """A temperature or a schedule spec (see the module docstring) as a :class:`Schedule`."""
    if isinstance(spec, bool):
        raise UsageError(f"temperature must be a number or a schedule such as '0.8:0.4', got {spec!r}",
                         params="temperature")
    if isinstance(spec, (int, float)):
        _check_temperature(float(spec))
        return Schedule("constant", (float(spec),))
    if not isinstance(spec, str):
        raise UsageError(f"temperature must be a number or a schedule such as '0.8:0.4', got {spec!r}",
                         params="temperature")
    text = spec.strip()
    if ":" in text:
        ends, _, span_text = text.partition("@")
        first, _, last = ends.partition(":")
        values = (_temperature_value(first, spec), _temperature_value(last, spec))
        span = None
        if span_text:
            span = _schedule_start(span_text, spec)
            if span < 1:
                raise UsageError(f"temperature schedule {spec!r}: the span after @ must be at least 1",
                                 params="temperature")
        return Schedule("linear", values, span=span)
    if "," in text:
        parts = text.split(",")
        values, starts = [_temperature_value(parts[0], spec)], [0]
        for part in parts[1:]:
            value, at, start = part.partition("@")
            if not at:
                raise UsageError(f"temperature schedule {spec!r}: every step after the first needs @CHARACTER "
                                 f"(as in 1.0,0.7@50), got {part.strip()!r}", params="temperature")
            values.append(_temperature_value(value, spec))
            starts.append(_schedule_start(start, spec))
            if starts[-1] <= starts[-2]:
                raise UsageError(f"temperature schedule {spec!r}: step starts must increase, got "
                                 f"{starts[-2]} then {starts[-1]}", params="temperature")
        return Schedule("steps", tuple(values), tuple(starts))
    return Schedule("constant", (_temperature_value(text, spec),))


def _check_temperature(value: float) -> None:
    if not math.isfinite(value):
        raise UsageError(f"temperature must be a finite number (0 = greedy), got {value}", params="temperature")
    if value < 0:
        raise UsageError(f"temperature must be 0 (greedy) or positive, got {value}", params="temperature")
