"""The resumable data order: epochs, ranks, mid-epoch starts, per-sample seeds."""
import random

import numpy as np
import torch

from hdetr.engine.data_order import EpochBatchSampler, SeededSamples


def _flatten(batches):
    return [i for b in batches for i, _ in b]


def test_each_epoch_is_a_permutation_and_epochs_differ():
    s = EpochBatchSampler(10, 2, seed=3)
    s.set_epoch(0)
    e0 = _flatten(list(s))
    s.set_epoch(1)
    e1 = _flatten(list(s))
    assert sorted(e0) == list(range(10)) and sorted(e1) == list(range(10)) and e0 != e1
    s.set_epoch(0)
    assert _flatten(list(s)) == e0  # the order is a function of (seed, epoch)


def test_ranks_split_every_global_batch_like_one_process_with_the_total_batch():
    single = EpochBatchSampler(13, 4, seed=1)
    ranks = [EpochBatchSampler(13, 2, world_size=2, rank=r, seed=1) for r in range(2)]
    for s in (single, *ranks):
        s.set_epoch(5)
    one = list(single)
    two = list(zip(*(list(r) for r in ranks)))
    assert len(one) == len(two) == 3  # 13 // 4, the incomplete batch dropped
    for b_one, (b_r0, b_r1) in zip(one, two):
        assert b_one == b_r0 + b_r1  # same images and the same per-sample seeds


def test_a_mid_epoch_start_continues_the_same_order():
    s = EpochBatchSampler(12, 2, seed=0)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, start_batch=4)
    assert len(s) == 2 and list(s) == full[4:]


class RandomItems(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        return index, random.random(), float(np.random.rand()), float(torch.rand(()))


def test_seeded_samples_are_reproducible_and_leave_the_global_rng_alone():
    data = SeededSamples(RandomItems())
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    expected = (torch.rand(()), random.random(), np.random.rand())
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    a = data[(1, 123)]
    b = data[(1, 123)]
    c = data[(1, 124)]
    assert a == b and a[1:] != c[1:]
    assert (torch.rand(()), random.random(), np.random.rand()) == expected
