"""Data-parallel training under torchrun: the process group, the DDP wrapper and the few collectives the loop needs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from chargen.errors import UsageError
from chargen.runtime import is_distributed, local_rank, rank, world_size

T = TypeVar("T")


@dataclass
class Group:
    """The torchrun launch as seen from one rank: who it is, how many there are, which device it drives."""

    rank: int
    world_size: int
    device: torch.device
    backend: str

    def wrap(self, model: nn.Module) -> nn.Module:
        """DDP: construction broadcasts rank 0's weights; backward averages the gradients of all ranks."""
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (pickled in memory; never used for files)."""
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks of a few numbers (float64, so counts stay exact)."""
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()


@contextmanager
def process_group(device: torch.device) -> Iterator[Group | None]:
    """Join torchrun's process group for the duration; ``None`` when this process was not launched by torchrun.

    The backend follows the device: nccl for CUDA (one GPU per process, by LOCAL_RANK), gloo on
    the CPU. A group that someone else initialised (a notebook, a test harness) is left open.
    """
    if not is_distributed():
        yield None
        return
    if device.type == "cuda":
        if device.index is not None and world_size() > 1:
            raise UsageError(
                f"device {device}: under torchrun every process drives the GPU of its LOCAL_RANK; "
                "pass device cuda (or auto)", params="device"
            )
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise UsageError(f"device {device.type}: distributed training runs on cpu (gloo) or cuda (nccl)", params="device")
    owner = not dist.is_initialized()
    if owner:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield Group(rank(), world_size(), device, str(dist.get_backend()))
    finally:
        if owner:
            dist.destroy_process_group()
