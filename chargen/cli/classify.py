"""`chargen classify`: the likeliest languages of surnames, from a trained classifier."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from chargen.cli.app import app
from chargen.cli.ui import THREADS_HELP, use_threads


@app.command(rich_help_panel="Train and generate")
def classify(
    names: Annotated[list[str], typer.Argument(help="Surnames to classify; [b]-[/] reads one per line from stdin.", show_default=False)],
    model: Annotated[str, typer.Option("--model", "-m", help="Run directory, or a name under checkpoints/ (shipped: [b]surnames[/]).")] = "surnames",
    top: Annotated[int, typer.Option("--top", help="How many languages to show per name.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of {name, predictions: [{language, prob, log_prob}]}.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "cpu",
    threads: Annotated[Optional[int], typer.Option(help=THREADS_HELP, show_default=False)] = None,
) -> None:
    """Guess the language of each surname: the top languages with their probabilities.

    The shipped classifier's probabilities are calibrated on held-out names from the tutorial's
    lists and from Faker's (a 0.8 is right about 80% of the time). A guess below the threshold
    chosen on those names (where it is wrong more often than right) is marked
    "unsure: Polish 0.41 / Czech 0.33".

    Accented letters are folded to ASCII (ł, ß, ø, đ spelled out). A name with no Latin
    letter, or longer than any surname, is reported on stderr and the command exits 1 after
    answering the others.

    [dim]Examples:[/]
      chargen classify Schmidhuber Hinton
      chargen classify --top 5 --json Nguyen
      cat names.txt | chargen classify -
    """
    from chargen import checkpoint
    from rich.markup import escape

    from chargen.cli.ui import err_console
    from chargen.errors import UsageError
    from chargen.runtime import resolve_device
    from chargen.tasks.classify import classify_names

    if top < 1:
        raise UsageError(f"--top must be at least 1, got {top}")
    given = [line.strip() for n in names for line in (sys.stdin.read().splitlines() if n == "-" else [n])]
    given = [n for n in given if n]
    if not given:
        raise UsageError("no names to classify (the names given, or stdin, were empty)")
    loaded = checkpoint.load(model, task="classify", device=resolve_device(device))
    use_threads(threads, loaded.model)
    results = classify_names(loaded, given, top=top)
    if as_json:
        sys.stdout.write(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    for r in results:
        if "error" in r:
            err_console.print(f"[bold red]error:[/] {escape(repr(r['name']))}: {escape(r['error'])}",
                              highlight=False, soft_wrap=True, emoji=False)
        elif not as_json:
            head = r["name"]
            if r.get("unsure"):
                head += "  unsure: " + " / ".join(f"{p['language']} {p['prob']:.2f}" for p in r["predictions"][:2])
            sys.stdout.write(head + "".join(f"\n  {p['prob']:.3f} {p['language']}" for p in r["predictions"]) + "\n")
    if any("error" in r for r in results):
        raise typer.Exit(code=1)
