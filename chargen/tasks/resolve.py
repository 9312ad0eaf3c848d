"""The one config resolver: a task's defaults + the caller's overrides + budget + default engine -> typed configs.

``chargen train``, ``compare``, the probe and the reference comparison all turn "task X, with these
settings changed" into ``(ModelConfig, TrainConfig, task options)`` here and nowhere else. The
rules, in one place:

- an override of ``None`` means "not given": the task's default stands;
- a budget that is given (``steps``, ``time_limit`` and/or ``cpu_limit``) replaces the task's whole budget;
- without an ``engine``, a cell runs on its fused kernel where it has one, else on the loop
  (``cells.default_engine``);
- unknown model or training settings, and values no model can have, are UsageErrors naming the
  library's parameters.

It sits in ``chargen/tasks/`` beside the task registry it reads; ``TrainConfig`` lives below it in
``chargen.config``, so nothing here imports the training loop and the loop never imports it.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from chargen.cells import default_engine, get_cell
from chargen.errors import UsageError
from chargen.models import ModelConfig, settings_for_cell
from chargen.tasks import TASKS, known_task
from chargen.config import TrainConfig

BUDGET = ("steps", "time_limit", "cpu_limit")


@dataclass(frozen=True)
class TaskDefaults:
    """A task's defaults: ModelConfig fields, TrainConfig fields and the task's own options (copies)."""

    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[dict[str, Any]]:  # model, train, options = task_defaults(name)
        return iter((dict(self.model), dict(self.train), dict(self.options)))


@dataclass
class Resolved:
    """What a run is built from: the model and training configs and the task's options."""

    model: ModelConfig
    train: TrainConfig
    options: dict[str, Any]


def task_defaults(name: str) -> TaskDefaults:
    """The defaults the task registered as ``name`` declares (its ``model_defaults``, ``train_defaults``,
    ``option_defaults`` class attributes, part of the Task protocol)."""
    factory = TASKS[known_task(name)]
    return TaskDefaults(dict(factory.model_defaults), dict(factory.train_defaults), dict(factory.option_defaults))


def given(values: Mapping[str, Any] | None) -> dict[str, Any]:
    """The overrides actually given: ``None`` means "keep the default"."""
    return {k: v for k, v in (values or {}).items() if v is not None}


def cell_options_for(cell: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``options`` (e.g. mu, s) that this cell's constructor takes; the rest is not for it."""
    accepted = inspect.signature(get_cell(cell).__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        return dict(options)
    return {k: v for k, v in options.items() if k in accepted}


def check_cell_options(cell: str, options: Mapping[str, Any]) -> None:
    """Build a 1x1 cell with ``options``: bad values (mu outside [0, 1)...) fail here as a UsageError."""
    try:
        get_cell(cell)(1, 1, **options)
    except (TypeError, ValueError) as e:
        raise UsageError(f"cell {cell!r}: {e}") from None


def resolve_model(task: str, overrides: Mapping[str, Any] | None = None, *, cell: str | None = None,
                  share_cell_options: bool = False) -> ModelConfig:
    """The task's model defaults with ``overrides`` (ModelConfig fields; ``cell`` wins over theirs).

    Without an ``engine`` the cell's default engine is used; an explicit ``fused`` for a cell
    without a kernel is an error. With ``share_cell_options`` the ``cell_options`` are one set for
    many cells: each cell keeps the ones its constructor takes (``mu``/``s`` only to momentum cells),
    and their values are checked by building a cell; the same holds for the ModelConfig fields
    ``mu``/``s`` and ``forget_bias`` (``init`` applies to every cell).
    """
    over = given(overrides)
    defaults = task_defaults(task).model
    cell_options = dict(over.pop("cell_options", None) or defaults.pop("cell_options", None) or {})
    if cell is not None:
        over["cell"] = cell
    unknown = set(over) - {f.name for f in fields(ModelConfig)}
    if unknown:
        raise UsageError(f"unknown model settings: {', '.join(sorted(unknown))}")
    settings = {**defaults, **over}
    name = settings.get("cell", ModelConfig.cell)
    if share_cell_options:
        get_cell(name)  # an unknown cell fails as unknown, before its options are looked at
        cell_options = cell_options_for(name, cell_options)
        settings = settings_for_cell(name, settings)  # mu/s to momentum cells, forget_bias to the LSTM family
        if settings.get("engine") == "fused" and not get_cell(name).has_fused:
            raise UsageError(f"cell {name!r} has no fused kernel; compare it with engine 'loop' (or leave engine out)")
    settings["engine"] = settings.get("engine") or default_engine(name)
    cfg = ModelConfig(**{**settings, "cell_options": cell_options})
    cfg.check()
    if share_cell_options:
        check_cell_options(name, cfg.cell_options)
    return cfg


def resolve_train(task: str, overrides: Mapping[str, Any] | None = None,
                  defaults: Mapping[str, Any] | None = None) -> TrainConfig:
    """The task's training defaults (then ``defaults``, the caller's own) with ``overrides`` on top.

    A budget in ``overrides`` replaces the task's whole budget (``steps``, ``time_limit``, ``cpu_limit``).
    """
    over = given(overrides)
    settings = {**task_defaults(task).train, **(defaults or {})}
    if any(k in over for k in BUDGET):
        for key in BUDGET:
            settings.pop(key, None)
        settings.setdefault("steps", None)
    settings.update(over)
    unknown = set(settings) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise UsageError(f"unknown training settings: {', '.join(sorted(unknown))}")
    return TrainConfig(**settings)


def resolve_options(task: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The task's own options (corpus, length, batch_size...) over its defaults."""
    return {**task_defaults(task).options, **given(overrides)}


def resolve(task: str, *, model: Mapping[str, Any] | None = None, train: Mapping[str, Any] | None = None,
            options: Mapping[str, Any] | None = None) -> Resolved:
    """``(ModelConfig, TrainConfig, options)`` for one run of ``task``; see the module's rules."""
    train_cfg = resolve_train(task, train)  # training settings are checked first, as they always were
    return Resolved(resolve_model(task, model), train_cfg, resolve_options(task, options))


__all__ = [
    "Resolved", "TaskDefaults", "cell_options_for", "check_cell_options", "given", "resolve", "resolve_model",
    "resolve_options", "resolve_train", "task_defaults",
]
