"""The one logits pipeline: every decoding control (penalties, masks, temperature, top-k/p, min-p, typical), in one order.

:class:`DecodeConfig` holds the controls (validated: an impossible or contradictory setting is a
UsageError naming its parameter); :class:`LogitsPipeline` applies them to a batch of next-character
logits ``(N, V)`` for N streams, keeping what each stream has written. Every generation path
(``chargen.generation.sample``'s lean and reference draws, ``-n`` batches, the name generator) builds one
pipeline and calls :meth:`LogitsPipeline.process` once per character, then draws one id per stream
from ``softmax(scores)``, as ``torch.multinomial`` does.

The order, as in Hugging Face's ``GenerationConfig`` (processors, then warpers):

1. **repetition penalty** (CTRL, Keskar et al. 2019; HF's ``RepetitionPenaltyLogitsProcessor``):
   each character present in the last ``repetition_window`` characters of the stream's text has
   its raw logit divided by the penalty if positive, multiplied by it if negative (once, however
   often it occurs). As in CTRL and HF, the rule reads the sign of the raw logit, which a softmax
   ignores: a character model's logits sit around 0, so both branches occur. A character window
   matters more than a token one would: "e" and " " are in almost every window of 64, so keep
   the penalty mild (1.1-1.3) or the window short;
2. **hard masks**: ``banned`` ids (special tokens) and each ``chargen.generation.masks.CharMask``'s
   ``allowed()`` set to -inf, so every warper below renormalises over what the constraints permit;
3. **no-repeat**: -inf for every character that would complete a character ``no_repeat``-gram
   already present in the stream's text;
4. **greedy** (``greedy``, or a temperature of 0 at this step): argmax of the scores so far;
   the warpers below are skipped, since none of them can remove the likeliest character;
5. **temperature**, possibly scheduled: ``(x - max) / T(t)``, with t the index of the generated character;
6. **top-k**: keep the k likeliest;
7. **top-p** (nucleus, Holtzman et al. 2020): keep the likeliest characters until their mass reaches p
   (a character is kept when the mass of the characters likelier than it is below p);
8. **min-p** (Nguyen et al. 2024): keep the characters whose probability is at least ``min_p``
   times the likeliest one's;
9. **typical** (locally typical sampling, Meister et al. 2023): rank characters by how far their
   surprisal ``-log p`` is from the entropy of the distribution, keep the closest until their mass
   reaches ``typical``.

Each warper keeps at least one character and works on the distribution its predecessors left
(renormalised), as HF's do. Neutral values are skipped, so they change nothing bit for bit:
``top_p = 1``, ``min_p = 0``, ``typical = 1``, ``repetition_penalty = 1``.

**The stream's text** (what the penalty window and the no-repeat n-grams look at) is the prime
followed by the generated characters: it is what the reader sees and what the model conditions on,
as in CTRL and HF, where the prompt is part of ``input_ids``. The newline an unprimed sample
continues is fed but not written, so it is not part of the text.

**Why character n-grams for no-repeat.** A character model emits characters, so a constraint on
characters acts at the step that decides: a word n-gram is only complete at the next space, by
which time the repeated words are written and the only escape left is to mangle the last word.
A character N-gram also covers what words miss (loops inside a word, punctuation, the line breaks
of verse). N sets the scale: 3-5 forbids ordinary spelling, so use a span of a few words, such as
12-20 characters, which breaks the attractor loops of low-temperature sampling ("and the second
son went into the...") while leaving common words free.

**Temperature schedules** (``temperature`` as a string such as ``"0.8:0.4"``): see
``chargen.generation.schedule``. A temperature of 0 at a step is greedy at that step.

**One stream on the CPU** takes a fast path (``chargen.generation.lean_logits``) that returns the
same scores bit for bit in fewer kernels; ``lean=False`` forces the general one (tests compare them).

**Dead ends.** When the hard masks (steps 2-3) leave a stream no character at all, generation stops
with :class:`DeadEnd`, one line naming the stream and the reason (the mask's ``dead_end``, or the
``no_repeat`` length to raise); nothing is drawn from an empty distribution. The warpers (5-9)
always keep at least one character, so they never cause one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import Tensor

from chargen.errors import ChargenError, UsageError
from chargen.generation.lean_logits import OneStream
from chargen.generation.masks import CharMask
from chargen.generation.schedule import Schedule, parse_schedule

MAX_WINDOW = 1_000_000  # a repetition window or n-gram larger than any sample is a typo
NEG_INF = float("-inf")


class DeadEnd(ChargenError):
    """Every character is forbidden for a stream (by its masks or no-repeat): generation cannot go on."""


# --------------------------------------------------------------------------- the controls


def _number(name: str, value: Any, kind: type = float) -> Any:
    """``value`` as ``kind`` (int or float), refusing bools, strings and non-numbers with the parameter's name."""
    ok = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok):
        raise UsageError(f"{name} must be {'a whole number' if kind is int else 'a number'}, got {value!r}",
                         params=name)
    value = kind(value)
    if kind is float and not math.isfinite(value):
        raise UsageError(f"{name} must be a finite number, got {value}", params=name)
    return value


@dataclass
class DecodeConfig:
    """Every decoding control of a sample; the defaults are plain sampling from the model's distribution.

    ``temperature``: a number (0 = greedy) or a schedule string (module docstring). ``top_k``: keep the
    k likeliest (None: all). ``top_p``: nucleus mass in (0, 1] (1: off). ``min_p`` in [0, 1] (0: off).
    ``typical``: locally typical mass in (0, 1] (1: off). ``repetition_penalty`` > 0 (1: off; above 1
    discourages repeats) over the last ``repetition_window`` characters. ``no_repeat``: never complete
    a character n-gram of this length already in the text (None or 0: off). ``greedy``: argmax.
    """

    temperature: float | str = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    min_p: float = 0.0
    typical: float = 1.0
    repetition_penalty: float = 1.0
    repetition_window: int = 64
    no_repeat: int | None = None
    greedy: bool = False
    schedule: Schedule = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.schedule = parse_schedule(self.temperature)
        if self.schedule.is_constant():
            self.temperature = self.schedule.values[0]
        if self.top_k is not None:
            self.top_k = _number("top_k", self.top_k, int)
            if self.top_k < 1:
                raise UsageError(f"top_k must be at least 1, got {self.top_k}", params="top_k")
        self.top_p = _number("top_p", self.top_p)
        if not 0 < self.top_p <= 1:
            raise UsageError(f"top_p must be in (0, 1] (1 = off), got {self.top_p}", params="top_p")
        self.min_p = _number("min_p", self.min_p)
        if not 0 <= self.min_p <= 1:
            raise UsageError(f"min_p must be in [0, 1] (0 = off), got {self.min_p}", params="min_p")
        self.typical = _number("typical", self.typical)
        if not 0 < self.typical <= 1:
            raise UsageError(f"typical must be in (0, 1] (1 = off), got {self.typical}", params="typical")
        self.repetition_penalty = _number("repetition_penalty", self.repetition_penalty)
        if self.repetition_penalty <= 0:
            raise UsageError(f"repetition_penalty must be positive (1 = off, above 1 discourages repeats), "
                             f"got {self.repetition_penalty}", params="repetition_penalty")
        self.repetition_window = _number("repetition_window", self.repetition_window, int)
        if not 1 <= self.repetition_window <= MAX_WINDOW:
            raise UsageError(f"repetition_window must be between 1 and {MAX_WINDOW:,} characters, "
                             f"got {self.repetition_window}", params="repetition_window")
        if self.no_repeat is not None:
            self.no_repeat = _number("no_repeat", self.no_repeat, int)
            if not 0 <= self.no_repeat <= MAX_WINDOW:
                raise UsageError(f"no_repeat must be between 1 and {MAX_WINDOW:,} characters (0 = off), "
                                 f"got {self.no_repeat}", params="no_repeat")
            self.no_repeat = self.no_repeat or None
        if not isinstance(self.greedy, bool):
            raise UsageError(f"greedy must be true or false, got {self.greedy!r}", params="greedy")
        self._check_contradictions()

    def _check_contradictions(self) -> None:
        if self.greedy and not (self.schedule.is_constant() and self.temperature in (0.0, 1.0)):
            shown = self.temperature if self.schedule.is_constant() else repr(self.temperature)
            raise UsageError(f"greedy and temperature {shown} contradict each other (greedy decoding is temperature 0); "
                             "drop one", params=("greedy", "temperature"))
        greedy_by = "greedy" if self.greedy else "temperature" if self.is_greedy else None
        for name in self.warpers() if greedy_by else ():
            said = "greedy" if greedy_by == "greedy" else "temperature 0"
            raise UsageError(f"{said} and {name} contradict each other (greedy decoding always takes the likeliest "
                             "character, which no sampling filter changes); drop one", params=(greedy_by, name))

    def warpers(self) -> list[str]:
        """The sampling warpers that are on (each changes the distribution a character is drawn from)."""
        on = {"top_k": self.top_k is not None, "top_p": self.top_p < 1, "min_p": self.min_p > 0,
              "typical": self.typical < 1}
        return [name for name, active in on.items() if active]

    def changed(self) -> list[str]:
        """The controls set away from their defaults (``repetition_window`` counts only with a penalty)."""
        default = DecodeConfig()
        names = [f.name for f in fields(self) if f.init and getattr(self, f.name) != getattr(default, f.name)]
        if self.repetition_penalty == 1.0 and "repetition_window" in names:
            names.remove("repetition_window")
        return names

    @property
    def is_greedy(self) -> bool:
        """Argmax at every step (a schedule that reaches 0 is greedy only where it is 0)."""
        return self.greedy or (self.schedule.is_constant() and self.temperature == 0.0)

    def check_beam(self) -> None:
        """Beam search is deterministic: refuse every control it would silently ignore."""
        changed = self.changed()
        if changed:
            raise UsageError(f"beam search is deterministic and takes no decoding controls; drop {', '.join(changed)}",
                             params=("beams", *changed))

    def to_dict(self) -> dict[str, Any]:
        """The controls as plain JSON values (the inverse of :meth:`from_dict`)."""
        return {k: v for k, v in asdict(self).items() if k != "schedule"}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, others: Iterable[str] = ()) -> DecodeConfig:
        """Controls from a mapping of the same names (a request body, a config file); None means the default.

        ``others``: names the caller reads itself (a request's ``prime``, ``length``, ``seed``), skipped.
        Any other unknown name is refused, listing the known ones, so a typo is never a silent default.
        """
        known = [f.name for f in fields(cls) if f.init]
        values = {k: v for k, v in values.items() if k not in set(others)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UsageError(f"unknown decoding control{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                             f"known: {', '.join(known)}", params=tuple(unknown))
        return cls(**{k: v for k, v in values.items() if v is not None})


CONTROLS: tuple[str, ...] = tuple(f.name for f in fields(DecodeConfig) if f.init)  # the names a dict or keywords use


def decode_config(decode: DecodeConfig | Mapping[str, Any] | None = None, **controls: Any) -> DecodeConfig:
    """One DecodeConfig from either a config (or a dict of its names) or keyword controls, not both."""
    if decode is not None and any(v is not None for v in controls.values()):
        given = sorted(k for k, v in controls.items() if v is not None)
        raise UsageError(f"pass the decoding controls either as decode or as keywords, not both ({', '.join(given)})",
                         params=("decode", *given))
    if isinstance(decode, DecodeConfig):
        return decode
    return DecodeConfig.from_dict(decode if decode is not None else controls)


# --------------------------------------------------------------------------- the pipeline


class LogitsPipeline:
    """The controls of one :class:`DecodeConfig` applied to N streams, step after step (module docstring's order).

    ``process(logits (N, V))`` returns the scores to draw from (-inf for what may not be drawn),
    ``step_greedy`` then says whether this step is argmax (draw ``argmax(scores)``), and ``advance(ids (N,))`` records what each stream
    emitted. ``context``: the text each stream has already written (its prime), as ids, one list for
    all streams or one per stream; ``length``: the number of characters to generate (the horizon
    of a schedule and the ``remaining`` steps the masks are told); ``banned``: ids never drawn.
    Buffers are allocated once; the scores returned live in one, overwritten by the next call.
    """

    def __init__(
        self,
        config: DecodeConfig,
        batch: int,
        vocab_size: int,
        *,
        length: int = 1,
        context: Sequence[int] | Sequence[Sequence[int]] = (),
        banned: Sequence[int] | Tensor | None = None,
        masks: Sequence[CharMask] = (),
        prime: str = "",
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        lean: bool = True,
    ) -> None:
        self.config, self.batch, self.vocab_size, self.length = config, batch, vocab_size, max(1, length)
        self.t = 0
        contexts = _per_stream(context, batch)
        self.masks = list(masks)
        self.mask_states = [mask.start(batch, prime) for mask in self.masks]
        kw = {"device": device}
        with torch.inference_mode():
            self.scores = torch.empty(batch, vocab_size, dtype=dtype, **kw)
            self.peak = torch.empty(batch, 1, dtype=dtype, **kw)
            self.mask = torch.empty(batch, vocab_size, dtype=torch.bool, **kw)
            self.banned = None
            if banned is not None and len(banned):
                self.banned = torch.as_tensor(banned, dtype=torch.long, device=device)
            # one stream on the CPU with a control to apply takes the fast path (chargen.generation.lean_logits),
            # which keeps its own penalty window; plain sampling is three kernels either way
            lean = lean and batch == 1 and torch.device(device).type == "cpu" and dtype == torch.float32 \
                and bool(config.repetition_penalty != 1.0 or config.no_repeat or config.warpers())
            self.penalty: _Penalty | None = None
            if config.repetition_penalty != 1.0 and not lean:
                self.penalty = _Penalty(config, contexts, vocab_size, dtype, device)
            room = vocab_size - (0 if self.banned is None else len(set(self.banned.tolist())))
            self.no_repeat = _NoRepeat(config.no_repeat, contexts, room) if config.no_repeat else None
            self.top_k = config.top_k if config.top_k is not None and config.top_k < vocab_size else None
            self.top_k_alone = self.top_k is not None and config.top_p == 1.0  # else top-p's sort serves it
            if self.top_k_alone:
                self.top_vals = torch.empty(batch, self.top_k, dtype=dtype, **kw)
                self.top_idx = torch.empty(batch, self.top_k, dtype=torch.long, **kw)
                self.kth = self.top_vals[:, self.top_k - 1 :]
            self.sorted_path = config.top_p < 1 or config.typical < 1
            if self.sorted_path:
                self.sorted = torch.empty(batch, vocab_size, dtype=dtype, **kw)
                self.order = torch.empty(batch, vocab_size, dtype=torch.long, **kw)
                self.sorted_p = torch.empty(batch, vocab_size, dtype=dtype, **kw)
                self.before = torch.zeros(batch, vocab_size, dtype=dtype, **kw)  # column 0 stays 0
                self.before_tail, self.sorted_head = self.before[:, 1:], self.sorted_p[:, :-1]
                self.cut = torch.empty(batch, vocab_size, dtype=torch.bool, **kw)
                self.top_p = torch.tensor(config.top_p, dtype=dtype, **kw)
                if self.top_k is not None:
                    self.sorted_tail = self.sorted[:, self.top_k :]
                self.mass = torch.tensor(config.typical, dtype=dtype, **kw)
            if config.min_p > 0:
                self.log_min_p = torch.tensor(math.log(config.min_p), dtype=dtype, **kw)
            if config.typical < 1:
                self.p = torch.empty(batch, vocab_size, dtype=dtype, **kw)
                self.distance = torch.empty(batch, vocab_size, dtype=dtype, **kw)
                self.mean = torch.empty(batch, 1, dtype=dtype, **kw)
        self.constant = config.schedule.is_constant()
        self.temperature = float(config.schedule.values[0])
        with torch.inference_mode():  # a tensor: dividing by a Python float would wrap it anew every step
            self.t_value = torch.tensor(self.temperature, dtype=dtype, device=device)
        self.hard = self.banned is not None or bool(self.masks) or self.no_repeat is not None
        self._tiny = torch.finfo(dtype).tiny
        self.step_greedy = config.is_greedy  # whether the step process() last prepared is argmax
        with torch.inference_mode():
            self.lean = OneStream(self, contexts[0]) if lean else None

    def process(self, logits: Tensor) -> Tensor:
        """The scores ``(N, V)`` of this step, in the documented order (logits are not modified)."""
        if torch.is_inference_mode_enabled():  # a generation loop enters it once, not per character
            return self._process(logits)
        with torch.inference_mode():
            return self._process(logits)

    def _process(self, logits: Tensor) -> Tensor:
        config = self.config
        if not self.constant:
            self.temperature = config.schedule.at(self.t, self.length)
            self.t_value.fill_(self.temperature)
        # a temperature that underflows in the logits' dtype is greedy too: (x - max) / T would be -inf or NaN
        self.step_greedy = config.greedy or self.temperature < self._tiny
        if self.lean is not None:
            return self.lean.process(logits if logits.dtype == torch.float32 else logits.float())
        scores = logits
        if self.penalty is not None:
            scores = self.penalty.apply(scores, self.scores)
        if self.hard:
            scores = self._hard_masks(scores)
        if self.step_greedy:
            return scores
        if self.temperature != 1.0 or self.top_k is not None or self.sorted_path or config.min_p > 0:
            # shift by the max before dividing: a tiny temperature then sends the rest to -inf, not inf - inf
            torch.amax(scores, dim=-1, keepdim=True, out=self.peak)
            scores = torch.sub(scores, self.peak, out=self.scores)
            if self.temperature != 1.0:
                scores.div_(self.t_value)
        if self.top_k_alone:
            torch.topk(scores, self.top_k, dim=-1, out=(self.top_vals, self.top_idx))
            torch.lt(scores, self.kth, out=self.mask)
            scores.masked_fill_(self.mask, NEG_INF)
        elif config.top_p < 1:
            self._top_p(scores)
        if config.min_p > 0:
            # p_i < min_p * p_max  <=>  x_i - x_max < log(min_p), on scores already shifted to max 0
            torch.lt(scores, self.log_min_p, out=self.mask)
            scores.masked_fill_(self.mask, NEG_INF)
        if config.typical < 1:
            self._typical(scores)
        return scores

    def allowed(self) -> Tensor:
        """Bool ``(N, V)``: what the hard masks (banned ids, masks, no-repeat) let each stream write next."""
        with torch.inference_mode():
            return ~torch.isneginf(self._hard_masks(torch.zeros_like(self.scores)))

    def advance(self, ids: Tensor, first: int | None = None) -> None:
        """Record that each stream emitted ``ids (N,)`` (``first``: ``ids[0]`` as an int, when the caller has it)."""
        if not torch.is_inference_mode_enabled():
            with torch.inference_mode():
                return self.advance(ids, first)
        self.t += 1
        if self.lean is not None:
            first = int(ids[0]) if first is None else first
            self.lean.remember(first)
            if self.no_repeat is not None:
                self.no_repeat.advance([first])
        else:
            if self.penalty is not None:
                self.penalty.advance(ids)
            if self.no_repeat is not None:
                self.no_repeat.advance(ids.tolist())
        for i, mask in enumerate(self.masks):
            self.mask_states[i] = mask.advance(self.mask_states[i], ids)

    def _hard_masks(self, scores: Tensor) -> Tensor:
        if scores is not self.scores:
            scores = self.scores.copy_(scores)
        if self.banned is not None:
            scores.index_fill_(1, self.banned, NEG_INF)
        self._apply_masks(scores)
        maybe_dead = self.no_repeat is not None and self.no_repeat.ban(scores)
        if maybe_dead or self.masks:
            dead = torch.isneginf(scores).all(dim=-1)
            if bool(dead.any()):
                self._dead_end(int(dead.nonzero()[0, 0]))
        return scores

    def _apply_masks(self, scores: Tensor) -> None:
        remaining = self.length - self.t
        for mask, state in zip(self.masks, self.mask_states):
            torch.logical_not(mask.allowed(state, remaining), out=self.mask)
            scores.masked_fill_(self.mask, NEG_INF)

    def _dead_end(self, row: int) -> None:
        remaining = self.length - self.t
        for mask, state in zip(self.masks, self.mask_states):
            if not bool(mask.allowed(state, remaining)[row].any()):
                raise DeadEnd(f"stream {row}: {mask.dead_end(state, row)}")
        if self.no_repeat is None:
            raise DeadEnd(f"stream {row}: the masks together leave it no character to write")
        raise DeadEnd(f"stream {row}: every character it may write next would repeat a {self.config.no_repeat}-character "
                      f"sequence already in its text (no_repeat={self.config.no_repeat}); raise no_repeat",
                      params="no_repeat")

    def _nucleus(self, mass: Tensor, scores: Tensor) -> None:
        """Cut the characters ranked by ``self.order`` (probabilities ``self.sorted_p`` in that order) once the
        mass of those ranked before reaches ``mass``."""
        # the mass of the characters ranked before each (an exclusive cumsum): the first always stays
        torch.cumsum(self.sorted_head, dim=-1, out=self.before_tail)
        torch.ge(self.before, mass, out=self.cut)
        if mass is self.top_p and self.top_k is not None:  # top-k's cut, whatever the rounding of the mass kept
            self.cut[:, self.top_k :] = True
        self.mask.scatter_(1, self.order, self.cut)  # back to vocabulary order
        scores.masked_fill_(self.mask, NEG_INF)

    def _top_p(self, scores: Tensor) -> None:
        # stable: among equal scores the lower id ranks first, as argmax picks it (top_p -> 0 is greedy)
        torch.sort(scores, dim=-1, descending=True, stable=True, out=(self.sorted, self.order))
        if self.top_k is not None:  # top-k on the sorted scores, before top-p renormalises
            self.sorted_tail.fill_(NEG_INF)
        torch.softmax(self.sorted, dim=-1, out=self.sorted_p)
        self._nucleus(self.top_p, scores)

    def _typical(self, scores: Tensor) -> None:
        # |surprisal - H| = |-log p_i - H| = |x_i - E_p[x]|: log p_i = x_i - log Z and H = log Z - E_p[x]
        torch.softmax(scores, dim=-1, out=self.p)
        torch.mul(self.p, scores, out=self.distance)
        torch.nansum(self.distance, dim=-1, keepdim=True, out=self.mean)  # 0 * -inf is NaN: skipped
        torch.sub(scores, self.mean, out=self.distance).abs_()
        # stable, so that equal distances rank the lower id first on every path (the lean one sorts with numpy)
        torch.sort(self.distance, dim=-1, stable=True, out=(self.sorted, self.order))
        torch.gather(self.p, 1, self.order, out=self.sorted_p)
        self._nucleus(self.mass, scores)


def _per_stream(context: Sequence[int] | Sequence[Sequence[int]], batch: int) -> list[list[int]]:
    """One id list per stream from one shared list or N lists."""
    if len(context) and not isinstance(context[0], int):
        rows = [list(map(int, row)) for row in context]  # type: ignore[arg-type]
        if len(rows) != batch:
            raise ValueError(f"one context per stream: expected {batch}, got {len(rows)}")
        return rows
    shared = [int(i) for i in context]  # type: ignore[arg-type]
    return [list(shared) for _ in range(batch)]


class _Penalty:
    """CTRL's repetition penalty over a ring of each stream's last W characters.

    The ring starts as the context's last W ids; slots not yet filled repeat an id already in it
    (a duplicate changes nothing: the penalty applies once per character, as HF's gather/scatter
    does), so the ring always holds real ids and one gather + one scatter serve every step.
    """

    def __init__(self, config: DecodeConfig, contexts: list[list[int]], vocab_size: int, dtype: torch.dtype,
                 device: torch.device | str) -> None:
        self.penalty = config.repetition_penalty
        self.window = min(config.repetition_window, MAX_WINDOW)
        filled = {len(row[-self.window :]) for row in contexts}
        if len(filled) > 1:  # one write position for the batch
            raise ValueError("the streams' contexts must have the same length (or all reach the window)")
        self.started = bool(filled.pop())  # there is text to look back on
        self.ring = torch.zeros(len(contexts), self.window, dtype=torch.long, device=device)
        if self.started:
            self.ring.copy_(torch.tensor([_fill(row[-self.window :], self.window) for row in contexts], device=device))
        self.slots = list(self.ring.unbind(1))
        self.pos = len(contexts[0][-self.window :]) % self.window
        self.factor = torch.tensor(self.penalty, dtype=dtype, device=device)
        self.pick = torch.minimum if self.penalty > 1 else torch.maximum
        self.picked = torch.empty(len(contexts), self.window, dtype=dtype, device=device)
        self.divided = torch.empty_like(self.picked)

    def apply(self, logits: Tensor, out: Tensor) -> Tensor:
        if not self.started:
            return logits
        torch.gather(logits, 1, self.ring, out=self.picked)
        torch.div(self.picked, self.factor, out=self.divided)
        self.picked.mul_(self.factor)
        # x / p for x > 0, x * p for x < 0 is the smaller of the two when p > 1, the larger when p < 1
        self.pick(self.picked, self.divided, out=self.picked)
        return torch.scatter(logits, 1, self.ring, self.picked, out=out)  # the copy and the write in one kernel

    def advance(self, ids: Tensor) -> None:
        if not self.started:  # the first character written: the whole ring holds it
            self.ring.copy_(ids.view(-1, 1).expand_as(self.ring))
            self.started, self.pos = True, 1 % self.window
            return
        self.slots[self.pos].copy_(ids)
        self.pos = (self.pos + 1) % self.window


def _fill(ids: list[int], width: int) -> list[int]:
    """``ids`` (at most ``width``) padded to ``width`` with copies of its first id, in ring order."""
    return ids + [ids[0]] * (width - len(ids))


class _NoRepeat:
    """Per stream: every character n-gram of its text, as ``(n-1)``-prefix -> the characters that followed it.

    Each step costs one dictionary update and one lookup per stream (amortised constant time): the
    characters that would complete an n-gram already written are those that followed the stream's
    last n-1 characters before.
    """

    def __init__(self, n: int, contexts: list[list[int]], room: int) -> None:
        self.n, self.room = n, room  # room: how many characters a stream may write at all
        self.seen: list[dict[tuple[int, ...], set[int]]] = []
        self.tails: list[list[int]] = []
        for row in contexts:
            seen: dict[tuple[int, ...], set[int]] = {}
            for end in range(n - 1, len(row)):
                seen.setdefault(tuple(row[end - n + 1 : end]), set()).add(row[end])
            self.seen.append(seen)
            self.tails.append(row[len(row) - (n - 1) :] if n > 1 else [])

    def followers(self, row: int) -> set[int] | None:
        """The characters that followed stream ``row``'s last n-1 characters before (None: too short yet)."""
        tail = self.tails[row]
        return self.seen[row].get(tuple(tail)) if len(tail) == self.n - 1 else None

    def ban(self, scores: Tensor) -> bool:
        """-inf where a stream would complete a seen n-gram; whether that may have left a stream nothing."""
        flat: list[int] = []  # row * V + id: one index_fill over the flattened scores
        width = scores.shape[1]
        for i, (seen, tail) in enumerate(zip(self.seen, self.tails)):
            if len(tail) == self.n - 1:
                followers = seen.get(tuple(tail))
                if followers:
                    flat += [i * width + c for c in followers]
        if flat:
            scores.view(-1).index_fill_(0, torch.tensor(flat, device=scores.device), NEG_INF)
        # followers were written, so none is a banned id: they leave nothing only when they fill the room
        return any(len(seen.get(tuple(tail), ())) >= self.room for seen, tail in zip(self.seen, self.tails)) \
            if flat else False

    def advance(self, ids: list[int]) -> None:
        keep = self.n - 1
        for seen, tail, new in zip(self.seen, self.tails, ids):
            if len(tail) == keep:
                seen.setdefault(tuple(tail), set()).add(new)
            if keep:
                tail.append(new)
                if len(tail) > keep:
                    del tail[0]
