"""Run-time environment: seeding, RNG state capture, device choice, determinism and process rank."""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
from typing import Any

import torch

from chargen.errors import UsageError

DEVICES = ("auto", "cpu", "cuda", "mps")


def seed_everything(seed: int) -> None:
    """Seed Python's and torch's generators (torch seeds every CUDA device too)."""
    random.seed(seed)
    torch.manual_seed(seed)


def set_deterministic(enabled: bool) -> None:
    """Bitwise-repeatable kernels where torch offers them (slower on GPU)."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(enabled)


def rng_state() -> dict[str, Any]:
    """Python's and torch's RNG states, as plain tensors and lists (safe for weights_only loading)."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {"python": [version, list(internal), gauss], "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resolve_seeds(seeds: int | Iterable[int]) -> list[int]:
    """A count ``n`` means seeds 0..n-1; an iterable gives the seeds themselves, without repeats."""
    if isinstance(seeds, int):
        if seeds < 1:
            raise UsageError(f"seeds must be at least 1, got {seeds}", params="seeds")
        return list(range(seeds))
    chosen = list(dict.fromkeys(int(s) for s in seeds))
    if not chosen:
        raise UsageError("give at least one seed")
    return chosen


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; asking for a missing accelerator is a clear error."""
    kind = name.split(":")[0]
    if kind not in DEVICES:
        raise UsageError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)} (or cuda:N)")
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UsageError("device cuda: no CUDA device is available to this torch build", params="device")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise UsageError("device mps: the MPS backend is not available on this machine", params="device")
    return torch.device(name)


def rank() -> int:
    """This process's rank under torchrun (0 when not distributed); tasks shard their data by it."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """How many processes train together (torchrun's WORLD_SIZE; 1 when not distributed)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def check_batch_size(batch_size: int) -> None:
    """``--batch-size`` is the global batch: positive, and split evenly over the processes."""
    if batch_size < 1:
        raise UsageError(f"batch_size must be positive, got {batch_size}", params="batch_size")
    if batch_size % world_size():
        raise UsageError(f"batch_size {batch_size} is the global batch; it must split evenly over {world_size()} processes",
                         params="batch_size")


SMALL_MODEL = 2_000_000  # parameters: below this, one thread beats several (per-op overhead dominates)


def cores() -> int:
    """The CPU cores this process may run on (its affinity mask, else the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def check_threads(threads: int | None) -> int | None:
    """``threads`` if it is a thread count this machine can use: from 1 to its cores (torch crashes, not
    errs, on absurd counts: 100,000 threads is a segmentation fault)."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UsageError(f"{{threads}} must be at least 1, got {threads}", params="threads")
    if threads > cores():
        raise UsageError(f"{{threads}} must be at most {cores()}, the CPU cores this process may use; got {threads:,}",
                         params="threads")
    return threads


def choose_threads(threads: int | None = None, parameters: int | None = None, processes: int = 1) -> int:
    """Torch CPU threads on purpose, not "every core": ``threads`` when given (1 to the cores); else one
    for small models and generation (a second thread mostly spins, and on a busy machine costs several
    times the time); else this process's share of the cores, so that processes x threads <= cores."""
    if threads is not None:
        return check_threads(threads) or 1
    if parameters is not None and parameters < SMALL_MODEL:
        return 1
    return max(1, cores() // max(1, processes))


def use_threads(threads: int | None = None, parameters: int | None = None, processes: int = 1) -> int:
    """Set torch's intra-op threads by ``choose_threads`` and return the number."""
    chosen = choose_threads(threads, parameters, processes)
    if torch.get_num_threads() != chosen:
        torch.set_num_threads(chosen)
    return chosen


def local_rank() -> int:
    """This process's index on its own machine: the GPU it drives under torchrun."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_distributed() -> bool:
    return world_size() > 1


def is_main_process() -> bool:
    """Rank 0 alone logs, samples, plots and writes checkpoints."""
    return rank() == 0
