"""A standard-library HTTP server for loaded models: JSON in, JSON (or streamed NDJSON) out, plus the page.

Models are loaded once and only read afterwards: every request builds its own state (its own
``torch.Generator``, its own recurrent state), so concurrent requests cannot disturb one another.
Request sizes are bounded (``Limits``); a request outside them gets a 4xx JSON error
``{"error": message}`` and nothing is computed.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

import torch

from chargen.checkpoint import Loaded
from chargen.errors import ChargenError
from chargen.inspect import WHATS, activation_colour, colour_scale, score_text, trace
from chargen.sample import generate
from chargen.tasks.classify import classify_names

STATIC = {  # the page's files, served from package data; nothing else on disk is reachable
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}


@dataclass(frozen=True)
class Limits:
    """The largest request the server will work on."""

    max_length: int = 2000  # characters generated per request
    max_text: int = 20_000  # characters of a prime, or of a text to score or inspect
    max_names: int = 100  # names per classify request
    max_top: int = 20  # next-character guesses per position
    max_body: int = 1 << 20  # bytes of a request body


class ApiError(Exception):
    """A request the server refuses: an HTTP status and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _field(body: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = body.get(key, default)
    if value is None and default is None:
        return None
    # bool is an int in Python; a JSON true is not a length
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        words = {str: "a string", int: "an integer", float: "a number", list: "a list", bool: "true or false"}
        wanted = " or ".join(words[k] for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ApiError(400, f"{key}: expected {wanted}, got {json.dumps(value)[:40]}")
    return value


def _sized(key: str, text: str, limit: int) -> str:
    if len(text) > limit:
        raise ApiError(413, f"{key}: {len(text):,} characters; this server accepts at most {limit:,}")
    return text


class Service:
    """The models and what can be asked of them, independent of HTTP (each method takes a parsed JSON body)."""

    def __init__(self, models: dict[str, Loaded], limits: Limits | None = None) -> None:
        if not models:
            raise ValueError("a Service needs at least one model")
        self.models = models
        self.limits = limits or Limits()

    def info(self) -> dict[str, Any]:
        out = []
        for name, loaded in self.models.items():
            cfg = loaded.config["model"]
            out.append({"name": name, "task": loaded.config.get("task"), "cell": cfg["cell"],
                        "layers": cfg["num_layers"], "hidden": cfg["hidden_size"], "vocab": len(loaded.vocab)})
        return {"models": out, "limits": asdict(self.limits), "whats": list(WHATS)}

    def _model(self, body: dict[str, Any], tasks: tuple[str, ...]) -> tuple[str, Loaded]:
        name = _field(body, "model", str, None)
        if name is None:
            fitting = [n for n, m in self.models.items() if m.config.get("task") in tasks]
            if not fitting:
                raise ApiError(400, f"no loaded model does this (it needs a {' or '.join(tasks)} model)")
            name = fitting[0]
        if name not in self.models:
            raise ApiError(404, f"model: no model {name!r} is loaded; loaded: {', '.join(self.models)}")
        loaded = self.models[name]
        if loaded.config.get("task") not in tasks:
            raise ApiError(400, f"model: {name!r} is a {loaded.config.get('task')!r} model; "
                                f"this needs a {' or '.join(tasks)} model")
        return name, loaded

    def generate(self, body: dict[str, Any]) -> tuple[dict[str, Any], Iterator[str]]:
        """Checks the request, then returns its settings and an iterator of text chunks."""
        name, loaded = self._model(body, ("lm",))
        prime = _sized("prime", _field(body, "prime", str, ""), self.limits.max_text)
        length = _field(body, "length", int, 200)
        if not 0 <= length <= self.limits.max_length:
            raise ApiError(413 if length > 0 else 400,
                           f"length: {length:,}; this server generates between 0 and {self.limits.max_length:,} characters")
        temperature = float(_field(body, "temperature", (int, float), 1.0))
        if not 0 <= temperature <= 100:
            raise ApiError(400, f"temperature: must be 0 (greedy) up to 100, got {temperature}")
        top_k = _field(body, "top_k", int, None)
        if top_k is not None and top_k < 1:
            raise ApiError(400, f"top_k: must be at least 1, got {top_k}")
        seed = _field(body, "seed", int, None)
        if seed is None:
            seed = secrets.randbelow(2**31)  # reported back, so any text can be had again
        elif not 0 <= seed < 2**63:
            raise ApiError(400, f"seed: must be in [0, 2^63), got {seed}")
        try:
            loaded.vocab.encode(prime, what="prime")
        except ChargenError as e:
            raise ApiError(400, str(e)) from None
        chunk = int(loaded.config["task_config"]["options"].get("seq_len", 30))  # as `chargen sample`
        pieces = generate(loaded.model, loaded.vocab, prime=prime, length=length, temperature=temperature,
                          top_k=top_k, seed=seed, chunk_size=chunk)
        return {"model": name, "prime": prime, "length": length, "temperature": temperature,
                "top_k": top_k, "seed": seed}, pieces

    def score(self, body: dict[str, Any]) -> dict[str, Any]:
        name, loaded = self._model(body, ("lm",))
        text = _sized("text", _field(body, "text", str, ""), self.limits.max_text)
        try:
            return {"model": name, **score_text(loaded.model, loaded.vocab, text)}
        except ChargenError as e:
            raise ApiError(400, str(e)) from None

    def classify(self, body: dict[str, Any]) -> dict[str, Any]:
        name, loaded = self._model(body, ("classify",))
        names = _field(body, "names", list, [])
        if not names or not all(isinstance(n, str) for n in names):
            raise ApiError(400, "names: expected a non-empty list of strings")
        if len(names) > self.limits.max_names:
            raise ApiError(413, f"names: {len(names):,} names; this server classifies at most {self.limits.max_names} per request")
        top = _field(body, "top", int, 3)
        if not 1 <= top <= self.limits.max_top:
            raise ApiError(400, f"top: must be in [1, {self.limits.max_top}], got {top}")
        return {"model": name, "results": classify_names(loaded, [n[:1000] for n in names], top=top)}

    def inspect(self, body: dict[str, Any]) -> dict[str, Any]:
        name, loaded = self._model(body, ("lm",))
        text = _sized("text", _field(body, "text", str, ""), self.limits.max_text)
        top = _field(body, "top", int, 5)
        if not 0 <= top <= self.limits.max_top:
            raise ApiError(400, f"top: must be in [0, {self.limits.max_top}], got {top}")
        unit = _field(body, "unit", int, None)
        layer = _field(body, "layer", int, None)
        what = _field(body, "what", str, "h")
        try:
            tr = trace(loaded.model, loaded.vocab, text)
            out: dict[str, Any] = {"model": name, "chars": list(text), "layers": tr.num_layers,
                                   "hidden": tr.hidden_size, "available": list(tr.available())}
            if top:
                out["top"] = [[[c, p] for c, p in row] for row in tr.top(top)]
            if unit is not None:
                values = tr.activation(unit, what, layer).tolist()
                scale = colour_scale(values, what)
                out["activation"] = {"unit": unit, "layer": layer or tr.num_layers, "what": what, "values": values,
                                     "scale": scale, "colours": [activation_colour(v, scale) for v in values]}
        except ChargenError as e:
            raise ApiError(400, str(e)) from None
        return out


class Handler(BaseHTTPRequestHandler):
    """One request: route, check, answer; errors as ``{"error": ...}`` with a 4xx status."""

    protocol_version = "HTTP/1.1"  # keep-alive, and chunked transfer for the generate stream
    server: "ChargenServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        if self.server.log is not None:
            self.server.log(f"{self.address_string()} {format % args}")

    # -- responses -----------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message, "status": status})

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode("ascii") + data + b"\r\n")
        self.wfile.flush()

    # -- requests ------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0]
        if path in STATIC:
            name, content_type = STATIC[path]
            self._send(200, (resources.files("chargen.serve") / "static" / name).read_bytes(), content_type)
        elif path == "/api/models":
            self._json(200, self.server.service.info())
        else:
            self._error(404, f"no such page: {path}")

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        routes = {"/api/generate": None, "/api/score": self.server.service.score,
                  "/api/classify": self.server.service.classify, "/api/inspect": self.server.service.inspect}
        try:
            body = self._read_body()
            if path not in routes:
                raise ApiError(404, f"no such endpoint: POST {path}")
            if path == "/api/generate":
                self._generate(body)
                return
            with torch.inference_mode():
                self._json(200, routes[path](body))
        except ApiError as e:
            self._error(e.status, str(e))

    def _read_body(self) -> dict[str, Any]:
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked" or length is None:
            self.close_connection = True  # we do not read chunked bodies, so the stream cannot be reused
            raise ApiError(411, "send the JSON body with a Content-Length header")
        try:
            size = int(length)
        except ValueError:
            self.close_connection = True
            raise ApiError(400, f"bad Content-Length {length!r}") from None
        if size > self.server.service.limits.max_body:
            self.close_connection = True  # the unread body would be taken for the next request
            raise ApiError(413, f"request body of {size:,} bytes; this server accepts at most "
                                f"{self.server.service.limits.max_body:,}")
        raw = self.rfile.read(size)
        try:
            body = json.loads(raw.decode("utf-8")) if raw else {}
        except (UnicodeDecodeError, ValueError) as e:
            raise ApiError(400, f"the body is not JSON: {e}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        return body

    def _generate(self, body: dict[str, Any]) -> None:
        stream = _field(body, "stream", bool, True)
        settings, pieces = self.server.service.generate(body)
        if not stream:
            with torch.inference_mode():
                text = "".join(pieces)
            self._json(200, {**settings, "text": text})
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        line = lambda data: (json.dumps(data, ensure_ascii=False) + "\n").encode("utf-8")  # noqa: E731
        try:
            self._chunk(line({"start": settings}))
            with torch.inference_mode():
                for piece in pieces:
                    self._chunk(line({"text": piece}))
            self._chunk(line({"done": True}))
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away: stop generating


class ChargenServer(ThreadingHTTPServer):
    """A threading HTTP server holding a Service (one thread per connection)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], service: Service, log: Any = None) -> None:
        super().__init__(address, Handler)
        self.service = service
        self.log = log


def make_server(service: Service, host: str = "127.0.0.1", port: int = 8000, log: Any = None) -> ChargenServer:
    """A bound server (port 0 picks a free one: see ``server.server_address``); call ``serve_forever``."""
    return ChargenServer((host, port), service, log)
