"""Reading PyTorch files and loading state dicts, with errors that name the file and the keys.

``load_torch_file`` reads a file on the CPU with ``weights_only=True``; ``load_exactly``
loads a state dict into a module strictly, listing missing, unexpected and mis-shaped keys.
Any format above a bare file or state dict lives elsewhere: the official checkpoints in
``hdetr.checkpoints.official``, hdetr's own training checkpoints in
``hdetr.checkpoints.training``.

Official checkpoints keep their training arguments as an ``argparse.Namespace``; it is the
one non-tensor class allowed besides what ``weights_only`` already accepts.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import torch

from hdetr.errors import UserError

# torch's messages run to hundreds of characters; the first part says what went wrong
_DETAIL_LIMIT = 120


def load_torch_file(path: str | Path, what: str, *, hint: str = "") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``.

    A missing file, or one that is not such a checkpoint, raises UserError that starts with
    ``"{what} {path}:"``; ``hint`` is appended to the second kind.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise UserError(f"{what} {path}: does not exist or is not a file")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means "not a readable checkpoint"
        raise unreadable_file_error(path, what, exc, hint=hint) from exc


def unreadable_file_error(path: str | Path, what: str, exc: BaseException, *, hint: str = "") -> UserError:
    """The UserError for a file that ``torch.load`` refused, with the first line of its reason."""
    text = str(exc).strip()
    reason = f"{type(exc).__name__}: {text.splitlines()[0][:_DETAIL_LIMIT]}" if text else type(exc).__name__
    return UserError(f"{what} {path}: not a PyTorch checkpoint readable with weights_only=True ({reason}){hint}")


def describe_key_mismatch(missing: list[str], unexpected: list[str], mismatched: list[str]) -> str:
    """``"missing keys [...]; unexpected keys [...]; shape mismatch [...]"`` for the non-empty lists."""
    parts = []
    if missing:
        parts.append(f"missing keys {_listing(missing)}")
    if unexpected:
        parts.append(f"unexpected keys {_listing(unexpected)}")
    if mismatched:
        parts.append(f"shape mismatch {_listing(mismatched)}")
    return "; ".join(parts)


def shape_mismatch(key: str, in_file: torch.Tensor, in_model: torch.Tensor) -> str | None:
    """``"key: checkpoint (shape) vs model (shape)"`` when the shapes differ, else None."""
    if tuple(in_file.shape) == tuple(in_model.shape):
        return None
    return f"{key}: checkpoint {tuple(in_file.shape)} vs model {tuple(in_model.shape)}"


def load_exactly(module: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """``module.load_state_dict(state_dict, strict=True)``; any missing, unexpected or mis-shaped
    key raises UserError naming ``source``, the module's class and the keys (with both shapes)."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = [m for k in sorted(own) if k in state_dict and (m := shape_mismatch(k, state_dict[k], own[k]))]
    if missing or unexpected or mismatched:
        raise UserError(f"{source}: checkpoint does not match the model ({type(module).__name__}): "
                        + describe_key_mismatch(missing, unexpected, mismatched))
    module.load_state_dict(state_dict, strict=True)


def _listing(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return f"[{shown}{f', ... ({len(items)} in all)' if len(items) > limit else ''}]"
