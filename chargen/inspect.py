"""Look inside a language model: per-step hidden states, cell states and gates, next-character guesses, unit finding.

``trace`` runs the model's own cells step by step (the loop engine's path, from the same weights)
and records, for every layer and every character, ``h`` and what the cell reads out beside it
(``Cell.readouts``: the LSTM's ``c`` and gates ``i, f, g, o``, the GRU's ``r, z, n``...), plus
the logits the model's head gives at each step. ``find_units`` ranks units by how well they
track a simple feature of the text (inside quotes, inside parentheses, position in the line), so
users can look for Karpathy's "quote cell" themselves. ``score_text`` is the server's scorer:
``chargen.score`` (the state carried from chunk to chunk) with the server's field names.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from chargen import score
from chargen.cells import CELLS
from chargen.errors import UsageError
from chargen.models import CharLM
from chargen.tasks.lm import LMData
from chargen.vocab import Vocab

# everything a registered cell can show: h, then each cell's readouts (c and the gates) in registry order
WHATS: tuple[str, ...] = ("h", *dict.fromkeys(r for kind in CELLS.values() for r in kind.readouts))
# the sigmoid gates, which saturate towards 0 or 1 (a tanh candidate such as the LSTM's g does not)
SIGMOID_GATES: tuple[str, ...] = tuple(dict.fromkeys(g for kind in CELLS.values() for g in kind.sigmoid_gates))


@dataclass
class Trace:
    """What a model computed on a text: one ``(L, T, H)`` tensor per recorded quantity, logits ``(T, V)``.

    ``logits[t]`` is the model's guess for the character after ``text[t]``.
    """

    text: str
    vocab: Vocab
    h: Tensor  # (L, T, H)
    logits: Tensor  # (T, V)
    c: Tensor | None = None  # (L, T, H) for cells with a cell state (the LSTM family)
    gates: dict[str, Tensor] = field(default_factory=dict)  # the cell's other readouts, e.g. "i" -> (L, T, H)

    @property
    def num_layers(self) -> int:
        return self.h.shape[0]

    @property
    def hidden_size(self) -> int:
        return self.h.shape[2]

    def available(self) -> tuple[str, ...]:
        """The quantities this trace holds, in ``WHATS`` order."""
        return tuple(w for w in WHATS if w == "h" or (w == "c" and self.c is not None) or w in self.gates)

    def values(self, what: str = "h", layer: int | None = None) -> Tensor:
        """``(T, H)`` of one quantity at one layer (1-based; ``None`` = the top layer)."""
        if what not in WHATS:
            raise UsageError(f"what must be one of {', '.join(WHATS)}, got {what!r}")
        if what not in self.available():
            raise UsageError(f"this model's cell has no {what!r}; it records {', '.join(self.available())}")
        index = self._layer_index(layer)
        full = self.h if what == "h" else self.c if what == "c" else self.gates[what]
        return full[index]

    def activation(self, unit: int, what: str = "h", layer: int | None = None) -> Tensor:
        """``(T,)``: one unit's value at every character."""
        if not 0 <= unit < self.hidden_size:
            raise UsageError(f"unit must be in [0, {self.hidden_size - 1}], got {unit}")
        return self.values(what, layer)[:, unit]

    def _layer_index(self, layer: int | None) -> int:
        if layer is None:
            return self.num_layers - 1
        if not 1 <= layer <= self.num_layers:
            raise UsageError(f"layer must be in [1, {self.num_layers}] (1 = the bottom layer), got {layer}")
        return layer - 1

    def probs(self) -> Tensor:
        """``(T, V)``: softmax of the logits."""
        return torch.softmax(self.logits.double(), dim=-1).to(self.logits.dtype)

    def top(self, k: int = 5) -> list[list[tuple[str, float]]]:
        """Per character, the ``k`` likeliest next tokens with their probabilities, likeliest first."""
        if k < 1:
            raise UsageError(f"top must be at least 1, got {k}")
        values, ids = self.probs().topk(min(k, self.logits.shape[1]), dim=-1)
        return [
            [(self.vocab.tokens[i], p) for i, p in zip(row_ids, row_vals)]
            for row_ids, row_vals in zip(ids.tolist(), values.tolist())
        ]

    def saturation(self, low: float = 0.1, high: float = 0.9) -> dict[str, Tensor]:
        """Per sigmoid gate, ``(L, 2, T)``: the fraction of units below ``low`` and above ``high`` per step."""
        out = {}
        for g in SIGMOID_GATES:
            if g in self.gates:
                v = self.gates[g]  # (L, T, H)
                out[g] = torch.stack([(v < low).float().mean(-1), (v > high).float().mean(-1)], dim=1)
        return out


@torch.no_grad()
def trace(model: CharLM, vocab: Vocab, text: str, *, condition: int | None = None) -> Trace:
    """Run ``text`` through the model one character at a time and record every layer's states and gates."""
    if not isinstance(model, CharLM):
        raise UsageError("inspect needs a language model (a model that predicts the next character)")
    if not text:
        raise UsageError("text is empty: give at least one character")
    device = next(model.parameters()).device
    ids = torch.tensor(vocab.encode(text), device=device).view(-1, 1)  # (T, 1)
    cond = None if condition is None else torch.tensor([condition], device=device)
    encoder = model.encoder
    x = encoder.embed(ids)  # (T, 1, E)
    if encoder.condition is not None:
        if cond is None:
            raise UsageError("this model is conditioned: pass a condition id")
        x = torch.cat([x, encoder.condition(cond).unsqueeze(0).expand(x.shape[0], -1, -1)], dim=2)
    core = encoder.core
    names = core.layers[0].readouts
    hs: list[Tensor] = []
    readouts: dict[str, list[Tensor]] = {name: [] for name in names}  # name -> per layer (T, H)
    for i, cell in enumerate(core.layers):
        if i > 0 and core.dropout > 0.0 and model.training:
            x = F.dropout(x, core.dropout, True)
        state = cell.init_state(1, device=device, dtype=x.dtype)
        xp = cell.project(x)  # (T, 1, G*H), hoisted as in the loop engine
        outs: list[Tensor] = []
        steps: dict[str, list[Tensor]] = {name: [] for name in names}
        for xp_t in xp.unbind(0):
            h, state, read = cell.step_readout(xp_t, state)
            outs.append(h)
            for name in names:
                steps[name].append(read[name])
        x = torch.stack(outs)  # (T, 1, H): the next layer's input
        hs.append(x[:, 0])
        for name in names:
            readouts[name].append(torch.stack(steps[name])[:, 0])
    logits = model.head(x)[:, 0]  # (T, V)
    stacked = {name: torch.stack(v).cpu() for name, v in readouts.items()}  # (L, T, H) each
    return Trace(
        text=text,
        vocab=vocab,
        h=torch.stack(hs).cpu(),
        logits=logits.float().cpu(),
        c=stacked.pop("c", None),
        gates=stacked,
    )


# --------------------------------------------------------------------------- features


def inside_quotes(text: str) -> list[float]:
    """1.0 inside quotes, the marks included, else 0.0: curly double “…”, curly single ‘…’ or straight "…".

    A ’ followed by a letter is an apostrophe (“don’t”), not a closing quote.
    """
    out, closer = [], None
    for i, ch in enumerate(text):
        if closer is None and ch in "“‘\"":
            closer = {"“": "”", "‘": "’", '"': '"'}[ch]
            out.append(1.0)
            continue
        out.append(1.0 if closer is not None else 0.0)
        if ch == closer and not (ch == "’" and i + 1 < len(text) and text[i + 1].isalpha()):
            closer = None
    return out


def inside_parens(text: str) -> list[float]:
    """1.0 inside (possibly nested) parentheses, the marks included, else 0.0."""
    out, depth = [], 0
    for ch in text:
        if ch == "(":
            depth += 1
        out.append(1.0 if depth > 0 else 0.0)
        if ch == ")" and depth > 0:
            depth -= 1
    return out


def line_position(text: str) -> list[float]:
    """The number of characters since the last newline (0 at the start of a line)."""
    out, pos = [], 0
    for ch in text:
        out.append(float(pos))
        pos = 0 if ch == "\n" else pos + 1
    return out


FEATURES: dict[str, Callable[[str], list[float]]] = {
    "quote": inside_quotes,
    "paren": inside_parens,
    "line-pos": line_position,
}


def feature_values(feature: str, text: str) -> Tensor:
    """``(T,)`` values of a registered feature on ``text``."""
    if feature not in FEATURES:
        raise UsageError(f"unknown feature {feature!r}; known features: {', '.join(FEATURES)}")
    return torch.tensor(FEATURES[feature](text), dtype=torch.float64)


def correlations(values: Tensor, target: Tensor) -> Tensor:
    """Pearson correlation of each column of ``values (T, H)`` with ``target (T,)``; 0 for a constant column."""
    v = values.double() - values.double().mean(0)
    t = target.double() - target.double().mean()
    denom = v.norm(dim=0) * t.norm()
    return torch.where(denom > 0, (v * t[:, None]).sum(0) / denom.clamp(min=1e-300), torch.zeros_like(denom))


def find_units(tr: Trace, feature: str, *, whats: tuple[str, ...] = ("h", "c"), top: int = 10) -> list[dict]:
    """The ``top`` units (over every layer and each of ``whats``) whose activation best tracks ``feature``.

    Ranked by absolute Pearson correlation over the traced text; a negative ``r`` is a unit that
    is low where the feature is high, which tracks it as well.
    """
    target = feature_values(feature, tr.text)
    if float(target.std()) == 0.0:
        raise UsageError(f"feature {feature!r} is constant on this text; give a passage where it varies")
    rows = []
    for what in whats:
        if what not in tr.available():
            continue
        for layer in range(1, tr.num_layers + 1):
            r = correlations(tr.values(what, layer), target)
            for unit, value in enumerate(r.tolist()):
                rows.append({"what": what, "layer": layer, "unit": unit, "r": value})
    rows.sort(key=lambda row: -abs(row["r"]))
    return rows[:top]


def validation_passage(loaded, chars: int = 2000, start: int = 0) -> str:
    """``chars`` characters of a language model's held-out validation text (never seen in training)."""
    if loaded.config.get("task") != "lm":
        raise UsageError("a validation passage needs a text language model (task 'lm')")
    if chars < 2:
        raise UsageError(f"chars must be at least 2, got {chars}")
    options = loaded.config["task_config"]["options"]
    data = LMData.load(options["corpus"], options["val_fraction"], vocab=loaded.vocab)
    return loaded.vocab.decode(data.val[start:start + chars].tolist())


# --------------------------------------------------------------------------- scoring


def score_text(model: CharLM, vocab: Vocab, text: str, *, chunk_size: int = 256) -> dict[str, float | int]:
    """Total log-probability (nats) of ``text[1:]`` given what precedes each character, state carried in chunks:
    ``chargen.score``'s scorer, in the server's field names.

    The first character has no context to be predicted from, so ``chars`` scored is ``len(text) - 1``.
    """
    if len(text) < 2:
        raise UsageError("text to score needs at least two characters (the first one is only context)", params="text")
    scored, _ = score.score_text(model, vocab, text, chunk_size=chunk_size)
    return {"chars": scored.chars, "total_log_prob": scored.log_prob, "nats_per_char": scored.nats_per_char,
            "bits_per_char": scored.bits_per_char}


# --------------------------------------------------------------------------- rendering


def activation_colour(value: float, scale: float) -> str:
    """Hex colour on a blue (negative) - white - red (positive) scale, ``value / scale`` clipped to [-1, 1]."""
    x = max(-1.0, min(1.0, value / scale)) if scale > 0 else 0.0
    fade = int(round(255 * (1 - abs(x))))
    return f"#ff{fade:02x}{fade:02x}" if x >= 0 else f"#{fade:02x}{fade:02x}ff"


def colour_scale(values: list[float], what: str) -> float:
    """The value shown fully saturated: 1 for bounded quantities, the largest magnitude for ``c``."""
    if what == "c":
        return max((abs(v) for v in values), default=1.0) or 1.0
    return 1.0


def html_page(tr: Trace, *, unit: int, what: str = "h", layer: int | None = None, top: int = 5,
              title: str = "chargen inspect") -> str:
    """A self-contained HTML page: the text coloured by one unit's activation, the top guesses on hover."""
    values = tr.activation(unit, what, layer).tolist()
    scale = colour_scale(values, what)
    guesses = tr.top(top)
    layer_n = layer or tr.num_layers
    spans = []
    for ch, v, g in zip(tr.text, values, guesses):
        tip = f"{what}[{layer_n}][{unit}] = {v:+.3f}\nnext:\n" + "\n".join(f"  {c!r} {p:.3f}" for c, p in g)
        shown = "↵\n" if ch == "\n" else html.escape(ch)
        spans.append(f'<span style="background:{activation_colour(v, scale)}" title="{html.escape(tip, quote=True)}">{shown}</span>')
    data = json.dumps({"unit": unit, "what": what, "layer": layer_n}, ensure_ascii=True)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 60em; }}
pre {{ font-family: ui-monospace, monospace; font-size: 15px; line-height: 1.5; white-space: pre-wrap; }}
pre span:hover {{ outline: 1px solid #333; }}
.legend span {{ padding: 0 0.6em; font-family: monospace; }}
</style></head>
<body data-inspect='{html.escape(data, quote=True)}'>
<h1>{html.escape(title)}</h1>
<p>Unit {unit} of layer {layer_n}, <b>{what}</b>; hover a character for its value and the model's top {top} next characters.</p>
<p class="legend"><span style="background:{activation_colour(-scale, scale)}">{-scale:+.2f}</span><span style="background:#ffffff">0</span><span style="background:{activation_colour(scale, scale)}">{scale:+.2f}</span></p>
<pre>{''.join(spans)}</pre>
</body></html>
"""
