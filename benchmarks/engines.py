"""Training throughput of the recurrent engines against torch's nn.LSTM / nn.RNN, side by side in one process.

    python benchmarks/engines.py [--hidden 256 --layers 2 --seq-len 30 --batch 64 --steps 10]

Every model is the same character LM (embedding -> recurrent core -> linear head -> cross
entropy) trained with Adam on random ids, the state carried and detached from step to step as
in stateful training (``--fresh-state`` starts every step from zeros instead). Repetitions are
interleaved across models so that machine noise hits them alike; ratios use the best repetition.
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
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    return tuple(s.detach() for s in state)


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
    }


class Runner:
    """One model, its optimizer, its carried state and a fixed batch of random ids."""

    def __init__(self, core: nn.Module, args: argparse.Namespace, generator: torch.Generator) -> None:
        self.model = CharLM(core, args.vocab, args.embed, args.hidden)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        ids = torch.randint(args.vocab, (args.seq_len + 1, args.batch), generator=generator)
        self.inputs, self.targets = ids[:-1], ids[1:]  # (T, N) each
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


# (numerator, denominator, target): the LSTM targets come from the issues; the RNN rows are for information
RATIOS: list[tuple[str, str, float | None]] = [
    ("lstm fused", "nn.LSTM", 0.95),
    ("lstm loop", "nn.LSTM", 0.5),
    ("momentum-lstm fused", "nn.LSTM", 0.85),
    ("momentum-lstm fused", "momentum-lstm loop", 2.0),
    ("rnn fused", "nn.RNN", None),
    ("rnn loop", "nn.RNN", None),
    ("momentum-rnn fused", "nn.RNN", None),
    ("momentum-rnn fused", "momentum-rnn loop", None),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
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
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

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
    print(
        f"hidden {args.hidden}, layers {args.layers}, seq-len {args.seq_len}, batch {args.batch}, "
        f"embed {args.embed}, {args.steps} steps x {args.repeats} repeats, "
        f"{'fresh' if args.fresh_state else 'carried'} state, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"{'model':<22}{'best chars/s':>14}{'median':>12}")
    for name in names:
        print(f"{name:<22}{best[name]:>14,.0f}{median[name]:>12,.0f}")

    print("\nratios of best chars/s")
    for num, den, target in RATIOS:
        if num in best and den in best:
            ratio = best[num] / best[den]
            verdict = "" if target is None else f"target >= {target:<5} {'ok' if ratio >= target else 'MISSED'}"
            print(f"{num + ' / ' + den:<45}{ratio:>6.2f}   {verdict}")

if __name__ == "__main__":
    main()
