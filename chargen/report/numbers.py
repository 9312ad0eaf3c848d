"""Number tracing: every number in the report is formatted by ``Numbers``, which remembers it, so a test can prove none was typed by hand."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

class Numbers:
    """Formats the report's numbers and remembers each string it made (see ``untraced_numbers``)."""

    def __init__(self) -> None:
        self.emitted: set[str] = set()

    def __call__(self, value: float | int | None, spec: str = ".3f") -> str:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "n/a"
        text = format(value, spec)
        self.emitted.update(_NUMBER.findall(text))
        return text

    def int(self, value: int | float) -> str:
        return self(int(value), ",d")

    def pct(self, value: float | None, digits: int = 1) -> str:
        return "n/a" if value is None else self(100 * value, f".{digits}f") + "%"

    def sci(self, value: float | None) -> str:
        return self(value, ".1e")

    def mean_std(self, stat: dict[str, Any] | None, spec: str = ".3f") -> str:
        """``mean ± std`` of a stats dict from ``chargen.experiments.compare.stats``."""
        if not stat or stat.get("mean") is None:
            return "n/a"
        if stat.get("n", 0) > 1:
            return f"{self(stat['mean'], spec)} ± {self(stat['std'], spec)}"
        return self(stat["mean"], spec)

    def list(self, values: Sequence[float | int], spec: str = "g") -> str:
        return ", ".join(self(v, spec) for v in values)

    def label(self, text: str) -> str:
        """A number that names rather than measures (a question's number in the map): traced as written here."""
        self.emitted.update(_NUMBER.findall(text))
        return text

    def quote(self, text: str) -> str:
        """Prose read from a results file (a study's description, an arm's label): its numbers are that file's."""
        self.emitted.update(_NUMBER.findall(text))
        return text


_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[-+]?\d+)?")
_UNCHECKED = re.compile(
    r"```.*?```"  # fenced code
    r"|`[^`\n]*`"  # inline code
    r"|\$\$.*?\$\$|\$[^$\n]+\$"  # math
    r"|\]\([^)]*\)"  # link and image targets
    r"|<!--.*?-->",  # comments
    re.S,
)


def untraced_numbers(markdown: str, emitted: set[str]) -> list[str]:
    """Numbers in ``markdown`` outside code, math and link targets that ``Numbers`` did not make."""
    prose = _UNCHECKED.sub(" ", markdown)
    return [n for n in _NUMBER.findall(prose) if n.lstrip("+-") not in emitted and n not in emitted]
