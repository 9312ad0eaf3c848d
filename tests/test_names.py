"""Surnames: folding, the persisted split, padding invariance, scoring, `chargen classify`, name sampling, a real run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from chargen import checkpoint
from chargen.cli import app
from chargen.data import names as names_data
from chargen.data.names import fold, label_sets, load_names, make_split, split_document
from chargen.errors import CorpusError, UsageError
from chargen.models import ModelConfig, build_model
from chargen.paths import PROJECT_ROOT
from chargen.tasks import build_task
from chargen.tasks.classify import classify_names, score
from chargen.tasks.generate import conditional_log_probs, sample_names
from chargen.tasks.names import EOS, MAX_NAME_LENGTH, classifier_vocab, generator_vocab, pad_batch

runner = CliRunner()
LANGS = ["Czech", "English", "German", "Scottish"]
LINE = re.compile(r"^  [01]\.\d{3} [A-Z][a-z]+$")


# --------------------------------------------------------------------------- folding and the split


def test_folding_is_the_tutorials() -> None:
    assert fold("Müller") == "Muller"
    assert fold("Ślusarski") == "Slusarski"
    assert fold("Lu:") == "Lu"  # ':' is not kept
    assert fold("Rafaj1") == "Rafaj"
    assert fold("Maxa/B") == "MaxaB"
    assert fold("O'Neal-Smith, Jr.") == "O'Neal-Smith, Jr."  # letters and " .,;'-" are kept
    assert fold("To The First\u00a0 Page") == "To The First Page"  # NBSP dropped, not folded
    assert fold("  Nuñez ") == "Nunez"
    assert fold("李") == "" and fold("123") == ""


def test_label_sets_fold_deduplicate_and_keep_every_language() -> None:
    raw = {"German": ["Müller", "Muller", "Schmidt", "7"], "English": ["Smith", "Smith", "Muller"], "Scottish": ["Smith"]}
    assert label_sets(raw) == {
        "Muller": ("English", "German"),
        "Schmidt": ("German",),
        "Smith": ("English", "Scottish"),
    }


def _toy_labels() -> dict[str, tuple[str, ...]]:
    labels = {f"Big{i}": ("Big",) for i in range(200)}
    labels.update({f"Small{i}": ("Small",) for i in range(20)})
    labels.update({f"Both{i}": ("Big", "Small") for i in range(5)})
    return labels


def test_split_is_deterministic_disjoint_and_stratified() -> None:
    labels = _toy_labels()
    a, b = make_split(labels), make_split(dict(reversed(list(labels.items()))))
    assert a == b  # the order the data arrives in does not matter
    assert make_split(labels, seed=1) != a
    seen = [n for s in ("train", "val", "test") for n in a[s]]
    assert sorted(seen) == sorted(labels) and len(seen) == len(set(seen))  # each name in exactly one split
    # names shared by both languages are stratified with the rarer one: 25 -> 4/4/17
    small = [n for n in a["test"] if "Big" not in n]
    assert len(small) == 4 and len([n for n in a["test"] if n.startswith("Big")]) == 30


def test_persisted_split_regenerates_identically(corpus_mirror: Path) -> None:
    committed = PROJECT_ROOT / "corpora" / names_data.SPLIT_FILE
    labels = label_sets(names_data.load_names_raw())
    assert json.loads(committed.read_text()) == split_document(labels)
    data = load_names()
    train, val, test = (set(data.splits[s]) for s in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)
    assert len(train | val | test) == len(data.labels) == 17417
    assert data.sizes()["names"] == {"train": 12193, "val": 2612, "test": 2612}
    for lang, row in data.sizes()["per_language"].items():  # every language about 70/15/15
        total = sum(row.values())
        assert abs(row["test"] / total - 0.15) < 0.03, lang


def test_a_split_that_does_not_match_the_data_is_refused(corpus_mirror: Path, tmp_path: Path) -> None:
    doc = json.loads((PROJECT_ROOT / "corpora" / names_data.SPLIT_FILE).read_text())
    leaky = {**doc, "splits": {**doc["splits"], "test": [*doc["splits"]["test"], doc["splits"]["train"][0]]}}
    stale = {**doc, "data_sha256": "0" * 64}
    for i, bad in enumerate((leaky, stale)):
        (tmp_path / f"{i}.json").write_text(json.dumps(bad))
        with pytest.raises(CorpusError, match="not a split of this names data"):
            load_names(split_file=tmp_path / f"{i}.json")


# --------------------------------------------------------------------------- padding never leaks


@pytest.mark.parametrize(("cell", "engine"), [("lstm", "fused"), ("lstm", "loop"), ("rnn", "fused"),
                                              ("momentum-lstm", "fused"), ("phased-lstm", "loop")])
def test_a_name_alone_equals_the_same_name_in_a_padded_batch(cell: str, engine: str) -> None:
    torch.manual_seed(0)
    vocab = classifier_vocab()
    cfg = ModelConfig(kind="classifier", vocab_size=len(vocab), embed_dim=8, cell=cell, hidden_size=16,
                      num_layers=2, engine=engine, num_classes=len(LANGS))
    model = build_model(cfg).eval()
    batch = ["Schmidhuber-Oppenheimer", "Li", "Hinton", "O'Neal"]
    x, lengths = pad_batch([vocab.encode(n) for n in batch])
    assert x.shape == (23, 4) and lengths.tolist() == [23, 2, 6, 6]
    together = model(x, lengths)
    for i, name in enumerate(batch):
        alone_x, alone_len = pad_batch([vocab.encode(name)])
        torch.testing.assert_close(model(alone_x, alone_len)[0], together[i], rtol=1e-5, atol=1e-6)


def test_generator_log_probs_do_not_depend_on_the_batch() -> None:
    torch.manual_seed(0)
    vocab = generator_vocab()
    cfg = ModelConfig(kind="lm", vocab_size=len(vocab), embed_dim=8, hidden_size=16, num_conditions=3, condition_dim=4)
    model = build_model(cfg).eval()
    batch = ["Abramovich", "Li", "Nguyen"]
    together = conditional_log_probs(model, vocab, batch, 3, torch.device("cpu"))
    for i, name in enumerate(batch):
        alone = conditional_log_probs(model, vocab, [name], 3, torch.device("cpu"))
        torch.testing.assert_close(alone[0], together[i], rtol=1e-5, atol=1e-5)
    # log p(name|lang) is a proper distribution's log: negative, and more letters cost more
    assert bool((together < 0).all())


# --------------------------------------------------------------------------- scoring


def test_score_counts_any_listed_language_as_correct() -> None:
    # names: Smith {English, Scottish} guessed English; Muller {German} guessed Czech; Novak {Czech} right
    m = score([1, 0, 0], [frozenset({1, 3}), frozenset({2}), frozenset({0})], 4)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["recall"] == [1.0, 1.0, 0.0, 1.0]  # Scottish recalled: its name got one of its languages
    assert m["precision"] == [0.5, 1.0, 0.0, 0.0]
    assert m["balanced_accuracy"] == pytest.approx(0.75)
    assert m["confusion"][2].tolist() == [1, 0, 0, 0] and m["confusion"][3].tolist() == [0, 0, 0, 1]


# --------------------------------------------------------------------------- checkpoints for the CLI


def _save(run_dir: Path, task: str, cfg: ModelConfig, vocab, languages: list[str], seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = build_model(cfg)
    config = {"task": task, "model": cfg.to_dict(), "vocab": vocab.to_json(),
              "task_config": {"options": {"corpus": "names"}, "languages": languages, "data_sha256": "-"}}
    checkpoint.save(run_dir, config, model)
    return run_dir


@pytest.fixture
def toy_classifier(tmp_path: Path) -> Path:
    vocab = classifier_vocab()
    cfg = ModelConfig(kind="classifier", vocab_size=len(vocab), embed_dim=8, hidden_size=16, num_layers=1,
                      num_classes=len(LANGS))
    return _save(tmp_path / "clf", "classify", cfg, vocab, LANGS)


@pytest.fixture
def toy_generator(tmp_path: Path) -> Path:
    vocab = generator_vocab()
    cfg = ModelConfig(kind="lm", vocab_size=len(vocab), embed_dim=8, hidden_size=16, num_layers=1,
                      num_conditions=len(LANGS), condition_dim=4)
    return _save(tmp_path / "gen", "generate", cfg, vocab, LANGS)


def test_classify_prints_each_name_and_its_top_languages(toy_classifier: Path) -> None:
    result = runner.invoke(app, ["classify", "--model", str(toy_classifier), "Schmidhuber", "Hinton"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "Schmidhuber" and lines[4] == "Hinton" and len(lines) == 8
    for line in lines[1:4] + lines[5:]:
        assert LINE.match(line), line
    probs = [float(line.split()[0]) for line in lines[1:4]]
    assert probs == sorted(probs, reverse=True) and result.stderr == ""
    two = runner.invoke(app, ["classify", "--model", str(toy_classifier), "--top", "2", "Nguyen"])
    assert len(two.stdout.splitlines()) == 3


def test_classify_json_stdin_and_folding(toy_classifier: Path) -> None:
    result = runner.invoke(app, ["classify", "--model", str(toy_classifier), "--json", "--top", "9", "-", "Müller"],
                           input="Hinton\n\nNovak\n")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [r["name"] for r in report] == ["Hinton", "Novak", "Müller"]
    assert all(len(r["predictions"]) == len(LANGS) for r in report)  # --top beyond the classes: all of them
    assert sorted(p["language"] for p in report[0]["predictions"]) == LANGS
    total = sum(torch.tensor(p["log_prob"]).exp() for p in report[0]["predictions"])
    assert float(total) == pytest.approx(1.0, abs=1e-5)
    loaded = checkpoint.load(toy_classifier)
    assert classify_names(loaded, ["Muller"], top=9)[0]["predictions"] == report[2]["predictions"]  # folded as trained


def test_a_name_without_letters_is_an_error_for_that_name_only(toy_classifier: Path) -> None:
    result = runner.invoke(app, ["classify", "--model", str(toy_classifier), "Hinton", "123", "李", "Novak"])
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == "Hinton" and result.stdout.splitlines()[4] == "Novak"
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2 and errors[0].startswith("error: '123': no usable letter") and "Traceback" not in result.output
    as_json = runner.invoke(app, ["classify", "--model", str(toy_classifier), "--json", "Hinton", "..."])
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)[1] == {
        "name": "...", "error": "no usable letter (A-Z after folding accents)"}


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--top", "0", "Hinton"], 2, "--top must be at least 1"),
    (["-"], 2, "no names to classify"),
    (["--model", "/no/such/model", "Hinton"], 1, "no model"),
])
def test_classify_usage_errors(toy_classifier: Path, args: list[str], code: int, message: str) -> None:
    if "--model" not in args:
        args = ["--model", str(toy_classifier), *args]
    result = runner.invoke(app, ["classify", *args], input="")
    assert result.exit_code == code and message in result.stderr and "Traceback" not in result.output


def test_classify_refuses_a_generator(toy_generator: Path) -> None:
    result = runner.invoke(app, ["classify", "--model", str(toy_generator), "Hinton"])
    assert result.exit_code == 1 and "needs a 'classify' model" in result.stderr


def test_tasks_refuse_other_corpora_and_bad_options() -> None:
    with pytest.raises(UsageError, match="corpus names"):
        build_task("classify", corpus="grimm")
    with pytest.raises(UsageError, match="balance must be one of"):
        build_task("classify", balance="oversample")
    with pytest.raises(UsageError, match="does not take the option 'balance'"):
        build_task("generate", balance="weighted")
    result = runner.invoke(app, ["train", "--task", "classify", "--corpus", "grimm", "--steps", "1", "--quiet"])
    assert result.exit_code == 2 and "--corpus names" in result.stderr
    result = runner.invoke(app, ["train", "--task", "palindrome", "--corpus", "grimm", "--steps", "1", "--quiet"])
    assert result.exit_code == 2 and "reads no corpus" in result.stderr


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--balance-power", "1.5", "--balance-power must be in [0, 1], got 1.5"),
    ("--char-dropout", "0.5", "--char-dropout must be in [0, 0.5), got 0.5"),
])
def test_classifier_flags_are_checked(tmp_path: Path, flag: str, value: str, message: str) -> None:
    result = runner.invoke(app, ["train", "--task", "classify", flag, value, "--steps", "1", "--quiet",
                                 "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_train_hands_the_classifier_options_to_the_task(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from chargen.tasks.classify import ClassifyConfig
    from chargen.train import Run

    seen: list[dict[str, object]] = []
    monkeypatch.setattr("chargen.tasks.build_task", lambda name, **options: seen.append(options))
    monkeypatch.setattr("chargen.train.fit", lambda task, model, cfg, run_dir, *a, **k: Run(run_dir, 0, 0.0))
    base = ["train", "--task", "classify", "--quiet"]
    assert runner.invoke(app, [*base, "--out", str(tmp_path / "a")]).exit_code == 0
    assert runner.invoke(app, [*base, "--out", str(tmp_path / "b"), "--balance", "weighted",
                               "--balance-power", "0.25", "--char-dropout", "0.1"]).exit_code == 0
    defaults, given = ({k: v for k, v in o.items() if k not in ("seed", "progress")} for o in seen)
    assert defaults == {"corpus": "names"}  # the shipped recipe is ClassifyConfig's own defaults
    assert ClassifyConfig().balance == "adjusted" and ClassifyConfig().char_dropout > 0
    assert given == {"corpus": "names", "balance": "weighted", "balance_power": 0.25, "char_dropout": 0.1}


# --------------------------------------------------------------------------- sampling names


def test_sampled_names_stop_at_the_end_token(toy_generator: Path) -> None:
    loaded = checkpoint.load(toy_generator)
    vocab = loaded.vocab
    a = list(sample_names(loaded, lang="german", start="Sch", n=5, seed=3))
    assert a == list(sample_names(loaded, lang="German", start="Sch", n=5, seed=3))  # seeded
    assert all(n.startswith("Sch") and EOS not in n and len(n) <= MAX_NAME_LENGTH for n in a)
    head = loaded.model.head
    with torch.no_grad():
        head.bias.zero_()
        head.bias[vocab.id(EOS)] = 50.0  # the end token always wins: nothing after the start
        assert list(sample_names(loaded, lang="Czech", start="Nov", n=3, seed=1)) == ["Nov"] * 3
        head.bias[vocab.id(EOS)] = -50.0
        head.bias[vocab.id("a")] = 50.0  # never ends: stops at the length bound
        assert list(sample_names(loaded, lang="Czech", n=2, seed=1, temperature=0.0)) == ["a" * MAX_NAME_LENGTH] * 2


def test_names_under_a_pattern_and_words_all_match(toy_generator: Path) -> None:
    pytest.importorskip("interegular")
    loaded = checkpoint.load(toy_generator)
    pattern = r"Mc[a-z]*(son|ez)"
    names = list(sample_names(loaded, lang="Scottish", n=100, seed=4, pattern=pattern, include=["a"]))
    assert len(names) == 100 and len(set(names)) > 50  # an untrained model: its own choices, held to the pattern
    assert all(re.fullmatch(pattern, name) and "a" in name and len(name) <= MAX_NAME_LENGTH for name in names), names
    assert names == list(sample_names(loaded, lang="Scottish", n=100, seed=4, pattern=pattern, include=["a"]))
    assert all(re.fullmatch(pattern, name) for name in sample_names(loaded, start="Mcd", n=20, seed=1, pattern=pattern,
                                                                   temperature=0.0))
    result = runner.invoke(app, ["sample", "--model", str(toy_generator), "-n", "30", "--seed", "2", "--pattern",
                                 pattern, "--include", "o", "--temp", "1.5"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 30 and all(re.fullmatch(pattern, n) and "o" in n for n in lines), lines
    for args, message in ((["--pattern", "[0-9]+"], "no text made of the model's characters"),
                          (["--pattern", "Mc[a-z"], "not a valid regular expression"),
                          (["--start", "Ab", "--pattern", pattern], "no text that starts with the --start 'A'"),
                          (["--max-copy", "3"], "--max-copy is for text models")):
        bad = runner.invoke(app, ["sample", "--model", str(toy_generator), *args])
        assert bad.exit_code in (1, 2) and message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_sample_cli_for_a_generator(toy_generator: Path) -> None:
    result = runner.invoke(app, ["sample", "--model", str(toy_generator), "--lang", "Scottish", "-n", "4",
                                 "--start", "Mc", "--seed", "2", "--temp", "0.8"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and all(line.startswith("Mc") for line in lines)
    bad = runner.invoke(app, ["sample", "--model", str(toy_generator), "--lang", "Klingon"])
    assert bad.exit_code == 1 and "unknown language 'Klingon'" in bad.stderr and "Scottish" in bad.stderr


# --------------------------------------------------------------------------- real data


@pytest.fixture
def one_thread():
    """Small models train fastest on one thread, and far faster than two on a shared, busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.corpus
def test_a_small_classifier_beats_the_majority_class_by_a_wide_margin(corpus_mirror: Path, tmp_path: Path, one_thread) -> None:
    from chargen.tasks.classify import ClassifyTask
    from chargen.train import TrainConfig, fit

    task = build_task("classify", seed=0, balance="none", batch_size=32)
    cfg = ModelConfig(cell="lstm", hidden_size=64, num_layers=1, embed_dim=16)
    fit(task, cfg, TrainConfig(steps=300, lr=1e-2, eval_every=300, sample_every=1000, seed=0, device="cpu"), tmp_path)
    report = ClassifyTask.evaluate_saved(checkpoint.load(tmp_path), torch.device("cpu"))
    m = report["metrics"]
    print(m)
    assert m["majority_rate"] == pytest.approx(0.536, abs=0.01)
    assert m["accuracy"] > m["majority_rate"] + 0.15, m
    assert m["balanced_accuracy"] > 3 / 18, m  # chance is 1/18
    assert (tmp_path / "confusion.png").stat().st_size > 0 and (tmp_path / "loss.png").exists()
    assert [row[0] for row in report["tables"][0]["rows"]] == task.data.languages


@pytest.mark.corpus
def test_a_small_generator_learns_and_is_evaluated(corpus_mirror: Path, tmp_path: Path, one_thread) -> None:
    from chargen.tasks.generate import GenerateTask
    from chargen.train import TrainConfig, fit

    task = build_task("generate", seed=0)
    cfg = ModelConfig(cell="lstm", hidden_size=48, num_layers=1, embed_dim=16, condition_dim=8)
    run = fit(task, cfg, TrainConfig(steps=150, lr=1e-2, eval_every=150, sample_every=150, seed=0, device="cpu"),
              tmp_path)
    assert run.metrics["val_loss"] < 2.6  # uniform over the 58 characters and <eos> would be 4.08
    m = GenerateTask.evaluate_saved(checkpoint.load(tmp_path), torch.device("cpu"))["metrics"]
    print(run.metrics, m)
    assert m["nll_conditioned"] < m["nll_unconditioned"] < 2.7
    assert 0.5 < m["new_share"] <= 1.0 and m["generated"] == 18 * 100


def test_shipped_classifier_knows_schmidhuber() -> None:
    if not (PROJECT_ROOT / "checkpoints" / "surnames" / "config.json").exists():
        pytest.skip("no shipped classifier in checkpoints/surnames")
    result = runner.invoke(app, ["classify", "Schmidhuber"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].endswith(" German")


def test_shipped_generator_samples_names_in_the_requested_language() -> None:
    if not (PROJECT_ROOT / "checkpoints" / "surnames-gen" / "config.json").exists():
        pytest.skip("no shipped generator in checkpoints/surnames-gen")
    result = runner.invoke(app, ["sample", "--model", "surnames-gen", "--lang", "Russian", "-n", "20", "--seed", "0"])
    assert result.exit_code == 0, result.output
    names = result.stdout.splitlines()
    assert len(names) == 20 and all(re.fullmatch(r"[A-Z][A-Za-z' -]*", n) for n in names), names
    if (PROJECT_ROOT / "checkpoints" / "surnames" / "config.json").exists():
        # the shipped classifier reads most of them as Russian
        guesses = [r["predictions"][0]["language"] for r in classify_names(checkpoint.load("surnames"), names)]
        assert guesses.count("Russian") >= 14, list(zip(names, guesses))
