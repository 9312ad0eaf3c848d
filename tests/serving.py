"""What the serve tests share: a server started on a free loopback port, an HTTP client, a tiny model."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from chargen import checkpoint
from chargen.generation.constraints import constraints_for_run
from chargen.generation.logits import CONTROLS, DecodeConfig
from chargen.models import ModelConfig, build_model
from chargen.generation.sample import generate
from chargen.serve import Limits, Service, make_server
from chargen.generation.stops import stop_at
from chargen.vocab import Vocab

EXTRA = all(importlib.util.find_spec(m) is not None for m in ("starlette", "uvicorn", "httpx"))
# the tiny model's server: a small batch and queue, so that 200 requests meet a full queue
TINY_LIMITS = Limits(max_batch=16, max_waiting=48, max_body=4096, max_queued=4)
TINY_TEXT = "abcdefghijklmnopqrstuvwxyz .,\n"


def need_extra() -> None:
    if not EXTRA:
        pytest.skip("the serve extra is not installed: pip install -e '.[serve]' (and httpx: '.[dev]')")


class Running:
    """A started server, its base URL and the lines it logged."""

    def __init__(self, service: Service, **options: Any) -> None:
        need_extra()
        self.lines: list[str] = []
        self.server = make_server(service, "127.0.0.1", 0, log=self.lines.append, **options).start()
        self.url = self.server.url
        self.port = self.server.address[1]

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        assert not [line for line in self.lines if "Traceback" in line or "\n" in line]


def save_tiny(run: Path) -> Path:
    """A tiny untrained LM saved as a run: cheap enough for hundreds of requests."""
    vocab = Vocab.from_text(TINY_TEXT)
    cfg = ModelConfig(vocab_size=len(vocab), embed_dim=8, cell="lstm", hidden_size=16, num_layers=2)
    torch.manual_seed(0)
    checkpoint.save(run, {"task": "lm", "model": cfg.to_dict(), "vocab": vocab.to_json(),
                          "task_config": {"options": {"seq_len": 8}}}, build_model(cfg))
    return run


@functools.cache
def client() -> Any:
    """One HTTP client for the module's calls (making one per call costs more than most calls)."""
    import httpx

    return httpx.Client(timeout=60)


def call(base: str, path: str, body: Any = None, raw: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, bytes, str]:
    """(status, body, content type) of a GET (no body) or a POST."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    response = client().request("GET" if data is None else "POST", base + path, content=data, headers=sent)
    return response.status_code, response.content, response.headers.get("content-type", "")


def post(base: str, path: str, body: Any) -> Any:
    status, data, _ = call(base, path, body)
    assert status == 200, data
    return json.loads(data)


def lines_of(data: bytes) -> tuple[dict[str, Any], str]:
    lines = [json.loads(line) for line in data.decode().splitlines()]
    assert lines[-1].get("done") is True, lines[-1]
    return lines[0]["start"], "".join(line["text"] for line in lines[1:-1])


def streamed(base: str, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    status, data, kind = call(base, "/api/generate", body)
    assert status == 200 and kind.startswith("application/x-ndjson"), data
    return lines_of(data)


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or the socket's timeout)."""
    received = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


def raw_http(port: int, request: bytes) -> bytes:
    """Send bytes on a fresh connection; everything the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        return read_all(sock)


def library(loaded: Any, body: dict[str, Any]) -> str:
    """What ``chargen.generation.sample.generate`` writes for a generate request's settings: its decoding controls and
    constraints (built as ``chargen sample`` builds them), cut at its stop strings and the constraints'."""
    stops = body.get("stop", [])
    prime, length = body.get("prime", ""), body.get("length", 200)
    words = body.get("include", [])
    constraints = constraints_for_run(loaded, length=length, prime=prime, max_copy=body.get("max_copy"),
                                      pattern=body.get("pattern"), include=[words] if isinstance(words, str) else words)
    pieces = generate(loaded.model, loaded.vocab, prime=prime, length=length, seed=body["seed"],
                      decode=DecodeConfig.from_dict({k: v for k, v in body.items() if k in CONTROLS}),
                      masks=constraints.masks)
    return "".join(stop_at(pieces, [*([stops] if isinstance(stops, str) else stops), *constraints.stops]))


# fixtures shared by the server's test modules (each imports them by name)
@pytest.fixture(scope="module", autouse=True)
def threads_one() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models; two threads crawl when other processes hold the cores
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("serve") / "tiny")


@pytest.fixture(scope="module")
def tiny(tiny_run: Path) -> Iterator[Running]:
    with Running(Service({"tiny": checkpoint.load(tiny_run)}, TINY_LIMITS)) as server:
        yield server
