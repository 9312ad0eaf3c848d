"""Checkpoints: a run directory of tensors-only weights, JSON config and trainer state, written atomically.

Layout of a run directory::

    config.json    format version, task, model config, vocabulary, step, metrics (JSON)
    model.pt       flat {name: tensor} dict, loaded with torch.load(weights_only=True)
    trainer.pt     optimizer, RNG and data-position state for exact resume (tensors, numbers, lists)
    metrics.jsonl  samples.jsonl  loss.png
    .lock          while a run writes here: its pid and host (see RunLock)
    best/          tasks that keep their best model: config.json + model.pt of the lowest val_loss,
                   itself a run directory (without trainer.pt), saved the same way

A save writes every file to a temporary name and fsyncs it, then writes a ``.commit`` journal
naming them, renames them into place and removes the journal. Killed before the journal exists,
the previous checkpoint is untouched; killed after, the next load rolls the renames forward.
So a checkpoint on disk is always one consistent step, whatever moment the process died.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from chargen import __version__
from chargen.errors import CheckpointError, RunLocked
from chargen.models import ModelConfig, build_model
from chargen.paths import checkpoints_dir
from chargen.safeio import GiB, MiB, describe, is_plain_file, open_regular, read_regular
from chargen.schema import RUN_FIELDS, SchemaError, check_config
from chargen.vocab import Vocab

FORMAT_VERSION = 1
CONFIG, WEIGHTS, TRAINER = "config.json", "model.pt", "trainer.pt"
JOURNAL = ".commit"
LOCK = ".lock"
EMBEDDINGS, WORDS = "embeddings.pt", "vocab.json"  # a word2vec model folder, saved by the same journal
# The only files a save writes, so the only names a journal may rename into place.
SAVED = (CONFIG, WEIGHTS, TRAINER, EMBEDDINGS, WORDS)
_TEMP_RE = re.compile(r"\.(" + "|".join(re.escape(n) for n in (*SAVED, JOURNAL)) + r")\.[A-Za-z0-9_]+\.tmp")
MAX_CONFIG_BYTES = 64 * MiB
MAX_TENSOR_BYTES = 16 * GiB
BEST = "best"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(directory: Path, name: str, data: bytes) -> Path:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; a checkpoint is as readable as any file the user writes
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def atomic_write(directory: Path, files: dict[str, bytes]) -> None:
    """Replace ``files`` in ``directory`` all together (see the module docstring)."""
    directory.mkdir(parents=True, exist_ok=True)
    temps: list[Path] = []
    try:
        for name, data in files.items():
            temps.append(_write_temp(directory, name, data))
        journal = json.dumps({name: tmp.name for name, tmp in zip(files, temps)}).encode()
        temps.append(_write_temp(directory, JOURNAL, journal))
        os.replace(temps[-1], directory / JOURNAL)  # the commit point
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(directory)
    _roll_forward(directory)


def _roll_forward(directory: Path) -> None:
    """Finish a journalled save (renames are idempotent), then drop stray temporary files."""
    journal = directory / JOURNAL
    if journal.exists() or journal.is_symlink():
        if not is_plain_file(journal):
            raise CheckpointError(f"{journal}: refused: a save journal is a regular file, this is not; "
                                  f"nothing was renamed (delete {journal} if you trust this directory)")
        try:
            pending = json.loads(read_regular(journal, MiB).decode("utf-8"))
        except (OSError, ValueError, RecursionError):
            pending = {}  # torn journal: it was never renamed into place, so nothing was committed
        _check_journal(journal, pending)
        for name, tmp in pending.items():
            try:
                os.replace(directory / tmp, directory / name)
            except FileNotFoundError:
                pass  # renamed before the crash
        _fsync_dir(directory)
        journal.unlink(missing_ok=True)
    for stray in _temp_files(directory):
        stray.unlink(missing_ok=True)


def is_temp_file(name: str) -> bool:
    """Whether ``name`` is one of the temporary files a save writes."""
    return _TEMP_RE.fullmatch(name) is not None


def _temp_files(directory: Path) -> list[Path]:
    """This module's temporary files in ``directory`` (never another program's ``.*.tmp``)."""
    return [p for p in directory.glob(".*.tmp") if _TEMP_RE.fullmatch(p.name)]


def _check_journal(journal: Path, pending: Any) -> None:
    """A journal may only move this save's own temporary files onto the fixed checkpoint names.

    A run directory can come from anyone; a crafted journal naming ``/home/me/.bashrc`` or
    ``../x`` would otherwise make any load rename files anywhere the user can write.
    """
    if not isinstance(pending, dict):
        pending = {"?": pending}
    for name, tmp in pending.items():
        ok = (name in SAVED and isinstance(tmp, str) and _TEMP_RE.fullmatch(tmp) is not None
              and tmp.startswith(f".{name}.") and (not (journal.parent / tmp).exists()
                                                   or is_plain_file(journal.parent / tmp)))
        if not ok:
            shown = f"{name!r} -> {tmp!r}" if isinstance(tmp, str) else repr(name)
            raise CheckpointError(
                f"{journal}: refused: this save journal names {shown[:120]}, not one of this run's own files "
                f"({', '.join(SAVED)}); nothing was renamed (delete {journal} if you trust this directory)"
            )


def tensor_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def flat_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The unwrapped model's tensors on the CPU (DDP's ``module.`` and compile's ``_orig_mod.`` removed)."""
    model = getattr(model, "module", model)
    model = getattr(model, "_orig_mod", model)
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def save(run_dir: Path, config: dict[str, Any], model: nn.Module, trainer: dict[str, Any] | None = None) -> None:
    """Write a checkpoint atomically; ``config`` gets the format and chargen versions added."""
    config = {"format_version": FORMAT_VERSION, "chargen_version": __version__, **config}
    files = {WEIGHTS: tensor_bytes(flat_weights(model))}
    if trainer is not None:
        files[TRAINER] = tensor_bytes(trainer)
    files[CONFIG] = (json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode()
    try:
        atomic_write(run_dir, files)
    except OSError as e:
        kept = "the previous checkpoint there is intact" if (run_dir / CONFIG).exists() else "nothing was saved"
        raise CheckpointError(f"cannot save a checkpoint in {run_dir}: {e.strerror or e}; {kept}") from None


def resolve(name_or_path: str | Path) -> Path:
    """A run directory from a path, or from a name under the checkpoints folder."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    named = checkpoints_dir() / str(name_or_path)
    if named.is_dir():
        return named
    raise CheckpointError(
        f"no model {str(name_or_path)!r}: not a directory, and not in {checkpoints_dir()} "
        "(train one with `chargen train --out DIR`, or pass a run directory)"
    )


def _recover(run_dir: Path) -> None:
    """Finish a save that a crash interrupted, unless a live run owns the directory (it may be mid-save)."""
    if not ((run_dir / JOURNAL).exists() or (run_dir / JOURNAL).is_symlink() or _temp_files(run_dir)):
        return
    owners = [run_dir, run_dir.parent] if run_dir.name == BEST else [run_dir]  # best/ is written by its parent's run
    if os.access(run_dir, os.W_OK) and not any(RunLock(d).owned_by_another_process() for d in owners):
        _roll_forward(run_dir)


def load_config(run_dir: Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The checkpoint's JSON config, checked against the schema (``chargen.schema``); the top-level
    ``required`` fields must be present."""
    _recover(run_dir)
    path = run_dir / CONFIG
    try:
        config = json.loads(read_regular(path, MAX_CONFIG_BYTES).decode("utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; {run_dir} is not a chargen run directory") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read it ({describe(e)})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: corrupt JSON (nested too deeply)") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable or corrupt JSON ({' '.join(str(e).split())[:200]})") from None
    try:
        check_config(config, FORMAT_VERSION, required)
    except SchemaError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return config


def load_tensors(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True``: tensors and plain containers only, no code runs."""
    try:
        with open_regular(path, MAX_TENSOR_BYTES) as f:
            return torch.load(f, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read it ({describe(e)})") from None
    except (MemoryError, RecursionError) as e:
        raise CheckpointError(f"{path}: cannot load it ({type(e).__name__}); corrupt or crafted") from None
    except pickle.UnpicklingError as e:
        # weights_only names the callable a pickle asks for ("GLOBAL posix.system"); anything
        # else it cannot read is damage, not an attack.
        if found := re.search(r"GLOBAL ([\w.]+)", str(e)):
            raise CheckpointError(
                f"{path}: refused: it holds a pickled Python object ({found.group(1)}), which could run code "
                "when loaded; chargen loads only tensors and plain data"
            ) from None
        raise CheckpointError(f"{path}: corrupt ({_detail(e)})") from None
    except EOFError:
        raise CheckpointError(f"{path}: corrupt or truncated (it ends before any data)") from None
    except Exception as e:  # torch raises RuntimeError, ValueError... for damaged files
        raise CheckpointError(f"{path}: corrupt or truncated ({_detail(e)})") from None


def _detail(e: BaseException) -> str:
    """The informative part of torch's long, multi-line loading errors, on one line."""
    text = " ".join(str(e).split()) or type(e).__name__
    if found := re.search(r"WeightsUnpickler error: (.+?)(?: Check the documentation|$)", text):
        return found.group(1)
    return text.split(". ")[0][:200]


@dataclass
class Loaded:
    """A model rebuilt from a checkpoint, with its config and vocabulary."""

    path: Path
    config: dict[str, Any]
    model: nn.Module
    vocab: Vocab


def load(
    name_or_path: str | Path,
    *,
    task: str | tuple[str, ...] | None = None,
    device: torch.device | str = "cpu",
    build: Callable[[dict[str, Any]], nn.Module] | None = None,
) -> Loaded:
    """Rebuild a model from a run directory; ``task`` refuses checkpoints of another task."""
    run_dir = resolve(name_or_path)
    config = load_config(run_dir, RUN_FIELDS)
    kind = config.get("task")
    wanted = (task,) if isinstance(task, str) else task
    if wanted and kind not in wanted:
        raise CheckpointError(
            f"{run_dir}: this is a {kind!r} model; this command needs a {' or '.join(map(repr, wanted))} model"
        )
    if wanted and not isinstance(config.get("task_config"), dict):  # a command then reads the task's settings
        raise CheckpointError(f"{run_dir / CONFIG}: task_config is missing")
    try:
        vocab = Vocab.from_json(config["vocab"])
        model_cfg = ModelConfig.from_dict(config["model"])
        model = build(config) if build else build_model(model_cfg)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{run_dir / CONFIG}: cannot rebuild the model ({e})") from None
    except (RuntimeError, MemoryError) as e:
        raise CheckpointError(f"{run_dir / CONFIG}: cannot build this model here ({_detail(e)})") from None
    weights = load_tensors(run_dir / WEIGHTS)
    check_weights(run_dir / WEIGHTS, weights)
    if model_cfg.vocab_size != len(vocab):
        raise CheckpointError(
            f"{run_dir / CONFIG}: vocabulary has {len(vocab)} tokens but the model was built for "
            f"{model_cfg.vocab_size}"
        )
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        detail = " ".join(str(e).split())[:300]
        raise CheckpointError(f"{run_dir / WEIGHTS}: weights do not fit the config ({detail})") from None
    model.to(device).eval()
    return Loaded(run_dir, config, model, vocab)


def check_weights(path: Path, weights: Any) -> None:
    """A flat dict of named, finite floating-point tensors, as ``save`` writes them."""
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"{path}: not a flat dict of tensors")
    for name, tensor in weights.items():
        if not isinstance(name, str):
            raise CheckpointError(f"{path}: weight names must be strings, found {name!r}")
        if not tensor.is_floating_point():
            raise CheckpointError(f"{path}: weight {name!r} is {tensor.dtype}; chargen saves floating-point weights "
                                  "(converting would change them)")
        if not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: weight {name!r} holds NaN or infinite values; the checkpoint is damaged")


class RunLock:
    """One writer per run directory: ``.lock``, created with O_EXCL, names the owner's pid and host.

    A lock whose process is gone (same host, no such pid) is stale: it is taken over and ``note``
    says so. A lock from another host cannot be checked, so it is respected.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK
        self.held = False
        self.note: str | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        for _ in range(3):  # a stale lock we clear may be claimed by another process first
            if self._create():
                return
            owner = _read_lock(self.path)
            if owner is None:
                continue  # released since our attempt
            if _alive(owner):
                raise RunLocked(self._locked_message(owner), params="run_dir")
            self._clear_stale(owner)
        raise RunLocked(f"{self.path.parent} is being claimed by other runs; try again")

    def release(self) -> None:
        if self.held and (_read_lock(self.path) or {}).get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False

    def owned_by_another_process(self) -> bool:
        owner = _read_lock(self.path)
        return owner is not None and owner.get("pid") != os.getpid() and _alive(owner)

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(owner) + "\n")
        self.held = True
        return True

    def _clear_stale(self, stale: dict[str, Any]) -> None:
        # The guard makes "check it is still the stale lock, then delete it" one step across processes.
        guard = self.path.with_name(LOCK + ".takeover")
        try:
            os.close(os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            raise RunLocked(
                f"{self.path}: another process is taking over this stale lock; try again "
                f"(delete {guard} if no chargen run is starting)"
            ) from None
        try:
            if _read_lock(self.path) == stale:
                self.path.unlink(missing_ok=True)
                pid = stale.get("pid")
                who = f"pid {pid}" if isinstance(pid, int) else "an unfinished or unreadable lock"
                self.note = f"took over a stale lock on {self.path.parent} ({who} is no longer running)"
        finally:
            guard.unlink(missing_ok=True)

    def _locked_message(self, owner: dict[str, Any]) -> str:
        who = f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}, since {owner.get('since', '?')}"
        return (
            f"{self.path.parent} is in use by another training run ({who}); wait for it or pick another "
            f"{{run_dir}} (if no run is using it, delete {self.path})"
        )


def _read_lock(path: Path) -> dict[str, Any] | None:
    """The lock's owner; ``{}`` for a lock whose owner died before writing it; None when there is no lock."""
    try:
        owner = json.loads(read_regular(path, MiB).decode("utf-8"))
    except FileNotFoundError:
        return None
    except (IsADirectoryError, OSError) as e:
        if path.is_dir() or not path.is_file() and path.exists():
            what = "a directory" if path.is_dir() else "not a regular file"
            raise RunLocked(f"{path} is {what}, not a chargen lock file; remove it if no run is using "
                            f"{path.parent}") from None
        return {}
    except (ValueError, RecursionError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _alive(owner: dict[str, Any]) -> bool:
    if "pid" not in owner:
        return False
    if owner.get("host") != socket.gethostname():
        return True  # cannot see another machine's processes
    pid = owner["pid"]
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid < 2**31:
        return False  # not a pid chargen wrote: an unfinished or damaged lock, as good as stale
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def choose(name_or_path: str | Path, last: bool = False) -> tuple[Path, str | None]:
    """The run directory to load: its ``best/`` when it keeps one (unless ``last``), and a note saying which.

    The note (None when the run keeps no best model) names both steps and losses, so a user knows
    what they got and what the alternative is.
    """
    run_dir = resolve(name_or_path)
    best = run_dir / BEST
    if not ((best / CONFIG).exists() or (best / JOURNAL).exists()):  # a journal: a save to roll forward
        return run_dir, None
    described = {}
    for which, path in (("best", best), ("last", run_dir)):
        try:
            config = load_config(path)
            loss = config.get("metrics", {}).get("val_loss")
            step = config.get("step")
            described[which] = (f"step {step:,}" if isinstance(step, int) else "step ?") + (
                f", val_loss {loss:.4f}" if isinstance(loss, (int, float)) else "")
        except CheckpointError:
            if which == "last":  # a damaged or crafted run is reported, not quietly skipped for its best/
                raise
            described[which] = "unreadable"
    if last:
        return run_dir, f"using the last checkpoint of {run_dir} ({described['last']}; the best: {described['best']})"
    return best, f"using the best checkpoint of {run_dir} ({described['best']}; the last: {described['last']})"
