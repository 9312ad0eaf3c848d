"""The causal character transformer: embedding (+ positions, + condition) -> pre-norm blocks -> LM head, with a key/value cache."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from chargen.models.recurrent import ModelConfig

# Shapes in comments: B batch, T positions in this call, S positions cached so far, C d_model, H heads,
# D = C / H head width, V vocabulary, L layers. The model's public contract is time-major like the
# recurrent CharLM's (ids (T, N) in, logits (T, N, V) out); inside, everything is batch-first because
# scaled_dot_product_attention wants (B, H, T, D).


class KVCache:
    """Keys and values of the positions seen so far, in buffers of the context length: ``(L, B, H, context, D)``.

    ``length`` positions are filled; :meth:`TransformerLM.forward_cached` writes the next ones and
    attends over all of them. A cache never holds more than the context: the caller decides what to
    drop (``chargen.generation.kvcache`` restarts it from the last half of its window).
    """

    def __init__(self, model: TransformerLM, batch: int) -> None:
        cfg = model.cfg
        like = model.embed.weight
        shape = (cfg.n_layer, batch, cfg.n_head, cfg.context, cfg.d_model // cfg.n_head)
        self.keys = torch.zeros(shape, dtype=like.dtype, device=like.device)
        self.values = torch.zeros_like(self.keys)
        self.length = 0

    def reset(self) -> None:
        self.length = 0  # stale entries past length are never read


def rotary_tables(context: int, head_dim: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """cos and sin ``(context, D)`` of RoFormer's rotation, each frequency repeated for both halves."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))  # (D/2,)
    angles = torch.outer(torch.arange(context, dtype=torch.float64), inv_freq)  # (context, D/2)
    angles = torch.cat([angles, angles], dim=1)  # (context, D)
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x (B, H, T, D)`` by its positions' angles (``cos``/``sin`` ``(T, D)``), halves paired as in GPT-NeoX."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention on ``scaled_dot_product_attention``; reads and extends a cache when given one."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None, cache: KVCache | None, layer: int) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # (B, T, C) each
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        p = self.dropout if self.training else 0.0
        start = 0 if cache is None else cache.length
        if cache is not None:
            cache.keys[layer, :, :, start : start + T] = k
            cache.values[layer, :, :, start : start + T] = v
        if start == 0:  # nothing before these positions: plain causal attention
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            k, v = cache.keys[layer, :, :, : start + T], cache.values[layer, :, :, : start + T]  # (B, H, S + T, D)
            # query i (at position start + i) sees every cached position and the new ones up to itself; one
            # new position sees everything, so the common generation step needs no mask at all
            mask = None if T == 1 else torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(start)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.resid_drop(self.proj(y))


class Block(nn.Module):
    """Pre-norm residual block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))`` with a GELU MLP four times as wide."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.fc = nn.Linear(cfg.d_model, 4 * cfg.d_model)
        self.proj = nn.Linear(4 * cfg.d_model, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None, cache: KVCache | None, layer: int) -> Tensor:
        x = x + self.attn(self.ln1(x), rope, cache, layer)
        return x + self.drop(self.proj(F.gelu(self.fc(self.ln2(x)))))


class TransformerLM(nn.Module):
    """Decoder-only character LM: ``forward(idx (T, N), state, targets) -> (logits (T, N, V), loss, None)``.

    The recurrent CharLM's contract, so the training loop and the tasks call it the same way; it
    carries no state between calls (``state`` must be None, and None comes back), and one call sees
    at most ``cfg.context`` positions. Scoring a longer text slides windows over it
    (``chargen.generation.windows``); generation keeps a key/value cache (``chargen.generation.kvcache``).
    A conditioned model (``num_conditions``) adds the condition's embedding to every position.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.context = cfg.context
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.position = nn.Embedding(cfg.context, cfg.d_model) if cfg.positions == "learned" else None
        self.condition = nn.Embedding(cfg.num_conditions, cfg.d_model) if cfg.num_conditions else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.positions == "rotary":
            cos, sin = rotary_tables(cfg.context, cfg.d_model // cfg.n_head)
            self.register_buffer("rope_cos", cos, persistent=False)  # rebuilt from the config, never saved
            self.register_buffer("rope_sin", sin, persistent=False)
        self._init_weights()
        if cfg.tie_weights:  # after init: the embedding's N(0, 0.02) serves both
            self.head.weight = self.embed.weight

    def _init_weights(self) -> None:
        """nanoGPT's: N(0, 0.02) weights and zero biases, the residual projections scaled by 1/sqrt(2 L)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:  # each adds to the residual stream: keep its variance from growing with depth
            for proj in (block.attn.proj, block.proj):
                nn.init.normal_(proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * self.cfg.n_layer))

    def new_cache(self, batch: int) -> KVCache:
        return KVCache(self, batch)

    def hidden(self, idx: Tensor, condition: Tensor | None = None, cache: KVCache | None = None) -> Tensor:
        """``idx (B, T)`` -> final-norm outputs ``(B, T, C)``, after the ``cache``'s positions when given one."""
        B, T = idx.shape
        start = 0 if cache is None else cache.length
        if start + T > self.context:
            raise ValueError(f"{start + T} positions exceed the model's context of {self.context}")
        x = self.embed(idx)  # (B, T, C)
        if self.position is not None:
            x = x + self.position(torch.arange(start, start + T, device=idx.device))  # (T, C), broadcast over B
        if self.condition is not None:
            if condition is None:
                raise ValueError("this model is conditioned: pass condition ids (N,)")
            x = x + self.condition(condition).unsqueeze(1)  # (B, 1, C): the same at every position
        x = self.drop(x)
        rope = None
        if self.position is None:
            rope = (self.rope_cos[start : start + T], self.rope_sin[start : start + T])  # (T, D) each
        for layer, block in enumerate(self.blocks):
            x = block(x, rope, cache, layer)
        if cache is not None:
            cache.length += T
        return self.norm(x)

    def forward_cached(self, idx: Tensor, cache: KVCache, condition: Tensor | None = None) -> Tensor:
        """Logits ``(B, T, V)`` of ``idx (B, T)`` following the cache's positions, which it then holds too."""
        return self.head(self.hidden(idx, condition, cache))

    def forward(
        self,
        idx: Tensor,
        state: None = None,
        targets: Tensor | None = None,
        condition: Tensor | None = None,
        ignore_index: int = -100,
    ) -> tuple[Tensor, Tensor | None, None]:
        if state is not None:
            raise ValueError("a transformer carries no state between calls; pass state=None")
        logits = self.head(self.hidden(idx.t(), condition))  # (N, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.t().flatten(), ignore_index=ignore_index)
        return logits.transpose(0, 1), loss, None  # (T, N, V)
