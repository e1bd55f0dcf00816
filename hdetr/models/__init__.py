"""H-Deformable-DETR model: ``build_model(config) -> HDeformableDETR``."""
from __future__ import annotations

from hdetr.config.model import ModelConfig
from hdetr.models.hdetr import HDeformableDETR


def build_model(config: ModelConfig) -> HDeformableDETR:
    """A freshly initialised model for ``config`` (backbone weights from
    ``config.pretrained_backbone`` when given)."""
    if not isinstance(config, ModelConfig):
        raise TypeError(f"build_model expects a ModelConfig, got {type(config).__name__}")
    return HDeformableDETR(config)


__all__ = ["HDeformableDETR", "build_model"]
