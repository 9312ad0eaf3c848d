"""`chargen sample`: stream text from a trained model to stdout (the saved model's task decides what a sample is)."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from chargen.cli.app import app


@app.command(rich_help_panel="Train and generate")
def sample(
    model: Annotated[str, typer.Option("--model", "-m", help="Run directory, or a name under checkpoints/ (shipped: [b]grimm[/]).")] = "grimm",
    prime: Annotated[str, typer.Option("--prime", "-p", help="Text to continue; run through the network once, then echoed.")] = "",
    length: Annotated[int, typer.Option("--length", "-l", help="Characters to generate after the prime.")] = 500,
    temp: Annotated[float, typer.Option("--temp", "-t", help="Temperature: 0 = greedy (argmax), 1 = the model's distribution.")] = 1.0,
    greedy: Annotated[bool, typer.Option("--greedy", help="Same as --temp 0.")] = False,
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="Sample only among the k likeliest characters.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed: the same seed gives the same text.")] = None,
    n: Annotated[int, typer.Option("-n", help="Number of samples, generated as one batch (a text model's sample i is the one --seed SEED+i gives alone).")] = 1,
    lang: Annotated[Optional[str], typer.Option(help="Name generators: the language to generate names in.")] = None,
    start: Annotated[Optional[str], typer.Option(help="Name generators: the first letter(s) of each name.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "cpu",
    threads: Annotated[int, typer.Option(help="Torch CPU threads (one is fastest for these small models, and on a busy machine).")] = 1,
) -> None:
    """Generate text from a trained model, streamed to stdout as it is written.

    [dim]Examples:[/]
      chargen sample --temp 0.5 --prime "Sleeping beauty is"
      chargen sample --greedy --length 200 --seed 1
      chargen sample --model surnames-gen --lang Russian -n 10
    """
    from chargen import checkpoint
    from chargen.runtime import resolve_device, use_threads
    from chargen.sample import check_seed
    from chargen.tasks import sample_saved

    temperature = 0.0 if greedy else temp
    check_seed(seed)
    use_threads(threads)
    loaded = checkpoint.load(model, task=("lm", "generate"), device=resolve_device(device))
    for piece in sample_saved(loaded, prime=prime, length=length, n=n, temperature=temperature, top_k=top_k,
                              seed=seed, lang=lang, start=start):
        sys.stdout.write(piece)
        sys.stdout.flush()
