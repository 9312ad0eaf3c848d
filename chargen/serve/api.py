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
from typing import Any

from chargen.errors import UsageError
from chargen.sample import MAX_SEED


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

    Frozen and hashable: the batch groups streams by it, so streams that decode alike are drawn
    together. New controls (top-p, min-p, penalties: ``chargen.generation.logits``) join here as
    fields of the request, ``FIELDS`` and :meth:`as_dict`, and the batch's sampler is built from
    ``as_dict()`` in one place (``chargen.serve.batcher.sampler``).
    """

    temperature: float = 1.0
    top_k: int | None = None

    FIELDS = ("temperature", "top_k")

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Decoding:
        temperature = float(field(body, "temperature", (int, float), 1.0))
        if not (math.isfinite(temperature) and 0 <= temperature <= 100):
            raise ApiError(400, f"temperature: must be 0 (greedy) up to 100, got {temperature}")
        top_k = field(body, "top_k", int, None)
        if top_k is not None and top_k < 1:
            raise ApiError(400, f"top_k: must be at least 1, got {top_k}")
        return cls(temperature, top_k)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.FIELDS}


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
