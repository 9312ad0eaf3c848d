"""`chargen export`: write a language model's next-character step as TorchScript or ONNX."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from chargen.cli.app import app
from chargen.cli.ui import err_console


@app.command(name="export", rich_help_panel="Train and generate")
def export_command(
    model: Annotated[str, typer.Option("--model", "-m", help="Run directory, or a name under checkpoints/ (shipped: [b]grimm[/]).")] = "grimm",
    fmt: Annotated[str, typer.Option("--format", "-f", help="torchscript, or onnx (needs pip install 'chargen[export]').")] = "torchscript",
    out: Annotated[Path, typer.Option("--out", "-o", help="The file to write.")] = Path("model.pt"),
    check: Annotated[str, typer.Option("--check", help="Text the export is run over and compared with the model (empty: no check).")] = "Once upon a time, there was a king.",
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON on stdout.")] = False,
) -> None:
    """Export the next-character step: (ids, state) -> (logits, probs, new state), vocabulary inside.

    Inputs: [b]ids[/] (N,) int64 and one (layers, N, hidden) float tensor per state name (h, c, ...),
    zeros to start; outputs: logits and probs (N, vocab), then the new state in the same order.
    The file is run over --check and compared with chargen's own model before the command ends.

    [dim]Examples:[/]
      chargen export --format torchscript --out grimm.pt
      chargen export --model grimm --format onnx --out grimm.onnx
    """
    from chargen import checkpoint
    from chargen.errors import ChargenError
    from chargen.export import export, max_difference, metadata

    loaded = checkpoint.load(model, task="lm", device="cpu")
    export(loaded, fmt, out)
    info = {"model": loaded.path.name, "format": fmt, "out": str(out), "bytes": out.stat().st_size,
            "inputs": metadata(loaded)["inputs"], "outputs": metadata(loaded)["outputs"]}
    if check:
        info["max_logit_difference"] = diff = max_difference(loaded, out, fmt, check)
        if diff > 1e-3:
            raise ChargenError(f"{out}: the export differs from the model by {diff:.2g} in the logits")
    if as_json:
        sys.stdout.write(json.dumps(info) + "\n")
        return
    err_console.print(f"wrote {out} ({fmt}, {info['bytes']:,} bytes): inputs {', '.join(info['inputs'])}; "
                      f"outputs {', '.join(info['outputs'])}", highlight=False)
    if check:
        err_console.print(f"checked over {len(check)} characters: largest logit difference {info['max_logit_difference']:.2g}")
