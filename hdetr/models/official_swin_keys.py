"""Key names of the official H-DETR Swin backbone <-> timm's Swin (same tensors).

The official (Microsoft) Swin puts each patch-merging layer at the end of stage N
(``layers.N.downsample``); timm puts it at the start of stage N+1. The official state
dict also stores each block's ``relative_position_index`` (a constant table that timm
keeps out of its state dict).
"""
from __future__ import annotations

import re

import torch
from torch import nn

_PREFIX = "backbone.0.body."
_DOWNSAMPLE = re.compile(r"^layers\.(\d+)\.downsample\.(.*)$")


def to_timm(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official Swin keys (under ``backbone.0.body.``) -> this project's timm-based keys."""
    out = {}
    for key, value in state_dict.items():
        if not key.startswith(_PREFIX):
            out[key] = value
            continue
        local = key[len(_PREFIX):]
        if local.endswith(("relative_position_index", "attn_mask")):
            continue
        match = _DOWNSAMPLE.match(local)
        if match:
            local = f"layers.{int(match.group(1)) + 1}.downsample.{match.group(2)}"
        out[_PREFIX + local] = value
    return out


def to_official(state_dict: dict[str, torch.Tensor], body: nn.Module) -> dict[str, torch.Tensor]:
    """This project's keys -> official Swin keys, with the relative position tables of ``body``."""
    out = {}
    for key, value in state_dict.items():
        if not key.startswith(_PREFIX):
            out[key] = value
            continue
        local = key[len(_PREFIX):]
        match = _DOWNSAMPLE.match(local)
        if match:
            local = f"layers.{int(match.group(1)) - 1}.downsample.{match.group(2)}"
        out[_PREFIX + local] = value
    for name, buffer in body.named_buffers():
        if name.endswith("relative_position_index"):
            out[_PREFIX + name] = buffer
    return out
