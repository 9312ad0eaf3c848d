"""The numpy RNN against chargen's torch LSTM on one text reduced to 27 symbols: one split, one held-out slice, one JSON.

``run_reference(corpus, ...)`` loads the cleaned corpus, reduces it (``chargen.reference.text``),
holds out its last ``val_fraction`` (the LM task's rule: ``max(1, int(n * val_fraction))``
symbols, never trained on), trains the numpy RNN for some epochs and chargen's LSTM language model
(the ``lm`` task through ``chargen.train.fit``) for some steps on the rest, and scores both on the
same held-out positions: the held-out symbols cut into ``eval_streams`` contiguous streams, each
read from a zero state with the state carried, every symbol after a stream's first predicted from
all the stream's symbols before it. Accuracy is the fraction of those positions where the argmax
of the predicted distribution is the symbol that comes next.

The results file, ``reference.json`` (``format`` ``"chargen-reference/1"``)::

    format, command, created          "chargen-reference/1", the command line, local time
    environment                       chargen, python, numpy, torch versions, machine, cpu_count,
                                      openblas_num_threads (as exported), torch_threads (the LSTM's)
    data                              corpus, source, corpus_sha256 (raw file), reduced_sha256,
                                      reduction (the rule in words), symbols, chars, train_chars,
                                      val_chars, val_fraction, eval_streams, eval_positions,
                                      majority_symbol, majority_accuracy (always guessing the most
                                      frequent training symbol)
    numpy_rnn                         settings (RNNSettings), parameters, epochs: [{epoch, train_loss,
                                      val_loss, val_bpc, val_accuracy, lr, train_seconds,
                                      eval_seconds, chars_per_second}], final {val_loss, val_bpc,
                                      val_accuracy}, train_seconds, eval_seconds, seconds_per_epoch
    lstm                              null when skipped, else: model (ModelConfig), train
                                      (TrainConfig), seq_len, batch_size, parameters, steps,
                                      train_chars, epochs_seen, final {val_loss, val_bpc,
                                      val_accuracy} (on the positions above), val_curve [[step,
                                      val_loss]] (the task's own 8-stream evaluation while training),
                                      train_seconds (fit's clock), chars_per_second, wall_seconds,
                                      run_dir (its logs, relative to the results folder)
    wall_seconds                      the whole run

Losses are nats per symbol, bpc bits per symbol, times seconds. ``load_results`` reads it back.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from chargen import checkpoint
from chargen.data.corpora import ProgressFn, load_corpus
from chargen.errors import ChargenError, CorpusError, UsageError
from chargen.experiments.harness import RunRelay, check_out_dir, copy_logs, environment, torch_threads
from chargen.experiments.study import Part, RunContext, Spec, Study
from chargen.reference.numpy_rnn import (
    EpochRecord,
    RNNSettings,
    as_streams,
    fit_rnn,
)
from chargen.reference.text import REDUCTION_RULE, SYMBOLS, encode, reduce_text
from chargen.tasks.lm import LanguageModelTask, LMData
from chargen.tasks.resolve import resolve_model, resolve_train
from chargen.tracking import read_json, read_jsonl, write_json
from chargen.train import fit
from chargen.vocab import Vocab

FORMAT = "chargen-reference/1"
RESULTS_JSON = "reference.json"
LSTM_DIR = "lstm"
PART = "reference"  # the Study's part: out_dir/reference/runs.jsonl, one record per model
EVAL_STREAMS = 16
MIN_SYMBOLS = 100  # as the LM task asks of a corpus
LSTM_LOGS = ("config.json", "metrics.jsonl", "samples.jsonl", "loss.png")

ReferenceProgress = Callable[[dict[str, Any]], None]
"""``progress(info)``: the numpy RNN's events (``"chunk"``, ``"epoch"``, see ``fit_rnn``), then
``"lstm_start"`` (steps), ``"lstm_step"`` (step, steps, loss, rate) and ``"lstm_end"`` (final)."""


@dataclass
class ReducedText:
    """A corpus reduced to the 27 symbols, as ids, with its split."""

    corpus: str
    source: str
    corpus_sha256: str
    reduced_sha256: str
    ids: np.ndarray  # (n,) symbol ids
    val_fraction: float

    @property
    def n_val(self) -> int:
        return max(1, int(len(self.ids) * self.val_fraction))  # LMData.load's rule

    @property
    def train(self) -> np.ndarray:
        return self.ids[: -self.n_val]

    @property
    def val(self) -> np.ndarray:
        return self.ids[-self.n_val :]

    def eval_streams(self, streams: int = EVAL_STREAMS) -> np.ndarray:
        """The held-out ids as ``(L, S)`` streams; fewer than ``streams`` when the slice is short."""
        return as_streams(self.val, max(1, min(streams, (self.n_val - 1) // 2)))


def load_reduced(corpus: str, val_fraction: float = 0.1, progress: ProgressFn | None = None) -> ReducedText:
    """A registered corpus or a UTF-8 file, cleaned (``load_corpus``), reduced to 27 symbols and encoded."""
    if not 0.0 < val_fraction < 0.5:
        raise UsageError(f"validation fraction must be in (0, 0.5), got {val_fraction}")
    text = load_corpus(corpus, progress=progress)
    reduced = reduce_text(text.text)
    if len(reduced) < MIN_SYMBOLS:
        raise CorpusError(
            f"corpus {corpus!r} has {len(reduced)} symbols after reduction to a-z and space; need at least {MIN_SYMBOLS}"
        )
    return ReducedText(
        corpus=text.name,
        source=text.source,
        corpus_sha256=text.sha256,
        reduced_sha256=hashlib.sha256(reduced.encode()).hexdigest(),
        ids=np.array(encode(reduced), dtype=np.int64),
        val_fraction=val_fraction,
    )


# -- results -------------------------------------------------------------------------------------


@dataclass
class RNNResult:
    """The numpy RNN's part of the results."""

    settings: dict[str, Any]
    parameters: int
    epochs: list[EpochRecord]
    final: dict[str, float]
    train_seconds: float
    eval_seconds: float
    seconds_per_epoch: float

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RNNResult:
        return cls(**{**data, "epochs": [EpochRecord(**e) for e in data["epochs"]]})


@dataclass
class LSTMResult:
    """The torch LSTM's part of the results."""

    model: dict[str, Any]
    train: dict[str, Any]
    seq_len: int
    batch_size: int
    parameters: int
    steps: int
    train_chars: int
    epochs_seen: float
    final: dict[str, float]
    val_curve: list[list[float]]
    train_seconds: float
    chars_per_second: float
    wall_seconds: float
    run_dir: str | None = None


@dataclass
class ReferenceResult:
    """Everything ``run_reference`` measured; ``to_dict``/``from_dict`` round-trip through the JSON file."""

    data: dict[str, Any]
    numpy_rnn: RNNResult
    lstm: LSTMResult | None
    wall_seconds: float
    command: str = ""
    created: str = ""
    environment: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        first = ("format", "command", "created", "environment")  # the file reads top-down: what, then numbers
        return {**{k: data.pop(k) for k in first}, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceResult:
        if data.get("format") != FORMAT:
            raise ChargenError(f"not a chargen reference result (format {data.get('format')!r}, expected {FORMAT!r})")
        lstm = data.get("lstm")
        return cls(**{**data, "numpy_rnn": RNNResult.from_dict(data["numpy_rnn"]),
                      "lstm": LSTMResult(**lstm) if lstm else None})


def save_results(result: ReferenceResult, out_dir: Path) -> Path:
    """``out_dir/reference.json``, written atomically (a temp file renamed over the target)."""
    return write_json(Path(out_dir) / RESULTS_JSON, result.to_dict())


def load_results(path: Path) -> ReferenceResult:
    """The results of ``run_reference``: the JSON file itself or the folder that holds it."""
    path = Path(path)
    return ReferenceResult.from_dict(read_json(path / RESULTS_JSON if path.is_dir() else path,
                                               "a chargen reference result"))


# -- the experiment ------------------------------------------------------------------------------


def run_reference(
    corpus: str = "origin",
    rnn: RNNSettings | None = None,
    *,
    lstm_steps: int = 1500,
    val_fraction: float = 0.1,
    eval_streams: int = EVAL_STREAMS,
    threads: int | None = None,
    out_dir: Path | None = None,
    command: str = "",
    progress: ReferenceProgress | None = None,
    fetch_progress: ProgressFn | None = None,
) -> ReferenceResult:
    """Train the numpy RNN (``rnn``) and, unless ``lstm_steps`` is 0, chargen's LSTM LM on the same reduced
    text; score both on the same held-out positions; save ``reference.json`` (and the LSTM's logs under
    ``lstm/``) in ``out_dir`` when one is given.

    Every setting, the corpus and the output folder are checked before any training. ``threads``
    sets torch's threads for the LSTM (numpy's BLAS threads are fixed when numpy loads:
    ``OPENBLAS_NUM_THREADS``).
    """
    started = time.perf_counter()
    rnn = rnn or RNNSettings()
    rnn.check()
    if lstm_steps < 0:
        raise UsageError(f"lstm_steps must be 0 (no LSTM) or positive, got {lstm_steps}", params="lstm_steps")
    if eval_streams < 1:
        raise UsageError(f"eval_streams must be positive, got {eval_streams}")
    if threads is not None and threads < 1:
        raise UsageError(f"threads must be positive, got {threads}", params="threads")
    check_out_dir(out_dir, RESULTS_JSON, RESULTS_JSON)
    data = load_reduced(corpus, val_fraction, fetch_progress)
    val_streams = data.eval_streams(eval_streams)  # (L, S)
    needed = rnn.batch_size * (rnn.seq_len + 1)
    if len(data.train) < needed:
        raise CorpusError(
            f"corpus {corpus!r} has {len(data.train):,} training symbols after reduction; one batch of "
            f"{rnn.batch_size} streams x {rnn.seq_len + 1} symbols needs {needed:,}"
        )
    lstm_task = _lstm_task(data, rnn.seed) if lstm_steps else None  # a text too short for it fails now
    if out_dir is not None:
        try:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"out_dir: cannot create {out_dir}: {e.strerror or e}", params="out_dir") from None

    def run(spec: Spec, ctx: RunContext) -> dict[str, Any]:
        if spec.params["model"] == "numpy-rnn":
            model, epochs = fit_rnn(data.train, val_streams, len(SYMBOLS), rnn, progress)
            last = epochs[-1]
            return {"numpy_rnn": asdict(RNNResult(
                settings=asdict(rnn),
                parameters=model.num_parameters(),
                epochs=epochs,
                final={"val_loss": last.val_loss, "val_bpc": last.val_bpc, "val_accuracy": last.val_accuracy},
                train_seconds=sum(e.train_seconds for e in epochs),
                eval_seconds=sum(e.eval_seconds for e in epochs),
                seconds_per_epoch=sum(e.train_seconds for e in epochs) / len(epochs),
            ))}
        return {"lstm": asdict(_train_lstm(lstm_task, val_streams, lstm_steps, rnn.seed, threads, out_dir, progress))}

    # The two models are the Study's two runs: under out_dir/reference/runs.jsonl, so that a stopped
    # comparison (the numpy RNN takes long) resumes with the model that had not finished.
    shared = {"corpus": corpus, "reduced_sha256": data.reduced_sha256, "val_fraction": val_fraction,
              "eval_streams": eval_streams, "rnn": asdict(rnn)}
    specs = [Spec(PART, {"model": "numpy-rnn", **shared}, rnn.seed, title="numpy RNN")]
    if lstm_task is not None:
        specs.append(Spec(PART, {"model": "lstm", "lstm_steps": lstm_steps, **shared}, rnn.seed, title="LSTM"))
    with ExitStack() as stack:
        folder = Path(out_dir) if out_dir is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        study = Study("reference", [Part(PART, specs)], run, folder,
                      threads=threads if threads is not None else torch.get_num_threads())
        study.run()
        records = {r["params"]["model"]: r for r in study.records(PART)}
    numpy_part = RNNResult.from_dict(records["numpy-rnn"]["numpy_rnn"])
    lstm_part = LSTMResult(**records["lstm"]["lstm"]) if "lstm" in records else None

    counts = np.bincount(data.train, minlength=len(SYMBOLS))
    majority = int(counts.argmax())
    result = ReferenceResult(
        data={
            "corpus": data.corpus,
            "source": data.source,
            "corpus_sha256": data.corpus_sha256,
            "reduced_sha256": data.reduced_sha256,
            "reduction": REDUCTION_RULE,
            "symbols": SYMBOLS,
            "chars": len(data.ids),
            "train_chars": len(data.train),
            "val_chars": data.n_val,
            "val_fraction": val_fraction,
            "eval_streams": val_streams.shape[1],
            "eval_positions": int(val_streams[1:].size),
            "majority_symbol": SYMBOLS[majority],
            "majority_accuracy": float((val_streams[1:] == majority).mean()),
        },
        numpy_rnn=numpy_part,
        lstm=lstm_part,
        wall_seconds=time.perf_counter() - started,
        command=command,
        created=time.strftime("%Y-%m-%d %H:%M:%S %z"),
        environment=environment(threads),
    )
    if out_dir is not None:
        save_results(result, Path(out_dir))
    return result


# -- the LSTM side -------------------------------------------------------------------------------


def _lstm_task(data: ReducedText, seed: int) -> Any:
    """The ``lm`` task over the reduced text's own split (its default batching)."""
    vocab = Vocab(SYMBOLS)  # ids as ``encode`` gives them: space, then a-z
    lm_data = LMData(f"{data.corpus}-27", data.reduced_sha256, vocab,
                     torch.from_numpy(data.train), torch.from_numpy(data.val))
    return LanguageModelTask(seed=seed, corpus=data.corpus, data=lm_data)


def _train_lstm(
    task: Any,
    val_streams: np.ndarray,
    steps: int,
    seed: int,
    threads: int | None,
    out_dir: Path | None,
    progress: ReferenceProgress | None,
) -> LSTMResult:
    """Train the task's default LSTM LM for ``steps`` in a scratch run directory, score it on
    ``val_streams``, and keep its logs (not its weights) under ``out_dir/lstm``."""
    started = time.perf_counter()
    train_cfg = resolve_train("lm", {"steps": steps, "eval_every": max(1, steps // 5),
                                     "sample_every": max(1, steps // 5), "seed": seed, "device": "cpu"})
    model_cfg = resolve_model("lm")

    def begin(info: dict[str, Any]) -> None:
        if progress:
            progress({"event": "lstm_start", "steps": steps, "parameters": int(info["parameters"])})

    def record(step: int, metrics: dict[str, float]) -> None:
        if progress:
            progress({"event": "lstm_step", "step": step, "steps": steps, "loss": metrics["loss"],
                      "rate": metrics["rate"]})

    relay = RunRelay(on_record=record, on_begin=begin)
    with torch_threads(threads or None):
        with tempfile.TemporaryDirectory(prefix="chargen-reference-") as scratch:
            run_dir = Path(scratch) / LSTM_DIR
            fitted = fit(task, model_cfg, train_cfg, run_dir, relay, command="reference numpy-rnn: lstm")
            model = checkpoint.load(run_dir, task="lm").model
            loss, accuracy = evaluate_torch_lm(model, val_streams)
            val_curve = [[r["step"], r["val_loss"]] for r in read_jsonl(run_dir / "metrics.jsonl")
                         if r.get("split") == "val"]
            kept = copy_logs(run_dir, Path(out_dir) / LSTM_DIR, LSTM_LOGS) if out_dir is not None else None
    cfg = task.cfg
    train_chars = fitted.step * cfg.batch_size * cfg.seq_len
    final = {"val_loss": loss, "val_bpc": loss / math.log(2), "val_accuracy": accuracy}
    if progress:
        progress({"event": "lstm_end", "final": final})
    return LSTMResult(
        model=task.model_config(model_cfg).to_dict(),
        train=asdict(train_cfg),
        seq_len=cfg.seq_len,
        batch_size=cfg.batch_size,
        parameters=relay.parameters,
        steps=fitted.step,
        train_chars=train_chars,
        epochs_seen=train_chars / task.data.train.numel(),
        final=final,
        val_curve=val_curve,
        train_seconds=fitted.elapsed,
        chars_per_second=train_chars / fitted.elapsed if fitted.elapsed > 0 else 0.0,
        wall_seconds=time.perf_counter() - started,
        run_dir=LSTM_DIR if kept is not None else None,
    )


def evaluate_torch_lm(model: Any, streams: np.ndarray, chunk: int = 256) -> tuple[float, float]:
    """Mean loss (nats) and next-symbol accuracy of a chargen ``CharLM`` over ``streams (L, S)``:
    the same positions, state handling and chunking as ``NumpyRNN.evaluate``."""
    was_training = model.training
    model.eval()
    data = torch.from_numpy(streams)
    total_loss, correct, state = 0.0, 0, None
    with torch.no_grad():
        for start in range(0, data.shape[0] - 1, chunk):
            x = data[start : start + chunk + 1]
            inputs, targets = x[:-1], x[1:]  # (T, S)
            logits, _, state = model(inputs, state)  # (T, S, V)
            total_loss += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum").item()
            correct += int((logits.argmax(2) == targets).sum())
    model.train(was_training)
    positions = streams.shape[1] * (streams.shape[0] - 1)
    return total_loss / positions, correct / positions
