"""The one schema of a run directory's config.json: every field's type and range, checked on load.

A config.json may be hand-edited, damaged or crafted. Everything the loaders read from it is
checked here first, and a failure names the field (``model.hidden_size``) and what was expected,
so no malformed value reaches the model builders (where it would surface as a TypeError) and no
absurd size reaches the allocator. The same bounds serve options given on the command line
(``check_model_size``).
"""

from __future__ import annotations

import math
from typing import Any

from chargen.errors import UsageError

MAX_WIDTH = 16_384  # hidden_size, embed_dim, condition_dim
MAX_LAYERS = 256
MAX_CLASSES = 1_000_000  # vocab_size, num_classes, num_conditions
MAX_SEQ_LEN = 1_000_000
MAX_PARAMETERS = 500_000_000  # 2 GB of float32 weights, 6 GB more to train them with Adam
MAX_STEP = 2**62
MAX_MEMBERS = 64  # networks in a classifier ensemble
MAX_FORGET_BIAS = 1e3  # |forget_bias| at init: a sigmoid is saturated long before
MAX_STEP_SIZE = 1e3  # a momentum cell's step size s
MAX_TEMPERATURE = 1e6


class SchemaError(ValueError):
    """A config.json value of the wrong type or out of range; the message names the field."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(data: dict[str, Any], key: str, where: str, low: int, high: int) -> None:
    if key not in data:
        return
    value = data[key]
    if not _is_int(value) or not low <= value <= high:
        raise SchemaError(f"{where}{key} must be an integer from {low:,} to {high:,}, got {_show(value)}")


def _number(data: dict[str, Any], key: str, where: str, low: float, high: float, *, high_open: bool = False) -> None:
    if key not in data:
        return
    value = data[key]
    ok = (_is_int(value) or isinstance(value, float)) and math.isfinite(value) and low <= value
    ok = ok and (value < high if high_open else value <= high)
    if not ok:
        bracket = ")" if high_open else "]"
        raise SchemaError(f"{where}{key} must be a number in [{low}, {high}{bracket}, got {_show(value)}")


def _str(data: dict[str, Any], key: str, where: str, required: bool = False) -> None:
    if key not in data:
        if required:
            raise SchemaError(f"{where}{key} is missing")
        return
    if not isinstance(data[key], str):
        raise SchemaError(f"{where}{key} must be a string, got {_show(data[key])}")


def _dict(data: dict[str, Any], key: str, where: str, required: bool = True) -> dict[str, Any] | None:
    if key not in data:
        if required:
            raise SchemaError(f"{where}{key} is missing")
        return None
    value = data[key]
    if not isinstance(value, dict):
        raise SchemaError(f"{where}{key} must be an object ({{...}}), got {_show(value)}")
    return value


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


RUN_FIELDS = ("model", "vocab")  # what rebuilding a model reads


def check_config(config: Any, format_version: int, required: tuple[str, ...] = ()) -> None:
    """Raise SchemaError naming the first field of ``config`` (a loaded config.json) that is malformed
    or, among the top-level ``required`` ones, missing. Fields that are present are always checked."""
    if not isinstance(config, dict):
        raise SchemaError(f"not a chargen config (a JSON object with format_version), got {_show(config)}")
    if "format_version" not in config:
        raise SchemaError("not a chargen config (no format_version)")
    version = config["format_version"]
    if not _is_int(version) or version < 1:
        raise SchemaError(f"format_version must be a positive integer, got {_show(version)}")
    if version > format_version:
        raise SchemaError(f"format version {version} is newer than this chargen understands ({format_version}); "
                          "upgrade chargen")
    for key in required:
        if key not in config:
            raise SchemaError(f"{key} is missing")
    _str(config, "task", "")
    model = _dict(config, "model", "", required=False)
    if model is not None:
        check_model(model, "model.")
    vocab = _dict(config, "vocab", "", required=False)
    if vocab is not None:
        check_vocab(vocab)
    if model is not None and vocab is not None and "vocab_size" in model:
        size = len(vocab["chars"]) + len(vocab.get("specials") or [])
        if model["vocab_size"] != size:
            raise SchemaError(f"vocabulary has {size} tokens but the model was built for {model['vocab_size']}")
    task_config = _dict(config, "task_config", "", required=False)
    if task_config is not None:
        options = _dict(task_config, "options", "task_config.", required="task_config" in required)
        if options is not None:
            _int(options, "seq_len", "task_config.options.", 1, MAX_SEQ_LEN)
        languages = task_config.get("languages", [])
        if not isinstance(languages, list) or not all(isinstance(x, str) for x in languages):
            raise SchemaError(f"task_config.languages must be a list of strings, got {_show(languages)}")
    _int(config, "step", "", 0, MAX_STEP)
    _dict(config, "train", "", required=False)
    calibration = _dict(config, "calibration", "", required=False)
    if calibration is not None:
        check_calibration(calibration, (model or {}).get("num_classes"))


def check_calibration(calibration: dict[str, Any], num_classes: Any = None) -> None:
    """A classifier's fusion and temperature (``chargen.calibration.Fusion``): finite numbers, a positive
    temperature, one log prior per class, and an n-gram file that is a plain name inside the run directory."""
    where = "calibration."
    _number(calibration, "ngram_weight", where, -1e6, 1e6)
    _number(calibration, "prior_weight", where, -1e6, 1e6)
    _number(calibration, "temperature", where, 1e-6, MAX_TEMPERATURE)
    log_prior = calibration.get("log_prior", [])
    if not isinstance(log_prior, list) or not all(
        (_is_int(x) or isinstance(x, float)) and math.isfinite(x) for x in log_prior
    ):
        raise SchemaError(f"{where}log_prior must be a list of finite numbers, got {_show(log_prior)}")
    if log_prior and _is_int(num_classes) and len(log_prior) != num_classes:
        raise SchemaError(f"{where}log_prior has {len(log_prior)} entries but the model has {num_classes} classes")
    _str(calibration, "ngram_file", where)
    name = calibration.get("ngram_file", "")
    if name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise SchemaError(f"{where}ngram_file must be a file name inside the run directory, got {_show(name)}")


def check_model(model: dict[str, Any], where: str = "") -> None:
    """The types and ranges of a ModelConfig's fields, given as a dict."""
    for key in ("kind", "cell", "engine", "family", "positions"):
        _str(model, key, where)
    _int(model, "n_layer", where, 1, MAX_LAYERS)
    _int(model, "n_head", where, 1, MAX_WIDTH)
    _int(model, "d_model", where, 1, MAX_WIDTH)
    _int(model, "context", where, 1, MAX_SEQ_LEN)
    if not isinstance(model.get("tie_weights", True), bool):
        raise SchemaError(f"{where}tie_weights must be true or false, got {_show(model['tie_weights'])}")
    _int(model, "vocab_size", where, 1, MAX_CLASSES)
    _int(model, "embed_dim", where, 1, MAX_WIDTH)
    _int(model, "hidden_size", where, 1, MAX_WIDTH)
    _int(model, "num_layers", where, 1, MAX_LAYERS)
    _number(model, "dropout", where, 0, 1, high_open=True)
    _int(model, "num_classes", where, 0, MAX_CLASSES)
    _int(model, "num_conditions", where, 0, MAX_CLASSES)
    _int(model, "condition_dim", where, 0, MAX_WIDTH)
    _int(model, "members", where, 1, MAX_MEMBERS)
    _str(model, "init", where)
    for key, low, high in (("forget_bias", -MAX_FORGET_BIAS, MAX_FORGET_BIAS), ("mu", 0, 1), ("s", 0, MAX_STEP_SIZE)):
        if model.get(key) is not None:  # None: the init's or the cell's own default
            _number(model, key, where, low, high, high_open=key == "mu")
    options = _dict(model, "cell_options", where, required=False)
    for key, value in (options or {}).items():
        if not (isinstance(value, (bool, int, float)) and (isinstance(value, bool) or math.isfinite(value))):
            raise SchemaError(f"{where}cell_options.{key} must be a finite number or true/false, got {_show(value)}")
    check_model_size(model, where)


def parameter_estimate(model: dict[str, Any]) -> int:
    """An upper bound on the parameters of a model config (four gates per layer, as an LSTM has)."""
    if model.get("family") == "transformer":
        return transformer_estimate(model)
    embed, hidden = int(model.get("embed_dim", 64)), int(model.get("hidden_size", 512))
    layers, vocab = int(model.get("num_layers", 2)), int(model.get("vocab_size", 0))
    conditions, cond_dim = int(model.get("num_conditions", 0)), int(model.get("condition_dim", 0))
    outputs = max(vocab, int(model.get("num_classes", 0)))
    members = int(model.get("members", 1))  # an ensemble holds this many networks of the shape
    first_input = embed + (cond_dim if conditions else 0)
    # +3 per gate row: two biases, and a momentum cell's extra input channel or a phased cell's time gate
    recurrent = 4 * hidden * (first_input + hidden + 3) + (layers - 1) * 4 * hidden * (2 * hidden + 3)
    return members * (vocab * embed + conditions * cond_dim + recurrent + (hidden + 1) * outputs)


def transformer_estimate(model: dict[str, Any]) -> int:
    """The parameters of a transformer config: 12 d^2 + 13 d per block, embeddings, positions, head."""
    width, layers, context = int(model.get("d_model", 128)), int(model.get("n_layer", 4)), int(model.get("context", 128))
    vocab, conditions = int(model.get("vocab_size", 0)), int(model.get("num_conditions", 0))
    positions = context if model.get("positions", "learned") == "learned" else 0
    head = 0 if model.get("tie_weights", True) else vocab
    return width * (vocab + positions + conditions + head + 2) + layers * (12 * width * width + 13 * width)


def check_model_size(model: dict[str, Any], where: str = "") -> None:
    """Refuse a model too large to build on any machine chargen is meant for, before allocating it."""
    estimate = parameter_estimate(model)
    if estimate > MAX_PARAMETERS:
        if model.get("family") == "transformer":
            raise SchemaError(
                f"{where}d_model {model.get('d_model')}, n_layer {model.get('n_layer')}, context {model.get('context')} "
                f"make a model of about {estimate:,} parameters; the most chargen builds is {MAX_PARAMETERS:,}")
        raise SchemaError(
            f"{where}hidden_size {model.get('hidden_size')}, num_layers {model.get('num_layers')}, embed_dim "
            f"{model.get('embed_dim')} make a model of about {estimate:,} parameters ({4 * estimate / 2**30:,.0f} GiB); "
            f"the most chargen builds is {MAX_PARAMETERS:,}"
        )


def check_vocab(vocab: dict[str, Any]) -> None:
    """``chars``: one-character strings; ``specials``: non-empty strings; no token twice."""
    chars = vocab.get("chars")
    if not isinstance(chars, list):
        raise SchemaError(f"vocab.chars must be a list of one-character strings, got {_show(chars)}")
    for i, ch in enumerate(chars):
        if not (isinstance(ch, str) and len(ch) == 1):
            raise SchemaError(f"vocab.chars[{i}] must be a one-character string, got {_show(ch)}")
    specials = vocab.get("specials", [])
    if not isinstance(specials, list) or not all(isinstance(s, str) and s for s in specials):
        raise SchemaError(f"vocab.specials must be a list of non-empty strings, got {_show(specials)}")
    tokens = specials + chars
    if len(set(tokens)) != len(tokens):
        raise SchemaError("vocab has a token listed twice")


def check_model_options(model: dict[str, Any]) -> None:
    """The same bounds for a model given in code or on the command line: a UsageError naming the parameter."""
    if model.get("vocab_size") == 0:  # not known yet: the task sets it from its data
        model = {k: v for k, v in model.items() if k != "vocab_size"}
    try:
        check_model(model)
    except SchemaError as e:
        raise UsageError(str(e)) from None
