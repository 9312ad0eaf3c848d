"""Training tasks (language model, surname classifier and generator, palindrome probe, sequential digits) by name.

The registry ``TASKS`` is filled by the task modules imported below (each registers its task with
``@register``); ``chargen.tasks.resolve`` turns a task's defaults plus overrides into configs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from chargen.errors import CheckpointError, UsageError
from chargen.generation.logits import CONTROLS, DecodeConfig, decode_config
from chargen.generation.sample import check_length
from chargen.tasks.base import EVALUATORS, TASKS, Task
from chargen.tasks import classify, classify_eval, digits, generate, lm, palindrome  # noqa: E402,F401  (each registers its task or evaluator)


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


def evaluate_saved(loaded: Any, device: Any, progress: Any = None, names_file: Any = None) -> dict[str, Any]:
    """Held-out metrics of a trained model, recomputed from its data: ``{"metrics": {...}, "tables": [...]}``.

    ``names_file``: a classifier only, a ``name<TAB>language`` file to evaluate instead of the test split.
    """
    task = loaded.config.get("task")
    if not isinstance(loaded.config.get("task_config"), dict):  # the data to evaluate on is named there
        raise CheckpointError(f"{loaded.path / 'config.json'}: task_config is missing; this model cannot be evaluated")
    if task in EVALUATORS:
        return EVALUATORS[task](loaded, device, progress, names_file)
    if names_file is not None:
        raise UsageError(f"names_file is for classifiers; this is a {task!r} model", params="names_file")
    if task not in TASKS or not hasattr(TASKS[task], "evaluate_saved"):
        raise UsageError(f"models of task {task!r} cannot be evaluated")
    return TASKS[task].evaluate_saved(loaded, device, progress)


def sample_saved(loaded: Any, decode: DecodeConfig | None = None, **options: Any) -> Iterator[str]:
    """Text from a trained generative model as it is written (``prime``, ``length``, ``n``, ``seed``, ``lang``,
    ``start``, ``stop``, and the decoding controls as ``decode`` or by name, such as ``temperature`` or
    ``top_p``): the saved model's task decides what a sample is."""
    task = loaded.config["task"]
    if task not in TASKS or not hasattr(TASKS[task], "sample_saved"):
        raise UsageError(f"models of task {task!r} do not generate text")
    if options.get("n", 1) < 1:
        raise UsageError(f"n must be at least 1, got {options['n']}", params="n")
    check_length(options.get("length", 0))
    config = decode_config(decode, **{name: options.pop(name) for name in CONTROLS if name in options})
    return TASKS[task].sample_saved(loaded, decode=config, **options)


__all__ = ["TASKS", "Task", "build_task", "evaluate_saved", "known_task", "sample_saved", "task_names"]
