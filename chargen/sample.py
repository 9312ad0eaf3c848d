"""Stateful generation: prime once, then one step per character with the state carried (O(1) per character).

``sample_steps`` is the one generation loop, for N streams at once (a stream may stop at a token), on a
stepper and a sampler from ``chargen.inference`` (the lean path; the model's own forward with ``lean=False``);
``generate`` / ``generate_streams`` (text from a language model, one stream or N as one batch) and the name
generator (``chargen.tasks.generate``) all run on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor

from chargen.errors import UsageError
from chargen.inference import LeanSampler, make_stepper
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
    lean: bool = True,
) -> Iterator[str]:
    """Yield generated text in chunks of ``chunk_size`` characters (the prime is not repeated).

    The prime runs through the network once; after that every character costs one step, with
    the state carried from step to step and chunk to chunk, so the text is the same whatever
    ``chunk_size`` is. Without a prime, generation starts as after a line break (the newline is
    fed to the network but not yielded), so greedy decoding is deterministic and the text starts
    as a paragraph would; a vocabulary without a newline gets a first character drawn uniformly.
    ``stop`` (a special token such as ``<eos>``) ends generation early. ``lean`` steps with
    ``chargen.inference`` (the same text as the model's own forward, ``lean=False``).
    """
    for pieces in generate_streams(model, vocab, n=1, prime=prime, length=length, temperature=temperature,
                                   top_k=top_k, seed=seed, chunk_size=chunk_size, condition=condition, stop=stop,
                                   lean=lean):
        if pieces[0]:
            yield pieces[0]


@torch.inference_mode()
def generate_streams(
    model: CharLM,
    vocab: Vocab,
    *,
    n: int = 1,
    prime: str = "",
    length: int = 500,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    chunk_size: int = 30,
    condition: int | None = None,
    stop: str | None = None,
    lean: bool = True,
) -> Iterator[list[str]]:
    """``n`` samples generated as one batch: yields, chunk by chunk, a list of ``n`` pieces of text.

    RNG contract: stream ``i`` draws only from its own generator, seeded ``nth_seed(seed, i)``
    (``seed + i``, wrapping within range; with no seed, a random seed per stream), so stream ``i``
    of a batch is the text ``generate`` writes alone with that seed, whatever ``n`` is (up to float
    rounding between batch sizes).
    A stream that draws ``stop`` yields ``""`` from then on; generation ends when all have stopped.
    """
    check_sampling(temperature, top_k, length)
    check_seed(seed)
    if chunk_size < 1:
        raise UsageError(f"chunk_size must be positive, got {chunk_size}", params="chunk_size")
    if n < 1:
        raise UsageError(f"n must be at least 1, got {n}", params="n")
    device = next(model.parameters()).device
    generators = []
    for i in range(n):
        generator = torch.Generator(device=device)
        generator.manual_seed(nth_seed(seed, i) if seed is not None else int(torch.randint(2**62, (1,))))
        generators.append(generator)
    cond = None if condition is None else torch.full((n,), condition, dtype=torch.long, device=device)
    if length == 0:
        return
    if prime:
        ids = torch.tensor(vocab.encode(prime, what="the prime"), device=device).view(-1, 1).expand(-1, n)
    elif START_CONTEXT in vocab:
        ids = torch.tensor([vocab.id(START_CONTEXT)], device=device).view(1, 1).expand(1, n)
    else:
        first = [torch.randint(len(vocab.specials), len(vocab), (1,), generator=g, device=device) for g in generators]
        ids = torch.cat(first).view(1, n)
        yield [vocab.decode(f.tolist()) for f in first]
        length -= 1
    stop_id = vocab.id(stop) if stop is not None else None
    stepper = make_stepper(model, n, cond, lean=lean)
    draw = LeanSampler(n, len(vocab), temperature, top_k, generators, device) if lean else _ReferenceDraw(
        temperature, top_k, generators)
    last = stepper.prime(ids)  # (N, V)
    out = torch.empty(max(1, min(chunk_size, length)), n, dtype=torch.long, device=device)
    rows = out.unbind(0)  # made once: the sampler writes each step's ids into the next row
    alive = [True] * n
    produced = 0
    step = stepper.step  # bound once: the loop below runs once per character
    while produced < length:
        size = min(chunk_size, length - produced)
        last, _ = sample_steps(step, draw, last, rows[:size])
        produced += size
        pieces = []
        for i, chunk in enumerate(out[:size].T.tolist()):
            if not alive[i]:
                chunk = []
            elif stop_id is not None and stop_id in chunk:
                chunk, alive[i] = chunk[: chunk.index(stop_id)], False
            pieces.append(vocab.decode(chunk))
        yield pieces
        if not any(alive):
            return


def sample_steps(
    step: Callable[[Tensor], Tensor],
    draw: Callable[..., Tensor],
    last: Tensor,
    rows: Sequence[Tensor],
    *,
    banned: Tensor | None = None,
    stop_id: int | None = None,
    done: Tensor | None = None,
) -> tuple[Tensor, int]:
    """The one generation loop: one id per stream into each of ``rows``, one model step per character.

    ``step`` is a stepper's (``chargen.inference``: ids ``(N,)`` -> logits ``(N, V)``), ``draw`` a sampler
    (``logits, out=row`` -> ids) and ``last (N, V)`` the logits to draw from first (after the prime, or
    as returned by the previous call: calling again continues the same text). ``rows`` are views of one
    ``(T, N)`` id tensor made once by the caller, so nothing is allocated per character. ``banned`` ids
    are never drawn. With ``done (N,)`` (updated in place), a stream is done once it draws ``stop_id``
    and the loop ends as soon as every stream is, without stepping the model again; without it, the
    caller cuts each stream at its stop id after the loop (no check per character). Returns the logits
    to continue from and the number of rows written.
    """
    for written, row in enumerate(rows, start=1):
        if banned is not None:
            last.index_fill_(1, banned, float("-inf"))
        ids = draw(last, out=row)
        if done is not None:
            done |= ids == stop_id
            if bool(done.all()):
                return last, written
        last = step(ids)
    return last, len(rows)


class _ReferenceDraw:
    """``sample_next`` for each stream with its own generator: what the lean sampler must equal."""

    def __init__(self, temperature: float, top_k: int | None, generators: list[torch.Generator]) -> None:
        self.temperature, self.top_k, self.generators = temperature, top_k, generators

    def __call__(self, logits: Tensor, out: Tensor) -> Tensor:
        for i, generator in enumerate(self.generators):
            out[i] = sample_next(logits[i : i + 1], self.temperature, self.top_k, generator)[0]
        return out
