"""The PyTorch name tutorials' own from-scratch networks (i2h/i2o on cat(x, h)), beside an Elman RNN and an LSTM.

The classification tutorial's ``RNN``::

    combined = cat(x_t, h_{t-1});  h_t = i2h(combined);  y_t = log_softmax(i2o(combined))

— a **linear** hidden update (no tanh), the output read from the last character's step. The
generation tutorial's adds the category (the language, one-hot) to every step and a second layer::

    combined = cat(category, x_t, h_{t-1});  h_t = i2h(combined);  o = i2o(combined)
    y_t = log_softmax(dropout(o2o(cat(h_t, o))))

trained by teacher forcing: the input is ``<bos> name``, the target ``name <eos>``, the loss the
summed negative log-likelihood of each next character. ``run_tutorial_study`` trains these two
beside chargen's Elman RNN and LSTM cells (one layer, the same one-hot inputs, head, optimiser,
batches and budget) on chargen's persisted names split, at each hidden size asked, and scores
them on its test names: accuracy for the classifier, nats per character for the generator.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from chargen.core import Recurrent
from chargen.data.names import FOLD_ALPHABET, NamesData, load_names
from chargen.experiments.study import STUDY_FIELDS, Part, RunContext, Spec, Study, run_documented

MODELS = ("tutorial", "rnn", "lstm")
TASKS = ("classify", "generate")
RESULTS_JSON = "tutorial.json"
RESULT_VERSION = 1  # recorded in tutorial.json (chargen report --check): bump it when what a run measures changes


class TutorialClassifier(nn.Module):
    """The classification tutorial's RNN, batched: ``x (T, N, D)`` one-hot, ``lengths (N,)`` -> log-probs ``(N, C)``."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.i2h = nn.Linear(input_size + hidden_size, hidden_size)
        self.i2o = nn.Linear(input_size + hidden_size, output_size)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        h = x.new_zeros(x.shape[1], self.hidden_size)
        outputs = []
        for x_t in x.unbind(0):
            combined = torch.cat([x_t, h], 1)
            outputs.append(self.i2o(combined))  # from the same combined vector as h_t, as the tutorial does
            h = self.i2h(combined)  # linear: no squashing
        out = torch.stack(outputs)  # (T, N, C)
        last = out[lengths - 1, torch.arange(x.shape[1])]  # the output after each name's last character
        return F.log_softmax(last, dim=-1)


class TutorialGenerator(nn.Module):
    """The generation tutorial's RNN, batched: ``(category (N, L), x (T, N, D))`` -> log-probs ``(T, N, V)``."""

    def __init__(self, num_categories: int, input_size: int, hidden_size: int, output_size: int,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        width = num_categories + input_size + hidden_size
        self.i2h = nn.Linear(width, hidden_size)
        self.i2o = nn.Linear(width, output_size)
        self.o2o = nn.Linear(hidden_size + output_size, output_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, category: Tensor, x: Tensor) -> Tensor:
        h = x.new_zeros(x.shape[1], self.hidden_size)
        outputs = []
        for x_t in x.unbind(0):
            combined = torch.cat([category, x_t, h], 1)
            h = self.i2h(combined)
            o = self.i2o(combined)
            outputs.append(self.o2o(torch.cat([h, o], 1)))
        return F.log_softmax(self.dropout(torch.stack(outputs)), dim=-1)


class CellClassifier(nn.Module):
    """One layer of chargen's cell over the one-hot characters, a linear head on the last step's h."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__()
        self.rnn = Recurrent(cell, input_size, hidden_size, num_layers=1)
        self.head = nn.Linear(hidden_size, output_size)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        out, _ = self.rnn(x)  # (T, N, H)
        return F.log_softmax(self.head(out[lengths - 1, torch.arange(x.shape[1])]), dim=-1)


class CellGenerator(nn.Module):
    """One layer of chargen's cell over ``cat(category, x_t)``, a linear head on every step."""

    def __init__(self, cell: str, num_categories: int, input_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__()
        self.rnn = Recurrent(cell, num_categories + input_size, hidden_size, num_layers=1)
        self.head = nn.Linear(hidden_size, output_size)

    def forward(self, category: Tensor, x: Tensor) -> Tensor:
        cat = category.unsqueeze(0).expand(x.shape[0], -1, -1)
        out, _ = self.rnn(torch.cat([cat, x], 2))
        return F.log_softmax(self.head(out), dim=-1)


# -- data ----------------------------------------------------------------------------------------
CHARS = sorted(FOLD_ALPHABET)
BOS, EOS = len(CHARS), len(CHARS) + 1  # generator ids: the characters, then <bos>, <eos>


def _encode(name: str) -> list[int]:
    return [CHARS.index(ch) for ch in name]


def _one_hot_batch(seqs: Sequence[Sequence[int]], width: int) -> tuple[Tensor, Tensor]:
    """``(T, N, width)`` one-hot (zeros past a sequence's end) and the lengths ``(N,)``."""
    lengths = torch.tensor([len(s) for s in seqs])
    x = torch.zeros(int(lengths.max()), len(seqs), width)
    for n, s in enumerate(seqs):
        x[torch.arange(len(s)), n, torch.tensor(s)] = 1.0
    return x, lengths


def _generator_batch(names: Sequence[str], langs: Sequence[int], num_langs: int) -> tuple[Tensor, Tensor, Tensor]:
    seqs = [_encode(n) for n in names]
    x, _ = _one_hot_batch([[BOS, *s] for s in seqs], len(CHARS) + 2)
    steps = x.shape[0]
    y = torch.full((steps, len(seqs)), -100, dtype=torch.long)
    for i, s in enumerate(seqs):
        y[: len(s) + 1, i] = torch.tensor([*s, EOS])
    return F.one_hot(torch.tensor(list(langs)), num_langs).float(), x, y


# -- the study -----------------------------------------------------------------------------------
@dataclass
class TutorialSettings:
    """One budget for every model: Adam, a fixed number of minibatch steps, one seed."""

    hidden_sizes: tuple[int, ...] = (128, 256)
    models: tuple[str, ...] = MODELS
    tasks: tuple[str, ...] = TASKS
    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3
    clip: float = 5.0
    seed: int = 0


PART = "tutorial"


def _build(task: str, model: str, hidden: int, num_langs: int) -> nn.Module:
    if task == "classify":
        if model == "tutorial":
            return TutorialClassifier(len(CHARS), hidden, num_langs)
        return CellClassifier(model, len(CHARS), hidden, num_langs)
    if model == "tutorial":
        return TutorialGenerator(num_langs, len(CHARS) + 2, hidden, len(CHARS) + 2)
    return CellGenerator(model, num_langs, len(CHARS) + 2, hidden, len(CHARS) + 2)


def _train_one(task: str, model_name: str, hidden: int, data: NamesData, s: TutorialSettings) -> dict[str, Any]:
    torch.manual_seed(s.seed)
    num_langs = len(data.languages)
    model = _build(task, model_name, hidden, num_langs)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    train_pairs = data.pairs("train")
    gen = torch.Generator().manual_seed(s.seed)
    start = time.perf_counter()
    curve = []
    for step in range(1, s.steps + 1):
        idx = torch.randint(len(train_pairs), (s.batch_size,), generator=gen).tolist()
        names = [train_pairs[i][0] for i in idx]
        langs = [train_pairs[i][1] for i in idx]
        if task == "classify":
            x, lengths = _one_hot_batch([_encode(n) for n in names], len(CHARS))
            loss = F.nll_loss(model(x, lengths), torch.tensor(langs))
        else:
            cat, x, y = _generator_batch(names, langs, num_langs)
            loss = F.nll_loss(model(cat, x).flatten(0, 1), y.flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), s.clip)  # the linear update can blow up without it
        opt.step()
        if step % max(1, s.steps // 10) == 0 or step == s.steps:
            curve.append({"step": step, "loss": loss.item()})
    seconds = time.perf_counter() - start
    result = {"task": task, "model": model_name, "hidden": hidden, "steps": s.steps, "seconds": seconds,
              "parameters": sum(p.numel() for p in model.parameters()), "curve": curve}
    result.update(_evaluate(task, model, data))
    return result


@torch.no_grad()
def _evaluate(task: str, model: nn.Module, data: NamesData) -> dict[str, float]:
    model.eval()
    names = data.splits["test"]
    if task == "classify":
        targets = data.targets("test")
        correct = 0
        for lo in range(0, len(names), 1024):
            x, lengths = _one_hot_batch([_encode(n) for n in names[lo:lo + 1024]], len(CHARS))
            pred = model(x, lengths).argmax(1).tolist()
            correct += sum(p in t for p, t in zip(pred, targets[lo:lo + 1024]))
        return {"test_accuracy": correct / len(names)}
    pairs = data.pairs("test")
    total, count = 0.0, 0
    for lo in range(0, len(pairs), 1024):
        chunk = pairs[lo:lo + 1024]
        cat, x, y = _generator_batch([n for n, _ in chunk], [c for _, c in chunk], len(data.languages))
        total += float(F.nll_loss(model(cat, x).flatten(0, 1), y.flatten(), ignore_index=-100, reduction="sum"))
        count += int((y >= 0).sum())
    return {"test_nats_per_char": total / count}


def run_tutorial_study(
    settings: TutorialSettings | None = None,
    out: str | Path | None = None,
    *,
    data: NamesData | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    seeds: Sequence[int] | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Train every (task, model, hidden size) of ``settings`` at each of ``seeds`` (default: ``settings.seed``) on
    the one Study: each run is saved under ``out/tutorial/runs.jsonl`` as it ends, so an interrupted study resumes
    (more seeds run only the new ones), and ``out/tutorial.json`` is rewritten after each run."""
    s = settings or TutorialSettings()
    seed_list = list(seeds) if seeds is not None else [s.seed]
    names: list[NamesData] = [data] if data is not None else []

    def run(spec: Spec, ctx: RunContext) -> dict[str, Any]:
        if not names:  # the names split once, and only when some run is left to do
            names.append(load_names())
        p = spec.params
        return {**_train_one(p["task"], p["model"], p["hidden"], names[0], replace(s, seed=spec.seed)),
                "seed": spec.seed}

    shared = {k: v for k, v in json.loads(json.dumps(asdict(s))).items()
              if k not in ("hidden_sizes", "models", "tasks", "seed")}
    specs = [Spec(PART, {"task": task, "model": model, "hidden": hidden, **shared}, seed,
                  title=f"{task} {model} hidden {hidden}")
             for seed in seed_list for task in s.tasks for hidden in s.hidden_sizes for model in s.models]
    settings_doc = {**json.loads(json.dumps(asdict(s))), "seeds": seed_list}  # tuples as JSON lists

    def document(records: list[dict[str, Any]]) -> dict[str, Any]:
        return {"result_version": RESULT_VERSION, "settings": settings_doc, "runs": [{k: v for k, v in r.items() if k not in STUDY_FIELDS}
                                                   for r in records]}

    with ExitStack() as stack:
        folder = Path(out) if out is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        study = Study("tutorial", [Part(PART, specs)], run, folder, threads=threads)
        return run_documented(study, PART, document, Path(out) / RESULTS_JSON if out is not None else None,
                              progress)
