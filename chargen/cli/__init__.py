"""The command-line interface: thin Typer commands over the library (one module per command group)."""

from __future__ import annotations

from chargen.cli.app import app
from chargen.cli import train, sample, evaluate, corpora  # noqa: E402,F401  (register commands)

for _optional in ("classify", "probe", "compare", "report", "reference", "momentum"):
    try:
        __import__(f"chargen.cli.{_optional}")
    except ModuleNotFoundError as _e:
        if _e.name != f"chargen.cli.{_optional}":
            raise


def main() -> None:
    app()


__all__ = ["app", "main"]
