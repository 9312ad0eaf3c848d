"""Held-out evaluation of a saved surname classifier beside the n-gram baseline: test split, calibration, labelled files.

``evaluate_classifier`` is what ``chargen evaluate`` runs for a classifier:

- on the test split: the task's own metrics (accuracy, balanced accuracy, per-language table,
  confusion matrix), then the naive Bayes baseline (``chargen.ngram``, trained on the same
  training names as the classifier) on the same names, and the calibration: expected calibration error of the
  classifier's probabilities (and of the bare network's softmax, for comparison) with a
  reliability diagram ``reliability.png`` beside the checkpoint;
- on a ``name<TAB>language`` file (``names_file``): top-1 and top-3 accuracy, balanced accuracy
  over the languages present, per language, for the classifier and for the baseline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from chargen.calibration import reliability, top_k_accuracy
from chargen.data.corpora import ProgressFn
from chargen.data.faker_names import training_names
from chargen.data.labelled import read_labelled
from chargen.data.names import NamesData, load_names
from chargen.ngram import BASELINE_ALPHA, NaiveBayes, train_baseline
from chargen.plots import plot_reliability
from chargen.tasks.base import register_evaluator
from chargen.tasks.classify import ClassifyTask, classifier_log_probs, name_log_probs, score
from chargen.tasks.names import check_data

RELIABILITY_PNG = "reliability.png"


def baseline_for(data: NamesData, extra: str = "none") -> NaiveBayes:
    """The naive Bayes baseline on the classifier's training names (the tutorial's training split,
    plus the Faker training part for ``extra="faker"``); alpha chosen on validation (``ngram.BASELINE_ALPHA``)."""
    if extra == "none":
        return train_baseline(data, alpha=BASELINE_ALPHA)
    trained = training_names(data, extra)
    return NaiveBayes(data.languages, alpha=BASELINE_ALPHA).fit(trained.names, trained.targets)


def extra_of(loaded: Any) -> str:
    """The training names a saved classifier added to the tutorial's (``none`` or ``faker``)."""
    return str(loaded.config["task_config"].get("options", {}).get("extra", "none"))


def labelled_metrics(logp: torch.Tensor, targets: list[frozenset[int]], num_classes: int) -> dict[str, Any]:
    """Top-1, top-3 and balanced accuracy, ECE, and per-class recall, of log probabilities on labelled names."""
    m = score(logp.argmax(1).tolist(), targets, num_classes)
    return {"top1": m["accuracy"], "top3": top_k_accuracy(logp, targets, 3),
            "balanced_accuracy": m["balanced_accuracy"], "ece": reliability(logp.exp(), targets)["ece"],
            "recall": m["recall"], "support": m["support"], "confusion": m["confusion"]}


def error_table(logp: torch.Tensor, targets: list[frozenset[int]], languages: list[str]) -> list[list[Any]]:
    """Per language present: names, top-1 recall, top-3 recall, and the language its names are most
    often mistaken for (with the share of its names): the rows of an error analysis."""
    m = labelled_metrics(logp, targets, len(languages))
    top3 = logp.topk(min(3, len(languages)), dim=1).indices.tolist()
    rows = []
    for c, lang in enumerate(languages):
        if not m["support"][c]:
            continue
        mine = [i for i, t in enumerate(targets) if c in t]
        in3 = sum(bool(set(top3[i]) & targets[i]) for i in mine) / len(mine)
        off = m["confusion"][c].clone()
        off[c] = 0
        worst = int(off.argmax())
        share = float(off[worst]) / m["support"][c]
        rows.append([lang, m["support"][c], m["recall"][c], in3, f"{languages[worst]} ({share:.2f})" if share else "-"])
    return rows


def evaluate_file(loaded: Any, device: torch.device, path: Path, progress: ProgressFn | None = None) -> dict[str, Any]:
    """The classifier and the baseline on a ``name<TAB>language`` file (see ``chargen.data.labelled``)."""
    languages = loaded.config["task_config"]["languages"]
    labelled = read_labelled(path, languages)
    index = {lang: i for i, lang in enumerate(languages)}
    names = list(labelled)
    targets = [frozenset(index[lang] for lang in langs) for langs in labelled.values()]
    data = load_names(progress=progress)
    check_data(data, loaded.config["task_config"])
    model = labelled_metrics(classifier_log_probs(loaded, names, device), targets, len(languages))
    base = labelled_metrics(baseline_for(data, extra_of(loaded)).log_probs(names), targets, len(languages))
    in_corpus = sum(n in data.labels for n in names)
    rows = [[lang, model["support"][c], model["recall"][c], base["recall"][c]]
            for c, lang in enumerate(languages) if model["support"][c]]
    metrics = {
        "file": str(path), "names": len(names), "names_in_corpus": in_corpus,
        "top1": model["top1"], "top3": model["top3"], "balanced_accuracy": model["balanced_accuracy"],
        "ece": model["ece"],
        "baseline_top1": base["top1"], "baseline_top3": base["top3"],
        "baseline_balanced_accuracy": base["balanced_accuracy"],
        "top1_minus_baseline": model["top1"] - base["top1"],
    }
    return {"metrics": metrics, "tables": [{
        "title": f"per language ({path.name}; top-1 recall; a guess of any of a name's languages is correct)",
        "columns": ["language", "names", "classifier", "n-gram baseline"], "rows": rows,
    }]}


def evaluate_test_split(loaded: Any, device: torch.device, progress: ProgressFn | None = None) -> dict[str, Any]:
    """The task's test-split report, plus the baseline and the calibration on the same names."""
    report = ClassifyTask.evaluate_saved(loaded, device, progress)
    data = load_names(progress=progress)
    languages, names, targets = data.languages, data.splits["test"], data.targets("test")
    base_logp = baseline_for(data, extra_of(loaded)).log_probs(names)
    base = score(base_logp.argmax(1).tolist(), targets, len(languages))
    logp = classifier_log_probs(loaded, names, device)
    calibrated = reliability(logp.exp(), targets)
    network = reliability(name_log_probs(loaded.model, loaded.vocab, names, device).exp(), targets)
    png = loaded.path / RELIABILITY_PNG
    try:
        curves = {f"classifier (ECE {calibrated['ece']:.3f})": calibrated["bins"]}
        if loaded.config.get("calibration"):
            curves[f"network alone, uncalibrated (ECE {network['ece']:.3f})"] = network["bins"]
        plot_reliability(curves, png, title=f"{loaded.path.name}: test split")
        png_note = str(png)
    except OSError as e:
        png_note = f"not written ({e.strerror or e})"
    metrics = report["metrics"]
    metrics.update({
        "top3": top_k_accuracy(logp, targets, 3),
        "baseline_accuracy": base["accuracy"],
        "baseline_balanced_accuracy": base["balanced_accuracy"],
        "baseline_top3": top_k_accuracy(base_logp, targets, 3),
        "ece": calibrated["ece"],
        "ece_network_alone": network["ece"],
        "temperature": float(loaded.config.get("calibration", {}).get("temperature", 1.0)),
        "reliability_png": png_note,
    })
    table = report["tables"][0]  # appended, not inserted: readers index the task's own columns by position
    table["columns"].append("baseline recall")
    for c, row in enumerate(table["rows"]):
        row.append(base["recall"][c])
    return report


@register_evaluator("classify")
def evaluate_classifier(
    loaded: Any, device: torch.device, progress: ProgressFn | None = None, names_file: Path | None = None
) -> dict[str, Any]:
    """``chargen evaluate`` for a classifier: the test split, or the labelled names of ``names_file``."""
    if names_file is not None:
        return evaluate_file(loaded, device, Path(names_file), progress)
    return evaluate_test_split(loaded, device, progress)
