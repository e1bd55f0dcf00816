"""hdetr: H-DETR (DETRs with Hybrid Matching, CVPR 2023) in PyTorch.

Top-level entry points (imported lazily so ``import hdetr`` stays cheap):

- ``hdetr.build_model(config)`` -> H-Deformable-DETR ``nn.Module`` (``model.predict``)
- ``hdetr.build_criterion(config, num_epochs=None)`` -> the hybrid-matching criterion (``num_epochs``,
  the training schedule's length ``train.epochs``, for the epoch scheme)
- ``hdetr.from_official_checkpoint(path_or_state_dict, **overrides)`` -> model
- ``hdetr.to_official_state_dict(model)`` -> state dict the official code loads
- ``hdetr.load_reference(name)`` / ``hdetr.list_references()``: the shipped trained models
- ``hdetr.ModelConfig`` and the scheme presets in ``hdetr.config.model``
"""
from __future__ import annotations

from hdetr.lazy_exports import lazy_exports

__version__ = "0.1.0"

_LAZY = {
    "hdetr.config.model": ("ModelConfig",),
    "hdetr.errors": ("ConfigError",),
    "hdetr.models": ("build_model",),
    "hdetr.losses": ("build_criterion",),
    "hdetr.checkpoints.official": ("from_official_checkpoint", "to_official_state_dict"),
    "hdetr.checkpoints.references": ("load_reference", "list_references"),
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY, globals())
