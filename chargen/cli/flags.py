"""The one map from library parameters to CLI flags: library errors name ``hidden_size``, a CLI user reads ``--hidden``."""

from __future__ import annotations

import re

from chargen.errors import ChargenError

# parameter -> flag, for every command; COMMAND_FLAGS holds the few that a command spells its own way.
FLAGS: dict[str, str] = {
    "host": "--host", "port": "--port", "max_length": "--max-length", "max_text": "--max-text", "max_batch": "--max-batch",
    "permuted": "--permuted",
    "balance": "--balance", "balance_power": "--balance-power", "batch_size": "--batch-size", "batching": "--batching",
    "cell": "--cell", "cells": "--cells", "char_dropout": "--char-dropout", "extra": "--extra", "augment": "--augment", "clip": "--clip", "corpus": "--corpus",
    "device": "--device", "dropout": "--dropout", "embed_dim": "--embed", "engine": "--engine", "epochs": "--epochs",
    "eval_every": "--eval-every", "hidden_size": "--hidden", "lang": "--lang", "length": "--length", "lr": "--lr",
    "lstm_steps": "--lstm-steps", "num_layers": "--layers", "only": "--only", "optimizer": "--optimizer",
    "out_dir": "--out", "prime": "--prime", "rerun": "--rerun", "resume": "--resume", "sample_every": "--sample-every",
    "seeds": "--seeds", "seq_len": "--seq-len", "start": "--start", "steps": "--steps",
    "temperature": "--temp", "text": "--text", "threads": "--threads", "threshold": "--threshold",
    "time_limit": "--time", "top": "--top", "top_k": "--top-k", "run_dir": "--out",
    "batch": "--batch", "n": "-n", "seed": "--seed", "names_file": "--names",
    "early_stop": "--early-stop", "beams": "--beam", "stop": "--stop",
    "skip_unknown": "--skip-unknown", "greedy": "--greedy", "top_p": "--top-p", "min_p": "--min-p",
    "typical": "--typical", "repetition_penalty": "--repetition-penalty", "repetition_window": "--repetition-window",
    "no_repeat": "--no-repeat",
    "max_copy": "--max-copy", "novelty": "--novelty", "pattern": "--pattern", "include": "--include",
    "init": "--init", "forget_bias": "--forget-bias", "mu": "--mu", "s": "--s", "grid": "--grid",
    "order": "--order", "init_from": "--init-from",
    "family": "--family", "n_layer": "--n-layer", "n_head": "--n-head", "d_model": "--d-model", "context": "--context",
    "positions": "--positions", "tie_weights": "--tie-weights",
    "minutes": "--minutes",
    "force": "--force", "out": "--out", "file": "--file", "html_out": "--html", "heatmap": "--heatmap",
    "markdown": "--markdown", "sample": "--sample",
}
COMMAND_FLAGS: dict[str, dict[str, str]] = {"score": {"file": "FILE"}}


def flag_for(param: str, command: str | None = None) -> str | None:
    """The flag that sets library parameter ``param`` in ``chargen <command>`` (None: the CLI has none)."""
    return COMMAND_FLAGS.get(command or "", {}).get(param) or FLAGS.get(param)


def cli_message(error: ChargenError, command: str | None = None) -> str:
    """``error``'s message with each parameter it names replaced by the command's flag for it.

    A message that marks its parameters (``{resume}``) is rendered from the marks alone; an older one
    that names them in prose gets its first mention of each replaced, never a word inside a phrase."""
    if error.marks_params():
        return error.render(lambda param: flag_for(param, command))
    message = str(error)
    for param in error.params:
        flag = flag_for(param, command)
        if flag is not None:
            # the first mention as a parameter: not in prose that names a value's kind ("the 'names' corpus")
            message = re.sub(rf"(?<![\w'-])(?<!' ){re.escape(param)}(?![\w-])", flag, message, count=1)
    return message
