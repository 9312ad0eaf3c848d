"""The JSON API's typed requests: what each endpoint accepts, checked field by field before anything runs.

A request body is a JSON object; each endpoint's dataclass reads the fields it knows, checks their
types and ranges against :class:`Limits`, and refuses a field it does not know (a misspelt
``top_p`` would otherwise be accepted and silently ignored). A refusal is an :class:`ApiError`:
an HTTP status and one line that names the field.
"""

from __future__ import annotations

import json
import math
import secrets
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any

from chargen.errors import ChargenError, UsageError
from chargen.generation.logits import CONTROLS, DecodeConfig
from chargen.generation.sample import MAX_SEED


class ApiError(Exception):
    """A request the server refuses: an HTTP status, a one-line message and any headers (``Retry-After``)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


@dataclass(frozen=True)
class Limits:
    """The largest request the server works on, and how much work it holds at once."""

    max_length: int = 2000  # characters generated per request
    max_text: int = 20_000  # characters of a prime, or of a text to score
    # characters of a text to inspect: a trace holds every layer's states and gates at every character
    # (about 40 KB a character on grimm: 20,000 characters took the server from 0.28 to 1.0 GB)
    max_inspect: int = 4000
    max_names: int = 100  # names per classify request
    max_top: int = 20  # next-character guesses per position
    max_stops: int = 8  # stop strings per generate request (each at most 100 characters)
    max_body: int = 1 << 20  # bytes of a request body
    max_bodies: int = 64 << 20  # bytes of request bodies being received at once, over all requests (then 503)
    max_depth: int = 16  # nesting of a JSON body (the API's bodies are two deep)
    max_batch: int = 64  # generate streams stepped together; more wait for a place
    max_waiting: int = 256  # generate requests waiting for a place in the batch (then 503)
    workers: int = 2  # score and classify requests computed at once, each
    inspect_workers: int = 1  # an inspect trace of max_text characters holds hundreds of MB
    max_queued: int = 8  # requests waiting for a worker, per endpoint (then 503)
    body_timeout: float = 10.0  # seconds to receive a request body
    header_timeout: float = 10.0  # seconds to receive a request's headers

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            low = 0 if f.name in ("max_waiting", "max_queued") else 1
            if isinstance(value, float):
                if not (math.isfinite(value) and value > 0):
                    raise UsageError(f"{f.name} must be a positive number of seconds, got {value}", params=f.name)
            elif value < low:
                raise UsageError(f"{f.name} must be at least {low}, got {value}", params=f.name)


def field(body: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    """``body[key]`` if it has the JSON type ``kind`` (``default`` when absent; null only where None is the default)."""
    value = body.get(key, default)
    if value is None and default is None:
        return None
    # bool is an int in Python; a JSON true is not a length
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        words = {str: "a string", int: "an integer", float: "a number", list: "a list", bool: "true or false"}
        wanted = " or ".join(words[k] for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ApiError(400, f"{key}: expected {wanted}, got {json.dumps(value)[:40]}")
    return value


def sized(key: str, text: str, limit: int) -> str:
    if len(text) > limit:
        raise ApiError(413, f"{key}: {len(text):,} characters; this server accepts at most {limit:,}")
    return text


def only_known(body: dict[str, Any], known: tuple[str, ...], endpoint: str) -> None:
    unknown = [key for key in body if key not in known]
    if unknown:
        raise ApiError(400, f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown[:5]))[:200]}; "
                            f"{endpoint} takes {', '.join(known)}")


@dataclass(frozen=True)
class Decoding:
    """How a generate request turns logits into characters: the one place its decoding fields are read.

    ``controls``: every field of ``chargen.generation.logits.DecodeConfig`` (read by
    ``DecodeConfig.from_dict``, so the server takes exactly the controls ``chargen sample`` takes), as
    sorted ``(name, value)`` pairs after validation; ``max_copy``, ``pattern`` and ``include``: the
    constraints of ``chargen.generation.constraints``; ``novelty``: report how much of each sample is
    copied from the model's corpus. Frozen and hashable: the batch groups streams that decode alike.
    """

    controls: tuple[tuple[str, Any], ...] = ()
    max_copy: int | None = None
    pattern: str | None = None
    include: tuple[str, ...] = ()
    novelty: bool = False

    CONSTRAINTS = ("max_copy", "pattern", "include", "novelty")
    FIELDS = (*CONTROLS, *CONSTRAINTS)
    MAX_PATTERN = 500  # characters of a regex
    MAX_WORDS = 8  # include words, each at most 100 characters

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Decoding:
        temperature = body.get("temperature")
        if isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and not (
                math.isfinite(temperature) and 0 <= temperature <= 100):
            raise ApiError(400, f"temperature: must be 0 (greedy) up to 100, got {temperature}")
        try:
            config = DecodeConfig.from_dict({k: body[k] for k in CONTROLS if k in body})
        except UsageError as e:
            raise ApiError(400, named(e)) from None
        max_copy = field(body, "max_copy", int, None)
        if max_copy is not None and max_copy < 1:
            raise ApiError(400, f"max_copy: must be at least 1, got {max_copy}")
        pattern = field(body, "pattern", str, None)
        if pattern is not None and not 0 < len(pattern) <= cls.MAX_PATTERN:
            raise ApiError(400, f"pattern: expected 1 to {cls.MAX_PATTERN} characters, got {len(pattern):,}")
        include = field(body, "include", (str, list), [])
        words = (include,) if isinstance(include, str) else tuple(include)
        if not all(isinstance(w, str) and 0 < len(w) <= 100 for w in words) or len(words) > cls.MAX_WORDS:
            raise ApiError(400, f"include: expected a word or a list of at most {cls.MAX_WORDS} words of 1 to 100 "
                                "characters")
        return cls(tuple(sorted(config.to_dict().items())), max_copy, pattern, words,
                   field(body, "novelty", bool, False))

    def config(self) -> DecodeConfig:
        return DecodeConfig.from_dict(dict(self.controls))

    @property
    def constrained(self) -> bool:
        """Whether the request has hard constraints (masks) on its samples."""
        return self.max_copy is not None or self.pattern is not None or bool(self.include)

    @cached_property
    def stateful(self) -> bool:
        """Whether a stream's draw depends on its own history (then it keeps its own pipeline in the batch).

        Temperature, top-k, top-p, min-p and typical read only the logits of the step: streams that share
        them share one sampler, rebuilt whenever the batch changes. A schedule (the step's index), the
        repetition penalty and no-repeat (the text so far) and the constraints (their automata) do not.
        """
        config = self.config()
        return (self.constrained or not config.schedule.is_constant() or config.repetition_penalty != 1.0
                or config.no_repeat is not None)

    def as_dict(self) -> dict[str, Any]:
        return {**dict(self.controls), "max_copy": self.max_copy, "pattern": self.pattern,
                "include": list(self.include), "novelty": self.novelty}


def named(error: ChargenError) -> str:
    """A library refusal as the API says it: the message, led by the field it names."""
    message = str(error)
    first = error.params[0] if error.params else None
    return message if first is None or message.startswith(first) else f"{first}: {message}"


@dataclass(frozen=True)
class GenerateRequest:
    """POST /api/generate: continue ``prime`` by ``length`` characters, seeded, cut at the first ``stop``."""

    model: str | None
    prime: str
    length: int
    seed: int  # drawn by the server when the request has none, and reported, so any text can be had again
    stop: tuple[str, ...]
    stream: bool
    decoding: Decoding

    FIELDS = ("model", "prime", "length", "seed", "stop", "stream", *Decoding.FIELDS)

    @classmethod
    def parse(cls, body: dict[str, Any], limits: Limits) -> GenerateRequest:
        only_known(body, cls.FIELDS, "generate")
        length = field(body, "length", int, 200)
        if not 0 <= length <= limits.max_length:
            raise ApiError(413 if length > 0 else 400,
                           f"length: {length:,}; this server generates between 0 and {limits.max_length:,} characters")
        seed = field(body, "seed", int, None)
        if seed is None:
            seed = secrets.randbelow(2**31)
        elif not 0 <= seed <= MAX_SEED:
            raise ApiError(400, f"seed: must be in [0, 2^63), got {seed}")
        stop = field(body, "stop", (str, list), [])
        stops = (stop,) if isinstance(stop, str) else tuple(stop)
        if not all(isinstance(s, str) and 0 < len(s) <= 100 for s in stops):
            raise ApiError(400, "stop: expected a string or a list of strings of 1 to 100 characters")
        if len(stops) > limits.max_stops:
            raise ApiError(413, f"stop: {len(stops)} stop strings; this server takes at most {limits.max_stops}")
        return cls(model=field(body, "model", str, None),
                   prime=sized("prime", field(body, "prime", str, ""), limits.max_text),
                   length=length, seed=seed, stop=stops, stream=field(body, "stream", bool, True),
                   decoding=Decoding.parse(body))

    def settings(self, model: str) -> dict[str, Any]:
        """What the answer reports back (the stream's first line, or beside the text)."""
        return {"model": model, "prime": self.prime, "length": self.length, **self.decoding.as_dict(),
                "seed": self.seed, "stop": list(self.stop)}


@dataclass(frozen=True)
class ScoreRequest:
    """POST /api/score: the log-probability of ``text``."""

    model: str | None
    text: str

    @classmethod
    def parse(cls, body: dict[str, Any], limits: Limits) -> ScoreRequest:
        only_known(body, ("model", "text"), "score")
        return cls(field(body, "model", str, None), sized("text", field(body, "text", str, ""), limits.max_text))


@dataclass(frozen=True)
class ClassifyRequest:
    """POST /api/classify: the ``top`` likeliest classes of each name."""

    model: str | None
    names: tuple[str, ...]
    top: int

    @classmethod
    def parse(cls, body: dict[str, Any], limits: Limits) -> ClassifyRequest:
        only_known(body, ("model", "names", "top"), "classify")
        names = field(body, "names", list, [])
        if not names or not all(isinstance(n, str) for n in names):
            raise ApiError(400, "names: expected a non-empty list of strings")
        if len(names) > limits.max_names:
            raise ApiError(413, f"names: {len(names):,} names; this server classifies at most {limits.max_names} "
                                "per request")
        top = field(body, "top", int, 3)
        if not 1 <= top <= limits.max_top:
            raise ApiError(400, f"top: must be in [1, {limits.max_top}], got {top}")
        return cls(field(body, "model", str, None), tuple(n[:1000] for n in names), top)


@dataclass(frozen=True)
class InspectRequest:
    """POST /api/inspect: the next-character guesses along ``text``, and one unit's activations."""

    model: str | None
    text: str
    top: int
    unit: int | None
    layer: int | None
    what: str

    @classmethod
    def parse(cls, body: dict[str, Any], limits: Limits) -> InspectRequest:
        only_known(body, ("model", "text", "top", "unit", "layer", "what"), "inspect")
        top = field(body, "top", int, 5)
        if not 0 <= top <= limits.max_top:
            raise ApiError(400, f"top: must be in [0, {limits.max_top}], got {top}")
        text = sized("text", field(body, "text", str, ""), min(limits.max_text, limits.max_inspect))
        return cls(field(body, "model", str, None), text, top, field(body, "unit", int, None),
                   field(body, "layer", int, None), field(body, "what", str, "h"))
