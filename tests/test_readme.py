"""README's pasted outputs: every `$ chargen ...` line in a README text block, run today, prints what README shows."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from chargen.paths import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
BLOCK = re.compile(r"```text\n(.*?)```", re.S)


def pasted_commands(text: str) -> list[tuple[str, str]]:
    """``(command, expected stdout)`` for each ``$ chargen`` line of README's ``text`` blocks."""
    found = []
    for block in BLOCK.findall(text):
        lines = block.rstrip("\n").split("\n")
        starts = [i for i, line in enumerate(lines) if line.startswith("$ ")]
        for k, i in enumerate(starts):
            end = starts[k + 1] if k + 1 < len(starts) else len(lines)
            command = lines[i][2:]
            if command.startswith("chargen "):
                found.append((command, "\n".join(lines[i + 1 : end])))
    return found


COMMANDS = pasted_commands(README.read_text(encoding="utf-8"))


def test_readme_has_pasted_commands() -> None:
    assert len(COMMANDS) >= 3, "README lost its pasted examples (or this parser broke)"


@pytest.mark.parametrize(("command", "expected"), COMMANDS, ids=[c for c, _ in COMMANDS])
def test_pasted_output_is_what_the_command_prints(command: str, expected: str) -> None:
    args = shlex.split(command)[1:]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "chargen", *args], cwd=PROJECT_ROOT, env=env,
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip("\n") == expected.rstrip("\n")
