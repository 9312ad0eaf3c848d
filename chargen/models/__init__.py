"""Model families behind one contract: the recurrent models (embedding -> core -> head); the config that rebuilds any of them."""

from chargen.models.recurrent import (
    CharLM,
    Encoder,
    EnsembleClassifier,
    ModelConfig,
    SequenceClassifier,
    build_model,
    settings_for_cell,
)

__all__ = [
    "CharLM",
    "Encoder",
    "EnsembleClassifier",
    "ModelConfig",
    "SequenceClassifier",
    "build_model",
    "settings_for_cell",
]
