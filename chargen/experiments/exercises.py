"""The course-exercise results the report reads: hand LSTM, parameter counts, engines, sample observations.

``python -m chargen.experiments.exercises [--out DIR] [--only NAME ...]`` writes, under ``runs/exercises/`` by
default (the report's own are rewritten only when asked, with ``--out docs/report/results/exercises``):

- ``hand_lstm.json``: the hand-weighted LSTM exercise's table (a) and answers (b), (c);
- ``lstm_params.json``: ``4n(d + n + 1)`` against chargen's cell for a few shapes and batch sizes;
- ``engines.json``: loop vs torch-cell vs fused, largest differences forward and backward from copied
  weights, and the loss curves of a short training run from one seed under each engine;
- ``observations.json``: measured properties of the saved LM samples (``../lm-samples.json``):
  the share of generated words that are words of the training text, and the share of distinct words,
  during training and at each temperature.

The slower studies have their own entry points: ``chargen.experiments.tutorial.run_tutorial_study``
(``tutorial.json``), ``chargen.experiments.optimisers.run_optimisers`` (``optimisers.json``) and
``benchmarks/word2vec.py`` (``word2vec.json``).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from chargen.tracking import write_json
from chargen.cells import LSTMCell
from chargen.core import ENGINES, Recurrent
from chargen.data.corpora import load_corpus
from chargen.reference.hand_lstm import exercise_answers, exercise_table, lstm_parameter_count

SAMPLES = Path("docs/report/results/lm-samples.json")  # the report's saved LM samples (read, never written)
DEFAULT_OUT = Path("runs/exercises")  # a copied command never rewrites the report's committed results (--out for those)
_WORD_RE = re.compile(r"[a-z]+")


def hand_lstm_results() -> dict[str, Any]:
    return {"table": exercise_table(), "answers": exercise_answers()}


def lstm_param_results(shapes: tuple[tuple[int, int], ...] = ((3, 1), (80, 256), (256, 256)),
                       batches: tuple[int, ...] = (1, 64)) -> dict[str, Any]:
    rows = []
    for d, n in shapes:
        for m in batches:
            cell = LSTMCell(d, n)
            cell(torch.zeros(m, d))
            total = sum(p.numel() for p in cell.parameters())
            rows.append({"d": d, "n": n, "m": m, "formula_one_bias": lstm_parameter_count(d, n),
                         "chargen_cell": total, "chargen_minus_bias_hh": total - cell.bias_hh.numel(),
                         "torch_lstmcell": sum(p.numel() for p in nn.LSTMCell(d, n).parameters())})
    return {"rows": rows}


# the shapes engine_results measures (recorded in engines.json as "settings")
PARITY = {"layers": 2, "inputs": 8, "hidden": 32, "steps": 20, "batch": 4}  # forward/backward differences
CURVES = {"layers": 1, "hidden": 32, "steps": 20, "batch": 8}  # the short training runs (window, batch)


def engine_results(steps: int = 30) -> dict[str, Any]:
    """Largest |difference| to the loop engine, forward and backward (float32 and float64), and short curves."""
    out: dict[str, Any] = {"engines": list(ENGINES), "settings": {"parity": PARITY, "curves": CURVES},
                           "parity": [], "curves": {}}
    for cell in ("rnn", "lstm"):
        for dtype in (torch.float32, torch.float64):
            torch.manual_seed(0)
            core = Recurrent(cell, PARITY["inputs"], PARITY["hidden"], num_layers=PARITY["layers"]).to(dtype)
            x = torch.randn(PARITY["steps"], PARITY["batch"], PARITY["inputs"], dtype=dtype, requires_grad=True)
            wrt = [x, *core.parameters()]
            res = {}
            for engine in ENGINES:
                core.engine = engine
                y, _ = core(x)
                res[engine] = (y, torch.autograd.grad((y * torch.linspace(-1, 1, y.shape[-1], dtype=dtype)).sum(), wrt))
            for engine in ENGINES:
                if engine == "loop":
                    continue
                fwd = float((res[engine][0] - res["loop"][0]).detach().abs().max())
                bwd = max(float((a - b).abs().max()) for a, b in zip(res[engine][1], res["loop"][1]))
                # relative to each gradient's largest entry: float32 sums over 20 steps round at ~1e-7 of the scale
                rel = max(float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))
                          for a, b in zip(res[engine][1], res["loop"][1]))
                out["parity"].append({"cell": cell, "dtype": str(dtype).replace("torch.", ""), "engine": engine,
                                      "forward_max_abs": fwd, "backward_max_abs": bwd, "backward_max_rel": rel})
        out["curves"][cell] = {engine: _short_curve(cell, engine, steps) for engine in ENGINES}
    return out


def _short_curve(cell: str, engine: str, steps: int) -> list[float]:
    torch.manual_seed(0)
    text = "the quick brown fox jumps over the lazy dog and the cat sat on the mat " * 20
    chars = sorted(set(text))
    data = torch.tensor([chars.index(c) for c in text])
    T, H = CURVES["steps"], CURVES["hidden"]
    core = Recurrent(cell, len(chars), H, num_layers=CURVES["layers"], engine=engine)
    head = nn.Linear(H, len(chars))
    opt = torch.optim.Adam([*core.parameters(), *head.parameters()], lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        starts = torch.randint(0, len(data) - T - 1, (CURVES["batch"],), generator=gen)
        xs = torch.stack([data[i:i + T] for i in starts]).T
        ys = torch.stack([data[i + 1:i + T + 1] for i in starts]).T
        outputs, _ = core(F.one_hot(xs, len(chars)).float())
        loss = F.cross_entropy(head(outputs).flatten(0, 1), ys.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower())


def text_stats(text: str, known: set[str]) -> dict[str, float]:
    """Share of words found in ``known`` and share of distinct words (low when the text loops)."""
    words = _words(text)
    if not words:
        return {"words": 0, "real_word_share": 0.0, "distinct_share": 0.0}
    return {"words": len(words), "real_word_share": sum(w in known for w in words) / len(words),
            "distinct_share": len(set(words)) / len(words)}


def observation_results(samples_path: Path) -> dict[str, Any]:
    doc = json.loads(samples_path.read_text())
    known = set(_words(load_corpus(doc["model"]).text))
    return {
        "source": str(samples_path.name), "corpus": doc["model"], "model_command": doc.get("command"),
        "during_training": [{"step": s["step"], "loss": s["loss"], "text": s["text"], **text_stats(s["text"], known)}
                            for s in doc["during_training"]],
        "temperatures": [{"temperature": s["temperature"], "text": s["text"], **text_stats(s["text"], known)}
                         for s in doc["temperatures"]],
    }


PARTS = ("hand_lstm", "lstm_params", "engines", "observations")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the course-exercise results the report reads.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--only", nargs="*", choices=PARTS, default=list(PARTS))
    parser.add_argument("--samples", type=Path, default=SAMPLES, help="the LM samples the observations read")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    makers = {
        "hand_lstm": hand_lstm_results,
        "lstm_params": lstm_param_results,
        "engines": engine_results,
        "observations": lambda: observation_results(args.samples),
    }
    for name in args.only:
        write_json(args.out / f"{name}.json", makers[name]())
        print(f"wrote {args.out / f'{name}.json'}")


if __name__ == "__main__":
    main()
