"""hdetr: H-DETR (DETRs with Hybrid Matching, CVPR 2023) in PyTorch.

Top-level entry points (imported lazily so ``import hdetr`` stays cheap):

- ``hdetr.build_model(config)`` -> H-Deformable-DETR ``nn.Module`` (``model.predict``)
- ``hdetr.build_criterion(config)`` -> the hybrid-matching criterion
- ``hdetr.from_official_checkpoint(path_or_state_dict, **overrides)`` -> model
- ``hdetr.to_official_state_dict(model)`` -> state dict the official code loads
- ``hdetr.load_reference(name)`` / ``hdetr.list_references()``: the shipped trained models
- ``hdetr.ModelConfig`` and the scheme presets in ``hdetr.config.model``
"""
from __future__ import annotations

from hdetr.lazy_exports import lazy_exports

__version__ = "0.1.0"

_LAZY = {
    "ModelConfig": "hdetr.config.model",
    "ConfigError": "hdetr.config.base",
    "build_model": "hdetr.models",
    "build_criterion": "hdetr.losses",
    "from_official_checkpoint": "hdetr.checkpoint_io",
    "to_official_state_dict": "hdetr.checkpoint_io",
    "load_reference": "hdetr.references",
    "list_references": "hdetr.references",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())

__all__ = list(_LAZY)
