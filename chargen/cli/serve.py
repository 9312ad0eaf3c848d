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
    token: Annotated[Optional[str], typer.Option("--token", help="Require this token on API calls (header 'Authorization: Bearer TOKEN' or ?token=TOKEN); 'auto' makes a random one.")] = None,
    allow_host: Annotated[Optional[list[str]], typer.Option("--allow-host", help="Also answer requests addressed to this host name (repeatable; '*' for any). Others are refused: DNS rebinding.")] = None,
    allow_origin: Annotated[Optional[list[str]], typer.Option("--allow-origin", help="Also let web pages from this origin call the API, e.g. http://localhost:3000 (repeatable).")] = None,
    max_length: Annotated[int, typer.Option("--max-length", help="Most characters generated per request.")] = 2000,
    max_text: Annotated[int, typer.Option("--max-text", help="Most characters in a prime or a text to score or inspect (inspect: at most 4,000, its trace's memory).")] = 20_000,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Generate requests stepped together in one batch per model; more wait for a place.")] = 64,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Log only problems, not every request.")] = False,
    threads: Annotated[int, typer.Option(help="Torch CPU threads (one is fastest for these small models).")] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "cpu",
) -> None:
    """Serve models over HTTP: generate (streamed; concurrent requests share one batch), score, classify, inspect; a page at /.

    POST /api/generate {prime, length, temperature, top_k, seed, stop, stream}, /api/score {text}, /api/classify {names, top}, /api/inspect {text, unit, layer, what, top}; GET /api/models. Each may name a loaded "model".

    Only requests addressed to this machine's names, from no web page or this server's own, are answered (see --allow-host, --allow-origin, --token). Needs the serve extra: pip install -e ".\\[serve]".

    [dim]Examples:[/]
      chargen serve
      chargen serve --model grimm --model surnames --port 8080 --token auto
      curl -s localhost:8000/api/generate -d '{"prime": "The king", "seed": 1}'
    """
    import secrets

    from chargen import checkpoint
    from chargen.runtime import resolve_device, use_threads
    from chargen.serve import Limits, Service, make_server

    limits = Limits(max_length=max_length, max_text=max_text, max_batch=max_batch)
    use_threads(threads)
    dev = resolve_device(device)
    if token == "auto":
        token = secrets.token_urlsafe(24)

    def log(line: str) -> None:
        err_console.print(line, highlight=False, markup=False)

    loaded = {}
    for name in model or ["grimm", "surnames"]:
        one = checkpoint.load(name, device=dev)
        loaded[one.path.name if one.path.name not in loaded else name] = one
    server = make_server(Service(loaded, limits), host, port, allow_hosts=tuple(allow_host or ()),
                         allow_origins=tuple(allow_origin or ()), token=token, log=log, access_log=not quiet)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log(f"warning: listening on {host}: other machines can reach this server; requests must name "
            f"{host} or an --allow-host name")
    shown = server.url + "/" + (f"?token={token}" if token else "")
    err_console.print(f"serving {', '.join(loaded)} on ", end="", highlight=False, markup=False)
    err_console.print(shown, style="bold", highlight=False, markup=False, end="")
    err_console.print(" (Ctrl-C stops)", highlight=False, markup=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log("stopped")
