"""Ground truth of a batch, validated once and padded so every image shares one tensor.

Padding to the largest number of boxes in the batch lets the matcher build the
cost matrices of all images (and all decoder layers) in one batched pass; each
image's real targets are the first ``sizes[b]`` columns.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from hdetr.errors import UserError


@dataclass(frozen=True)
class PaddedTargets:
    """labels [B, G] int64, boxes [B, G, 4] normalised cxcywh, sizes: real boxes per image (G = max)."""

    labels: torch.Tensor
    boxes: torch.Tensor
    sizes: tuple[int, ...]

    @property
    def batch_size(self) -> int:
        return len(self.sizes)

    @property
    def max_size(self) -> int:
        return self.labels.shape[1]

    @property
    def total(self) -> int:
        return sum(self.sizes)

    def class_agnostic(self) -> "PaddedTargets":
        """The same boxes with every label 0 (the two-stage encoder proposals' targets)."""
        return PaddedTargets(torch.zeros_like(self.labels), self.boxes, self.sizes)


def pad_targets(targets: list[dict], num_classes: int, device: torch.device) -> PaddedTargets:
    """Validate ``targets`` (list of dicts with ``labels`` [G] and ``boxes`` [G, 4]) and pad them.

    Raises UserError naming the image and the value for a label outside
    [0, num_classes) (the official code dies with a device-side assert there),
    for boxes that are not [G, 4], and for non-finite or negative-size boxes.
    """
    if not isinstance(targets, (list, tuple)):
        raise UserError(f"targets: expected a list of dicts (one per image), got {type(targets).__name__}")
    sizes = []
    for index, target in enumerate(targets):
        if "labels" not in target or "boxes" not in target:
            raise UserError(f"targets[{index}]: needs 'labels' and 'boxes', got keys {sorted(target)}")
        labels, boxes = target["labels"], target["boxes"]
        if labels.ndim != 1 or boxes.ndim != 2 or boxes.shape[-1] != 4 or len(labels) != len(boxes):
            raise UserError(
                f"targets[{index}]: expected labels [G] and boxes [G, 4], got labels {tuple(labels.shape)} "
                f"and boxes {tuple(boxes.shape)}"
            )
        sizes.append(len(labels))
    batch, max_size = len(targets), max(sizes, default=0)
    labels = torch.zeros(batch, max_size, dtype=torch.int64, device=device)
    # Padding boxes are a valid unit-ish box so that costs computed on padding stay finite.
    boxes = torch.full((batch, max_size, 4), 0.5, device=device)
    for index, target in enumerate(targets):
        labels[index, : sizes[index]] = target["labels"].to(device=device, dtype=torch.int64)
        boxes[index, : sizes[index]] = target["boxes"].to(device=device, dtype=boxes.dtype)
    _check_values(labels, boxes, sizes, num_classes)
    return PaddedTargets(labels, boxes, tuple(sizes))


def _check_values(labels: torch.Tensor, boxes: torch.Tensor, sizes: list[int], num_classes: int) -> None:
    # One host synchronisation for the whole batch: every check is folded into a flag per image.
    bad_label = (labels < 0) | (labels >= num_classes)
    bad_box = ~torch.isfinite(boxes).all(-1) | (boxes[..., 2:] < 0).any(-1)
    flags = torch.stack((bad_label.any(1), bad_box.any(1)), dim=1).cpu()
    if not bool(flags.any()):
        return
    for index, (label_flag, box_flag) in enumerate(flags.tolist()):
        if label_flag:
            label = labels[index][bad_label[index]][0].item()
            raise UserError(
                f"targets[{index}]: label {label} is outside [0, {num_classes}) "
                f"(num_classes={num_classes}); check the dataset's category mapping"
            )
        if box_flag:
            box = boxes[index][bad_box[index]][0].tolist()
            raise UserError(
                f"targets[{index}]: box {box} is not a finite normalised cxcywh box with width, height >= 0"
            )
