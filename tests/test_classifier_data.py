"""Issue 25: the Faker train/dev/test parts, input folding and respelling, the unsure threshold and coverage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from chargen import checkpoint
from chargen.calibration import accuracy_coverage, unsure_threshold
from chargen.cli import app
from chargen.data.labelled import parse_labelled, read_labelled, read_spellings
from chargen.data.names import fold, fold_input, spellings, typed_case
from chargen.models import ModelConfig, build_model
from chargen.tasks.classify import classify_names
from chargen.tasks.classify_eval import error_table, labelled_metrics
from chargen.tasks.names import classifier_vocab

runner = CliRunner()
LANGS = ["Czech", "English", "German", "Polish"]


@pytest.fixture
def toy_classifier(tmp_path: Path) -> Path:
    vocab = classifier_vocab()
    cfg = ModelConfig(kind="classifier", vocab_size=len(vocab), embed_dim=8, hidden_size=16, num_layers=1,
                      num_classes=len(LANGS))
    torch.manual_seed(0)
    config = {"task": "classify", "model": cfg.to_dict(), "vocab": vocab.to_json(),
              "task_config": {"options": {"corpus": "names"}, "languages": LANGS, "data_sha256": "-"}}
    checkpoint.save(tmp_path / "clf", config, build_model(cfg))
    return tmp_path / "clf"


# --------------------------------------------------------------------------- folding and spellings


@pytest.mark.parametrize(("raw", "tutorial", "user"), [
    ("Małecki", "Maecki", "Malecki"), ("Großmann", "Gromann", "Grossmann"), ("Đặng", "ang", "Dang"),
    ("Sørensen", "Srensen", "Sorensen"), ("Müller", "Muller", "Muller"), ("O'Brien", "O'Brien", "O'Brien"),
])
def test_input_folding_spells_the_letters_nfd_keeps(raw: str, tutorial: str, user: str) -> None:
    assert fold(raw) == tutorial and fold_input(raw) == user


def test_a_name_typed_in_one_case_is_answered_as_the_lists_write_it(toy_classifier: Path) -> None:
    assert [typed_case(n) for n in ("smith", "SMITH", "o'brien", "McDonald", "van der Berg")] == [
        "Smith", "Smith", "O'Brien", "McDonald", "van der Berg"]
    loaded = checkpoint.load(toy_classifier)
    one, two, three = classify_names(loaded, ["NOWAK", "nowak", "Nowak"])
    assert one["predictions"] == two["predictions"] == three["predictions"]


def test_spellings_add_the_german_umlaut_spelling_only_for_german() -> None:
    assert spellings("Müller", ("German",)) == {"Muller", "Mueller"}
    assert spellings("Müller", ("Czech",)) == {"Muller"}
    assert spellings("Schönfeld-Baß", ("English", "German")) == {"Schonfeld-Bass", "Schoenfeld-Bass"}


def test_a_third_column_is_spellings_and_evaluation_ignores_it(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_text("# header\nBöhm\tGerman\tBoehm\nNovak\tCzech\n", encoding="utf-8")
    assert read_labelled(path, LANGS) == {"Bohm": {"German"}, "Novak": {"Czech"}}
    assert read_spellings(path) == {"Bohm": ["Boehm"]}
    assert parse_labelled(["Kowalski\tpolish\tx,y"], LANGS) == {"Kowalski": {"Polish"}}


# --------------------------------------------------------------------------- coverage and the unsure threshold


def test_accuracy_coverage_matches_a_brute_force_ranking() -> None:
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(200, 4, generator=g) * 2, 1)
    targets = [frozenset({int(torch.randint(4, (1,), generator=g))}) for _ in range(200)]
    rows = accuracy_coverage(probs, targets, coverages=(1.0, 0.5, 0.1))
    conf, pred = probs.max(1)
    ranked = sorted(range(200), key=lambda i: -float(conf[i]))
    for row, k in zip(rows, (200, 100, 20)):
        assert row["answered"] == k
        assert row["accuracy"] == pytest.approx(sum(int(pred[i]) in targets[i] for i in ranked[:k]) / k)
        assert row["threshold"] == pytest.approx(float(conf[ranked[k - 1]]))


def test_unsure_threshold_keeps_the_guesses_that_are_right_more_often_than_wrong() -> None:
    # at confidence 0.9 right 9 times of 10, at 0.6 once of 10: answering only the 0.9s gains most
    probs = torch.tensor([[0.9, 0.1]] * 10 + [[0.6, 0.4]] * 10)
    targets = [frozenset({0})] * 9 + [frozenset({1})] + [frozenset({0})] + [frozenset({1})] * 9
    t = unsure_threshold(probs, targets)
    assert 0.6 < t <= 0.9
    assert unsure_threshold(torch.tensor([[0.7, 0.3]] * 4), [frozenset({0})] * 4) == 0.0  # all right: none unsure


def test_error_table_agrees_with_the_metrics() -> None:
    logp = torch.log(torch.tensor([[0.7, 0.2, 0.1, 0.0], [0.1, 0.8, 0.1, 0.0], [0.6, 0.3, 0.1, 0.0],
                                   [0.2, 0.2, 0.1, 0.5]]) + 1e-9)
    targets = [frozenset({0}), frozenset({1}), frozenset({2}), frozenset({3, 1})]
    rows = {r[0]: r for r in error_table(logp, targets, LANGS)}
    m = labelled_metrics(logp, targets, len(LANGS))
    assert [rows[lang][2] for lang in LANGS] == pytest.approx(m["recall"])
    assert rows["German"][4] == "Czech (1.00)" and rows["German"][3] == 1.0 and rows["Czech"][4] == "-"


# --------------------------------------------------------------------------- classify: unsure and bad input


def test_classify_marks_guesses_below_the_threshold_unsure(toy_classifier: Path) -> None:
    config = json.loads((toy_classifier / "config.json").read_text())
    config["calibration"] = {"temperature": 1.0, "threshold": 0.99}
    (toy_classifier / "config.json").write_text(json.dumps(config))
    r = classify_names(checkpoint.load(toy_classifier), ["Novak"], top=2)[0]
    assert r["unsure"] is True
    result = runner.invoke(app, ["classify", "--model", str(toy_classifier), "--top", "2", "Novak"])
    first = result.stdout.splitlines()[0]
    p = r["predictions"]
    assert first == f"Novak  unsure: {p[0]['language']} {p[0]['prob']:.2f} / {p[1]['language']} {p[1]['prob']:.2f}"
    config["calibration"]["threshold"] = 0.0
    (toy_classifier / "config.json").write_text(json.dumps(config))
    assert classify_names(checkpoint.load(toy_classifier), ["Novak"])[0]["unsure"] is False


@pytest.mark.parametrize(("name", "message"), [
    ("Иванов", "no usable letter: the model reads names in the Latin alphabet"),
    ("12345", "no usable letter (A-Z after folding accents)"),
    ("x" * 10_000, "too long for a surname: 10,000 characters"),
])
def test_bad_names_get_one_line_each_and_the_rest_an_answer(toy_classifier: Path, name: str, message: str) -> None:
    result = runner.invoke(app, ["classify", "--model", str(toy_classifier), "Nowak", name])
    assert result.exit_code == 1 and result.stdout.splitlines()[0] == "Nowak"
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert "Traceback" not in result.output


def test_an_empty_name_is_a_usage_error(toy_classifier: Path) -> None:
    result = runner.invoke(app, ["classify", "--model", str(toy_classifier), ""])
    assert result.exit_code == 2 and "no names to classify" in result.stderr and "Traceback" not in result.output


# --------------------------------------------------------------------------- the Faker parts, real data


@pytest.mark.corpus
def test_faker_parts_regenerate_identically_and_are_disjoint(corpus_mirror: Path) -> None:
    pytest.importorskip("faker")
    pytest.importorskip("anyascii")
    from chargen.data import faker_names
    from chargen.data.corpora import load_names_raw
    from chargen.data.names import label_sets

    corpus = set(label_sets(load_names_raw()))
    try:
        parts = faker_names.build_parts(corpus)
    except faker_names.FakerUnavailable as e:
        pytest.skip(str(e))
    for part, rows in parts.items():
        assert faker_names.render(part, rows) == faker_names.output_path(part).read_text(encoding="utf-8")
    names = {p: {n for n, _, _ in rows} for p, rows in parts.items()}
    assert not names["train"] & names["dev"] and not names["train"] & names["test"] and not names["dev"] & names["test"]
    assert not (names["train"] | names["dev"] | names["test"]) & corpus
    every = corpus | names["train"] | names["dev"] | names["test"]
    assert all(not set(other) & every for _, _, other in parts["train"])  # no spelling leaks a name of any set


@pytest.mark.corpus
def test_training_names_add_faker_and_respell_without_leaking(corpus_mirror: Path) -> None:
    from chargen.data.corpora import load_names_raw
    from chargen.data.faker_names import output_path, training_names
    from chargen.data.names import load_names

    data = load_names()
    plain = training_names(data)
    both = training_names(data, "faker", load_names_raw())
    faker_train = read_labelled(output_path("train"), data.languages)
    assert plain.names == data.splits["train"] and plain.sha256 == ""
    assert both.names == data.splits["train"] + list(faker_train) and len(both.sha256) == 64
    evaluation = set(data.splits["val"]) | set(data.splits["test"])
    for part in ("dev", "test"):
        evaluation |= set(read_labelled(output_path(part), data.languages))
    assert not set(both.names) & evaluation
    assert both.spellings and not {s for ss in both.spellings.values() for s in ss} & (evaluation | set(both.names))
