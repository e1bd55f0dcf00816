"""Optimiser and learning-rate schedule of the official H-Deformable-DETR recipe.

Three parameter groups, matched by name substrings exactly as ``main.py`` does:
the backbone (``lr_backbone``), the deformable attention's linear projections that
predict sampling offsets and reference points (``lr * lr_linear_proj_mult``), and
everything else (``lr``).

One learning-rate schedule, in optimiser steps: the official per-epoch drops
(``StepLR(lr_drop)``, or ``lr_drop_epochs``) converted to steps at the run's
steps per epoch, plus ``lr_drop_iters`` for runs shorter than an epoch's schedule;
each milestone multiplies the learning rate by 0.1. The trainer steps it after
every optimiser step, so a run stopped anywhere resumes at the same point of it.
"""
from __future__ import annotations

import collections

import torch
from torch import nn

from hdetr.errors import ConfigError
from hdetr.config.train import TrainConfig


def _matches(name: str, keywords: list[str]) -> bool:
    return any(k in name for k in keywords)


def build_param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Trainable parameters split into the official groups; each group carries its ``name``.

    A keyword list that matches no parameter of the model at all is an error: a silent
    mismatch would train the backbone at the full learning rate.
    """
    named = list(model.named_parameters())
    for field, keywords in (("lr_backbone_names", cfg.lr_backbone_names),
                            ("lr_linear_proj_names", cfg.lr_linear_proj_names)):
        if keywords and not any(_matches(n, keywords) for n, _ in named):
            raise ConfigError(
                f"TrainConfig.{field}={keywords} matches no parameter of {type(model).__name__} "
                f"(first names: {', '.join(n for n, _ in named[:3])})"
            )
    trainable = [(n, p) for n, p in named if p.requires_grad]
    backbone = [p for n, p in trainable if _matches(n, cfg.lr_backbone_names)]
    linear_proj = [p for n, p in trainable
                   if _matches(n, cfg.lr_linear_proj_names) and not _matches(n, cfg.lr_backbone_names)]
    rest = [p for n, p in trainable
            if not _matches(n, cfg.lr_backbone_names) and not _matches(n, cfg.lr_linear_proj_names)]
    groups = [
        {"name": "default", "params": rest, "lr": cfg.lr},
        {"name": "backbone", "params": backbone, "lr": cfg.lr_backbone},
        {"name": "linear_proj", "params": linear_proj, "lr": cfg.lr * cfg.lr_linear_proj_mult},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over the official parameter groups.

    ``cfg.fused_optimizer``: torch's fused AdamW kernel (one pass per tensor instead of a
    dozen element-wise ops), the same update up to float round-off; about a tenth of a
    small CPU model's step is the optimiser (benchmarks/train_step.py). It needs every
    parameter as a floating tensor on the CPU or a GPU; otherwise the per-tensor loop runs.
    """
    groups = build_param_groups(model, cfg)
    if not groups:
        raise ConfigError(f"{type(model).__name__} has no trainable parameters")
    params = [p for g in groups for p in g["params"]]
    fused = cfg.fused_optimizer and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)


LR_GAMMA = 0.1  # the official recipe's drop factor


def lr_milestones(cfg: TrainConfig, steps_per_epoch: int) -> list[int]:
    """The optimiser steps after which the learning rate drops by ``LR_GAMMA`` (a step listed twice drops twice).

    The epoch schedule (every ``lr_drop`` epochs as the official StepLR, or the
    ``lr_drop_epochs`` milestones) becomes ``epoch * steps_per_epoch``; ``lr_drop_iters`` are added as given.
    """
    if steps_per_epoch < 1:
        raise ConfigError(f"lr_milestones: steps_per_epoch={steps_per_epoch} must be >= 1")
    epochs = cfg.lr_drop_epochs or range(cfg.lr_drop, cfg.epochs + 1, cfg.lr_drop)
    return sorted([e * steps_per_epoch for e in epochs] + list(cfg.lr_drop_iters or ()))


def build_lr_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                       steps_per_epoch: int) -> torch.optim.lr_scheduler.MultiStepLR:
    """The run's schedule (``lr_milestones``), stepped once per optimiser step."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=lr_milestones(cfg, steps_per_epoch),
                                                gamma=LR_GAMMA)


def set_lr_milestones(scheduler: torch.optim.lr_scheduler.MultiStepLR, cfg: TrainConfig,
                      steps_per_epoch: int) -> None:
    """Give a (resumed) scheduler the milestones of ``cfg``: the config of a resumed run wins over the saved one."""
    scheduler.milestones = collections.Counter(lr_milestones(cfg, steps_per_epoch))


def convert_epoch_scheduler_state(scheduler: torch.optim.lr_scheduler.MultiStepLR,
                                  optimizer: torch.optim.Optimizer, global_step: int) -> None:
    """Continue a checkpoint of the per-epoch schedule (checkpoint version 1) on the per-step one.

    Version 1 stepped a StepLR / MultiStepLR per epoch and applied ``lr_drop_iters`` by
    hand; both drops already sit in the saved optimiser's learning rates, so the
    step schedule continues from those rates at ``global_step`` (its next milestones
    still ahead), which is exactly where the old run would have gone on.
    """
    scheduler.last_epoch = global_step
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]  # what get_last_lr() reports


def lr_by_group(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    return {g.get("name", str(i)): g["lr"] for i, g in enumerate(optimizer.param_groups)}
