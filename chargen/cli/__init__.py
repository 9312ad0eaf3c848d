"""The command-line interface: thin Typer commands over the library (one module per command group)."""

from __future__ import annotations

from chargen.cli.app import app
from chargen.cli.output import flush_stdout, output_failed
from chargen.cli import train, sample, evaluate, corpora  # noqa: E402,F401  (register commands)

for _optional in ("classify", "probe", "compare", "report", "reference"):
    try:
        __import__(f"chargen.cli.{_optional}")
    except ModuleNotFoundError as _e:
        if _e.name != f"chargen.cli.{_optional}":
            raise


def main() -> None:
    try:
        app()
    except OSError as e:
        output_failed(e)  # --help and --version write to stdout before any command runs
    finally:
        flush_stdout()  # what click printed outside a command (--version, --help) into a full disk


__all__ = ["app", "main"]
