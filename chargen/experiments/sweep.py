"""Small statistics and grid helpers for fair sweeps: Wilson intervals, ``--grid`` parsing and expansion, LR choice.

Pure Python (no torch): the experiments (``compare``'s sweep, the momentum study) and the report
import these, so a verdict and the table it rests on use one definition of each.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from chargen.errors import UsageError
from chargen.experiments.stats import Z95, wilson  # noqa: F401  (importers read them here too)

GRID_KEYS = ("mu", "s", "lr", "forget_bias")


def parse_grid(specs: Iterable[str]) -> dict[str, list[float]]:
    """``["mu=0,0.3", "lr=1e-3,3e-3"]`` -> ``{"mu": [0.0, 0.3], "lr": [0.001, 0.003]}`` (order kept, repeats dropped).

    Keys are ``mu``, ``s``, ``lr`` and ``forget_bias`` (``forget-bias`` is accepted too); a key
    given twice, an unknown key or a value that is not a number is a UsageError.
    """
    grid: dict[str, list[float]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not values.strip():
            raise UsageError(f"grid: cannot read {spec!r}; write key=v1,v2 (e.g. mu=0,0.3,0.6)", params="grid")
        if key not in GRID_KEYS:
            raise UsageError(f"grid: unknown key {key!r}; known keys: {', '.join(GRID_KEYS)}", params="grid")
        if key in grid:
            raise UsageError(f"grid: {key} given twice; list all its values in one entry", params="grid")
        try:
            numbers = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise UsageError(f"grid: {key} values must be numbers, got {values!r}", params="grid") from None
        grid[key] = list(dict.fromkeys(numbers))
    return grid


@dataclass(frozen=True)
class Variant:
    """One model setting of a sweep (the learning rate is chosen per variant, not part of it)."""

    cell: str
    mu: float = 0.0
    s: float = 1.0
    forget_bias: float | None = None
    role: str = "grid"  # "grid", "control" (mu = 0, s = 1: the base cell) or "matched-forget-bias"

    @property
    def label(self) -> str:
        parts = [self.cell]
        if self.cell.startswith("momentum-"):
            parts.append(f"mu={self.mu:g} s={self.s:g}")
        if self.forget_bias is not None:
            parts.append(f"fb={self.forget_bias:g}")
        return " ".join(parts)

    def model_settings(self) -> dict[str, Any]:
        """ModelConfig fields for this variant (``mu``/``s`` only on momentum cells)."""
        out: dict[str, Any] = {"cell": self.cell}
        if self.cell.startswith("momentum-"):
            out.update(mu=self.mu, s=self.s)
        if self.forget_bias is not None:
            out["forget_bias"] = self.forget_bias
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "label": self.label}


def base_cell(cell: str) -> str:
    """``momentum-lstm`` -> ``lstm``; a base cell is itself."""
    return cell.removeprefix("momentum-")


def expand_variants(cells: Sequence[str], grid: Mapping[str, Sequence[float]]) -> list[Variant]:
    """Every (cell, mu, s, forget_bias) of the grid, with each momentum cell's base cell at mu = 0, s = 1 always in.

    A momentum cell at ``mu = 0, s = 1`` *is* its base cell (bit for bit), so that point is run
    once, as the base cell, and marked ``control``; ``mu = 0`` with another ``s`` stays a
    momentum cell (the input-rescaling control). ``forget_bias`` applies to LSTM-family cells only.
    """
    mus = list(grid.get("mu", [])) or [None]
    ss = list(grid.get("s", [])) or [1.0]
    fbs = list(grid.get("forget_bias", [])) or [None]
    for mu in mus:
        if mu is not None and not 0.0 <= mu < 1.0:
            raise UsageError(f"grid: mu must be in [0, 1), got {mu}", params="grid")
    for s in ss:
        if not s > 0:
            raise UsageError(f"grid: s must be positive, got {s}", params="grid")
    out: list[Variant] = []

    def add(v: Variant) -> None:
        if all((x.cell, x.mu, x.s, x.forget_bias) != (v.cell, v.mu, v.s, v.forget_bias) for x in out):
            out.append(v)

    # each momentum cell right after its base cell (the control), so tables read control first
    wanted = list(dict.fromkeys(x for c in cells for x in (base_cell(c), c)))
    for cell in wanted:
        lstm_family = cell.endswith("lstm")
        for fb in fbs if lstm_family else [None]:
            if not cell.startswith("momentum-"):
                add(Variant(cell, 0.0, 1.0, fb, "control"))
                continue
            for mu, s in itertools.product(mus, ss):
                mu = 0.6 if mu is None else mu  # no mu grid: the cell's published default
                if mu == 0.0 and s == 1.0:
                    add(Variant(base_cell(cell), 0.0, 1.0, fb, "control"))
                else:
                    add(Variant(cell, mu, s, fb, "grid"))
    return out


def choose_lr(scores: Mapping[float, Sequence[float | None]], higher_is_better: bool = False) -> float:
    """The learning rate whose mean validation score over seeds is best; a run that diverged (None/NaN) counts as worst.

    Ties go to the smaller learning rate (the safer one).
    """
    if not scores:
        raise ValueError("choose_lr: no learning rates to choose from")
    worst = -math.inf if higher_is_better else math.inf

    def mean(values: Sequence[float | None]) -> float:
        clean = [float(v) if v is not None and math.isfinite(float(v)) else worst for v in values]
        return statistics.fmean(clean) if clean else worst

    ranked = sorted(scores, key=lambda lr: ((-mean(scores[lr])) if higher_is_better else mean(scores[lr]), lr))
    return ranked[0]


def solve_summary(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Solve rate with its Wilson 95% interval and steps to solve (solved runs only) over a set of runs."""
    n = len(records)
    solved = [r for r in records if r.get("solved")]
    lo, hi = wilson(len(solved), n)
    at = [r["solved_at"] for r in solved if r.get("solved_at") is not None]
    return {
        "n": n, "solved": len(solved), "rate": len(solved) / n if n else None, "ci_low": lo, "ci_high": hi,
        "steps_to_solve_median": statistics.median(at) if at else None,
        "steps_to_solve_mean": statistics.fmean(at) if at else None,
        "accuracy_mean": statistics.fmean(r["accuracy"] for r in records) if records else None,
        "accuracy_min": min((r["accuracy"] for r in records), default=None),
    }
