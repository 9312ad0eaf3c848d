"""Every experiment module runs on the one Study: each is listed here with a tiny run, and the run goes through ``Study.run``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import chargen.experiments
from chargen.experiments.study import Study

FOLDER = Path(chargen.experiments.__file__).parent
# the machinery every study shares, not studies themselves
INFRASTRUCTURE = {"__init__", "harness", "stats", "study", "studies", "sweep"}
NOT_STUDIES = {  # with the reason; a module moves to TINY_RUNS once it grows a grid of runs
    "exercises": "deterministic checks in seconds (hand LSTM tables, parameter counts, engine parity): no grid, no seeds",
    "word2vec": "the word2vec model and its training; its measurement lives in benchmarks/word2vec.py",
}
TALE = "the king and queen went to the forest where a wolf lived in a little house by the river " * 60


def tale(tmp: Path) -> str:
    path = tmp / "tale.txt"
    path.write_text(TALE, encoding="utf-8")
    return str(path)


def run_baselines(tmp: Path) -> None:
    from chargen.experiments import baselines

    baselines.build(tmp, seeds=[0], minutes=0.002, corpora=("firstnames",), families=("rnn",)).run()


def run_compare(tmp: Path) -> None:
    from chargen.experiments.compare import compare

    compare("palindrome", ["rnn"], 1, task_options={"length": 4}, model={"hidden_size": 8}, train={"steps": 4})


def run_compare_sweep(tmp: Path) -> None:
    from chargen.experiments.compare_sweep import compare_sweep

    compare_sweep("palindrome", ["momentum-rnn"], {"mu": [0.3]}, 1, task_options={"length": 4},
                  model={"hidden_size": 8}, train={"steps": 4}, out_dir=tmp / "sweep")


def run_gradients(tmp: Path) -> None:
    from chargen.experiments.gradients import gradient_flow

    gradient_flow(["rnn"], length=5, hidden_size=4, embed_dim=4, batch=2, seeds=1, vocab_size=5)


def run_momentum(tmp: Path) -> None:
    from chargen.experiments.momentum import Arm, Part, run_part

    run_part(Part("tiny", [Arm("rnn", "paper")], [4], [0], steps=4), tmp)


def run_momentum_digits(tmp: Path) -> None:
    pytest.importorskip("sklearn", reason="the digits ship with scikit-learn: pip install 'chargen[study]'")
    from chargen.experiments import momentum_digits

    momentum_digits.build(tmp, seeds=[0], steps=2, lrs=(1e-3,)).run()


def run_optimisers(tmp: Path) -> None:
    from chargen.experiments.optimisers import OptimiserSettings, run_optimisers as run

    run(OptimiserSettings(corpus=tale(tmp), chars=2000, hidden_size=4, seq_len=8, batch_size=4, steps=2,
                          eval_every=2, grid={"adam": (0.01,)}), tmp)


def run_probe(tmp: Path) -> None:
    from chargen.experiments.probe import ProbeSettings, run_probe as run

    run(["rnn"], [4], [0], settings=ProbeSettings(steps=4, hidden_size=8, eval_every=2))


def run_reference(tmp: Path) -> None:
    from chargen.experiments.reference import run_reference as run
    from chargen.reference import RNNSettings

    run(tale(tmp), RNNSettings(hidden_size=8, epochs=1, seq_len=8, batch_size=4), lstm_steps=2, out_dir=tmp / "ref")


def run_tutorial(tmp: Path) -> None:
    from chargen.experiments.tutorial import TutorialSettings, run_tutorial_study

    run_tutorial_study(TutorialSettings(hidden_sizes=(4,), models=("tutorial",), tasks=("classify",), steps=2,
                                        batch_size=4), tmp)


def run_sampling(tmp: Path) -> None:
    from chargen.experiments import sampling
    from chargen.experiments.sampling import ModelPlan, Scale

    plan = {"cell": "lstm", "embed_dim": 8, "hidden_size": 16, "num_layers": 1}
    scale = Scale(samples=2, length=20, settings={"temperature": (0.5,)}, primes={"firstnames": ("a",)}, shipped={},
                  grader=ModelPlan(plan, 1.0, seed=5, steps=5), sampler=ModelPlan(plan, 1.0, seed=1, steps=5))
    sampling.build(tmp, seeds=[0], corpora=["firstnames"], scale=scale).run()


TINY_RUNS: dict[str, Callable[[Path], None]] = {
    "baselines": run_baselines, "compare": run_compare, "compare_sweep": run_compare_sweep,
    "gradients": run_gradients, "momentum": run_momentum, "momentum_digits": run_momentum_digits,
    "optimisers": run_optimisers, "probe": run_probe,
    "reference": run_reference, "sampling": run_sampling, "tutorial": run_tutorial,
}
NEEDS_CORPORA = {"baselines", "sampling", "tutorial"}  # the shared mirror's firstnames and names


def test_every_experiment_module_is_listed() -> None:
    modules = {p.stem for p in FOLDER.glob("*.py")}
    listed = INFRASTRUCTURE | set(NOT_STUDIES) | set(TINY_RUNS)
    assert modules == listed, f"unlisted: {sorted(modules - listed)}; gone: {sorted(listed - modules)}"
    assert not (INFRASTRUCTURE & set(TINY_RUNS)) and not (set(NOT_STUDIES) & set(TINY_RUNS))


@pytest.mark.parametrize("module", sorted(TINY_RUNS))
def test_each_experiment_runs_on_the_study(module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           request: pytest.FixtureRequest, one_torch_thread: None) -> None:
    if module in NEEDS_CORPORA:
        request.getfixturevalue("corpus_mirror")
    monkeypatch.setattr("chargen.training.rundir.plot_loss", lambda *args, **kwargs: None)  # speed only
    outcomes: list[Any] = []
    original = Study.run

    def spy(self: Study, *args: Any, **kwargs: Any) -> Any:
        outcome = original(self, *args, **kwargs)
        outcomes.append(outcome)
        return outcome

    monkeypatch.setattr(Study, "run", spy)
    TINY_RUNS[module](tmp_path)
    assert outcomes, f"{module} ran no Study"
    assert sum(o.ran for o in outcomes) >= 1 and all(o.complete for o in outcomes), outcomes
