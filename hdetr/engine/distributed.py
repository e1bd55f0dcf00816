"""Process-group setup for ``torchrun`` (one node or many) and the few collectives training needs.

``torchrun`` exports RANK, WORLD_SIZE and LOCAL_RANK (and MASTER_ADDR/PORT, or a
rendezvous endpoint across nodes); without them training runs as one process.
GPUs use NCCL, CPUs gloo.
"""
from __future__ import annotations

import dataclasses
import datetime
import os

import torch
import torch.distributed as dist

from hdetr.distributed import is_distributed, process_group_exists


@dataclasses.dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks this process's GPU when CUDA is available, else the CPU."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        from hdetr.errors import UserError

        raise UserError("train.device=cuda but CUDA is not available on this machine; use train.device=cpu or auto")
    return torch.device("cuda", local_rank)


def init_distributed(device_name: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun; otherwise describe a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not process_group_exists():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(minutes=30))
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown_distributed() -> None:
    if process_group_exists():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def mean_over_processes(values: dict[str, torch.Tensor]) -> dict[str, float]:
    """Average scalar tensors over all processes (logging; every rank gets the same numbers)."""
    if not values:
        return {}
    keys = sorted(values)
    stacked = torch.stack([values[k].detach().float().reshape(()) for k in keys])
    if is_distributed():
        dist.all_reduce(stacked)
        stacked /= dist.get_world_size()
    return dict(zip(keys, stacked.cpu().tolist()))


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is true on any rank (stop decisions stay in step)."""
    if not is_distributed():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def gather_objects(obj):
    """``[obj of rank 0, obj of rank 1, ...]`` on every process (``[obj]`` without a process group)."""
    if not is_distributed():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
