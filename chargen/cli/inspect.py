"""`chargen inspect`: a language model's next-character guesses and a unit's activation, per character."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from chargen.cli.app import app
from chargen.cli.ui import THREADS_HELP, err_console, markup, out_console, say, use_threads, working


MAX_FILE_BYTES = 1 << 20  # --file: a trace keeps every state of every character, so the text is bounded
MAX_CHARS = 100_000
HTML, IMAGES = (".html", ".htm"), (".png", ".svg", ".pdf")


@app.command(rich_help_panel="Evaluate")
def inspect(
    model: Annotated[str, typer.Option("--model", "-m", help="Run directory, or a name under checkpoints/ (shipped: [b]grimm[/]).")] = "grimm",
    text: Annotated[Optional[str], typer.Option("--text", help="The text to look at.", show_default=False)] = None,
    file: Annotated[Optional[Path], typer.Option("--file", help="Read the text from a UTF-8 file (at most 1 MiB).", show_default=False)] = None,
    chars: Annotated[int, typer.Option("--chars", help=f"Without --text/--file: this many characters of the model's validation text (2 to {MAX_CHARS:,}).")] = 1000,
    unit: Annotated[Optional[int], typer.Option("--unit", help="Colour the text by this unit's activation (0-based). Default: none (with --html: the model's surprise).", show_default=False)] = None,
    layer: Annotated[Optional[int], typer.Option("--layer", help="Layer of the unit, 1 = bottom. Default: the top layer.", show_default=False)] = None,
    what: Annotated[str, typer.Option("--what", help="h (hidden state), c (cell state) or a gate: i, f, g, o (LSTM), r, z, n (GRU), k (phased LSTM time gate).")] = "h",
    top: Annotated[int, typer.Option("--top", help="How many next-character guesses to show per character.")] = 5,
    find: Annotated[Optional[str], typer.Option("--find", help="Rank units by correlation with a feature: quote, paren or line-pos.", show_default=False)] = None,
    html_out: Annotated[Optional[Path], typer.Option("--html", help="Also write a self-contained HTML page, coloured by --unit (else by the unit --find ranks first, else by the model's surprise); hover for the top guesses.", show_default=False)] = None,
    heatmap: Annotated[Optional[Path], typer.Option("--heatmap", help="Also write a heat map of gate saturation over the text (.png, .svg or .pdf).", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the --html or --heatmap file if it exists.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of the coloured text and table.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "cpu",
    threads: Annotated[Optional[int], typer.Option(help=THREADS_HELP, show_default=False)] = None,
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

    from chargen import checkpoint, outputs
    from chargen.errors import ChargenError, UsageError
    from chargen.inspect import colour_scale, find_units, html_page, trace, validation_passage, activation_colour
    from chargen.runtime import resolve_device
    from chargen.safeio import describe, read_text

    if text is not None and file is not None:
        raise UsageError("give --text or --file, not both")
    if text is not None and not text:
        raise UsageError("--text is empty: give at least one character")
    if top < 0:
        raise UsageError(f"--top must be 0 or more, got {top}")
    if not 2 <= chars <= MAX_CHARS:
        raise UsageError(f"--chars must be from 2 to {MAX_CHARS:,}, got {chars:,}")
    if html_out is not None:
        outputs.check_file(html_out, param="html_out", force=force, suffixes=HTML)
    if heatmap is not None:
        outputs.check_file(heatmap, param="heatmap", force=force, suffixes=IMAGES)
    if file is not None:
        try:
            text = read_text(file, MAX_FILE_BYTES)
        except OSError as e:
            raise UsageError(f"{{file}}: cannot read {file}: {describe(e)}", params="file") from None
        if not text:
            raise ChargenError(f"{{file}}: {file} is empty", params="file")
    loaded = checkpoint.load(model, task="lm", device=resolve_device(device))
    use_threads(threads, loaded.model)
    if text is None:
        text = validation_passage(loaded, chars)
    with working(f"tracing {len(text):,} characters", quiet=as_json):
        tr = trace(loaded.model, loaded.vocab, text)
        found = find_units(tr, find, top=10) if find else None
    if unit is not None:
        values = tr.activation(unit, what, layer).tolist()
    guesses = tr.top(top) if top else [[] for _ in text]
    if heatmap is not None and not tr.saturation():
        raise UsageError("--heatmap shows gates; this model's cell has none (use an LSTM or GRU model)")
    if html_out is not None:
        shown_unit, shown_layer, shown_what = unit, layer, what
        if unit is None and found:
            shown_unit, shown_layer, shown_what = found[0]["unit"], found[0]["layer"], found[0]["what"]
        page = html_page(tr, unit=shown_unit, what=shown_what, layer=shown_layer, top=max(top, 1),
                         title=f"chargen inspect: {loaded.path.name}")
        outputs.write_text(html_out, page, param="html_out", force=force, suffixes=HTML)
        say("wrote {path}", path=html_out)
    if heatmap is not None:
        from chargen.plots import plot_gate_saturation

        sat = tr.saturation()
        with outputs.writing(heatmap, param="heatmap", force=force, suffixes=IMAGES) as part:
            plot_gate_saturation({g: v.numpy() for g, v in sat.items()}, text, part,
                                 title=f"{loaded.path.name}: gate saturation (fraction of units)")
        say("wrote {path}", path=heatmap)
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
        table = Table(title=markup("units that track {find} ({n:,} characters)", find=repr(find), n=len(text)),
                      title_justify="left")
        for col in ("rank", "layer", "what", "unit", "r"):
            table.add_column(col, justify="right")
        for rank, row in enumerate(found, 1):
            table.add_row(str(rank), str(row["layer"]), escape(row["what"]), str(row["unit"]), f"{row['r']:+.3f}")
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
        out_console.print(markup("[dim]layer {layer}, unit {unit}, {what}: blue -{scale:.2f} .. white 0 .. red +{scale:.2f}[/]",
                                 layer=layer or tr.num_layers, unit=unit, what=what, scale=scale))
        out_console.print(coloured)
    if top:
        table = Table(title=f"next-character guesses (top {top})", title_justify="left")
        table.add_column("#", justify="right")
        table.add_column("char")
        if unit is not None:
            table.add_column(escape(f"{what}[{unit}]"), justify="right")
        table.add_column("likeliest next characters")
        for i, (ch, g) in enumerate(zip(text, guesses)):
            row = [str(i), escape(repr(ch))]
            if unit is not None:
                row.append(f"{values[i]:+.3f}")
            row.append(escape("  ".join(f"{c!r} {p:.2f}" for c, p in g)))
            table.add_row(*row)
        out_console.print(table)
