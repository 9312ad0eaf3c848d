"""Every command fed bad input: exit 1 or 2, one line on stderr, no traceback, nothing written or changed."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from chargen import checkpoint
from chargen.cli import app
from chargen.data import corpora
from chargen.models import ModelConfig, build_model
from chargen.tasks import build_task
from chargen.train import TrainConfig, fit

runner = CliRunner()
TALE = "The miller's daughter spun straw into gold, and the little man danced round the fire. " * 40


class RunsCode:
    """A pickle that would call ``function(*args)`` when loaded."""

    def __init__(self, function: Any, *args: Any) -> None:
        self.call = (function, args)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.call


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Inputs for the table: corpus files good and bad, a trained LM and damaged copies, a classifier."""
    root = tmp_path_factory.mktemp("world")
    texts = root / "texts"
    texts.mkdir()
    (texts / "tale.txt").write_text(TALE, encoding="utf-8")
    (texts / "empty.txt").write_bytes(b"")
    (texts / "binary.bin").write_bytes(bytes(range(256)) * 8)
    (texts / "latin1.txt").write_bytes("Märchen über Müller\n".encode("latin-1") * 20)
    (texts / "short.txt").write_text(TALE[:400], encoding="utf-8")  # > 100 characters, < one batch of 64 x 31
    (texts / "tiny.txt").write_text("too short\n", encoding="utf-8")
    (root / "afile").write_text("a file, not a directory\n")

    models = root / "models"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    task = build_task("lm", seed=0, corpus=str(texts / "tale.txt"), seq_len=8, batch_size=4)
    fit(task, ModelConfig(cell="lstm", hidden_size=16, num_layers=1, embed_dim=8),
        TrainConfig(steps=2, eval_every=2, device="cpu"), models / "lm")
    torch.set_num_threads(threads)
    for name in ("evil", "evil-trainer", "truncated", "newer", "vocab", "locked", "lost-corpus"):
        shutil.copytree(models / "lm", models / name)
    marker = root / "pwned"
    torch.save({"w": RunsCode(os.system, f"touch {marker}")}, models / "evil" / checkpoint.WEIGHTS)
    torch.save({"step": RunsCode(open, str(marker), "w")}, models / "evil-trainer" / checkpoint.TRAINER)
    weights = models / "truncated" / checkpoint.WEIGHTS
    weights.write_bytes(weights.read_bytes()[:200])
    edit_config(models / "newer", lambda c: {**c, "format_version": checkpoint.FORMAT_VERSION + 1})
    edit_config(models / "vocab", lambda c: {**c, "vocab": {"chars": ["a", "b"], "specials": []}})
    edit_config(models / "lost-corpus", lambda c: {**c, "task_config": {**c["task_config"], "options": {
        **c["task_config"]["options"], "corpus": str(root / "gone.txt")}}})
    # A lock held by a live process: this one (the CLI runs in it), which is not the one asking.
    (models / "locked" / checkpoint.LOCK).write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))

    from chargen.tasks.names import classifier_vocab

    vocab = classifier_vocab()
    cfg = ModelConfig(kind="classifier", vocab_size=len(vocab), embed_dim=8, hidden_size=16, num_layers=1,
                      num_classes=2)
    checkpoint.save(models / "clf", {"task": "classify", "model": cfg.to_dict(), "vocab": vocab.to_json(),
                                     "task_config": {"options": {"corpus": "names"}, "languages": ["A", "B"]}},
                    build_model(cfg))
    shutil.copytree(models / "clf", models / "clf-evil")
    torch.save({"w": RunsCode(os.system, f"touch {marker}")}, models / "clf-evil" / checkpoint.WEIGHTS)

    mirror = root / "mirror"
    mirror.mkdir()
    (mirror / "grimm.txt").write_text("not the Brothers Grimm\n")
    return root


def edit_config(run: Path, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    path = run / checkpoint.CONFIG
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)


def wrong_download(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpora, "_default_opener", lambda url: io.BytesIO(b"this is not the registered text\n"))


@dataclass
class Case:
    """One bad invocation: ``{world}`` and ``{tmp}`` in ``args`` are filled in; ``says`` must be in its one line."""

    id: str
    args: list[str]
    code: int
    says: str
    env: dict[str, str | None] = field(default_factory=dict)
    patch: Callable[[pytest.MonkeyPatch], None] | None = None
    trains: bool = False  # the failure comes after training began, so progress lines precede it


TINY_LM = ["--hidden", "16", "--embed", "8", "--layers", "1", "--seq-len", "8", "--batch-size", "4"]
TRAIN = ["train", "--corpus", "{world}/texts/tale.txt", *TINY_LM, "--steps", "2", "--quiet"]
LM = "{world}/models/lm"
OFFLINE_EMPTY = {"CHARGEN_MIRROR": None, "CHARGEN_OFFLINE": "1", "CHARGEN_HOME": "{tmp}/home"}

CASES = [
    # train: the corpus
    Case("unknown corpus", ["train", "--corpus", "atlantis", "--steps", "1"], 1, "unknown corpus 'atlantis'"),
    Case("missing corpus file", ["train", "--corpus", "{world}/texts/missing.txt", "--steps", "1"], 1, "no such file"),
    Case("empty corpus file", ["train", "--corpus", "{world}/texts/empty.txt", "--steps", "1"], 1, "is empty"),
    Case("binary corpus file", ["train", "--corpus", "{world}/texts/binary.bin", "--steps", "1"], 1, "looks binary"),
    Case("non-UTF-8 corpus file", ["train", "--corpus", "{world}/texts/latin1.txt", "--steps", "1"], 1,
         "is not valid UTF-8"),
    Case("a directory as corpus", ["train", "--corpus", "{world}/texts", "--steps", "1"], 1, "is a directory"),
    Case("corpus shorter than one batch", ["train", "--corpus", "{world}/texts/short.txt", "--steps", "1"], 1,
         "too short for this batch"),
    Case("corpus of a few characters", ["train", "--corpus", "{world}/texts/tiny.txt", "--steps", "1"], 1,
         "need at least 100"),
    Case("checksum mismatch on download", ["train", "--corpus", "grimm", "--steps", "1"], 1,
         "nothing was kept", env={"CHARGEN_MIRROR": None, "CHARGEN_OFFLINE": "0", "CHARGEN_HOME": "{tmp}/home"},
         patch=wrong_download),
    Case("checksum mismatch in the mirror", ["train", "--corpus", "grimm", "--steps", "1"], 1,
         "mirror file", env={"CHARGEN_MIRROR": "{world}/mirror", "CHARGEN_HOME": "{tmp}/home"}),
    Case("offline with nothing cached", ["train", "--corpus", "grimm", "--steps", "1"], 1,
         "CHARGEN_OFFLINE forbids downloading", env=OFFLINE_EMPTY),
    # train: the model and the schedule
    Case("unknown cell", [*TRAIN, "--cell", "gru"], 2, "unknown cell 'gru'"),
    Case("unknown engine", [*TRAIN, "--engine", "warp"], 2, "Invalid value for '--engine'"),
    Case("unknown task", [*TRAIN, "--task", "translate"], 2, "unknown task 'translate'"),
    Case("zero hidden units", [*TRAIN, "--hidden", "0"], 2, "--hidden must be positive"),
    Case("negative hidden units", [*TRAIN, "--hidden", "-8"], 2, "--hidden must be positive"),
    Case("zero layers", [*TRAIN, "--layers", "0"], 2, "--layers must be positive"),
    Case("zero embedding", [*TRAIN, "--embed", "0"], 2, "--embed must be positive"),
    Case("dropout of 1.5", [*TRAIN, "--dropout", "1.5"], 2, "--dropout must be in [0, 1)"),
    Case("zero sequence length", [*TRAIN, "--seq-len", "0"], 2, "--seq-len must be positive"),
    Case("negative sequence length", [*TRAIN, "--seq-len", "-3"], 2, "--seq-len must be positive"),
    Case("zero batch size", [*TRAIN, "--batch-size", "0"], 2, "--batch-size must be positive"),
    Case("batch size not a number", [*TRAIN, "--batch-size", "many"], 2, "Invalid value for '--batch-size'"),
    Case("zero steps", [*TRAIN, "--steps", "0"], 2, "--steps must be positive"),
    Case("negative steps", [*TRAIN, "--steps", "-5"], 2, "--steps must be positive"),
    Case("zero learning rate", [*TRAIN, "--lr", "0"], 2, "--lr must be positive"),
    Case("negative clip", [*TRAIN, "--clip", "-1"], 2, "--clip must be 0 (off) or positive"),
    Case("zero eval interval", [*TRAIN, "--eval-every", "0"], 2, "--eval-every must be positive"),
    Case("zero sample interval", [*TRAIN, "--sample-every", "0"], 2, "--sample-every must be positive"),
    Case("--time in words", [*TRAIN, "--time", "soon"], 2, "--time: cannot read 'soon'"),
    Case("--time with a bad unit", [*TRAIN, "--time", "10x"], 2, "--time: cannot read '10x'"),
    Case("--time of zero", [*TRAIN, "--time", "0s"], 2, "--time must be positive"),
    Case("--time negative", [*TRAIN, "--time", "-5m"], 2, "--time: cannot read '-5m'"),
    Case("--device cuda without CUDA", [*TRAIN, "--device", "cuda"], 2, "no CUDA device"),
    Case("unknown device", [*TRAIN, "--device", "tpu"], 2, "unknown device 'tpu'"),
    # train: the run directory
    Case("output under a file", [*TRAIN, "--out", "{world}/afile/run"], 2, "cannot write to the run directory"),
    Case("output in a read-only place", [*TRAIN, "--out", "/proc/chargen-run"], 2, "cannot write to the run directory"),
    Case("output holds a trained model", [*TRAIN, "--out", LM], 2, "already holds a trained model"),
    Case("disk full while saving", [*TRAIN, "--out", "{tmp}/run"], 1,
         "No space left on device; nothing was saved", patch=disk_full, trains=True),
    Case("resume a missing run", ["train", "--resume", "{tmp}/nothing-here"], 1, "config.json: missing"),
    Case("resume a locked run", ["train", "--resume", "{world}/models/locked", "--quiet"], 1,
         "is in use by another training run"),
    Case("resume a trainer.pt that runs code", ["train", "--resume", "{world}/models/evil-trainer", "--quiet"], 1,
         "trainer.pt: refused"),
    # sample
    Case("sample: missing model", ["sample", "--model", "{tmp}/no-model"], 1, "no model"),
    Case("sample: negative temperature", ["sample", "--model", LM, "--temp", "-0.5"], 2, "--temp must be 0"),
    Case("sample: --top-k 0", ["sample", "--model", LM, "--top-k", "0"], 2, "--top-k must be at least 1"),
    Case("sample: negative --top-k", ["sample", "--model", LM, "--top-k", "-2"], 2, "--top-k must be at least 1"),
    Case("sample: absurd --length", ["sample", "--model", LM, "--length", str(10**12)], 2, "--length must be between"),
    Case("sample: negative --length", ["sample", "--model", LM, "--length", "-1"], 2, "--length must be between"),
    Case("sample: -n 0", ["sample", "--model", LM, "-n", "0"], 2, "-n must be at least 1"),
    Case("sample: prime outside the vocabulary", ["sample", "--model", LM, "--prime", "Zwölf €"], 1,
         "outside the model's vocabulary"),
    Case("sample: --lang for a text model", ["sample", "--model", LM, "--lang", "Czech"], 2,
         "--lang and --start are for name generators"),
    Case("sample: a classifier", ["sample", "--model", "{world}/models/clf"], 1, "this is a 'classify' model"),
    Case("sample: weights that run code", ["sample", "--model", "{world}/models/evil"], 1, "model.pt: refused"),
    Case("sample: truncated weights", ["sample", "--model", "{world}/models/truncated"], 1,
         "model.pt: corrupt or truncated"),
    Case("sample: newer format", ["sample", "--model", "{world}/models/newer"], 1, "newer than this chargen"),
    Case("sample: vocabulary that does not match", ["sample", "--model", "{world}/models/vocab"], 1,
         "vocabulary has 2 tokens"),
    Case("sample: --device cuda without CUDA", ["sample", "--model", LM, "--device", "cuda"], 2, "no CUDA device"),
    # evaluate
    Case("evaluate: missing model", ["evaluate", "--model", "{tmp}/no-model"], 1, "no model"),
    Case("evaluate: weights that run code", ["evaluate", "--model", "{world}/models/evil"], 1, "model.pt: refused"),
    Case("evaluate: newer format", ["evaluate", "--model", "{world}/models/newer"], 1, "newer than this chargen"),
    Case("evaluate: its corpus is gone", ["evaluate", "--model", "{world}/models/lost-corpus"], 1, "no such file"),
    Case("evaluate: --device cuda without CUDA", ["evaluate", "--model", LM, "--device", "cuda"], 2, "no CUDA device"),
    # classify
    Case("classify: empty name", ["classify", "--model", "{world}/models/clf", ""], 2, "no names to classify"),
    Case("classify: 10,000-character name", ["classify", "--model", "{world}/models/clf", "A" * 10_000], 1,
         "too long for a surname: 10,000 characters"),
    Case("classify: --top 0", ["classify", "--model", "{world}/models/clf", "--top", "0", "Hinton"], 2,
         "--top must be at least 1"),
    Case("classify: missing model", ["classify", "--model", "{tmp}/no-model", "Hinton"], 1, "no model"),
    Case("classify: a language model", ["classify", "--model", LM, "Hinton"], 1, "needs a 'classify' model"),
    Case("classify: weights that run code", ["classify", "--model", "{world}/models/clf-evil", "Hinton"], 1,
         "model.pt: refused"),
    # probe
    Case("probe: unknown cell", ["probe", "--cells", "rnn,gru", "--out", "{tmp}/probe"], 2, "unknown cell 'gru'"),
    Case("probe: lengths in words", ["probe", "--lengths", "short", "--out", "{tmp}/probe"], 2,
         "--lengths: cannot read 'short'"),
    Case("probe: length below 3", ["probe", "--lengths", "2:5", "--out", "{tmp}/probe"], 2,
         "palindrome lengths must be at least 3"),
    Case("probe: lengths backwards", ["probe", "--lengths", "30:5:5", "--out", "{tmp}/probe"], 2, "is past stop"),
    Case("probe: zero seeds", ["probe", "--seeds", "0", "--out", "{tmp}/probe"], 2, "--seeds must be at least 1"),
    Case("probe: zero steps", ["probe", "--steps", "0", "--out", "{tmp}/probe"], 2, "--steps must be positive"),
    Case("probe: zero hidden units", ["probe", "--hidden", "0", "--out", "{tmp}/probe"], 2,
         "--hidden-size must be positive"),
    Case("probe: output under a file", ["probe", "--lengths", "5", "--seeds", "1", "--out", "{world}/afile/probe"],
         2, "--out: cannot create"),
    # compare
    Case("compare: unknown task", ["compare", "--task", "translate", "--out", "{tmp}/cmp"], 2,
         "unknown task 'translate'"),
    Case("compare: unknown cell", ["compare", "--cells", "lstm,gru", "--out", "{tmp}/cmp"], 2, "unknown cell 'gru'"),
    Case("compare: zero seeds", ["compare", "--seeds", "0", "--out", "{tmp}/cmp"], 2, "--seeds must be at least 1"),
    Case("compare: classify on a book", ["compare", "--task", "classify", "--corpus", "grimm", "--out", "{tmp}/cmp"],
         2, "the surname tasks train on the 'names' corpus"),
    Case("compare: unknown corpus", ["compare", "--corpus", "atlantis", "--out", "{tmp}/cmp"], 1,
         "unknown corpus 'atlantis'"),
    Case("compare: --time in words", ["compare", "--time", "soon", "--out", "{tmp}/cmp"], 2, "--time: cannot read"),
    Case("compare: momentum above 1", ["compare", "--cells", "momentum-rnn", "--mu", "1.5", "--steps", "1",
                                       "--corpus", "{world}/texts/tale.txt", "--out", "{tmp}/cmp"], 2,
         "mu (momentum) must be in [0, 1)"),
    # gradients
    Case("gradients: unknown cell", ["gradients", "--cells", "gru", "--out", "{tmp}/grad"], 2, "unknown cell 'gru'"),
    Case("gradients: length 1", ["gradients", "--length", "1", "--out", "{tmp}/grad"], 2,
         "--length must be at least 2"),
    Case("gradients: zero hidden units", ["gradients", "--hidden", "0", "--out", "{tmp}/grad"], 2,
         "--hidden must be positive"),
    Case("gradients: zero seeds", ["gradients", "--seeds", "0", "--out", "{tmp}/grad"], 2,
         "--seeds must be at least 1"),
    Case("gradients: negative momentum", ["gradients", "--cells", "momentum-rnn", "--mu", "-0.1", "--out",
                                          "{tmp}/grad"], 2, "mu (momentum) must be in [0, 1)"),
    Case("gradients: unknown corpus", ["gradients", "--text", "atlantis", "--out", "{tmp}/grad"], 1,
         "unknown corpus 'atlantis'"),
    # reference numpy-rnn
    Case("reference: unknown corpus", ["reference", "numpy-rnn", "--corpus", "atlantis", "--out", "{tmp}/ref"], 1,
         "unknown corpus 'atlantis'"),
    Case("reference: the surname corpus", ["reference", "numpy-rnn", "--corpus", "names", "--out", "{tmp}/ref"], 1,
         "is a folder of per-language surname lists"),
    Case("reference: text of a few symbols", ["reference", "numpy-rnn", "--corpus", "{world}/texts/tiny.txt", "--out",
                                              "{tmp}/ref"], 1, "need at least 100"),
    Case("reference: text shorter than one batch", ["reference", "numpy-rnn", "--corpus", "{world}/texts/short.txt",
                                                    "--batch-size", "64", "--out", "{tmp}/ref"], 1,
         "one batch of 64 streams"),
    Case("reference: zero hidden units", ["reference", "numpy-rnn", "--hidden", "0", "--out", "{tmp}/ref"], 2,
         "--hidden must be positive"),
    Case("reference: zero epochs", ["reference", "numpy-rnn", "--epochs", "0", "--out", "{tmp}/ref"], 2,
         "--epochs must be positive"),
    Case("reference: zero sequence length", ["reference", "numpy-rnn", "--seq-len", "0", "--out", "{tmp}/ref"], 2,
         "--seq-len must be positive"),
    Case("reference: negative learning rate", ["reference", "numpy-rnn", "--lr", "-0.1", "--out", "{tmp}/ref"], 2,
         "--lr must be positive"),
    Case("reference: negative LSTM steps", ["reference", "numpy-rnn", "--lstm-steps", "-1", "--out", "{tmp}/ref"], 2,
         "--lstm-steps must be 0 (no LSTM) or positive"),
    Case("reference: zero threads", ["reference", "numpy-rnn", "--threads", "0", "--out", "{tmp}/ref"], 2,
         "--threads must be positive"),
    Case("reference: output under a file", ["reference", "numpy-rnn", "--corpus", "{world}/texts/tale.txt",
                                            "--out", "{world}/afile/ref"], 2, "--out: cannot create"),
    Case("reference: no command", ["reference", "numpy"], 2, "No such command 'numpy'"),
    # report
    Case("report: unknown experiment", ["report", "--rerun", "everything", "--out", "{tmp}/report"], 2,
         "--rerun: unknown experiment 'everything'"),
    Case("report: output under a file", ["report", "--out", "{world}/afile/report"], 2, "--out: cannot create"),
    # momentum study, and the study's options on other commands
    Case("momentum-study: unknown part", ["momentum-study", "--only", "everything", "--out", "{tmp}/m"], 2,
         "--only: unknown part 'everything'"),
    Case("compare: unknown grid key", ["compare", "--task", "palindrome", "--cells", "momentum-rnn", "--grid", "eta=1",
                                       "--out", "{tmp}/c"], 2, "grid: unknown key 'eta'"),
    Case("probe: unknown init", ["probe", "--cells", "lstm", "--init", "glorot", "--out", "{tmp}/p"], 2,
         "init must be one of pytorch, paper"),
    # anything
    Case("unknown command", ["translate"], 2, "No such command 'translate'"),
    Case("unknown option", ["corpora", "--colour"], 2, "No such option"),
]


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file under ``roots`` with a hash of its bytes."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


def _command_paths(typer_app: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every command as the words that invoke it: ("train",), ("reference", "numpy-rnn")."""
    paths = {(*prefix, c.name or c.callback.__name__.replace("_", "-"))
             for c in typer_app.registered_commands if c.callback}
    for group in typer_app.registered_groups:
        paths |= _command_paths(group.typer_instance, (*prefix, group.name))
    return paths


def _as_covered(path: tuple[str, ...]) -> str:
    """A command's first word once a case runs it by all its words, else all its words (which no
    case's first argument can match, so the coverage test names the command that lacks a case)."""
    return path[0] if any(tuple(c.args[: len(path)]) == path for c in CASES) else " ".join(path)


COMMANDS = {_as_covered(path) for path in _command_paths(app)}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(
    case: Case, world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fill(text: str) -> str:
        return text.replace("{world}", str(world)).replace("{tmp}", str(tmp_path))

    monkeypatch.chdir(tmp_path)
    env = {"CHARGEN_CHECKPOINTS": str(tmp_path / "checkpoints"), **{k: v and fill(v) for k, v in case.env.items()}}
    if case.patch is not None:
        case.patch(monkeypatch)
    before = snapshot(world, tmp_path)
    result = runner.invoke(app, [fill(a) for a in case.args], env=env)
    monkeypatch.undo()
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == case.code, result.output
    assert len(lines) == 1 or case.trains, result.stderr
    assert lines[-1].startswith("error: ") and case.says in lines[-1]
    assert not [line for line in lines[:-1] if "error" in line]
    assert "Traceback" not in result.output and isinstance(result.exception, (SystemExit, type(None)))
    assert result.stdout == ""
    assert snapshot(world, tmp_path) == before
    assert not (world / "pwned").exists()


def test_the_table_covers_every_command() -> None:
    assert COMMANDS - {c.args[0] for c in CASES} == set()
