"""The one answer to "is this process one of several?", for training and evaluation alike.

A process group exists when ``torchrun`` launched the process (``hdetr.engine.distributed.init_distributed``
joins it) or when the caller set one up itself; collectives run only when it has more than one
process, so a single process never needs a group.
"""
from __future__ import annotations

import torch.distributed as dist


def process_group_exists() -> bool:
    """A default process group has been initialised (by us or by whoever called hdetr)."""
    return dist.is_available() and dist.is_initialized()


def is_distributed() -> bool:
    """Several processes share the work: collectives are needed."""
    return process_group_exists() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, number of processes); (0, 1) for a single process."""
    return (dist.get_rank(), dist.get_world_size()) if is_distributed() else (0, 1)
