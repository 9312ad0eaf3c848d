"""Every command's help, rendered at 80 columns as a new user's terminal shows it: nothing eaten by rich
markup, no sentence broken by a docstring's line breaks, examples indented alike, defaults shown."""

from __future__ import annotations

import re
import typing
from typing import Any

import pytest
from rich.text import Text
from typer.testing import CliRunner

from chargen.cli import app

runner = CliRunner()
STYLES = r"\[/?(?:b|bold|dim|i|green|yellow|red|cyan)?\]"


def _commands(typer_app: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = [((*prefix, c.name or c.callback.__name__.replace("_", "-")), c) for c in typer_app.registered_commands
             if c.callback]
    for group in typer_app.registered_groups:
        found += _commands(group.typer_instance, (*prefix, group.name))
    return found


COMMANDS = _commands(app)


def render(words: tuple[str, ...]) -> str:
    result = runner.invoke(app, [*words, "--help"], env={"COLUMNS": "80", "NO_COLOR": "1", "TERM": "dumb"})
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize(("words", "command"), COMMANDS, ids=[" ".join(w) for w, _ in COMMANDS])
def test_help_at_80_columns_reads_whole(words: tuple[str, ...], command: Any) -> None:
    text = render(words)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    description = text.split("╭─", 1)[0]
    # a docstring line break shows as a short line followed by one that goes on with the same sentence
    broken = [a for a, b in zip(lines, lines[1:]) if a in description and 0 < len(a.strip()) < 60
              and re.match(r"^ [a-z(]", b) and not a.rstrip().endswith((".", ":", ";"))]
    assert not broken, f"a sentence broken in the middle after: {broken[0]!r}"
    if "Examples:" in description:
        examples = [line.rstrip() for line in description.split("Examples:", 1)[1].strip("\n").splitlines()]
        starts = ("   chargen ", "   cat ", "   printf ", "   curl ", "   # ")
        for before, line in zip(["   chargen"] + examples, examples):
            # each example starts at the same indent; a long one goes on after " \\", never wrapped mid-word
            assert not line or line.startswith(starts) or (before.endswith(" \\") and line.startswith("     ")), line


def _option_helps(command: Any) -> list[tuple[str, str, Any, Any]]:
    hints = typing.get_type_hints(command.callback, include_extras=True)
    found = []
    for name, hint in hints.items():
        if typing.get_origin(hint) is typing.Annotated:
            base, info = typing.get_args(hint)[:2]
            default = command.callback.__defaults__ and dict(zip(
                command.callback.__code__.co_varnames[: command.callback.__code__.co_argcount][-len(
                    command.callback.__defaults__):], command.callback.__defaults__)).get(name)
            found.append((name, getattr(info, "help", None) or "", base, default))
    return found


@pytest.mark.parametrize(("words", "command"), COMMANDS, ids=[" ".join(w) for w, _ in COMMANDS])
def test_no_help_text_is_eaten_by_markup(words: tuple[str, ...], command: Any) -> None:
    texts = [command.help or ""] + [h for _, h, _, _ in _option_helps(command)]
    for text in texts:
        meant = re.sub(STYLES, "", text).replace("\\[", "[")
        assert Text.from_markup(text).plain == meant, f"rich markup eats part of: {text!r}"


SETTING = (int, float)


@pytest.mark.parametrize(("words", "command"), COMMANDS, ids=[" ".join(w) for w, _ in COMMANDS])
def test_a_setting_without_a_fixed_default_says_what_it_defaults_to(words: tuple[str, ...], command: Any) -> None:
    """A number or a choice that defaults to None (the task's value, or off) must say what that is."""
    silent = []
    for name, text, base, default in _option_helps(command):
        kinds = [a for a in typing.get_args(base) if a is not type(None)] or [base]
        is_setting = any(k in SETTING or (isinstance(k, type) and issubclass(k, __import__("enum").Enum)) for k in kinds)
        if default is None and is_setting and not re.search(r"[Dd]efault|\boff\b|without it|if given|none", text):
            silent.append(name)
    assert not silent, f"say the default of: {', '.join(silent)}"
