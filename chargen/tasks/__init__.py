"""Training tasks (language model, surname classifier and generator, palindrome probe) by name.

The registry ``TASKS`` is filled by the task modules imported below (each registers its task with
``@register``); ``chargen.tasks.resolve`` turns a task's defaults plus overrides into configs.
"""

from __future__ import annotations

from typing import Any

from chargen.errors import UsageError
from chargen.tasks.base import TASKS, Task
from chargen.tasks import lm, names, palindrome  # noqa: E402,F401  (each registers its task)


def task_names() -> list[str]:
    return sorted(TASKS)


def known_task(name: str) -> str:
    """``name`` if a task is registered under it, else a UsageError listing the known ones."""
    if name not in TASKS:
        raise UsageError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return name


def build_task(name: str, **options: Any) -> Task:
    """The task registered as ``name``, built from its options."""
    factory = TASKS[known_task(name)]
    try:
        return factory(**options)
    except TypeError as e:
        if "unexpected keyword argument" not in str(e):
            raise
        option = str(e).split("argument")[-1].strip(" '")
        raise UsageError(f"task {name!r} does not take the option {option!r}") from None


def evaluate_saved(loaded: Any, device: Any, progress: Any = None) -> dict[str, Any]:
    """Held-out metrics of a trained model, recomputed from its data: ``{"metrics": {...}, "tables": [...]}``."""
    task = loaded.config["task"]
    if task not in TASKS or not hasattr(TASKS[task], "evaluate_saved"):
        raise UsageError(f"models of task {task!r} cannot be evaluated")
    return TASKS[task].evaluate_saved(loaded, device, progress)


__all__ = ["TASKS", "Task", "build_task", "evaluate_saved", "known_task", "task_names"]
