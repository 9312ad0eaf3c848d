"""`chargen sample`: stream text from a trained model to stdout (the saved model's task decides what a sample is)."""

from __future__ import annotations

import itertools
import sys
from typing import Annotated, Any, Optional

import typer

from chargen.cli.app import app
from chargen.cli.ui import err_console, say, say_note


@app.command(rich_help_panel="Train and generate")
def sample(
    model: Annotated[str, typer.Option("--model", "-m", help="Run directory, or a name under checkpoints/ (shipped: [b]grimm[/]).")] = "grimm",
    prime: Annotated[str, typer.Option("--prime", "-p", help="Text to continue; run through the network once, then echoed.")] = "",
    length: Annotated[int, typer.Option("--length", "-l", help="Characters to generate after the prime.")] = 500,
    temp: Annotated[Optional[str], typer.Option("--temp", "-t", metavar="T|SCHEDULE", help="Temperature: 0 = greedy (argmax), 1 = the model's distribution; or a schedule: [b]0.8:0.4[/] (linear over the sample), [b]0.8:0.4@100[/] (over 100 characters), [b]1.0,0.7@50[/] (steps).")] = None,
    greedy: Annotated[bool, typer.Option("--greedy", help="Argmax after penalties and masks (same as --temp 0).")] = False,
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="Sample only among the k likeliest characters. Default: all of them.", show_default=False)] = None,
    top_p: Annotated[Optional[float], typer.Option("--top-p", help="Nucleus sampling: the likeliest characters holding this much probability (0-1]. Default: off.", show_default=False)] = None,
    min_p: Annotated[Optional[float], typer.Option("--min-p", help="Drop characters less likely than this fraction of the likeliest one's probability \\[0-1]. Default: off.", show_default=False)] = None,
    typical: Annotated[Optional[float], typer.Option("--typical", help="Locally typical sampling: the characters nearest the entropy, holding this much probability (0-1]. Default: off.", show_default=False)] = None,
    repetition_penalty: Annotated[Optional[float], typer.Option("--repetition-penalty", help="Divide (CTRL-style) the logits of characters in the last --repetition-window characters; > 1 discourages repeats. Default: off.", show_default=False)] = None,
    repetition_window: Annotated[Optional[int], typer.Option("--repetition-window", help="How many recent characters (the prime's included) the repetition penalty looks at. Default: 64.")] = None,
    no_repeat: Annotated[Optional[int], typer.Option("--no-repeat", help="Never write a character that repeats an N-character sequence already in the text (try 12-20). Default: off.", show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed: the same seed gives the same text. Default: a fresh random seed.", show_default=False)] = None,
    n: Annotated[int, typer.Option("-n", help="Number of samples, generated as one batch (a text model's sample i is the one --seed SEED+i gives alone).")] = 1,
    lang: Annotated[Optional[str], typer.Option(help="Name generators: the language to generate names in.")] = None,
    start: Annotated[Optional[str], typer.Option(help="Name generators: the first letter(s) of each name.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "cpu",
    threads: Annotated[int, typer.Option(help="Torch CPU threads (one is fastest for these small models, and on a busy machine).")] = 1,
    max_copy: Annotated[Optional[int], typer.Option("--max-copy", help="Text models: no span longer than N characters of a sample occurs verbatim in the corpus the model was trained on (its index is built on first use and cached beside the model). Default: no limit.", show_default=False)] = None,
    novelty: Annotated[bool, typer.Option("--novelty", help="Text models: after the samples, say on stderr how much of each is copied from the corpus (longest copy, where it comes from, share in copies of 20+ characters).")] = False,
    pattern: Annotated[Optional[str], typer.Option("--pattern", help="Every sample (the prime or --start included) matches this regular expression in full: a text ends at a line break once it matches, a name at its end (needs the constraints extra).")] = None,
    include: Annotated[Optional[list[str]], typer.Option("--include", help="Every sample (text or name) contains this word (repeatable; with or without --pattern).")] = None,
    stop: Annotated[Optional[list[str]], typer.Option("--stop", help="End a sample at the first occurrence of this string (not printed; repeatable; escapes such as [b]\\n\\n[/] understood).")] = None,
    beam: Annotated[Optional[int], typer.Option("--beam", help="Beam search with K beams: the likeliest continuation of --prime they find (deterministic; its log-probability goes to stderr). Default: off (sampling).", show_default=False)] = None,
    last: Annotated[bool, typer.Option("--last", help="Use the run's last checkpoint, not its best.")] = False,
) -> None:
    """Generate text from a trained model, streamed to stdout as it is written.

    [dim]Examples:[/]
      chargen sample --temp 0.5 --prime "Sleeping beauty is"
      chargen sample --greedy --length 200 --seed 1
      chargen sample --model surnames-gen --lang Russian -n 10
      chargen sample --prime "The king" --stop "\\n\\n" --temp 0.7
      chargen sample --prime "The king said" --beam 8 --length 80
      chargen sample --temp 0.5 --top-p 0.9 --no-repeat 16 --prime "The king"
      chargen sample --max-copy 12 --novelty -n 3 --length 300
      chargen sample --pattern "\\[A-Z]\\[a-z]+ (was|is) \\[a-z ]+\\." --include gold -n 5 --length 80
    """
    from chargen import checkpoint
    from chargen.errors import UsageError
    from chargen.generation.constraints import constraints_for_run
    from chargen.generation.logits import DecodeConfig
    from chargen.runtime import resolve_device, use_threads
    from chargen.generation.sample import check_seed
    from chargen.generation.stops import unescape
    from chargen.tasks import sample_saved

    decode = DecodeConfig.from_dict({
        "temperature": temp, "greedy": greedy or None, "top_k": top_k, "top_p": top_p, "min_p": min_p,
        "typical": typical, "repetition_penalty": repetition_penalty, "repetition_window": repetition_window,
        "no_repeat": no_repeat})
    check_seed(seed)
    use_threads(threads)
    stops = [unescape(text) for text in stop or []]
    if beam is not None and beam < 1:
        raise UsageError(f"--beam must be at least 1, got {beam}")
    if beam is not None and not prime:
        raise UsageError("--beam needs a --prime to continue (beam search has no random first character)")
    if beam is not None and n > 1:
        raise UsageError("--beam finds one continuation (it is deterministic); drop -n")
    if beam is not None and (max_copy is not None or pattern is not None or include or novelty):
        raise UsageError("--beam does not take --max-copy, --pattern, --include or --novelty; sample instead")
    path, note = checkpoint.choose(model, last)
    loaded = checkpoint.load(path, task=("lm", "generate"), device=resolve_device(device))
    if loaded.config["task"] == "lm" and (typed := loaded.vocab.typed(prime)) != prime:
        say("[dim]the prime is written with the model's own characters: {prime}[/]", prime=typed)
        prime = typed  # ' " -- ... typed for the corpus's ’ “ ” — …
    if (stops or beam is not None) and loaded.config["task"] != "lm":
        raise UsageError("--stop and --beam are for text models; this is a name generator")
    if beam is not None:
        if lang or start:
            raise UsageError("--lang and --start are for name generators; this is a text model (use --prime)")
        _beam(loaded, prime, length, beam, decode, stops, note)
        return
    names = loaded.config["task"] == "generate"  # a name generator ends a name at <eos> once it matches
    constraints = constraints_for_run(loaded, length=length, prime=prime, max_copy=max_copy,
                                      pattern=None if names else pattern, include=[] if names else include or [],
                                      novelty=novelty)
    texts: list[str] = []
    constrained = constraints.masks or constraints.index is not None
    extra: dict[str, Any] = {"masks": constraints.masks, "texts": texts} if constrained else {}
    if names and (pattern is not None or include):
        extra = {"pattern": pattern, "include": include or []}
    pieces = iter(sample_saved(loaded, prime=prime, length=length, n=n, decode=decode, seed=seed, lang=lang,
                               start=start, stop=[*stops, *constraints.stops], **extra))
    first = next(pieces, "")  # the task's checks run before its first piece
    say_note(note)  # which checkpoint, once nothing can fail any more: an error stays one line
    for piece in itertools.chain([first], pieces):
        sys.stdout.write(piece)
        sys.stdout.flush()
    for i, text in enumerate(texts if novelty else [], start=1):
        err_console.print(_novelty_line(i, constraints.novelty(text)), highlight=False, markup=False)


def _novelty_line(i: int, report: dict[str, Any]) -> str:
    span = report["span"] if len(report["span"]) <= 60 else report["span"][:57] + "..."
    where = f" {span!r} (corpus line {report['corpus_line']})" if report["longest_copy"] else ""
    return (f"novelty, sample {i}: longest copy {report['longest_copy']} characters{where}; "
            f"{report['long_copy_share']:.1%} of its {report['chars']} characters in copies of "
            f"{report['min_span']}+")


def _beam(loaded: Any, prime: str, length: int, beams: int, decode: Any, stops: list[str], note: str | None) -> None:
    """--beam: the best beam's text on stdout (cut at a stop string), its log-probability on stderr."""
    from chargen.generation.beam import beam_search
    from chargen.generation.stops import stop_at

    for text in stops:
        loaded.vocab.encode(text, what=f"the stop string {text!r}")  # one the model cannot write never stops it
    found = beam_search(loaded.model, loaded.vocab, prime, length, beams, decode)
    say_note(note)
    text = "".join(stop_at([found.text], stops))
    sys.stdout.write(prime + text + "\n")
    log_prob = found.prefix_log_prob(len(text))
    per_char = f" ({-log_prob / len(text):.4f} nats/char)" if text else ""
    err_console.print(f"[dim]beam {beams}: log-probability {log_prob:.4f} nats over {len(text)} characters{per_char}[/]",
                      highlight=False)
