"""The benchmarks' own reference models: the MomentumRNN paper's code style gives chargen's cells' outputs."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest
import torch

from chargen.core import Recurrent
from chargen.paths import PROJECT_ROOT


def engines() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_engines", PROJECT_ROOT / "benchmarks" / "engines.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", ["momentum-rnn", "momentum-lstm"])
@pytest.mark.parametrize("layers, input_size", [(2, 5), (1, 1)])  # the LM's stack; pixel MNIST's one pixel per step
def test_paper_style_momentum_cells_equal_chargen_cells(kind: str, layers: int, input_size: int) -> None:
    bench = engines()
    assert bench.check_paper_equals_chargen(kind, input_size, 8, layers, mu=0.6, s=0.6) < 1e-5
    # and the check can fail: a different step size is caught
    torch.manual_seed(0)
    core = Recurrent(kind, input_size, 8, layers, mu=0.6, s=0.6)
    paper = bench.PaperMomentumStack(input_size, 8, layers, kind == "momentum-lstm", 0.6, 0.5).copy_from(core)
    x = torch.randn(10, 1, input_size)  # batch 1: no squeeze() surprises
    with torch.no_grad():
        assert not torch.allclose(paper(x, None)[0], core(x)[0], atol=1e-4)


def test_the_gru_rows_run_and_print_their_ratio(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                one_torch_thread: None) -> None:
    """A tiny run of the engines benchmark's GRU rows (the measurement itself is for a quiet machine)."""
    bench = engines()
    rows = ["nn.GRU", "gru fused", "gru loop", "momentum-gru fused"]
    monkeypatch.setattr("sys.argv", ["engines.py", "--threads", "1", "--hidden", "8", "--embed", "4", "--seq-len", "3",
                                     "--batch", "2", "--steps", "1", "--repeats", "1", "--warmup", "0", "--only", *rows])
    bench.main()
    out = capsys.readouterr().out
    assert all(f"\n{row:<22}" in out for row in rows)
    assert "gru fused / nn.GRU" in out and "target >= 0.9" in out
