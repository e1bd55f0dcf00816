"""The training configuration: optimiser, schedule, budget, checkpoints, logging.

Defaults are the official H-Deformable-DETR recipe (``main.py`` flags of the same
names): AdamW with lr 2e-4 and weight decay 1e-4, the backbone at lr 2e-5, the
deformable attention's ``sampling_offsets`` / ``reference_points`` projections at
0.1x, a step drop of the learning rate (epoch 11 of 12, 30 of 36) and gradient
clipping at max-norm 0.1. ``batch_size`` is per process, as with the official
``--batch_size`` under ``torchrun``.
"""
from __future__ import annotations

import dataclasses

from hdetr.config.base import Config, ConfigError


@dataclasses.dataclass
class TrainConfig(Config):
    # --- optimiser (official flags) ---
    lr: float = 2e-4
    lr_backbone: float = 2e-5
    lr_backbone_names: list[str] = dataclasses.field(default_factory=lambda: ["backbone.0"])
    lr_linear_proj_names: list[str] = dataclasses.field(
        default_factory=lambda: ["reference_points", "sampling_offsets"]
    )
    lr_linear_proj_mult: float = 0.1
    weight_decay: float = 1e-4
    clip_max_norm: float = 0.1  # 0 disables clipping
    fused_optimizer: bool = True  # torch's fused AdamW (same update up to round-off); False: the per-tensor loop
    # --- schedule: one schedule in optimiser steps (hdetr.engine.optim.lr_milestones) ---
    epochs: int = 12
    lr_drop: int = 11  # lr x0.1 every lr_drop epochs (the official StepLR), converted to steps
    lr_drop_epochs: list[int] | None = None  # these epochs instead of every lr_drop
    # also lr x0.1 after these optimiser steps (short runs of less than an epoch's schedule)
    lr_drop_iters: list[int] | None = None
    batch_size: int = 2  # per process
    seed: int = 42
    # --- budget (CPU runs; 0 = no limit) ---
    max_iters: int = 0  # stop after this many optimiser steps in all
    max_wall_seconds: float = 0.0  # stop (with a checkpoint) once training has run this long
    # --- evaluation ---
    eval_every_epochs: int = 1  # 0 = only at the end
    eval_every_iters: int = 0  # also evaluate every N optimiser steps (learning curves of short runs)
    eval_max_images: int = 0  # evaluate on the first N validation images (0 = all)
    # each evaluation also scores the detections after class-wise NMS at this IoU and counts duplicates per
    # object (the NMS-free property, hdetr.evaluation.duplicates); 0 = off
    eval_nms_iou: float = 0.7
    # --- checkpoints and logs ---
    checkpoint_every_iters: int = 0  # extra mid-epoch checkpoints (0 = only at epoch ends)
    log_every_iters: int = 10  # metrics.jsonl / TensorBoard rows
    # every N steps, an "assignments" row (positives per object, matched IoU per group and layer; 0 = off)
    assignment_stats_every_iters: int = 0
    tensorboard: bool = True
    progress: bool = True  # tqdm bars (rank 0 only)
    # --- hardware ---
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    # opt-in bf16 autocast of the training forward pass on a CPU (fast with AVX512-BF16 / AMX; evaluation
    # stays fp32); benchmarks/train_step.py --bf16 measures the step, the AP effect is not established
    cpu_bf16: bool = False
    deterministic: bool = False  # torch.use_deterministic_algorithms (exact resume tests)
    num_threads: int = 0  # torch intra-op threads per process (0 = leave torch's default)
    find_unused_parameters: bool = False  # DistributedDataParallel flag

    def validate(self) -> None:
        def bad(msg: str) -> ConfigError:
            return ConfigError(f"TrainConfig: {msg}")

        for name in ("lr", "lr_backbone", "lr_linear_proj_mult", "weight_decay", "clip_max_norm",
                     "max_wall_seconds"):
            if getattr(self, name) < 0:
                raise bad(f"{name}={getattr(self, name)} must be >= 0")
        if self.lr <= 0:
            raise bad(f"lr={self.lr} must be > 0")
        if not 0.0 <= self.eval_nms_iou <= 1.0:
            raise bad(f"eval_nms_iou={self.eval_nms_iou} must be in [0, 1] (0 = no NMS measures)")
        for name in ("epochs", "lr_drop", "batch_size", "log_every_iters"):
            if getattr(self, name) < 1:
                raise bad(f"{name}={getattr(self, name)} must be >= 1")
        for name in ("max_iters", "eval_every_epochs", "eval_every_iters", "eval_max_images", "checkpoint_every_iters",
                     "assignment_stats_every_iters", "num_threads"):
            if getattr(self, name) < 0:
                raise bad(f"{name}={getattr(self, name)} must be >= 0")
        if self.lr_drop_epochs is not None:
            if any(e < 1 for e in self.lr_drop_epochs) or list(self.lr_drop_epochs) != sorted(self.lr_drop_epochs):
                raise bad(f"lr_drop_epochs={self.lr_drop_epochs} must be increasing epochs >= 1")
        if self.lr_drop_iters is not None:
            if any(e < 1 for e in self.lr_drop_iters) or list(self.lr_drop_iters) != sorted(set(self.lr_drop_iters)):
                raise bad(f"lr_drop_iters={self.lr_drop_iters} must be increasing optimiser steps >= 1")
        if self.device not in ("auto", "cpu", "cuda"):
            raise bad(f"device={self.device!r} is not one of auto, cpu, cuda")
