"""The sampling study: text metrics on hand-made texts, the frontier and its rule, a tiny study run and resumed."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from chargen.errors import UsageError
from chargen.experiments import sampling
from chargen.experiments.sampling import (ModelPlan, Scale, distinct_ratio, frontier, looped, recommend,
                                          repetition_rate, words)
from chargen.experiments.studies import build_study, run_study, summarise_study


def test_words_keep_inner_apostrophes_and_drop_digits_and_case() -> None:
    assert words("The king’s son, 'tis 3 o'clock!") == ["the", "king’s", "son", "tis", "o'clock"]


def test_distinct_ngrams_count_within_texts_never_across() -> None:
    assert distinct_ratio(["a b c", "a b c"], 2) == pytest.approx(2 / 4)  # (a b), (b c) twice
    assert distinct_ratio(["a b", "c d"], 2) == 1.0  # (b c) spans two texts: not a bigram
    assert distinct_ratio(["a b c d"], 3) == 1.0 and distinct_ratio(["one"], 2) is None


def test_repetition_rate_is_the_share_of_trigrams_seen_before() -> None:
    assert repetition_rate("the cat sat on the mat") == 0.0
    # 6 trigrams: (a b c) (b c a) (c a b), then the same three again
    assert repetition_rate("a b c a b c a b") == pytest.approx(3 / 6)
    assert repetition_rate("too short") == 0.0


def test_the_loop_detector_wants_a_span_of_twenty_three_times_without_overlap_in_the_last_hundred() -> None:
    unit = "and the king said no "  # 21 characters
    assert looped("x" * 200 + unit * 3)
    assert not looped(unit * 2 + "something else entirely, it goes on and on and never comes back")
    fresh = "".join(chr(0x100 + i) for i in range(100))  # 100 characters, none repeated
    assert not looped(unit * 3 + fresh) and looped(unit * 3 + fresh[:30])  # a loop older than the last 100 is over
    nineteen = "abcdefghijklmnopqrs"  # 19 characters, repeated 5 times: too short a span
    assert not looped("".join(nineteen + d for d in "01234"))
    assert looped("".join(nineteen + d for d in "01234"), span=19)
    assert looped("a" * 60)  # 60 = three non-overlapping copies of twenty "a"s
    assert not looped("a" * 59)  # overlapping copies do not count: two fit, the third overlaps
    assert not looped("")


def brute_loop(text: str, window: int = 100, span: int = 20, times: int = 3) -> bool:
    """Every substring of the tail of every length >= span, non-overlapping occurrences counted left to right."""
    tail = text[-window:]
    for length in range(span, len(tail) + 1):
        for i in range(len(tail) - length + 1):
            s, count, at = tail[i:i + length], 0, 0
            while (j := tail.find(s, at)) >= 0:
                count, at = count + 1, j + length
            if count >= times:
                return True
    return False


def test_the_loop_detector_matches_brute_force_on_random_texts() -> None:
    import random

    rng = random.Random(3)
    for _ in range(60):
        pieces = ["ab", "abc", "the king ", "x", "and so on, and so forth "]
        parts = [rng.choice(pieces) for _ in range(rng.randint(3, 30))]
        text = "".join(parts)[-rng.randint(20, 130):]
        assert looped(text, window=60, span=8) == brute_loop(text, window=60, span=8), text


def row(label: str, diversity: float, nll: float) -> dict:
    sampler, value = label.split("=")
    return {"label": label, "sampler": sampler, "value": float(value), "distinct3": {"mean": diversity},
            "nll": {"mean": nll}}


def test_the_frontier_and_the_rule_pick_the_best_quality_within_the_diversity_floor() -> None:
    rows = [row("temperature=1", 0.90, 1.60), row("temperature=0.5", 0.40, 0.90), row("top_p=0.9", 0.85, 1.30),
            row("min_p=0.1", 0.82, 1.25), row("top_k=20", 0.88, 1.70)]  # top_k=20 is beaten by temperature=1
    assert set(frontier(rows)) == {"temperature=1", "temperature=0.5", "top_p=0.9", "min_p=0.1"}
    chosen = recommend(rows)
    assert chosen is not None and chosen["floor"] == pytest.approx(0.81)
    assert chosen["label"] == "min_p=0.1" and "temperature=0.5" not in chosen["eligible"]
    assert chosen["label"] in frontier(rows)
    assert recommend(rows[1:]) is None  # no reference, no rule


def test_the_grid_is_the_reference_then_each_curve_per_seed() -> None:
    study = build_study("sampling", Path("unused"))
    assert list(study.parts) == ["grimm-grader", "grimm", "tinyshakespeare-sampler", "tinyshakespeare-grader",
                                 "tinyshakespeare"]
    specs = study.parts["grimm"].specs([])
    per_seed = 1 + sum(len(v) for v in sampling.SETTINGS.values())
    assert len(specs) == per_seed * len(sampling.SEEDS) and [s.seed for s in specs[:per_seed]] == [0] * per_seed
    assert (specs[0].params["sampler"], specs[0].params["value"]) == sampling.REFERENCE
    assert all(4 <= len(v) <= 6 for v in sampling.SETTINGS.values())
    bigger = build_study("sampling", Path("unused"), minutes=9)  # another grader: every grid run is new
    assert study.key(specs[0]) != bigger.key(bigger.parts["grimm"].specs([])[0])
    with pytest.raises(UsageError, match="minutes must be a positive number"):
        build_study("sampling", Path("unused"), minutes=-1)


TINY = Scale(samples=4, length=40, settings={"temperature": (0.5,)},
             primes={"firstnames": ("a", "\n")}, shipped={},
             grader=ModelPlan({"cell": "lstm", "embed_dim": 8, "hidden_size": 16, "num_layers": 1}, 1.0, seed=5,
                              steps=15),
             sampler=ModelPlan({"cell": "lstm", "embed_dim": 8, "hidden_size": 24, "num_layers": 1}, 1.0, seed=1,
                               steps=15))


def test_a_tiny_study_runs_end_to_end_and_resumes(corpus_mirror: Path, tmp_path: Path, one_torch_thread: None) -> None:
    started = time.process_time()
    study = sampling.build(tmp_path, seeds=[0], corpora=["firstnames"], scale=TINY)
    with pytest.raises(UsageError, match="run part firstnames-sampler first"):
        study.run(only=["firstnames"])  # the grid before its models: one line naming the part to run
    outcome = study.run()
    assert outcome.complete and outcome.ran == 4  # sampler, grader, reference and temperature 0.5
    records = study.records("firstnames")
    assert [(r["params"]["sampler"], r["params"]["value"]) for r in records] == [("temperature", 1.0),
                                                                                ("temperature", 0.5)]
    for r in records:
        assert r["samples"] == 4 and len(r["nll"]) == len(r["copy_share"]) == len(r["looped"]) == 4
        assert all(0 < x < math.log(40) for x in r["nll"]) and all(0 <= x <= 1 for x in r["copy_share"])
    graders = study.records("firstnames-grader")
    samplers = study.records("firstnames-sampler")
    assert graders[0]["run_dir"] != samplers[0]["run_dir"] and (tmp_path / graders[0]["run_dir"] / "model.pt").exists()
    summary = summarise_study(study)["corpora"]["firstnames"]
    assert summary["complete"] and {r["label"] for r in summary["rows"]} == {"temperature=1", "temperature=0.5"}
    assert summary["recommendation"]["label"] in summary["frontier"]
    assert time.process_time() - started < 30

    # the report section: every number traced, the chosen setting marked, the figure drawn from the same rows
    from chargen.report.numbers import Numbers, untraced_numbers
    from chargen.report.sampling import sampling_section

    numbers, shown = Numbers(), []
    text = sampling_section(tmp_path, numbers, lambda path, name: shown.append(name) or f"![{name}]({path})")
    assert untraced_numbers(text, numbers.emitted) == [] and shown == ["sampling-firstnames.png"]
    assert f"**Recommendation for firstnames: {summary['recommendation']['label']}**" in text
    assert "| **chosen** |" in text and "_Not measured yet: `chargen study sampling --only grimm-grader" in text
    assert (tmp_path / "firstnames.png").stat().st_size > 5000

    # resume: a rerun runs nothing; a record torn by a kill is run again, and only it
    again = sampling.build(tmp_path, seeds=[0], corpora=["firstnames"], scale=TINY)
    assert again.run().ran == 0
    path = again.results_path("firstnames")
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + lines[1][:40])
    resumed = again.run()
    assert resumed.ran == 1 and [r["nll"] for r in again.records("firstnames")] == [r["nll"] for r in records]


def test_the_section_names_the_command_until_measured(tmp_path: Path) -> None:
    from chargen.report.numbers import Numbers
    from chargen.report.sampling import sampling_section

    assert "run `chargen study sampling`" in sampling_section(tmp_path, Numbers())


def test_the_registry_knows_the_study(tmp_path: Path) -> None:
    from chargen.experiments.studies import STUDIES

    assert "sampling" in STUDIES and STUDIES["sampling"].default_out == Path("docs/report/results/sampling")
    from typer.testing import CliRunner

    from chargen.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["study", "sampling", "--list", "--out", str(tmp_path)])
    assert listed.exit_code == 0 and "grimm-grader: 0/1 runs" in listed.output
    assert "tinyshakespeare-sampler:" in listed.output
    early = runner.invoke(app, ["study", "sampling", "--only", "grimm", "--out", str(tmp_path)])
    assert early.exit_code == 2 and "run part grimm-grader first" in early.output and "Traceback" not in early.output
    with pytest.raises(UsageError, match="no part 'nope'"):
        run_study("sampling", tmp_path, only=["nope"])


def full_row(label: str, nll: float, ci: tuple[float, float], distinct3: float, repetition: float, loops: int) -> dict:
    sampler, value = label.split("=")
    return {"label": label, "sampler": sampler, "value": float(value), "nll": {"n": 600, "mean": nll, "ci": list(ci)},
            "distinct3": {"n": 3, "mean": distinct3, "ci": [distinct3 - 0.01, distinct3 + 0.01]},
            "distinct2": {"n": 3, "mean": distinct3 - 0.1, "ci": [distinct3 - 0.11, distinct3 - 0.09]},
            "repetition": {"n": 600, "mean": repetition, "ci": [repetition / 2, repetition * 2]},
            "copy_share": {"n": 600, "mean": 0.01, "ci": [0.0, 0.02]},
            "loop_rate": {"count": loops, "n": 600, "rate": loops / 600, "ci": [0.0, 0.1]}}


def test_the_papers_paragraph_is_filled_from_the_table_and_follows_its_sign() -> None:
    from chargen.report.numbers import Numbers, untraced_numbers
    from chargen.report.sampling import papers

    rows = [full_row("temperature=1", 1.9, (1.85, 1.95), 0.90, 0.05, 12),
            full_row("min_p=0.1", 1.5, (1.45, 1.55), 0.85, 0.03, 3),
            full_row("top_p=0.9", 1.7, (1.65, 1.75), 0.86, 0.04, 6),
            full_row("typical=0.9", 1.8, (1.7, 1.9), 0.88, 0.02, 1)]
    found = {"rows": rows, "recommendation": recommend(rows)}
    numbers = Numbers()
    text = papers(found, numbers)
    assert untraced_numbers(text, numbers.emitted) == []
    assert "min-p's best setting (min_p=0.1) scores 1.500" in text and "top-p's (top_p=0.9) 1.700" in text
    assert "min-p is better, with intervals apart; this agrees with" in text
    assert "repeats 0.020 of its word 3-grams" in text and "less repetition than plain sampling" in text
    rows[1] = full_row("min_p=0.1", 1.72, (1.6, 1.8), 0.85, 0.03, 3)  # now worse than top-p, intervals overlapping
    text = papers({"rows": rows, "recommendation": recommend(rows)}, Numbers())
    assert "top-p is as good or better, but the intervals overlap; this does not confirm" in text
