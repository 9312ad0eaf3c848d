"""Figures drawn with matplotlib's Agg backend from the JSONL logs, so any run can be re-plotted later."""

from __future__ import annotations

from pathlib import Path

import torch

from chargen.cells import TimeGate
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


def plot_confusion(matrix: list[list[float]], labels: list[str], out: Path, title: str = "") -> Path:
    """A row-normalised confusion matrix: rows the actual class, columns the guessed one."""
    plt = _pyplot()
    n = len(labels)
    size = max(5.0, 0.42 * n + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size), dpi=110)
    image = ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(labels, rotation=90)
    ax.set_yticklabels(labels)
    ax.set_xlabel("guessed")
    ax.set_ylabel("actual")
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            if value >= 0.005:
                ax.text(j, i, f"{value:.2f}"[1:] if value < 1 else "1", ha="center", va="center", fontsize=6,
                        color="white" if value > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(title or "confusion matrix")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


# -- comparisons of cells (chargen compare, chargen gradients) --------------------------------------


def _cell_colors(cells: list[str]) -> dict[str, object]:
    plt = _pyplot()
    palette = plt.get_cmap("tab10")
    return {cell: palette(i % 10) for i, cell in enumerate(cells)}


def _band(series: list[dict[float, float]]) -> tuple[list[float], list[float], list[float], list[float]]:
    """Steps present in every seed's curve, and the mean, min and max over seeds at each."""
    if not series:
        return [], [], [], []
    steps = sorted(set.intersection(*(set(s) for s in series)))
    mean = [sum(s[x] for s in series) / len(series) for x in steps]
    low = [min(s[x] for s in series) for x in steps]
    high = [max(s[x] for s in series) for x in steps]
    return steps, mean, low, high


def plot_compare(result, out: Path, title: str = "") -> Path:
    """A comparison's loss curves: train loss against step, validation loss against step, and train
    loss against training seconds; per cell the mean over seeds with a min-max band."""
    plt = _pyplot()
    colors = _cell_colors(list(result.cells))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), dpi=110)
    for cell in result.cells:
        runs = result.runs_of(cell)
        color = colors[cell]
        n = len(runs)
        train = [{p[0]: p[1] for p in r.train_curve} for r in runs if r.train_curve]
        steps, mean, low, high = _band(train)
        if steps:
            axes[0].plot(steps, mean, color=color, lw=1.3, label=f"{cell} (n={n})")
            axes[0].fill_between(steps, low, high, color=color, alpha=0.18, lw=0)
            clock = [{p[0]: p[2] for p in r.train_curve} for r in runs if r.train_curve]
            seconds = [sum(c[x] for c in clock) / len(clock) for x in steps]
            axes[2].plot(seconds, mean, color=color, lw=1.3, label=cell)
            axes[2].fill_between(seconds, low, high, color=color, alpha=0.18, lw=0)
        val = [{p[0]: p[1] for p in r.val_curve} for r in runs if r.val_curve]
        steps, mean, low, high = _band(val)
        if steps:
            axes[1].plot(steps, mean, "o-", color=color, lw=1.5, ms=2.5, label=cell)
            axes[1].fill_between(steps, low, high, color=color, alpha=0.18, lw=0)
    if result.threshold is not None:
        axes[1].axhline(result.threshold, color="grey", ls="--", lw=0.8, label=f"threshold {result.threshold:.3f}")
    for ax, (xlabel, ylabel, name) in zip(axes, [
        ("step", "train loss (nats)", "training loss"),
        ("step", "validation loss (nats)", "validation loss"),
        ("training seconds, steps only (mean over seeds)", "train loss (nats)", "training loss against wall time"),
    ]):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a run shorter than one logging window has no training curve
            ax.legend(fontsize=8)
    seeds = ", ".join(str(s) for s in result.seeds)
    fig.suptitle(title or f"chargen compare: task {result.task}, seeds {seeds} (mean, band = min-max over seeds)",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def plot_gradient_flow(result, out: Path, title: str = "") -> Path:
    """||dL/dh_t|| and ||dL/dx_t|| against t (log scale), the loss read at the last step, one line per cell."""
    plt = _pyplot()
    colors = _cell_colors(list(result.cells))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), dpi=110)
    for cell in result.cells:
        curve = result.curves[cell]
        for ax, values, per_seed in ((axes[0], curve.hidden, curve.hidden_per_seed),
                                     (axes[1], curve.inputs, curve.inputs_per_seed)):
            t = list(range(len(values)))
            ax.semilogy(t, [max(v, 1e-300) for v in values], color=colors[cell], lw=1.5, label=cell)
            if len(per_seed) > 1:
                low = [max(min(s), 1e-300) for s in zip(*per_seed)]
                high = [max(s) for s in zip(*per_seed)]
                ax.fill_between(t, low, high, color=colors[cell], alpha=0.15, lw=0)
    for ax, ylabel in ((axes[0], "||dL/dh_t||  (top layer)"), (axes[1], "||dL/dx_t||  (input embedding)")):
        ax.set_xlabel(f"time step t (loss at t = {result.length - 1})")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(title or f"gradient flow at init: T={result.length}, hidden {result.hidden_size}, "
                 f"{result.num_layers} layer(s), {result.source}, mean over {len(result.seeds)} seeds x "
                 f"{result.batch} sequences (band = min-max over seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


# -- the palindrome probe (chargen probe) ---------------------------------------------------------------


def plot_accuracy_vs_length(results: dict, out: Path, title: str = "") -> Path:
    """Held-out accuracy against palindrome length, one line per cell: the mean over seeds, a band of
    ± one standard deviation (clipped to [0, 1]) and each seed's run as a dot; chance and 90% marked.

    ``results`` is what ``chargen.experiments.probe.run_probe`` returns (or its JSON, read back).
    """
    plt = _pyplot()
    cells = list(results["cells"])
    palette = plt.get_cmap("tab10")
    colors = {cell: palette(i % 10) for i, cell in enumerate(cells)}
    settings = results.get("settings", {})
    fig, ax = plt.subplots(figsize=(7.5, 4.6), dpi=110)
    lengths_all = sorted(results["lengths"])
    spacing = min((b - a for a, b in zip(lengths_all, lengths_all[1:])), default=1)
    offsets = {cell: (i - (len(cells) - 1) / 2) * 0.04 * spacing for i, cell in enumerate(cells)}  # dots apart
    for cell in cells:
        rows = sorted((r for r in results["summary"] if r["cell"] == cell), key=lambda r: r["length"])
        if not rows:
            continue
        lengths = [r["length"] for r in rows]
        mean = [r["mean"] for r in rows]
        low = [max(0.0, r["mean"] - r["std"]) for r in rows]
        high = [min(1.0, r["mean"] + r["std"]) for r in rows]
        kept = results.get("longest_90", {}).get(cell)
        label = f"{cell} (>= 90% up to T = {kept})" if kept else f"{cell} (< 90% from the start)"
        ax.plot(lengths, mean, "o-", color=colors[cell], lw=1.8, ms=4, label=label)
        ax.fill_between(lengths, low, high, color=colors[cell], alpha=0.15, lw=0)
        runs = [r for r in results.get("runs", []) if r["cell"] == cell]
        ax.scatter([r["length"] + offsets[cell] for r in runs], [r["accuracy"] for r in runs],
                   color=colors[cell], s=9, alpha=0.45, lw=0)
    ax.axhline(settings.get("chance", 0.1), color="grey", ls=":", lw=1, label="chance (10%)")
    ax.axhline(settings.get("threshold", 0.9), color="grey", ls="--", lw=0.8, label="90%")
    ax.set_xlabel("palindrome length T (T - 1 digits in, the last predicted)")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0.0, 1.03)
    ax.set_xticks(results["lengths"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    steps = settings.get("steps", {})
    budget = f", at most {max(steps.values()):,} steps per run" if steps else ""
    ax.set_title(title or f"palindrome probe: mean over {len(results['seeds'])} seeds (band ± 1 std, dots: "
                          f"runs){budget}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


# -- the phased LSTM's time gate (chargen report) ------------------------------------------------------


def plot_time_gate(out: Path, *, period: float, shift: float, r_on: float, leak: float, periods: int = 3) -> Path:
    """The openness ``k_t`` of one unit of ``chargen.cells.TimeGate`` over ``periods`` periods, in training
    mode (leak on), with the period tau, the shift s and the open window r_on * tau marked."""
    plt = _pyplot()
    gate = TimeGate(1, r_on=r_on, leak=leak).train()
    with torch.no_grad():
        gate.period.fill_(period)
        gate.shift.fill_(shift)
        t = torch.linspace(0.0, shift + periods * period, 4000).unsqueeze(1)  # (N, 1)
        k = gate(t).squeeze(1)
    fig, ax = plt.subplots(figsize=(8, 3.4), dpi=110)
    ax.plot(t.squeeze(1).tolist(), k.tolist(), lw=1.4, color="tab:blue", label="time gate $k_t$ (training: leak on)")
    opens = [shift + i * period for i in range(periods)]
    for start in opens:
        ax.axvspan(start, start + r_on * period, color="tab:orange", alpha=0.2, lw=0)
    ax.annotate("", xy=(opens[1], 1.12), xytext=(opens[0], 1.12), arrowprops={"arrowstyle": "<->", "lw": 1})
    ax.text((opens[0] + opens[1]) / 2, 1.15, r"period $\tau$", ha="center", va="bottom", fontsize=9)
    ax.annotate("", xy=(shift, -0.12), xytext=(0, -0.12), arrowprops={"arrowstyle": "<->", "lw": 1})
    ax.text(shift / 2, -0.1, "shift $s$", ha="center", va="bottom", fontsize=9)
    ax.text(opens[2] + r_on * period, 0.55, r"open for $r_{on}\tau$", fontsize=9, color="tab:orange")
    ax.set_xlabel("time step t")
    ax.set_ylabel("openness $k_t$")
    ax.set_ylim(-0.2, 1.3)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(rf"phased LSTM time gate: $\tau$ = {period:g}, $s$ = {shift:g}, $r_{{on}}$ = {r_on:g}, "
                 rf"$\alpha$ = {leak:g}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def plot_gate_saturation(saturation: dict, text: str, out: Path, title: str = "") -> Path:
    """Heat map over a passage: per layer and sigmoid gate, the fraction of units left- (< 0.1) and right-saturated (> 0.9).

    ``saturation`` maps a gate name to an ``(L, 2, T)`` array (as ``chargen.inspect.Trace.saturation``).
    """
    import numpy as np

    plt = _pyplot()
    rows, labels = [], []
    for gate, values in saturation.items():
        arr = np.asarray(values)
        for layer in range(arr.shape[0]):
            for side, name in ((0, "< 0.1"), (1, "> 0.9")):
                rows.append(arr[layer, side])
                labels.append(f"layer {layer + 1} {gate} {name}")
    grid = np.stack(rows) if rows else np.zeros((1, len(text)))
    width = min(24.0, max(6.0, 0.12 * len(text) + 2.5))
    fig, ax = plt.subplots(figsize=(width, 0.32 * len(rows) + 1.6), dpi=110)
    image = ax.imshow(grid, aspect="auto", cmap="magma", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    if len(text) <= 160:  # a label per character stays readable only on a short passage
        ax.set_xticks(range(len(text)), ["↵" if ch == "\n" else ch for ch in text], fontsize=7, family="monospace")
    else:
        ax.set_xlabel("character position")
    ax.set_title(title or "gate saturation (fraction of units)")
    fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


# -- calibration (chargen evaluate on a classifier) -------------------------------------------------


def plot_reliability(curves: dict[str, list[dict[str, float]]], out: Path, title: str = "") -> Path:
    """Reliability diagram: accuracy against mean confidence per confidence bin, one line per model,
    with the bins' share of names as bars (of the first curve); the diagonal is perfect calibration."""
    plt = _pyplot()
    fig, (ax, axn) = plt.subplots(2, 1, figsize=(5.6, 6.4), dpi=110, sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfectly calibrated")
    for label, bins in curves.items():
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", ms=4, lw=1.5, label=label)
    first = next(iter(curves.values()), [])
    total = sum(b["count"] for b in first) or 1
    axn.bar([(b["low"] + b["high"]) / 2 for b in first], [b["count"] / total for b in first],
            width=[b["high"] - b["low"] for b in first], color="tab:blue", alpha=0.5, edgecolor="white")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title or "reliability")
    axn.set_xlabel("confidence of the top guess")
    axn.set_ylabel("share of names")
    axn.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
