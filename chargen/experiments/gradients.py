"""Gradient flow through time: how much of the loss at the last step reaches each earlier step, per cell.

For each cell, a character model as training starts it (embedding -> cell -> head, PyTorch's
init) reads a long sequence (``T = 200`` random characters, or a slice of a real text); the loss
is the cross-entropy of the LAST step's prediction only, and its gradient is measured at every
step ``t``:

- ``||dL/dh_t||``: the total derivative with respect to the hidden state ``h_t`` of the top
  layer (every path from ``h_t`` to the loss: through ``W_hh``, the LSTM cell state, ...);
- ``||dL/dx_t||``: the gradient reaching the input embedding of character ``t`` — what a
  training step can learn about a character ``T - 1 - t`` steps back. For the momentum cells
  this includes the direct path through the velocity ``v`` (weight ``mu^(T-1-t)``), which does
  not pass through ``h``.

The step loop is the cells' own ``project``/``step`` protocol (the reference engine), so the
per-step states are real tensors of the graph and ``retain_grad`` reads their gradients. Norms
are per sequence, averaged over a batch and over seeds; the computation runs in float64 because
the gradient of a plain RNN falls below float32's smallest number within 200 steps.
"""

from __future__ import annotations

import math
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from chargen.cells import resolve_cells
from chargen.data.corpora import load_corpus
from chargen.errors import ChargenError, UsageError
from chargen.experiments.harness import environment
from chargen.experiments.study import Event, Part, RunContext, Spec, Study
from chargen.models import ModelConfig, build_model
from chargen.plots import plot_gradient_flow
from chargen.runtime import resolve_seeds
from chargen.tasks.resolve import cell_options_for, check_cell_options
from chargen.tracking import read_json, result_fields, write_json
from chargen.vocab import Vocab

FORMAT = "chargen-gradients/1"
RESULTS_JSON = "gradients.json"
FIGURE_PNG = "gradients.png"
PART = "gradients"
DISTANCES = (0, 1, 10, 50, 100)  # steps back from the last one, reported in the summary

# progress(done cells, total cells, cell about to run or just finished)
GradientProgress = Callable[[int, int, str], None]


@dataclass
class GradientCurve:
    """One cell's curves, indexed by time step ``t = 0 .. T-1`` (the loss is read at ``T - 1``)."""

    cell: str
    hidden: list[float]  # mean over sequences and seeds of ||dL/dh_t||
    inputs: list[float]  # mean of ||dL/dx_t||
    hidden_per_seed: list[list[float]] = field(default_factory=list)
    inputs_per_seed: list[list[float]] = field(default_factory=list)
    parameters: int = 0

    def at_distance(self, curve: str, distance: int) -> float | None:
        """The norm ``distance`` steps before the last one (None when the sequence is shorter)."""
        values = getattr(self, curve)
        return values[-1 - distance] if 0 <= distance < len(values) else None

    def summary(self) -> dict[str, Any]:
        """Norms at a few distances from the last step, relative to the last step's, and the mean decay per step."""
        out: dict[str, Any] = {}
        for curve in ("hidden", "inputs"):
            values = getattr(self, curve)
            last = values[-1]
            out[curve] = {
                "last": last,
                "relative": {str(d): _ratio(self.at_distance(curve, d), last) for d in DISTANCES if d < len(values)},
                "first_over_last": _ratio(values[0], last),
                "decay_per_step": _decay(values),
            }
        return out


@dataclass
class GradientResult:
    """All cells' curves and the settings they were measured under; round-trips through JSON."""

    cells: list[str]
    length: int
    hidden_size: int
    num_layers: int
    embed_dim: int
    batch: int
    seeds: list[int]
    source: str  # "random characters (V=64)" or the corpus a slice was read from
    vocab_size: int
    cell_options: dict[str, Any]
    curves: dict[str, GradientCurve]
    dtype: str = "float64"
    environment: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["summary"] = {c: curve.summary() for c, curve in self.curves.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GradientResult:
        values = result_fields(cls, data, FORMAT, "gradient-flow result")
        values["curves"] = {c: GradientCurve(**v) for c, v in data["curves"].items()}
        return cls(**values)


# -- the measurement -----------------------------------------------------------------------------


def gradient_model(cell: str, vocab_size: int, *, embed_dim: int = 64, hidden_size: int = 128, num_layers: int = 1,
                   cell_options: dict[str, Any] | None = None, dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    """A character LM as training would start it (loop engine, PyTorch's init), in ``dtype``."""
    cfg = ModelConfig(kind="lm", vocab_size=vocab_size, embed_dim=embed_dim, cell=cell, hidden_size=hidden_size,
                      num_layers=num_layers, engine="loop", cell_options=dict(cell_options or {}))
    return build_model(cfg).to(dtype)


def hidden_gradient_norms(model: torch.nn.Module, idx: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """``||dL/dh_t||`` of the top layer and ``||dL/dx_t||`` of the embedded input, each ``(T, N)``.

    ``model`` is a ``CharLM``; ``idx (T, N)`` the characters and ``target (N,)`` the character
    after the last one; ``L`` is the cross-entropy of the last step's prediction summed over the
    sequences, so row ``n`` is sequence ``n``'s own gradient whatever the batch size. The layers
    run step by step (``cell.step``), so every ``h_t`` is a node of the graph.
    """
    encoder, head = model.encoder, model.head
    x = encoder.embed(idx)  # (T, N, E)
    x.retain_grad()
    embedded = x
    hs: list[Tensor] = []
    for layer in encoder.core.layers:
        xp = layer.project(x)  # (T, N, G*H)
        state = layer.init_state(idx.shape[1], device=xp.device, dtype=xp.dtype)
        hs = []
        for xp_t in xp.unbind(0):
            h, state = layer.step(xp_t, state)  # (N, H)
            h.retain_grad()
            hs.append(h)
        x = torch.stack(hs)  # (T, N, H): the next layer's input
    loss = F.cross_entropy(head(hs[-1]), target, reduction="sum")  # summed: each sequence's gradient is its own
    model.zero_grad(set_to_none=True)
    loss.backward()
    zeros = torch.zeros(idx.shape[1], dtype=x.dtype, device=x.device)
    hidden = torch.stack([h.grad.norm(dim=1) if h.grad is not None else zeros for h in hs])  # (T, N)
    inputs = embedded.grad.norm(dim=2)  # (T, N)
    return hidden.detach(), inputs.detach()


def gradient_flow(
    cells: Sequence[str] | str,
    *,
    length: int = 200,
    hidden_size: int = 128,
    num_layers: int = 1,
    embed_dim: int = 64,
    batch: int = 16,
    seeds: int | Sequence[int] = 3,
    vocab_size: int = 64,
    text: str | None = None,
    cell_options: dict[str, Any] | None = None,
    progress: GradientProgress | None = None,
) -> GradientResult:
    """Measure the gradient flow of each cell (see the module docstring).

    ``text``: a corpus name or a text file to read the sequences from (a random slice per
    sequence, the target the next character); None draws uniform random characters from
    ``vocab_size``. Seed ``k`` fixes the model's initial weights and the sequences, the same for
    every cell. ``cell_options`` (``mu``, ``s``...) go to the cells whose constructor takes them.
    """
    cells = resolve_cells(cells)
    seeds = resolve_seeds(seeds)
    for name, value in (("length", length), ("hidden_size", hidden_size), ("num_layers", num_layers),
                        ("embed_dim", embed_dim), ("batch", batch), ("vocab_size", vocab_size)):
        if value < 1:
            raise UsageError(f"{name} must be positive, got {value}", params=name)
    if length < 2:
        raise UsageError(f"length must be at least 2 steps, got {length}", params="length")
    ids, source, vocab = _source(text, vocab_size, length)
    options = dict(cell_options or {})
    for cell in cells:  # every cell's options checked before the first measurement
        check_cell_options(cell, cell_options_for(cell, options))

    def run(spec: Spec, ctx: RunContext) -> dict[str, Any]:
        cell, seed = spec.params["cell"], spec.seed
        torch.manual_seed(seed)
        model = gradient_model(cell, vocab, embed_dim=embed_dim, hidden_size=hidden_size, num_layers=num_layers,
                               cell_options=cell_options_for(cell, options))
        model.train()  # as training sees it (the phased LSTM's leak is on)
        idx, target = _sequences(ids, vocab, length, batch, seed)
        hidden, inputs = hidden_gradient_norms(model, idx, target)
        return {"hidden": hidden.mean(1).tolist(), "inputs": inputs.mean(1).tolist(),
                "parameters": sum(p.numel() for p in model.parameters())}

    def on_event(event: Event) -> None:  # progress per cell: before its first seed, after its last
        if progress is None or event.spec is None:
            return
        cell = event.spec.params["cell"]
        if event.kind == "start" and event.spec.seed == seeds[0]:
            progress(cells.index(cell), len(cells), cell)
        elif event.kind == "end" and event.spec.seed == seeds[-1]:
            progress(cells.index(cell) + 1, len(cells), cell)

    shared = {"length": length, "hidden_size": hidden_size, "num_layers": num_layers, "embed_dim": embed_dim,
              "batch": batch, "source": source, "vocab_size": vocab, "cell_options": options}
    specs = [Spec(PART, {"cell": cell, **shared}, seed, title=cell) for cell in cells for seed in seeds]
    with tempfile.TemporaryDirectory(prefix="chargen-gradients-") as scratch:  # seconds of float64 work: no resume
        study = Study("gradients", [Part(PART, specs)], run, Path(scratch), threads=torch.get_num_threads())
        study.run(progress=on_event)
        records = study.records(PART)
    curves: dict[str, GradientCurve] = {}
    for cell in cells:
        mine = [r for r in records if r["params"]["cell"] == cell]
        hidden_runs, input_runs = [r["hidden"] for r in mine], [r["inputs"] for r in mine]
        curves[cell] = GradientCurve(
            cell=cell,
            hidden=[statistics.fmean(v) for v in zip(*hidden_runs)],
            inputs=[statistics.fmean(v) for v in zip(*input_runs)],
            hidden_per_seed=hidden_runs,
            inputs_per_seed=input_runs,
            parameters=mine[-1]["parameters"],
        )
    return GradientResult(
        cells=cells, length=length, hidden_size=hidden_size, num_layers=num_layers, embed_dim=embed_dim,
        batch=batch, seeds=seeds, source=source, vocab_size=vocab, cell_options=options, curves=curves,
        environment=environment(),
    )


def save_gradients(result: GradientResult, out_dir: Path) -> tuple[Path, Path]:
    """``gradients.json`` and ``gradients.png`` in ``out_dir``."""
    path = write_json(Path(out_dir) / RESULTS_JSON, result.to_dict())
    return path, plot_gradient_flow(result, Path(out_dir) / FIGURE_PNG)


def load_gradients(path: Path) -> GradientResult:
    """A result saved by ``save_gradients``: the JSON file or its folder."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_JSON
    data = read_json(path, "a chargen gradient-flow result")
    try:
        return GradientResult.from_dict(data)
    except (KeyError, TypeError) as e:
        raise ChargenError(f"{path}: cannot read the gradient-flow result ({type(e).__name__}: {e})") from None


# -- helpers -------------------------------------------------------------------------------------


def _source(text: str | None, vocab_size: int, length: int) -> tuple[Tensor | None, str, int]:
    """The character ids to slice sequences from (None: random characters), a description, the vocabulary size."""
    if text is None:
        return None, f"uniform random characters (V={vocab_size})", vocab_size
    corpus = load_corpus(text)
    if len(corpus.text) < length + 2:
        raise UsageError(f"text {text!r} has {len(corpus.text)} characters; need more than length {length}",
                         params=("text", "length"))
    vocab = Vocab.from_text(corpus.text)
    ids = torch.tensor(vocab.encode(corpus.text), dtype=torch.long)
    return ids, f"slices of {corpus.name}", len(vocab)


def _sequences(ids: Tensor | None, vocab: int, length: int, batch: int, seed: int) -> tuple[Tensor, Tensor]:
    """``idx (T, N)`` and ``target (N,)``: random characters, or random slices of ``ids`` and their next character."""
    generator = torch.Generator().manual_seed(10_007 + seed)
    if ids is None:
        seq = torch.randint(vocab, (length + 1, batch), generator=generator)
    else:
        starts = torch.randint(ids.numel() - length - 1, (batch,), generator=generator)
        seq = torch.stack([ids[s : s + length + 1] for s in starts.tolist()], dim=1)
    return seq[:-1], seq[-1]


def _ratio(value: float | None, reference: float) -> float | None:
    if value is None or reference <= 0:
        return None
    return value / reference


def _decay(values: Sequence[float]) -> float | None:
    """The geometric mean factor per step from the last step back to the first (1 = no decay)."""
    if len(values) < 2 or values[-1] <= 0 or values[0] <= 0:
        return None
    return math.exp((math.log(values[0]) - math.log(values[-1])) / (len(values) - 1))


__all__ = [
    "GradientCurve", "GradientResult", "gradient_flow", "gradient_model", "hidden_gradient_norms",
    "load_gradients", "save_gradients", "DISTANCES",
]
