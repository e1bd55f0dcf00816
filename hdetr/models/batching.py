"""Variable-size images -> one padded batch plus a padding mask (the official NestedTensor)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from hdetr.errors import UserError


def batch_images(images: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad CHW images at the bottom/right to the largest height and width.

    images: list of [3, H_i, W_i] float tensors -> (padded [B, 3, H, W], mask [B, H, W] bool,
    True on padding).
    """
    if len(images) == 0:
        raise UserError("batch_images: got an empty list of images")
    for i, image in enumerate(images):
        if not isinstance(image, torch.Tensor) or image.dim() != 3:
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise UserError(f"batch_images: image {i} must be a CHW tensor, got {shape}")
        if image.shape[0] != images[0].shape[0]:
            raise UserError(f"batch_images: image {i} has {image.shape[0]} channels, image 0 has "
                            f"{images[0].shape[0]}")
    height = max(int(image.shape[1]) for image in images)
    width = max(int(image.shape[2]) for image in images)
    padded = torch.stack([F.pad(image, (0, width - image.shape[2], 0, height - image.shape[1]))
                          for image in images])
    mask = torch.ones((len(images), height, width), dtype=torch.bool, device=padded.device)
    for i, image in enumerate(images):
        mask[i, : image.shape[1], : image.shape[2]] = False
    return padded, mask


def valid_sizes(mask: torch.Tensor) -> torch.Tensor:
    """mask [B, H, W] (True = padding) -> [B, 2] int64 (h, w) of each image's unpadded extent."""
    heights = (~mask[:, :, 0]).sum(1)
    widths = (~mask[:, 0, :]).sum(1)
    return torch.stack([heights, widths], dim=1)


def resize_mask(mask: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Nearest-neighbour resize of a padding mask [B, H, W] to [B, h, w] (as the official code)."""
    return F.interpolate(mask[None].float(), size=tuple(size)).to(torch.bool)[0]
