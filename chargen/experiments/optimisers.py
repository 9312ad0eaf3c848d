"""SGD, SGD with momentum, RMSProp and Adam on one small character LM, each at a few learning rates.

The optimiser exercise asks what momentum and adaptive learning rates buy over plain SGD. This runs
the same model (one LSTM layer over one-hot characters, a linear head), the same batches (one seed)
and the same step budget under each optimiser and learning rate of a small grid, and keeps the
validation loss curve of each, so the answer can point at numbers.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from chargen.core import Recurrent
from chargen.data.corpora import load_corpus
from chargen.experiments.study import Part, RunContext, Spec, Study, run_documented

RESULTS_JSON = "optimisers.json"
RESULT_VERSION = 1  # recorded in optimisers.json (chargen report --check): bump it when what a run measures changes
MOMENTUM = 0.9  # sgd-momentum's momentum
GRID: dict[str, tuple[float, ...]] = {
    "sgd": (0.3, 1.0, 3.0, 10.0, 30.0),
    "sgd-momentum": (0.03, 0.1, 0.3, 1.0, 3.0),
    "rmsprop": (1e-3, 3e-3, 1e-2, 3e-2),
    "adam": (1e-3, 3e-3, 1e-2, 3e-2, 0.1),
}


@dataclass
class OptimiserSettings:
    corpus: str = "grimm"
    chars: int = 200_000  # the first characters of the corpus; the last tenth is validation
    hidden_size: int = 64
    seq_len: int = 32
    batch_size: int = 32
    steps: int = 250
    eval_every: int = 50
    clip: float = 5.0
    seed: int = 0
    grid: dict[str, tuple[float, ...]] = field(default_factory=lambda: dict(GRID))


def make_optimiser(name: str, params: Any, lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "sgd-momentum":
        return torch.optim.SGD(params, lr=lr, momentum=MOMENTUM)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"unknown optimiser {name!r}; known: {', '.join(GRID)}")


class _CharLSTM(nn.Module):
    def __init__(self, vocab: int, hidden: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.rnn = Recurrent("lstm", vocab, hidden, num_layers=1)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (T, N) -> logits (T, N, V)
        out, _ = self.rnn(F.one_hot(ids, self.vocab).float())
        return self.head(out)


PART = "optimisers"
RUN_FIELDS = ("optimiser", "lr", "seed", "curve", "final_val_loss", "seconds")  # a run in optimisers.json


def _run(name: str, lr: float, data: torch.Tensor, vocab: int, s: OptimiserSettings) -> dict[str, Any]:
    torch.manual_seed(s.seed)
    model = _CharLSTM(vocab, s.hidden_size)
    opt = make_optimiser(name, model.parameters(), lr)
    split = int(len(data) * 0.9)
    train, val = data[:split], data[split:]
    gen = torch.Generator().manual_seed(s.seed)
    val_starts = torch.arange(0, len(val) - s.seq_len - 1, s.seq_len)[:256]
    val_x = torch.stack([val[i:i + s.seq_len] for i in val_starts]).T
    val_y = torch.stack([val[i + 1:i + s.seq_len + 1] for i in val_starts]).T

    def val_loss() -> float:
        with torch.no_grad():
            return F.cross_entropy(model(val_x).flatten(0, 1), val_y.flatten()).item()

    curve = [{"step": 0, "val_loss": val_loss()}]
    start = time.perf_counter()
    for step in range(1, s.steps + 1):
        starts = torch.randint(0, split - s.seq_len - 1, (s.batch_size,), generator=gen)
        x = torch.stack([train[i:i + s.seq_len] for i in starts]).T
        y = torch.stack([train[i + 1:i + s.seq_len + 1] for i in starts]).T
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), s.clip)
        opt.step()
        if step % s.eval_every == 0:
            v = val_loss()
            curve.append({"step": step, "val_loss": v if v == v else float("inf")})
    return {"optimiser": name, "lr": lr, "seed": s.seed, "curve": curve, "final_val_loss": curve[-1]["val_loss"],
            "seconds": time.perf_counter() - start}


def run_optimisers(
    settings: OptimiserSettings | None = None,
    out: str | Path | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    *,
    seeds: Sequence[int] | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Every (optimiser, lr) of the grid at each of ``seeds`` (default: ``settings.seed`` alone) on the one Study:
    each run is saved under ``out/optimisers/runs.jsonl`` as it ends (a wider grid or more seeds run only what is
    new) and ``out/optimisers.json`` is rewritten after each."""
    s = settings or OptimiserSettings()
    seed_list = list(seeds) if seeds is not None else [s.seed]
    loaded: dict[str, Any] = {}

    def run(spec: Spec, ctx: RunContext) -> dict[str, Any]:
        if not loaded:  # the corpus once, and only when some run is left to do
            text = load_corpus(s.corpus).text[: s.chars]
            chars = sorted(set(text))
            loaded.update(data=torch.tensor([chars.index(c) for c in text]), vocab=len(chars))
        p = spec.params
        return _run(p["optimiser"], p["lr"], loaded["data"], loaded["vocab"], replace(s, seed=spec.seed))

    shared = {k: v for k, v in asdict(s).items() if k not in ("grid", "seed")}
    specs = [Spec(PART, {"optimiser": name, "lr": lr, **shared}, seed, title=f"{name} lr={lr:g}")
             for seed in seed_list for name, lrs in s.grid.items() for lr in lrs]
    settings_doc = {**asdict(s), "grid": {k: list(v) for k, v in s.grid.items()}, "seeds": seed_list}

    def document(records: list[dict[str, Any]]) -> dict[str, Any]:
        return {"result_version": RESULT_VERSION, "settings": settings_doc, "runs": [{k: r[k] for k in RUN_FIELDS} for r in records]}

    with ExitStack() as stack:
        folder = Path(out) if out is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        study = Study("optimisers", [Part(PART, specs)], run, folder, threads=threads)
        return run_documented(study, PART, document, Path(out) / RESULTS_JSON if out is not None else None,
                              progress)


def best_per_optimiser(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Per optimiser, in grid order, the lr with the lowest mean final validation loss over seeds: its first run, with
    ``mean_final_val_loss`` and ``seeds`` (one seed: the run with the lowest final validation loss)."""
    by_lr: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in doc["runs"]:
        by_lr.setdefault((r["optimiser"], r["lr"]), []).append(r)
    best: dict[str, dict[str, Any]] = {}
    for (name, _), runs in by_lr.items():
        mean = sum(r["final_val_loss"] for r in runs) / len(runs)
        if name not in best or mean < best[name]["mean_final_val_loss"]:
            best[name] = {**runs[0], "mean_final_val_loss": mean, "seeds": [r.get("seed", 0) for r in runs]}
    return [best[name] for name in doc["settings"]["grid"] if name in best]
