"""Generation speed on the shipped grimm model: the lean path, the reference path and a bare nn.LSTM loop, side by side.

    python benchmarks/generate.py [--model grimm --chars 3000 --repeats 5 --threads 1]

One process, one thread (unless ``--threads``), repetitions interleaved across the rows so that
machine noise hits them alike; ratios use each row's best repetition. Rows:

- ``lean, 1 stream``: ``chargen.sample.generate`` (what ``chargen sample`` runs);
- ``reference, 1 stream``: the same with ``lean=False`` (the model's own forward per character);
- ``bare nn.LSTM loop``: ``nn.Embedding -> nn.LSTM -> nn.Linear -> softmax -> multinomial`` per
  character, the same shape and weights (the issue's yardstick);
- ``lean, N streams``: ``generate_streams(n=N)``, characters summed over the streams.

Then the distance from the arithmetic limit (FLOPs per character over the measured matrix-multiply
rate, at batch 1 and at batch N), and ``chargen sample --length L > file`` as a subprocess: wall
time and peak resident memory at two lengths (memory flat = the same peak).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from chargen import checkpoint
from chargen.cells import get_cell
from chargen.inference import LeanStepper
from chargen.sample import generate, generate_streams


def bare_lstm_loop(model: nn.Module, chars: int) -> Callable[[], float]:
    """The issue's yardstick: a plain torch step loop of the same shape, the model's weights copied in."""
    cfg = model.cfg
    embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim)
    lstm = nn.LSTM(cfg.embed_dim, cfg.hidden_size, cfg.num_layers)
    head = nn.Linear(cfg.hidden_size, cfg.vocab_size)
    with torch.no_grad():
        embed.weight.copy_(model.encoder.embed.weight)
        for i, cell in enumerate(model.encoder.core.layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(lstm, f"{name}_l{i}").copy_(getattr(cell, name))
        head.load_state_dict(model.head.state_dict())
    generator = torch.Generator().manual_seed(0)

    @torch.no_grad()
    def run() -> float:
        start = time.perf_counter()
        idx = torch.zeros(1, 1, dtype=torch.long)
        state = None
        for _ in range(chars):
            out, state = lstm(embed(idx), state)  # (1, 1, H)
            probs = torch.softmax(head(out[-1]), dim=-1)
            idx = torch.multinomial(probs, 1, generator=generator).view(1, 1)
        return time.perf_counter() - start

    return run


def lstm_stack_step(table: torch.Tensor, ids: torch.Tensor, xin: torch.Tensor, hs: list[torch.Tensor],
                    cs: list[torch.Tensor], gates: list[torch.Tensor], tanh_cs: list[torch.Tensor],
                    wihs: list[torch.Tensor], biases: list[torch.Tensor], whhs: list[torch.Tensor],
                    head_w: torch.Tensor, head_b: torch.Tensor, logits: torch.Tensor, hidden: int) -> torch.Tensor:
    """The lean LSTM step as one function over the stepper's buffers, for ``torch.jit.script``."""
    torch.index_select(table, 0, ids, out=xin)
    x = xin
    for i in range(len(hs)):
        g = gates[i]
        if i == 0:
            torch.addmm(x, hs[i], whhs[i], out=g)
        else:
            torch.addmm(biases[i], x, wihs[i], out=g)
            g.addmm_(hs[i], whhs[i])
        g[:, : 3 * hidden].sigmoid_()
        g[:, 3 * hidden :].tanh_()
        cs[i].mul_(g[:, hidden : 2 * hidden]).addcmul_(g[:, :hidden], g[:, 3 * hidden :])
        torch.tanh(cs[i], out=tanh_cs[i])
        torch.mul(g[:, 2 * hidden : 3 * hidden], tanh_cs[i], out=hs[i])
        x = hs[i]
    return torch.addmm(head_b, x, head_w, out=logits)


def torchscript_vs_python(model: nn.Module, repeats: int, steps: int = 1000) -> tuple[float, float, float]:
    """Seconds to script the lean LSTM step and warm it up, then the best seconds per step of the scripted
    and the Python step, interleaved."""
    stepper = LeanStepper(model, 1)
    stepper.prime(torch.zeros(1, 1, dtype=torch.long))
    ids = torch.zeros(1, dtype=torch.long)
    layers = stepper.layers
    with torch.inference_mode():
        args = (stepper.table, ids, stepper.xin, [la.h for la in layers], [la.c for la in layers],
                [la.gates for la in layers], [la.tanh_c for la in layers],
                [getattr(la, "wih", la.whh) for la in layers], [getattr(la, "bias", stepper.head_b) for la in layers],
                [la.whh for la in layers], stepper.head_w, stepper.head_b, stepper.logits, model.cfg.hidden_size)
        start = time.perf_counter()
        scripted = torch.jit.script(lstm_stack_step)
        for _ in range(3):  # the profiling executor optimises after its first runs
            scripted(*args)
        startup = time.perf_counter() - start
        best = {"script": float("inf"), "python": float("inf")}
        for _ in range(repeats):
            for name, fn in (("script", lambda: scripted(*args)), ("python", lambda: stepper.step(ids))):
                start = time.perf_counter()
                for _ in range(steps):
                    fn()
                best[name] = min(best[name], (time.perf_counter() - start) / steps)
    return startup, best["script"], best["python"]


def compiled_vs_python(model: nn.Module, repeats: int, steps: int = 1000) -> tuple[float, float, float]:
    """The same for ``torch.compile`` of the lean step (inductor: minutes of start-up on this machine)."""
    stepper = LeanStepper(model, 1)
    stepper.prime(torch.zeros(1, 1, dtype=torch.long))
    ids = torch.zeros(1, dtype=torch.long)
    with torch.inference_mode():
        start = time.perf_counter()
        compiled = torch.compile(stepper._step)
        for _ in range(3):
            compiled(ids)
        startup = time.perf_counter() - start
        best = {"compiled": float("inf"), "python": float("inf")}
        for _ in range(repeats):
            for name, fn in (("compiled", lambda: compiled(ids)), ("python", lambda: stepper.step(ids))):
                start = time.perf_counter()
                for _ in range(steps):
                    fn()
                best[name] = min(best[name], (time.perf_counter() - start) / steps)
    return startup, best["compiled"], best["python"]


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return run


def matmul_rate(rows: int, inner: int, cols: int, repeats: int = 300) -> float:
    """Best FLOP/s of ``addmm`` on ``(rows, inner) @ (inner, cols)`` (the lean step's layout)."""
    x, w, b = torch.randn(rows, inner), torch.randn(inner, cols), torch.randn(cols)
    out = torch.empty(rows, cols)
    best = float("inf")
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(repeats):
            torch.addmm(b, x, w, out=out)
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * rows * inner * cols / best


def step_matmuls(stepper: LeanStepper, repeats: int = 300) -> float:
    """Best seconds per step of the lean step's matrix products alone (no element-wise work, no dispatch around them)."""
    pairs = []
    x = stepper.layers[0].h
    for layer in stepper.layers:
        if not layer.first:
            pairs.append((x, layer.wih))
        pairs.append((layer.h, layer.whh))
        x = layer.h
    pairs.append((x, stepper.head_w))
    outs = [torch.empty(a.shape[0], w.shape[1]) for a, w in pairs]
    best = float("inf")
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(repeats):
            for (a, w), o in zip(pairs, outs):
                torch.mm(a, w, out=o)
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def cli_run(model: str, length: int, threads: int) -> tuple[float, float]:
    """``chargen sample --length L > file`` in a fresh process: wall seconds and peak resident MiB.

    The peak is the child's own ``VmHWM`` (polled from /proc until it exits): ``getrusage`` would
    count the pages a forked child shares with this, larger, process.
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    peak_kb = 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sample.txt"
        with out.open("w") as stdout:
            start = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "chargen", "sample", "--model", model, "--length",
                                     str(length), "--seed", "0"], stdout=stdout, env=env)
            status_file = Path(f"/proc/{proc.pid}/status")
            while proc.poll() is None:
                try:
                    for line in status_file.read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            peak_kb = max(peak_kb, int(line.split()[1]))
                except (OSError, ValueError):
                    pass
                time.sleep(0.05)
            wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"chargen sample --length {length} failed with status {proc.returncode}")
        written = len(out.read_text(encoding="utf-8"))
    if written < length:
        raise SystemExit(f"chargen sample --length {length} wrote only {written} characters")
    return wall, peak_kb / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="grimm")
    parser.add_argument("--chars", type=int, default=3000, help="characters per repetition, one lean stream")
    parser.add_argument("--slow-chars", type=int, default=300, help="characters per repetition, reference and nn.LSTM")
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--stream-chars", type=int, default=300, help="characters per stream per repetition")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cli-lengths", type=int, nargs="*", default=[1000, 100_000],
                        help="chargen sample --length values to time in a subprocess (none: skip)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the lean step (slow start)")
    parser.add_argument("--cli-only", action="store_true", help="only the chargen sample subprocess timings")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.cli_only:
        cli_table(args)
        return

    loaded = checkpoint.load(args.model, task="lm")
    model, vocab = loaded.model, loaded.vocab
    n = args.streams
    rows: dict[str, tuple[Callable[[], float], int]] = {
        "lean, 1 stream": (timed(lambda: "".join(generate(model, vocab, prime="The", length=args.chars, seed=0))),
                           args.chars),
        "reference, 1 stream": (timed(lambda: "".join(
            generate(model, vocab, prime="The", length=args.slow_chars, seed=0, lean=False))), args.slow_chars),
        "bare nn.LSTM loop": (bare_lstm_loop(model, args.slow_chars), args.slow_chars),
        f"lean, {n} streams": (timed(lambda: list(generate_streams(
            model, vocab, n=n, prime="The", length=args.stream_chars, seed=0))), n * args.stream_chars),
    }
    for run, _ in rows.values():  # warm-up
        run()
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.repeats):
        for name, (run, _) in rows.items():
            times[name].append(run())
    best = {name: chars / min(times[name]) for name, (_, chars) in rows.items()}
    median = {name: chars / sorted(times[name])[len(times[name]) // 2] for name, (_, chars) in rows.items()}

    cfg = model.cfg
    print(f"model {args.model}: {cfg.num_layers} x {cfg.hidden_size} {cfg.cell}, embed {cfg.embed_dim}, "
          f"vocab {cfg.vocab_size}; torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"{args.repeats} interleaved repeats")
    print(f"{'row':<24}{'best chars/s':>14}{'median':>12}")
    for name in rows:
        print(f"{name:<24}{best[name]:>14,.0f}{median[name]:>12,.0f}")

    one, many = best["lean, 1 stream"], best[f"lean, {n} streams"]
    print("\nratios of best chars/s")
    for label, ratio, target in (
        ("lean 1 stream / bare nn.LSTM loop", one / best["bare nn.LSTM loop"], 10.0),
        ("lean 1 stream / reference 1 stream", one / best["reference, 1 stream"], None),
        (f"lean {n} streams / lean 1 stream", many / one, 20.0),
        (f"lean {n} streams / reference 1 stream", many / best["reference, 1 stream"], None),
    ):
        verdict = "" if target is None else f"target >= {target:<5} {'ok' if ratio >= target else 'MISSED'}"
        print(f"{label:<45}{ratio:>8.1f}   {verdict}")

    # the arithmetic: per character, W_hh of every layer, W_ih above the first (the first is a table row), the head
    hid, layers, vocab_size = cfg.hidden_size, cfg.num_layers, cfg.vocab_size
    gates = get_cell(cfg.cell).gates
    flops = 2 * (gates * hid * hid * (2 * layers - 1) + vocab_size * hid)
    gemv = matmul_rate(1, hid, gates * hid)
    gemm = matmul_rate(n, hid, gates * hid, repeats=30)
    print(f"\narithmetic: {flops / 1e6:.2f} MFLOP per character; addmm (1, {hid}) x ({hid}, {gates * hid}) "
          f"{gemv / 1e9:.1f} GFLOP/s, ({n}, {hid}) x ({hid}, {gates * hid}) {gemm / 1e9:.1f} GFLOP/s")
    print(f"  limit at the batch-1 rate: {gemv / flops:>9,.0f} chars/s; lean 1 stream reaches {one / (gemv / flops):.0%}")
    if cfg.cell in ("rnn", "lstm", "gru"):  # plain layers: their products are the stepper's wih/whh
        products = step_matmuls(LeanStepper(model, 1))
        print(f"  the step's matrix products alone: {products * 1e6:.0f} us = {1 / products:,.0f} chars/s; "
              f"lean 1 stream reaches {one * products:.0%} (the rest: element-wise kernels, sampling, dispatch)")
    print(f"  limit at the batch-{n} rate: {gemm / flops:>9,.0f} chars/s; lean {n} streams reach {many / (gemm / flops):.0%}")

    if cfg.cell == "lstm":
        startup, script, python = torchscript_vs_python(model, args.repeats)
        print(f"\nTorchScript: scripting the lean LSTM step + warm-up {startup:.2f} s; step {script * 1e6:.0f} us "
              f"scripted vs {python * 1e6:.0f} us in Python ({python / script:.2f}x)")

    if args.compile:
        startup, fast, python = compiled_vs_python(model, args.repeats)
        print(f"torch.compile: compiling the lean step + warm-up {startup:.1f} s; step {fast * 1e6:.0f} us "
              f"compiled vs {python * 1e6:.0f} us in Python ({python / fast:.2f}x)")

    if args.cli_lengths:
        cli_table(args)


def cli_table(args: argparse.Namespace) -> None:
    print(f"\nchargen sample --length L --seed 0 > file (fresh process, OMP_NUM_THREADS={args.threads})")
    print(f"{'length':>10}{'wall s':>10}{'peak MiB':>10}")
    for length in args.cli_lengths:
        wall, peak = cli_run(args.model, length, args.threads)
        print(f"{length:>10,}{wall:>10.1f}{peak:>10.0f}", flush=True)


if __name__ == "__main__":
    main()
