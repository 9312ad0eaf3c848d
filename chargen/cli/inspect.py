"""`chargen inspect`: a language model's next-character guesses and a unit's activation, per character."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from chargen.cli.app import app
from chargen.cli.ui import err_console, out_console


@app.command(rich_help_panel="Evaluate")
def inspect(
    model: Annotated[str, typer.Option("--model", "-m", help="Run directory, or a name under checkpoints/ (shipped: [b]grimm[/]).")] = "grimm",
    text: Annotated[Optional[str], typer.Option("--text", help="The text to look at.")] = None,
    file: Annotated[Optional[Path], typer.Option("--file", help="Read the text from a file.")] = None,
    chars: Annotated[int, typer.Option("--chars", help="Without --text/--file: this many characters of the model's validation text.")] = 1000,
    unit: Annotated[Optional[int], typer.Option("--unit", help="Colour the text by this unit's activation (0-based).")] = None,
    layer: Annotated[Optional[int], typer.Option("--layer", help="Layer of the unit, 1 = bottom (default: the top layer).")] = None,
    what: Annotated[str, typer.Option("--what", help="h (hidden state), c (LSTM cell state) or a gate: i, f, g, o (LSTM), r, z, n (GRU), k (phased LSTM time gate).")] = "h",
    top: Annotated[int, typer.Option("--top", help="How many next-character guesses to show per character.")] = 5,
    find: Annotated[Optional[str], typer.Option("--find", help="Rank units by correlation with a feature: quote, paren or line-pos.")] = None,
    html_out: Annotated[Optional[Path], typer.Option("--html", help="Also write a self-contained HTML page (coloured; hover for the top guesses).")] = None,
    heatmap: Annotated[Optional[Path], typer.Option("--heatmap", help="Also write a PNG heat map of gate saturation over the text.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of the coloured text and table.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "cpu",
) -> None:
    """Show, per character, the model's likeliest next characters, and colour the text by one unit.

    Red is a positive activation, blue a negative one. [b]--find[/] looks for units that track a
    feature of the text (Karpathy's "quote cell"); then colour the text by the unit it names.

    [dim]Examples:[/]
      chargen inspect --text "Once upon a time" --top 3
      chargen inspect --find quote --chars 3000
      chargen inspect --unit 162 --layer 2 --what c --html quote.html
      chargen inspect --chars 120 --heatmap gates.png
    """
    from rich.table import Table
    from rich.text import Text

    from chargen import checkpoint
    from chargen.errors import UsageError
    from chargen.inspect import colour_scale, find_units, html_page, trace, validation_passage, activation_colour
    from chargen.runtime import resolve_device

    if text is not None and file is not None:
        raise UsageError("give --text or --file, not both")
    if top < 0:
        raise UsageError(f"--top must be 0 or more, got {top}")
    for flag, path in (("--html", html_out), ("--heatmap", heatmap)):
        if path is not None and not path.parent.is_dir():
            raise UsageError(f"{flag}: cannot write {path}: {path.parent} is not a directory")
    if html_out is not None and unit is None:
        raise UsageError("--html colours the text by a unit: give --unit")
    loaded = checkpoint.load(model, task="lm", device=resolve_device(device))
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--file: cannot read {file}: {e}") from None
    if text is None:
        text = validation_passage(loaded, chars)
    tr = trace(loaded.model, loaded.vocab, text)
    if unit is not None:
        values = tr.activation(unit, what, layer).tolist()
    found = find_units(tr, find, top=10) if find else None
    guesses = tr.top(top) if top else [[] for _ in text]
    if html_out is not None:
        html_out.write_text(html_page(tr, unit=unit, what=what, layer=layer, top=max(top, 1),
                                      title=f"chargen inspect: {loaded.path.name}"), encoding="utf-8")
        err_console.print(f"wrote {html_out}")
    if heatmap is not None:
        from chargen.plots import plot_gate_saturation

        sat = tr.saturation()
        if not sat:
            raise UsageError("--heatmap shows gates; this model's cell has none (use an LSTM or GRU model)")
        plot_gate_saturation({g: v.numpy() for g, v in sat.items()}, text, heatmap,
                             title=f"{loaded.path.name}: gate saturation (fraction of units)")
        err_console.print(f"wrote {heatmap}")
    if as_json:
        out = {"model": loaded.path.name, "text": text,
               "top": [[{"char": c, "prob": p} for c, p in g] for g in guesses]}
        if unit is not None:
            out["activation"] = {"unit": unit, "layer": layer or tr.num_layers, "what": what, "values": values}
        if found is not None:
            out["find"] = {"feature": find, "units": found}
        sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
        return
    if found is not None:
        table = Table(title=f"units that track {find!r} ({len(text)} characters)", title_justify="left")
        for col in ("rank", "layer", "what", "unit", "r"):
            table.add_column(col, justify="right")
        for rank, row in enumerate(found, 1):
            table.add_row(str(rank), str(row["layer"]), row["what"], str(row["unit"]), f"{row['r']:+.3f}")
        out_console.print(table)
        best = found[0]
        err_console.print(f"colour a text by the first: chargen inspect --model {model} --unit {best['unit']} "
                          f"--layer {best['layer']} --what {best['what']}", highlight=False, markup=False)
        return
    if unit is not None:
        scale = colour_scale(values, what)
        coloured = Text()
        for ch, v in zip(text, values):
            coloured.append(ch, style=f"on {activation_colour(v, scale)}" + (" black" if ch != "\n" else ""))
        out_console.print(f"[dim]layer {layer or tr.num_layers}, unit {unit}, {what}: blue -{scale:.2f} .. white 0 .. red +{scale:.2f}[/]")
        out_console.print(coloured)
    if top:
        table = Table(title=f"next-character guesses (top {top})", title_justify="left")
        table.add_column("#", justify="right")
        table.add_column("char")
        if unit is not None:
            table.add_column(f"{what}[{unit}]", justify="right")
        table.add_column("likeliest next characters")
        for i, (ch, g) in enumerate(zip(text, guesses)):
            row = [str(i), repr(ch)]
            if unit is not None:
                row.append(f"{values[i]:+.3f}")
            row.append("  ".join(f"{c!r} {p:.2f}" for c, p in g))
            table.add_row(*row)
        out_console.print(table)
