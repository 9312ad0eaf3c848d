"""Figures drawn with matplotlib's Agg backend from the JSONL logs, so any run can be re-plotted later."""

from __future__ import annotations

from pathlib import Path

from chargen.tracking import read_jsonl


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def plot_loss(metrics_path: Path, out: Path, title: str = "") -> Path:
    """Training and validation loss against step (nats per unit, as logged)."""
    plt = _pyplot()
    records = list(read_jsonl(metrics_path))
    train = [(r["step"], r["loss"]) for r in records if r.get("split") == "train"]
    val = [(r["step"], r["val_loss"]) for r in records if r.get("split") == "val"]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    if train:
        ax.plot(*zip(*train), label="train", lw=1, alpha=0.8)
    if val:
        ax.plot(*zip(*val), "o-", label="validation", lw=1.5, ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats)")
    ax.set_title(title or metrics_path.parent.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
