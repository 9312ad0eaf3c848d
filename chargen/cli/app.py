"""The Typer application and the one place where expected errors become a single line and an exit code."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from chargen import __version__
from chargen.errors import ChargenError


class ChargenGroup(TyperGroup):
    """Runs a command; a ChargenError becomes one red line on stderr and its exit code, no traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ChargenError as e:
            if os.environ.get("CHARGEN_DEBUG"):
                raise
            from chargen.cli.ui import err_console

            err_console.print(f"[bold red]error:[/] {e}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(code=e.exit_code) from None

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # in the order they were added, not alphabetical


app = typer.Typer(
    cls=ChargenGroup,
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="chargen: a character-level text studio — recurrent cells written from their equations, "
    "character language models, surname classifiers and memorisation probes.",
    epilog="Set CHARGEN_DEBUG=1 to see the full traceback of an error.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"chargen {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """chargen: a character-level text studio."""
