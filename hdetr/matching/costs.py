"""The three matching costs of Deformable-DETR / H-DETR.

Every function here broadcasts over leading dimensions, so the same code builds
whole cost matrices (``cost_matrix``: all layers and images of a group at once)
and the per-pair costs of matched pairs (``[P, ·]`` against ``[P, ·]``) that
assignment records store.

The class cost is the focal-loss difference evaluated at the target's class
(positive focal term minus negative focal term), so a query that already scores
high for the right class is cheap to match; the ``1e-8`` inside the logs is the
official code's, kept so costs (and therefore assignments) are identical.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from hdetr.boxes import cxcywh_to_xyxy, paired_generalized_box_iou
from hdetr.config.model import ModelConfig
from hdetr.errors import ConfigError


_LOG_EPS = 1e-8


def _config_default(name: str) -> float:
    return next(f.default for f in dataclasses.fields(ModelConfig) if f.name == name)


@dataclass(frozen=True)
class CostWeights:
    """Weights of the class, L1 and GIoU costs and the focal parameters of the class cost; the
    defaults are ModelConfig's (``set_cost_*``, ``focal_*``), their one home."""

    cost_class: float = _config_default("set_cost_class")
    cost_bbox: float = _config_default("set_cost_bbox")
    cost_giou: float = _config_default("set_cost_giou")
    focal_alpha: float = _config_default("focal_alpha")
    focal_gamma: float = _config_default("focal_gamma")

    @classmethod
    def from_config(cls, config: ModelConfig) -> "CostWeights":
        return cls(cost_class=config.set_cost_class, cost_bbox=config.set_cost_bbox, cost_giou=config.set_cost_giou,
                   focal_alpha=config.focal_alpha, focal_gamma=config.focal_gamma)

    def __post_init__(self) -> None:
        if self.cost_class == 0 and self.cost_bbox == 0 and self.cost_giou == 0:
            raise ConfigError("ModelConfig: set_cost_class, set_cost_bbox and set_cost_giou cannot all be 0 "
                              "(the matcher would have nothing to match on)")


def class_cost(prob: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Focal class cost from the predicted probability of the target class.

    prob: [...] sigmoid score of each prediction for its candidate target's class.
    Returns [...] (lower is better; negative for confident correct predictions).
    """
    positive = alpha * (1 - prob) ** gamma * -(prob + _LOG_EPS).log()
    negative = (1 - alpha) * prob**gamma * -(1 - prob + _LOG_EPS).log()
    return positive - negative


def l1_cost(pred_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
    """L1 distance of normalised cxcywh boxes, [..., 4] x [..., 4] (broadcast) -> [...]."""
    return (pred_boxes - target_boxes).abs().sum(-1)


@torch.no_grad()
def giou_cost(pred_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
    """Negative generalised IoU of cxcywh boxes, [..., 4] x [..., 4] (broadcast) -> [...].

    Corners are taken before broadcasting, so a [L, B, Q, 1, 4] x [L, B, 1, G, 4] call
    builds [L, B, Q, G] tensors and no [L, B, Q, G, 4] one (matching costs carry no gradient).
    """
    return -paired_generalized_box_iou(cxcywh_to_xyxy(pred_boxes), cxcywh_to_xyxy(target_boxes))


@torch.no_grad()
def cost_matrix(
    weights: CostWeights,
    prob: torch.Tensor,
    pred_boxes: torch.Tensor,
    target_boxes: torch.Tensor,
) -> torch.Tensor:
    """Weighted matching cost of every prediction against every target.

    prob: [..., Q, G] score of each prediction for each target's class;
    pred_boxes: [..., Q, 4]; target_boxes: [..., G, 4] (leading dims broadcast) -> [..., Q, G].
    """
    shape = torch.broadcast_shapes(pred_boxes.shape[:-2], target_boxes.shape[:-2])
    l1 = torch.cdist(pred_boxes.expand(*shape, -1, -1), target_boxes.expand(*shape, -1, -1), p=1)
    cost = l1.mul_(weights.cost_bbox)
    cost.add_(class_cost(prob, weights.focal_alpha, weights.focal_gamma), alpha=weights.cost_class)
    cost.add_(giou_cost(pred_boxes[..., :, None, :], target_boxes[..., None, :, :]), alpha=weights.cost_giou)
    return cost
