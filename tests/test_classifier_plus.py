"""The surname classifier's baseline, calibration, ensemble and labelled-file evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from chargen import checkpoint
from chargen.calibration import Fusion, fit_temperature, reliability
from chargen.cli import app
from chargen.data.labelled import LabelledFileError, parse_labelled, read_labelled
from chargen.models import EnsembleClassifier, ModelConfig, SequenceClassifier, build_model
from chargen.ngram import NaiveBayes, ngrams
from chargen.paths import PROJECT_ROOT
from chargen.tasks.classify_calibrate import merge_runs
from chargen.tasks.classify import classify_names, multi_hot
from chargen.tasks.names import classifier_vocab, pad_batch

runner = CliRunner()
LANGS = ["Czech", "English", "German", "Scottish"]
FAKER_TEST = PROJECT_ROOT / "corpora" / "surnames_faker_test.tsv"  # looked at once: by this test of the shipped model


# --------------------------------------------------------------------------- n-gram baseline


def test_ngrams_carry_the_boundaries() -> None:
    assert ngrams("Ab", 2) == ["^", "A", "b", "$", "^A", "Ab", "b$"]
    assert sorted(ngrams("Ab", 4), key=len)[-1] == "^Ab$"


def test_naive_bayes_counts_and_likelihood_on_a_tiny_corpus() -> None:
    nb = NaiveBayes(["X", "Y"], n_max=2, alpha=0.5).fit(["Ab", "Aa", "Ba"], [{0}, {0, 1}, {1}])
    # "Aa" counts under both languages
    assert nb.counts["A"] == {0: 2, 1: 1}
    assert nb.counts["a"] == {0: 1, 1: 2}
    assert nb.counts["^A"] == {0: 2, 1: 1} and nb.counts["b$"] == {0: 1}
    # by hand: order-1 totals X (^ A b $ ^ A a $) = 8, Y (^ A a $ ^ B a $) = 8, distinct unigrams
    # ^ A B a b $ = 6; order-2 totals 6 and 6, distinct bigrams ^A Ab b$ Aa a$ ^B Ba = 7
    def logp(count: int, total: int, distinct: int) -> float:
        return math.log((count + 0.5) / (total + 0.5 * (distinct + 1)))

    # "Ab" -> ^ A b $ | ^A Ab b$ (an unseen gram, "Bb", in "Bb" below)
    x = logp(2, 8, 6) + logp(2, 8, 6) + logp(1, 8, 6) + logp(2, 8, 6) + logp(2, 6, 7) + logp(1, 6, 7) + logp(1, 6, 7)
    y = logp(2, 8, 6) + logp(1, 8, 6) + logp(0, 8, 6) + logp(2, 8, 6) + logp(1, 6, 7) + logp(0, 6, 7) + logp(0, 6, 7)
    assert nb.log_likelihood(["Ab"])[0].tolist() == pytest.approx([x, y], abs=1e-9)
    x = logp(2, 8, 6) + logp(0, 8, 6) + logp(1, 8, 6) + logp(2, 8, 6) + logp(0, 6, 7) + logp(0, 6, 7) + logp(1, 6, 7)
    assert nb.log_likelihood(["Bb"])[0, 0].item() == pytest.approx(x, abs=1e-9)
    assert nb.log_probs(["Bb"]).exp().sum().item() == pytest.approx(1.0, abs=1e-6)


def test_naive_bayes_round_trips_through_json(tmp_path: Path) -> None:
    nb = NaiveBayes(["X", "Y"], n_max=3, alpha=0.1).fit(["Novak", "Smith", "Novakova"], [{0}, {1}, {0}])
    loaded = NaiveBayes.load(nb.save(tmp_path / "ngram.json"))
    names = ["Novotny", "Smyth", "Q"]
    assert torch.equal(loaded.log_likelihood(names), nb.log_likelihood(names))
    (tmp_path / "bad.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(Exception, match="not a readable n-gram model"):
        NaiveBayes.load(tmp_path / "bad.json")


# --------------------------------------------------------------------------- labelled files


@pytest.mark.parametrize(("text", "message"), [
    ("Bakker\tDutch\n", "x.tsv:1: unknown language 'Dutch'"),
    ("Novak\tCzech\n\t English\n", "x.tsv:2: empty name"),
    ("Novak\tCzech\n# a comment\nSmith English\n", "x.tsv:3: no tab"),
    ("Novak\tCzech,\n", "x.tsv:1: empty language"),
    ("123\tCzech\n", "x.tsv:1: name '123' has no usable letter"),
])
def test_labelled_file_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(LabelledFileError) as info:
        parse_labelled(text.splitlines(), LANGS, "x.tsv")
    assert str(info.value).startswith(message)


def test_labelled_file_merges_languages_and_folds(tmp_path: Path) -> None:
    path = tmp_path / "n.tsv"
    path.write_text("# header\nMüller\tgerman\nSmith\tEnglish,Scottish\nMuller\tCzech\n", encoding="utf-8")
    assert read_labelled(path, LANGS) == {"Muller": {"German", "Czech"}, "Smith": {"English", "Scottish"}}


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


@pytest.mark.parametrize(("text", "message"), [
    ("Bakker\tDutch\n", "bad.tsv:1: unknown language 'Dutch'"),
    ("Novak\tCzech\n\tCzech\n", "bad.tsv:2: empty name"),
    ("Novak Czech\n", "bad.tsv:1: no tab"),
])
def test_evaluate_names_file_errors_are_one_line_exit_1(toy_classifier: Path, tmp_path: Path, text: str,
                                                        message: str) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["evaluate", "--model", str(toy_classifier), "--names", str(bad)])
    assert result.exit_code == 1, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- calibration


def test_temperature_changes_no_prediction_and_is_recovered() -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(20000, 5, generator=g) * 3
    labels = torch.multinomial(torch.softmax(scores / 2.0, dim=1), 1, generator=g).squeeze(1)
    targets = torch.nn.functional.one_hot(labels, 5).bool()
    t = fit_temperature(scores, targets)
    assert t == pytest.approx(2.0, rel=0.05)
    fusion = Fusion(ngram_weight=0.3, prior_weight=0.5, temperature=t, log_prior=[-1.0, -2.0, -0.5, -3.0, -1.5])
    nb = torch.log_softmax(torch.randn(20000, 5, generator=g), dim=1)
    uncalibrated = fusion.scores(scores, nb).argmax(1)
    assert torch.equal(fusion.log_probs(scores, nb).argmax(1), uncalibrated)
    sets = [frozenset([int(x)]) for x in labels]
    assert reliability(fusion.log_probs(scores, nb).exp(), sets)["accuracy"] == reliability(
        torch.softmax(fusion.scores(scores, nb), 1), sets)["accuracy"]


def test_expected_calibration_error_sees_overconfidence() -> None:
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(20000, 4, generator=g) * 2
    labels = torch.multinomial(torch.softmax(scores, dim=1), 1, generator=g).squeeze(1)
    sets = [frozenset([int(x)]) for x in labels]
    honest = reliability(torch.softmax(scores, 1), sets)
    overconfident = reliability(torch.softmax(scores * 4, 1), sets)
    assert honest["ece"] < 0.02 < 0.1 < overconfident["ece"]
    assert sum(b["count"] for b in honest["bins"]) == 20000


def test_calibrated_classifier_answers_with_probabilities(toy_classifier: Path, tmp_path: Path) -> None:
    loaded = checkpoint.load(toy_classifier)
    config = dict(loaded.config)
    config["calibration"] = Fusion(ngram_weight=0.5, prior_weight=0.0, temperature=3.0).to_json()
    NaiveBayes(LANGS, alpha=0.1).fit(["Novak", "Smith", "Muller", "Mackay"], [{0}, {1}, {2}, {3}]).save(
        toy_classifier / "ngram.json")
    (toy_classifier / "config.json").write_text(json.dumps(config))
    results = classify_names(checkpoint.load(toy_classifier), ["Novakova", "Smithers"], top=4)
    for r in results:
        probs = [p["prob"] for p in r["predictions"]]
        assert sum(probs) == pytest.approx(1.0, abs=1e-5) and probs == sorted(probs, reverse=True)
    result = runner.invoke(app, ["classify", "--model", str(toy_classifier), "--json", "Novakova"])
    assert result.exit_code == 0 and "prob" in json.loads(result.stdout)[0]["predictions"][0]


# --------------------------------------------------------------------------- ensemble


def test_ensemble_is_the_mean_of_its_members_log_probabilities(toy_classifier: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    vocab = classifier_vocab()
    cfg = ModelConfig.from_dict(checkpoint.load(toy_classifier).config["model"])
    torch.manual_seed(1)
    checkpoint.save(other, {**checkpoint.load(toy_classifier).config, "train": {"seed": 1}}, SequenceClassifier(cfg))
    base = checkpoint.load(toy_classifier).config
    (toy_classifier / "config.json").write_text(json.dumps({**base, "train": {"seed": 0}}))
    merge_runs([toy_classifier, other], tmp_path / "ens")
    ens = checkpoint.load(tmp_path / "ens")
    assert isinstance(ens.model, EnsembleClassifier) and len(ens.model.members) == 2
    x, lengths = pad_batch([vocab.encode(n) for n in ["Novak", "Li"]])
    members = [checkpoint.load(p).model for p in (toy_classifier, other)]
    expected = torch.stack([torch.log_softmax(m(x, lengths), -1) for m in members]).mean(0)
    assert torch.allclose(ens.model(x, lengths), expected, atol=1e-6)


# --------------------------------------------------------------------------- the shipped model, real data


@pytest.mark.corpus
def test_shipped_classifier_beats_the_baseline_on_the_faker_file(corpus_mirror: Path, one_torch_thread: None) -> None:
    if not (PROJECT_ROOT / "checkpoints" / "surnames" / "config.json").exists():
        pytest.skip("no shipped classifier in checkpoints/surnames")
    from chargen.tasks.classify_eval import evaluate_file

    m = evaluate_file(checkpoint.load("surnames"), torch.device("cpu"), FAKER_TEST)["metrics"]
    assert m["names"] > 3000 and m["names_in_corpus"] == 0
    assert m["top1"] > m["baseline_top1"] and m["top3"] > m["baseline_top3"]
    assert m["balanced_accuracy"] > m["baseline_balanced_accuracy"]


def test_multi_hot_and_fusion_prior() -> None:
    t = multi_hot([frozenset({0, 2}), frozenset({1})], 3)
    fusion = Fusion(prior_weight=1.0, log_prior=[0.0, -1.0, -2.0])
    assert fusion.scores(torch.zeros(2, 3)).tolist() == [[0.0, 1.0, 2.0]] * 2 and t.sum().item() == 3


def test_sorting_and_deduplicating_names_changes_no_answer(toy_classifier: Path) -> None:
    from chargen.tasks.classify import classifier_log_probs, name_log_probs

    loaded = checkpoint.load(toy_classifier)
    names = ["Novakova", "Li", "Smith", "Li", "Abercrombie", "Smith"]
    got = classifier_log_probs(loaded, names, torch.device("cpu"))
    for i, name in enumerate(names):
        alone = name_log_probs(loaded.model, loaded.vocab, [name], torch.device("cpu"))[0]
        assert torch.allclose(got[i], alone, atol=1e-5)
