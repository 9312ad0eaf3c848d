"""The report package (``chargen report``): a Markdown report built from saved results (running the missing ones), every number traceable.

The report lives in one folder::

    report.md      the text: derivations, tables, verdicts and the figures below
    figures/       PNGs drawn from the results (copied from the commands that make them, or drawn here)
    results/       the JSON each experiment wrote: gradients/, compare-classify/, compare-lm/, probe/,
                   reference/, bptt.json, lm-samples.json, surnames.json, surnames-gen.json, and
                   exercises/ (the course exercises: the cheap ones made here, the slow ones by their own commands),
                   momentum/ (the momentum study: ``chargen momentum-study`` writes it; the report only reads it)

``build_report`` runs each experiment whose results file is missing (or is named in ``rerun``)
with the budget of the mode -- ``FULL`` for the committed report, ``QUICK`` for CI -- through the
same library calls as the commands (``chargen compare``, ``chargen probe``, ``chargen gradients``,
``chargen reference numpy-rnn``, ``chargen evaluate``), then writes the text from the results alone.

Every number in the text goes through ``Numbers``, which formats it and remembers it, so a test can
prove that no number outside equations and code was typed by hand (``untraced_numbers``).

Modules: ``context`` (folder layout, budgets, callbacks, the shared ``Context``), ``numbers`` (number
tracing), ``runners`` (the experiments at the mode's budget), ``sections`` (the Markdown, each
section next to the numbers it cites; ``SECTIONS`` is the order, one line per section), ``exercises`` (the
course-exercise sections and the question map), ``momentum`` (the momentum study's sections, from
``results/momentum/``), ``build`` (``build_report``), ``check`` (``chargen report --check``: the report is what its saved results build,
every number traced, every result at its code's version).
"""

from __future__ import annotations

from chargen.report.build import build_report
from chargen.report.check import check_report
from chargen.report.context import CELLS, FIGURES, FULL, QUICK, REPORT_MD, RESULTS, Budget, Context, ReportCallbacks
from chargen.report.numbers import Numbers, untraced_numbers
from chargen.report.runners import EXPERIMENT_NAMES, EXPERIMENTS, Experiment
from chargen.report.sections import SECTIONS

__all__ = [
    "CELLS", "EXPERIMENTS", "EXPERIMENT_NAMES", "FIGURES", "FULL", "QUICK", "REPORT_MD", "RESULTS", "SECTIONS",
    "Budget", "Context", "Experiment", "Numbers", "ReportCallbacks", "build_report", "check_report",
    "untraced_numbers",
]
