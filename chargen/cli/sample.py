"""`chargen sample`: stream text from a trained language model to stdout."""

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
    n: Annotated[int, typer.Option("-n", help="Number of samples, generated as one batch (sample i is the one --seed SEED+i gives alone).")] = 1,
    lang: Annotated[Optional[str], typer.Option(help="Name generators: the language to generate names in.")] = None,
    start: Annotated[Optional[str], typer.Option(help="Name generators: the first letter(s) of each name.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "cpu",
) -> None:
    """Generate text from a trained model, streamed to stdout as it is written.

    [dim]Examples:[/]
      chargen sample --temp 0.5 --prime "Sleeping beauty is"
      chargen sample --greedy --length 200 --seed 1
      chargen sample --model surnames-gen --lang Russian -n 10
    """
    from chargen import checkpoint
    from chargen.errors import UsageError
    from chargen.runtime import resolve_device
    from chargen.sample import check_sampling, generate_streams

    temperature = 0.0 if greedy else temp
    check_sampling(temperature, top_k, length)
    if n < 1:
        raise UsageError(f"-n must be at least 1, got {n}")
    loaded = checkpoint.load(model, task=("lm", "generate"), device=resolve_device(device))
    if loaded.config["task"] == "generate":
        from chargen.tasks.names import sample_names

        for name in sample_names(loaded, lang=lang, start=start, n=n, temperature=temperature, top_k=top_k, seed=seed):
            sys.stdout.write(name + "\n")
        return
    if lang or start:
        raise UsageError("--lang and --start are for name generators; this is a text model (use --prime)")
    loaded.vocab.encode(prime, what="the prime")  # fail before anything reaches stdout
    chunk = int(loaded.config["task_config"]["options"].get("seq_len", 30))
    # all n samples as one batch: the first streams as it is written, the others follow in order
    rest: list[list[str]] = [[] for _ in range(n - 1)]
    sys.stdout.write(prime)
    for pieces in generate_streams(loaded.model, loaded.vocab, n=n, prime=prime, length=length,
                                   temperature=temperature, top_k=top_k, seed=seed, chunk_size=chunk):
        sys.stdout.write(pieces[0])
        sys.stdout.flush()
        for kept, piece in zip(rest, pieces[1:]):
            kept.append(piece)
    for kept in rest:
        sys.stdout.write("\n\n" + prime + "".join(kept))
    sys.stdout.write("\n")
