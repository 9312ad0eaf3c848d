"""chargen serve under load: one generation batch, bounded queues, deadlines, resets, HTTP/1.0 (tiny model)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from chargen import checkpoint
from chargen.cli import app
from chargen.serve import Limits, Service

from serving import (  # noqa: E402, F401 - threads_one, tiny_run and tiny are fixtures
    threads_one,
    tiny,
    tiny_run,
    TINY_LIMITS,
    TINY_TEXT,
    Running,
    call,
    library,
    lines_of,
    need_extra,
    read_all,
    raw_http,
    save_tiny,
    streamed,
)

DEADLINE = 0.5  # seconds for headers and for a body, in the slow-client test



def test_200_concurrent_generate_requests_are_all_answered_and_equal_chargen_sample(
        tiny: Running, tiny_run: Path) -> None:
    import httpx

    loaded = checkpoint.load(tiny_run)
    settings = [{}, {"temperature": 0.7}, {"top_k": 5}, {"temperature": 0}]  # streams decoding differently share a batch
    bodies = [{"prime": "the " if i % 3 else "", "length": 200, "seed": 1000 + i, "stream": i % 2 == 0,
               **settings[i % 4]} for i in range(200)]

    async def one(client: httpx.AsyncClient, body: dict[str, Any]) -> tuple[int, str | None, httpx.Response]:
        response = await client.post("/api/generate", json=body)
        if response.status_code != 200:
            return response.status_code, None, response
        text = lines_of(response.content)[1] if body["stream"] else response.json()["text"]
        return 200, text, response

    async def everyone() -> list[tuple[int, str | None, httpx.Response]]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=tiny.url, limits=limits, timeout=60) as client:
            return await asyncio.gather(*(one(client, body) for body in bodies))  # a reset raises here

    started = time.monotonic()
    answers = asyncio.run(everyone())
    assert time.monotonic() - started < 60
    served = [i for i, (status, _, _) in enumerate(answers) if status == 200]
    for status, _, response in answers:
        assert status in (200, 503), response.text
        if status == 503:
            assert response.headers["Retry-After"] == "1" and "retry" in response.json()["error"]
    assert len(served) >= TINY_LIMITS.max_batch + TINY_LIMITS.max_waiting
    for i in served[::10]:  # each stream drew from its own seeded generator, whoever shared its batch
        assert answers[i][1] == library(loaded, bodies[i]), i
    for i in served[1:4]:  # and chargen sample writes the same
        flags = {"prime": "--prime", "length": "--length", "seed": "--seed", "temperature": "--temp", "top_k": "--top-k"}
        args = [part for key, flag in flags.items() if key in bodies[i] for part in (flag, str(bodies[i][key]))]
        cli = CliRunner().invoke(app, ["sample", "--model", str(tiny_run), *args])
        assert cli.exit_code == 0 and cli.stdout == bodies[i]["prime"] + answers[i][1] + "\n", args


def test_families_the_batch_cannot_carry_are_generated_request_by_request(
        tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from chargen.serve import app as served

    monkeypatch.setattr(served, "batchable", lambda model: False)  # as for a transformer or an n-gram model
    loaded = checkpoint.load(tiny_run)
    bodies = [{"prime": "the ", "length": 150, "seed": s, "stop": "q" if s % 2 else [], "stream": s % 3 > 0}
              for s in range(6)]
    with Running(Service({"tiny": loaded}, TINY_LIMITS)) as server:
        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(pool.map(lambda body: call(server.url, "/api/generate", body), bodies))
    for body, (status, data, _) in zip(bodies, answers):
        assert status == 200
        text = lines_of(data)[1] if body["stream"] else json.loads(data)["text"]
        assert text == library(loaded, body)
    assert any(len(library(loaded, body)) < 150 for body in bodies)  # a stop string was met


def test_a_full_queue_answers_503_with_retry_after() -> None:
    need_extra()
    from chargen.serve.api import ApiError
    from chargen.serve.app import Gate

    gate, release = Gate("inspect", workers=1, queued=2), threading.Event()

    def work(i: int) -> int:
        release.wait(10)
        return i

    async def fill() -> None:
        tasks = [asyncio.create_task(gate.run(work, i)) for i in range(3)]  # one computing, two waiting
        await asyncio.sleep(0.05)
        with pytest.raises(ApiError) as refused:
            await gate.run(work, 99)
        assert refused.value.status == 503 and refused.value.headers == {"Retry-After": "1"} and gate.held == 3
        release.set()
        assert await asyncio.gather(*tasks) == [0, 1, 2] and gate.held == 0

    asyncio.run(fill())


def test_bodies_being_received_are_bounded_over_all_requests(tiny_run: Path) -> None:
    limits = Limits(max_body=4096, max_bodies=5000)
    body = {"text": "a cat " * 490}  # 2,951 bytes
    with Running(Service({"tiny": checkpoint.load(tiny_run)}, limits)) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as holding:
            holding.sendall(b"POST /api/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4000\r\n\r\n"
                            + b"x" * 3000)
            time.sleep(0.5)  # received, and held until the rest comes
            status, data, _ = call(server.url, "/api/score", body)
            assert status == 503 and "retry in 1 s" in json.loads(data)["error"]
        time.sleep(0.5)  # the holder has gone: its bytes are given back
        assert call(server.url, "/api/score", body)[0] == 200


def test_inspect_traces_one_at_a_time_under_50_concurrent_requests(tiny_run: Path) -> None:
    """Memory stays bounded: however many inspect requests arrive, at most inspect_workers traces are held."""
    need_extra()
    import httpx

    service = Service({"tiny": checkpoint.load(tiny_run)}, Limits(inspect_workers=1, max_queued=8))
    inner, most, now = service.inspect, [0], [0]
    lock = threading.Lock()

    def counted(request: Any) -> Any:
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        try:
            time.sleep(0.01)
            return inner(request)
        finally:
            with lock:
                now[0] -= 1

    service.inspect = counted  # type: ignore[method-assign]

    async def everyone() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            body = {"text": TINY_TEXT * 8, "unit": 3, "top": 5}
            return [r.status_code for r in await asyncio.gather(*(client.post("/api/inspect", json=body)
                                                                   for _ in range(50)))]

    with Running(service) as server:
        statuses = asyncio.run(everyone())
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 9 and most[0] == 1


def test_slow_clients_do_not_delay_others_and_are_cut_off(tiny_run: Path) -> None:
    limits = Limits(max_batch=16, body_timeout=DEADLINE, header_timeout=DEADLINE)
    slow: list[socket.socket] = []
    with Running(Service({"tiny": checkpoint.load(tiny_run)}, limits)) as tiny, contextlib.ExitStack() as sockets:
        for _ in range(100):  # each sends part of its headers, then nothing
            slow.append(sockets.enter_context(socket.create_connection(("127.0.0.1", tiny.port), timeout=5)))
            slow[-1].sendall(b"POST /api/score HTTP/1.1\r\nHost: 127.0")
        # a body that never completes
        dribble = sockets.enter_context(socket.create_connection(("127.0.0.1", tiny.port), timeout=5))
        dribble.sendall(b"POST /api/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{")
        started = time.monotonic()
        for _ in range(3):
            assert call(tiny.url, "/api/score", {"text": "a cat"})[0] == 200
        assert time.monotonic() - started < 1.0
        answer = read_all(dribble)  # after the body deadline (0.5 s here): 408, and the connection closes
        assert answer.startswith(b"HTTP/1.1 408") and b"took over 0.5 s" in answer
        time.sleep(DEADLINE + 0.3)
        for sock in slow:  # the header deadline has closed them
            sock.settimeout(2)
            assert sock.recv(100) == b""
    assert any("request headers took over 0.5 s" in line for line in tiny.lines)


def test_http10_clients_get_no_chunked_encoding(tiny: Running, tiny_run: Path) -> None:
    body = json.dumps({"prime": "the ", "length": 100, "seed": 5}).encode()
    answer = raw_http(tiny.port, b"POST /api/generate HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: "
                      + str(len(body)).encode() + b"\r\n\r\n" + body)
    head, _, data = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding" not in head.lower()
    assert lines_of(data)[1] == library(checkpoint.load(tiny_run), {"prime": "the ", "length": 100, "seed": 5})


def test_clients_that_reset_leave_one_line_and_no_traceback(tiny: Running, capfd: pytest.CaptureFixture[str]) -> None:
    for stream in (True, False):
        body = json.dumps({"length": 2000, "seed": 1, "stream": stream}).encode()
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", tiny.port))
            sock.sendall(b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
            sock.close()
    time.sleep(0.3)
    assert streamed(tiny.url, {"length": 10, "seed": 2})[1]  # still answering
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Traceback" not in "\n".join(tiny.lines)


def test_a_failed_step_answers_500_and_generation_goes_on(tiny: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    from chargen.serve import batcher

    real = batcher.sampler

    def failing(decoding: Any, *args: Any, **kwargs: Any) -> Any:
        if decoding.config().temperature == 0.125:
            raise RuntimeError("boom")
        return real(decoding, *args, **kwargs)

    monkeypatch.setattr(batcher, "sampler", failing)
    body = {"temperature": 0.125, "seed": 1, "length": 20}
    status, data, _ = call(tiny.url, "/api/generate", {**body, "stream": False})
    assert status == 500 and json.loads(data)["error"] == "generation failed: RuntimeError"
    lines = call(tiny.url, "/api/generate", body)[1].decode().splitlines()
    assert json.loads(lines[-1]) == {"error": "generation failed: RuntimeError", "status": 500}
    assert len(streamed(tiny.url, {"length": 10, "seed": 2})[1]) == 10  # the next request is served
    assert "generation failed: RuntimeError: boom" in tiny.lines
