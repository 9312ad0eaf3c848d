"""Export a language model's next-character step to TorchScript or ONNX: ``(ids, state) -> (logits, probs, state)``.

The exported graph is one step of the model on the loop engine (the cells' own equations, so
every cell exports, the phased and momentum ones included): ids ``(N,)`` int64 and one
``(layers, N, size)`` tensor per state name (``h``, ``c``, ...; zeros to start) in, logits and
probabilities ``(N, V)`` and the new state out. The vocabulary and model config travel inside
the file (TorchScript extra file ``chargen.json``; ONNX metadata ``chargen``), so a runtime
without chargen can encode a prime and decode the samples.

A transformer exports the same step API with its window as the state: ``window (N, context)``
int64 ids and ``length (N,)`` int64 (zeros to start); each step appends the id, slides the window
as generation does, and runs one causal forward over it (``chargen.generation.kvcache.WindowStep``).
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from chargen.checkpoint import Loaded
from chargen.errors import UsageError
from chargen.generation.kvcache import KVCacheStepper, WindowStep
from chargen.models import CharLM, TransformerLM

FORMATS = ("torchscript", "onnx")


class NextCharStep(nn.Module):
    """One step of a CharLM: ``forward(ids (N,), *state) -> (logits (N, V), probs (N, V), *new_state)``."""

    def __init__(self, model: CharLM) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).cpu().eval()
        self.model.encoder.core.engine = "loop"  # plain tensor ops: traceable and exportable for every cell

    def forward(self, ids: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        logits, _, new_state = self.model(ids.view(1, -1), tuple(state))  # (1, N, V)
        logits = logits[0]
        return (logits, torch.softmax(logits, dim=-1), *new_state)


def state_names(model: CharLM | TransformerLM) -> tuple[str, ...]:
    if isinstance(model, TransformerLM):
        return ("window", "length")
    return model.encoder.core.state_names


def initial_state(model: CharLM | TransformerLM, batch: int) -> tuple[Tensor, ...]:
    """The exported step's starting state for ``batch`` sequences: zeros."""
    if isinstance(model, TransformerLM):
        return torch.zeros(batch, model.context, dtype=torch.long), torch.zeros(batch, dtype=torch.long)
    return model.encoder.core.init_state(batch, device=torch.device("cpu"), dtype=torch.float32)


def example_inputs(model: CharLM | TransformerLM, batch: int = 2) -> tuple[Tensor, ...]:
    """Ids and a zero state for ``batch`` sequences, as the exported step takes them."""
    return (torch.zeros(batch, dtype=torch.long), *initial_state(model, batch))


def metadata(loaded: Loaded) -> dict[str, Any]:
    """What a runtime needs besides the graph: vocabulary, model config, input and output names."""
    names = state_names(loaded.model)
    return {"chargen_export": 1, "model": loaded.config["model"], "vocab": loaded.vocab.to_json(),
            "inputs": ["ids", *names], "outputs": ["logits", "probs", *(f"new_{n}" for n in names)]}


def _check(loaded: Loaded) -> CharLM | TransformerLM:
    model = loaded.model
    if loaded.config.get("task") != "lm" or not isinstance(model, (CharLM, TransformerLM)):
        raise UsageError(f"export needs a text language model (task 'lm'); {loaded.path.name} is a "
                         f"{loaded.config.get('task')!r} model")
    if (model.condition if isinstance(model, TransformerLM) else model.encoder.condition) is not None:
        raise UsageError("export does not support conditioned models yet")
    return model


def export(loaded: Loaded, fmt: str, out: Path) -> Path:
    """Write the next-character step of ``loaded`` to ``out`` in ``fmt`` (torchscript or onnx)."""
    if fmt not in FORMATS:
        raise UsageError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    model = _check(loaded)
    step = WindowStep(copy.deepcopy(model).cpu().eval()) if isinstance(model, TransformerLM) else NextCharStep(model)
    inputs = example_inputs(model)
    meta = json.dumps(metadata(loaded), ensure_ascii=False)
    out = Path(out)
    if not out.parent.is_dir():
        raise UsageError(f"out: cannot write {out}: {out.parent} is not a directory")
    # written beside the target and renamed, so a failed export leaves nothing behind
    part = out.with_name(f".{out.name}.part")
    try:
        # the state's batch axis: (layers, N, size) for a recurrent model, (N, ...) for a transformer's window
        part.write_bytes(_serialise(step, inputs, meta, fmt, 0 if isinstance(model, TransformerLM) else 1))
        part.replace(out)
    except OSError as e:
        raise UsageError(f"out: cannot write {out}: {e.strerror or e}") from None
    finally:
        part.unlink(missing_ok=True)
    return out


def _serialise(step: nn.Module, inputs: tuple[Tensor, ...], meta: str, fmt: str, state_batch_axis: int = 1) -> bytes:
    """The exported file's bytes."""
    buffer = io.BytesIO()
    if fmt == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shape checks, which are constant for a step
            traced = torch.jit.trace(step, inputs, check_trace=False)
            # torch 2.13 marks TorchScript deprecated in favour of torch.export; it is still what
            # C++ (libtorch) and mobile runtimes load, which is why people ask for it
            torch.jit.save(traced, buffer, _extra_files={"chargen.json": meta})
        return buffer.getvalue()
    try:
        import onnx
    except ImportError:
        raise UsageError("ONNX export needs the onnx package: pip install 'chargen[export]'") from None
    info = json.loads(meta)
    dynamic = {name: {0: "batch"} for name in info["outputs"][:2]}
    dynamic.update({"ids": {0: "batch"}})
    dynamic.update({name: {state_batch_axis: "batch"} for name in info["inputs"][1:] + info["outputs"][2:]})
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(step, inputs, buffer, input_names=info["inputs"], output_names=info["outputs"],
                          dynamic_axes=dynamic, opset_version=17, dynamo=False)
    proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = "chargen", meta
    return proto.SerializeToString()


def load_runner(path: Path, fmt: str) -> Any:
    """A function ``(ids (N,) int64 array, state list) -> (logits, probs, new_state)`` over an exported file."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")

        def run(ids: Any, state: list[Any]) -> tuple[Any, Any, list[Any]]:
            with torch.no_grad():
                logits, probs, *new = module(torch.as_tensor(ids), *(torch.as_tensor(s) for s in state))
            return logits.numpy(), probs.numpy(), [s.numpy() for s in new]

        return run
    try:
        import onnxruntime
    except ImportError:
        raise UsageError("running an ONNX export needs onnxruntime: pip install 'chargen[export]'") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(ids: Any, state: list[Any]) -> tuple[Any, Any, list[Any]]:
        logits, probs, *new = session.run(None, dict(zip(names, [ids, *state])))
        return logits, probs, new

    return run


@torch.no_grad()
def max_difference(loaded: Loaded, path: Path, fmt: str, text: str) -> float:
    """Largest |logit difference| between the exported step, run over ``text`` with its state carried, and the model."""
    model = _check(loaded)
    ids = torch.tensor(loaded.vocab.encode(text, what="the check text"))
    if isinstance(model, TransformerLM):  # its logits over a text longer than the context are the stepper's
        stepper = KVCacheStepper(model, 1, cached=False)
        device = next(model.parameters()).device
        ids_on = ids.to(device)
        rows = [stepper.prime(ids_on[:1].view(1, 1))[0].clone()]  # the window rule of generation, step by step
        rows += [stepper.step(i.view(1))[0].clone() for i in ids_on[1:]]
        reference = torch.stack(rows).float().cpu()
    else:
        reference, _, _ = model(ids.view(-1, 1).to(next(model.parameters()).device))  # (T, 1, V)
        reference = reference[:, 0].float().cpu()
    run = load_runner(path, fmt)
    state = [s.numpy() for s in initial_state(model, 1)]
    worst = 0.0
    for t, i in enumerate(ids.tolist()):
        logits, _, state = run(torch.tensor([i]).numpy(), state)
        worst = max(worst, float((torch.as_tensor(logits)[0] - reference[t]).abs().max()))
    return worst
