"""`chargen corpora`: the corpus registry and where each corpus is available."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from chargen.cli.app import app
from chargen.cli.ui import out_console


@app.command(rich_help_panel="Data")
def corpora(
    as_json: Annotated[bool, typer.Option("--json", help="Print the registry as JSON on stdout.")] = False,
) -> None:
    """List the registered corpora: size, whether a copy is available here, licence.

    A corpus is found in the cache, in the folder named by CHARGEN_MIRROR, or downloaded (and
    checked against its sha256) on first use; CHARGEN_OFFLINE=1 forbids the download.
    """
    from chargen.data.corpora import list_corpora

    rows = list_corpora()
    if as_json:
        sys.stdout.write(json.dumps([{**asdict(r), "path": str(r.path) if r.path else None} for r in rows], indent=2) + "\n")
        return
    table = Table(title="corpora", title_justify="left")
    for col, justify in (("name", "left"), ("title", "left"), ("size", "right"), ("here", "left"), ("licence", "left")):
        table.add_column(col, justify=justify)
    for r in rows:
        here = f"[green]{r.location}[/]" if r.location else "[dim]download[/]"
        table.add_row(r.name, r.title, f"{r.size_bytes / 1e6:.2f} MB", here, r.licence)
    out_console.print(table)
