"""`chargen serve`: load models once and answer JSON over HTTP, with a small page to try them."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from chargen.cli.app import app
from chargen.cli.ui import err_console


@app.command(rich_help_panel="Train and generate")
def serve(
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="A model to load (repeat for several): run directory or a name under checkpoints/ (default: grimm and surnames).")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind; the default answers only this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port (0 picks a free one).")] = 8000,
    max_length: Annotated[int, typer.Option("--max-length", help="Most characters generated per request.")] = 2000,
    max_text: Annotated[int, typer.Option("--max-text", help="Most characters in a prime or a text to score/inspect.")] = 20_000,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not log requests on stderr.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "cpu",
) -> None:
    """Serve models over HTTP: generate (streamed), score, classify, inspect; a page at /.

    Endpoints (JSON bodies): POST /api/generate {prime, length, temperature, top_k, seed},
    /api/score {text}, /api/classify {names}, /api/inspect {text, unit, layer, what};
    GET /api/models. Each may name a loaded model with "model".

    [dim]Examples:[/]
      chargen serve
      chargen serve --model grimm --model surnames --port 8080
      curl -s localhost:8000/api/generate -d '{"prime": "The king", "length": 80, "seed": 1}'
    """
    from chargen import checkpoint
    from chargen.errors import UsageError
    from chargen.runtime import resolve_device
    from chargen.serve import Limits, Service, make_server

    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be in [0, 65535], got {port}")
    if max_length < 1 or max_text < 1:
        raise UsageError("--max-length and --max-text must be positive")
    dev = resolve_device(device)
    loaded = {}
    for name in model or ["grimm", "surnames"]:
        one = checkpoint.load(name, device=dev)
        loaded[one.path.name if one.path.name not in loaded else name] = one
    try:
        server = make_server(Service(loaded, Limits(max_length=max_length, max_text=max_text)), host, port,
                             log=None if quiet else lambda line: err_console.print(line, highlight=False, markup=False))
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    bound_host, bound_port = server.server_address[:2]
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"[yellow]warning:[/] listening on {host}: other machines can reach this server")
    err_console.print(f"serving {', '.join(loaded)} on [b]http://{bound_host}:{bound_port}/[/] (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        err_console.print("stopped")
    finally:
        server.server_close()
