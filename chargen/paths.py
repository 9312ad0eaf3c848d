"""Where chargen keeps things: the project root, shipped checkpoints and the corpus cache."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Downloaded corpora: $CHARGEN_HOME, else $XDG_CACHE_HOME/chargen, else ~/.cache/chargen."""
    if home := os.environ.get("CHARGEN_HOME"):
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "chargen"


def checkpoints_dir() -> Path:
    """Trained models: $CHARGEN_CHECKPOINTS, else the project's own checkpoints/ folder."""
    if env := os.environ.get("CHARGEN_CHECKPOINTS"):
        return Path(env).expanduser()
    return PROJECT_ROOT / "checkpoints"


def registry_path() -> Path:
    """The corpus registry (names, pinned URLs, sha256, licences, cleaning rules)."""
    return PROJECT_ROOT / "corpora" / "registry.json"
