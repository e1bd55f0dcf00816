"""hdetr's training checkpoints: atomic writes, exact-resume state, and format detection
(official checkpoints are converted by ``hdetr.checkpoints.official``).

A checkpoint is written to a temporary file in the same folder, flushed and fsynced,
then moved over the old one with ``os.replace`` (atomic on POSIX): a process killed
during a save leaves the previous checkpoint intact, never a half-written one.

An hdetr checkpoint is a dict with ``format == "hdetr-checkpoint"``::

    version                          2 (the lr_scheduler's state counts optimiser steps)
    model, optimizer, lr_scheduler   state dicts
    epoch                            the epoch in progress (0-based)
    batches_done                     batches of that epoch already trained on
    global_step                      optimiser steps so far
    rng                              python / numpy / torch / cuda random states
    config                           the ExperimentConfig as a dict
    best                             {"AP": value, "epoch": e, "global_step": s} or None

Official H-Deformable-DETR checkpoints are ``{"model", "optimizer", "lr_scheduler",
"epoch", "args"}``; ``checkpoint_format`` tells the two apart.
"""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np
import torch
from torch import nn

from hdetr.checkpoints.state_dict import load_torch_file
from hdetr.errors import UserError

FORMAT = "hdetr-checkpoint"
# 2: the learning-rate scheduler steps once per optimiser step (1: once per epoch, converted on resume by
# hdetr.engine.optim.convert_epoch_scheduler_state)
VERSION = 2
LAST = "checkpoint_last.pth"
BEST = "checkpoint_best.pth"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale_temporaries(path: Path) -> None:
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        try:
            stale.unlink()
        except FileNotFoundError:
            pass


def _write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    """``write`` into a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` so that readers see the old file or the new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    return _write_atomic(path, lambda f: torch.save(obj, f))


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` all-or-nothing, as ``save_atomic``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _write_atomic(path, lambda f: f.write(text.encode()))


def copy_atomic(src: str | Path, dst: str | Path) -> Path:
    """Copy a finished checkpoint (e.g. last -> best) with the same all-or-nothing guarantee."""
    with open(src, "rb") as fin:
        return _write_atomic(Path(dst), lambda f: shutil.copyfileobj(fin, f, length=16 << 20))


# ---------------------------------------------------------------- random states

def capture_rng_state() -> dict[str, Any]:
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------- reading

def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load any checkpoint file on the CPU; a file that is not a checkpoint raises UserError."""
    # Never unpickle arbitrary objects: a file that needs more than weights_only allows is refused,
    # with the way out for a file the user trusts.
    obj = load_torch_file(
        path, "checkpoint",
        hint="; if you trust this file, extract its weights with torch.load(path, weights_only=False)['model'] "
             "and save them alone with torch.save",
    )
    if not isinstance(obj, dict):
        raise UserError(f"{path}: not a checkpoint: expected a mapping, found {type(obj).__name__}")
    return obj


def checkpoint_format(ckpt: dict[str, Any], source: str = "checkpoint") -> str:
    """``"hdetr"``, ``"official"`` (H-Deformable-DETR's main.py) or ``"state_dict"`` (bare weights)."""
    if ckpt.get("format") == FORMAT:
        return "hdetr"
    if isinstance(ckpt.get("model"), dict):
        return "official"
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return "state_dict"
    raise UserError(
        f"{source}: not a checkpoint: expected an hdetr checkpoint, an official one with a 'model' entry, or a "
        f"state dict; found keys {', '.join(sorted(map(str, ckpt))[:8])}"
    )


def training_state(*, model: nn.Module, optimizer, lr_scheduler, epoch: int, batches_done: int,
                   global_step: int, config: dict, best: dict | None) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": lr_scheduler.state_dict(),
        "epoch": epoch,
        "batches_done": batches_done,
        "global_step": global_step,
        "rng": capture_rng_state(),
        "config": config,
        "best": best,
    }


def read_training_checkpoint(path: str | Path) -> dict[str, Any]:
    ckpt = read_checkpoint(path)
    fmt = checkpoint_format(ckpt, str(path))
    if fmt != "hdetr":
        raise UserError(f"{path}: cannot resume training from an {fmt} checkpoint; it holds no hdetr training state")
    return ckpt
