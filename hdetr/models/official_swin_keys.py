"""Key names of the official H-DETR Swin backbone <-> this project's (timm's) Swin names (same tensors).

The official (Microsoft) Swin puts each patch-merging layer at the end of stage N
(``layers.N.downsample``); timm and this project put it at the start of stage N+1. The
official state dict also stores each block's ``relative_position_index`` (a constant
table that is a non-persistent buffer here).
"""
from __future__ import annotations

import re

import torch
from torch import nn

_PREFIX = "backbone.0.body."
_DOWNSAMPLE = re.compile(r"^layers\.(\d+)\.downsample\.(.*)$")
_CONSTANT_BUFFERS = ("relative_position_index", "attn_mask")


def is_official_layout(local_keys) -> bool:
    """Whether Swin keys (without prefix) downsample at the end of a stage: only there does
    stage 0 have a patch-merging layer."""
    return any(k.startswith("layers.0.downsample.") for k in local_keys)


def is_constant_buffer(key: str) -> bool:
    """Index tables and shift masks: constants that some Swin files store and that are rebuilt here."""
    return key.endswith(_CONSTANT_BUFFERS)


def local_to_own(local: str) -> str | None:
    """One official Swin key (without prefix) -> this project's, or None for a constant buffer."""
    if is_constant_buffer(local):
        return None
    match = _DOWNSAMPLE.match(local)
    return f"layers.{int(match.group(1)) + 1}.downsample.{match.group(2)}" if match else local


def to_timm(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official Swin keys (under ``backbone.0.body.``) -> this project's keys."""
    out = {}
    for key, value in state_dict.items():
        if not key.startswith(_PREFIX):
            out[key] = value
        elif (local := local_to_own(key[len(_PREFIX):])) is not None:
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
