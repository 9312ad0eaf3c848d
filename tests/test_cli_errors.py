"""Every command fed bad input: exit 1 or 2, one line on stderr, no traceback, nothing written or changed."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from chargen import checkpoint
from chargen.cli import app, output
from chargen.data import corpora
from chargen.models import ModelConfig, build_model
from chargen.paths import PROJECT_ROOT
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
    return make_world(tmp_path_factory.mktemp("world"))


def make_world(root: Path) -> Path:
    """Inputs for the table: corpus files good and bad, a trained LM and damaged copies, a classifier."""
    texts = root / "texts"
    texts.mkdir()
    (texts / "tale.txt").write_text(TALE, encoding="utf-8")
    (texts / "empty.txt").write_bytes(b"")
    (texts / "binary.bin").write_bytes(bytes(range(256)) * 8)
    (texts / "latin1.txt").write_bytes("Märchen über Müller\n".encode("latin-1") * 20)
    (texts / "short.txt").write_text(TALE[:400], encoding="utf-8")  # > 100 characters, < one batch of 64 x 31
    (texts / "tiny.txt").write_text("too short\n", encoding="utf-8")
    (texts / "zwoelf.txt").write_text("Zwölf Brüder und die Müllerin tanzten. " * 10, encoding="utf-8")
    (root / "afile").write_text("a file, not a directory\n")
    (root / "notes.md").write_text("my notes\n")
    (texts / "long-name.tsv").write_text("N" * 200_000 + "\tEnglish\n", encoding="utf-8")
    (texts / "late-bad-byte.txt").write_bytes(TALE.encode()[:100_001] + b"\xff\n" if len(TALE) > 100_001 else
                                              (TALE * 40).encode()[:100_001] + b"\xff\n")

    models = root / "models"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    task = build_task("lm", seed=0, corpus=str(texts / "tale.txt"), seq_len=8, batch_size=4)
    fit(task, ModelConfig(cell="lstm", hidden_size=16, num_layers=1, embed_dim=8),
        TrainConfig(steps=2, eval_every=2, device="cpu"), models / "lm")
    torch.set_num_threads(threads)
    for name in ("evil", "evil-trainer", "truncated", "newer", "vocab", "locked", "lost-corpus"):
        shutil.copytree(models / "lm", models / name, ignore=shutil.ignore_patterns(checkpoint.BEST))
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
    # calibrated classifiers (issue 13): an n-gram file outside the run directory, and one that is not there
    calibration = {"ngram_weight": 0.3, "prior_weight": 0.0, "temperature": 2.0, "log_prior": [-0.7, -0.7]}
    for name, ngram_file in (("clf-ngram-escape", "../lm/config.json"), ("clf-ngram-missing", "ngram.json")):
        shutil.copytree(models / "clf", models / name)
        edit_config(models / name, lambda c, f=ngram_file: {**c, "calibration": {**calibration, "ngram_file": f}})
    torch.save({"w": RunsCode(os.system, f"touch {marker}")}, models / "clf-evil" / checkpoint.WEIGHTS)

    mirror = root / "mirror"
    mirror.mkdir()
    (mirror / "grimm.txt").write_text("not the Brothers Grimm\n")
    build_hostile(root)
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
    code: int | tuple[int, ...]  # the exit code, or the codes it may be
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
    Case("unknown cell", [*TRAIN, "--cell", "no-such-cell"], 2, "unknown cell 'no-such-cell'"),
    Case("unknown engine", [*TRAIN, "--engine", "warp"], 2, "Invalid value for '--engine'"),
    Case("torch-cell engine for a momentum cell", [*TRAIN, "--cell", "momentum-rnn", "--engine", "torch-cell"], 2,
         "--engine torch-cell loops nn.RNNCell/nn.LSTMCell/nn.GRUCell, which --cell momentum-rnn has no twin of"),
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
    Case("sample: --beam without a prime", ["sample", "--model", LM, "--beam", "3"], 2, "--beam needs a --prime"),
    Case("sample: --beam 0", ["sample", "--model", LM, "--prime", "The", "--beam", "0"], 2, "--beam must be at least 1"),
    Case("sample: --stop with an unknown escape", ["sample", "--model", LM, "--stop", "\\q"], 2, "unknown escape"),
    Case("sample: --stop the model cannot write", ["sample", "--model", LM, "--stop", "€"], 1,
         "outside the model's vocabulary: '€'"),
    Case("score: missing file", ["score", "{world}/texts/missing.txt", "--model", LM], 2, "cannot read"),
    Case("score: not UTF-8", ["score", "{world}/texts/latin1.txt", "--model", LM], 1, "not UTF-8 text"),
    Case("score: characters outside the vocabulary", ["score", "{world}/texts/tiny.txt", "--model", LM], 1,
         "'\\n' (--skip-unknown drops them"),
    Case("score: a classifier", ["score", "{world}/texts/tale.txt", "--model", "{world}/models/clf"], 1,
         "this is a 'classify' model"),
    Case("fine-tune: a missing model", ["train", "--corpus", "{world}/texts/tale.txt", "--init-from", "{tmp}/none"], 1,
         "no model"),
    Case("fine-tune: a new architecture", [*TRAIN, "--init-from", LM], 2, "keeps the architecture"),
    Case("fine-tune: and resume", ["train", "--resume", LM, "--init-from", LM], 2, "give one of them"),
    Case("fine-tune: text the vocabulary lacks", ["train", "--corpus", "{world}/texts/zwoelf.txt", "--init-from", LM,
                                                   "--quiet"], 1, "outside the model's vocabulary: 'Z' 'ö'"),
    Case("early stop of 0", [*TRAIN, "--early-stop", "0"], 2, "--early-stop must be at least 1"),
    Case("evaluate: missing model", ["evaluate", "--model", "{tmp}/no-model"], 1, "no model"),
    Case("evaluate: weights that run code", ["evaluate", "--model", "{world}/models/evil"], 1, "model.pt: refused"),
    Case("evaluate: newer format", ["evaluate", "--model", "{world}/models/newer"], 1, "newer than this chargen"),
    Case("evaluate: its corpus is gone", ["evaluate", "--model", "{world}/models/lost-corpus"], 1,
         "gone.txt, which is no longer there (moved or deleted); point at it with --corpus"),
    Case("evaluate: --corpus is another text", ["evaluate", "--model", "{world}/models/lost-corpus", "--corpus",
                                                "{world}/texts/short.txt"], 1, "is not the text this model was trained on"),
    Case("evaluate: --device cuda without CUDA", ["evaluate", "--model", LM, "--device", "cuda"], 2, "no CUDA device"),
    Case("evaluate: --names for a language model", ["evaluate", "--model", LM, "--names", "{world}/texts/tale.txt"], 2,
         "--names is for classifiers"),
    Case("evaluate: --names file missing", ["evaluate", "--model", "{world}/models/clf", "--names", "{tmp}/no.tsv"],
         1, "no.tsv: no such file"),
    Case("evaluate: --names a directory", ["evaluate", "--model", "{world}/models/clf", "--names", "{world}/texts"],
         1, "is a directory"),
    Case("evaluate: --names not UTF-8", ["evaluate", "--model", "{world}/models/clf", "--names",
                                         "{world}/texts/latin1.txt"], 1, "not UTF-8 text"),
    Case("evaluate: --names without tabs", ["evaluate", "--model", "{world}/models/clf", "--names",
                                            "{world}/texts/tale.txt"], 1, "tale.txt:1: no tab"),
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
    Case("classify: n-gram file outside the run", ["classify", "--model", "{world}/models/clf-ngram-escape", "Hinton"],
         1, "calibration.ngram_file must be a file name inside the run directory"),
    Case("classify: n-gram file missing", ["classify", "--model", "{world}/models/clf-ngram-missing", "Hinton"], 1,
         "ngram.json: missing"),
    # probe
    Case("probe: unknown cell", ["probe", "--cells", "rnn,no-such-cell", "--out", "{tmp}/probe"], 2, "unknown cell 'no-such-cell'"),
    Case("probe: lengths in words", ["probe", "--lengths", "short", "--out", "{tmp}/probe"], 2,
         "--lengths: cannot read 'short'"),
    Case("probe: length below 3", ["probe", "--lengths", "2:5", "--out", "{tmp}/probe"], 2,
         "palindrome lengths must be at least 3"),
    Case("probe: lengths backwards", ["probe", "--lengths", "30:5:5", "--out", "{tmp}/probe"], 2, "is past stop"),
    Case("probe: zero seeds", ["probe", "--seeds", "0", "--out", "{tmp}/probe"], 2, "--seeds must be at least 1"),
    Case("probe: zero steps", ["probe", "--steps", "0", "--out", "{tmp}/probe"], 2, "--steps must be positive"),
    Case("probe: zero hidden units", ["probe", "--hidden", "0", "--out", "{tmp}/probe"], 2,
         "--hidden must be positive"),
    Case("probe: output under a file", ["probe", "--lengths", "5", "--seeds", "1", "--out", "{world}/afile/probe"],
         2, "--out: cannot create"),
    # compare
    Case("compare: unknown task", ["compare", "--task", "translate", "--out", "{tmp}/cmp"], 2,
         "unknown task 'translate'"),
    Case("compare: unknown cell", ["compare", "--cells", "lstm,no-such-cell", "--out", "{tmp}/cmp"], 2, "unknown cell 'no-such-cell'"),
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
    Case("gradients: unknown cell", ["gradients", "--cells", "no-such-cell", "--out", "{tmp}/grad"], 2, "unknown cell 'no-such-cell'"),
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
    # inspect, serve, export
    Case("inspect: unit out of range", ["inspect", "--model", LM, "--text", "The", "--unit", "999"], 2, "unit must be in"),
    Case("inspect: --text and --file", ["inspect", "--model", LM, "--text", "a", "--file", "{world}/texts/tale.txt"], 2,
         "give --text or --file, not both"),
    Case("inspect: --html of another kind", ["inspect", "--model", LM, "--text", "The", "--html", "{tmp}/p.txt"], 2,
         "--html: cannot write .txt (p.txt); use .html or .htm"),
    Case("inspect: unknown feature", ["inspect", "--model", LM, "--text", "The", "--find", "rhyme"], 2, "unknown feature"),
    Case("inspect: text outside the vocabulary", ["inspect", "--model", LM, "--text", "Zwölf €"], 1, "outside the model"),
    Case("inspect: heat map under a file", ["inspect", "--model", LM, "--text", "The", "--heatmap",
                                            "{world}/afile/g.png"], 2, "--heatmap: cannot write"),
    Case("inspect: a classifier", ["inspect", "--model", "{world}/models/clf", "--text", "a"], 1, "this is a 'classify' model"),
    Case("serve: bad port", ["serve", "--model", LM, "--port", "70000"], 2, "--port must be in"),
    Case("serve: missing model", ["serve", "--model", "{tmp}/no-model"], 1, "no model"),
    Case("export: unknown format", ["export", "--model", LM, "--format", "tflite", "--out", "{tmp}/m"], 2,
         "format must be one of torchscript, onnx"),
    Case("export: a classifier", ["export", "--model", "{world}/models/clf", "--out", "{tmp}/m"], 1,
         "this is a 'classify' model"),
    Case("export: output under a file", ["export", "--model", LM, "--out", "{world}/afile/m.pt"], 2, "out: cannot write"),
    # word2vec
    Case("word2vec: unknown corpus", ["word2vec", "--corpus", "atlantis", "--out", "{tmp}/w2v"], 1, "unknown corpus 'atlantis'"),
    Case("word2vec: unknown loss", ["word2vec", "--loss", "hierarchical", "--out", "{tmp}/w2v"], 2, "Invalid value for '--loss'"),
    Case("word2vec: zero negatives", ["word2vec", "--negatives", "0", "--out", "{tmp}/w2v"], 2, "negatives must be at least 1"),
    Case("word2vec: min count above every word", ["word2vec", "--corpus", "{world}/texts/tale.txt", "--min-count", "10000",
                                                  "--out", "{tmp}/w2v"], 2, "min_count=10000 leaves 0 word(s)"),
    Case("word2vec: output under a file", ["word2vec", "--corpus", "{world}/texts/tale.txt", "--min-count", "1",
                                           "--out", "{world}/afile/w2v"], 2, "--out: cannot create"),
    Case("word2vec: similar without a model", ["word2vec", "--similar", "king"], 2, "--similar and --model go together"),
    Case("word2vec: no such model", ["word2vec", "--similar", "king", "--model", "{tmp}/nothing"], 1,
         "no such word2vec model folder"),
    Case("word2vec: a language model is not a word2vec model", ["word2vec", "--similar", "king", "--model",
                                                                "{world}/models/lm"], 1, "vocab.json: missing"),
    # momentum study, and the study's options on other commands
    Case("momentum-study: unknown part", ["momentum-study", "--only", "everything", "--out", "{tmp}/m"], 2,
         "--only: unknown part 'everything'"),
    Case("momentum-study: no CPU-minutes", ["momentum-study", "--only", "lstm-target", "--minutes", "0",
                                            "--out", "{tmp}/m"], 2, "--minutes must be a positive number"),
    Case("study: unknown study", ["study", "everything", "--out", "{tmp}/s"], 2, "unknown study 'everything'"),
    Case("study: unknown part", ["study", "baselines", "--only", "grimm-2m", "--out", "{tmp}/s"], 2,
         "--only: baselines has no part 'grimm-2m'"),
    Case("study: no CPU-minutes", ["study", "baselines", "--minutes", "-1", "--out", "{tmp}/s"], 2,
         "--minutes must be a positive number"),
    Case("compare: unknown grid key", ["compare", "--task", "palindrome", "--cells", "momentum-rnn", "--grid", "eta=1",
                                       "--out", "{tmp}/c"], 2, "grid: unknown key 'eta'"),
    Case("probe: unknown init", ["probe", "--cells", "lstm", "--init", "glorot", "--out", "{tmp}/p"], 2,
         "init must be one of pytorch, paper"),
    # anything
    Case("unknown command", ["translate"], 2, "No such command 'translate'"),
    Case("unknown option", ["corpora", "--colour"], 2, "No such option"),
]

# ---------------------------------------------------------------------------------------------
# Issue 15: crafted run directories, special files, absurd sizes, non-finite numbers, a failing
# stdout, options --resume would ignore. Each row names the failure it covers (F1...F15).

ATTACK = "attacker text\n"


def build_hostile(root: Path) -> None:
    """Crafted copies of the tiny LM and classifier for the HOSTILE rows (made once per module)."""
    models = root / "models"
    lm, clf = models / "lm", models / "clf"
    (root / "victim.txt").write_text("precious\n")
    (root / "secret.txt").write_text("secret\n")

    def copy(name: str, source: Path = lm) -> Path:
        # without best/: the crafted run itself is what sample and evaluate must refuse
        shutil.copytree(source, models / name, ignore=shutil.ignore_patterns(checkpoint.BEST))
        return models / name

    def journal(name: str, content: str, source: Path = lm) -> None:
        run = copy(name, source)
        (run / "payload").write_text(ATTACK)
        (run / checkpoint.JOURNAL).write_text(content)

    # F1: save journals that name files outside the run's fixed set
    journal("j-abs", json.dumps({str(root / "victim.txt"): "payload"}))
    journal("j-abs-clf", json.dumps({str(root / "victim.txt"): "payload"}), clf)
    journal("j-dotdot", json.dumps({"../../victim.txt": "payload"}))
    journal("j-steal", json.dumps({"stolen.txt": str(root / "secret.txt")}))
    journal("j-own-file", json.dumps({checkpoint.WEIGHTS: checkpoint.CONFIG}))
    journal("j-list", json.dumps([["model.pt", "payload"]]))
    run = copy("j-symlink")
    (run / ".model.pt.abcd1234.tmp").symlink_to(root / "victim.txt")
    (run / checkpoint.JOURNAL).write_text(json.dumps({checkpoint.WEIGHTS: ".model.pt.abcd1234.tmp"}))
    run = copy("j-fifo")
    os.mkfifo(run / checkpoint.JOURNAL)

    # F2: folders of the user's own files
    mine = root / "mine"
    mine.mkdir()
    (mine / "model.pt").write_text("MY MODEL\n")
    (mine / "metrics.jsonl").write_text('{"my": "log"}\n')
    (root / "mine-log").mkdir()
    (root / "mine-log" / "metrics.jsonl").write_text('{"my": "log"}\n')

    # F3: the corpus changed since training
    edit_config(copy("changed"), lambda c: {**c, "task_config": {**c["task_config"], "corpus_sha256": "0" * 64}})

    # F4, F15: weights that are not finite floats; F6: weight names that are not strings
    weights = checkpoint.load_tensors(lm / checkpoint.WEIGHTS)
    for name, change in (("w-nan", lambda t: t.fill_(float("nan"))), ("w-inf", lambda t: t.fill_(float("inf"))),
                         ("w-int", lambda t: t.long())):
        torch.save({k: change(v.clone()) for k, v in weights.items()}, copy(name) / checkpoint.WEIGHTS)
    torch.save({1: next(iter(weights.values()))}, copy("w-key") / checkpoint.WEIGHTS)

    # F6, F7, F14, F15: config.json values of the wrong type or size
    def model(**change: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return lambda c: {**c, "model": {**c["model"], **change}}

    def vocab(chars: Callable[[list[str]], Any], specials: Any = None) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return lambda c: {**c, "vocab": {"chars": chars(c["vocab"]["chars"]),
                                         "specials": c["vocab"]["specials"] if specials is None else specials}}

    edits: dict[str, Callable[[dict[str, Any]], Any]] = {
        "c-format-str": lambda c: {**c, "format_version": "1"},
        "c-format-bool": lambda c: {**c, "format_version": True},
        "c-format-zero": lambda c: {**c, "format_version": 0},
        "c-empty": lambda c: {},
        "c-task-number": lambda c: {**c, "task": 5},
        "c-no-task-config": lambda c: {k: v for k, v in c.items() if k != "task_config"},
        "c-no-train": lambda c: {k: v for k, v in c.items() if k != "train"},
        "c-seq-len": lambda c: {**c, "task_config": {**c["task_config"], "options": {
            **c["task_config"]["options"], "seq_len": "abc"}}},
        "c-step": lambda c: {**c, "step": -1},
        "c-model-null": lambda c: {**c, "model": None},
        "c-model-list": lambda c: {**c, "model": [1, 2]},
        "c-hidden-float": model(hidden_size=32.0),
        "c-hidden-str": model(hidden_size="256"),
        "c-hidden-nan": model(hidden_size=float("nan")),
        "c-hidden-huge": model(hidden_size=10**6),
        "c-layers-huge": model(num_layers=10**9),
        "c-embed-huge": model(embed_dim=10**7),
        "c-params-huge": model(hidden_size=16_384, num_layers=200),
        "c-dropout": model(dropout=2),
        "c-cell-options-list": model(cell_options=[1, 2]),
        "c-cell-options-str": model(cell_options={"mu": "fast"}),
        "c-model-unknown": model(colour="red"),
        "c-vocab-ints": vocab(lambda chars: list(range(len(chars)))),
        "c-vocab-long": vocab(lambda chars: [ch * 3 for ch in chars]),
        "c-vocab-null": vocab(lambda chars: None),
        "c-vocab-twice": vocab(lambda chars: [chars[0]] * len(chars)),
        "c-vocab-specials": vocab(lambda chars: chars[:-1], [1]),
    }
    for name, change in edits.items():
        edit_config(copy(name), change)
    edit_config(copy("c-languages", clf), lambda c: {**c, "task_config": {**c["task_config"], "languages": "AB"}})
    (copy("c-recursion") / checkpoint.CONFIG).write_text("[" * 100_000 + "]" * 100_000)

    # F8, F9: special files where a run directory's files belong
    for name, file, make in (
        ("s-config-zero", checkpoint.CONFIG, lambda p: p.symlink_to("/dev/zero")),
        ("s-config-fifo", checkpoint.CONFIG, os.mkfifo),
        ("s-config-dir", checkpoint.CONFIG, lambda p: p.mkdir()),
        ("s-weights-zero", checkpoint.WEIGHTS, lambda p: p.symlink_to("/dev/zero")),
        ("s-weights-fifo", checkpoint.WEIGHTS, os.mkfifo),
        ("s-weights-dir", checkpoint.WEIGHTS, lambda p: p.mkdir()),
        ("s-trainer-fifo", checkpoint.TRAINER, os.mkfifo),
        ("s-lock-dir", checkpoint.LOCK, lambda p: p.mkdir()),
        ("s-lock-fifo", checkpoint.LOCK, os.mkfifo),
    ):
        run = copy(name)
        (run / file).unlink(missing_ok=True)
        make(run / file)
    os.mkfifo(root / "texts" / "corpus.fifo")

    # F10: a trainer state with a world size that is not a number
    trainer = checkpoint.load_tensors(lm / checkpoint.TRAINER)
    torch.save({**trainer, "world_size": "abc"}, copy("t-world") / checkpoint.TRAINER)


def stdout_fails(error: int) -> Callable[[pytest.MonkeyPatch], None]:
    """The command's stdout fails on every write with ``error`` (ENOSPC: ``> /dev/full``)."""

    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        class Failing(io.StringIO):
            def write(self, text: str) -> int:
                raise OSError(error, os.strerror(error))

        wrap = output.GuardedStdout.__init__
        monkeypatch.setattr(output.GuardedStdout, "__init__", lambda self, stream: wrap(self, Failing()))

    return patch


def stdout_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """``>&-``: Python starts with ``sys.stdout = None``."""
    wrap = output.GuardedStdout.__init__
    monkeypatch.setattr(output.GuardedStdout, "__init__", lambda self, stream: wrap(self, output._Closed()))


M = "{world}/models/"
SHIPPED_GEN = str(PROJECT_ROOT / "checkpoints" / "surnames-gen")
RESUME = ["train", "--resume", M + "lm", "--steps", "3", "--quiet"]
JOURNAL = "this save journal names"
FULL = stdout_fails(errno.ENOSPC)

HOSTILE = [
    # F1: a journal renames only the run's own files
    Case("F1 sample: journal names an absolute path", ["sample", "--model", M + "j-abs", "--length", "5"], 1, JOURNAL),
    Case("F1 evaluate: journal names an absolute path", ["evaluate", "--model", M + "j-abs"], 1, JOURNAL),
    Case("F1 resume: journal names an absolute path", ["train", "--resume", M + "j-abs", "--steps", "3"], 1, JOURNAL),
    Case("F1 classify: journal names an absolute path", ["classify", "--model", M + "j-abs-clf", "Hinton"], 1,
         JOURNAL),
    Case("F1 sample: journal climbs out with ..", ["sample", "--model", M + "j-dotdot", "--length", "5"], 1, JOURNAL),
    Case("F1 sample: journal moves a file in from outside", ["sample", "--model", M + "j-steal"], 1, JOURNAL),
    Case("F1 sample: journal renames one checkpoint file onto another", ["sample", "--model", M + "j-own-file"], 1,
         JOURNAL),
    Case("F1 sample: journal that is a list", ["sample", "--model", M + "j-list"], 1, JOURNAL),
    Case("F1 sample: journal's temporary file is a symlink", ["sample", "--model", M + "j-symlink"], 1, JOURNAL),
    Case("F1 sample: journal is a FIFO", ["sample", "--model", M + "j-fifo"], 1, "a save journal is a regular file"),
    # F2: --out never takes over a folder of the user's files
    Case("F2 train: --out holds the user's model.pt", [*TRAIN, "--out", "{world}/mine"], 2,
         "is a folder with other files in it (metrics.jsonl, model.pt)"),
    Case("F2 train: --out holds the user's metrics.jsonl", [*TRAIN, "--lr", "10", "--out", "{world}/mine-log"], 2,
         "and not a chargen run"),
    Case("F2 train: --out is a file", [*TRAIN, "--out", "{world}/afile"], 2, "exists and is not a folder"),
    Case("F2 train: --out checked before the corpus is fetched", ["train", "--corpus", "grimm", "--out", LM], 2,
         "already holds a trained model", env=OFFLINE_EMPTY),
    # F3: resume on the same text only
    Case("F3 resume: the corpus changed", ["train", "--resume", M + "changed", "--steps", "3", "--quiet"], 1,
         "has changed since"),
    Case("F3 evaluate: the corpus changed", ["evaluate", "--model", M + "changed"], 1,
         "is not the text this model was trained on"),
    # F4: non-finite sampling
    Case("F4 sample: --temp nan", ["sample", "--model", LM, "--temp", "nan"], 2, "must be a finite number"),
    Case("F4 sample: --temp inf", ["sample", "--model", LM, "--temp", "inf"], 2, "must be a finite number"),
    Case("F4 sample: --temp -inf", ["sample", "--model", LM, "--temp", "-inf"], 2, "must be a finite number"),
    Case("F4 sample: names model --temp nan", ["sample", "--model", SHIPPED_GEN, "--lang", "German", "--temp", "nan"],
         2, "must be a finite number"),
    Case("F4 sample: NaN weights", ["sample", "--model", M + "w-nan"], 1, "holds NaN or infinite values"),
    Case("F4 sample: infinite weights", ["sample", "--model", M + "w-inf"], 1, "holds NaN or infinite values"),
    Case("F4 evaluate: NaN weights", ["evaluate", "--model", M + "w-nan"], 1, "holds NaN or infinite values"),
    # F5: seeds are 64-bit
    Case("F5 sample: seed past 64 bits", ["sample", "--model", LM, "--seed", "99999999999999999999999"], 2,
         "seed must be between 0 and"),
    Case("F5 sample: seed 2**64-1 with -n 2", ["sample", "--model", LM, "--seed", str(2**64 - 1), "-n", "2"], 2,
         "seed must be between 0 and"),
    Case("F5 sample: negative seed", ["sample", "--model", LM, "--seed", "-1"], 2, "seed must be between 0 and"),
    Case("F5 train: seed past 64 bits", [*TRAIN, "--seed", str(2**64)], 2, "seed must be between 0 and"),
    Case("F5 train: negative seed", [*TRAIN, "--seed", "-3"], 2, "seed must be between 0 and"),
    # F6, F14: one schema for config.json
    Case("F6 sample: config nested 100,000 deep", ["sample", "--model", M + "c-recursion"], 1, "nested too deeply"),
    Case("F6 sample: no task_config", ["sample", "--model", M + "c-no-task-config"], 1, "task_config is missing"),
    Case("F6 evaluate: no task_config", ["evaluate", "--model", M + "c-no-task-config"], 1, "task_config is missing"),
    Case("F6 resume: no train settings", ["train", "--resume", M + "c-no-train"], 1, "train is missing"),
    Case("F6 sample: seq_len not a number", ["sample", "--model", M + "c-seq-len"], 1,
         "task_config.options.seq_len must be an integer"),
    Case("F6 sample: vocabulary of numbers", ["sample", "--model", M + "c-vocab-ints"], 1,
         "vocab.chars[0] must be a one-character string"),
    Case("F6 sample: no vocabulary list", ["sample", "--model", M + "c-vocab-null"], 1, "vocab.chars must be a list"),
    Case("F6 sample: a token listed twice", ["sample", "--model", M + "c-vocab-twice"], 1, "listed twice"),
    Case("F6 sample: specials that are numbers", ["sample", "--model", M + "c-vocab-specials"], 1,
         "vocab.specials must be a list of non-empty strings"),
    Case("F6 sample: weight names that are numbers", ["sample", "--model", M + "w-key"], 1,
         "weight names must be strings"),
    Case("F6 classify: languages not a list", ["classify", "--model", M + "c-languages", "Hinton"], 1,
         "task_config.languages must be a list of strings"),
    Case("F14 sample: format_version a string", ["sample", "--model", M + "c-format-str"], 1,
         "format_version must be a positive integer, got '1'"),
    Case("F14 sample: format_version true", ["sample", "--model", M + "c-format-bool"], 1,
         "format_version must be a positive integer"),
    Case("F14 sample: format_version 0", ["sample", "--model", M + "c-format-zero"], 1,
         "format_version must be a positive integer"),
    Case("F14 sample: an empty config", ["sample", "--model", M + "c-empty"], 1, "no format_version"),
    Case("F14 sample: task a number", ["sample", "--model", M + "c-task-number"], 1, "task must be a string"),
    Case("F14 sample: negative step", ["sample", "--model", M + "c-step"], 1, "step must be an integer"),
    Case("F14 sample: model null", ["sample", "--model", M + "c-model-null"], 1, "model must be an object"),
    Case("F14 sample: model a list", ["sample", "--model", M + "c-model-list"], 1, "model must be an object"),
    Case("F14 sample: hidden_size 32.0", ["sample", "--model", M + "c-hidden-float"], 1,
         "model.hidden_size must be an integer from 1 to 16,384, got 32.0"),
    Case("F14 sample: hidden_size '256'", ["sample", "--model", M + "c-hidden-str"], 1,
         "model.hidden_size must be an integer"),
    Case("F14 sample: hidden_size NaN", ["sample", "--model", M + "c-hidden-nan"], 1,
         "model.hidden_size must be an integer"),
    Case("F14 sample: dropout 2", ["sample", "--model", M + "c-dropout"], 1, "model.dropout must be a number in [0, 1)"),
    Case("F14 sample: cell_options a list", ["sample", "--model", M + "c-cell-options-list"], 1,
         "model.cell_options must be an object"),
    Case("F14 sample: cell option a string", ["sample", "--model", M + "c-cell-options-str"], 1,
         "model.cell_options.mu must be a finite number"),
    Case("F14 sample: unknown model setting", ["sample", "--model", M + "c-model-unknown"], 1,
         "unknown model settings: colour"),
    Case("F14 train: --clip nan", [*TRAIN, "--clip", "nan"], 2, "--clip must be 0 (off) or positive"),
    Case("F14 train: --lr inf", [*TRAIN, "--lr", "inf"], 2, "lr must be a finite number"),
    Case("F14 train: --lr nan", [*TRAIN, "--lr", "nan"], 2, "--lr must be positive"),
    Case("F14 train: --dropout nan", [*TRAIN, "--dropout", "nan"], 2, "--dropout must be in [0, 1)"),
    Case("F14 train: --mu nan", [*TRAIN, "--cell", "momentum-rnn", "--mu", "nan"], 2,
         "--mu (momentum) must be in [0, 1), got nan"),  # mu is a ModelConfig field (issue 14)
    Case("F14 train: --s inf", [*TRAIN, "--cell", "momentum-rnn", "--s", "inf"], 2, "s must be a number in"),
    Case("F14 train: --forget-bias on an RNN", [*TRAIN, "--cell", "rnn", "--forget-bias", "1"], 2,
         "--forget-bias: cell 'rnn' has no forget gate"),
    Case("F14 resume: .lock is a directory", ["train", "--resume", M + "s-lock-dir", "--steps", "3"], 1,
         "is a directory, not a chargen lock file"),
    Case("F14 resume: .lock is a FIFO", ["train", "--resume", M + "s-lock-fifo", "--steps", "3"], 1,
         "not a chargen lock file"),
    # F7: absurd sizes stop before the allocator
    Case("F7 sample: hidden_size 10**6", ["sample", "--model", M + "c-hidden-huge"], 1,
         "model.hidden_size must be an integer from 1 to 16,384"),
    Case("F7 sample: num_layers 10**9", ["sample", "--model", M + "c-layers-huge"], 1,
         "model.num_layers must be an integer from 1 to 256"),
    Case("F7 sample: embed_dim 10**7", ["sample", "--model", M + "c-embed-huge"], 1, "model.embed_dim must be"),
    Case("F7 sample: 54 billion parameters", ["sample", "--model", M + "c-params-huge"], 1,
         "the most chargen builds is"),
    Case("F7 train: --hidden 100000", [*TRAIN, "--hidden", "100000"], 2, "--hidden must be an integer from 1"),
    Case("F7 train: --layers 100000", [*TRAIN, "--layers", "100000"], 2, "--layers must be an integer from 1"),
    Case("F7 train: --embed 10**6", [*TRAIN, "--embed", str(10**6)], 2, "--embed must be an integer from 1"),
    Case("F7 train: --hidden 16384 --layers 200", [*TRAIN, "--hidden", "16384", "--layers", "200"], 2,
         "the most chargen builds is"),
    Case("F7 train: palindrome --length 10**6", ["train", "--task", "palindrome", "--length", str(10**6), "--steps",
                                                 "2", "--out", "{tmp}/p"], 2, "length must be at most 100,000"),
    Case("F7 train: palindrome batch of 10**6", ["train", "--task", "palindrome", "--length", "1000", "--batch-size",
                                                 str(10**6), "--steps", "2", "--out", "{tmp}/p"], 2,
         "batch_size x length"),
    # F8, F9: special files are refused at once, never read to the end or waited on
    Case("F8 train: --corpus /dev/zero", ["train", "--corpus", "/dev/zero", "--steps", "1"], 1,
         "is a character device, not a regular file"),
    Case("F8 train: --corpus /dev/null", ["train", "--corpus", "/dev/null", "--steps", "1"], 1,
         "is a character device"),
    Case("F9 train: --corpus a FIFO", ["train", "--corpus", "{world}/texts/corpus.fifo", "--steps", "1"], 1,
         "is a FIFO (named pipe), not a regular file"),
    Case("F8 sample: config.json is /dev/zero", ["sample", "--model", M + "s-config-zero"], 1,
         "config.json: cannot read it (is a character device"),
    Case("F9 sample: config.json is a FIFO", ["sample", "--model", M + "s-config-fifo"], 1, "is a FIFO"),
    Case("F8 sample: config.json is a directory", ["sample", "--model", M + "s-config-dir"], 1, "is a directory"),
    Case("F8 sample: model.pt is /dev/zero", ["sample", "--model", M + "s-weights-zero"], 1,
         "model.pt: cannot read it (is a character device"),
    Case("F9 sample: model.pt is a FIFO", ["sample", "--model", M + "s-weights-fifo"], 1,
         "model.pt: cannot read it (is a FIFO"),
    Case("F9 evaluate: model.pt is a FIFO", ["evaluate", "--model", M + "s-weights-fifo"], 1, "is a FIFO"),
    Case("F9 classify: model.pt is /dev/zero", ["classify", "--model", M + "s-weights-zero", "Hinton"], 1,
         "needs a 'classify' model"),
    Case("F8 sample: model.pt is a directory", ["sample", "--model", M + "s-weights-dir"], 1, "is a directory"),
    Case("F9 resume: trainer.pt is a FIFO", ["train", "--resume", M + "s-trainer-fifo", "--steps", "3"], 1,
         "trainer.pt: cannot read it (is a FIFO"),
    # F10
    Case("F10 resume: world_size not a number", ["train", "--resume", M + "t-world", "--steps", "3"], 1,
         "world_size 'abc' is not a number"),
    # F11: an unusable --out is one line before any work
    Case("F11 gradients: --out is a file", ["gradients", "--cells", "rnn", "--length", "5", "--seeds", "1",
                                            "--hidden", "4", "--out", "{world}/afile"], 2, "is a file, not a folder"),
    Case("F11 gradients: --out cannot be created", ["gradients", "--cells", "rnn", "--length", "5", "--seeds", "1",
                                                    "--hidden", "4", "--out", "/proc/chargen-g"], 2,
         "--out: cannot create"),
    Case("F11 compare: --out is a file", ["compare", "--task", "palindrome", "--length", "5", "--cells", "rnn",
                                          "--seeds", "1", "--steps", "2", "--out", "{world}/afile"], 2,
         "is a file, not a folder"),
    Case("F11 probe: --out is a file", ["probe", "--lengths", "5", "--seeds", "1", "--out", "{world}/afile"], 2,
         "is a file, not a folder"),
    # F12: a failing stdout is one line and exit 1 in every command that writes it
    Case("F12 sample: stdout full", ["sample", "--model", LM + "/best", "--length", "20"], 1, "No space left on device",
         patch=FULL),
    Case("F12 sample: stdout closed", ["sample", "--model", LM + "/best", "--length", "20"], 1, "stdout is closed",
         patch=stdout_closed),
    Case("F12 sample: stdout I/O error", ["sample", "--model", LM + "/best", "--length", "20"], 1, "Input/output error",
         patch=stdout_fails(errno.EIO)),
    Case("F12 classify: stdout full", ["classify", "--model", M + "clf", "--json", "Smith"], 1,
         "No space left on device", patch=FULL),
    Case("F12 classify: stdout closed", ["classify", "--model", M + "clf", "Smith"], 1, "stdout is closed",
         patch=stdout_closed),
    Case("F12 corpora: stdout full", ["corpora", "--json"], 1, "No space left on device", patch=FULL),
    Case("F12 corpora: stdout closed", ["corpora"], 1, "stdout is closed", patch=stdout_closed),
    Case("F12 evaluate: stdout full", ["evaluate", "--model", LM + "/best", "--json"], 1, "No space left on device",
         patch=FULL),
    # F13: --resume refuses the options it would ignore, naming them
    *[Case(f"F13 resume with {flag}", [*RESUME, flag, value], 2, f"so {flag} would be ignored")
      for flag, value in (("--hidden", "64"), ("--cell", "rnn"), ("--lr", "0.5"),
                          ("--out", "{tmp}/elsewhere"), ("--seed", "3"), ("--task", "palindrome"),
                          ("--batch-size", "8"), ("--device", "cpu"), ("--layers", "3"))],
    Case("F13 resume with another corpus", [*RESUME, "--corpus", "{world}/texts/short.txt"], 1,
         "short.txt' is not the text"),
    Case("F13 resume with several", [*RESUME, "--hidden", "64", "--deterministic"], 2,
         "so --hidden, --deterministic would be ignored"),
    # F15: accepted silently before
    Case("F15 sample: tokens of three characters", ["sample", "--model", M + "c-vocab-long"], 1,
         "vocab.chars[0] must be a one-character string"),
    Case("F15 sample: int64 weights", ["sample", "--model", M + "w-int"], 1, "is torch.int64"),
    Case("F15 train: --time of 330 digits", [*TRAIN, "--time", "1" + "0" * 330], 2, "--time must be at most"),
    Case("F15 train: --time inf", [*TRAIN, "--time", "inf"], 2, "--time: cannot read 'inf'"),
]


# Issue 26: outputs that replaced what they landed on, values accepted and then ignored, absurd thread
# counts, and messages that garbled a flag. (Every path option against every hostile path: test_hostile_paths.)
THREADS = "--threads must be at most"
SHIPPED = str(PROJECT_ROOT / "checkpoints")
ISSUE_26 = [
    Case("26 export: over the run's own weights", ["export", "--model", LM, "--check", "The", "--out", M + "lm/model.pt",
                                                   "--force"], 2, "is a file of the run directory"),
    Case("26 export: over the shipped model", ["export", "--model", LM, "--check", "The", "--out",
                                               SHIPPED + "/grimm/model.pt", "--force"], 2, "inside the model grimm"),
    Case("26 export: over a user's file", ["export", "--model", LM, "--check", "The", "--out", "{world}/victim.txt"], 2,
         "victim.txt already exists; pass --force"),
    Case("26 inspect: --html over the weights", ["inspect", "--model", LM, "--text", "The", "--unit", "3", "--html",
                                                 M + "lm/model.pt"], 2, "is a file of the run directory"),
    Case("26 inspect: --heatmap over a user's file", ["inspect", "--model", LM, "--text", "The", "--heatmap",
                                                      "{world}/victim.txt", "--force"], 2, "use .png, .svg or .pdf"),
    Case("26 word2vec: --out into a language model's run", ["word2vec", "--corpus", "{world}/texts/tale.txt",
                                                            "--min-count", "1", "--out", M + "lm"], 2,
         "is a run directory"),
    Case("26 word2vec: --sample nan", ["word2vec", "--sample", "nan", "--out", "{tmp}/w"], 2,
         "--sample must be 0 (off) or a positive threshold, got nan"),
    Case("26 word2vec: --sample -1", ["word2vec", "--sample", "-1", "--out", "{tmp}/w"], 2, "got -1.0"),
    Case("26 word2vec: --lr inf", ["word2vec", "--lr", "inf", "--out", "{tmp}/w"], 2, "--lr must be a finite"),
    Case("26 momentum-study: --seeds -3", ["momentum-study", "--seeds", "-3", "--out", "{tmp}/m"], 2,
         "--seeds must be at least 1, got -3"),
    Case("26 momentum-study: --steps 0", ["momentum-study", "--steps", "0", "--out", "{tmp}/m"], 2,
         "--steps must be at least 1, got 0"),
    Case("26 momentum-study: --minutes nan", ["momentum-study", "--minutes", "nan", "--out", "{tmp}/m"], 2,
         "--minutes must be a positive number, got nan"),
    Case("26 momentum-study: --markdown over a user's notes", ["momentum-study", "--only", "none", "--markdown",
                                                               "{world}/notes.md"], 2, "notes.md already exists"),
    Case("26 compare: --grid mu with no momentum cell", ["compare", "--task", "palindrome", "--length", "5", "--cells",
                                                         "lstm", "--seeds", "1", "--steps", "1", "--grid", "mu=0.3",
                                                         "--out", "{tmp}/c"], 2, "--grid mu=... sweeps momentum cells"),
    Case("26 compare: --grid forget-bias with no LSTM", ["compare", "--task", "palindrome", "--length", "5", "--cells",
                                                         "rnn", "--seeds", "1", "--steps", "1", "--grid",
                                                         "forget-bias=1", "--out", "{tmp}/c"], 2,
         "--grid forget-bias=... sweeps LSTM-family cells"),
    Case("26 evaluate: a 200,000-character name", ["evaluate", "--model", SHIPPED + "/surnames", "--names",
                                                   "{world}/texts/long-name.tsv"], 1,
         "a name of 200,000 characters"),
    Case("26 score: an invalid byte at its file offset", ["score", "{world}/texts/late-bad-byte.txt", "--model", LM], 1,
         "byte 0xff at offset 100,001"),
    Case("26 score: a FIFO", ["score", "{world}/texts/corpus.fifo", "--model", LM], 2, "is a FIFO"),
    Case("26 score: /dev/zero", ["score", "/dev/zero", "--model", LM], 2, "is a character device"),
    Case("26 inspect: --file a FIFO", ["inspect", "--model", LM, "--file", "{world}/texts/corpus.fifo"], 2, "is a FIFO"),
    Case("26 inspect: --text empty", ["inspect", "--model", LM, "--text", ""], 2, "--text is empty"),
    Case("26 train: the refusal names --resume and --out", [*TRAIN, "--out", M + "lm"], 2,
         "already holds a trained model; continue it with --resume or pick another --out"),
    Case("26 train: a corpus too short names --batch-size", ["train", "--corpus", "{world}/texts/short.txt", "--steps",
                                                             "1"], 1, "lower --batch-size (now 64) or --seq-len (now 30)"),
    Case("26 train: --out with markup", [*TRAIN, "--out", "{world}/afile/run[/]"], 2, "afile/run[/]"),
    Case("26 classify: a name in another script", ["classify", "Иванов", "--model", M + "clf"], 1,
         "reads names in the Latin alphabet"),
    *[Case(f"26 {words[0]}: --threads 100000", [*words, "--threads", "100000"], 2, THREADS) for words in (
        ["sample", "--model", LM], ["classify", "Smith", "--model", M + "clf"], ["score", "{world}/texts/tale.txt",
                                                                                  "--model", LM],
        ["evaluate", "--model", LM], ["inspect", "--model", LM, "--text", "The"],
        ["export", "--model", LM, "--out", "{tmp}/m.pt"], ["word2vec", "--out", "{tmp}/w"],
        ["gradients", "--cells", "rnn", "--out", "{tmp}/g"], [*TRAIN],
        ["compare", "--task", "palindrome", "--cells", "rnn", "--out", "{tmp}/c"],
        ["probe", "--lengths", "5", "--out", "{tmp}/p"], ["momentum-study", "--out", "{tmp}/m"],
        ["reference", "numpy-rnn", "--out", "{tmp}/r"])],
]


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file under ``roots``: a regular file's hash, or the kind of anything else (a FIFO must stay a
    FIFO, a link a link); a file no one may read is listed by name."""
    def state(p: Path) -> str:
        mode = p.lstat().st_mode
        if stat.S_ISREG(mode):
            return hashlib.sha256(p.read_bytes()).hexdigest() if os.access(p, os.R_OK) else "unreadable"
        return stat.filemode(mode)

    return {str(p): state(p) for root in roots for p in sorted(root.rglob("*")) if not p.is_dir()}


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
    return path[0] if any(tuple(c.args[: len(path)]) == path for c in CASES + HOSTILE + ISSUE_26) else " ".join(path)


COMMANDS = {_as_covered(path) for path in _command_paths(app)}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES + HOSTILE + ISSUE_26])
def test_bad_input_is_one_line_and_changes_nothing(
    case: Case, world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_case(case, world, tmp_path, monkeypatch)


def run_case(case: Case, world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run ``case`` and check the rules every bad input must keep; returns its error line."""
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
    assert result.exit_code in ((case.code,) if isinstance(case.code, int) else case.code), result.output
    assert len(lines) == 1 or case.trains, result.stderr
    assert lines[-1].startswith("error: ") and case.says in lines[-1], lines[-1]
    assert not [line for line in lines[:-1] if "error" in line]
    assert "Traceback" not in result.output and isinstance(result.exception, (SystemExit, type(None)))
    assert result.stdout == ""
    assert snapshot(world, tmp_path) == before
    assert not (world / "pwned").exists()
    return lines[-1]


def test_the_table_covers_every_command() -> None:
    assert COMMANDS - {c.args[0] for c in CASES + HOSTILE + ISSUE_26} == set()


def test_the_table_holds_every_hostile_case_of_issue_15() -> None:
    ids = [c.id for c in CASES + HOSTILE + ISSUE_26]
    assert len(ids) == len(set(ids)) and len(ids) >= 150


# ---------------------------------------------------------------------------------------------
# The model families of issue 23 (GRU, transformer, n-gram): what a user can get wrong with each.

F = "{world}/families/"


@pytest.fixture(scope="module")
def family_world(world: Path) -> Path:
    """A tiny transformer, a 3-gram and a GRU on the tale, with damaged copies, under ``world/families``."""
    from chargen.tasks.lm_ngram import train_ngram

    runs, tale = world / "families", str(world / "texts" / "tale.txt")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    task = build_task("lm", seed=0, corpus=tale, seq_len=8, batch_size=4)
    fit(task, ModelConfig(family="transformer", n_layer=1, n_head=2, d_model=8, context=8),
        TrainConfig(steps=2, eval_every=2, device="cpu"), runs / "tf")
    fit(task, ModelConfig(cell="gru", hidden_size=8, num_layers=1, embed_dim=4),
        TrainConfig(steps=2, eval_every=2, device="cpu"), runs / "gru")
    torch.set_num_threads(threads)
    train_ngram(tale, runs / "ng", order=3)
    for source, name in (("tf", "tf-heads"), ("tf", "tf-truncated"), ("ng", "ng-truncated"), ("gru", "gru-truncated")):
        shutil.copytree(runs / source, runs / name, ignore=shutil.ignore_patterns(checkpoint.BEST))
    edit_config(runs / "tf-heads", lambda c: {**c, "model": {**c["model"], "n_head": 3}})
    for name in ("tf-truncated", "ng-truncated", "gru-truncated"):
        weights = runs / name / checkpoint.WEIGHTS
        weights.write_bytes(weights.read_bytes()[:300])
    return world


FAMILY_CASES = [
    Case("family: export an n-gram", ["export", "--model", F + "ng", "--out", "{tmp}/m.pt"], 1,
         "is a Kneser-Ney 3-gram, whose count tables score and sample read directly"),
    Case("family: inspect a transformer", ["inspect", "--model", F + "tf/best", "--text", "The"], 1,
         "this model is a transformer, which has none"),
    Case("family: inspect an n-gram", ["inspect", "--model", F + "ng", "--text", "The"], 1,
         "this model is a Kneser-Ney n-gram"),
    Case("family: resume an n-gram", ["train", "--resume", F + "ng", "--steps", "3"], 1,
         "counted in one pass rather than trained in steps, so there is nothing to resume"),
    Case("family: a transformer from a recurrent parent", ["train", "--init-from", F + "gru/best", "--family",
         "transformer", "--corpus", "{world}/texts/tale.txt", "--out", "{tmp}/ft"], 2,
         "gru/best' is a gru 1x8: a transformer model cannot start from its weights"),
    Case("family: a recurrent model from a transformer parent", ["train", "--init-from", F + "tf/best", "--family",
         "recurrent", "--corpus", "{world}/texts/tale.txt", "--out", "{tmp}/ft"], 2,
         "is a transformer 1x8, context 8: a recurrent model cannot start"),
    Case("family: config.json heads that do not divide d_model", ["sample", "--model", F + "tf-heads"], 1,
         "cannot rebuild the model (d_model 8 must be a multiple of n_head 3)"),
    *[Case(f"family: truncated {name}", ["sample", "--model", F + f"{name}-truncated", "--length", "5"], 1,
           "corrupt or truncated") for name in ("tf", "ng", "gru")],
    Case("family: --context past the schema", ["train", "--family", "transformer", "--context", "2000000",
         "--out", "{tmp}/t"], 2, "--context must be an integer from 1 to 1,000,000"),
    Case("family: --d-model too wide", ["train", "--family", "transformer", "--d-model", "100000", "--out", "{tmp}/t"],
         2, "--d-model must be an integer from 1 to 16,384"),
    Case("family: a transformer too large", ["train", "--family", "transformer", "--d-model", "16384", "--n-layer",
         "200", "--out", "{tmp}/t"], 2, "--d-model 16384, --n-layer 200, --context 128 make a model of about"),
    Case("family: --order 50", ["train", "--family", "ngram", "--corpus", "{world}/texts/tale.txt", "--order", "50", "--out", "{tmp}/n"], 2,
         "--order must be an integer from 1 to 10"),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in FAMILY_CASES])
def test_family_mistakes_are_one_line_and_change_nothing(
    case: Case, family_world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    test_bad_input_is_one_line_and_changes_nothing(case, family_world, tmp_path, monkeypatch)
