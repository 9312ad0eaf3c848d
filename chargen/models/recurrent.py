"""Recurrent models: character embedding (+ optional condition) -> recurrent core -> LM or classifier head."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from chargen.cells import CELLS, MomentumCell, State
from chargen.core import ENGINES, Recurrent, has_torch_cell
from chargen.errors import UsageError
from chargen.inits import check_init, initialise
from chargen.schema import check_model_options


FAMILIES = ("recurrent", "transformer", "ngram")
POSITIONS = ("learned", "rotary")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model; stored as JSON in every checkpoint."""

    kind: str = "lm"  # "lm" (next character per step) or "classifier" (one label per sequence)
    vocab_size: int = 0
    embed_dim: int = 64
    cell: str = "lstm"
    hidden_size: int = 512
    num_layers: int = 2
    dropout: float = 0.0
    engine: str = "fused"
    cell_options: dict[str, Any] = field(default_factory=dict)
    init: str = "pytorch"  # "pytorch" (uniform) or "paper" (MomentumRNN's: orthogonal W_ih, identity W_hh): chargen.inits
    forget_bias: float | None = None  # LSTM family: b_ih[f] + b_hh[f] at init (None: the init's own)
    mu: float | None = None  # momentum cells' mu (None: the cell's default or cell_options); base cells: 0 only
    s: float | None = None  # momentum cells' step size s (None: as mu); base cells: 1 only
    num_classes: int = 0  # classifier outputs
    num_conditions: int = 0  # LM conditioned on a class (e.g. a language) at every step
    condition_dim: int = 0
    members: int = 1  # classifier: an ensemble of this many independently trained networks
    family: str = "recurrent"  # "recurrent" (the fields above), "transformer" (those below), "ngram"
    n_layer: int = 4  # transformer: pre-norm blocks
    n_head: int = 4  # transformer: attention heads (d_model must divide by it)
    d_model: int = 128  # transformer: width of the residual stream (and of the condition embedding)
    context: int = 128  # transformer: the most characters one forward attends over
    positions: str = "learned"  # transformer: "learned" position embeddings or "rotary" (RoFormer)
    tie_weights: bool = True  # transformer: the LM head reuses the character embedding

    def check(self) -> None:
        """Raise a UsageError, naming the parameter, for settings no model can have."""
        if self.family not in FAMILIES:
            raise UsageError(f"family must be one of {', '.join(FAMILIES)}, got {self.family!r}", params="family")
        if self.family == "transformer":  # the recurrent fields are not read: only its own are checked
            self._check_transformer()
            return
        if self.cell not in CELLS:
            raise UsageError(f"cell: unknown cell {self.cell!r}; known cells: {', '.join(CELLS)}", params="cell")
        for name in ("num_layers", "hidden_size", "embed_dim"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be positive, got {getattr(self, name)}", params=name)
        if not 0 <= self.dropout < 1:
            raise UsageError(f"dropout must be in [0, 1), got {self.dropout}", params="dropout")
        if self.engine not in ENGINES:
            raise UsageError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}", params="engine")
        if self.engine == "fused" and not CELLS[self.cell].has_fused:
            raise UsageError(f"cell {self.cell} has no fused kernel; use engine loop", params=("cell", "engine"))
        if self.engine == "torch-cell" and not has_torch_cell(CELLS[self.cell]):
            raise UsageError(f"engine torch-cell loops nn.RNNCell/nn.LSTMCell/nn.GRUCell, which cell {self.cell} has no twin of; "
                             "use the loop engine", params=("engine", "cell"))
        self._check_init_and_momentum()
        check_model_options(self.to_dict())  # types and sizes: nothing absurd reaches the allocator

    def _check_transformer(self) -> None:
        for name in ("n_layer", "n_head", "d_model", "context"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be positive, got {getattr(self, name)}", params=name)
        if self.context < 2:  # sliding windows keep half a context of history: there must be a half
            raise UsageError(f"context must be at least 2, got {self.context}", params="context")
        if self.d_model % self.n_head:
            raise UsageError(f"d_model ({self.d_model}) must be a multiple of n_head ({self.n_head})",
                             params=("d_model", "n_head"))
        if self.positions not in POSITIONS:
            raise UsageError(f"positions must be one of {', '.join(POSITIONS)}, got {self.positions!r}",
                             params="positions")
        if self.positions == "rotary" and (self.d_model // self.n_head) % 2:
            raise UsageError(f"rotary positions rotate pairs: the head width d_model / n_head "
                             f"({self.d_model // self.n_head}) must be even", params=("positions", "d_model", "n_head"))
        if not 0 <= self.dropout < 1:
            raise UsageError(f"dropout must be in [0, 1), got {self.dropout}", params="dropout")
        check_model_options(self.to_dict())

    def _check_init_and_momentum(self) -> None:
        try:
            check_init(self.init, self.forget_bias)
        except ValueError as e:
            raise UsageError(str(e), params=("init", "forget_bias")) from None
        if self.forget_bias is not None and CELLS[self.cell].gates != 4:
            raise UsageError(f"forget_bias: cell {self.cell!r} has no forget gate", params=("forget_bias",))
        if not issubclass(CELLS[self.cell], MomentumCell):
            # a base cell is the momentum cell at mu = 0, s = 1; anything else needs the momentum cell
            if self.mu not in (None, 0.0) or self.s not in (None, 1.0):
                raise UsageError(f"mu/s: cell {self.cell!r} has no momentum (it is mu = 0, s = 1); "
                                 f"use momentum-{self.cell.split('-')[-1]}", params=("mu", "s"))
            return
        if self.mu is not None and not 0.0 <= self.mu < 1.0:
            raise UsageError(f"mu (momentum) must be in [0, 1), got {self.mu}", params=("mu",))
        if self.s is not None and not self.s > 0.0:
            raise UsageError(f"s (step size) must be positive, got {self.s}", params=("s",))

    def core_options(self) -> dict[str, Any]:
        """The cell constructor's options: ``cell_options`` with ``mu``/``s`` over them for momentum cells."""
        options = dict(self.cell_options)
        if issubclass(CELLS[self.cell], MomentumCell):
            options.update({k: v for k, v in (("mu", self.mu), ("s", self.s)) if v is not None})
        return options

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = cls.__dataclass_fields__
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"unknown model settings: {', '.join(sorted(unknown))}")
        return cls(**data)


def settings_for_cell(cell: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Shared model settings as one cell takes them: ``mu``/``s`` only for momentum cells, ``forget_bias``
    only for cells with a forget gate (so one ``--mu`` or ``--forget-bias`` can be given to a mixed list)."""
    kind = CELLS.get(cell)
    if kind is None:
        return dict(settings)
    drop = set()
    if not issubclass(kind, MomentumCell):
        drop |= {"mu", "s"}
    if kind.gates != 4:
        drop.add("forget_bias")
    return {k: v for k, v in settings.items() if k not in drop}


class Encoder(nn.Module):
    """Token ids ``(T, N)`` (+ a condition id per sequence) -> core outputs ``(T, N, H)``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim)
        self.condition = nn.Embedding(cfg.num_conditions, cfg.condition_dim) if cfg.num_conditions else None
        input_size = cfg.embed_dim + (cfg.condition_dim if cfg.num_conditions else 0)
        self.core = Recurrent(
            cfg.cell, input_size, cfg.hidden_size, cfg.num_layers, cfg.dropout, cfg.engine, **cfg.core_options()
        )
        if cfg.init != "pytorch" or cfg.forget_bias is not None:
            for layer in self.core.layers:
                initialise(layer, cfg.init, cfg.forget_bias)

    def forward(
        self, idx: Tensor, state: State | None = None, condition: Tensor | None = None
    ) -> tuple[Tensor, State]:
        x = self.embed(idx)  # (T, N, E)
        if self.condition is not None:
            if condition is None:
                raise ValueError("this model is conditioned: pass condition ids (N,)")
            cond = self.condition(condition)  # (N, C)
            x = torch.cat([x, cond.unsqueeze(0).expand(x.shape[0], -1, -1)], dim=2)
        return self.core(x, state)


class CharLM(nn.Module):
    """Character language model: ``forward(idx (T, N), state, targets) -> (logits (T, N, V), loss, state)``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.head = nn.Linear(cfg.hidden_size, cfg.vocab_size)

    def forward(
        self,
        idx: Tensor,
        state: State | None = None,
        targets: Tensor | None = None,
        condition: Tensor | None = None,
        ignore_index: int = -100,
    ) -> tuple[Tensor, Tensor | None, State]:
        out, state = self.encoder(idx, state, condition)
        logits = self.head(out)  # (T, N, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=ignore_index)
        return logits, loss, state


class SequenceClassifier(nn.Module):
    """One label per sequence from the state at each sequence's own last character.

    Padding comes after a sequence's last character, and the core is causal, so the output at
    ``lengths - 1`` is exactly what the unpadded sequence alone would give.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.head = nn.Linear(cfg.hidden_size, cfg.num_classes)

    def forward(self, idx: Tensor, lengths: Tensor) -> Tensor:
        """``idx (T, N)`` right-padded, ``lengths (N,)`` -> logits ``(N, C)``."""
        out, _ = self.encoder(idx)  # (T, N, H)
        last = out[lengths - 1, torch.arange(idx.shape[1], device=idx.device)]  # (N, H)
        return self.head(last)


class EnsembleClassifier(nn.Module):
    """Several classifiers of one shape read the same names; the output is their mean log probabilities.

    A mean of log probabilities (a normalised product of the members' distributions) rather than
    of probabilities: a language any member rules out stays unlikely.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.members = nn.ModuleList(SequenceClassifier(replace(cfg, members=1)) for _ in range(cfg.members))

    def forward(self, idx: Tensor, lengths: Tensor) -> Tensor:
        """``idx (T, N)`` right-padded, ``lengths (N,)`` -> ``(N, C)`` mean member log probabilities."""
        return torch.stack([F.log_softmax(m(idx, lengths), dim=-1) for m in self.members]).mean(0)


def build_recurrent(cfg: ModelConfig) -> nn.Module:
    """The recurrent model a config describes."""
    if cfg.kind == "lm":
        return CharLM(cfg)
    if cfg.kind == "classifier":
        return EnsembleClassifier(cfg) if cfg.members > 1 else SequenceClassifier(cfg)
    raise ValueError(f"unknown model kind {cfg.kind!r}")
