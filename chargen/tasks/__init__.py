"""Training tasks (language model, surname classifier and generator, palindrome probe) by name."""

from __future__ import annotations

from typing import Any

from chargen.errors import UsageError
from chargen.tasks.base import EVALUATORS, TASKS, Task


def _load_all() -> None:
    # Imported for their @register side effect; each module owns one task.
    from chargen.tasks import lm  # noqa: F401

    for optional in ("names", "palindrome", "classify_eval"):
        try:
            __import__(f"chargen.tasks.{optional}")
        except ModuleNotFoundError as e:
            if e.name != f"chargen.tasks.{optional}":
                raise


def task_names() -> list[str]:
    _load_all()
    return sorted(TASKS)


def build_task(name: str, **options: Any) -> Task:
    """The task registered as ``name``, built from its options."""
    _load_all()
    if name not in TASKS:
        raise UsageError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    try:
        return TASKS[name](**options)
    except TypeError as e:
        if "unexpected keyword argument" not in str(e):
            raise
        option = str(e).split("argument")[-1].strip(" '")
        raise UsageError(f"task {name!r} does not take the option {option!r}") from None


def task_defaults(name: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A task's defaults for the model, the training loop and its own options."""
    _load_all()
    if name not in TASKS:
        raise UsageError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    factory = TASKS[name]
    return (
        dict(getattr(factory, "model_defaults", {})),
        dict(getattr(factory, "train_defaults", {})),
        dict(getattr(factory, "option_defaults", {})),
    )


def evaluate_saved(loaded: Any, device: Any, progress: Any = None, names_file: Any = None) -> dict[str, Any]:
    """Held-out metrics of a trained model, recomputed from its data: ``{"metrics": {...}, "tables": [...]}``.

    ``names_file``: a classifier only, a ``name<TAB>language`` file to evaluate instead of the test split.
    """
    _load_all()
    task = loaded.config["task"]
    if task in EVALUATORS:
        return EVALUATORS[task](loaded, device, progress, names_file)
    if names_file is not None:
        raise UsageError(f"names_file is for classifiers; this is a {task!r} model")
    if task not in TASKS or not hasattr(TASKS[task], "evaluate_saved"):
        raise UsageError(f"models of task {task!r} cannot be evaluated")
    return TASKS[task].evaluate_saved(loaded, device, progress)
