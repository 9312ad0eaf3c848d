"""The registry of studies: each name builds a ``Study`` and summarises its saved runs; ``run_study`` runs one resumably.

``chargen study NAME`` and ``chargen report --only NAME`` both come here, so a study started from
either resumes from the other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chargen.errors import UsageError
from chargen.experiments import baselines, momentum_digits, sampling
from chargen.experiments.study import Outcome, Progress, Study
from chargen.tracking import write_json

SUMMARY_JSON = "summary.json"


@dataclass(frozen=True)
class StudyDefinition:
    """A registered study: how to build it (``build(out, seeds=, minutes=, threads=)``) and summarise it."""

    name: str
    about: str
    build: Callable[..., Study]
    summary: Callable[[Study], dict[str, Any]]
    default_out: Path


STUDIES: dict[str, StudyDefinition] = {
    baselines.NAME: StudyDefinition(
        baselines.NAME, "every model family at 1 and 5 CPU-minutes on grimm, tiny Shakespeare and first names",
        baselines.build, baselines.summary, Path("docs/report/results/baselines")),
    momentum_digits.NAME: StudyDefinition(
        momentum_digits.NAME, "LSTM vs MomentumLSTM on sequential and permuted 8x8 digits: steps to the LSTM's best "
        "validation loss, test accuracy", momentum_digits.build, momentum_digits.summary,
        Path("docs/report/results/momentum-digits")),
    sampling.NAME: StudyDefinition(
        sampling.NAME, "which decoding knob to use: grader NLL against diversity for six samplers on grimm and tiny "
        "Shakespeare", sampling.build, sampling.summary, Path("docs/report/results/sampling")),
}


def get_study(name: str) -> StudyDefinition:
    if name not in STUDIES:
        raise UsageError(f"study: unknown study {name!r}; studies: {', '.join(STUDIES)}", params="study")
    return STUDIES[name]


def build_study(name: str, out: Path | None = None, *, seeds: int | Sequence[int] | None = None,
                minutes: float | None = None, threads: int = 1) -> Study:
    """The study ``name`` under ``out`` (default: its folder in the report's results); ``seeds``: a count or a list."""
    definition = get_study(name)
    if isinstance(seeds, int):
        if seeds < 1:
            raise UsageError(f"seeds must be at least 1, got {seeds}", params="seeds")
        seeds = list(range(seeds))
    return definition.build(Path(out) if out is not None else definition.default_out, seeds=seeds, minutes=minutes,
                            threads=threads)


def run_study(name: str, out: Path | None = None, *, only: Sequence[str] = (), seeds: int | Sequence[int] | None = None,
              minutes: float | None = None, threads: int = 1, progress: Progress | None = None,
              deadline: float | None = None) -> tuple[Outcome, dict[str, Any]]:
    """Run (or resume) the parts ``only`` of study ``name`` and rewrite its ``summary.json`` from every saved run."""
    study = build_study(name, out, seeds=seeds, minutes=minutes, threads=threads)
    outcome = study.run(only or None, progress, deadline)
    return outcome, summarise_study(study)


def summarise_study(study: Study) -> dict[str, Any]:
    """The study's summary from its saved runs, written to ``<out>/summary.json``; runs nothing."""
    summary = STUDIES[study.name].summary(study)
    write_json(study.out / SUMMARY_JSON, summary)
    return summary


__all__ = ["STUDIES", "StudyDefinition", "build_study", "get_study", "run_study", "summarise_study"]
