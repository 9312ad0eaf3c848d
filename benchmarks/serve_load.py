"""`chargen serve` under load: N concurrent generate requests against the same N one at a time, and inspect's memory.

    python benchmarks/serve_load.py [--model grimm --requests 200 --chars 200 --max-batch 64 --inspect 50]
    python benchmarks/serve_load.py --inspect 0 --controls '{"repetition_penalty": 1.2, "no_repeat": 16}'

The server runs as its own process (``chargen serve --threads 1 --quiet`` on a free loopback port),
so that the client's work does not share its interpreter; the client is httpx's async client.
Rows:

- ``one at a time``: the requests sent one after another (each waits for the previous answer);
- ``all at once``: the same requests (same seeds, so the same text) sent together; the server
  steps them in one batch of at most ``--max-batch`` streams, the rest queue.

For each: answers by status (200, 503 with Retry-After; a reset or any other error is counted and
fails the target), latency p50/p99 per request, wall time, and the aggregate characters per
second; then the ratio (issue 26's target: all at once >= 3x one at a time, every request answered).
``--controls JSON`` adds decoding controls or constraints to every generate request: a stream whose
draw keeps history (a schedule, a penalty, no-repeat, max-copy, a pattern) is drawn from its own row,
so its batching gain is smaller than plain sampling's. ``--inspect N`` then sends N concurrent inspect requests at the server's longest text and reports
the server's peak resident memory before and after (target <= 1 GB).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(args: argparse.Namespace, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "chargen", "serve", "--model", args.model, "--port", str(port), "--quiet",
               "--threads", "1", "--max-batch", str(args.max_batch)]
    server = subprocess.Popen(command, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/models", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not answer within 120 s")


async def one(client: httpx.AsyncClient, body: dict[str, Any]) -> tuple[str, float, int]:
    """(outcome, seconds, characters) of one request."""
    start = time.perf_counter()
    try:
        response = await client.post("/api/generate", json=body)
    except httpx.HTTPError as e:
        return f"error {type(e).__name__}", time.perf_counter() - start, 0
    took = time.perf_counter() - start
    if response.status_code == 200:
        return "200", took, len(response.json()["text"])
    if response.status_code == 503 and "retry-after" in response.headers:
        return "503 Retry-After", took, 0
    return f"{response.status_code}", took, 0


async def run(url: str, bodies: list[dict[str, Any]], together: bool) -> tuple[list[tuple[str, float, int]], float]:
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=600) as client:
        start = time.perf_counter()
        if together:
            results = await asyncio.gather(*(one(client, body) for body in bodies))
        else:
            results = [await one(client, body) for body in bodies]
        return list(results), time.perf_counter() - start


def report(name: str, results: list[tuple[str, float, int]], wall: float) -> float:
    outcomes: dict[str, int] = {}
    for outcome, _, _ in results:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    served = sorted(took for outcome, took, _ in results if outcome == "200")
    chars = sum(n for _, _, n in results)
    p50 = statistics.median(served) if served else float("nan")
    p99 = served[min(len(served) - 1, int(0.99 * len(served)))] if served else float("nan")
    rate = chars / wall
    shown = ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items()))
    print(f"{name:<14} {shown:<32} p50 {p50 * 1e3:8.1f} ms  p99 {p99 * 1e3:8.1f} ms  wall {wall:7.2f} s  "
          f"{rate:9.0f} chars/s")
    return rate


async def inspect_load(url: str, n: int, text: str) -> dict[str, int]:
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        body = {"text": text, "unit": 0, "top": 5}
        answers = await asyncio.gather(*(client.post("/api/inspect", json=body) for _ in range(n)),
                                       return_exceptions=True)
    counts: dict[str, int] = {}
    for answer in answers:
        key = str(answer.status_code) if isinstance(answer, httpx.Response) else type(answer).__name__
        counts[key] = counts.get(key, 0) + 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="grimm", help="a run directory or a name under checkpoints/")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--chars", type=int, default=200, help="characters generated per request")
    parser.add_argument("--max-batch", type=int, default=64, help="the server's --max-batch")
    parser.add_argument("--inspect", type=int, default=50, help="concurrent inspect requests (0: skip)")
    parser.add_argument("--controls", type=json.loads, default={},
                        help='decoding controls and constraints for every generate request, as JSON')
    parser.add_argument("--inspect-chars", type=int, default=20_000,
                        help="characters per inspect request (at most the server's limit)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(args, port)
    try:
        bodies = [{"prime": "The king", "length": args.chars, "temperature": 0.8, "seed": i, "stream": False,
                   **args.controls} for i in range(args.requests)]
        print(f"model {args.model}, {args.requests} generate requests of {args.chars} characters"
              f"{f' with {json.dumps(args.controls)}' if args.controls else ''}, server --max-batch {args.max_batch}, "
              "one torch thread")
        asyncio.run(run(url, bodies[:2], together=False))  # warm-up: the first batch builds its stepper
        one_by_one = report("one at a time", *asyncio.run(run(url, bodies, together=False)))
        results, wall = asyncio.run(run(url, bodies, together=True))
        together = report("all at once", results, wall)
        answered = all(outcome in ("200", "503 Retry-After") for outcome, _, _ in results)
        ratio = together / one_by_one
        print(f"aggregate chars/s, all at once / one at a time: {ratio:.2f}x (target >= 3x); every request "
              f"answered with 200 or 503 + Retry-After: {answered}")
        if args.inspect:
            before = peak_rss_mb(server.pid)
            info = httpx.get(url + "/api/models").json()
            longest = min(info["limits"]["max_text"], info["limits"]["max_inspect"])
            text = ("Once upon a time there was a king. " * 1000)[: min(args.inspect_chars, longest)]
            counts = asyncio.run(inspect_load(url, args.inspect, text))
            after = peak_rss_mb(server.pid)
            print(f"{args.inspect} concurrent inspect requests of {len(text):,} characters: {json.dumps(counts)}; "
                  f"server peak resident memory {before:.0f} MB before, {after:.0f} MB after (target <= 1024 MB)")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
