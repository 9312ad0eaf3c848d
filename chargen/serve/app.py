"""The ASGI application (Starlette): who may call it, how much it takes in, and the routes over a Service.

Every request passes :class:`Access` first: a Host header this server does not answer to (DNS
rebinding), an Origin other than the server's own (any other web page, including the simple
``text/plain`` POSTs a page may send without asking), or a missing token when one is set, is
refused before anything is read. Bodies are read against a size limit and a deadline, counted as
they arrive (a chunked body too), and parsed with a bounded nesting depth. Each endpoint holds a
bounded number of requests (:class:`Gate`); beyond it the answer is 503 with ``Retry-After``.
Generation runs in one batch per model (:class:`chargen.serve.batcher.Batcher`). Every failure is
a JSON ``{"error", "status"}`` answer and at most one log line; no traceback reaches the log.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chargen.serve.api import (
    ApiError,
    ClassifyRequest,
    GenerateRequest,
    InspectRequest,
    Limits,
    ScoreRequest,
)
from chargen.serve.batcher import Batcher, Solo, Stream, batchable
from chargen.serve.service import Service

Log = Callable[[str], None]
STATIC = {  # the page's files, from package data; nothing else on disk is reachable
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
RETRY_AFTER = "1"  # seconds; a full queue of these small models drains in about that


class JSON(JSONResponse):
    """A JSON answer written as ``json.dumps`` writes it (``", "`` and ``": "``), as the NDJSON lines are."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False).encode("utf-8")


def error_response(error: ApiError) -> JSON:
    return JSON({"error": str(error), "status": error.status}, status_code=error.status, headers=error.headers)


def _host_name(value: str) -> tuple[str, int | None]:
    """``Host`` (or an Origin's netloc) -> (lower-case name without brackets or trailing dot, port or None)."""
    value = value.strip()
    if value.count(":") > 1 and not value.startswith("["):  # a bare IPv6 address, as --host takes it
        return value.lower(), None
    try:
        parts = urlsplit("//" + value)
        return (parts.hostname or "").rstrip("."), parts.port
    except ValueError:  # a port that is not a number
        return "", None


def _same_origin(origin: str) -> tuple[str, int | None] | None:
    """An http(s) Origin's (name, port), to compare with the Host header's; None for "null" or anything else."""
    try:
        parts = urlsplit(origin)
    except ValueError:
        return None
    return _host_name(parts.netloc) if parts.scheme in ("http", "https") and parts.netloc else None


@dataclass(frozen=True)
class Access:
    """Who may use the server: the Host names it answers to, the web pages that may call it, a token."""

    hosts: frozenset[str]  # names a Host header may carry ("*": any)
    origins: frozenset[str] = frozenset()  # other pages' origins allowed to call the API ("http://name:port")
    token: str | None = None  # required on /api/ calls: "Authorization: Bearer TOKEN" or "?token=TOKEN"

    @classmethod
    def local(cls, bound: str, allow_hosts: tuple[str, ...] = (), allow_origins: tuple[str, ...] = (),
              token: str | None = None) -> Access:
        """This machine's names, the bound address, and whatever the caller allows besides."""
        names = {*LOCAL_NAMES, *(h if h == "*" else _host_name(h)[0] for h in (bound, *allow_hosts))}
        return cls(frozenset(names), frozenset(o.rstrip("/").lower() for o in allow_origins), token)

    def refuse(self, scope: Scope) -> ApiError | None:
        """Why this request may not go on (None: it may)."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host")
        if host is not None and "*" not in self.hosts and _host_name(host)[0] not in self.hosts:
            return ApiError(403, f"Host {host[:100]!r} is not a name this server answers to "
                                 "(a DNS-rebinding guard; allow it when starting the server)")
        origin = headers.get("origin")
        if origin is not None and origin.rstrip("/").lower() not in self.origins:
            if host is None or _same_origin(origin) != _host_name(host):
                return ApiError(403, f"requests from other web pages are refused (Origin {origin[:100]!r})")
        elif origin is None and headers.get("sec-fetch-site") == "cross-site":
            return ApiError(403, "requests from other web pages are refused (Sec-Fetch-Site: cross-site)")
        if self.token is not None and scope["path"].startswith("/api/"):
            given = headers.get("authorization", "")
            given = given[7:] if given[:7].lower() == "bearer " else None
            if given is None:
                given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [None])[0]
            if given is None or not secrets.compare_digest(given.encode(), self.token.encode()):
                return ApiError(401, "this server needs its token: send 'Authorization: Bearer TOKEN' or add "
                                     "?token=TOKEN", {"WWW-Authenticate": "Bearer"})
        return None


class Guard:
    """ASGI middleware: :meth:`Access.refuse` before the app, ``nosniff`` on every answer."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def nosniff(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-content-type-options", b"nosniff")]
            await send(message)

        refused = self.access.refuse(scope)
        if refused is not None:
            await error_response(refused)(scope, receive, nosniff)
        else:
            await self.app(scope, receive, nosniff)


class Gate:
    """At most ``workers`` requests of an endpoint computed at once and ``queued`` more waiting; then 503."""

    def __init__(self, name: str, workers: int, queued: int) -> None:
        self.name = name
        self.workers = asyncio.Semaphore(workers)
        self.capacity = workers + queued
        self.held = 0

    def enter(self) -> None:
        if self.held >= self.capacity:
            raise ApiError(503, f"{self.name}: {self.held} requests in hand, the most this server holds; "
                                f"retry in {RETRY_AFTER} s", {"Retry-After": RETRY_AFTER})
        self.held += 1

    def leave(self) -> None:
        self.held -= 1

    async def run(self, work: Callable[[Any], Any], request: Any) -> Any:
        """``work(request)`` in a worker thread, once a place is free (503 at once when the queue is full)."""
        self.enter()
        try:
            async with self.workers:
                return await run_in_threadpool(work, request)
        finally:
            self.leave()


class Bodies:
    """Bytes of request bodies being received, over all requests: a flood of large bodies gets 503, not memory."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.held = 0

    def take(self, size: int) -> None:
        if self.held + size > self.total:
            raise ApiError(503, f"the server is receiving {self.held:,} bytes of requests, the most it holds; "
                                f"retry in {RETRY_AFTER} s", {"Retry-After": RETRY_AFTER, "Connection": "close"})
        self.held += size


async def read_json(request: Request, limits: Limits, bodies: Bodies) -> dict[str, Any]:
    """The body as a JSON object: at most ``max_body`` bytes (counted as read), within ``body_timeout`` seconds."""
    close = {"Connection": "close"}  # the rest of an unread body must not be taken for the next request
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_body:
        raise ApiError(413, f"request body of {int(declared):,} bytes; this server accepts at most "
                            f"{limits.max_body:,}", close)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.body_timeout
    raw = bytearray()
    try:
        while True:
            try:
                message = await asyncio.wait_for(request.receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise ApiError(408, f"the request body took over {limits.body_timeout:g} s", close) from None
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            if len(raw) + len(chunk) > limits.max_body:
                raise ApiError(413, f"request body over {limits.max_body:,} bytes; this server accepts at most "
                                    f"{limits.max_body:,}", close)
            bodies.take(len(chunk))
            raw += chunk
            if not message.get("more_body", False):
                break
    finally:
        bodies.held -= len(raw)
    if not raw.strip():
        return {}
    try:
        body = json.loads(bytes(raw))
    except RecursionError:
        raise ApiError(400, f"the body nests deeper than {limits.max_depth} levels") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise ApiError(400, f"the body is not JSON: {e}") from None
    if _too_deep(body, limits.max_depth):
        raise ApiError(400, f"the body nests deeper than {limits.max_depth} levels")
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def _too_deep(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


class Held(StreamingResponse):
    """A streamed answer that gives its place back (``release``) however it ends, a client gone included."""

    def __init__(self, content: AsyncIterator[bytes], release: Callable[[], None], log: Log, what: str,
                 **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.release, self.log, self.what = release, log, what

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except (ClientDisconnect, OSError) as e:
            self.log(f"{self.what}: the client went away ({type(e).__name__})")
        finally:
            self.release()


def _line(data: Any) -> bytes:
    return (json.dumps(data, ensure_ascii=False) + "\n").encode("utf-8")


def _novelty(stream: Stream, text: str) -> dict[str, Any]:
    """``{"copies": ...}`` for a request that asked for ``novelty``: ``copies.novelty`` of the sample as printed
    (prime and text, so the offsets of its spans count from the prime's first character), else nothing."""
    if not stream.request.decoding.novelty:
        return {}
    report = stream.constraints.novelty(stream.request.prime + text)
    return {"copies": {**report, "long_copies": [list(span) for span in report["long_copies"]]}}


async def _ndjson(stream: Stream, settings: dict[str, Any]) -> AsyncIterator[bytes]:
    """The generate stream: a ``start`` line with the settings, ``text`` lines, then ``done`` (or ``error``).

    The ``done`` line carries the sample's ``copies`` when the request asked for ``novelty``.
    """
    yield _line({"start": settings})
    pieces = []
    try:
        async for piece in stream.read():
            pieces.append(piece)
            yield _line({"text": piece})
    except ApiError as e:
        yield _line({"error": str(e), "status": e.status})
        return
    yield _line({"done": True, **_novelty(stream, "".join(pieces))})


async def _collect(stream: Stream, receive: Receive) -> str | None:
    """The whole text of a stream, or None when the client leaves first (the stream then leaves the batch)."""

    async def text() -> str:
        return "".join([piece async for piece in stream.read()])

    async def gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    reading, leaving = asyncio.ensure_future(text()), asyncio.ensure_future(gone())
    try:
        await asyncio.wait({reading, leaving}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (reading, leaving):
            task.cancel()
    stream.cancelled = True
    return reading.result() if reading.done() and not reading.cancelled() else None


def create_app(service: Service, access: Access, log: Log | None = None) -> ASGIApp:
    """The server's ASGI application over ``service`` (one generation batch per language model)."""
    say: Log = log or (lambda line: None)
    limits = service.limits
    batchers = {name: Batcher(loaded, limits.max_batch, say) if batchable(loaded.model)
                else Solo(loaded, limits.workers, say)
                for name, loaded in service.models.items() if loaded.config.get("task") == "lm"}
    gates = {"generate": Gate("generate", limits.max_batch, limits.max_waiting),
             "score": Gate("score", limits.workers, limits.max_queued),
             "classify": Gate("classify", limits.workers, limits.max_queued),
             "inspect": Gate("inspect", limits.inspect_workers, limits.max_queued)}
    bodies = Bodies(limits.max_bodies)
    pages = {path: ((resources.files("chargen.serve") / "static" / name).read_bytes(), kind)
             for path, (name, kind) in STATIC.items()}

    def endpoint(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """Runs a handler; a refusal becomes its JSON answer, anything else one log line and a 500."""

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as e:
                return error_response(e)
            except ClientDisconnect:
                say(f"{request.method} {request.url.path}: the client went away")
                return Response(status_code=400)
            except Exception as e:  # noqa: BLE001 - one line in the log, never a traceback
                say(f"{request.method} {request.url.path} failed: {type(e).__name__}: {e}")
                return error_response(ApiError(500, f"the server failed on this request ({type(e).__name__})"))

        return run

    @endpoint
    async def page(request: Request) -> Response:
        body, kind = pages[request.url.path]
        return Response(body, media_type=kind)

    @endpoint
    async def models(request: Request) -> Response:
        return JSON(service.info())

    @endpoint
    async def generate(request: Request) -> Response:
        parsed = GenerateRequest.parse(await read_json(request, limits, bodies), limits)
        name, loaded = service.model(parsed.model, ("lm",))
        prime_ids = service.encode(loaded, parsed.prime, "prime")
        for stop in parsed.stop:  # as chargen sample: one the model cannot write would never stop it
            service.encode(loaded, stop, f"the stop string {stop!r}")
        gate = gates["generate"]
        gate.enter()
        try:  # a pattern's automaton, or the first load of a corpus index, takes a while: off the event loop
            constraints = await run_in_threadpool(service.constraints, name, loaded, parsed)
        except BaseException:
            gate.leave()
            raise
        stream = Stream(parsed, prime_ids, asyncio.get_running_loop(), constraints)
        batchers[name].submit(stream)
        settings = parsed.settings(name)
        if parsed.stream:

            def release() -> None:
                gate.leave()
                stream.cancelled = True  # also when the client left before the first line was sent

            return Held(_ndjson(stream, settings), release, say, "generate",
                        media_type="application/x-ndjson; charset=utf-8", headers={"Cache-Control": "no-store"})
        try:
            text = await _collect(stream, request.receive)
        finally:
            gate.leave()
        if text is None:
            raise ClientDisconnect()
        return JSON({**settings, "text": text, **_novelty(stream, text)})

    def computed(name: str, parse: Callable[..., Any], work: Callable[[Any], dict[str, Any]]) -> Route:
        @endpoint
        async def handle(request: Request) -> Response:
            parsed = parse(await read_json(request, limits, bodies), limits)
            return JSON(await gates[name].run(work, parsed))

        return Route(f"/api/{name}", handle, methods=["POST"])

    async def missing(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        what = f"endpoint: {request.method} " if request.url.path.startswith("/api/") else "page: "
        message = f"no such {what}{request.url.path}" if status == 404 else f"{request.method} is not allowed here"
        return error_response(ApiError(status, message))

    def loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        say(" ".join(f"{context.get('message', 'event loop error')}"
                     f"{f': {type(error).__name__}: {error}' if error else ''}".split()))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        asyncio.get_running_loop().set_exception_handler(loop_error)  # asyncio's default prints tracebacks
        yield
        for batcher in batchers.values():
            batcher.close()

    routes = [Route(path, page, methods=["GET"]) for path in STATIC] + [
        Route("/api/models", models, methods=["GET"]),
        Route("/api/generate", generate, methods=["POST"]),
        computed("score", ScoreRequest.parse, service.score),
        computed("classify", ClassifyRequest.parse, service.classify),
        computed("inspect", InspectRequest.parse, service.inspect),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: missing, 405: missing})
    return Guard(app, access)
