"""The Typer application and the one place where expected errors become a single line and an exit code."""

from __future__ import annotations

import errno
import os
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from chargen import __version__
from chargen.cli.flags import cli_message
from chargen.cli.output import guarded_stdout
from chargen.errors import ChargenError, RunInterrupted

try:  # typer >= 0.29 carries its own copy of click
    from typer._click.exceptions import UsageError as ClickUsageError
except ImportError:  # pragma: no cover - older typer on top of click
    from click.exceptions import UsageError as ClickUsageError


def _flags_without_a_type(option_class: Any) -> None:
    """Typer shows ``<bool>`` after every flag (``--quiet <bool>``), as if it took a value: show nothing."""
    shown = option_class.display_type_rich

    def display_type_rich(self: Any, ctx: Any) -> Any:
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    option_class.display_type_rich = display_type_rich


try:
    from typer.core import TyperOption

    _flags_without_a_type(TyperOption)
except (ImportError, AttributeError):  # pragma: no cover - a typer without the typed help column
    pass


class ChargenGroup(TyperGroup):
    """Runs a command; an expected failure becomes one red line on stderr and its exit code, no traceback.

    ChargenErrors exit with their own code (1, 2 for usage, 130/143 for a signal); a bad option
    that the parser catches is also one line and exit 2; Ctrl-C outside training is exit 130.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            with guarded_stdout():
                return super().invoke(ctx)
        except ChargenError as e:
            if os.environ.get("CHARGEN_DEBUG"):
                raise
            # A stop signal reaches every rank of a torchrun launch; rank 0 speaks for all of them.
            if _rank() == 0 or not isinstance(e, RunInterrupted):
                _error_line(e.label, cli_message(e, ctx.invoked_subcommand))
            raise typer.Exit(code=e.exit_code) from None
        except ClickUsageError as e:
            if type(e).__name__ == "NoArgsIsHelpError" or os.environ.get("CHARGEN_DEBUG"):
                raise  # help for a bare command is not an error
            command = e.ctx.command_path if e.ctx is not None else "chargen"
            _error_line("error", f"{e.format_message()} (see {command} --help)")
            raise typer.Exit(code=e.exit_code) from None
        except OSError as e:
            # A name over the file system's limit can reach any check of a path (even Path.is_dir raises it):
            # wherever it does, it is the user's path, one line
            if e.errno != errno.ENAMETOOLONG or os.environ.get("CHARGEN_DEBUG"):
                raise
            shown = str(e.filename or "")
            where = f"{shown[:60]}...: " if len(shown) > 60 else f"{shown}: " if shown else ""
            _error_line("error", f"{where}a file name in this path is longer than the file system allows")
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            if os.environ.get("CHARGEN_DEBUG"):
                raise
            _error_line("interrupted", "stopped by Ctrl-C; nothing was saved")
            raise typer.Exit(code=130) from None

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # in the order they were added, not alphabetical


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))  # as chargen.runtime.rank(), without importing torch


def _error_line(label: str, message: str) -> None:
    from chargen.cli.ui import err_console

    where = f"[rank {_rank()}] " if _rank() else ""  # under torchrun every rank may speak
    try:
        err_console.print(f"[bold red]{where}{label}:[/] {escape(message)}", highlight=False, soft_wrap=True)
    except OSError:
        pass  # stderr is gone too (a closed terminal): the exit code still tells


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
