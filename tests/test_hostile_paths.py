"""The bad-path table, driven by the command registry: every option of every command that takes a path
is tried with a FIFO, a folder, /dev/zero, an unreadable file, a read-only folder, a name over the limit
and markup characters. Each must be one error line (exit 1 or 2), no traceback, nothing changed.

A new command, or a new path option, fails ``test_every_path_option_is_in_the_table`` until it is
placed in ``PATH_OPTIONS``: it cannot skip the table.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from chargen.cli import app
from chargen.paths import PROJECT_ROOT
from test_cli_errors import LM, Case, make_world, run_case

ROOT = os.geteuid() == 0  # root reads a chmod 000 file and writes a chmod 555 folder: other stand-ins then
LONG = "n" * 300  # over the 255 bytes a name may have on Linux file systems
SHIPPED = PROJECT_ROOT / "checkpoints" / "grimm"
H = "{world}/hostile/"

# What each kind of path option is; options named like paths that take something else say so.
TEXT, MODEL, W2V_MODEL, OUT_FILE, OUT_DIR = "text file", "run directory", "word2vec folder", "output file", "output folder"
NOT_A_PATH = "not a path"

# (command words, parameter) -> (kind, the command with {path} where the path goes, extension of an output file).
# The rest of each command is valid and small, so that the path is what fails, before any real work.
PATH_OPTIONS: dict[tuple[str, str], tuple[str, list[str]]] = {
    ("train", "corpus"): (TEXT, ["train", "--corpus", "{path}", "--steps", "1", "--out", "{tmp}/run", "--quiet"]),
    ("train", "out"): (OUT_DIR, ["train", "--corpus", "{world}/texts/tale.txt", "--steps", "1", "--out", "{path}",
                                 "--quiet"]),
    ("train", "resume"): (MODEL, ["train", "--resume", "{path}", "--steps", "1", "--quiet"]),
    ("train", "init_from"): (MODEL, ["train", "--init-from", "{path}", "--corpus", "{world}/texts/tale.txt",
                                     "--steps", "1", "--out", "{tmp}/run", "--quiet"]),
    ("sample", "model"): (MODEL, ["sample", "--model", "{path}", "--length", "5"]),
    ("evaluate", "model"): (MODEL, ["evaluate", "--model", "{path}"]),
    ("evaluate", "corpus"): (TEXT, ["evaluate", "--model", "{world}/models/lost-corpus", "--corpus", "{path}"]),
    ("evaluate", "names"): (TEXT, ["evaluate", "--model", str(PROJECT_ROOT / "checkpoints" / "surnames"),
                                   "--names", "{path}"]),
    ("score", "file"): (TEXT, ["score", "{path}", "--model", LM]),
    ("score", "model"): (MODEL, ["score", "{world}/texts/tale.txt", "--model", "{path}"]),
    ("classify", "model"): (MODEL, ["classify", "Smith", "--model", "{path}"]),
    ("probe", "out"): (OUT_DIR, ["probe", "--lengths", "5", "--seeds", "1", "--steps", "1", "--out", "{path}"]),
    ("compare", "corpus"): (TEXT, ["compare", "--task", "lm", "--corpus", "{path}", "--cells", "rnn", "--seeds", "1",
                                   "--steps", "1", "--out", "{tmp}/cmp"]),
    ("compare", "out"): (OUT_DIR, ["compare", "--task", "palindrome", "--length", "5", "--cells", "rnn", "--seeds",
                                   "1", "--steps", "1", "--out", "{path}"]),
    ("gradients", "text"): (TEXT, ["gradients", "--cells", "rnn", "--length", "5", "--seeds", "1", "--hidden", "4",
                                   "--text", "{path}", "--out", "{tmp}/g"]),
    ("gradients", "out"): (OUT_DIR, ["gradients", "--cells", "rnn", "--length", "5", "--seeds", "1", "--hidden", "4",
                                     "--out", "{path}"]),
    ("report", "out"): (OUT_DIR, ["report", "--only", "probe", "--quick", "--out", "{path}"]),
    ("inspect", "model"): (MODEL, ["inspect", "--model", "{path}", "--text", "The"]),
    ("inspect", "text"): (NOT_A_PATH, []),  # the text itself
    ("inspect", "file"): (TEXT, ["inspect", "--model", LM, "--file", "{path}"]),
    ("inspect", "html_out"): (OUT_FILE, ["inspect", "--model", LM, "--text", "The", "--html", "{path}"], ".html"),
    ("inspect", "heatmap"): (OUT_FILE, ["inspect", "--model", LM, "--text", "The", "--heatmap", "{path}"], ".png"),
    ("serve", "model"): (MODEL, ["serve", "--model", "{path}"]),
    ("export", "model"): (MODEL, ["export", "--model", "{path}", "--out", "{tmp}/m.pt"]),
    ("export", "out"): (OUT_FILE, ["export", "--model", LM, "--check", "The", "--out", "{path}"], ".pt"),
    ("word2vec", "corpus"): (TEXT, ["word2vec", "--corpus", "{path}", "--min-count", "1", "--epochs", "1",
                                    "--out", "{tmp}/w2v", "--quiet"]),
    ("word2vec", "out"): (OUT_DIR, ["word2vec", "--corpus", "{world}/texts/tale.txt", "--min-count", "1", "--epochs",
                                    "1", "--out", "{path}", "--quiet"]),
    ("word2vec", "model"): (W2V_MODEL, ["word2vec", "--similar", "king", "--model", "{path}"]),
    ("study", "out"): (OUT_DIR, ["study", "baselines", "--only", "grimm-1m", "--out", "{path}", "--quiet"]),
    ("momentum-study", "out"): (OUT_DIR, ["momentum-study", "--only", "adjoint", "--out", "{path}", "--quiet"]),
    ("momentum-study", "markdown"): (OUT_FILE, ["momentum-study", "--only", "none", "--markdown", "{path}"], ".md"),
    ("reference numpy-rnn", "corpus"): (TEXT, ["reference", "numpy-rnn", "--corpus", "{path}", "--epochs", "1",
                                              "--lstm-steps", "0", "--out", "{tmp}/ref", "--quiet"]),
    ("reference numpy-rnn", "out"): (OUT_DIR, ["reference", "numpy-rnn", "--corpus", "{world}/texts/tale.txt",
                                               "--epochs", "1", "--lstm-steps", "0", "--out", "{path}", "--quiet"]),
}
PATH_NAMES = {"model", "corpus", "file", "init_from", "text", "resume"}  # str options that name a path


def _commands(typer_app: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    for command in typer_app.registered_commands:
        if command.callback:
            yield " ".join((*prefix, command.name or command.callback.__name__.replace("_", "-"))), command.callback
    for group in typer_app.registered_groups:
        yield from _commands(group.typer_instance, (*prefix, group.name))


def _mentions_path(annotation: Any) -> bool:
    return annotation is Path or any(_mentions_path(a) for a in typing.get_args(annotation))


def path_options() -> set[tuple[str, str]]:
    """Every (command, parameter) of the registry that takes a path: typed Path, or named like one."""
    found = set()
    for name, callback in _commands(app):
        for param, hint in typing.get_type_hints(callback, include_extras=True).items():
            base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
            if param != "return" and (_mentions_path(base) or param in PATH_NAMES):
                found.add((name, param))
    return found


def test_every_path_option_is_in_the_table() -> None:
    assert path_options() - set(PATH_OPTIONS) == set(), "place these in PATH_OPTIONS (tests/test_hostile_paths.py)"
    assert set(PATH_OPTIONS) - path_options() == set(), "these are no longer options: remove them"


# --------------------------------------------------------------------------- the hostile paths

INPUTS = {  # name -> (path, what the error line must match)
    "FIFO": (H + "fifo", r"FIFO|named pipe|not a regular file"),
    "folder": (H + "folder", r"director|folder|not a regular file"),
    "/dev/zero": ("/dev/zero", r"character device|not a regular file|/dev/zero"),
    "/dev/null": ("/dev/null", r"character device|not a regular file|/dev/null"),
    "link to /dev/zero": (H + "zero-link", r"character device|not a regular file|zero-link"),
    "socket": (H + "socket", r"socket|not a regular file"),
    "unreadable": (H + ("loop" if ROOT else "unreadable.txt"), r"symbolic links|Permission denied|cannot read|loop"),
    "name over the limit": (H + LONG + ".txt", r"too long|more than the|longer than the file system allows"),
    "markup characters": (H + "notes [draft]/x[/].txt", re.escape("notes [draft]/x[/].txt")),
}
MODELS = {
    "FIFO": (H + "fifo", r"fifo"),
    "a file": (H + "plain.txt", r"plain\.txt"),
    "/dev/zero": ("/dev/zero", r"/dev/zero"),
    "empty folder": (H + "folder", r"folder"),
    "config.json a FIFO": ("{world}/models/s-config-fifo", r"FIFO|named pipe|not a regular file"),
    "unreadable config": ("{world}/models/" + ("s-config-zero" if ROOT else "unreadable-config"),
                          r"character device|Permission denied|cannot read"),
    "name over the limit": (H + LONG, r"too long|more than the|no model|longer than the file system allows"),
    "markup characters": (H + "notes [draft]/run[/]", re.escape("notes [draft]/run[/]")),
}
OUT_FILES = {  # name -> (path without the extension where {ext} is not in it, what the error must match)
    "an existing file of the user's": (H + "mine{ext}", r"already exists; pass --force"),
    "a folder": (H + "folder", r"is a folder"),
    "a FIFO": (H + "fifo", r"FIFO"),
    "a device": ("/dev/null", r"character device|cannot write \.? ?\(?null"),
    "a run's own weights (--force)": ("{world}/models/lm/model.pt", r"file of the run directory|cannot write \.pt"),
    "a shipped model's file (--force)": (str(SHIPPED / "model{ext}"), r"inside the model grimm"),
    "a read-only folder": (("/proc/chargen" if ROOT else H + "readonly/x") + "{ext}", r"cannot write|read-only"),
    "a name over the limit": (H + LONG + "{ext}", r"more than the"),
    "a missing folder": (H + "missing/x{ext}", r"does not exist"),
    "markup characters": (H + "notes [draft]{ext}", re.escape("notes [draft]")),
    "an unsupported extension": (H + "page.xyz", r"cannot write \.xyz"),
}
OUT_DIRS = {
    "a file": (H + "plain.txt", r"is a file, not a folder|plain\.txt"),
    "under a file": (H + "plain.txt/sub", r"is a file, not a folder|plain\.txt"),
    "a FIFO": (H + "fifo", r"is a file, not a folder|fifo"),
    "a run directory": ("{world}/models/lm", r"run directory|already holds|lm"),
    "a shipped model": (str(SHIPPED), r"inside the model grimm|already holds|grimm"),
    "a read-only folder": ("/proc/chargen-out" if ROOT else H + "readonly/out", r"cannot create|read-only|cannot write"),
    "a name over the limit": (H + LONG, r"more than the|too long|longer than the file system allows"),
    "markup characters": (H + "notes [draft].txt/run[/]", re.escape("notes [draft].txt")),
}
KINDS = {TEXT: INPUTS, MODEL: MODELS, W2V_MODEL: MODELS, OUT_FILE: OUT_FILES, OUT_DIR: OUT_DIRS}


def cases() -> list[tuple[Case, str]]:
    """Every path option of PATH_OPTIONS against every hostile path of its kind, with the pattern its line matches."""
    made = []
    for (command, param), spec in sorted(PATH_OPTIONS.items()):
        kind, args = spec[0], spec[1]
        if kind == NOT_A_PATH:
            continue
        ext = spec[2] if len(spec) > 2 else ""
        for name, (path, says) in KINDS[kind].items():
            if kind == W2V_MODEL and "config" in name:
                continue  # a word2vec folder has no config.json
            if kind == OUT_FILE and "extension" in name and command == "export":
                continue  # any extension will do for a model file
            filled = [a.replace("{path}", path.replace("{ext}", ext)) for a in args]
            if kind == OUT_FILE and "--force" in name:
                filled.append("--force")
            made.append((Case(f"{command} {param}: {name}", filled, (1, 2), ""), says))
    return made


def build(world: Path) -> None:
    """The hostile paths, once per module."""
    hostile = world / "hostile"
    if hostile.exists():
        return
    hostile.mkdir()
    os.mkfifo(hostile / "fifo")
    (hostile / "folder").mkdir()
    (hostile / "zero-link").symlink_to("/dev/zero")
    (hostile / "loop").symlink_to(hostile / "loop")
    (hostile / "plain.txt").write_text("a plain file\n")
    (hostile / "notes [draft].txt").write_text("a plain file with markup in its name\n")
    for ext in {spec[2] for spec in PATH_OPTIONS.values() if len(spec) > 2}:
        (hostile / f"mine{ext}").write_text("MINE\n")
        (hostile / f"notes [draft]{ext}").write_text("MINE\n")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(hostile / "socket"))
    sock.close()
    if not ROOT:
        (hostile / "unreadable.txt").write_text("secret\n")
        (hostile / "unreadable.txt").chmod(0)
        (hostile / "readonly").mkdir()
        (hostile / "readonly").chmod(0o555)
        import shutil

        shutil.copytree(world / "models" / "lm", world / "models" / "unreadable-config")
        (world / "models" / "unreadable-config" / "config.json").chmod(0)


TABLE = cases()


def test_the_table_is_large() -> None:
    assert len(TABLE) >= 250 and len({c.id for c, _ in TABLE}) == len(TABLE)


@pytest.mark.parametrize(("case", "says"), [pytest.param(c, s, id=c.id) for c, s in TABLE])
def test_a_hostile_path_is_one_line_and_changes_nothing(case: Case, says: str, world: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    devices = {p: stat.S_IFMT(os.stat(p).st_mode) for p in ("/dev/null", "/dev/zero")}
    shipped = {p.name: p.read_bytes() for p in SHIPPED.iterdir()}
    line = run_case(case, world, tmp_path, monkeypatch)
    assert re.search(says, line), line
    assert {p: stat.S_IFMT(os.stat(p).st_mode) for p in devices} == devices  # a device is never replaced
    assert {p.name: p.read_bytes() for p in SHIPPED.iterdir()} == shipped
    assert not Path("/proc/chargen").exists()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_world(tmp_path_factory.mktemp("world"))
    build(root)
    return root
