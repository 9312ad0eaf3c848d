"""Training throughput of the recurrent engines against torch's nn.LSTM / nn.RNN / nn.GRU and the MomentumRNN paper's code style.

    python benchmarks/engines.py [--hidden 256 --layers 2 --seq-len 30 --batch 64 --steps 10]
    python benchmarks/engines.py --task pixel-mnist --hidden 128 --steps 1 --repeats 2 --warmup 1
    python benchmarks/engines.py --threads 1 --only nn.GRU "gru fused" "gru loop" "momentum-gru fused"

``--task lm`` (default): every model is the same character LM (embedding -> recurrent core ->
linear head -> cross entropy) trained with Adam on random ids, the state carried and detached
from step to step as in stateful training (``--fresh-state`` starts every step from zeros).
``--task pixel-mnist``: the MomentumRNN paper's sequential-MNIST shape, one pixel per step
(``--seq-len`` 784, ``--batch`` 128, one layer), a 10-way head on the last output, random pixels
and labels. Repetitions are interleaved across models so that machine noise hits them alike;
ratios use the best repetition.

The ``paper`` rows are MomentumRNN / MomentumLSTM written the way the authors' reference code is
(written here from the published equations, not copied): ``x2h`` and ``h2h`` linear modules
called once per step in a Python loop, the velocity kept outside the recurrent state,
``v_t = mu v_{t-1} + s (W x_t + b)`` and ``h_t = tanh(U h_{t-1} + b_U + v_t)`` (for the LSTM, the
same momentum on the 4H-wide input projection before the usual gates). Before timing, each is
checked to give chargen's cells' outputs on copied weights.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from chargen.core import Recurrent

State = tuple[Tensor, ...] | Tensor | None


class PaperMomentumLayer(nn.Module):
    """One MomentumRNN/MomentumLSTM layer in the paper code's style: per-step ``x2h``/``h2h`` modules.

    ``forward(x (T, N, D), hidden, v) -> (outputs (T, N, H), hidden, v)``: ``hidden`` is ``h`` or
    ``(h, c)``; the velocity ``v (N, G*H)`` travels beside it, not inside it.
    """

    def __init__(self, input_size: int, hidden_size: int, lstm: bool, mu: float, s: float) -> None:
        super().__init__()
        self.lstm, self.hidden_size, self.mu, self.s = lstm, hidden_size, mu, s
        width = (4 if lstm else 1) * hidden_size
        self.x2h = nn.Linear(input_size, width)
        self.h2h = nn.Linear(hidden_size, width)

    def forward(self, x: Tensor, hidden: State, v: Tensor | None) -> tuple[Tensor, State, Tensor]:
        batch = x.shape[1]
        if hidden is None:
            zeros = x.new_zeros(batch, self.hidden_size)
            hidden = (zeros, zeros) if self.lstm else zeros
        if v is None:
            v = x.new_zeros(batch, self.x2h.out_features)
        outputs = []
        for t in range(x.shape[0]):
            v = self.mu * v + self.s * self.x2h(x[t])
            if self.lstm:
                h, c = hidden
                i, f, g, o = (v + self.h2h(h)).chunk(4, 1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                hidden = (h, c)
            else:
                h = torch.tanh(self.h2h(hidden) + v)
                hidden = h
            outputs.append(h)
        return torch.stack(outputs), hidden, v


class PaperMomentumStack(nn.Module):
    """Layers of :class:`PaperMomentumLayer`; ``forward(x, state) -> (outputs, state)`` with
    ``state = (hiddens, velocities)`` per layer, so the benchmark's models can carry it."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, lstm: bool, mu: float, s: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            PaperMomentumLayer(input_size if i == 0 else hidden_size, hidden_size, lstm, mu, s)
            for i in range(num_layers)
        )

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        hiddens, velocities = state if state is not None else ([None] * len(self.layers), [None] * len(self.layers))
        new_h, new_v = [], []
        for layer, hidden, v in zip(self.layers, hiddens, velocities):
            x, hidden, v = layer(x, hidden, v)
            new_h.append(hidden)
            new_v.append(v)
        return x, (new_h, new_v)

    @torch.no_grad()
    def copy_from(self, core: Recurrent) -> PaperMomentumStack:
        """Take a chargen momentum core's weights (x2h = W_ih, b_ih; h2h = W_hh, b_hh)."""
        for layer, cell in zip(self.layers, core.layers):
            layer.x2h.weight.copy_(cell.weight_ih)
            layer.x2h.bias.copy_(cell.bias_ih)
            layer.h2h.weight.copy_(cell.weight_hh)
            layer.h2h.bias.copy_(cell.bias_hh)
        return self


def check_paper_equals_chargen(kind: str, input_size: int, hidden: int, layers: int, mu: float, s: float,
                               steps: int = 12, batch: int = 3) -> float:
    """Largest output difference between the paper-style stack and chargen's fused and loop engines on copied
    weights, over two chunks with the state carried; raises if above float tolerance."""
    torch.manual_seed(0)
    core = Recurrent(kind, input_size, hidden, layers, engine="fused", mu=mu, s=s)
    paper = PaperMomentumStack(input_size, hidden, layers, kind == "momentum-lstm", mu, s).copy_from(core)
    x = torch.randn(2 * steps, batch, input_size)
    worst = 0.0
    with torch.no_grad():
        want, state = paper(x[:steps], None)
        want2, _ = paper(x[steps:], state)
        for engine in ("fused", "loop"):
            core.engine = engine
            got, carried = core(x[:steps])
            got2, _ = core(x[steps:], carried)
            for a, b in ((got, want), (got2, want2)):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
                worst = max(worst, float((a - b).abs().max()))
    return worst


class CharLM(nn.Module):
    """Embedding -> core -> head; ``core(x (T, N, E), state) -> (outputs (T, N, H), state)``."""

    def __init__(self, core: nn.Module, vocab: int, embed: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.core = core
        self.head = nn.Linear(hidden, vocab)

    def forward(self, ids: Tensor, targets: Tensor, state: State) -> tuple[Tensor, State]:
        out, state = self.core(self.embed(ids), state)  # (T, N, H)
        logits = self.head(out)  # (T, N, V)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten()), state


def detach(state: State) -> State:
    """Cut the graph behind a carried state: a tensor, or tuples and lists of them (the paper stack's state)."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    return type(state)(detach(s) for s in state)


def make_cores(args: argparse.Namespace) -> dict[str, Callable[[], nn.Module]]:
    shape = (args.embed, args.hidden, args.layers)
    momentum = {"mu": args.mu, "s": args.s}
    return {
        "nn.LSTM": lambda: nn.LSTM(*shape),
        "lstm fused": lambda: Recurrent("lstm", *shape, engine="fused"),
        "lstm loop": lambda: Recurrent("lstm", *shape, engine="loop"),
        "momentum-lstm fused": lambda: Recurrent("momentum-lstm", *shape, engine="fused", **momentum),
        "momentum-lstm loop": lambda: Recurrent("momentum-lstm", *shape, engine="loop", **momentum),
        "nn.RNN": lambda: nn.RNN(*shape),
        "rnn fused": lambda: Recurrent("rnn", *shape, engine="fused"),
        "rnn loop": lambda: Recurrent("rnn", *shape, engine="loop"),
        "momentum-rnn fused": lambda: Recurrent("momentum-rnn", *shape, engine="fused", **momentum),
        "momentum-rnn loop": lambda: Recurrent("momentum-rnn", *shape, engine="loop", **momentum),
        "nn.GRU": lambda: nn.GRU(*shape),
        "gru fused": lambda: Recurrent("gru", *shape, engine="fused"),
        "gru loop": lambda: Recurrent("gru", *shape, engine="loop"),
        "momentum-gru fused": lambda: Recurrent("momentum-gru", *shape, engine="fused", **momentum),
        "momentum-gru loop": lambda: Recurrent("momentum-gru", *shape, engine="loop", **momentum),
        "momentum-lstm paper": lambda: PaperMomentumStack(*shape, True, args.mu, args.s),
        "momentum-rnn paper": lambda: PaperMomentumStack(*shape, False, args.mu, args.s),
    }


class PixelClassifier(nn.Module):
    """Sequential MNIST's shape: one value per step -> core -> a 10-way head on the last output."""

    def __init__(self, core: nn.Module, hidden: int) -> None:
        super().__init__()
        self.core = core
        self.head = nn.Linear(hidden, 10)

    def forward(self, pixels: Tensor, labels: Tensor, state: State) -> tuple[Tensor, State]:
        out, _ = self.core(pixels, None)  # (T, N, H): every sequence is an image, nothing carried
        return F.cross_entropy(self.head(out[-1]), labels), None


class Runner:
    """One model, its optimizer, its carried state and a fixed batch of random ids."""

    def __init__(self, core: nn.Module, args: argparse.Namespace, generator: torch.Generator) -> None:
        if args.task == "pixel-mnist":
            self.model: nn.Module = PixelClassifier(core, args.hidden)
            self.inputs = torch.rand(args.seq_len, args.batch, 1, generator=generator)  # (T, N, 1)
            self.targets = torch.randint(10, (args.batch,), generator=generator)
        else:
            self.model = CharLM(core, args.vocab, args.embed, args.hidden)
            ids = torch.randint(args.vocab, (args.seq_len + 1, args.batch), generator=generator)
            self.inputs, self.targets = ids[:-1], ids[1:]  # (T, N) each
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.fresh = args.fresh_state
        self.state: State = None

    def train(self, steps: int) -> float:
        """Seconds for ``steps`` optimizer steps."""
        start = time.perf_counter()
        for _ in range(steps):
            loss, state = self.model(self.inputs, self.targets, None if self.fresh else self.state)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.state = detach(state)
        return time.perf_counter() - start


# (numerator, denominator, target): the targets come from the issues; rows without one are for information.
# fused/loop is not a target any more (issue 19): it measures how good the loop engine is, not what users
# compare against, which is the paper's code (the "paper" rows).
RATIOS: list[tuple[str, str, float | None]] = [
    ("lstm fused", "nn.LSTM", 0.95),
    ("lstm loop", "nn.LSTM", 0.5),
    ("momentum-lstm fused", "nn.LSTM", 0.85),
    ("momentum-lstm fused", "momentum-lstm paper", 2.0),
    ("momentum-lstm loop", "momentum-lstm paper", None),
    ("momentum-lstm fused", "momentum-lstm loop", None),
    ("rnn fused", "nn.RNN", None),
    ("rnn loop", "nn.RNN", None),
    ("momentum-rnn fused", "nn.RNN", None),
    ("momentum-rnn fused", "momentum-rnn paper", 2.0),
    ("momentum-rnn loop", "momentum-rnn paper", None),
    ("momentum-rnn fused", "momentum-rnn loop", None),
    ("gru fused", "nn.GRU", 0.9),  # issue 23
    ("gru loop", "nn.GRU", None),
    ("momentum-gru fused", "nn.GRU", None),
    ("momentum-gru fused", "momentum-gru loop", None),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("lm", "pixel-mnist"), default="lm")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, help="default: 2 (lm), 1 (pixel-mnist)")
    parser.add_argument("--seq-len", type=int, help="default: 30 (lm), 784 (pixel-mnist)")
    parser.add_argument("--batch", type=int, help="default: 64 (lm), 128 (pixel-mnist)")
    parser.add_argument("--embed", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=65)
    parser.add_argument("--steps", type=int, default=10, help="training steps per timed repetition")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions per model")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model first")
    parser.add_argument("--mu", type=float, default=0.6)
    parser.add_argument("--s", type=float, default=0.6)
    parser.add_argument("--fresh-state", action="store_true", help="zero state every step, nothing carried")
    parser.add_argument("--only", nargs="*", help="run only these rows (names as in the table)")
    parser.add_argument(
        "--threads", type=int, help="torch threads (default: torch's); 1 is steadier on a busy shared machine"
    )
    parser.add_argument("--out", help="append the printed table to this file as well")
    args = parser.parse_args()
    pixels = args.task == "pixel-mnist"
    args.layers = args.layers or (1 if pixels else 2)
    args.seq_len = args.seq_len or (784 if pixels else 30)
    args.batch = args.batch or (128 if pixels else 64)
    if pixels:
        args.embed = 1  # one pixel per step
    if args.threads:
        torch.set_num_threads(args.threads)
    for kind in ("momentum-lstm", "momentum-rnn"):
        worst = check_paper_equals_chargen(kind, args.embed, min(args.hidden, 32), args.layers, args.mu, args.s)
        print(f"{kind}: paper-style outputs == chargen fused and loop engines on copied weights "
              f"(max |diff| {worst:.1e})")

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    cores = make_cores(args)
    names = [n for n in cores if not args.only or n in args.only]
    runners = {name: Runner(cores[name](), args, generator) for name in names}
    for runner in runners.values():
        runner.train(args.warmup)

    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.repeats):
        for name, runner in runners.items():
            times[name].append(runner.train(args.steps))

    # best repetition: on a shared machine the fastest run is the one least disturbed by others
    chars = args.seq_len * args.batch * args.steps
    best = {name: chars / min(ts) for name, ts in times.items()}
    median = {name: chars / statistics.median(ts) for name, ts in times.items()}
    unit = "pixels/s" if pixels else "chars/s"
    lines = [
        f"task {args.task}, hidden {args.hidden}, layers {args.layers}, seq-len {args.seq_len}, batch {args.batch}, "
        f"input {args.embed}, {args.steps} steps x {args.repeats} repeats, "
        f"{'fresh' if args.fresh_state or pixels else 'carried'} state, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        f"{'model':<22}{'best ' + unit:>14}{'median':>12}",
        *(f"{name:<22}{best[name]:>14,.0f}{median[name]:>12,.0f}" for name in names),
        "",
        f"ratios of best {unit}",
    ]
    for num, den, target in RATIOS:
        if num in best and den in best:
            ratio = best[num] / best[den]
            verdict = "" if target is None else f"target >= {target:<5} {'ok' if ratio >= target else 'MISSED'}"
            lines.append(f"{num + ' / ' + den:<45}{ratio:>6.2f}   {verdict}")
    print("\n".join(lines))
    if args.out:
        with open(args.out, "a", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n\n")


if __name__ == "__main__":
    main()
