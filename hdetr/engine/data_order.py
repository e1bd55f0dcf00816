"""A data order that a run can stop and resume in the middle of an epoch, exactly.

``EpochBatchSampler`` draws one permutation per epoch from ``(seed, epoch)`` and cuts
it into global batches of ``batch_size * world_size`` images; rank r takes its slice
of every global batch, so N processes see the same images per step as one process
with N times the batch. ``start_batch`` skips the batches already trained on.

``SeededSamples`` gives every sample its own random seed, derived from
``(seed, epoch, position in the epoch)``: augmentation draws the same numbers whether
the sample is loaded in the main process or a worker, before or after a resume.
"""
from __future__ import annotations

import random
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def sample_seed(seed: int, epoch: int, position: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1)[0])


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields this rank's batches of ``(dataset index, sample seed)`` for one epoch.

    Incomplete global batches are dropped (as the official ``drop_last=True``).
    """

    def __init__(self, dataset_size: int, batch_size: int, *, world_size: int = 1, rank: int = 0,
                 seed: int = 0, shuffle: bool = True) -> None:
        if dataset_size < batch_size * world_size:
            from hdetr.errors import UserError

            raise UserError(
                f"the training set has {dataset_size} images, fewer than one global batch "
                f"(train.batch_size={batch_size} x {world_size} processes)"
            )
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.start_batch = 0

    @property
    def batches_per_epoch(self) -> int:
        return self.dataset_size // (self.batch_size * self.world_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start_batch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.dataset_size, generator=g).tolist()
        else:
            order = list(range(self.dataset_size))
        global_batch = self.batch_size * self.world_size
        for b in range(self.start_batch, self.batches_per_epoch):
            first = b * global_batch + self.rank * self.batch_size
            yield [(order[p], sample_seed(self.seed, self.epoch, p)) for p in range(first, first + self.batch_size)]


class SeededSamples(Dataset):
    """Wraps a dataset so ``wrapped[(index, seed)]`` loads ``dataset[index]`` under its own seed.

    The global random states (python, numpy, torch) are restored afterwards, so loading
    in the main process does not disturb the training's own random stream.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)
