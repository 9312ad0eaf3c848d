"""Model families behind one contract (recurrent, transformer, Kneser-Ney n-gram); the config that rebuilds any of them, and the builder."""

from collections.abc import Mapping
from typing import Any

from torch import nn

from chargen.errors import UsageError
from chargen.models.recurrent import (
    FAMILIES,
    CharLM,
    Encoder,
    EnsembleClassifier,
    ModelConfig,
    SequenceClassifier,
    build_recurrent,
    settings_for_cell,
)
from chargen.models.ngram_lm import NGramLM
from chargen.models.transformer import TransformerLM


# The settings only one family reads (the shared ones, dropout and the condition, serve both).
RECURRENT_SETTINGS = ("cell", "engine", "num_layers", "hidden_size", "embed_dim", "cell_options", "init",
                      "forget_bias", "mu", "s")
TRANSFORMER_SETTINGS = ("n_layer", "n_head", "d_model", "context", "positions", "tie_weights")


def check_family_settings(family: str, given: Mapping[str, Any]) -> None:
    """A UsageError naming the settings in ``given`` (None: not given) that the ``family`` would ignore."""
    other = {"transformer": RECURRENT_SETTINGS, "recurrent": TRANSFORMER_SETTINGS}.get(family, ())
    ignored = [k for k in other if given.get(k) not in (None, {})]
    if ignored:
        one = len(ignored) == 1
        raise UsageError(f"{', '.join(ignored)} {'is' if one else 'are'} not read by family {family!r}: leave "
                         f"{'it' if one else 'them'} out", params=(*ignored, "family"))


def build_model(cfg: ModelConfig) -> nn.Module:
    """The model a config describes, of its ``family``."""
    if cfg.family == "transformer":
        if cfg.kind != "lm":
            raise UsageError(f"family 'transformer' builds language models (tasks lm and generate), not a {cfg.kind}",
                             params="family")
        return TransformerLM(cfg)
    if cfg.family == "recurrent":
        return build_recurrent(cfg)
    if cfg.family == "ngram":  # empty: its count tables come with its checkpoint (load_state_dict)
        return NGramLM(cfg.vocab_size)
    raise UsageError(f"family {cfg.family!r} has no model builder here; known: {', '.join(FAMILIES)}", params="family")


__all__ = [
    "FAMILIES",
    "RECURRENT_SETTINGS",
    "TRANSFORMER_SETTINGS",
    "CharLM",
    "Encoder",
    "EnsembleClassifier",
    "ModelConfig",
    "NGramLM",
    "SequenceClassifier",
    "TransformerLM",
    "build_model",
    "build_recurrent",
    "check_family_settings",
    "settings_for_cell",
]
