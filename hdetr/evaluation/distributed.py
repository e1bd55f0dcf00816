"""Gathering predictions from every DDP process before scoring on rank 0.

Each rank evaluates its own shard of the images; ``gather`` collects the result
records of all ranks (``torch.distributed.all_gather_object``), rank 0 scores
them and ``share_from_rank0`` hands the metrics to every rank so logging and
checkpoint selection agree. Without an initialised process group (or with one
process) both are no-ops.
"""
from __future__ import annotations

from typing import Any

import torch.distributed as dist

from hdetr.distributed import is_distributed, rank_and_world


def rank() -> int:
    return rank_and_world()[0]


def gather(image_ids: list[int], results: list[dict[str, Any]]) -> tuple[list[int], list[dict[str, Any]]]:
    """(image ids, result records) of all ranks, merged; duplicates from padded samplers removed."""
    if not is_distributed():
        return image_ids, results
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (image_ids, results))
    seen: set[int] = set()
    merged_ids, merged_results = [], []
    for ids, recs in parts:
        # DistributedSampler pads by repeating images: keep each image's records once.
        fresh = {i for i in ids if i not in seen}
        seen.update(fresh)
        merged_ids.extend(sorted(fresh))
        merged_results.extend(r for r in recs if r["image_id"] in fresh)
    return sorted(merged_ids), merged_results


def share_from_rank0(value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
