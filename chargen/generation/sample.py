"""Stateful generation: prime once, then one step per character with the state carried (O(1) per character).

``sample_steps`` is the one generation loop, for N streams at once (a stream may stop at a token), on a
stepper and a sampler from ``chargen.generation.inference`` (the lean path; the model's own forward with ``lean=False``);
``generate`` / ``generate_streams`` (text from a language model, one stream or N as one batch) and the name
generator (``chargen.tasks.generate``) all run on it. Both samplers draw from the scores of one
``chargen.generation.logits.LogitsPipeline``: the decoding controls of a ``DecodeConfig`` (``decode=``, or the
same names as keywords: ``temperature=0.7, top_p=0.9``), applied in one documented order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from chargen.errors import UsageError
from chargen.generation.logits import DecodeConfig, LogitsPipeline, decode_config
from chargen.generation.masks import CharMask
from chargen.generation.inference import LeanSampler, make_stepper
from chargen.models import CharLM
from chargen.vocab import Vocab

MAX_LENGTH = 10_000_000  # streamed, so memory stays flat; the bound only stops typos like 1e12
START_CONTEXT = "\n"  # what an unprimed sample continues: the start of a new line
MAX_SEED = 2**63 - 1  # torch generators take 64-bit seeds; sample i of a batch uses seed + i (mod 2**63)

Controls = DecodeConfig | Mapping[str, Any] | None


def sample_next(
    logits: Tensor,
    temperature: float | str = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    *,
    decode: DecodeConfig | None = None,
) -> Tensor:
    """Next ids from ``logits (N, V)`` with no history: the pipeline's scores (``decode``, or ``temperature``
    and ``top_k``), then argmax when greedy, else one ``torch.multinomial`` draw over the batch."""
    config = decode if decode is not None else DecodeConfig(temperature=temperature, top_k=top_k)
    pipeline = LogitsPipeline(config, logits.shape[0], logits.shape[-1], device=logits.device, dtype=logits.dtype)
    out = torch.empty(logits.shape[0], dtype=torch.long, device=logits.device)
    return _ReferenceDraw(pipeline, generator)(logits, out)


def check_length(length: int) -> None:
    if not 0 <= length <= MAX_LENGTH:
        raise UsageError(f"length must be between 0 and {MAX_LENGTH:,}, got {length}", params="length")


def check_sampling(temperature: float | str = 1.0, top_k: int | None = None, length: int = 0) -> None:
    """The checks of ``DecodeConfig(temperature, top_k)`` and of ``length``."""
    DecodeConfig(temperature=temperature, top_k=top_k)
    check_length(length)


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
    seed: int | None = None,
    chunk_size: int = 30,
    condition: int | None = None,
    stop: str | None = None,
    lean: bool = True,
    decode: Controls = None,
    masks: Sequence[CharMask] = (),
    **controls: Any,
) -> Iterator[str]:
    """Yield generated text in chunks of ``chunk_size`` characters (the prime is not repeated).

    The prime runs through the network once; after that every character costs one step, with
    the state carried from step to step and chunk to chunk, so the text is the same whatever
    ``chunk_size`` is. Without a prime, generation starts as after a line break (the newline is
    fed to the network but not yielded), so greedy decoding is deterministic and the text starts
    as a paragraph would; a vocabulary without a newline gets a first character drawn uniformly.
    ``stop`` (a special token such as ``<eos>``) ends generation early. ``lean`` steps with
    ``chargen.generation.inference`` (the same text as the model's own forward, ``lean=False``). ``decode`` (a
    ``DecodeConfig`` or a dict of its names) or the same names as keywords set the decoding controls;
    ``masks`` are hard constraints (``chargen.generation.masks.CharMask``).
    """
    for pieces in generate_streams(model, vocab, n=1, prime=prime, length=length, seed=seed, chunk_size=chunk_size,
                                   condition=condition, stop=stop, lean=lean, decode=decode, masks=masks, **controls):
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
    seed: int | None = None,
    chunk_size: int = 30,
    condition: int | None = None,
    stop: str | None = None,
    lean: bool = True,
    decode: Controls = None,
    masks: Sequence[CharMask] = (),
    **controls: Any,
) -> Iterator[list[str]]:
    """``n`` samples generated as one batch: yields, chunk by chunk, a list of ``n`` pieces of text.

    RNG contract: stream ``i`` draws only from its own generator, seeded ``nth_seed(seed, i)``
    (``seed + i``, wrapping within range; with no seed, a random seed per stream), so stream ``i``
    of a batch is the text ``generate`` writes alone with that seed, whatever ``n`` is (up to float
    rounding between batch sizes).
    A stream that draws ``stop`` yields ``""`` from then on; generation ends when all have stopped.
    The decoding controls (``decode`` or keywords, as for ``generate``) apply to every stream, each
    with its own history (its text for the repetition penalty and no-repeat, its masks' states).
    """
    config = decode_config(decode, **controls)
    check_length(length)
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
    prime_ids = vocab.encode(prime, what="the prime") if prime else []
    # the prime is the streams' text so far (the penalty window and no-repeat see it); a fed newline is not
    pipeline = LogitsPipeline(config, n, len(vocab), length=length, context=prime_ids, masks=masks, prime=prime,
                              device=device)
    if prime:
        ids = torch.tensor(prime_ids, device=device).view(-1, 1).expand(-1, n)
    elif START_CONTEXT in vocab:
        ids = torch.tensor([vocab.id(START_CONTEXT)], device=device).view(1, 1).expand(1, n)
    else:
        first = first_characters(len(vocab.specials), len(vocab), generators, pipeline)
        ids = first.view(1, n)
        pipeline.advance(first)
        yield [vocab.decode([i]) for i in first.tolist()]
        length -= 1
    stop_id = vocab.id(stop) if stop is not None else None
    stepper = make_stepper(model, n, cond, lean=lean)
    draw = make_draw(pipeline, generators, lean)
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
    stop_id: int | None = None,
    done: Tensor | None = None,
) -> tuple[Tensor, int]:
    """The one generation loop: one id per stream into each of ``rows``, one model step per character.

    ``step`` is a stepper's (``chargen.generation.inference``: ids ``(N,)`` -> logits ``(N, V)``), ``draw`` a sampler
    (``logits, out=row`` -> ids) and ``last (N, V)`` the logits to draw from first (after the prime, or
    as returned by the previous call: calling again continues the same text). ``rows`` are views of one
    ``(T, N)`` id tensor made once by the caller, so nothing is allocated per character. With ``done (N,)`` (updated in place), a stream is done once it draws ``stop_id``
    and the loop ends as soon as every stream is, without stepping the model again; without it, the
    caller cuts each stream at its stop id after the loop (no check per character). Returns the logits
    to continue from and the number of rows written.
    """
    for written, row in enumerate(rows, start=1):
        ids = draw(last, out=row)
        if done is not None:
            done |= ids == stop_id
            if bool(done.all()):
                return last, written
        last = step(ids)
    return last, len(rows)


def make_draw(
    pipeline: LogitsPipeline, generators: Sequence[torch.Generator] | torch.Generator, lean: bool = True
) -> Callable[..., Tensor]:
    """The sampler over ``pipeline``'s scores: the lean one, or the reference draw it must equal."""
    if lean:
        return LeanSampler(pipeline.batch, pipeline.vocab_size, generators=generators,
                           device=pipeline.scores.device, pipeline=pipeline)
    return _ReferenceDraw(pipeline, generators)


class _ReferenceDraw:
    """The pipeline's scores, then ``torch.multinomial`` (per stream from its own generator, or over the batch
    from one): the readable draw that the lean sampler must equal."""

    def __init__(self, pipeline: LogitsPipeline, generators: Sequence[torch.Generator] | torch.Generator | None) -> None:
        self.pipeline, self.generators = pipeline, generators

    def __call__(self, logits: Tensor, out: Tensor) -> Tensor:
        scores = self.pipeline.process(logits)
        if self.pipeline.step_greedy:
            out.copy_(scores.argmax(dim=-1))
        elif self.generators is None or isinstance(self.generators, torch.Generator):
            out.copy_(torch.multinomial(torch.softmax(scores.float(), dim=-1), 1, generator=self.generators).squeeze(-1))
        else:
            for i, generator in enumerate(self.generators):
                probs = torch.softmax(scores[i : i + 1].float(), dim=-1)
                out[i] = torch.multinomial(probs, 1, generator=generator)[0, 0]
        self.pipeline.advance(out)
        return out


def first_characters(low: int, vocab_size: int, generators: Sequence[torch.Generator],
                     pipeline: LogitsPipeline | None) -> Tensor:
    """An unprimed stream's first character on a vocabulary without a newline: uniform over the characters
    (not the special tokens), or over those the masks allow."""
    allowed = pipeline.allowed() if pipeline is not None and pipeline.masks else None
    first = []
    for i, generator in enumerate(generators):
        device = generator.device
        if allowed is None:
            first.append(torch.randint(low, vocab_size, (1,), generator=generator, device=device))
        else:
            choices = allowed[i, low:].nonzero().view(-1) + low
            first.append(choices[torch.randint(len(choices), (1,), generator=generator, device=device)])
    return torch.cat(first)
