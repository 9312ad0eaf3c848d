"""The one way to write an output (chargen.outputs), to read a user's text (chargen.safeio), to name a
parameter in a message (errors' ``{param}`` marks) and to show a user's string through rich."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

from chargen import checkpoint, outputs
from chargen.cli.flags import cli_message
from chargen.cli.ui import markup
from chargen.errors import UsageError
from chargen.paths import PROJECT_ROOT
from chargen.safeio import NotText, read_text, text_blocks

ROOT_IGNORES_PERMISSIONS = os.geteuid() == 0


def test_the_run_files_outputs_protect_are_the_ones_checkpoint_writes() -> None:
    assert {*checkpoint.SAVED, checkpoint.JOURNAL, checkpoint.LOCK, checkpoint.BEST} <= outputs.RUN_FILES


def test_a_new_file_is_written_and_an_existing_one_only_with_force(tmp_path: Path) -> None:
    target = tmp_path / "notes.html"
    outputs.write_text(target, "first")
    assert target.read_text() == "first"
    with pytest.raises(outputs.OutputRefused, match="already exists; pass force"):
        outputs.write_text(target, "second")
    assert target.read_text() == "first"
    outputs.write_text(target, "second", force=True)
    assert target.read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["notes.html"]  # no temporary file left behind


def test_a_failed_writer_leaves_the_target_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "mine.pt"
    target.write_bytes(b"MINE")
    with pytest.raises(RuntimeError):
        with outputs.writing(target, force=True) as part:
            part.write_bytes(b"half")
            raise RuntimeError("the writer failed")
    assert target.read_bytes() == b"MINE" and [p.name for p in tmp_path.iterdir()] == ["mine.pt"]


@pytest.mark.parametrize("name", ["model.pt", "config.json", "trainer.pt", ".lock", "metrics.jsonl", "loss.png"])
def test_a_runs_own_files_are_refused_even_with_force(tmp_path: Path, name: str) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / checkpoint.CONFIG).write_text("{}")
    (run / name).write_bytes(b"RUN") if name != checkpoint.CONFIG else None
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(outputs.OutputRefused, match="file of the run directory"):
        outputs.write_bytes(run / name, b"X", force=True)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_a_symlink_to_a_runs_weights_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / checkpoint.CONFIG).write_text("{}")
    (run / checkpoint.WEIGHTS).write_bytes(b"W")
    (tmp_path / "link.pt").symlink_to(run / checkpoint.WEIGHTS)
    with pytest.raises(outputs.OutputRefused, match="file of the run directory"):
        outputs.write_bytes(tmp_path / "link.pt", b"X", force=True)
    assert (run / checkpoint.WEIGHTS).read_bytes() == b"W"


def test_nothing_goes_into_a_shipped_model() -> None:
    grimm = PROJECT_ROOT / "checkpoints" / "grimm"
    with pytest.raises(outputs.OutputRefused, match="inside the model grimm"):
        outputs.check_file(grimm / "page.html", force=True)
    with pytest.raises(outputs.OutputRefused, match="inside the model grimm"):
        outputs.check_folder(grimm / "sub")


@pytest.mark.parametrize("make", ["dir", "fifo", "device"])
def test_only_a_regular_file_is_replaced(tmp_path: Path, make: str) -> None:
    target = {"dir": tmp_path / "d", "fifo": tmp_path / "f", "device": Path("/dev/null")}[make]
    if make == "dir":
        target.mkdir()
    elif make == "fifo":
        os.mkfifo(target)
    with pytest.raises(outputs.OutputRefused, match="an output replaces only a regular file"):
        outputs.write_bytes(target, b"X", force=True)
    assert target.exists() and not target.is_file()


def test_names_extensions_and_folders_are_checked_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(outputs.OutputRefused, match="more than the"):
        outputs.check_file(tmp_path / ("a" * 300 + ".html"))
    with pytest.raises(outputs.OutputRefused, match=r"cannot write \.jpgz \(x\.jpgz\); use \.png, \.svg or \.pdf"):
        outputs.check_file(tmp_path / "x.jpgz", suffixes=(".png", ".svg", ".pdf"))
    with pytest.raises(outputs.OutputRefused, match="does not exist"):
        outputs.check_file(tmp_path / "missing" / "x.html")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(outputs.OutputRefused, match="is a file, not a folder"):
        outputs.check_folder(tmp_path / "afile" / "sub")
    readonly = Path("/proc") if ROOT_IGNORES_PERMISSIONS else tmp_path / "ro"
    if not ROOT_IGNORES_PERMISSIONS:
        readonly.mkdir()
        readonly.chmod(0o555)
    with pytest.raises(outputs.OutputRefused, match="cannot"):
        outputs.check_file(readonly / "x.html")
    with pytest.raises(outputs.OutputRefused, match="cannot create"):
        outputs.check_folder(readonly / "sub")
    assert not (tmp_path / "afile" / "sub").exists()


def test_an_output_folder_is_never_a_run_nor_over_what_it_would_write(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / checkpoint.CONFIG).write_text("{}")
    with pytest.raises(outputs.OutputRefused, match="is a run directory"):
        outputs.check_folder(run)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "embeddings.pt").write_text("my own")
    with pytest.raises(outputs.OutputRefused, match="already holds embeddings.pt"):
        outputs.check_folder(mine, holds=("embeddings.pt", "vocab.json"))
    assert outputs.check_folder(tmp_path / "new" / "deeper") and not (tmp_path / "new").exists()


# --------------------------------------------------------------------------- reading a user's text


def test_text_blocks_equal_the_whole_and_name_the_bad_bytes_file_offset(tmp_path: Path) -> None:
    text = "Zwölf Brüder\n" * 20_000 + "e\u0301 the end"
    path = tmp_path / "t.txt"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    with path.open("rb") as f:
        blocks = list(text_blocks(f, str(path), block=4096))
    assert "".join(blocks) == text and len(blocks) > 10
    assert all(b.endswith("\n") for b in blocks[:-1])  # lines stay whole
    bad = tmp_path / "bad.txt"
    bad.write_bytes(text.encode()[:200_001].rstrip(b"\xc3") + b"\xff rest")
    offset = len(text.encode()[:200_001].rstrip(b"\xc3"))
    with pytest.raises(NotText, match=f"byte 0xff at offset {offset:,}"):
        read_text(bad, 1 << 30)


def test_a_line_longer_than_a_megabyte_is_cut_before_an_ascii_character() -> None:
    import io

    text = "ä" * 1_500_000 + "x" + "é" * 10
    blocks = list(text_blocks(io.BytesIO(text.encode()), "long"))
    assert "".join(blocks) == text and len(blocks) == 2 and blocks[1].startswith("x")


# --------------------------------------------------------------------------- parameters and flags


def test_marked_parameters_become_flags_and_prose_is_never_rewritten() -> None:
    error = UsageError("runs/x already holds a trained model; resume it with {resume} or pick another {run_dir}",
                       params=("resume", "run_dir"))
    assert str(error) == "runs/x already holds a trained model; resume it with resume or pick another run_dir"
    assert cli_message(error, "train") == ("runs/x already holds a trained model; resume it with --resume or pick "
                                           "another --out")


def test_the_train_refusal_reads_well_on_the_command_line(tmp_path: Path) -> None:
    from chargen.train import check_new_run_dir

    (tmp_path / checkpoint.CONFIG).write_text("{}")
    with pytest.raises(UsageError) as caught:
        check_new_run_dir(tmp_path)
    assert cli_message(caught.value, "train").endswith("continue it with --resume or pick another --out")


# --------------------------------------------------------------------------- rich markup


def test_markup_shows_paths_as_typed() -> None:
    from rich.console import Console

    console = Console(width=200, record=True, color_system=None)
    console.print(markup("saved to [bold]{path}[/] ({n:,} bytes)", path="run[/]/notes [draft]", n=1234))
    assert console.export_text().strip() == "saved to run[/]/notes [draft] (1,234 bytes)"


USER_VALUE = re.compile(r"path|file|dir|out|corpus|text|host|message|note|word|similar|find|prime|model|loaded")
RICH_CALLS = {"print", "Table", "Panel", "add_row", "add_column", "update", "status", "say"}
CLI = sorted((PROJECT_ROOT / "chargen" / "cli").glob("*.py"))


def _unescaped(path: Path) -> list[str]:
    """f-string fields handed to rich that look like a path or a user's string and are not escaped."""
    def called(node: ast.AST) -> str | None:
        return node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None

    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and called(node.func) in RICH_CALLS):
            continue
        if any(k.arg == "markup" and isinstance(k.value, ast.Constant) and k.value.value is False for k in node.keywords):
            continue
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            for field in (v for s in ast.walk(arg) if isinstance(s, ast.JoinedStr) for v in s.values):
                if (isinstance(field, ast.FormattedValue) and field.format_spec is None
                        and USER_VALUE.search(ast.unparse(field.value))
                        and not (isinstance(field.value, ast.Call) and called(field.value.func) in ("escape", "markup", "len"))):
                    found.append(f"{path.name}:{node.lineno}: {ast.unparse(field.value)}")
    return found


# serve.py belongs to the HTTP server's module, which escapes its own start-up line.
@pytest.mark.parametrize("path", [p for p in CLI if p.name != "serve.py"], ids=lambda p: p.name)
def test_no_path_or_user_string_reaches_rich_unescaped(path: Path) -> None:
    assert _unescaped(path) == []


def test_the_markup_check_catches_an_unescaped_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text('err_console.print(f"saved to {out_dir}")\nsay("x {p}", p=1)\n', encoding="utf-8")
    assert _unescaped(bad) == ["bad.py:1: out_dir"]


def test_the_suite_runs_without_the_users_chargen_settings() -> None:
    # conftest clears them at start-up: a CHARGEN_CHECKPOINTS in the user's shell must not move the shipped models
    from conftest import KEPT_FROM_OUTSIDE

    assert {n for n in os.environ if n.startswith("CHARGEN_")} <= {*KEPT_FROM_OUTSIDE, "CHARGEN_OFFLINE"}
