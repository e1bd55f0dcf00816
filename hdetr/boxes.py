"""Box formats and overlaps.

Boxes are ``[..., 4]`` tensors, either ``cxcywh`` (centre, width, height; the
model's normalised output format) or ``xyxy`` (corners).
"""
from __future__ import annotations

import torch


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] (cx, cy, w, h) -> [..., 4] (x0, y0, x1, y1)."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] (x0, y0, x1, y1) -> [..., 4] (cx, cy, w, h)."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack(((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] xyxy -> [...]."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise IoU of xyxy boxes [N, 4] x [M, 4] -> (iou [N, M], union [N, M])."""
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    lt = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return inter / union, union


def generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise generalised IoU of xyxy boxes [N, 4] x [M, 4] -> [N, M] in [-1, 1].

    Degenerate boxes (x1 < x0) would give meaningless values (and inf/NaN
    gradients), so they are rejected here rather than discovered in a loss.
    """
    if not bool((boxes1[:, 2:] >= boxes1[:, :2]).all()):
        raise ValueError("generalized_box_iou: boxes1 has degenerate boxes (x1 < x0 or y1 < y0)")
    if not bool((boxes2[:, 2:] >= boxes2[:, :2]).all()):
        raise ValueError("generalized_box_iou: boxes2 has degenerate boxes (x1 < x0 or y1 < y0)")
    iou, union = box_iou(boxes1, boxes2)
    lt = torch.min(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.max(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    hull = wh[..., 0] * wh[..., 1]
    return iou - (hull - union) / hull


def paired_generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Element-wise generalised IoU of xyxy boxes [N, 4] and [N, 4] -> [N].

    The same values as the diagonal of ``generalized_box_iou`` without building
    the N x N matrix (the criterion only needs matched pairs).
    """
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    lt = torch.max(boxes1[:, :2], boxes2[:, :2])
    rb = torch.min(boxes1[:, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = area1 + area2 - inter
    iou = inter / union
    lt_hull = torch.min(boxes1[:, :2], boxes2[:, :2])
    rb_hull = torch.max(boxes1[:, 2:], boxes2[:, 2:])
    wh_hull = (rb_hull - lt_hull).clamp(min=0)
    hull = wh_hull[:, 0] * wh_hull[:, 1]
    return iou - (hull - union) / hull


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """logit(x) with x clamped to [0, 1] and both terms to >= eps, as the official code."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))
