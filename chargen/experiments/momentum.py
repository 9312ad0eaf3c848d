"""The momentum study (issue 14): solve rates with Wilson intervals over seeds, in resumable parts saved as they go.

Each part is a list of *arms* (a cell with its init, forget bias, momentum and learning rate)
run on palindromes of given lengths for given seeds through the probe's own run
(``tasks.palindrome.probe_run``: RMSProp, hidden 128, batch 128, clip 10, early stop at 99.5%
held out twice). The parts run on the one ``Study``: every finished run is appended to
``<out>/<part>/runs.jsonl`` at once with its environment, so a stopped part resumes where it stopped
(a part that chooses learning rates plans its reported runs once its selection runs are in);
``summary.json`` is rewritten after every run. Runs are
ordered by length, then seed, so a part stopped early still compares its arms on the same seeds.

A run *solves* its length when its final held-out accuracy is >= 99% (``SOLVED``); its steps to
solve are the first evaluation at or above that. The parts:

- ``lstm-target``: the issue's LSTM target (paper init, >= 99% at T >= 30 on >= 9 of 10 seeds);
- ``forget-bias``: at T = 50, LSTM and MomentumLSTM at each other's effective forget bias;
- ``fair-rnn``: RNN vs MomentumRNN (mu in 0.3, 0.6 at s = 1) at T = 10 with each arm's
  learning rate chosen on selection seeds (never the reported ones), the mu = 0, s = 1 control in.

Determinism: one thread, seeded weights and data: reruns on one machine give identical records.
Across machines (CPU instruction sets, oneDNN/MKL versions) float rounding differs and a
chaotic training run can end elsewhere; compare solve *rates* across machines, not seeds.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch

from chargen.errors import UsageError
from chargen.inits import PAPER_FORGET_BIAS, effective_forget_bias
from chargen.experiments.sweep import choose_lr, solve_summary
from chargen.experiments.probe import SOLVED, ProbeSettings, probe_run
from chargen.experiments import study as studies_core  # its Part is not this module's Part
from chargen.experiments.study import Event, RunContext, Spec, Study, rank_tests
from chargen.tracking import read_jsonl, write_json

RUNS_JSONL = "runs.jsonl"
SUMMARY_JSON = "summary.json"
SELECTION_SEEDS = (100, 101)  # LR selection runs on these, never on the reported seeds 0..N-1

# progress(message): one line per finished run
StudyProgress = Callable[[str], None]


@dataclass(frozen=True)
class Arm:
    """One model setting of a solve-rate probe."""

    cell: str
    init: str = "paper"
    forget_bias: float | None = None
    mu: float | None = None
    s: float | None = None
    lr: float = 1e-3

    @property
    def label(self) -> str:
        parts = [self.cell, self.init]
        if self.mu is not None:
            parts.append(f"mu={self.mu:g} s={self.s if self.s is not None else 0.6:g}")
        if self.forget_bias is not None:
            parts.append(f"fb={self.forget_bias:g}")
        parts.append(f"lr={self.lr:g}")
        return " ".join(parts)

    def settings(self, steps: int) -> ProbeSettings:
        return ProbeSettings(steps=steps, lr=self.lr, init=self.init, forget_bias=self.forget_bias,
                             mu=self.mu, s=self.s)

    def effective_forget_bias(self) -> float | None:
        """The forget bias the gate sees once the velocity settles (None for cells without a forget gate)."""
        if not self.cell.endswith("lstm"):
            return None
        fb = self.forget_bias if self.forget_bias is not None else (PAPER_FORGET_BIAS if self.init == "paper" else None)
        if fb is None:
            return None
        if self.cell.startswith("momentum-"):
            return effective_forget_bias(fb, 0.6 if self.mu is None else self.mu, 0.6 if self.s is None else self.s)
        return fb


@dataclass
class Part:
    """A named batch of runs: arms x lengths x seeds at one step budget."""

    name: str
    arms: list[Arm]
    lengths: list[int]
    seeds: list[int]
    steps: int = 3000
    select_lr: Sequence[float] = ()  # non-empty: choose each arm's lr from these on SELECTION_SEEDS first
    select_steps: int | None = None  # the selection runs' budget (None: steps)
    description: str = ""


def parts(seeds: int | Sequence[int] = 10, steps: int = 3000) -> dict[str, Part]:
    """The study's parts at ``seeds`` seeds (a count: 0..seeds-1, or the seeds themselves, e.g. for a second
    process taking the last seeds of a part) and ``steps`` steps per run."""
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    matched = effective_forget_bias(PAPER_FORGET_BIAS, 0.6, 0.6)  # 2.5: MomentumLSTM(0.6, 0.6)'s with the paper's 2.0
    unmatched = PAPER_FORGET_BIAS * 2 / (1 + 0.6 / 0.4)  # 1.6: MomentumLSTM(0.6, 0.6) at an effective 2.0
    return {
        "lstm-target": Part(
            "lstm-target", [Arm("lstm", "paper", lr=1e-3)], [30], seed_list, steps,
            description=("LSTM, paper init (forget bias 2.0), RMSProp lr 1e-3: solve rate at T = 30 "
                         "(T = 50 with the same settings is the forget-bias part's first arm).")),
        "forget-bias": Part(
            "forget-bias",
            [Arm("lstm", "paper", PAPER_FORGET_BIAS), Arm("lstm", "paper", matched),
             Arm("momentum-lstm", "paper", PAPER_FORGET_BIAS, 0.6, 0.6), Arm("momentum-lstm", "paper", unmatched, 0.6, 0.6)],
            [50], seed_list, steps,
            description=(f"T = 50, paper init: LSTM at forget bias {PAPER_FORGET_BIAS:g} and at MomentumLSTM(0.6, 0.6)'s "
                         f"effective {matched:g}; MomentumLSTM(0.6, 0.6) at {PAPER_FORGET_BIAS:g} (effective {matched:g}) "
                         f"and at {unmatched:g} (effective {PAPER_FORGET_BIAS:g}).")),
        "fair-rnn": Part(
            "fair-rnn",
            [Arm("rnn", "pytorch"), *(Arm("momentum-rnn", "pytorch", mu=mu, s=1.0) for mu in (0.3, 0.6))],
            [10], seed_list, min(steps, 1500), select_lr=(1e-3, 3e-3), select_steps=min(steps, 500),
            description=("T = 10, PyTorch init: RNN (the mu = 0, s = 1 control) vs MomentumRNN at s = 1, each arm's "
                         "RMSProp lr chosen from {1e-3, 3e-3} by mean held-out accuracy on selection seeds "
                         f"{SELECTION_SEEDS[0]}-{SELECTION_SEEDS[-1]} at a {min(steps, 500)}-step budget. "
                         "(Sized for a loaded 2-core machine: at T = 20 with the paper init one RNN selection run "
                         "stayed near chance after 1,000 steps and took minutes.)")),
        # Issue 24: where the base cell starts to fail, so that the arms can separate (a hint, one seed each:
        # at T = 100 the LSTM ended at 0.942 after 3,000 steps, MomentumLSTM(0.6, 0.6) reached 0.996 at 2,400).
        "lstm-long": Part(
            "lstm-long",
            [Arm("lstm", "paper", PAPER_FORGET_BIAS), Arm("momentum-lstm", "paper", PAPER_FORGET_BIAS, 0.6, 0.6)],
            [100], seed_list, steps, select_lr=(1e-3, 3e-3), select_steps=min(steps, 1000),
            description=(f"T = 100, paper init (forget bias {PAPER_FORGET_BIAS:g}), RMSProp, clip 10: the LSTM (the "
                         "mu = 0, s = 1 control) vs MomentumLSTM(0.6, 0.6), each arm's lr chosen from {1e-3, 3e-3} "
                         f"on selection seeds {SELECTION_SEEDS[0]}-{SELECTION_SEEDS[-1]} at "
                         f"{min(steps, 1000)} steps; solve rates, steps to solve and a rank test on them.")),
        "rnn-long": Part(
            "rnn-long",
            [Arm("rnn", "pytorch"), *(Arm("momentum-rnn", "pytorch", mu=mu, s=1.0) for mu in (0.3, 0.6))],
            [20], seed_list, steps, select_lr=(1e-3, 3e-3), select_steps=min(steps, 1000),
            description=("T = 20, PyTorch init: RNN (the mu = 0, s = 1 control) vs MomentumRNN at s = 1, each arm's lr "
                         "chosen from {1e-3, 3e-3} on the selection seeds; solve rates, steps to solve and a rank "
                         "test on them.")),
    }


def run_key(arm: Arm, length: int, seed: int, steps: int, cpu_limit: float | None = None) -> str:
    """A run's key in ``runs.jsonl`` (the format of the committed results: a CPU budget is added only when set)."""
    extra = {"cpu_limit": cpu_limit} if cpu_limit is not None else {}
    return json.dumps({**asdict(arm), "length": length, "seed": seed, "budget": steps, **extra}, sort_keys=True)


def load_runs(folder: Path) -> list[dict[str, Any]]:
    return list(read_jsonl(folder / RUNS_JSONL))


def _spec(part: Part, phase: str, arm: Arm, length: int, seed: int, steps: int, cpu_limit: float | None) -> Spec:
    return Spec(part.name, {"phase": phase, **asdict(arm), "length": length, "budget": steps, "cpu_limit": cpu_limit},
                seed, key=run_key(arm, length, seed, steps, cpu_limit), title=f"{phase} {arm.label} T={length}")


def chosen_arms(part: Part, records: Sequence[dict[str, Any]], cpu_limit: float | None = None) -> list[Arm] | None:
    """Each arm at the lr with the best mean held-out accuracy on the selection seeds; None until they all ran."""
    if not part.select_lr:
        return list(part.arms)
    steps = part.select_steps or part.steps
    by_key = {r["key"]: r for r in records}
    chosen = []
    for arm in part.arms:
        scores: dict[float, list[float]] = {}
        for lr in part.select_lr:
            candidate = replace(arm, lr=lr)
            keys = [run_key(candidate, t, s, steps, cpu_limit) for t in part.lengths for s in SELECTION_SEEDS]
            if any(k not in by_key for k in keys):
                return None
            scores[lr] = [by_key[k]["accuracy"] for k in keys]
        chosen.append(replace(arm, lr=choose_lr(scores, higher_is_better=True)))
    return chosen


def planner(part: Part, cpu_limit: float | None = None) -> Callable[[Sequence[dict[str, Any]]], list[Spec]]:
    """The part's runs: its selection runs first (if it chooses learning rates), then the reported runs of the
    chosen arms, length-major then seed-major, so a part stopped early compares its arms on the same seeds."""

    def plan(records: Sequence[dict[str, Any]]) -> list[Spec]:
        steps = part.select_steps or part.steps
        select = [_spec(part, "select", replace(arm, lr=lr), t, s, steps, cpu_limit)
                  for arm in part.arms for lr in part.select_lr for t in part.lengths for s in SELECTION_SEEDS]
        arms = chosen_arms(part, records, cpu_limit)
        if arms is None:
            return select
        return [*select, *(_spec(part, "report", arm, t, s, part.steps, cpu_limit)
                           for t in part.lengths for s in part.seeds for arm in arms)]

    return plan


def run_arm(spec: Spec, ctx: RunContext) -> dict[str, Any]:
    """One probe run of a spec's arm: the record format of the committed results."""
    p = spec.params
    arm = Arm(**{f.name: p[f.name] for f in fields(Arm)})
    settings = replace(arm.settings(p["budget"]), cpu_limit=p.get("cpu_limit"), threads=ctx.threads)
    record = probe_run(arm.cell, p["length"], spec.seed, settings)
    return {"phase": p["phase"], "arm": arm.label, **asdict(arm), **record}


def build_study(out: Path, table: Mapping[str, Part], *, threads: int = 1, cpu_limit: float | None = None) -> Study:
    """The momentum study over ``table``'s parts under ``out`` (one folder per part)."""
    return Study("momentum", [studies_core.Part(p.name, planner(p, cpu_limit), p.description) for p in table.values()],
                 run_arm, Path(out), threads=threads)


def _lines(progress: StudyProgress | None, parts: Mapping[str, Part], out: Path,
           cpu_limit: float | None) -> Callable[[Event], None]:
    """Study events -> one line per finished run, and the part's summary rewritten after each run."""

    def on_event(event: Event) -> None:
        if event.kind == "end" and event.record is not None:
            record = event.record
            _summary_from(parts[event.part], Path(out), cpu_limit)
            if progress:
                at = f"solved at {record['solved_at']}" if record["solved"] else "not solved"
                progress(f"{event.spec.label} seed {record['seed']}: accuracy {record['accuracy']:.3f}, {at} "
                         f"({record['steps']} steps, {record['seconds']:.0f}s; {event.done}/{event.total}, "
                         f"ETA {event.eta_seconds / 60 if event.eta_seconds is not None else float('nan'):.0f} min)")
        elif event.kind == "note" and progress:
            progress(event.message)

    return on_event


def run_part(part: Part, out: Path, *, threads: int = 1, progress: StudyProgress | None = None,
             deadline: float | None = None, cpu_limit: float | None = None) -> dict[str, Any]:
    """Run (or resume) one part under ``out/<part.name>``; returns its summary (also saved).

    ``deadline`` (a ``time.time()``) starts no run after it: the part is then saved as incomplete
    and resumes next time. ``cpu_limit``: each run also stops at this many CPU seconds of its own.
    """
    table = {part.name: part}
    build_study(out, table, threads=threads, cpu_limit=cpu_limit).run(
        progress=_lines(progress, table, out, cpu_limit), deadline=deadline)
    return _summary_from(part, Path(out), cpu_limit)


def _summary_from(part: Part, out: Path, cpu_limit: float | None = None) -> dict[str, Any]:
    folder = out / part.name
    runs = load_runs(folder)
    arms = chosen_arms(part, runs, cpu_limit)
    done = {r["key"] for r in runs}
    complete = arms is not None and all(run_key(a, t, s, part.steps, cpu_limit) in done
                                        for a in arms for t in part.lengths for s in part.seeds)
    folder.mkdir(parents=True, exist_ok=True)
    return _save_summary(part, folder, arms or [], complete=complete)


def _save_summary(part: Part, folder: Path, arms: Sequence[Arm], complete: bool) -> dict[str, Any]:
    runs = load_runs(folder)
    rows = []
    for arm in arms:
        for length in part.lengths:
            these = [r for r in runs if r["phase"] == "report" and r["arm"] == arm.label and r["length"] == length
                     and r["budget"] == part.steps and r["seed"] in part.seeds]
            rows.append({"arm": arm.label, **asdict(arm), "length": length,
                         "effective_forget_bias": arm.effective_forget_bias(), **solve_summary(these)})
    candidates = {replace(a, lr=lr).label for a in part.arms for lr in part.select_lr}
    selection = [{"arm": r["arm"], "lr": r["lr"], "seed": r["seed"], "accuracy": r["accuracy"]}
                 for r in runs if r["phase"] == "select" and r["arm"] in candidates]
    finished = {(r["arm"], r["length"], r["seed"]) for r in runs if r["phase"] == "report" and r["budget"] == part.steps}
    paired = [s for s in part.seeds if arms and all((a.label, t, s) in finished for a in arms for t in part.lengths)]
    summary = {
        "part": part.name, "description": part.description, "complete": complete,
        "lengths": part.lengths, "seeds": part.seeds, "steps": part.steps, "solved_threshold": SOLVED,
        "select_lr": list(part.select_lr), "selection_seeds": list(SELECTION_SEEDS) if part.select_lr else [],
        "select_steps": part.select_steps, "selection": selection, "rows": rows,
        "paired_seeds": paired,  # seeds every arm has finished at every length
        "rank_tests": steps_rank_tests(runs, arms, part),
        "probe": {"optimizer": "rmsprop", "hidden_size": 128, "batch_size": 128, "clip": 10.0, "embed_dim": 10,
                  "early_stop": "held-out accuracy >= 99.5% at 2 evaluations in a row", "eval_every": 50},
        "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
                        "cpus": os.cpu_count(), "processor": platform.processor() or None,
                        "updated": time.strftime("%Y-%m-%d %H:%M:%S %z")},
    }
    write_json(folder / SUMMARY_JSON, summary)
    return summary


def steps_rank_tests(runs: Sequence[dict[str, Any]], arms: Sequence[Arm], part: Part) -> list[dict[str, Any]]:
    """Mann–Whitney U on steps to solve, each arm against the first (the control) at each length.

    A run that never solved counts as one step past its budget: worse than every solved run, tied with the others.
    """
    tests = []
    for length in part.lengths:
        reported = [r for r in runs if r["phase"] == "report" and r["length"] == length and r["budget"] == part.steps
                    and r["seed"] in part.seeds]
        censored = [{"arm": r["arm"], "seed": r["seed"],
                     "steps_to_solve": r["solved_at"] if r.get("solved") and r.get("solved_at") is not None
                     else part.steps + 1} for r in reported]
        if arms and any(r["arm"] == arms[0].label for r in censored):
            for test in rank_tests(censored, ["arm"], "steps_to_solve", baseline=[arms[0].label]):
                tests.append({"length": length, "arm": test["group"]["arm"], "control": arms[0].label,
                              **{k: test[k] for k in ("u", "p_value", "n", "n_baseline", "method")}})
    return tests


def summarise_part(part: Part, out: Path, cpu_limit: float | None = None) -> dict[str, Any]:
    """Rebuild a part's ``summary.json`` from its saved runs, running nothing (e.g. after a stop)."""
    return _summary_from(part, Path(out), cpu_limit)


def run_study(out: Path, only: Sequence[str] | None = None, *, seeds: int | Sequence[int] = 10, steps: int = 3000,
              threads: int = 1, progress: StudyProgress | None = None, deadline: float | None = None,
              cpu_limit: float | None = None) -> dict[str, dict[str, Any]]:
    """Run the named parts (all when ``only`` is empty) under ``out`` on one Study; each resumes from its saved runs."""
    table = parts(seeds, steps)
    study = build_study(Path(out), table, threads=threads, cpu_limit=cpu_limit)
    names = study.select(only)
    study.run(names, progress=_lines(progress, table, Path(out), cpu_limit), deadline=deadline)
    return {name: _summary_from(table[name], Path(out), cpu_limit) for name in names}


# -- the corrected derivation, checked numerically -------------------------------------------------


def adjoint_check(length: int = 60, hidden_size: int = 32, input_size: int = 8, batch: int = 4, mu: float = 0.6,
                  s: float = 1.0, recurrent_scale: float = 0.3, seed: int = 0) -> dict[str, Any]:
    """Compare MomentumRNN's ``dL/dh_t`` (autograd, float64) with the plain RNN's adjoint recursion, and
    measure how fast the input gradient decays.

    The loss is read at the last step. ``g_T = dL/dh_T`` and ``g_{t-1} = U^T (D_t g_t)`` with
    ``D_t = diag(1 - h_t^2)``, ``U = weight_hh``: the recursion of a plain tanh RNN, in which
    ``mu`` does not appear. The input gradient ``dL/dx_t = s W^T a_t`` with
    ``a_t = D_t g_t + mu a_{t+1}`` does carry ``mu``: its norm decays per step back towards ``mu``
    once the hidden path (rate set by ``U``, here scaled by ``recurrent_scale``) has died out.
    Returns the largest absolute difference, the per-step decay of ``||dL/dh_t||`` and of
    ``||dL/dx_t||`` over the far half of the sequence, and the settings.
    """
    from chargen.cells import MomentumRNNCell

    gen = torch.Generator().manual_seed(seed)
    cell = MomentumRNNCell(input_size, hidden_size, mu=mu, s=s).double()
    with torch.no_grad():
        cell.weight_hh.mul_(recurrent_scale)
    x = torch.randn(length, batch, input_size, generator=gen, dtype=torch.float64, requires_grad=True)
    target = torch.randn(batch, hidden_size, generator=gen, dtype=torch.float64)
    state = cell.init_state(batch, dtype=torch.float64)
    hs = []
    xp = cell.project(x)
    for t in range(length):
        h, state = cell.step(xp[t], state)
        h.retain_grad()
        hs.append(h)
    loss = ((hs[-1] - target) ** 2).sum()
    loss.backward()
    autograd = [h.grad for h in hs]
    # the plain RNN's adjoint recursion, from the last step's gradient only
    u = cell.weight_hh.detach()
    g = autograd[-1]
    recursion = [g]
    for t in range(length - 1, 0, -1):
        d = 1 - hs[t].detach() ** 2
        g = (g * d) @ u  # U^T (D_t g_t), batched as rows
        recursion.append(g)
    recursion.reverse()
    max_diff = max(float((a - r).abs().max()) for a, r in zip(autograd, recursion))
    h_norms = [float(g.norm()) for g in autograd]
    x_norms = [float(x.grad[t].norm()) for t in range(length)]
    far = range(1, length // 2)  # distances back from the end where the hidden path has died out

    def decay(norms: list[float]) -> float | None:
        ratios = [norms[t - 1] / norms[t] for t in far if norms[t] > 0 and norms[t - 1] > 0]
        return float(torch.tensor(ratios, dtype=torch.float64).log().mean().exp()) if ratios else None

    return {
        "length": length, "hidden_size": hidden_size, "mu": mu, "s": s, "recurrent_scale": recurrent_scale,
        "seed": seed, "max_abs_diff": max_diff, "hidden_grad_decay": decay(h_norms),
        "input_grad_decay": decay(x_norms), "hidden_grad_norm_first": h_norms[0], "input_grad_norm_first": x_norms[0],
    }


def run_adjoint(out: Path, mus: Sequence[float] = (0.3, 0.6, 0.9)) -> dict[str, Any]:
    """The adjoint check at several ``mu``, saved as ``<out>/adjoint.json`` (seconds, float64)."""
    results = {"checks": [adjoint_check(mu=mu) for mu in mus]}
    write_json(Path(out) / "adjoint.json", results)
    return results
