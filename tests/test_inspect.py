"""chargen.inspect: recorded states equal the model's, top guesses equal its softmax, features, unit finding, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from chargen import checkpoint
from chargen.cells import CELLS
from chargen.checkpoint import Loaded
from chargen.cli import app
from chargen.errors import UsageError
from chargen.inspect import (
    WHATS,
    Trace,
    correlations,
    find_units,
    html_page,
    inside_parens,
    inside_quotes,
    line_position,
    score_text,
    trace,
)
from chargen.models import CharLM, ModelConfig
from chargen.vocab import Vocab

runner = CliRunner()
TEXT = "He said, “Go (now) home.”\nShe went ‘quickly’ away."
CELL_OPTIONS = {"momentum-lstm": {"mu": 0.5, "s": 0.7}, "momentum-rnn": {"mu": 0.5, "s": 0.7},
                "momentum-gru": {"mu": 0.5, "s": 0.7}}


def small_lm(cell: str, seed: int = 0, layers: int = 2) -> Loaded:
    """A random two-layer LM over TEXT's characters, wrapped like a loaded checkpoint."""
    torch.manual_seed(seed)
    vocab = Vocab.from_text(TEXT + "abcdefghijklmnopqrstuvwxyz<>&")
    cfg = ModelConfig(vocab_size=len(vocab), embed_dim=8, cell=cell, hidden_size=12, num_layers=layers,
                      engine=CELLS[cell].has_fused and "fused" or "loop", cell_options=CELL_OPTIONS.get(cell, {}))
    model = CharLM(cfg).eval()
    config = {"task": "lm", "model": cfg.to_dict(), "vocab": vocab.to_json(), "task_config": {"options": {"seq_len": 7}}}
    return Loaded(Path(f"/nonexistent/{cell}"), config, model, vocab)


@pytest.mark.parametrize("cell", list(CELLS))
def test_trace_states_equal_the_models(cell: str) -> None:
    loaded = small_lm(cell)
    model, vocab = loaded.model, loaded.vocab
    tr = trace(model, vocab, TEXT)
    ids = torch.tensor(vocab.encode(TEXT)).view(-1, 1)
    with torch.no_grad():
        outputs, state = model.encoder(ids)  # on the model's default engine (fused where it exists)
        logits, _, _ = model(ids)
    T, L = len(TEXT), 2
    assert tr.h.shape == (L, T, 12)
    torch.testing.assert_close(tr.h[-1], outputs[:, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tr.h[:, -1], state[0][:, 0], atol=1e-5, rtol=1e-5)  # every layer's last h
    torch.testing.assert_close(tr.logits, logits[:, 0], atol=1e-5, rtol=1e-5)
    readouts = CELLS[cell].readouts  # what the cell itself says it shows
    assert set(tr.available()) == {"h", *readouts} and set(readouts) <= set(WHATS)
    if "c" in model.encoder.core.state_names:
        torch.testing.assert_close(tr.c[:, -1], state[1][:, 0], atol=1e-5, rtol=1e-5)
    else:
        assert tr.c is None
    for gate in CELLS[cell].sigmoid_gates:
        assert bool(((tr.gates[gate] > 0) & (tr.gates[gate] < 1)).all()), gate
    assert set(tr.saturation()) == set(CELLS[cell].sigmoid_gates)


@pytest.mark.parametrize("cell", ["lstm", "momentum-lstm"])
def test_recorded_gates_rebuild_the_lstm_update(cell: str) -> None:
    tr = trace(small_lm(cell).model, small_lm(cell).vocab, TEXT)
    i, f, g, o = (tr.gates[k] for k in "ifgo")  # (L, T, H)
    c_prev = torch.cat([torch.zeros_like(tr.c[:, :1]), tr.c[:, :-1]], dim=1)
    torch.testing.assert_close(tr.c, f * c_prev + i * g, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tr.h, o * torch.tanh(tr.c), atol=1e-5, rtol=1e-5)
    for gate in (i, f, o):
        assert bool(((gate > 0) & (gate < 1)).all())


def previous(values: torch.Tensor) -> torch.Tensor:
    """``(L, T, H)`` values one step back, zeros (the initial state) at the first step."""
    return torch.cat([torch.zeros_like(values[:, :1]), values[:, :-1]], dim=1)


@pytest.mark.parametrize("cell", ["gru", "momentum-gru"])
def test_recorded_gates_rebuild_the_gru_update(cell: str) -> None:
    loaded = small_lm(cell)
    tr = trace(loaded.model, loaded.vocab, TEXT)
    z, n = tr.gates["z"], tr.gates["n"]
    torch.testing.assert_close(tr.h, (1 - z) * n + z * previous(tr.h), atol=1e-5, rtol=1e-5)
    assert tr.available() == ("h", "r", "z", "n") and bool((n.abs() < 1).all())


def test_recorded_time_gate_rebuilds_the_phased_update() -> None:
    loaded = small_lm("phased-lstm")
    loaded.model.encoder.core.layers[0].gate.period.data.fill_(5.0)  # a gate that opens within the text
    tr = trace(loaded.model, loaded.vocab, TEXT)
    i, f, g, o, k = (tr.gates[name] for name in "ifgok")
    c_prev, h_prev = previous(tr.c), previous(tr.h)
    # c = k c~ + (1 - k) c_prev with the LSTM's candidate c~ = f c_prev + i g; h likewise from h~ = o tanh(c~)
    candidate = f * c_prev + i * g
    torch.testing.assert_close(tr.c, c_prev + k * (candidate - c_prev), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tr.h, h_prev + k * (o * torch.tanh(candidate) - h_prev), atol=1e-5, rtol=1e-5)
    assert bool((k[0] > 0).any()) and bool((k[0] == 0).any())  # open at some steps, shut (eval: no leak) at others


def test_top_guesses_are_the_softmax_of_the_logits() -> None:
    loaded = small_lm("lstm")
    tr = trace(loaded.model, loaded.vocab, TEXT)
    probs = torch.softmax(tr.logits.double(), dim=-1)
    top = tr.top(5)
    assert len(top) == len(TEXT)
    for t, row in enumerate(top):
        expected = probs[t].topk(5)
        assert [loaded.vocab.id(ch) for ch, _ in row] == expected.indices.tolist()
        assert [p for _, p in row] == pytest.approx(expected.values.tolist(), abs=1e-6)
    assert sum(p for _, p in tr.top(len(loaded.vocab))[0]) == pytest.approx(1.0, abs=1e-5)


def test_bad_unit_layer_and_what_are_usage_errors() -> None:
    loaded = small_lm("rnn")
    tr = trace(loaded.model, loaded.vocab, "abc")
    with pytest.raises(UsageError, match=r"unit must be in \[0, 11\]"):
        tr.activation(12)
    with pytest.raises(UsageError, match=r"layer must be in \[1, 2\]"):
        tr.activation(0, layer=3)
    with pytest.raises(UsageError, match="has no 'c'"):
        tr.activation(0, what="c")
    with pytest.raises(UsageError, match="text is empty"):
        trace(loaded.model, loaded.vocab, "")
    with pytest.raises(Exception, match="outside the model's vocabulary"):
        trace(loaded.model, loaded.vocab, "ab#")


def test_features() -> None:
    text = 'a ‘b don’t’ c “d” "e" (f (g) h) i\nxy'
    marks = lambda values: "".join("^" if v else "." for v in values)  # noqa: E731
    assert marks(inside_quotes(text)) == ".." + "^" * 9 + "..." + "^^^" + "." + "^^^" + "." * 15
    assert marks(inside_parens(text)) == "." * 22 + "^" * 9 + "." * 5
    assert line_position("ab\ncd") == [0.0, 1.0, 2.0, 0.0, 1.0]


def test_find_units_ranks_the_unit_that_is_the_feature_first() -> None:
    text = "xx “abc” yy “de” z"
    quote = torch.tensor(inside_quotes(text))
    h = torch.randn(2, len(text), 5, generator=torch.Generator().manual_seed(0))
    h[1, :, 3] = 0.1 - 0.5 * quote  # a unit that is low inside quotes: r = -1
    tr = Trace(text=text, vocab=Vocab.from_text(text), h=h, logits=torch.zeros(len(text), 3))
    best = find_units(tr, "quote", whats=("h",), top=3)
    assert (best[0]["layer"], best[0]["unit"], best[0]["what"]) == (2, 3, "h")
    assert best[0]["r"] == pytest.approx(-1.0)
    assert abs(best[1]["r"]) <= abs(best[0]["r"])
    assert correlations(torch.ones(4, 1), torch.arange(4.0)).item() == 0.0  # a constant unit
    with pytest.raises(UsageError, match="constant on this text"):
        find_units(tr, "paren")
    with pytest.raises(UsageError, match="unknown feature"):
        find_units(tr, "nope")


def test_score_text_chunked_equals_whole_and_the_models_log_probs() -> None:
    loaded = small_lm("momentum-lstm")
    model, vocab = loaded.model, loaded.vocab
    whole = score_text(model, vocab, TEXT, chunk_size=10_000)
    for chunk in (1, 7, 13):
        assert score_text(model, vocab, TEXT, chunk_size=chunk)["total_log_prob"] == pytest.approx(
            whole["total_log_prob"], abs=1e-4)
    ids = torch.tensor(vocab.encode(TEXT))
    with torch.no_grad():
        logits, _, _ = model(ids[:-1].view(-1, 1))
    expected = torch.log_softmax(logits[:, 0].double(), -1).gather(1, ids[1:].view(-1, 1)).sum().item()
    assert whole["total_log_prob"] == pytest.approx(expected, abs=1e-4)
    assert whole["chars"] == len(TEXT) - 1
    assert whole["bits_per_char"] == pytest.approx(whole["nats_per_char"] / math.log(2))
    with pytest.raises(UsageError):
        score_text(model, vocab, "a")


def test_html_page_colours_every_character_and_carries_the_top_guesses() -> None:
    loaded = small_lm("lstm")
    tr = trace(loaded.model, loaded.vocab, "ab <c>")
    page = html_page(tr, unit=2, what="c", layer=1, top=3)
    assert page.count("<span style=\"background:#") == len("ab <c>") + 3  # + the legend's three
    assert "&lt;" in page and "<c>" not in page  # the text is escaped
    assert "next:" in page and "http" not in page  # self-contained: nothing fetched


@pytest.mark.corpus
def test_the_shipped_grimm_model_has_a_quote_cell(corpus_mirror: Path, one_torch_thread: None) -> None:
    from chargen.inspect import validation_passage

    loaded = checkpoint.load("grimm")
    passage = validation_passage(loaded, 3000)
    best = find_units(trace(loaded.model, loaded.vocab, passage), "quote", top=1)[0]
    assert abs(best["r"]) > 0.8, best  # measured: layer 2, c, unit 162, r = +0.891


def test_cli_inspect_json_html_heatmap_and_errors(tmp_path: Path, one_torch_thread: None) -> None:
    text = "He said, ‘Go.’"
    result = runner.invoke(app, ["inspect", "--text", text, "--unit", "162", "--layer", "2", "--what", "c",
                                 "--json", "--html", str(tmp_path / "p.html"), "--heatmap", str(tmp_path / "g.png")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    loaded = checkpoint.load("grimm")
    tr = trace(loaded.model, loaded.vocab, text)
    assert data["activation"]["values"] == pytest.approx(tr.activation(162, "c", 2).tolist(), abs=1e-6)
    assert [[g["char"] for g in row] for row in data["top"]] == [[c for c, _ in row] for row in tr.top(5)]
    assert (tmp_path / "p.html").read_text(encoding="utf-8").startswith("<!doctype html>")
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    table = runner.invoke(app, ["inspect", "--text", "ab", "--top", "2"])
    assert table.exit_code == 0 and "'a'" in table.stdout
    bad = runner.invoke(app, ["inspect", "--text", "ab", "--html", str(tmp_path / "x.html")])
    assert bad.exit_code == 2 and "give --unit" in bad.stderr
    assert runner.invoke(app, ["inspect", "--text", "ab", "--unit", "999"]).exit_code == 2
    assert runner.invoke(app, ["inspect", "--text", "a#b"]).exit_code == 1
