"""Beam search: the likeliest continuation of a prime that K beams can find, with each beam's state carried.

The K beams run as one batch of K sequences: each step scores every (beam, next character)
pair, keeps the K best by total log-probability, and gathers the survivors' states along the
batch dimension, so a step costs one model call whatever K is. Every beam has the same length,
so totals compare without length normalisation. With K = 1 this is greedy decoding exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from chargen.cells import State
from chargen.errors import UsageError
from chargen.models import CharLM, TransformerLM
from chargen.sample import MAX_LENGTH
from chargen.vocab import Vocab


@dataclass
class Beam:
    """The best continuation found: its text, total log-probability (nats) and each character's."""

    text: str
    log_prob: float
    char_log_probs: list[float] = field(default_factory=list)

    def prefix_log_prob(self, n: int) -> float:
        """Log-probability of the first ``n`` characters (a continuation cut by a stop string)."""
        return float(sum(self.char_log_probs[:n]))


@torch.no_grad()
def beam_search(model: CharLM, vocab: Vocab, prime: str, length: int, beams: int = 5) -> Beam:
    """The most probable ``length``-character continuation of ``prime`` that ``beams`` beams find."""
    if beams < 1:
        raise UsageError(f"beams must be at least 1, got {beams}", params="beams")
    if isinstance(model, TransformerLM):  # it carries no state for the beams to share
        raise UsageError("beam search runs on recurrent models; a transformer samples (leave out beams)",
                         params="beams")
    if not prime:
        raise UsageError("beam search needs a prime to continue (it has no random first character)", params="prime")
    if not 0 <= length <= MAX_LENGTH:
        raise UsageError(f"length must be between 0 and {MAX_LENGTH:,}, got {length}", params="length")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ids = torch.tensor(vocab.encode(prime, what="the prime"), device=device)
    logits, _, state = model(ids.view(-1, 1), None)  # (T, 1, V)
    last = logits[-1]  # (B, V), B = 1 live beam at first
    totals = torch.zeros(1, device=device, dtype=torch.float64)  # (B,)
    # Each step's chosen token and parent beam; the texts are rebuilt at the end by walking back.
    tokens: list[torch.Tensor] = []
    parents: list[torch.Tensor] = []
    steps: list[torch.Tensor] = []  # (B,) the log-probability of the step that made each beam
    never = len(vocab.specials)  # special tokens (<eos>, <pad>) are not text; never choose them
    for _ in range(length):
        logp = F.log_softmax(last.double(), dim=-1)  # (B, V)
        if never:
            logp[:, :never] = float("-inf")
        candidates = (totals[:, None] + logp).flatten()  # (B * V,)
        k = min(beams, candidates.numel())
        best, flat = torch.topk(candidates, k)  # sorted, best first
        parent, token = flat // logp.shape[1], flat % logp.shape[1]
        steps.append(logp[parent, token])
        tokens.append(token)
        parents.append(parent)
        totals = best
        state = _gather(state, parent)
        logits, _, state = model(token.view(1, -1), state)  # (1, K, V)
        last = logits[0]
    model.train(was_training)
    if not tokens:
        return Beam("", 0.0, [])
    out, char_lp = [], []
    beam = 0  # topk is sorted: beam 0 of the last step is the best
    for token, parent, step in zip(reversed(tokens), reversed(parents), reversed(steps)):
        out.append(int(token[beam]))
        char_lp.append(float(step[beam]))
        beam = int(parent[beam])
    out.reverse()
    char_lp.reverse()
    return Beam(vocab.decode(out), float(totals[0]), char_lp)


def _gather(state: State, index: torch.Tensor) -> State:
    """Each survivor's state from its parent beam: state tensors are ``(layers, N, H)``, beams along N."""
    return tuple(s.index_select(1, index) for s in state)
