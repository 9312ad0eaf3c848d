"""Generation for many requests at once: one thread per model steps every active stream in one batch.

A generate request becomes a :class:`Stream`. The model's thread primes it alone (its prime through
the model's own forward, as ``chargen sample`` does) and adds its state's rows to the batch before
the next step; a stream leaves when it has its length, meets a stop string, or its client goes
away. One step of the lean stepper then advances every stream by a character, so N requests cost
a little more than one instead of N times one. The batch's state is a tuple of
``(layers, N, size)`` tensors: joining and leaving select and concatenate its rows.

Each stream draws from its own generator, seeded with the request's seed, so its text is the
text ``chargen sample --seed`` writes alone, whoever else shares the batch (up to float rounding
between batch sizes, as for ``chargen sample -n``).

Decoding: streams whose controls read only the step's logits (temperature, top-k/p, min-p, typical)
share one sampler per distinct setting, rebuilt when the batch changes. A stream whose draw depends on
its own history (a temperature schedule, the repetition penalty, no-repeat, max-copy, a pattern) keeps
its own logits pipeline from the moment it joins to the moment it leaves, and is drawn from its own
row: its history never has to be regrouped with the rows, and it writes what ``chargen sample`` writes
with the same controls. The batch still shares the model's step; only the draw is per stream.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch import Tensor, nn

from chargen.cells import State
from chargen.checkpoint import Loaded
from chargen.errors import ChargenError
from chargen.generation.constraints import Constraints
from chargen.generation.logits import DeadEnd, LogitsPipeline
from chargen.generation.masks import CharMask
from chargen.generation.inference import LeanSampler, ReferenceStepper, Stepper, make_stepper
from chargen.models import CharLM
from chargen.generation.sample import START_CONTEXT, first_characters, generate
from chargen.serve.api import ApiError, Decoding, GenerateRequest, named
from chargen.generation.stops import stop_at

STEPPERS = 8  # batch sizes whose steppers are kept: building one copies the weights


class Stream:
    """One generate request in the batch: its own generator, its text so far, and the queue it is read from.

    The model's thread writes everything but ``cancelled``, which the reader sets when its client
    goes away; the reader takes pieces of text (then None, or an ApiError) from ``pieces``.
    """

    def __init__(self, request: GenerateRequest, prime_ids: list[int], loop: asyncio.AbstractEventLoop,
                 constraints: Constraints | None = None) -> None:
        self.request = request
        self.prime_ids = prime_ids
        self.constraints = constraints or Constraints()
        # the request's stop strings and the constraints' (a pattern's end token), as chargen sample cuts
        self.stops = (*request.stop, *self.constraints.stops)
        self.draw: LeanSampler | None = None  # its own sampler, when its decoding keeps history
        self.loop = loop
        self.pieces: asyncio.Queue[str | ApiError | None] = asyncio.Queue()
        self.cancelled = False
        self.generator: torch.Generator | None = None  # made, and seeded, when the stream joins
        self.text = ""
        self.sent = 0  # characters of text handed to the reader
        self.produced = 0  # tokens drawn
        self.end: int | None = None  # where the text ends once it is done (a stop string's start)
        # a stop string may straddle steps: keep back what could be its beginning
        self.hold = max(map(len, self.stops), default=1) - 1

    def take(self, token: str) -> bool:
        """Add one drawn token; True when the stream is done."""
        before = len(self.text)
        self.text += token
        self.produced += 1
        if self.stops:
            # as chargen.generation.stops.stop_at: the text ends where the first stop string begins (not sent)
            found = [i for i in (self.text.find(s, max(0, before - self.hold)) for s in self.stops) if i >= 0]
            if found:
                self.end = min(found)
                return True
        if self.produced >= self.request.length or self.cancelled:
            self.end = len(self.text)
            return True
        return False

    def ready(self, done: bool, chunk: int) -> str | None:
        """The next piece for the reader: every ``chunk`` characters, and the rest once done."""
        upto = (self.end if self.end is not None else len(self.text)) if done else len(self.text) - self.hold
        if not done and upto - self.sent < chunk:
            return None
        piece, self.sent = self.text[self.sent : upto], max(self.sent, upto)
        return piece

    async def read(self) -> AsyncIterator[str]:
        """The stream's text as it is generated; leaving early (a client gone) takes it out of the batch."""
        try:
            while True:
                item = await self.pieces.get()
                if item is None:
                    return
                if isinstance(item, ApiError):
                    raise item
                if item:
                    yield item
        finally:
            self.cancelled = True


def sampler(decoding: Decoding, generators: list[torch.Generator], vocab_size: int, device: torch.device, *,
            length: int = 1, context: list[int] | None = None, masks: list[CharMask] | None = None,
            prime: str = "") -> LeanSampler:
    """The draw for streams that decode alike: the one place the batch reads a request's decoding settings.

    ``length``, ``context`` (the prime's ids), ``masks`` and ``prime``: one stream's, for a stream that keeps
    its own pipeline (``Decoding.stateful``), as ``chargen.generation.sample.generate_streams`` builds it.
    """
    pipeline = LogitsPipeline(decoding.config(), len(generators), vocab_size, length=length, context=context or (),
                              masks=masks or (), prime=prime, device=device)
    return LeanSampler(len(generators), vocab_size, generators=generators, device=device, pipeline=pipeline)


class Batcher:
    """A model's generation thread: streams join through :meth:`submit` and are stepped together."""

    def __init__(self, loaded: Loaded, max_batch: int, log: Callable[[str], None] | None = None) -> None:
        self.model = loaded.model
        self.vocab = loaded.vocab
        self.tokens = loaded.vocab.tokens
        self.device = next(loaded.model.parameters()).device
        self.max_batch = max_batch
        self.chunk = _chunk(loaded)
        self.log = log or (lambda line: None)
        self.joining: queue.SimpleQueue[Stream | None] = queue.SimpleQueue()
        self._steppers: OrderedDict[int, Stepper] = OrderedDict()
        self._thread = threading.Thread(target=self._run, name="chargen-generate", daemon=True)
        self._started = False

    def submit(self, stream: Stream) -> None:
        if not self._started:
            self._started = True
            self._thread.start()
        elif not self._thread.is_alive():  # it logged why; a request must not wait for it forever
            raise ApiError(500, "generation has stopped on this server; restart it")
        self.joining.put(stream)

    def close(self) -> None:
        """End the thread (streams still in it get an error); returns once it has stopped."""
        if self._started:
            self.joining.put(None)
            self._thread.join()

    # -- the model's thread --------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # noqa: BLE001 - said in one line; submit() refuses from now on
            self.log(f"the generation thread stopped: {type(e).__name__}: {e}")

    def _loop(self) -> None:
        active: list[Stream] = []
        waiting: list[Stream] = []
        closing = False
        with torch.inference_mode():
            batch = _Batch(self)
            while True:
                # idle: sleep until a stream comes; busy: take whoever arrived, without waiting
                while not closing and (not active and not waiting or not self.joining.empty()):
                    stream = self.joining.get()
                    if stream is None:
                        closing = True
                    else:
                        waiting.append(stream)
                if closing:
                    for stream in active + waiting:
                        deliver([(stream, ApiError(503, "the server is shutting down"))])
                    return
                joiners, waiting = waiting[: self.max_batch - len(active)], waiting[self.max_batch - len(active) :]
                try:
                    active = batch.advance(joiners)
                except Exception as e:  # noqa: BLE001 - one failed step must not end generation for good
                    self.log(f"generation failed: {type(e).__name__}: {e}")
                    error = ApiError(500, f"generation failed: {type(e).__name__}")
                    deliver([(stream, error) for stream in batch.streams + joiners])
                    batch = _Batch(self)
                    active = []

    def stepper(self, n: int, state: State) -> Stepper:
        """A stepper for ``n`` streams carrying ``state`` (kept per batch size, the least recently used dropped)."""
        stepper = self._steppers.pop(n, None) or make_stepper(self.model, n)
        self._steppers[n] = stepper
        while len(self._steppers) > STEPPERS:
            self._steppers.popitem(last=False)
        stepper.load(state)
        return stepper



def deliver(items: list[tuple[Stream, Any]]) -> None:
    """Hand pieces to their readers on their event loops: one wake-up per loop per step."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Stream, Any]]] = {}
    for stream, item in items:
        by_loop.setdefault(stream.loop, []).append((stream, item))
    for loop, some in by_loop.items():
        try:
            loop.call_soon_threadsafe(_put, some)
        except RuntimeError:  # the loop has closed: nobody is reading any more
            pass


def _put(items: list[tuple[Stream, Any]]) -> None:
    for stream, item in items:
        stream.pieces.put_nowait(item)


def dead_end(error: ChargenError) -> ApiError:
    """A stream its constraints left no character to write: its answer ends with this error."""
    return ApiError(422, f"generation stopped: {named(error)}")


def batchable(model: nn.Module) -> bool:
    """Whether the batch can carry this model: a recurrent LM, whose state is ``(layers, N, size)`` tensors."""
    return isinstance(model, CharLM)


def _chunk(loaded: Loaded) -> int:
    """Pieces of the model's training length, as chargen sample writes them."""
    return int((loaded.config.get("task_config") or {}).get("options", {}).get("seq_len", 30))


class Solo:
    """Generation request by request in a few threads, for families the batch cannot carry (see :func:`batchable`).

    Each request runs ``chargen.generation.sample.generate`` as ``chargen sample`` does, cut at its stop strings.
    """

    def __init__(self, loaded: Loaded, workers: int, log: Callable[[str], None] | None = None) -> None:
        self.loaded = loaded
        self.chunk = _chunk(loaded)
        self.log = log or (lambda line: None)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chargen-generate")

    def submit(self, stream: Stream) -> None:
        self.pool.submit(self._run, stream)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, stream: Stream) -> None:
        request = stream.request
        if stream.cancelled:  # its client left while it waited for a thread
            return
        try:
            with torch.inference_mode():
                pieces = stop_at(generate(self.loaded.model, self.loaded.vocab, prime=request.prime,
                                          length=request.length, seed=request.seed, chunk_size=self.chunk,
                                          decode=request.decoding.config(), masks=stream.constraints.masks),
                                 list(stream.stops))
                for piece in pieces:
                    if stream.cancelled:
                        pieces.close()  # stops generating
                        break
                    deliver([(stream, piece)])
            deliver([(stream, None)])
        except DeadEnd as e:
            deliver([(stream, dead_end(e))])
        except Exception as e:  # noqa: BLE001 - one line in the log, an error for the reader
            self.log(f"generation failed: {type(e).__name__}: {e}")
            deliver([(stream, ApiError(500, f"generation failed: {type(e).__name__}"))])


class _Batch:
    """The active streams, their logits to draw from next, the stepper that carries their state."""

    def __init__(self, owner: Batcher) -> None:
        self.owner = owner
        self.streams: list[Stream] = []
        self.logits: Tensor | None = None  # (N, V)
        self.stepper: Stepper | None = None
        self.draws: list[tuple[Tensor | None, Callable[..., Tensor]]] = []
        self.ids = torch.empty(0, dtype=torch.long)

    def advance(self, joiners: list[Stream]) -> list[Stream]:
        """Draw one token per stream, let the done ones leave and ``joiners`` in, step; returns who is active."""
        owner, streams = self.owner, self.streams
        out: list[tuple[Stream, Any]] = []
        done = [False] * len(streams)
        if streams:
            ids, failed = self._draw()
            for i, (stream, token) in enumerate(zip(streams, ids.tolist())):
                if i in failed:
                    done[i] = True
                    out.append((stream, failed[i]))
                    continue
                done[i] = stream.take(owner.tokens[token])
                piece = stream.ready(done[i], owner.chunk)
                if piece is not None:
                    out.append((stream, piece))
                if done[i]:
                    out.append((stream, None))
        primed = self._prime(joiners, out)
        if not primed and not any(done):
            if streams:
                self.logits = self.stepper.step(ids)  # type: ignore[union-attr]
        else:
            self._regroup(done, primed)
        deliver(out)
        return self.streams

    def _draw(self) -> tuple[Tensor, dict[int, ApiError]]:
        """One id per stream, and the streams whose constraints left them nothing (by row: the error they end with)."""
        logits = self.logits
        failed: dict[int, ApiError] = {}
        for rows, draw in self.draws:
            if rows is None:
                draw(logits, out=self.ids)
                continue
            try:
                self.ids.index_copy_(0, rows, draw(logits.index_select(0, rows)))  # type: ignore[union-attr]
            except DeadEnd as e:  # only a stream's own pipeline has masks: one row
                failed[int(rows[0])] = dead_end(e)
                self.ids[rows] = 0
        return self.ids, failed

    def _start(self, stream: Stream, out: list[tuple[Stream, Any]]) -> list[int] | None:
        """A joining stream's own generator and the ids it is primed with (None: it is already done)."""
        owner, request = self.owner, stream.request
        if stream.cancelled or request.length == 0:
            out.append((stream, None))
            return None
        stream.generator = torch.Generator(device=owner.device)
        stream.generator.manual_seed(request.seed)
        decoding = request.decoding
        if decoding.stateful:  # its own pipeline, from its prime on, as chargen sample builds it
            stream.draw = sampler(decoding, [stream.generator], len(owner.vocab), owner.device,
                                  length=request.length, context=stream.prime_ids,
                                  masks=stream.constraints.masks, prime=request.prime)
        # as chargen.generation.sample.generate_streams: the prime, else a line break, else a first character drawn uniformly
        if stream.prime_ids:
            return stream.prime_ids
        if START_CONTEXT in owner.vocab:
            return [owner.vocab.id(START_CONTEXT)]
        pipeline = stream.draw.pipeline if stream.draw is not None else None
        first = first_characters(len(owner.vocab.specials), len(owner.vocab), [stream.generator], pipeline).tolist()
        if pipeline is not None:
            pipeline.advance(torch.tensor(first, device=owner.device))
        if stream.take(owner.tokens[first[0]]):
            out += [(stream, stream.ready(True, owner.chunk)), (stream, None)]
            return None
        return first

    def _prime(self, joiners: list[Stream], out: list[tuple[Stream, Any]]) -> list[tuple[Stream, Tensor, State]]:
        """Run the joiners' primes through the model's own forward: (stream, logits (1, V), state rows) each.

        Primes of one length run as one batch, as ``chargen sample -n`` runs its streams' common prime.
        """
        by_length: dict[int, list[tuple[Stream, list[int]]]] = {}
        for stream in joiners:
            ids = self._start(stream, out)
            if ids is not None:
                by_length.setdefault(len(ids), []).append((stream, ids))
        primed = []
        for group in by_length.values():
            reference = ReferenceStepper(self.owner.model, len(group))
            ids = torch.tensor([ids for _, ids in group], device=self.owner.device).T  # (T, J)
            logits = reference.prime(ids).clone()
            state = reference.state
            assert state is not None
            primed += [(stream, logits[j : j + 1], tuple(s[:, j : j + 1] for s in state))
                       for j, (stream, _) in enumerate(group)]
        return primed

    def _regroup(self, done: list[bool], primed: list[tuple[Stream, Tensor, State]]) -> None:
        """The batch without the done streams and with the primed ones: state rows selected and concatenated."""
        keep = [i for i, gone in enumerate(done) if not gone]
        states: list[State] = []
        logits: list[Tensor] = []
        if keep:
            stepper = self.stepper
            assert stepper is not None
            rows = torch.tensor(keep, device=self.owner.device)
            stepped = stepper.step(self.ids)  # every row steps; the done rows are dropped below
            logits.append(stepped.index_select(0, rows))
            states.append(tuple(s.index_select(1, rows) for s in stepper.state))  # type: ignore[union-attr]
        for _, first, state in primed:
            logits.append(first)
            states.append(state)
        self.streams = [self.streams[i] for i in keep] + [stream for stream, _, _ in primed]
        if not self.streams:
            self.logits, self.stepper, self.draws = None, None, []
            return
        n = len(self.streams)
        self.logits = torch.cat(logits)
        self.stepper = self.owner.stepper(n, tuple(torch.cat(parts, dim=1) for parts in zip(*states)))
        self.ids = torch.empty(n, dtype=torch.long, device=self.owner.device)
        groups: dict[Decoding, list[int]] = {}
        own: list[tuple[Tensor | None, Callable[..., Tensor]]] = []
        device = self.owner.device
        for i, stream in enumerate(self.streams):
            if stream.draw is not None:
                own.append((torch.tensor([i], device=device), stream.draw))
            else:
                groups.setdefault(stream.request.decoding, []).append(i)
        vocab_size = self.logits.shape[1]
        self.draws = [(None if len(rows) == n else torch.tensor(rows, device=device),
                       sampler(decoding, [self.streams[i].generator for i in rows], vocab_size, device))
                      for decoding, rows in groups.items()] + own
