"""chargen: a character-level text studio built on recurrent cells written from their equations.

Everything the CLI does is a library call::

    import chargen
    loaded = chargen.load("grimm")                      # a shipped or trained run directory
    text = "".join(chargen.generate(loaded.model, loaded.vocab, prime="Sleeping beauty is", length=200))
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Resolved on first use so that `import chargen` (and `chargen --help`) does not import torch.
_LAZY = {
    "load": ("chargen.checkpoint", "load"),
    "generate": ("chargen.generation.sample", "generate"),
    "generate_streams": ("chargen.generation.sample", "generate_streams"),
    "DecodeConfig": ("chargen.generation.logits", "DecodeConfig"),
    "Recurrent": ("chargen.core", "Recurrent"),
    "ModelConfig": ("chargen.models", "ModelConfig"),
    "build_model": ("chargen.models", "build_model"),
    "TrainConfig": ("chargen.config", "TrainConfig"),
    "fit": ("chargen.train", "fit"),
    "build_task": ("chargen.tasks", "build_task"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'chargen' has no attribute {name!r}")
    module, attr = _LAZY[name]
    from importlib import import_module

    return getattr(import_module(module), attr)


__all__ = ["__version__", *_LAZY]
