"""The LM tools: score, stop strings, beam search, keep-best with early stop, and fine-tuning."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from chargen import checkpoint
from chargen.generation.beam import beam_search
from chargen.cli import app
from chargen.data.streams import as_streams
from chargen.errors import UsageError, VocabularyError
from chargen.finetune import build_lm_task, load_parent
from chargen.models import CharLM, ModelConfig
from chargen.paths import PROJECT_ROOT
from chargen.generation.sample import generate
from chargen.generation.score import score_lines, score_text
from chargen.generation.stops import stop_at, unescape
from chargen.tasks import build_task
from chargen.tasks.lm import LMData, evaluate_lm
from chargen.train import TrainConfig, fit
from chargen.vocab import Vocab

runner = CliRunner()
SHIPPED = PROJECT_ROOT / "checkpoints" / "grimm"
TEXT = "Once upon a time a miller had three sons, a mill, a donkey and a cat.\n" * 40
MODEL = ModelConfig(cell="lstm", hidden_size=16, num_layers=1, embed_dim=8)
VOCAB = Vocab.from_text("abcdefghij .\n")


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread: None) -> None:
    """Small models: one thread (see conftest)."""


def tiny_lm(vocab: Vocab = VOCAB, seed: int = 0, layers: int = 2) -> CharLM:
    torch.manual_seed(seed)
    return CharLM(ModelConfig(vocab_size=len(vocab), embed_dim=8, hidden_size=16, num_layers=layers)).eval()


# --------------------------------------------------------------------------- stop strings


def test_stop_strings_end_at_the_first_occurrence_across_pieces_and_are_not_printed() -> None:
    pieces = ["once upon", " a ti", "me. The", " end.\n", "\nMore text"]
    assert "".join(stop_at(pieces, ["\n\n"])) == "once upon a time. The end."
    assert "".join(stop_at(pieces, ["\n\n", "e. T"])) == "once upon a tim"  # the earliest of several
    assert "".join(stop_at(pieces, ["ti"])) == "once upon a "  # straddles two pieces
    assert "".join(stop_at(pieces, ["zzz"])) == "".join(pieces)  # none: everything
    assert "".join(stop_at(pieces, [])) == "".join(pieces)
    assert "".join(stop_at(["ab", "c"], ["abc"])) == ""


def test_stop_strings_stream_without_waiting_for_the_end_and_stop_the_generator() -> None:
    pulled: list[int] = []

    def endless() -> Iterator[str]:
        for i in itertools.count():
            pulled.append(i)
            yield "abcdef"[i % 6]

    seen = []
    for piece in stop_at(endless(), ["fab"]):
        seen.append(piece)
        assert len(pulled) - len("".join(seen)) <= 2  # at most len(stop) - 1 characters held back
    assert "".join(seen) == "abcde"
    assert len(pulled) == 8  # stopped pulling as soon as the stop string was complete


def test_unescape_reads_python_escapes_and_keeps_other_characters() -> None:
    assert unescape(r"\n\n") == "\n\n"
    assert unescape(r"a\tb\\n") == "a\tb\\n"
    assert unescape(r"\u2019s é") == "’s é"
    assert unescape(r"\x41") == "A"
    with pytest.raises(UsageError, match="unknown escape"):
        unescape(r"\q")
    with pytest.raises(UsageError, match="lone backslash"):
        unescape("abc\\")
    with pytest.raises(UsageError, match="empty"):
        list(stop_at(["x"], [""]))


def test_stop_strings_compose_with_seeded_sampling() -> None:
    model = tiny_lm()
    full = "".join(generate(model, VOCAB, prime="abc", length=300, seed=3))
    stop = next(full[i : i + 2] for i in range(50, 200) if full[i] == " ")  # a pair that occurs
    cut = "".join(stop_at(generate(model, VOCAB, prime="abc", length=300, seed=3), [stop]))
    assert cut == full[: full.index(stop)]


# --------------------------------------------------------------------------- score


def test_score_is_the_same_in_any_chunk_size_and_matches_a_direct_computation() -> None:
    model = tiny_lm()
    text = "abc dej. fiahg\nbad cafe." * 7
    ids = torch.tensor(VOCAB.encode(text))
    logits, _, _ = model(ids[:-1].view(-1, 1))
    direct = -torch.nn.functional.cross_entropy(logits[:, 0].double(), ids[1:], reduction="sum").item()
    whole, _ = score_text(model, VOCAB, text, chunk_size=10_000)
    assert whole.chars == len(text) - 1 and whole.log_prob == pytest.approx(direct, rel=1e-9)
    for chunk in (1, 7, 64):
        assert score_text(model, VOCAB, text, chunk_size=chunk)[0].log_prob == pytest.approx(direct, rel=1e-9)
    pieces = [text[i : i + 13] for i in range(0, len(text), 13)]  # fed piece by piece
    assert score_text(model, VOCAB, pieces, chunk_size=5)[0].log_prob == pytest.approx(direct, rel=1e-9)
    assert whole.nats_per_char == pytest.approx(-direct / (len(text) - 1))
    assert whole.bits_per_char == pytest.approx(whole.nats_per_char / math.log(2))
    assert whole.perplexity == pytest.approx(math.exp(whole.nats_per_char))


def test_score_with_a_prime_predicts_every_character() -> None:
    model = tiny_lm()
    both = score_text(model, VOCAB, "abc. bad")[0]
    primed = score_text(model, VOCAB, " bad", prime="abc.")[0]
    head = score_text(model, VOCAB, "abc.")[0]
    assert primed.chars == 4 and both.log_prob == pytest.approx(head.log_prob + primed.log_prob, rel=1e-6)


def test_score_names_unknown_characters_or_skips_and_counts_them() -> None:
    model = tiny_lm()
    with pytest.raises(VocabularyError, match=r"2 character\(s\).*'x' 'z'"):
        score_text(model, VOCAB, "abxc zz")
    skipped, unknown = score_text(model, VOCAB, "abxc zz", skip_unknown=True)
    assert skipped.skipped == 3 and unknown == {"x": 1, "z": 2}
    assert skipped.log_prob == pytest.approx(score_text(model, VOCAB, "abc ")[0].log_prob, rel=1e-6)


def test_score_per_line_scores_each_line_from_a_newline() -> None:
    model = tiny_lm()
    rows = list(score_lines(model, VOCAB, ["abc\n", "dead beef\n", ""]))
    assert [line for line, _ in rows] == ["abc", "dead beef", ""]
    assert rows[0][1].chars == 3 and rows[2][1].chars == 0 and math.isnan(rows[2][1].nats_per_char)
    assert rows[1][1].log_prob == pytest.approx(score_text(model, VOCAB, "dead beef", prime="\n")[0].log_prob)


def test_score_of_each_stream_sums_to_evaluate_on_the_same_positions() -> None:
    model = tiny_lm()
    ids = torch.randint(len(VOCAB), (2003,))
    evaluated = evaluate_lm(model, ids, torch.device("cpu"), streams=4, chunk=100)
    scores = [score_text(model, VOCAB, VOCAB.decode(col.tolist()), chunk_size=37)[0] for col in as_streams(ids, 4).t()]
    total, chars = sum(s.log_prob for s in scores), sum(s.chars for s in scores)
    assert -total / chars == pytest.approx(evaluated, rel=1e-6)


@pytest.mark.corpus
def test_score_of_the_validation_text_equals_evaluate(corpus_mirror: Path) -> None:
    """The shipped model's validation loss, as `evaluate` reads it (8 streams), from `score` on the same positions."""
    loaded = checkpoint.load(SHIPPED, task="lm")
    options = loaded.config["task_config"]["options"]
    val = LMData.load(options["corpus"], options["val_fraction"], vocab=loaded.vocab).val[:10_001]
    evaluated = evaluate_lm(loaded.model, val, torch.device("cpu"))
    streams = as_streams(val, 8)  # evaluate's own layout: each stream starts cold
    total, chars = 0.0, 0
    for column in streams.t():
        scored, _ = score_text(loaded.model, loaded.vocab, loaded.vocab.decode(column.tolist()))
        total, chars = total + scored.log_prob, chars + scored.chars
    assert chars == streams.numel() - 8
    assert -total / chars == pytest.approx(evaluated, rel=1e-5)
    one_stream = evaluate_lm(loaded.model, val, torch.device("cpu"), streams=1)
    whole = score_text(loaded.model, loaded.vocab, loaded.vocab.decode(val.tolist()))[0]
    assert whole.nats_per_char == pytest.approx(one_stream, rel=1e-5)


# --------------------------------------------------------------------------- beam search


def test_beam_1_is_greedy_exactly() -> None:
    model = tiny_lm()
    for prime in ("a", "bad ", "cafe.\n"):
        greedy = "".join(generate(model, VOCAB, prime=prime, length=80, temperature=0))
        assert beam_search(model, VOCAB, prime, 80, beams=1).text == greedy


def test_beam_log_probability_equals_the_score_of_its_text() -> None:
    model = tiny_lm()
    for beams in (1, 3, 8):
        found = beam_search(model, VOCAB, "ab", 40, beams)
        scored = score_text(model, VOCAB, found.text, prime="ab")[0]
        assert len(found.text) == 40 and scored.chars == 40
        assert found.log_prob == pytest.approx(scored.log_prob, rel=1e-6)
        assert found.prefix_log_prob(10) == pytest.approx(score_text(model, VOCAB, found.text[:10], prime="ab")[0].log_prob,
                                                          rel=1e-6)


def test_a_wide_enough_beam_finds_the_exhaustive_optimum() -> None:
    """With K >= V^(L-1) beams nothing is ever pruned, so the beam's answer is the best of all V^L texts."""
    vocab = Vocab.from_text("abc")
    model = tiny_lm(vocab, seed=4)
    best = max(("".join(t) for t in itertools.product("abc", repeat=4)),
               key=lambda t: score_text(model, vocab, t, prime="a")[0].log_prob)
    found = beam_search(model, vocab, "a", 4, beams=27)
    assert found.text == best
    assert found.log_prob == pytest.approx(score_text(model, vocab, best, prime="a")[0].log_prob, rel=1e-6)


def test_beam_search_refuses_what_it_cannot_do() -> None:
    model = tiny_lm()
    with pytest.raises(UsageError, match="prime"):
        beam_search(model, VOCAB, "", 10)
    with pytest.raises(UsageError, match="at least 1"):
        beam_search(model, VOCAB, "a", 10, beams=0)
    with pytest.raises(VocabularyError):
        beam_search(model, VOCAB, "xyz", 10)
    assert beam_search(model, VOCAB, "a", 0).text == ""


def test_beam_search_beats_greedy_on_the_shipped_model() -> None:
    loaded = checkpoint.load(SHIPPED, task="lm")
    primes = ["The king", "Once upon a time", "She said", "In the forest", "Hansel", "The wolf", "At night",
              "The miller"]
    greedy, beam = [], []
    for prime in primes:
        text = "".join(generate(loaded.model, loaded.vocab, prime=prime, length=40, temperature=0))
        greedy.append(score_text(loaded.model, loaded.vocab, text, prime=prime)[0].log_prob)
        beam.append(beam_search(loaded.model, loaded.vocab, prime, 40, beams=5).log_prob)
    assert sum(beam) / len(beam) > sum(greedy) / len(greedy)
    assert sum(b > g for b, g in zip(beam, greedy)) > len(primes) / 2  # not one lucky prime carrying the mean


# --------------------------------------------------------------------------- keep-best and early stop


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "tale.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def scripted(task: Any, losses: list[float]) -> list[dict[str, torch.Tensor]]:
    """Make ``task.evaluate`` report ``losses`` in turn; returns the weights seen at each evaluation."""
    seen: list[dict[str, torch.Tensor]] = []
    queue = iter(losses)

    def evaluate(model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return {"val_loss": next(queue)}

    task.evaluate = evaluate
    return seen


def lm(corpus: Path, **options: Any) -> Any:
    return build_task("lm", seed=3, corpus=str(corpus), seq_len=8, batch_size=4, **options)


def cfg(steps: int, **overrides: Any) -> TrainConfig:
    return TrainConfig(**{**dict(steps=steps, lr=1e-2, warmup=2, eval_every=2, sample_every=100, log_every=1,
                                 seed=5, device="cpu"), **overrides})


def test_keep_best_keeps_the_lowest_validation_loss(corpus: Path, tmp_path: Path) -> None:
    task = lm(corpus)
    seen = scripted(task, [3.0, 2.0, 2.5, 1.5, 1.7, 1.6])
    run = fit(task, MODEL, cfg(12), tmp_path / "run")
    best = checkpoint.load_config(tmp_path / "run" / "best")
    assert run.best_val_loss == 1.5 and run.best_step == 8
    assert best["step"] == 8 and best["metrics"]["val_loss"] == 1.5
    weights = checkpoint.load_tensors(tmp_path / "run" / "best" / checkpoint.WEIGHTS)
    assert all(torch.equal(weights[k], seen[3][k]) for k in weights)  # the weights evaluated at 1.5
    last = checkpoint.load_tensors(tmp_path / "run" / checkpoint.WEIGHTS)
    assert not all(torch.equal(last[k], weights[k]) for k in weights)
    loaded = checkpoint.load(tmp_path / "run" / "best", task="lm")  # an ordinary run directory
    assert loaded.config["step"] == 8
    path, note = checkpoint.choose(tmp_path / "run")
    assert path == tmp_path / "run" / "best" and "best" in note and "step 8" in note and "step 12" in note
    path, note = checkpoint.choose(tmp_path / "run", last=True)
    assert path == tmp_path / "run" and "last" in note
    assert not (tmp_path / "run" / "best" / checkpoint.TRAINER).exists()


def test_early_stop_ends_after_n_evaluations_without_improvement(corpus: Path, tmp_path: Path) -> None:
    task = lm(corpus)
    scripted(task, [3.0, 2.0, 2.5, 2.0, 2.7, 1.0, 1.0])
    notes: list[str] = []

    class Notes:
        def __getattr__(self, name: str) -> Any:
            return (lambda message: notes.append(message)) if name == "on_note" else (lambda *a, **k: None)

    run = fit(task, MODEL, cfg(40, early_stop=3), tmp_path / "run", Notes())  # type: ignore[arg-type]
    assert run.stopped_early and run.step == 10 and run.best_step == 4  # 2.0 again is no improvement
    assert any("early stop at step 10" in n and "step 4" in n for n in notes)
    assert checkpoint.load_config(tmp_path / "run" / "best")["step"] == 4
    assert checkpoint.load_config(tmp_path / "run")["step"] == 10
    with pytest.raises(UsageError, match="early_stop"):
        TrainConfig(steps=10, early_stop=0)


def test_early_stop_count_survives_a_resume(corpus: Path, tmp_path: Path) -> None:
    task = lm(corpus)
    scripted(task, [2.0, 2.5, 2.6])
    fit(task, MODEL, cfg(6, early_stop=3), tmp_path / "run")  # the budget ends after 2 evaluations without improvement
    task = lm(corpus)
    scripted(task, [2.7, 1.0])
    run = fit(task, MODEL, cfg(20, early_stop=3), tmp_path / "run", resume=True)
    assert run.stopped_early and run.step == 8 and run.best_step == 2


# --------------------------------------------------------------------------- fine-tuning


@pytest.fixture
def parent(corpus: Path, tmp_path: Path) -> Path:
    fit(lm(corpus), MODEL, cfg(6), tmp_path / "parent")
    return tmp_path / "parent"


def test_fine_tune_starts_from_the_parent_and_records_it(parent: Path, tmp_path: Path) -> None:
    new_text = tmp_path / "new.txt"
    new_text.write_text("a miller and a cat had a donkey. " * 40, encoding="utf-8")  # a subset of the characters
    loaded, note = load_parent(parent)
    assert loaded.path == parent / "best" and "best" in note
    task = build_lm_task(loaded.vocab, "parent", seed=3, corpus=str(new_text), seq_len=8, batch_size=4)
    assert task.vocab == loaded.vocab  # the parent's, not the new text's smaller one
    started: list[dict[str, torch.Tensor]] = []
    scripted(task, [9.0])
    original = task.train_loss

    def first_step(model: torch.nn.Module, device: torch.device) -> Any:
        if not started:
            started.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return original(model, device)

    task.train_loss = first_step
    fit(task, loaded.model_config(), cfg(2), tmp_path / "child", init_weights=loaded.weights, parent=loaded.record())
    assert all(torch.equal(started[0][k], loaded.weights[k]) for k in loaded.weights)
    config = checkpoint.load_config(tmp_path / "child")
    sha = hashlib.sha256((parent / "best" / checkpoint.WEIGHTS).read_bytes()).hexdigest()
    assert config["parent"]["weights_sha256"] == sha and config["parent"]["name"] == str(parent)
    assert config["vocab"] == loaded.vocab.to_json()
    trainer = checkpoint.load_tensors(tmp_path / "child" / checkpoint.TRAINER)
    assert all(s["step"] == 2 for s in trainer["optimizer"]["state"].values() if "step" in s)  # a fresh optimiser
    with pytest.raises(UsageError, match="architecture"):
        loaded.model_config(hidden_size=32)


def test_fine_tune_refuses_text_the_parent_vocabulary_does_not_cover(parent: Path, tmp_path: Path) -> None:
    new_text = tmp_path / "new.txt"
    new_text.write_text("Zwölf Brüder § " * 40, encoding="utf-8")
    loaded, _ = load_parent(parent)
    with pytest.raises(VocabularyError, match=r"outside the model's vocabulary: 'Z' 'w' 'ö'.*keeps the vocabulary"):
        build_lm_task(loaded.vocab, "parent", seed=3, corpus=str(new_text), seq_len=8, batch_size=4)


def test_cli_fine_tune_resume_and_errors(parent: Path, tmp_path: Path) -> None:
    new_text = tmp_path / "new.txt"
    new_text.write_text("a miller and a cat had a donkey. " * 40, encoding="utf-8")
    base = ["train", "--init-from", str(parent), "--corpus", str(new_text), "--seq-len", "8", "--batch-size", "4",
            "--eval-every", "2", "--quiet", "--device", "cpu"]
    result = runner.invoke(app, [*base, "--steps", "2", "--out", str(tmp_path / "child")])
    assert result.exit_code == 0, result.output
    assert "using the best checkpoint" in result.stderr
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "child"), "--steps", "4", "--quiet"])
    assert result.exit_code == 0, result.output
    assert checkpoint.load_config(tmp_path / "child")["parent"]["name"] == str(parent)  # kept across the resume
    result = runner.invoke(app, [*base, "--steps", "2", "--hidden", "64", "--out", str(tmp_path / "other")])
    assert result.exit_code == 2 and "--hidden" in result.stderr and "Traceback" not in result.output
    bad = tmp_path / "bad.txt"
    bad.write_text("Zebra! " * 100, encoding="utf-8")
    result = runner.invoke(app, [*base, "--steps", "2", "--corpus", str(bad), "--out", str(tmp_path / "bad")])
    assert result.exit_code == 1 and "'Z'" in result.stderr and not (tmp_path / "bad").exists()


# --------------------------------------------------------------------------- CLI


def test_cli_score_sample_stop_and_beam(parent: Path, tmp_path: Path) -> None:
    text = tmp_path / "t.txt"
    text.write_text("a miller had a cat.\na cat had a mill.\n", encoding="utf-8")
    result = runner.invoke(app, ["score", str(text), "--model", str(parent), "--json"])
    assert result.exit_code == 0, result.output
    scored = json.loads(result.stdout)
    loaded = checkpoint.load(parent / "best")
    expected, _ = score_text(loaded.model, loaded.vocab, text.read_text())
    assert scored["chars"] == expected.chars and scored["log_prob"] == pytest.approx(expected.log_prob)
    assert "using the best checkpoint" in result.stderr
    lines = json.loads(runner.invoke(app, ["score", str(text), "--model", str(parent), "--json", "--per-line"]).stdout)
    assert [row["line"] for row in lines] == ["a miller had a cat.", "a cat had a mill."]
    result = runner.invoke(app, ["score", "-", "--model", str(parent)], input="a cat Q\n")
    assert result.exit_code == 1 and "'Q'" in result.stderr and "--skip-unknown" in result.stderr
    result = runner.invoke(app, ["score", "-", "--model", str(parent), "--skip-unknown", "--json"], input="a cat Q\n")
    assert result.exit_code == 0 and json.loads(result.stdout)["skipped"] == 1 and "'Q' x1" in result.stderr

    args = ["sample", "--model", str(parent), "--prime", "a ", "--length", "200", "--seed", "2"]
    full = runner.invoke(app, args).stdout
    stop = full[10:12]
    cut = runner.invoke(app, [*args, "--stop", stop]).stdout
    assert cut == full[: full.index(stop, 2)] + "\n"
    result = runner.invoke(app, ["sample", "--model", str(parent), "--prime", "a ", "--length", "30", "--beam", "1"])
    greedy = runner.invoke(app, ["sample", "--model", str(parent), "--prime", "a ", "--length", "30", "--greedy"])
    assert result.exit_code == 0 and result.stdout == greedy.stdout and "log-probability" in result.stderr
    assert runner.invoke(app, [*args, "--beam", "2"]).exit_code == 0
    assert runner.invoke(app, ["sample", "--model", str(parent), "--beam", "3"]).exit_code == 2  # no prime
    assert runner.invoke(app, [*args, "--stop", "\\q"]).exit_code == 2
    result = runner.invoke(app, ["evaluate", "--model", str(parent), "--json", "--last"])
    assert result.exit_code == 0 and "using the last checkpoint" in result.stderr


def test_library_sample_saved_takes_stop_strings_and_the_servers_scorer_is_score(parent: Path) -> None:
    """Stop strings reach the library's sample_saved (the CLI only unescapes them); inspect's (the server's)
    scorer is chargen.generation.score's under other field names."""
    from chargen.inspect import score_text as server_score
    from chargen.tasks import sample_saved

    loaded = checkpoint.load(parent / "best")
    options = {"prime": "a ", "length": 200, "seed": 2}
    full = "".join(sample_saved(loaded, **options))
    stop = full[10:12]
    assert "".join(sample_saved(loaded, **options, stop=[stop])) == full[: full.index(stop, 2)] + "\n"
    with pytest.raises(VocabularyError, match="the stop string"):
        list(sample_saved(loaded, **options, stop=["\u20ac"]))
    with pytest.raises(UsageError, match="empty"):
        list(sample_saved(loaded, **options, stop=[""]))
    text = "a miller had a cat."
    ours, _ = score_text(loaded.model, loaded.vocab, text)
    assert server_score(loaded.model, loaded.vocab, text) == {
        "chars": ours.chars, "total_log_prob": pytest.approx(ours.log_prob), "nats_per_char": pytest.approx(
            ours.nats_per_char), "bits_per_char": pytest.approx(ours.bits_per_char)}


def test_a_best_dir_being_written_by_a_live_run_is_left_alone(corpus: Path, tmp_path: Path) -> None:
    """best/ is written by its parent's run: while that run's lock is live, a reader must not clean its temp files."""
    run_dir = tmp_path / "run"
    fit(lm(corpus), MODEL, cfg(2), run_dir)
    stray = run_dir / "best" / ".model.pt.abc.tmp"  # a save in progress
    stray.write_bytes(b"half")
    writer = subprocess.Popen(["sleep", "30"])
    try:
        (run_dir / checkpoint.LOCK).write_text(json.dumps({"pid": writer.pid, "host": socket.gethostname()}))
        checkpoint.load(run_dir / "best")
        assert stray.exists()
    finally:
        writer.kill()
        writer.wait()
    os.unlink(run_dir / checkpoint.LOCK)
    checkpoint.load(run_dir / "best")  # no live writer: the interrupted save's leftovers are cleared
    assert not stray.exists()
