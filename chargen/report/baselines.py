"""The report's "what loss is good" section: the baselines study's table per corpus, with intervals and published anchors.

It reads ``results/baselines/summary.json`` (``chargen study baselines`` or ``chargen report --only
baselines`` write it); until a part has run, the section names the command that runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from chargen.experiments import baselines
from chargen.plots import _pyplot
from chargen.report.context import Context
from chargen.report.numbers import Numbers
from chargen.tracking import read_json

# Published numbers on the same corpora, with what makes each like or unlike ours (never measured here).
ANCHORS: dict[str, list[tuple[str, float, str]]] = {
    "tinyshakespeare": [
        ("nanoGPT, 10.7M-parameter GPT on an A100", 1.47, "the same last-10% split: like for like, at far more compute"),
        ("nanoGPT's CPU recipe, about 3 minutes", 1.88, "the same split, a small GPT, more threads than one"),
        ("char-rnn, 26 epochs", 1.39, "another split and hours of GPU training: not like for like"),
    ],
    "firstnames": [
        ("makemore's transformer, names.txt with the end token", 1.92, "its own split of the same names: close, not equal"),
    ],
}


def corpus_points(summary: dict[str, Any], corpus: str) -> list[tuple[int, float, float, float, float]]:
    """(family index, budget, mean, low, high) of every measured cell of ``corpus``: what its figure draws."""
    points = []
    for m in baselines.MINUTES:
        found = summary.get("parts", {}).get(baselines.part_name(corpus, m)) or {}
        for row in found.get("rows", []):
            loss = row.get("val_loss") or {}
            if loss.get("n") and row.get("family") in baselines.FAMILIES:
                points.append((baselines.FAMILIES.index(row["family"]), m, loss["mean"], *loss["mean_ci"]))
    return points


def plot_corpus(summary: dict[str, Any], corpus: str, out: Path) -> Path | None:
    """Validation nats/char per family at each budget for ``corpus``: the mean over seeds with its 95% bootstrap
    interval as an error bar, the published anchors as dashed lines. None: nothing to draw."""
    points = corpus_points(summary, corpus)
    if not points:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    for k, m in enumerate(baselines.MINUTES):
        mine = [p for p in points if p[1] == m]
        xs = [p[0] + (k - 0.5) * 0.25 for p in mine]
        ax.errorbar(xs, [p[2] for p in mine], yerr=[[p[2] - p[3] for p in mine], [p[4] - p[2] for p in mine]],
                    fmt="o", capsize=3, label=f"{m:g} CPU-minute(s)")
    for label, value, _ in ANCHORS.get(corpus, []):
        ax.axhline(value, ls="--", lw=0.8, color="grey")
        ax.annotate(label, (len(baselines.FAMILIES) - 0.6, value), fontsize=7, ha="right", va="bottom", color="grey")
    ax.set_xticks(range(len(baselines.FAMILIES)), baselines.FAMILIES)
    ax.set_xlim(-0.5, len(baselines.FAMILIES) - 0.5)
    ax.set_ylabel("validation nats/char (mean, 95% interval)")
    ax.set_title(f"{corpus}: families at equal CPU budgets (one thread)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def baselines_section(results: Path, n: Numbers, figure: Callable[[Path, str], str] | None = None, *,
                      draw: bool = True) -> str:
    """``## What loss is good: baselines at equal compute`` from the saved summary (or the commands to measure it)."""
    head = ("## What loss is good: baselines at equal compute\n\n"
            "Every family is trained (or counted) on the same corpus for the same CPU time of its own process, one "
            "thread, and scored in nats per character on the same validation characters (the last tenth). Each cell "
            f"is the mean over seeds with its {n.pct(0.95, 0)} bootstrap interval; the interval of one seed is that "
            "seed alone.\n")
    path = Path(results) / "summary.json"
    if not path.exists():
        return head + ("\n_Not measured yet: run `chargen study baselines` (hours; resumable, in parts: "
                       "`chargen study --list`), or `chargen report --only baselines`._\n")
    summary = read_json(path, "the baselines study's summary")
    parts: dict[str, Any] = summary.get("parts", {})
    lines = [head]
    for corpus in baselines.CORPORA:
        budgets = [(m, parts.get(baselines.part_name(corpus, m))) for m in baselines.MINUTES]
        if not any(found for _, found in budgets):
            lines.append(f"\n### {corpus}\n\n_Not measured yet: `chargen study baselines --only "
                         f"{baselines.part_name(corpus, baselines.MINUTES[0])}`._\n")
            continue
        lines.append(f"\n### {corpus}\n\n| family | " + " | ".join(f"{n.int(m)} CPU-min: val nats/char" for m, _ in budgets)
                     + " | parameters | chars/s (1 thread) |\n|---|" + "---:|" * (len(budgets) + 2) + "\n")
        for family in baselines.FAMILIES:
            cells, params, speed = [], "-", "-"
            for _, found in budgets:
                row = next((r for r in (found or {}).get("rows", []) if r.get("family") == family), None)
                loss = (row or {}).get("val_loss") or {}
                if not loss.get("n"):
                    cells.append("-")
                    continue
                low, high = loss["mean_ci"]
                cells.append(f"{n(loss['mean'])} [{n(low)}, {n(high)}] (n = {n.int(loss['n'])})")
                if (row.get("parameters") or {}).get("n"):
                    params = n.int(row["parameters"]["mean"])
                if (row.get("chars_per_second") or {}).get("n"):
                    speed = n.int(row["chars_per_second"]["mean"])
            if any(c != "-" for c in cells):
                lines.append(f"| {family} | " + " | ".join(cells) + f" | {params} | {speed} |\n")
        incomplete = [name for m, found in budgets if found and not found.get("complete")
                      for name in [baselines.part_name(corpus, m)]]
        drawn: Path | None = None
        if figure is not None and corpus_points(summary, corpus):  # draw=False: read only, the figure is on disk
            drawn = plot_corpus(summary, corpus, Path(results) / f"{corpus}.png") if draw else Path(results) / f"{corpus}.png"
        if drawn is not None:
            lines.append("\n" + figure(drawn, f"baselines-{corpus}.png") + "\n")
        if incomplete:
            lines.append(f"\nStill running: {', '.join(incomplete)} (the table shows the seeds finished so far).\n")
        for label, value, note in ANCHORS.get(corpus, []):
            lines.append(f"\nPublished anchor (not measured here): {n.quote(label)}, {n(value, '.2f')} nats/char; "
                         f"{n.quote(note)}.\n")
    notes = summary.get("notes") or []
    if notes:
        lines.append("\nLeft out of this checkout's grid: " + n.quote("; ".join(notes)) + ".\n")
    return "".join(lines)


def baselines_report_section(ctx: Context) -> str:
    """The section in the report, from ``results/baselines``."""
    return baselines_section(ctx.results / "baselines", ctx.numbers, ctx.figure, draw=not ctx.dry).rstrip("\n")


__all__ = ["ANCHORS", "baselines_report_section", "baselines_section"]
