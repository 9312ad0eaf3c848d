"""The package's shape: imports point one way, library errors speak in parameters (the CLI maps them to flags)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import chargen
from chargen.cli import app
from chargen.cli.flags import FLAGS, cli_message
from chargen.errors import UsageError
from chargen.models import ModelConfig

PACKAGE = Path(chargen.__file__).parent

# Higher layers may import lower ones (and their own layer), never the reverse:
# cli -> report -> experiments/reference -> train -> tasks -> checkpoint/sample -> models -> core -> cells,
# with the utilities below everything. The longest matching prefix decides a module's layer.
LAYERS: dict[str, int] = {
    "chargen.__main__": 10,
    "chargen.cli": 9,
    "chargen.serve": 9,  # the HTTP interface, beside the CLI
    "chargen.report": 8,
    "chargen.experiments": 7,
    "chargen.reference": 7,
    "chargen.train": 6,
    "chargen.tasks.resolve": 6,  # builds TrainConfig: it sits beside the registry, at the loop's level
    "chargen.finetune": 6,  # a run that starts from a trained model: the parent, its vocabulary, the LM task
    "chargen.tasks": 5,
    "chargen.inspect": 5,  # tools over a trained model: they read tasks' data, never the loop
    "chargen.export": 5,
    "chargen.checkpoint": 4,
    "chargen.sample": 4,
    "chargen.inference": 4,  # the lean generation path, beneath sample
    "chargen.score": 4,  # log-probability of a text, state carried in chunks
    "chargen.beam": 4,  # beam search over the generation step
    "chargen.stops": 4,  # stop strings over any stream of generated text
    "chargen.models": 3,
    "chargen.generation": 4,  # the logits pipeline, constraints, decoders
    "chargen.core": 2,
    "chargen.inits": 2,  # weight initialisations of the cells (the paper's init, the forget-gate bias)
    "chargen.cells": 1,
    "chargen.fast_steps": 1,  # the cells' in-place steps for generation (each cell names its own)
    "chargen.plots": 1,  # draws from results and a cell's time gate
    "chargen.ngram": 1,  # the classifier's count-based baseline (and its fused n-gram model)
    "chargen.calibration": 1,  # fusion, temperature and calibration error of a classifier's probabilities
    "chargen.distributed": 0,
    "chargen.data": 0,
    "chargen.runtime": 0,
    "chargen.tracking": 0,
    "chargen.errors": 0,
    "chargen.vocab": 0,
    "chargen.paths": 0,
    "chargen.safeio": 0,  # bounded, non-blocking reads of regular files
    "chargen.schema": 0,  # what a loaded config.json may hold
    "chargen": 0,
}


def layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    if best == "chargen" and module != "chargen":
        raise AssertionError(f"{module} has no layer: place it in LAYERS (tests/test_architecture.py)")
    return LAYERS[best]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def chargen_imports(path: Path) -> list[tuple[int, str]]:
    """Every chargen module ``path`` imports (at the top or inside a function), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("chargen")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("chargen") and node.level == 0:
            # ``from chargen.x import y`` may import the submodule chargen.x.y
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def imported_module(name: str) -> str:
    """The module an import names: ``chargen.tasks.resolve.resolve`` -> ``chargen.tasks.resolve``."""
    parts = name.split(".")
    while len(parts) > 1:
        candidate = PACKAGE.parent.joinpath(*parts)
        if candidate.with_suffix(".py").exists() or (candidate / "__init__.py").exists():
            return ".".join(parts)
        parts.pop()
    return "chargen"


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_layer_map_covers_every_module() -> None:
    assert MODULES and all(layer(module_name(p)) is not None for p in MODULES)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_module_imports_upward(path: Path) -> None:
    here = module_name(path)
    upward = [
        f"line {line}: {here} (layer {layer(here)}) imports {target} (layer {layer(target)})"
        for line, name in chargen_imports(path)
        for target in [imported_module(name)]
        if layer(target) > layer(here)
    ]
    assert not upward, "\n".join(upward)


def test_the_import_check_catches_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from chargen.train import fit\n    return fit\n", encoding="utf-8")
    ((line, name),) = chargen_imports(bad)
    assert line == 2 and layer(imported_module(name)) > layer("chargen.models")


LIBRARY = [p for p in MODULES if not module_name(p).startswith(("chargen.cli", "chargen.__main__"))]
FLAG_IN_ERROR = re.compile(r"""(?:Error|raise)\(\s*f?["'][^"']*(?<![\w-])--[a-z]""")


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: module_name(p))
def test_library_errors_name_parameters_not_cli_flags(path: Path) -> None:
    text = re.sub(r"`[^`\n]*`", "``", path.read_text(encoding="utf-8"))  # a command quoted in backticks may have flags
    assert not FLAG_IN_ERROR.findall(text), [m for m in FLAG_IN_ERROR.findall(text)]


def test_a_notebook_user_reads_the_parameter_and_a_cli_user_the_flag(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^hidden_size must be positive, got 0$") as caught:
        ModelConfig(hidden_size=0).check()
    assert caught.value.params == ("hidden_size",)
    assert cli_message(caught.value, "train") == "--hidden must be positive, got 0"
    result = CliRunner().invoke(app, ["train", "--task", "palindrome", "--hidden", "0", "--steps", "1",
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "error: --hidden must be positive, got 0" in result.stderr


def test_the_flag_map_names_real_options() -> None:
    """Every flag the map can print is an option of some chargen command."""
    import typer

    def commands(group: object) -> list[object]:
        found = []
        for command in getattr(group, "commands", {}).values():
            found += [command, *commands(command)]
        return found

    options = {opt for command in commands(typer.main.get_command(app)) for p in command.params
               if p.param_type_name == "option" for opt in p.opts}
    assert set(FLAGS.values()) <= options, sorted(set(FLAGS.values()) - options)


def test_the_cli_lists_the_registries_it_reads() -> None:
    """An unknown cell or task is refused with every registered name: the registries, not hand lists, speak."""
    from twins import UNKNOWN_CELL

    from chargen.cells import CELLS
    from chargen.tasks import TASKS

    runner = CliRunner()
    cell = runner.invoke(app, ["compare", "--cells", UNKNOWN_CELL, "--steps", "1"])
    assert cell.exit_code == 2 and all(name in cell.stderr for name in CELLS), cell.stderr
    task = runner.invoke(app, ["train", "--task", "no-such-task", "--steps", "1"])
    assert task.exit_code == 2 and all(name in task.stderr for name in TASKS), task.stderr
