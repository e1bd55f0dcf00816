"""Turn model-side tensors (normalised images, normalised boxes) into pixels for display."""
from __future__ import annotations

import numpy as np
import torch

from hdetr.boxes import cxcywh_to_xyxy
from hdetr.errors import UserError

from hdetr.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # the normalisation the data path applies


def to_display(image: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """Normalised image [3, H, W] -> displayable float array [H, W, 3] in [0, 1]."""
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if hasattr(image, "shape") else type(image).__name__
        raise UserError(f"to_display: expected a normalised image tensor [3, H, W], got {shape}")
    mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
    pixels = image.detach().float().cpu() * std_t + mean_t
    return pixels.clamp(0, 1).permute(1, 2, 0).numpy()


def to_uint8(image: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """Normalised image [3, H, W] -> uint8 array [H, W, 3] (what plotly's Image trace shows)."""
    return (to_display(image, mean, std) * 255).round().astype(np.uint8)


def boxes_to_pixels(boxes: torch.Tensor, height: int, width: int) -> np.ndarray:
    """Normalised cxcywh boxes [N, 4] -> xyxy pixel boxes [N, 4] for an image of ``height`` x ``width``."""
    boxes = torch.as_tensor(boxes).detach().float().cpu().reshape(-1, 4)
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    return (cxcywh_to_xyxy(boxes) * scale).numpy()


def image_size(image: torch.Tensor) -> tuple[int, int]:
    """(height, width) of a [3, H, W] image."""
    return int(image.shape[-2]), int(image.shape[-1])


def padded_extent(boxes, height: int, width: int, pad: float = 0.04) -> tuple[tuple, tuple]:
    """((x0, x1), (y0, y1)) holding the whole image and every box (xyxy pixels, any iterable of 4-tuples), plus a
    margin of ``pad`` x the image's longer side, so objects and predictions that cross the image edge are not cut."""
    x0, y0, x1, y1 = 0.0, 0.0, float(width), float(height)
    for bx0, by0, bx1, by1 in boxes:
        x0, y0, x1, y1 = min(x0, float(bx0)), min(y0, float(by0)), max(x1, float(bx1)), max(y1, float(by1))
    margin = pad * max(width, height)
    return (x0 - margin, x1 + margin), (y0 - margin, y1 + margin)
