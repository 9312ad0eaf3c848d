"""The HTTP interface: JSON endpoints over the library (generate, score, classify, inspect) and one small page."""

from chargen.serve.server import Limits, Service, ApiError, make_server

__all__ = ["ApiError", "Limits", "Service", "make_server"]
