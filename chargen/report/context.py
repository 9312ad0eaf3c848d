"""The report's shared state: its folder layout, the budgets of its two modes (full, quick), progress callbacks and the ``Context`` every runner and section gets."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chargen.experiments.compare import DEFAULT_CELLS
from chargen.report.numbers import Numbers
from chargen.tracking import read_json

REPORT_MD = "report.md"
RESULTS = "results"
MOMENTUM = "momentum"  # the momentum study's results under RESULTS (chargen momentum-study --out; never run by the report)
FIGURES = "figures"
PAIRS = (("rnn", "momentum-rnn"), ("lstm", "momentum-lstm"))  # base cell, its momentum version
TEMPERATURES = (0.0, 0.5, 1.0, 2.0)
PRIME = "Sleeping beauty is"
SAMPLE_SEED = 0



class ReportCallbacks:
    """Progress of a report build; the CLI draws it with rich, these defaults say nothing."""

    def on_line(self, message: str) -> None: ...  # an experiment started, read back or finished

    def on_grid(self, experiment: str, done: int, total: int, label: str) -> None: ...  # runs inside one


@dataclass(frozen=True)
class Budget:
    """How much each experiment of the report runs."""

    name: str
    gradients: dict[str, Any]  # chargen.experiments.gradients.gradient_flow keywords
    compare_classify: dict[str, Any]  # chargen.experiments.compare.compare keywords
    compare_lm: dict[str, Any]
    probe: dict[str, Any]  # chargen.experiments.probe.run_probe keywords (+ "settings": ProbeSettings fields)
    reference: dict[str, Any]  # chargen.reference.run_reference keywords ("rnn": RNNSettings fields)
    long_sample: int  # characters generated past the prime


CELLS = list(DEFAULT_CELLS)  # the four cells the report studies: each base cell and its momentum version

FULL = Budget(
    name="full",
    gradients={"cells": CELLS, "length": 200, "hidden_size": 128, "seeds": 3, "batch": 16},
    compare_classify={"task": "classify", "cells": CELLS, "seeds": 3, "train": {"steps": 1500}},
    compare_lm={"task": "lm", "cells": CELLS, "seeds": 3, "task_options": {"corpus": "grimm"},
                "train": {"steps": 1000}},
    probe={"cells": CELLS, "lengths": list(range(5, 40, 5)), "seeds": 3, "steps": 1500},
    reference={"corpus": "origin", "rnn": {"hidden_size": 400, "epochs": 15}, "lstm_steps": 3000},
    long_sample=1500,
)

QUICK = Budget(
    name="quick",
    gradients={"cells": CELLS, "length": 30, "hidden_size": 16, "seeds": 1, "batch": 2},
    compare_classify={"task": "classify", "cells": CELLS, "seeds": 1, "train": {"steps": 6, "eval_every": 3},
                      "model": {"hidden_size": 16, "num_layers": 1, "embed_dim": 8}},
    compare_lm={"task": "lm", "cells": CELLS, "seeds": 1, "task_options": {"corpus": "grimm", "batch_size": 8},
                "train": {"steps": 6, "eval_every": 3}, "model": {"hidden_size": 16, "num_layers": 1, "embed_dim": 8}},
    probe={"cells": CELLS, "lengths": [5, 8], "seeds": 1, "steps": 4,
           "settings": {"hidden_size": 16, "batch_size": 16, "eval_every": 2}},
    reference={"corpus": "origin", "rnn": {"hidden_size": 8, "epochs": 1}, "lstm_steps": 2},
    long_sample=90,
)



@dataclass
class Context:
    """What the experiments and sections share: the folder, the budget, the numbers, the progress line."""

    out: Path
    budget: Budget
    numbers: Numbers = field(default_factory=Numbers)
    callbacks: ReportCallbacks = field(default_factory=ReportCallbacks)
    figures: list[str] = field(default_factory=list)
    # read only (``chargen report --check``): no figure is copied or drawn, a missing one is a problem
    dry: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def results(self) -> Path:
        return self.out / RESULTS

    def say(self, message: str) -> None:
        self.callbacks.on_line(message)

    def grid(self, experiment: str, label: Callable[[dict[str, Any]], str]) -> Callable[[int, int, dict[str, Any]], None]:
        """A progress function for ``compare`` and ``run_probe`` that reports to ``on_grid``."""
        return lambda done, total, info: self.callbacks.on_grid(experiment, done, total, label(info))

    def figure(self, source: Path, name: str) -> str:
        """Copy a figure into ``figures/`` and return its Markdown image line."""
        target = self.out / FIGURES / name
        if self.dry:
            if not target.is_file():
                self.problems.append(f"{FIGURES}/{name}: missing (the report shows it)")
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
        if not self.dry and Path(source).resolve() != target.resolve():
            shutil.copyfile(source, target)
        self.figures.append(f"{FIGURES}/{name}")
        return f"![{Path(name).stem}]({FIGURES}/{name})"


_TEMPORARY = re.compile(r"(?:/tmp|/var/tmp|" + re.escape(tempfile.gettempdir()) + r")/[^\s'\"`]+")


def public_command(command: str) -> str:
    """A recorded command as a reader may retype it: each temporary folder it names becomes ``DIR_A``, ``DIR_B``..."""
    names: dict[str, str] = {}
    return _TEMPORARY.sub(lambda m: names.setdefault(m.group(0), f"DIR_{chr(ord('A') + len(names))}"), command)


def read_results(path: Path) -> dict[str, Any]:
    return read_json(path, "report results (delete it, or --rerun its experiment, to measure it again)")
