"""Loading ImageNet (or other) backbone weights from a local file, with errors that say what is wrong."""
from __future__ import annotations

import torch

from hdetr.checkpoints.state_dict import load_torch_file
from hdetr.errors import UserError

# Prefixes that wrap a backbone's own key names in common checkpoint layouts
# (DistributedDataParallel, an official H-DETR checkpoint, a detector's backbone).
_WRAPPER_PREFIXES = ("module.", "backbone.0.body.", "backbone.body.", "backbone.", "body.")


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """A state dict from ``path`` (a bare one, or under ``model`` / ``state_dict``), loaded with
    ``weights_only=True``; a missing or unreadable file raises UserError naming it."""
    data = load_torch_file(path, "pretrained backbone weights")
    for key in ("model", "state_dict"):
        if isinstance(data, dict) and key in data and isinstance(data[key], dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise UserError(f"pretrained backbone weights: {path} does not hold a state dict of tensors")
    return data


def strip_wrapper_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove one prefix shared by every key (``module.``, ``backbone.0.body.`` ...)."""
    for prefix in _WRAPPER_PREFIXES:
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            return {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict
