"""The report's "which knob to use" section: per corpus the sampling study's table, frontier, pick and the papers.

It reads ``results/sampling/summary.json`` (``chargen study sampling`` or ``chargen report --only
sampling`` write it); until a corpus has run, the section names the command that runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from chargen.experiments import sampling
from chargen.plots import _pyplot
from chargen.report.context import Context
from chargen.report.numbers import Numbers
from chargen.tracking import read_json


def plot_frontier(found: Mapping[str, Any], corpus: str, diversity: str, out: Path) -> Path | None:
    """Grader NLL against diversity, one curve per sampler (its settings in order, each with both 95% intervals),
    the reference as a star and the frontier as a dashed line. None: nothing to draw."""
    rows = [r for r in found.get("rows", []) if r["nll"].get("n") and r[diversity].get("n")]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    reference = next((r for r in rows if (r["sampler"], r["value"]) == sampling.REFERENCE), None)
    for sampler in dict.fromkeys(r["sampler"] for r in rows):
        mine = sorted((r for r in rows if r["sampler"] == sampler), key=lambda r: r["value"])
        if reference is not None and reference not in mine:  # every curve leaves from the reference (sampler off)
            mine = [reference, *mine]
        xs, ys = [r[diversity]["mean"] for r in mine], [r["nll"]["mean"] for r in mine]
        xerr = [[x - r[diversity]["ci"][0] for x, r in zip(xs, mine)],
                [r[diversity]["ci"][1] - x for x, r in zip(xs, mine)]]
        yerr = [[y - r["nll"]["ci"][0] for y, r in zip(ys, mine)], [r["nll"]["ci"][1] - y for y, r in zip(ys, mine)]]
        ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt="o-", ms=3, lw=1, capsize=2, label=sampler)
    edge = sorted((r for r in rows if r["label"] in set(found.get("frontier", []))), key=lambda r: r[diversity]["mean"])
    if edge:
        ax.plot([r[diversity]["mean"] for r in edge], [r["nll"]["mean"] for r in edge], "k--", lw=0.8, label="frontier")
    if reference is not None:
        ax.plot([reference[diversity]["mean"]], [reference["nll"]["mean"]], "k*", ms=12, label="temperature 1.0")
    ax.set_xlabel(f"diversity: distinct word {diversity[-1]}-grams per seed (higher: more diverse)")
    ax.set_ylabel("quality: grader nats/char (lower: better)")
    ax.set_title(f"{corpus}: each sampler's curve from plain sampling")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def _cell(n: Numbers, stat: Mapping[str, Any], key: str = "mean", spec: str = ".3f") -> str:
    if not stat.get("n") or stat.get(key) is None:
        return "-"
    low, high = stat["ci"]
    return f"{n(stat[key], spec)} [{n(low, spec)}, {n(high, spec)}]"


def table(rows: list[Mapping[str, Any]], edge: set[str], chosen: str | None, n: Numbers) -> str:
    lines = [f"| setting | grader nats/char | distinct {n.int(2)}-grams | distinct {n.int(3)}-grams | repetition "
             "| loop rate "
             "| copy share | frontier |\n|---|---:|---:|---:|---:|---:|---:|:---:|\n"]
    for r in rows:
        loops = r["loop_rate"]
        loop = (f"{n.pct(loops['rate'])} [{n.pct(loops['ci'][0])}, {n.pct(loops['ci'][1])}]"
                if loops.get("n") else "-")
        mark = "**chosen**" if r["label"] == chosen else "yes" if r["label"] in edge else ""
        lines.append(f"| {n.quote(r['label'])} | {_cell(n, r['nll'])} | {_cell(n, r['distinct2'])} | "
                     f"{_cell(n, r['distinct3'])} | {_cell(n, r['repetition'])} | {loop} | "
                     f"{_cell(n, r['copy_share'])} | {mark} |\n")
    return "".join(lines)


def _by_label(rows: list[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {r["label"]: r for r in rows}


def papers(found: Mapping[str, Any], n: Numbers) -> str:
    """What the tables say about the two papers' claims for token models (only from the numbers here)."""
    rec = found.get("recommendation") or {}
    rows = _by_label(found.get("rows", []))
    best = {s: rows[label] for s, label in (rec.get("best_per_sampler") or {}).items() if label in rows}
    said = []
    minp, topp = best.get("min_p"), best.get("top_p")
    if minp and topp:
        better = minp["nll"]["mean"] < topp["nll"]["mean"]
        apart = minp["nll"]["ci"][1] < topp["nll"]["ci"][0] or topp["nll"]["ci"][1] < minp["nll"]["ci"][0]
        said.append(
            f"Nguyen et al. ({n(2024, 'd')}) report that min-p keeps more quality than top-p at the same diversity for "
            f"token models, most of all above temperature {n(1.0, '.1f')} (this grid holds temperature at "
            f"{n(1.0, '.1f')}). Here, within the diversity floor, min-p's best setting ({n.quote(minp['label'])}) "
            "scores "
            f"{n(minp['nll']['mean'])} nats/char under the grader and top-p's ({n.quote(topp['label'])}) "
            f"{n(topp['nll']['mean'])}: " + ("min-p is better" if better else "top-p is as good or better")
            + (", with intervals apart" if apart else ", but the intervals overlap") + "; this "
            + ("agrees with" if better and apart else "does not confirm") + " the paper at character level.")
    elif "min_p" in {r["sampler"] for r in rows.values()}:
        said.append("Min-p or top-p has no setting within the diversity floor, so the min-p paper's comparison "
                    "cannot be made here.")
    typical, reference = best.get("typical"), rows.get(rec.get("reference", ""))
    if typical and reference:
        fewer = typical["repetition"]["mean"] < reference["repetition"]["mean"]
        said.append(
            f"Meister et al. ({n(2023, 'd')}) report that locally typical sampling avoids degenerate repetition while "
            f"keeping quality. Here typical's best setting within the floor ({n.quote(typical['label'])}) repeats "
            f"{n(typical['repetition']['mean'])} of its word {n.int(3)}-grams and loops in "
            f"{n.pct(typical['loop_rate']['rate'])} of samples, against {n(reference['repetition']['mean'])} and "
            f"{n.pct(reference['loop_rate']['rate'])} at temperature {n(1.0, '.1f')}, at {n(typical['nll']['mean'])} "
            f"against {n(reference['nll']['mean'])} nats/char: "
            + ("less repetition" if fewer else "no less repetition") + " than plain sampling.")
    return " ".join(said)


def sampling_section(results: Path, n: Numbers, figure: Callable[[Path, str], str] | None = None) -> str:
    """``## Which knob to use: a sampling study`` from the saved summary (or the commands to measure it)."""
    head = ("## Which knob to use: a sampling study\n\n"
            f"Each sampler's settings are compared with plain sampling at temperature {n(1.0, '.1f')} on two axes. "
            "Quality is the nats/char of the samples under a grader: a second, smaller model of the same corpus "
            "trained with another seed (never the sampling model grading itself). Diversity is the ratio of distinct "
            f"word {n.int(2)}- and {n.int(3)}-grams over all samples of a seed. Repetition is the share of a "
            f"sample's word {n.int(3)}-grams seen earlier in it. A sample loops when its last characters hold one "
            "string several times over, and the copy share is the share of characters inside long copies from the "
            f"training text. Intervals are {n.pct(0.95, 0)}: bootstrap over samples (seeds pooled) or over seeds "
            "(distinct n-grams), Wilson for the loop rate.\n")
    path = Path(results) / "summary.json"
    if not path.exists():
        return head + ("\n_Not measured yet: run `chargen study sampling` (resumable, in parts: "
                       "`chargen study sampling --list`), or `chargen report --only sampling`._\n")
    summary = read_json(path, "the sampling study's summary")
    loop = summary.get("loop") or {}
    lines = [head, f"\nA loop: a string of at least {n.int(loop.get('span', 0))} characters at least "
                   f"{n.int(loop.get('times', 0))} times without overlap in the last {n.int(loop.get('window', 0))}. "
                   f"A long copy: at least {n.int(summary.get('copy_span', 0))} characters. The recommendation's rule: "
                   f"{n.quote(summary.get('rule', ''))}.\n"]
    corpora: dict[str, Any] = summary.get("corpora", {})
    for corpus in [*sampling.CORPORA, *(c for c in corpora if c not in sampling.CORPORA)]:
        found = corpora.get(corpus)
        if not found:
            first = "" if corpus in sampling.SHIPPED else f"--only {corpus}-sampler "
            lines.append(f"\n### {corpus}\n\n_Not measured yet: `chargen study sampling {first}--only {corpus}-grader "
                         f"--only {corpus}`._\n")
            continue
        rec = found.get("recommendation") or {}
        models = found.get("models") or {}
        grader = models.get("grader") or {}
        lines.append(f"\n### {corpus}\n\n{n.int(found['runs'])} of {n.int(found['planned'])} runs, each "
                     f"{n.int(found['samples_per_run'])} samples of {n.int(found['length'])} characters. The grader "
                     f"scores {n(grader.get('val_loss'))} nats/char on the validation text.\n\n")
        lines.append(table(found["rows"], set(found.get("frontier", [])), rec.get("label"), n))
        diversity = summary.get("diversity", sampling.DIVERSITY)
        drawn = plot_frontier(found, corpus, diversity, Path(results) / f"{corpus}.png") if figure is not None else None
        if drawn is not None:
            lines.append("\n" + figure(drawn, f"sampling-{corpus}.png") + "\n")
        if rec:
            chosen = _by_label(found["rows"])[rec["label"]]
            lines.append(f"\n**Recommendation for {corpus}: {n.quote(rec['label'])}** "
                         f"({n(chosen['nll']['mean'])} nats/char under the grader; diversity floor "
                         f"{n(rec['floor'])}, {n.int(len(rec['eligible']))} settings eligible).\n")
            text = papers(found, n)
            if text:
                lines.append("\n" + text + "\n")
        if not found.get("complete"):
            lines.append(f"\nStill running: the table shows the {n.int(found['runs'])} runs finished so far.\n")
    return "".join(lines)


def sampling_report_section(ctx: Context) -> str:
    """The section in the report, from ``results/sampling``."""
    return sampling_section(ctx.results / "sampling", ctx.numbers, ctx.figure).rstrip("\n")


__all__ = ["plot_frontier", "sampling_report_section", "sampling_section"]
