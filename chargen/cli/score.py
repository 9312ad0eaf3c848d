"""`chargen score`: how probable a text is under a language model (log-probability, nats/bits per char, perplexity)."""

from __future__ import annotations

import json
import sys
import unicodedata
from collections.abc import Iterator
from typing import IO, Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from chargen.cli.app import app
from chargen.cli.ui import (THREADS_HELP, LazyBar, err_console, markup, out_console, say, say_note, use_threads,
                            working)
from chargen.errors import ChargenError, UsageError
from chargen.safeio import describe, open_regular, text_blocks


def _blocks(stream: IO[bytes], name: str) -> Iterator[str]:
    """The text in blocks of whole lines, NFC-normalised as the corpora are (a block ends at a line break or
    before an ASCII character, which never joins a combining sequence, so normalising block by block
    equals normalising the whole)."""
    for block in text_blocks(stream, name):
        yield unicodedata.normalize("NFC", block)


def _open(file: str) -> IO[bytes]:
    """stdin's bytes for ``-``; else the file, if it is a regular one (never a FIFO that hangs or /dev/zero)."""
    if file == "-":
        return sys.stdin.buffer
    try:
        return open_regular(file)
    except OSError as e:
        raise UsageError(f"cannot read {file}: {describe(e)}") from None


@app.command(rich_help_panel="Evaluate")
def score(
    file: Annotated[str, typer.Argument(help="UTF-8 text file to score, or [b]-[/] for stdin.", show_default=False)],
    model: Annotated[str, typer.Option("--model", "-m", help="Run directory, or a name under checkpoints/ (its best checkpoint when it keeps one).")] = "grimm",
    per_line: Annotated[bool, typer.Option("--per-line", help="Score each line on its own (primed with a newline), one row per line.")] = False,
    prime: Annotated[Optional[str], typer.Option("--prime", "-p", help="Context before the text, not scored. Default: none (the first character is context only); a newline with --per-line.")] = None,
    skip_unknown: Annotated[bool, typer.Option("--skip-unknown", help="Drop characters outside the model's vocabulary (and count them) instead of failing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON on stdout.")] = False,
    last: Annotated[bool, typer.Option("--last", help="Use the run's last checkpoint, not its best.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "cpu",
    threads: Annotated[Optional[int], typer.Option(help=THREADS_HELP, show_default=False)] = None,
) -> None:
    """Score a text under a language model: total log-probability, nats and bits per character, perplexity.

    The text is read in blocks with the model's state carried through it, so any length runs in
    constant memory.

    [dim]Examples:[/]
      chargen score tale.txt
      printf 'The king had three sons.\\nThe sons had three kings.\\n' | chargen score - --per-line
      chargen score --model checkpoints/shakespeare --json --skip-unknown notes.txt
    """
    from chargen import checkpoint
    from chargen.runtime import resolve_device
    from chargen.generation.score import score_lines, score_text

    path, note = checkpoint.choose(model, last)
    loaded = checkpoint.load(path, task="lm", device=resolve_device(device))
    use_threads(threads, loaded.model)
    stream = _open(file)
    try:
        if per_line:
            with LineBar(quiet=as_json and not err_console.is_terminal) as bar:
                rows = [bar.advance((line, s)) for block in _blocks(stream, file) for line, s in
                        score_lines(loaded.model, loaded.vocab, block.splitlines(), prime=prime,
                                    skip_unknown=skip_unknown)]
            say_note(note)
            _print_lines(rows, as_json)
            if skipped := sum(s.skipped for _, s in rows):
                say("[yellow]skipped {n:,} character(s) outside the vocabulary[/]", n=skipped)
            return
        with working(f"scoring {file}", quiet=as_json):
            result, unknown = score_text(loaded.model, loaded.vocab, _blocks(stream, file), prime=prime or "",
                                         skip_unknown=skip_unknown)
    except OSError as e:  # a byte that is not UTF-8 (at its offset in the file), or a read that failed
        raise ChargenError(f"{file}: {describe(e)}") from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    say_note(note)  # which checkpoint, once the scoring worked: a failure stays one line
    if result.skipped:
        shown = " ".join(f"{ch!r} x{n}" for ch, n in list(unknown.items())[:10])
        say("[yellow]skipped {n:,} character(s) outside the vocabulary:[/] {shown}", n=result.skipped, shown=shown)
    if as_json:
        sys.stdout.write(json.dumps({"model": str(path), **result.to_dict()}, indent=2) + "\n")
        return
    table = Table(title=markup("{file} under {path}", file=file, path=path), title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.to_dict().items():
        if key == "skipped" and not value:
            continue
        table.add_row(key, "-" if value is None else f"{value:.4f}" if isinstance(value, float) else f"{value:,}")
    out_console.print(table)


def _print_lines(rows: list, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps([{"line": line, **s.to_dict()} for line, s in rows], indent=2,
                                    ensure_ascii=False) + "\n")
        return
    table = Table(title_justify="left")
    for col in ("line", "chars", "log_prob", "nats/char", "bits/char"):
        table.add_column(col, justify="left" if col == "line" else "right")
    for line, s in rows:
        per_char = "-" if not s.chars else f"{s.nats_per_char:.3f}"
        bits = "-" if not s.chars else f"{s.bits_per_char:.3f}"
        table.add_row(escape(line), str(s.chars), f"{s.log_prob:.2f}", per_char, bits)
    out_console.print(table)


class LineBar(LazyBar):
    """--per-line: lines scored so far, drawn from the first thousand on (a short file shows no bar)."""

    def __init__(self, quiet: bool) -> None:
        super().__init__("score", None, quiet)  # type: ignore[arg-type] - the total is unknown while streaming
        self.done = 0

    def advance(self, row: tuple) -> tuple:
        self.done += 1
        if self.done % 1000 == 0:
            self.update(completed=self.done, status=f"{self.done:,} lines")
        return row
