"""The momentum study's pieces: inits and forget bias, mu/s in the config, Wilson intervals, grid sweeps, the adjoint check."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from chargen.cells import LSTMCell, MomentumLSTMCell, RNNCell
from chargen.cli import app
from chargen.errors import UsageError
from chargen.inits import effective_forget_bias, initialise
from chargen.models import ModelConfig, build_model, settings_for_cell
from chargen.experiments.momentum import Arm, Part, adjoint_check, load_runs, run_part
from chargen.experiments.sweep import Variant, choose_lr, expand_variants, parse_grid, solve_summary, wilson
from chargen.experiments.probe import ProbeSettings, probe_run

runner = CliRunner()


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread: None) -> None:
    """Every test here trains or builds small nets: one thread, as the study runs."""


# -- inits -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [LSTMCell, MomentumLSTMCell])
def test_paper_init_is_orthogonal_identity_and_forget_bias_on_both_biases(kind: type) -> None:
    torch.manual_seed(0)
    cell = kind(6, 5)
    initialise(cell, "paper")
    w = cell.weight_ih.detach()  # (20, 6): orthonormal columns
    torch.testing.assert_close(w.T @ w, torch.eye(6), atol=1e-5, rtol=0)
    for block in cell.weight_hh.detach().chunk(4, dim=0):
        torch.testing.assert_close(block, torch.eye(5))
    for bias in (cell.bias_ih, cell.bias_hh):
        expected = torch.zeros(20)
        expected[5:10] = 1.0  # the paper's 2.0 in total, half on each bias
        torch.testing.assert_close(bias.detach(), expected)


def test_forget_bias_is_the_sum_of_both_biases_and_leaves_the_rest_of_pytorch_init_alone() -> None:
    torch.manual_seed(3)
    plain = LSTMCell(4, 3)
    torch.manual_seed(3)
    biased = LSTMCell(4, 3)
    initialise(biased, "pytorch", forget_bias=1.0)
    assert float(biased.bias_ih[3:6].sum().detach() + biased.bias_hh[3:6].sum().detach()) == pytest.approx(3 * 1.0)
    keep = torch.ones(12, dtype=torch.bool)
    keep[3:6] = False
    torch.testing.assert_close(biased.bias_ih[keep], plain.bias_ih[keep])
    torch.testing.assert_close(biased.weight_ih, plain.weight_ih)


def test_default_config_builds_the_same_weights_as_before() -> None:
    """init='pytorch' without a forget bias draws nothing extra: today's models are unchanged."""
    cfg = ModelConfig(kind="lm", vocab_size=7, embed_dim=4, cell="lstm", hidden_size=5, num_layers=1)
    torch.manual_seed(11)
    a = build_model(cfg)
    torch.manual_seed(11)
    torch.nn.Embedding(7, 4)
    reference = LSTMCell(4, 5)
    torch.testing.assert_close(a.encoder.core.layers[0].weight_hh, reference.weight_hh)


def test_forget_bias_on_a_cell_without_a_forget_gate_is_refused() -> None:
    with pytest.raises(ValueError, match="forget_bias"):
        initialise(RNNCell(3, 3), "pytorch", forget_bias=1.0)
    with pytest.raises(UsageError, match="forget_bias"):
        ModelConfig(cell="rnn", forget_bias=1.0).check()
    with pytest.raises(UsageError, match="init"):
        ModelConfig(cell="lstm", init="glorot").check()


def test_effective_forget_bias_of_momentum_lstm() -> None:
    assert effective_forget_bias(2.0, 0.6, 0.6) == pytest.approx(2.5)
    assert effective_forget_bias(2.0) == pytest.approx(2.0)  # the plain LSTM
    # check it against the cell: a constant input's velocity settles at s/(1-mu) times the projection
    cell = MomentumLSTMCell(1, 2, mu=0.6, s=0.6)
    initialise(cell, "paper")
    state = cell.init_state(1)
    for _ in range(200):
        _, state = cell(torch.zeros(1, 1), state)
    v = state[-1]
    settled = v[0, 2:4] + cell.bias_hh[2:4]
    torch.testing.assert_close(settled.detach(), torch.full((2,), 2.5), atol=1e-5, rtol=0)


# -- mu and s in the config --------------------------------------------------------------------------


def test_mu_and_s_are_config_fields_applied_to_momentum_cells() -> None:
    cfg = ModelConfig(kind="lm", vocab_size=5, embed_dim=3, cell="momentum-rnn", hidden_size=4, num_layers=2,
                      mu=0.3, s=1.0, init="paper")
    cfg.check()
    model = build_model(cfg)
    for layer in model.encoder.core.layers:
        assert float(layer.mu) == pytest.approx(0.3) and float(layer.s) == 1.0
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_a_base_cell_is_mu_0_s_1_and_refuses_other_values() -> None:
    ModelConfig(cell="lstm", mu=0.0, s=1.0).check()
    with pytest.raises(UsageError, match="momentum-lstm"):
        ModelConfig(cell="lstm", mu=0.6).check()
    with pytest.raises(UsageError, match="mu"):
        ModelConfig(cell="momentum-lstm", mu=1.0).check()
    shared = {"mu": 0.6, "s": 0.6, "forget_bias": 2.0, "init": "paper"}
    assert settings_for_cell("rnn", shared) == {"init": "paper"}
    assert settings_for_cell("momentum-lstm", shared) == shared


def test_momentum_at_mu_0_s_1_with_paper_init_equals_the_base_cell() -> None:
    """The control: same seed, same init, mu = 0, s = 1 -> the base cell's outputs exactly."""
    x = torch.randint(0, 5, (7, 3))
    outs = []
    for cell in ("lstm", "momentum-lstm"):
        torch.manual_seed(5)
        cfg = ModelConfig(kind="lm", vocab_size=5, embed_dim=3, cell=cell, hidden_size=4, num_layers=1,
                          init="paper", mu=0.0 if cell.startswith("m") else None, s=1.0 if cell.startswith("m") else None)
        outs.append(build_model(cfg)(x)[0])
    torch.testing.assert_close(outs[0], outs[1], atol=1e-6, rtol=0)


# -- statistics and grids ----------------------------------------------------------------------------


def test_wilson_interval_known_values_and_edges() -> None:
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson(10, 10)
    assert lo == pytest.approx(0.7225, abs=1e-4) and hi == 1.0
    lo, hi = wilson(6, 10)
    assert lo == pytest.approx(0.3127, abs=1e-4) and hi == pytest.approx(0.8318, abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson(3, 2)


def test_parse_grid_and_its_errors() -> None:
    assert parse_grid(["mu=0,0.3,0.3", "lr=1e-3,3e-3", "forget-bias=2"]) == {
        "mu": [0.0, 0.3], "lr": [0.001, 0.003], "forget_bias": [2.0]}
    for bad in (["mu"], ["eta=1"], ["mu=a"], ["mu=0", "mu=0.3"]):
        with pytest.raises(UsageError):
            parse_grid(bad)


def test_expand_variants_always_has_the_control_and_runs_it_once() -> None:
    variants = expand_variants(["momentum-rnn"], {"mu": [0.0, 0.3, 0.6], "s": [1.0, 0.6]})
    labels = [v.label for v in variants]
    assert labels.count("rnn") == 1 and variants[labels.index("rnn")].role == "control"
    assert "momentum-rnn mu=0 s=0.6" in labels  # the input-rescaling control stays a momentum cell
    assert len(variants) == 1 + 5
    # the base cell is added even when the grid has no mu = 0
    assert expand_variants(["momentum-lstm"], {"mu": [0.9]})[0] == Variant("lstm", role="control")
    with pytest.raises(UsageError):
        expand_variants(["momentum-rnn"], {"mu": [1.0]})


def test_choose_lr_takes_the_best_mean_and_counts_divergence_as_worst() -> None:
    assert choose_lr({1e-3: [1.0, 1.2], 3e-3: [0.9, 1.0]}) == 3e-3
    assert choose_lr({1e-3: [1.0, 1.2], 3e-3: [0.1, math.nan]}) == 1e-3
    assert choose_lr({1e-3: [0.5], 3e-3: [0.5]}) == 1e-3
    assert choose_lr({1e-3: [0.5], 3e-3: [0.9]}, higher_is_better=True) == 3e-3


def test_solve_summary_counts_solved_runs_with_their_interval() -> None:
    runs = [{"solved": True, "solved_at": 300, "accuracy": 1.0}, {"solved": True, "solved_at": 500, "accuracy": 0.995},
            {"solved": False, "solved_at": None, "accuracy": 0.4}]
    found = solve_summary(runs)
    assert (found["solved"], found["n"], found["steps_to_solve_median"]) == (2, 3, 400)
    assert (found["ci_low"], found["ci_high"]) == wilson(2, 3)


# -- the corrected derivation ------------------------------------------------------------------------


@pytest.mark.parametrize("mu", [0.3, 0.6, 0.9])
def test_momentum_rnn_hidden_adjoint_is_the_plain_rnn_recursion(mu: float) -> None:
    """dL/dh_t of MomentumRNN equals U^T D_k applied from the last step: mu never enters it; the input
    gradient, which the v path does reach, decays at mu per step once the hidden path has died out."""
    found = adjoint_check(mu=mu)
    assert found["max_abs_diff"] < 1e-12
    assert found["input_grad_decay"] == pytest.approx(mu, abs=0.01)
    assert found["hidden_grad_decay"] < mu - 0.1  # the hidden gradient does not get the mu path


def test_input_gradient_decays_exactly_as_mu_without_a_recurrent_path() -> None:
    found = adjoint_check(mu=0.7, recurrent_scale=0.0, length=20)
    assert found["input_grad_decay"] == pytest.approx(0.7, abs=1e-7)  # mu is stored in float32: 0.69999999


# -- probe runs: solve records, determinism, resumable parts ----------------------------------------


def test_probe_run_is_deterministic_and_records_solving() -> None:
    settings = ProbeSettings(steps=40, hidden_size=16, eval_every=20, init="paper", mu=0.3, s=1.0)
    a = probe_run("momentum-lstm", 5, 1, settings)
    b = probe_run("momentum-lstm", 5, 1, settings)
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    assert a["solved"] == (a["accuracy"] >= 0.99)
    assert a["solved_at"] is None or a["solved_at"] <= a["steps"]


def test_a_study_part_saves_each_run_and_resumes_without_rerunning(tmp_path: Path) -> None:
    part = Part("tiny", [Arm("rnn", "paper"), Arm("lstm", "paper", forget_bias=2.5)], [4], [0, 1], steps=10)
    first = run_part(part, tmp_path)
    assert first["complete"] and len(load_runs(tmp_path / "tiny")) == 4
    again = run_part(part, tmp_path)
    assert len(load_runs(tmp_path / "tiny")) == 4 and again["rows"] == first["rows"]
    row = first["rows"][1]
    assert row["effective_forget_bias"] == 2.5 and row["n"] == 2
    assert (row["ci_low"], row["ci_high"]) == wilson(row["solved"], 2)


def test_a_part_past_its_deadline_stops_and_says_so(tmp_path: Path) -> None:
    part = Part("late", [Arm("rnn", "paper")], [4], [0], steps=10)
    summary = run_part(part, tmp_path, deadline=0.0)
    assert not summary["complete"] and load_runs(tmp_path / "late") == []


# -- CLI ---------------------------------------------------------------------------------------------


def test_compare_grid_sweeps_with_the_control_and_saves_the_sweep(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    result = runner.invoke(app, ["compare", "--task", "palindrome", "--length", "4", "--cells", "momentum-rnn",
                                 "--init", "paper", "--grid", "mu=0,0.6", "--grid", "lr=1e-3,3e-3", "--seeds", "1",
                                 "--steps", "10", "--hidden", "8", "--out", str(out), "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "sweep.json").read_text())
    assert [r["label"] for r in saved["rows"]] == ["rnn", "momentum-rnn mu=0.6 s=1"]
    assert saved["rows"][0]["role"] == "control"
    assert all(r["lr"] in (1e-3, 3e-3) and r["n"] == 1 for r in saved["rows"])


@pytest.mark.parametrize("args", [
    ["compare", "--task", "palindrome", "--cells", "rnn", "--grid", "eta=1"],
    ["compare", "--task", "palindrome", "--cells", "rnn", "--grid", "lr=1e-3", "--lr", "1e-3"],
    ["train", "--task", "palindrome", "--cell", "rnn", "--mu", "0.5", "--steps", "1"],
    ["train", "--task", "palindrome", "--cell", "rnn", "--forget-bias", "1", "--steps", "1"],
    ["probe", "--cells", "lstm", "--init", "glorot", "--lengths", "5"],
    ["momentum-study", "--only", "no-such-part"],
])
def test_bad_study_options_are_one_line_errors(args: list[str], tmp_path: Path) -> None:
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "x")])
    assert result.exit_code in (1, 2), result.output
    assert "Traceback" not in result.output


def test_sweep_gives_an_option_outside_the_grid_to_every_variant_and_resumes(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from chargen.experiments import compare_sweep as sweep_module

    kwargs = dict(task_options={"length": 4}, model={"s": 0.5, "hidden_size": 8}, train={"steps": 5},
                  out_dir=tmp_path / "sw")
    first = sweep_module.compare_sweep("palindrome", ["momentum-rnn"], {"mu": [0.3]}, 1, **kwargs)
    assert [r["label"] for r in first["rows"]] == ["rnn", "momentum-rnn mu=0.3 s=0.5"]

    def no_training(*args: object, **kw: object) -> None:
        raise AssertionError("a saved (variant, lr) was trained again")

    monkeypatch.setattr(sweep_module, "compare", no_training)
    again = sweep_module.compare_sweep("palindrome", ["momentum-rnn"], {"mu": [0.3]}, 1, **kwargs)
    assert again["rows"] == first["rows"]


# -- after the arch refactor: the study's settings through the schema, the lean path and the report -----------


def test_the_new_model_fields_pass_the_schema_and_reach_the_lean_stepper() -> None:
    import torch

    from chargen.generation.inference import LeanStepper, ReferenceStepper
    from chargen.models import CharLM, ModelConfig
    from chargen.schema import check_model

    for cell in ("momentum-rnn", "momentum-lstm"):
        torch.manual_seed(0)
        cfg = ModelConfig(vocab_size=12, embed_dim=8, cell=cell, hidden_size=16, num_layers=2, engine="fused",
                          init="paper", forget_bias=2.0 if cell == "momentum-lstm" else None, mu=0.3, s=0.9)
        cfg.check()
        check_model(cfg.to_dict())  # what a saved config.json holds passes the loader's schema
        model = CharLM(cfg).eval()
        assert float(model.encoder.core.layers[0].mu) == pytest.approx(0.3)
        ids = torch.randint(12, (20, 2), generator=torch.Generator().manual_seed(1))
        lean, ref = LeanStepper(model, 2), ReferenceStepper(model, 2)
        torch.testing.assert_close(lean.prime(ids[:4]), ref.prime(ids[:4]), rtol=0, atol=0)
        for t in range(4, 20):
            torch.testing.assert_close(lean.step(ids[t]), ref.step(ids[t]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad, says", [({"mu": 1.5}, "mu must be a number in"), ({"s": float("inf")}, "s must be"),
                                       ({"init": 3}, "init must be a string"),
                                       ({"forget_bias": 1e9}, "forget_bias must be a number in")])
def test_the_schema_refuses_absurd_study_settings_in_a_config(bad: dict, says: str) -> None:
    from chargen.models import ModelConfig
    from chargen.schema import SchemaError, check_model

    with pytest.raises(SchemaError, match=says):
        check_model({**ModelConfig(vocab_size=5).to_dict(), **bad})


def test_the_report_sections_trace_every_number_of_the_committed_study() -> None:
    from chargen.paths import PROJECT_ROOT
    from chargen.report.momentum import momentum_report
    from chargen.report.numbers import Numbers, untraced_numbers

    numbers = Numbers()
    for results in (PROJECT_ROOT / "docs/report/results/momentum", Path("/nonexistent/momentum")):
        text = momentum_report(results, numbers)
        assert untraced_numbers(text, numbers.emitted) == []
    assert "Not measured yet" in momentum_report(Path("/nonexistent/momentum"))


def test_a_tuned_part_plans_selection_then_report_and_its_section_shows_the_rank_test(tmp_path: Path) -> None:
    from chargen.report.momentum import long_section
    from chargen.report.numbers import Numbers, untraced_numbers

    part = Part("rnn-long", [Arm("rnn", "pytorch"), Arm("momentum-rnn", "pytorch", mu=0.3, s=1.0)], [4], [0, 1],
                steps=10, select_lr=(1e-3, 3e-3), select_steps=5)
    summary = run_part(part, tmp_path)
    runs = load_runs(tmp_path / "rnn-long")
    assert [r["phase"] for r in runs] == ["select"] * 8 + ["report"] * 4  # the selection first, then the chosen arms
    assert summary["complete"] and {r["lr"] for r in summary["rows"]} <= {1e-3, 3e-3}
    (test,) = summary["rank_tests"]
    assert test["control"].startswith("rnn ") and test["n"] == test["n_baseline"] == 2
    assert all(r["env"]["threads"] == 1 and r["env"]["torch"] == torch.__version__ for r in runs)
    numbers = Numbers()
    text = long_section(tmp_path, numbers)
    assert "Mann–Whitney U" in text and "two-sided p" in text and "Not measured yet: run `chargen momentum-study --only lstm-long" in text
    assert untraced_numbers(text, numbers.emitted) == []
