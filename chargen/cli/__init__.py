"""The command-line interface: thin Typer commands over the library (one module per command group)."""

from __future__ import annotations

from chargen.cli.app import app
# Each command module registers its commands on ``app`` when imported; this order is the help's order.
from chargen.cli import train, sample, evaluate, score, corpora  # noqa: E402,F401
from chargen.cli import classify, probe, compare, report, reference, inspect, serve, export  # noqa: E402,F401


def main() -> None:
    app()


__all__ = ["app", "main"]
