"""The HTTP server: the ASGI app under uvicorn, on a socket bound here, with the timeouts a public port needs.

uvicorn (h11) parses HTTP: headers are bounded in size, HTTP/1.0 clients get no chunked encoding,
idle keep-alive connections close after a few seconds. What it lacks is added here: a deadline
for a request's headers (a client that dribbles them is cut off), a bounded listen backlog, and
a log that is one line per event, never a traceback.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from chargen.errors import UsageError
from chargen.serve.app import Access, Log, create_app
from chargen.serve.service import Service

BACKLOG = 1024  # connections the kernel holds before accept (the library default of 5 reset clients)
MAX_CONNECTIONS = 1000  # open connections at once; beyond, uvicorn answers 503
MAX_HEADERS = 16 * 1024  # bytes of a request line and headers
KEEP_ALIVE = 5  # seconds an idle connection stays open


class _HeaderDeadline(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline on every request's headers (``header_timeout`` seconds).

    It subclasses uvicorn's ``H11Protocol`` and reads its ``conn`` (h11), ``loop``, ``transport`` and
    ``client``: the ``serve`` extra bounds uvicorn's version for that reason.
    """

    header_timeout = 10.0
    log: Log = staticmethod(lambda line: None)  # type: ignore[assignment]

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._deadline: Any = self.loop.call_later(self.header_timeout, self._too_slow)

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self.conn.their_state is h11.IDLE:  # the next request on this connection
            self._deadline = self.loop.call_later(self.header_timeout, self._too_slow)
        super().data_received(data)
        if self._deadline is not None and self.conn.their_state is not h11.IDLE:  # its headers are in
            self._deadline.cancel()
            self._deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    def _should_upgrade(self) -> bool:
        return False  # no WebSockets here: an Upgrade header is ignored (uvicorn would log two lines of advice)

    def _too_slow(self) -> None:
        self._deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            if self.conn.trailing_data[0]:  # part of a request arrived; a quiet keep-alive is not worth a line
                client = "%s:%d" % self.client if self.client else "a client"
                self.log(f"{client}: closed, its request headers took over {self.header_timeout:g} s")
            self.transport.close()


_SECRET = re.compile(r"([?&]token=)[^&\s\"]*")  # a token in a logged URL is shown as ...


class _OneLine(logging.Handler):
    """uvicorn's log records as single lines to ``log``: warnings always, access lines unless quiet."""

    def __init__(self, log: Log, access: bool) -> None:
        super().__init__()
        self.log, self.access = log, access

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "uvicorn.access" and not self.access:
            return
        if record.name != "uvicorn.access" and record.levelno < logging.WARNING:
            return  # uvicorn's start-up chatter: the command prints its own line
        try:
            line = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record must not raise in the server
            line = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            line += f": {type(error).__name__}: {error}"
        self.log(_SECRET.sub(r"\1...", " ".join(line.split())))


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one), or a UsageError that says why not."""
    if not 0 <= port <= 65535:
        raise UsageError(f"port must be in [0, 65535], got {port}", params="port")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as e:
        raise UsageError(f"host {host!r}: {getattr(e, 'strerror', None) or e}", params="host") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as e:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}", params="port") from None
    return sock


class Server:
    """A bound server: :meth:`serve_forever` in this thread (Ctrl-C stops it), or :meth:`start` in another."""

    def __init__(self, service: Service, host: str = "127.0.0.1", port: int = 8000, *,
                 allow_hosts: tuple[str, ...] = (), allow_origins: tuple[str, ...] = (), token: str | None = None,
                 log: Log | None = None, access_log: bool = True) -> None:
        self.log: Log = log or (lambda line: None)
        self.access = Access.local(host, allow_hosts, allow_origins, token)
        self.socket = _bind(host, port)
        self.address: tuple[str, int] = self.socket.getsockname()[:2]
        protocol = type("Protocol", (_HeaderDeadline,), {"header_timeout": service.limits.header_timeout,
                                                         "log": staticmethod(self.log)})
        config = uvicorn.Config(create_app(service, self.access, self.log), log_config=None, log_level="info",
                                access_log=True, http=protocol, ws="none", lifespan="on", backlog=BACKLOG,
                                timeout_keep_alive=KEEP_ALIVE, h11_max_incomplete_event_size=MAX_HEADERS,
                                limit_concurrency=MAX_CONNECTIONS, timeout_graceful_shutdown=3, server_header=False)
        self.uvicorn = uvicorn.Server(config)
        self._handler = _OneLine(self.log, access_log)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def serve_forever(self) -> None:
        """Answer requests until Ctrl-C (in the main thread) or :meth:`shutdown`."""
        logger = logging.getLogger("uvicorn")
        logger.addHandler(self._handler)
        logger.propagate = False  # nothing reaches the root logger, whose last resort prints tracebacks
        try:
            self.uvicorn.run(sockets=[self.socket])
        finally:
            logger.removeHandler(self._handler)
            self.socket.close()

    def start(self, timeout: float = 30.0) -> Server:
        """Serve in a background thread; returns once the server answers."""
        self._thread = threading.Thread(target=self.serve_forever, name="chargen-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def shutdown(self) -> None:
        self.uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)


def make_server(service: Service, host: str = "127.0.0.1", port: int = 8000, **options: Any) -> Server:
    """A bound server (port 0 picks a free one: see ``server.address``); see :class:`Server` for ``options``."""
    return Server(service, host, port, **options)
