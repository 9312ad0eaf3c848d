"""Stateful generation: prime once, then one step per character with the state carried (O(1) per character).

``sample_steps`` is the one generation loop, for N rows at once (a row may stop at a token); ``generate``
(text from a language model) and the name generator (``chargen.tasks.generate``) both run on it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from chargen.cells import State
from chargen.errors import UsageError
from chargen.models import CharLM
from chargen.vocab import Vocab

MAX_LENGTH = 10_000_000  # streamed, so memory stays flat; the bound only stops typos like 1e12
START_CONTEXT = "\n"  # what an unprimed sample continues: the start of a new line
MAX_SEED = 2**63 - 1  # torch generators take 64-bit seeds; sample i of a batch uses seed + i (mod 2**63)


def sample_next(
    logits: Tensor, temperature: float = 1.0, top_k: int | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """Next ids from ``logits (N, V)``: argmax at temperature 0, else softmax(logits / T) over the top k."""
    if temperature < torch.finfo(logits.dtype).tiny:  # 0, or so small it underflows in the logits' dtype
        return logits.argmax(dim=-1)
    # Shift before dividing: a tiny (even subnormal) temperature then sends every logit but the
    # largest to -inf instead of overflowing to inf - inf = NaN, which is greedy decoding, as it should be.
    logits = (logits - logits.max(dim=-1, keepdim=True).values) / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits.float(), dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def check_sampling(temperature: float, top_k: int | None, length: int) -> None:
    if not math.isfinite(temperature):
        raise UsageError(f"temperature must be a finite number (0 = greedy), got {temperature}", params="temperature")
    if temperature < 0:
        raise UsageError(f"temperature must be 0 (greedy) or positive, got {temperature}", params="temperature")
    if top_k is not None and top_k < 1:
        raise UsageError(f"top_k must be at least 1, got {top_k}", params="top_k")
    if not 0 <= length <= MAX_LENGTH:
        raise UsageError(f"length must be between 0 and {MAX_LENGTH:,}, got {length}", params="length")


def check_seed(seed: int | None) -> None:
    """Seeds are integers in [0, 2**63 - 1], what every torch generator accepts."""
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise UsageError(f"seed must be between 0 and {MAX_SEED:,} (2**63 - 1), got {seed}", params="seed")


def nth_seed(seed: int | None, i: int) -> int | None:
    """The seed of the i-th sample of a batch seeded with ``seed``: consecutive, wrapping within range."""
    return None if seed is None else (seed + i) % (MAX_SEED + 1)


@torch.no_grad()
def generate(
    model: CharLM,
    vocab: Vocab,
    *,
    prime: str = "",
    length: int = 500,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    chunk_size: int = 30,
    condition: int | None = None,
    stop: str | None = None,
) -> Iterator[str]:
    """Yield generated text in chunks of ``chunk_size`` characters (the prime is not repeated).

    The prime runs through the network once; after that every character costs one step, with
    the state carried from step to step and chunk to chunk, so the text is the same whatever
    ``chunk_size`` is. Without a prime, generation starts as after a line break (the newline is
    fed to the network but not yielded), so greedy decoding is deterministic and the text starts
    as a paragraph would; a vocabulary without a newline gets a first character drawn uniformly.
    ``stop`` (a special token such as ``<eos>``) ends generation early.
    """
    check_sampling(temperature, top_k, length)
    check_seed(seed)
    if chunk_size < 1:
        raise UsageError(f"chunk size must be positive, got {chunk_size}")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else int(torch.randint(2**62, (1,))))
    cond = None if condition is None else torch.tensor([condition], device=device)
    if length == 0:
        return
    if prime:
        ids = torch.tensor(vocab.encode(prime, what="the prime"), device=device)
    elif START_CONTEXT in vocab:
        ids = torch.tensor([vocab.id(START_CONTEXT)], device=device)
    else:
        first = torch.randint(len(vocab.specials), len(vocab), (1,), generator=generator, device=device)
        ids = first
        yield vocab.decode(first.tolist())
        length -= 1
    stop_id = vocab.id(stop) if stop is not None else None
    logits, _, state = model(ids.view(-1, 1), None, condition=cond)  # (T, 1, V)
    last = logits[-1]  # (1, V)
    produced = 0
    while produced < length:
        rows, last, state, stopped = sample_steps(model, last, state, min(chunk_size, length - produced),
                                                  temperature=temperature, top_k=top_k, generator=generator,
                                                  condition=cond, stop_id=stop_id)
        produced += len(rows[0])
        if rows[0]:
            yield vocab.decode(rows[0])
        if stopped:
            return


def sample_steps(
    model: CharLM,
    last: Tensor,
    state: State,
    steps: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    condition: Tensor | None = None,
    stop_id: int | None = None,
    banned: Sequence[int] = (),
) -> tuple[list[list[int]], Tensor, State, bool]:
    """The one generation loop: up to ``steps`` ids for each of N rows, one model step per character.

    ``last (N, V)`` holds the logits after the prime and ``state`` its state; both are carried, so
    calling this again continues the same text. A row ends at ``stop_id`` (not included); the loop
    ends when every row has. ``banned`` ids are never drawn. Returns the ids per row, the last
    logits and state (to continue from), and whether every row stopped.
    """
    n = last.shape[0]
    out: list[list[int]] = [[] for _ in range(n)]
    done = [False] * n
    for _ in range(steps):
        if banned:
            last = last.clone()
            last[:, list(banned)] = float("-inf")
        nxt = sample_next(last, temperature, top_k, generator)  # (N,)
        for i, token in enumerate(nxt.tolist()):
            if done[i]:
                continue
            if token == stop_id:
                done[i] = True
            else:
                out[i].append(token)
        if all(done):
            return out, last, state, True
        logits, _, state = model(nxt.view(1, -1), state, condition=condition)
        last = logits[-1]
    return out, last, state, False
