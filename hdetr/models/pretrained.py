"""Loading ImageNet (or other) backbone weights from a local file, with errors that say what is wrong."""
from __future__ import annotations

import os
import pickle

import torch
from torch import nn

from hdetr.errors import UserError

# Prefixes that wrap a backbone's own key names in common checkpoint layouts
# (DistributedDataParallel, an official H-DETR checkpoint, a detector's backbone).
_WRAPPER_PREFIXES = ("module.", "backbone.0.body.", "backbone.body.", "backbone.", "body.")


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """A state dict from ``path`` (a bare one, or under ``model`` / ``state_dict``), loaded with
    ``weights_only=True``; a missing or unreadable file raises UserError naming it."""
    if not os.path.isfile(path):
        raise UserError(f"pretrained backbone weights: {path} does not exist or is not a file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise UserError(f"pretrained backbone weights: {path} is not a PyTorch checkpoint "
                        f"readable with weights_only=True ({str(exc).splitlines()[0]})") from exc
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


def load_exactly(module: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``state_dict`` into ``module``; any missing, unexpected or mis-shaped key raises
    UserError naming ``source`` and the keys (with both shapes for mismatches)."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = [f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_short(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatch {_short(mismatched)}")
        raise UserError(f"{source}: does not fit the model: " + "; ".join(parts))
    module.load_state_dict(state_dict, strict=True)


def _short(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return f"[{shown}{f', ... ({len(items)} in all)' if len(items) > limit else ''}]"
