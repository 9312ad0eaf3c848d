"""The one way a command writes an output the user named: checked first, then written atomically.

A user's ``--out`` may land anywhere: on a run's own ``model.pt``, on a shipped model, on a
device node, on their own notes. Every file output goes through ``check_file`` (before any
work) and ``write_bytes``/``write_text``/``writing`` (a temporary file beside the target,
fsynced, then renamed over it), and every folder output through ``check_folder``:

- never a file of a run directory (``config.json``, ``model.pt``, ...), ``--force`` or not;
- nothing at all inside a model under the project's own ``checkpoints/`` folder (the shipped ones);
- never a directory, FIFO, socket or device: outputs replace regular files only;
- an existing file only with ``force=True``;
- a read-only folder, a name over the file system's limit or an unsupported extension is one
  clear error before any work.

Errors are ``OutputRefused`` and name the output's parameter (``params=``), so the CLI shows its flag.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from chargen.errors import UsageError
from chargen.paths import PROJECT_ROOT
from chargen.safeio import file_kind

# What a run directory holds (chargen.checkpoint's layout, and a word2vec folder's files); tests check
# this list against checkpoint's names so that the two cannot drift apart.
RUN_FILES = frozenset({
    "config.json", "model.pt", "trainer.pt", "embeddings.pt", "vocab.json", ".commit", ".lock",
    "metrics.jsonl", "samples.jsonl", "loss.png", "ngram.json", "best",
})
# Any of these in a folder marks it as a run directory (a checkpoint, a save in progress, a live run).
RUN_MARKERS = ("config.json", ".commit", ".lock", "embeddings.pt")
TEMP_PREFIX = ".chargen-out-"  # short on purpose: a name at the length limit still gets a temporary beside it


class OutputRefused(UsageError):
    """An output that would replace something it must not, or that cannot be written where it was named."""


def is_run_dir(folder: Path) -> bool:
    """Whether ``folder`` holds a chargen run (or a word2vec model): its files are never an output's target."""
    return any((folder / marker).exists() or (folder / marker).is_symlink() for marker in RUN_MARKERS)


def _project_checkpoints() -> Path:
    return Path(os.path.realpath(PROJECT_ROOT / "checkpoints"))


def _shipped_model(path: Path) -> Path | None:
    """The model folder under the project's own checkpoints/ that ``path`` (resolved) lies in, if any."""
    root = _project_checkpoints()
    try:
        inside = path.relative_to(root)
    except ValueError:
        return None
    if not inside.parts:
        return None
    model = root / inside.parts[0]
    return model if model.is_dir() and is_run_dir(model) else None


def _existing_ancestor(path: Path) -> Path:
    folder = path
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def _check_names(path: Path, param: str) -> None:
    """Each part of ``path`` within the file system's limit on a name (checked, not left to a traceback)."""
    limit = _name_max(_existing_ancestor(path.parent) if str(path.parent) else Path("."))
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > limit:
            raise OutputRefused(f"{{{param}}}: the name {part[:40]!r}... is {size:,} bytes, more than the {limit} "
                                "this file system allows in a name", params=param)


def _refuse_run_file(real: Path, shown: Path, param: str) -> None:
    if (model := _shipped_model(real)) is not None:
        raise OutputRefused(f"{{{param}}}: {shown} is inside the model {model.name} of {model.parent}; outputs never "
                            "go into a shipped or trained model's folder: name a file elsewhere", params=param)
    if is_run_dir(real.parent) and (real.name in RUN_FILES or real.exists()):
        raise OutputRefused(f"{{{param}}}: {shown} is a file of the run directory {real.parent}; an output never "
                            "replaces a run's own files (not even with force): name another file", params=param)


def check_file(path: str | os.PathLike[str], *, param: str = "out", force: bool = False,
               suffixes: Iterable[str] | None = None) -> Path:
    """The real path (symlinks resolved) that an output named ``path`` will replace, after every check
    above; raises ``OutputRefused``. Run it before the work, so that a refusal costs nothing."""
    shown = Path(path)
    if not str(path) or shown.name in ("", ".", ".."):
        raise OutputRefused(f"{{{param}}}: {str(path)!r} names no file", params=param)
    _check_names(shown, param)
    real = Path(os.path.realpath(shown))
    _refuse_run_file(real, shown, param)
    try:
        info = os.stat(real)
    except FileNotFoundError:
        info = None
    except OSError as e:
        raise OutputRefused(f"{{{param}}}: cannot write {shown}: {e.strerror or e}", params=param) from None
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise OutputRefused(f"{{{param}}}: {shown} is {file_kind(info.st_mode)}; an output replaces only a regular "
                            "file: name a file", params=param)
    if suffixes is not None:
        allowed = tuple(s.lower() for s in suffixes)
        if shown.suffix.lower() not in allowed:
            raise OutputRefused(f"{{{param}}}: cannot write {shown.suffix or 'a file without an extension'} "
                                f"({shown.name}); use {', '.join(allowed[:-1])} or {allowed[-1]}"
                                if len(allowed) > 1 else f"{{{param}}}: the file must end in {allowed[0]}",
                                params=param)
    if info is not None:
        if not force:
            raise OutputRefused(f"{{{param}}}: {shown} already exists; pass {{force}} to replace it, or name "
                                "another file", params=(param, "force"))
    folder = real.parent
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is not a folder"
        raise OutputRefused(f"{{{param}}}: cannot write {shown}: the folder {shown.parent} {what}", params=param)
    try:  # the only sure test (root ignores permissions, a read-only mount does not): write a file there
        fd, probe = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputRefused(f"{{{param}}}: cannot write {shown}: {_reason(e, shown.parent)}", params=param) from None
    return real


def _reason(e: OSError, folder: Path) -> str:
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"the folder {folder} is read-only ({e.strerror})"
    return e.strerror or str(e)


@contextmanager
def writing(path: str | os.PathLike[str], *, param: str = "out", force: bool = False,
            suffixes: Iterable[str] | None = None) -> Iterator[Path]:
    """A temporary path beside the output to write to (for writers that want a path: matplotlib, torch);
    renamed over the output when the block ends without an error, removed otherwise."""
    real = check_file(path, param=param, force=force, suffixes=suffixes)
    suffix = Path(path).suffix if len(Path(path).suffix) < 16 else ""  # writers pick the format by extension
    try:
        fd, name = tempfile.mkstemp(dir=real.parent, prefix=TEMP_PREFIX, suffix=suffix)
    except OSError as e:
        raise OutputRefused(f"{{{param}}}: cannot write {path}: {e.strerror or e}", params=param) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        # The target may have appeared or changed kind while the work ran: check again right before the rename.
        check_file(path, param=param, force=force, suffixes=suffixes)
        os.chmod(tmp, 0o644 & ~_umask())
        _fsync(tmp)
        os.replace(tmp, real)
    except OSError as e:
        raise OutputRefused(f"{{{param}}}: cannot write {path}: {e.strerror or e}", params=param) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike[str], data: bytes, *, param: str = "out", force: bool = False,
                suffixes: Iterable[str] | None = None) -> Path:
    """Write ``data`` to the output ``path`` atomically; returns the real path written."""
    with writing(path, param=param, force=force, suffixes=suffixes) as tmp:
        tmp.write_bytes(data)
    return Path(os.path.realpath(path))


def write_text(path: str | os.PathLike[str], text: str, *, param: str = "out", force: bool = False,
               suffixes: Iterable[str] | None = None) -> Path:
    """``write_bytes`` of ``text`` as UTF-8."""
    return write_bytes(path, text.encode("utf-8"), param=param, force=force, suffixes=suffixes)


def check_folder(path: str | os.PathLike[str], *, param: str = "out", holds: Iterable[str] = (),
                 allow_run: bool = False) -> Path:
    """An output folder that can be made and written, checked before any work and without creating it.

    Refused: a file; a run directory (unless ``allow_run``: a command adding to its own kind of
    folder); anything inside a model under the project's checkpoints/; a folder that already holds
    one of the files ``holds`` (what the command would write), which it would replace.
    """
    shown = Path(path)
    if not str(path):
        raise OutputRefused(f"{{{param}}}: '' names no folder", params=param)
    _check_names(shown / "x", param)
    real = Path(os.path.realpath(shown))
    if real.exists() and not real.is_dir():
        raise OutputRefused(f"{{{param}}}: {shown} is a file, not a folder", params=param)
    if (model := _shipped_model(real)) is not None:
        raise OutputRefused(f"{{{param}}}: {shown} is inside the model {model.name} of {model.parent}; "
                            "name a folder elsewhere", params=param)
    if real.is_dir() and (found := [name for name in holds if (real / name).exists() or (real / name).is_symlink()]):
        raise OutputRefused(f"{{{param}}}: {shown} already holds {', '.join(found)}, which this command would "
                            "replace: name a new or empty folder", params=param)
    if real.is_dir() and not allow_run and is_run_dir(real):
        raise OutputRefused(f"{{{param}}}: {shown} is a run directory; its files are not this command's to add to "
                            "or replace: name a new folder", params=param)
    existing = _existing_ancestor(real)
    if not existing.is_dir():
        raise OutputRefused(f"{{{param}}}: cannot create {shown}: {existing} is a file, not a folder", params=param)
    created: list[Path] = []
    try:  # the only sure test is to try: make the missing folders and a file in them, then remove them again
        for folder in reversed([real, *real.parents]):
            if not folder.exists():
                folder.mkdir()
                created.append(folder)
        fd, probe = tempfile.mkstemp(dir=real, prefix=TEMP_PREFIX)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputRefused(f"{{{param}}}: cannot create {shown}: {_reason(e, existing)}", params=param) from None
    finally:
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:
                pass
    return shown


def make_folder(path: str | os.PathLike[str], *, param: str = "out") -> Path:
    """Create an output folder ``check_folder`` accepted; an OSError becomes one ``OutputRefused`` line."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputRefused(f"{{{param}}}: cannot create {path}: {e.strerror or e}", params=param) from None
    return Path(path)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EROFS):  # file systems without fsync still renamed safely
            raise
    finally:
        os.close(fd)
