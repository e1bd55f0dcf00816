"""Datasets, augmentations, batching and the synthetic benchmark.

- ``build_dataset(data_config, split)`` -> ``CocoDetection`` (``hdetr.data.dataset``)
- ``collate``, ``build_dataloader``, ``set_epoch`` (``hdetr.data.loader``)
- ``build_transforms``, ``SCALE_PRESETS`` (``hdetr.data.transforms``)
- ``hdetr.data.synthetic``: ``generate``, ``default_dataset_dir``, ``ensure_dataset``
"""
from hdetr.data.dataset import CocoDetection, build_dataset
from hdetr.data.loader import build_dataloader, collate, set_epoch
from hdetr.data.transforms import SCALE_PRESETS, build_transforms

__all__ = ["CocoDetection", "SCALE_PRESETS", "build_dataloader", "build_dataset", "build_transforms", "collate",
           "set_epoch"]
