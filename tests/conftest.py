"""Test setup: an isolated corpus cache, the shared mirror when present, a fixed terminal width."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from chargen.paths import PROJECT_ROOT

SHARED_MIRROR = PROJECT_ROOT.parent / "shared" / "corpora"
KEPT_FROM_OUTSIDE = {"CHARGEN_MIRROR", "CHARGEN_HOME", "CHARGEN_SCREENSHOT"}  # the corpora's mirror and cache (.ci/run sets both); where test_serve saves docs/serve.png


def pytest_configure(config: pytest.Config) -> None:
    # Tests never touch the network or the user's cache: the mirror (CI sets it; a checkout
    # beside ../shared finds it), a throwaway cache, and the offline switch.
    # The user's own CHARGEN_* settings (CHARGEN_CHECKPOINTS, CHARGEN_HOME, CHARGEN_DEBUG...) never reach
    # the suite: it sets the ones it needs. Only where the corpora come from is read from outside, on purpose.
    for name in [n for n in os.environ if n.startswith("CHARGEN_") and n not in KEPT_FROM_OUTSIDE]:
        del os.environ[name]
    if "CHARGEN_MIRROR" not in os.environ and SHARED_MIRROR.is_dir():
        os.environ["CHARGEN_MIRROR"] = str(SHARED_MIRROR)
    os.environ["CHARGEN_OFFLINE"] = "1"
    os.environ.setdefault("CHARGEN_HOME", str(Path(config.rootpath) / ".pytest_cache" / "chargen-home"))
    os.environ["COLUMNS"] = "200"  # rich wraps at the terminal width; keep CLI output on one line
    os.environ["NO_COLOR"] = "1"


def mirror() -> Path | None:
    path = os.environ.get("CHARGEN_MIRROR")
    return Path(path) if path and Path(path).is_dir() else None


@pytest.fixture
def corpus_mirror() -> Path:
    """The corpus mirror folder; the test is skipped with a reason when none is reachable."""
    found = mirror()
    if found is None or not (found / "grimm.txt").exists():
        pytest.skip("no corpus mirror: set CHARGEN_MIRROR to a folder like ../shared/corpora")
    return found


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Small models run fastest on one thread, and hundreds of times slower on two when another process
    holds the cores; restores torch's thread count afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)



def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A test that asks for the mirror needs data: mark it `corpus`, so that `-m "not corpus"`
    # (a clone without ../shared/corpora, see .ci/run) leaves it out without a list to maintain.
    for item in items:
        if "corpus_mirror" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.corpus)
