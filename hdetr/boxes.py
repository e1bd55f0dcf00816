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


def _intersection_and_union(boxes1: torch.Tensor, boxes2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Intersection and union areas of xyxy boxes [..., 4] and [..., 4] (leading dims broadcast) -> [...], [...].

    Works on the unbound corners, so broadcasting [Q, 1, 4] against [1, G, 4] builds
    [Q, G] tensors and never a [Q, G, 4] one.
    """
    x0a, y0a, x1a, y1a = boxes1.unbind(-1)
    x0b, y0b, x1b, y1b = boxes2.unbind(-1)
    inter = (torch.minimum(x1a, x1b) - torch.maximum(x0a, x0b)).clamp(min=0)
    inter = inter * (torch.minimum(y1a, y1b) - torch.maximum(y0a, y0b)).clamp(min=0)
    union = (x1a - x0a) * (y1a - y0a) + (x1b - x0b) * (y1b - y0b) - inter
    return inter, union


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise IoU of xyxy boxes [N, 4] x [M, 4] -> (iou [N, M], union [N, M])."""
    inter, union = _intersection_and_union(boxes1[:, None, :], boxes2[None, :, :])
    return inter / union, union


def paired_generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Generalised IoU of xyxy boxes [..., 4] and [..., 4], element by element (leading dims broadcast) -> [...].

    The one implementation of GIoU: the loss takes matched pairs ([N, 4] and [N, 4]),
    :func:`generalized_box_iou` and the matching cost broadcast [.., Q, 1, 4] against
    [..., 1, G, 4]. Values lie in [-1, 1]; boxes must have x1 >= x0 and y1 >= y0.
    """
    inter, union = _intersection_and_union(boxes1, boxes2)
    x0a, y0a, x1a, y1a = boxes1.unbind(-1)
    x0b, y0b, x1b, y1b = boxes2.unbind(-1)
    # The enclosing box of two boxes with x1 >= x0 is never narrower than either, so its
    # sides need no clamp.
    hull = (torch.maximum(x1a, x1b) - torch.minimum(x0a, x0b)) * (torch.maximum(y1a, y1b) - torch.minimum(y0a, y0b))
    return inter / union - (hull - union) / hull


def generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise generalised IoU of xyxy boxes [N, 4] x [M, 4] -> [N, M] in [-1, 1].

    Degenerate boxes (x1 < x0) would give meaningless values (and inf/NaN
    gradients), so they are rejected here rather than discovered in a loss.
    """
    if not bool((boxes1[:, 2:] >= boxes1[:, :2]).all()):
        raise ValueError("generalized_box_iou: boxes1 has degenerate boxes (x1 < x0 or y1 < y0)")
    if not bool((boxes2[:, 2:] >= boxes2[:, :2]).all()):
        raise ValueError("generalized_box_iou: boxes2 has degenerate boxes (x1 < x0 or y1 < y0)")
    return paired_generalized_box_iou(boxes1[:, None, :], boxes2[None, :, :])


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """logit(x) with x clamped to [0, 1] and both terms to >= eps, as the official code."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))
