"""Batching: collate into a list of images plus targets, and the data loader.

Images keep their own sizes (the model pads them itself), so ``collate`` does not
stack: it returns ``(list[Tensor [3, H_i, W_i]], list[target dict])``.

Shuffling and augmentation are reproducible from ``seed``: the loader owns a
torch generator that draws the sampler order and the per-worker seeds. Under DDP
the ``DistributedSampler`` gives each rank its share; call
``set_epoch(loader, epoch)`` at the start of every epoch so the shards are
reshuffled (it is a no-op for the single-process sampler, whose generator
already moves on each epoch).
"""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler


def collate(batch: list[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """[(image, target), ...] -> ([image, ...], [target, ...])."""
    images, targets = zip(*batch) if batch else ((), ())
    return list(images), list(targets)


def build_dataloader(dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int = 0,
                     distributed: bool = False, seed: int = 0, drop_last: bool = False) -> DataLoader:
    """A DataLoader over ``dataset`` yielding ``collate`` batches.

    ``distributed=True`` needs an initialised ``torch.distributed`` process group and
    uses a DistributedSampler (rank and world size from the group); remember
    ``set_epoch``. ``drop_last`` drops the last incomplete batch (the official
    training loader does).
    """
    if batch_size < 1:
        raise ValueError(f"build_dataloader: batch_size={batch_size} must be >= 1")
    generator = torch.Generator().manual_seed(seed)
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
    elif shuffle:
        sampler = RandomSampler(dataset, generator=generator)
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, collate_fn=collate,
        num_workers=num_workers, persistent_workers=num_workers > 0, generator=generator,
    )


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell a distributed sampler which epoch starts, so each epoch has its own order."""
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
