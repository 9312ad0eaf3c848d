"""chargen export: the exported step gives chargen's next-character distribution and state (TorchScript, ONNX)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from chargen import checkpoint
from chargen.cells import CELLS
from chargen.cli import app
from chargen.errors import UsageError
from chargen.export import export, load_runner, max_difference
from chargen.sample import generate

from chargen.checkpoint import Loaded
from chargen.models import CharLM, ModelConfig
from chargen.vocab import Vocab

runner = CliRunner()
TEXT = "He said, “Go (now) home.”\nShe went ‘quickly’ away."
CELL_OPTIONS = {"momentum-lstm": {"mu": 0.5, "s": 0.7}, "momentum-rnn": {"mu": 0.5, "s": 0.7},
                "momentum-gru": {"mu": 0.5, "s": 0.7}}


def small_lm(cell: str, seed: int = 0) -> Loaded:
    """A random two-layer LM over TEXT's characters, wrapped like a loaded checkpoint."""
    torch.manual_seed(seed)
    vocab = Vocab.from_text(TEXT + "abcdefghijklmnopqrstuvwxyz")
    cfg = ModelConfig(vocab_size=len(vocab), embed_dim=8, cell=cell, hidden_size=12, num_layers=2,
                      engine="fused" if CELLS[cell].has_fused else "loop", cell_options=CELL_OPTIONS.get(cell, {}))
    config = {"task": "lm", "model": cfg.to_dict(), "vocab": vocab.to_json(), "task_config": {"options": {"seq_len": 7}}}
    return Loaded(Path(f"/nonexistent/{cell}"), config, CharLM(cfg).eval(), vocab)


def step_through(run, loaded, text: str, batch: int = 1) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Logits (T, batch, V) and probs of the exported step run over ``text`` with its state carried."""
    core = loaded.model.encoder.core
    state = [s.numpy() for s in core.init_state(batch, device=torch.device("cpu"), dtype=torch.float32)]
    logits, probs = [], []
    for i in loaded.vocab.encode(text):
        lg, pr, state = run(np.full(batch, i, dtype=np.int64), state)
        logits.append(lg)
        probs.append(pr)
    return np.stack(logits), np.stack(probs), state


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
@pytest.mark.parametrize("cell", list(CELLS))
def test_torchscript_step_equals_the_model(cell: str, tmp_path: Path) -> None:
    loaded = small_lm(cell)
    out = export(loaded, "torchscript", tmp_path / "m.pt")
    ids = torch.tensor(loaded.vocab.encode(TEXT)).view(-1, 1)
    with torch.no_grad():
        reference, _, state = loaded.model(ids.expand(-1, 3))  # (T, 3, V): a batch of three
    logits, probs, new_state = step_through(load_runner(out, "torchscript"), loaded, TEXT, batch=3)
    np.testing.assert_allclose(logits, reference.numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(probs, torch.softmax(reference, -1).numpy(), atol=1e-6, rtol=1e-5)
    for got, want in zip(new_state, state):
        np.testing.assert_allclose(got, want.numpy(), atol=1e-5, rtol=1e-5)
    extra = {"chargen.json": ""}
    torch.jit.load(str(out), _extra_files=extra)
    meta = json.loads(extra["chargen.json"])
    assert meta["vocab"] == loaded.vocab.to_json() and meta["inputs"][0] == "ids"
    assert meta["inputs"][1:] == list(loaded.model.encoder.core.state_names)


def test_greedy_text_from_the_export_equals_chargens(tmp_path: Path) -> None:
    loaded = checkpoint.load("grimm")
    run = load_runner(export(loaded, "torchscript", tmp_path / "g.pt"), "torchscript")
    prime = "The king"
    logits, _, state = step_through(run, loaded, prime)
    last, text = logits[-1], []
    for _ in range(60):
        nxt = int(last[0].argmax())
        text.append(loaded.vocab.tokens[nxt])
        lg, _, state = run(np.array([nxt]), state)
        last = lg
    expected = "".join(generate(loaded.model, loaded.vocab, prime=prime, length=60, temperature=0, seed=0))
    assert "".join(text) == expected


def test_onnx_step_equals_the_model(tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="ONNX export needs the export extra: pip install -e '.[export]'")
    pytest.importorskip("onnxruntime", reason="running ONNX needs the export extra: pip install -e '.[export]'")
    for cell in ("lstm", "momentum-lstm", "rnn", "gru", "momentum-gru"):
        loaded = small_lm(cell)
        out = export(loaded, "onnx", tmp_path / f"{cell}.onnx")
        ids = torch.tensor(loaded.vocab.encode(TEXT)).view(-1, 1)
        with torch.no_grad():
            reference, _, state = loaded.model(ids.expand(-1, 2))
        logits, probs, new_state = step_through(load_runner(out, "onnx"), loaded, TEXT, batch=2)
        np.testing.assert_allclose(logits, reference.numpy(), atol=1e-5, rtol=1e-5)
        for got, want in zip(new_state, state):
            np.testing.assert_allclose(got, want.numpy(), atol=1e-5, rtol=1e-5)
    import onnxruntime

    meta = onnxruntime.InferenceSession(str(out)).get_modelmeta().custom_metadata_map
    assert json.loads(meta["chargen"])["vocab"] == loaded.vocab.to_json()


def test_export_refuses_what_it_cannot_export(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="format must be"):
        export(small_lm("lstm"), "tflite", tmp_path / "x")
    with pytest.raises(UsageError, match="text language model"):
        export(checkpoint.load("surnames"), "torchscript", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_cli_export(tmp_path: Path) -> None:
    out = tmp_path / "g.pt"
    result = runner.invoke(app, ["export", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["outputs"] == ["logits", "probs", "new_h", "new_c"] and info["max_logit_difference"] < 1e-4
    assert max_difference(checkpoint.load("grimm"), out, "torchscript", "Hansel and Gretel") < 1e-4
    assert runner.invoke(app, ["export", "--model", "surnames", "--out", str(tmp_path / "s.pt")]).exit_code == 1
    bad = runner.invoke(app, ["export", "--format", "tflite", "--out", str(tmp_path / "t")])
    assert bad.exit_code == 2 and "format must be one of torchscript, onnx" in bad.stderr
