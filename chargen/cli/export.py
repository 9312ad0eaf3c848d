"""`chargen export`: write a language model's next-character step as TorchScript or ONNX."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from chargen.cli.app import app
from chargen.cli.ui import THREADS_HELP, say, use_threads, working


@app.command(name="export", rich_help_panel="Train and generate")
def export_command(
    model: Annotated[str, typer.Option("--model", "-m", help="Run directory, or a name under checkpoints/ (shipped: [b]grimm[/]).")] = "grimm",
    fmt: Annotated[str, typer.Option("--format", "-f", help="torchscript, or onnx (needs the export extra: pip install -e '.\\[export]' in the checkout).")] = "torchscript",
    out: Annotated[Path, typer.Option("--out", "-o", help="The file to write (never a run's own files; an existing file only with --force).")] = Path("model.pt"),
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it is an existing file of yours.")] = False,
    check: Annotated[str, typer.Option("--check", help="Text the export is run over and compared with the model (empty: no check).")] = "Once upon a time, there was a king.",
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON on stdout.")] = False,
    threads: Annotated[Optional[int], typer.Option(help=THREADS_HELP, show_default=False)] = None,
) -> None:
    """Export the next-character step: (ids, state) -> (logits, probs, new state), vocabulary inside.

    Inputs: [b]ids[/] (N,) int64 and one (layers, N, hidden) float tensor per state name (h, c, ...),
    zeros to start; outputs: logits and probs (N, vocab), then the new state in the same order.
    The file is run over --check and compared with chargen's own model before it replaces --out.

    [dim]Examples:[/]
      chargen export --format torchscript --out grimm.pt
      chargen export --model grimm --format onnx --out grimm.onnx
    """
    from chargen import checkpoint, outputs
    from chargen.errors import ChargenError
    from chargen.export import exported, max_difference, metadata

    outputs.check_file(out, param="out", force=force)  # before loading anything: a refusal costs nothing
    loaded = checkpoint.load(model, task="lm", device="cpu")
    use_threads(threads, loaded.model)
    with working(f"exporting {loaded.path.name} as {fmt}", quiet=as_json):
        data = exported(loaded, fmt)
    info = {"model": loaded.path.name, "format": fmt, "out": str(out), "bytes": len(data),
            "inputs": metadata(loaded)["inputs"], "outputs": metadata(loaded)["outputs"]}
    with outputs.writing(out, param="out", force=force) as part:
        part.write_bytes(data)
        if check:  # on the written file, before it replaces anything: a bad export leaves --out as it was
            info["max_logit_difference"] = diff = max_difference(loaded, part, fmt, check)
            if diff > 1e-3:
                raise ChargenError(f"the export differs from the model by {diff:.2g} in the logits; {out} was not written")
    if as_json:
        sys.stdout.write(json.dumps(info) + "\n")
        return
    say("wrote {out} ({fmt}, {size:,} bytes): inputs {inputs}; outputs {outputs}", out=out, fmt=fmt, size=info["bytes"],
        inputs=", ".join(info["inputs"]), outputs=", ".join(info["outputs"]))
    if check:
        say("checked over {n:,} characters: largest logit difference {diff:.2g}", n=len(check),
            diff=info["max_logit_difference"])
