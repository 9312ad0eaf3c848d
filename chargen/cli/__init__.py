"""The command-line interface: thin Typer commands over the library (one module per command group)."""

from __future__ import annotations

from chargen.cli.app import app
from chargen.cli.output import flush_stdout, output_failed
# Each command module registers its commands on ``app`` when imported; this order is the help's order.
from chargen.cli import train, sample, evaluate, score, corpora  # noqa: E402,F401
from chargen.cli import classify, probe, compare, gradients, report, reference, inspect, serve, export, word2vec, momentum, study  # noqa: E402,F401
from chargen.cli.ui import reflow_help  # noqa: E402

reflow_help(app)


def main() -> None:
    try:
        app()
    except OSError as e:
        output_failed(e)  # --help and --version write to stdout before any command runs
    finally:
        flush_stdout()  # what click printed outside a command (--version, --help) into a full disk


__all__ = ["app", "main"]
