"""The models behind the server and what each endpoint computes, independent of HTTP.

Models are loaded once and only read afterwards: every request builds its own state, so
requests computed at the same time cannot disturb one another. Generation is not here: it runs
in one batch per model (``chargen.serve.batcher``); this checks a generate request's model and prime and
builds its constraints (each model's corpus index is loaded once, on the first request that needs it).
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from typing import Any

import torch

from chargen.checkpoint import Loaded
from chargen.errors import ChargenError
from chargen.generation.constraints import Constraints, constraints_for_run
from chargen.generation.copies import CorpusIndex, index_for_run
from chargen.inspect import WHATS, activation_colour, colour_scale, score_text, trace
from chargen.serve.api import ApiError, ClassifyRequest, GenerateRequest, InspectRequest, Limits, ScoreRequest, named
from chargen.tasks.classify import classify_names


class Service:
    """The loaded models (by name) and the requests they answer; each method takes a parsed request."""

    def __init__(self, models: dict[str, Loaded], limits: Limits | None = None) -> None:
        if not models:
            raise ValueError("a Service needs at least one model")
        self.models = models
        self.limits = limits or Limits()
        self._indexes: dict[str, CorpusIndex] = {}
        self._indexing = threading.Lock()  # one build at a time: a corpus index holds tens of MB
        # a pattern's automaton may reach pattern.MAX_STATES states x the vocabulary (over 100 MB): a few at a time
        self._building = threading.BoundedSemaphore(self.limits.workers)

    def info(self) -> dict[str, Any]:
        out = []
        for name, loaded in self.models.items():
            cfg = loaded.config["model"]
            family = cfg.get("family", "recurrent")
            # a recurrent model's cell, layers and width; another family's own (a transformer's blocks and d_model)
            shape = ({"cell": cfg["cell"], "layers": cfg["num_layers"], "hidden": cfg["hidden_size"]}
                     if family == "recurrent" else
                     {"cell": family, "layers": cfg.get("n_layer"), "hidden": cfg.get("d_model")})
            # whether the run records its corpus: max_copy and novelty need it
            options = (loaded.config.get("task_config") or {}).get("options") or {}
            corpus = bool(options.get("corpus") and (loaded.config.get("task_config") or {}).get("corpus_sha256"))
            out.append({"name": name, "task": loaded.config.get("task"), "family": family, **shape,
                        "vocab": len(loaded.vocab), "corpus": corpus})
        return {"models": out, "limits": asdict(self.limits), "whats": list(WHATS)}

    def model(self, name: str | None, tasks: tuple[str, ...]) -> tuple[str, Loaded]:
        """The model a request names (the first loaded one that does ``tasks`` when it names none)."""
        if name is None:
            fitting = [n for n, m in self.models.items() if m.config.get("task") in tasks]
            if not fitting:
                raise ApiError(400, f"no loaded model does this (it needs a {' or '.join(tasks)} model)")
            name = fitting[0]
        if name not in self.models:
            raise ApiError(404, f"model: no model {name!r} is loaded; loaded: {', '.join(self.models)}")
        loaded = self.models[name]
        if loaded.config.get("task") not in tasks:
            raise ApiError(400, f"model: {name!r} is a {loaded.config.get('task')!r} model; "
                                f"this needs a {' or '.join(tasks)} model")
        return name, loaded

    @staticmethod
    def encode(loaded: Loaded, text: str, what: str) -> list[int]:
        try:
            return loaded.vocab.encode(text, what=what)
        except ChargenError as e:
            raise ApiError(400, str(e)) from None

    def constraints(self, name: str, loaded: Loaded, request: GenerateRequest) -> Constraints:
        """A generate request's masks, stop strings and corpus index, checked (400 naming the field) before it runs.

        Slow the first time a model's corpus is needed (its index is read or built, then kept): call it
        off the event loop.
        """
        decoding = request.decoding
        if not (decoding.constrained or decoding.novelty):
            return Constraints()
        try:
            index = self._index(name, loaded, "max_copy" if decoding.max_copy is not None else "novelty") \
                if decoding.max_copy is not None or decoding.novelty else None
            with self._building:
                return constraints_for_run(loaded, length=request.length, prime=request.prime,
                                           max_copy=decoding.max_copy, pattern=decoding.pattern,
                                           include=decoding.include, novelty=decoding.novelty, index=index)
        except ChargenError as e:
            raise ApiError(400, named(e)) from None

    def _index(self, name: str, loaded: Loaded, param: str) -> CorpusIndex:
        with self._indexing:
            if name not in self._indexes:
                self._indexes[name] = index_for_run(loaded.path, loaded.config, param=param)
            return self._indexes[name]

    @torch.inference_mode()
    def score(self, request: ScoreRequest) -> dict[str, Any]:
        name, loaded = self.model(request.model, ("lm",))
        try:
            return {"model": name, **score_text(loaded.model, loaded.vocab, request.text)}
        except ChargenError as e:
            raise ApiError(400, str(e)) from None

    @torch.inference_mode()
    def classify(self, request: ClassifyRequest) -> dict[str, Any]:
        name, loaded = self.model(request.model, ("classify",))
        return {"model": name, "results": classify_names(loaded, list(request.names), top=request.top)}

    @torch.inference_mode()
    def inspect(self, request: InspectRequest) -> dict[str, Any]:
        name, loaded = self.model(request.model, ("lm",))
        text, unit, what = request.text, request.unit, request.what
        try:
            tr = trace(loaded.model, loaded.vocab, text)
            out: dict[str, Any] = {"model": name, "chars": list(text), "layers": tr.num_layers,
                                   "hidden": tr.hidden_size, "available": list(tr.available())}
            if request.top:
                out["top"] = [[[c, p] for c, p in row] for row in tr.top(request.top)]
            if unit is not None:
                values = tr.activation(unit, what, request.layer).tolist()
                scale = colour_scale(values, what)
                out["activation"] = {"unit": unit, "layer": request.layer or tr.num_layers, "what": what,
                                     "values": values, "scale": scale,
                                     "colours": [activation_colour(v, scale) for v in values]}
        except ChargenError as e:
            raise ApiError(400, str(e)) from None
        return out
