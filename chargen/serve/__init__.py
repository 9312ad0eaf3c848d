"""The HTTP interface: JSON endpoints over the library (generate, score, classify, inspect) and one small page.

The requests and the Service need only the core install; the server itself (Starlette under
uvicorn) needs the ``serve`` extra, and :func:`make_server` says so in one line when it is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chargen.errors import ChargenError
from chargen.serve.api import ApiError, Limits
from chargen.serve.service import Service

if TYPE_CHECKING:
    from chargen.serve.server import Server

EXTRA_MODULES = ("starlette", "uvicorn", "h11", "anyio")


class ServeUnavailable(ChargenError):
    """The server's packages (the ``serve`` extra) are not installed."""


def make_server(service: Service, host: str = "127.0.0.1", port: int = 8000, **options: Any) -> Server:
    """A bound server (port 0 picks a free one: ``server.address``); ``serve_forever()`` or ``start()`` it."""
    try:
        from chargen.serve.server import make_server as make
    except ImportError as e:
        if (e.name or "").split(".")[0] not in EXTRA_MODULES:
            raise
        raise ServeUnavailable(f"the server needs {e.name}, which is not installed: "
                               'pip install -e ".[serve]" in the chargen checkout') from None
    return make(service, host, port, **options)


__all__ = ["ApiError", "Limits", "ServeUnavailable", "Service", "make_server"]
