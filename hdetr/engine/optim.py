"""Optimiser and learning-rate schedule of the official H-Deformable-DETR recipe.

Three parameter groups, matched by name substrings exactly as ``main.py`` does:
the backbone (``lr_backbone``), the deformable attention's linear projections that
predict sampling offsets and reference points (``lr * lr_linear_proj_mult``), and
everything else (``lr``). The schedule steps once per epoch.
"""
from __future__ import annotations

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


def build_lr_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """StepLR(lr_drop) as the official code, or MultiStepLR(lr_drop_epochs) when given; stepped per epoch."""
    if cfg.lr_drop_epochs:
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.lr_drop_epochs))
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_drop)


def lr_by_group(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    return {g.get("name", str(i)): g["lr"] for i, g in enumerate(optimizer.param_groups)}
