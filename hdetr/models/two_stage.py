"""Two-stage proposals: every encoder pixel proposes a box, the best ones seed the decoder."""
from __future__ import annotations

import torch

from hdetr.errors import UserError
from hdetr.models.batching import valid_sizes


def grid_proposals(memory_padding_mask: torch.Tensor,
                   spatial_shapes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One proposal per pixel: its centre in the image's valid region and a size of
    0.05 * 2**level, as logits; padding pixels and proposals touching the border get +inf.

    memory_padding_mask [B, S] (True = padding), spatial_shapes [L, 2] -> (proposals
    [B, S, 4] unactivated (cx, cy, w, h), usable [B, S, 1] bool: False where +inf).
    """
    batch = memory_padding_mask.shape[0]
    device = memory_padding_mask.device
    proposals = []
    start = 0
    for level, (height, width) in enumerate(spatial_shapes.tolist()):
        mask = memory_padding_mask[:, start:start + height * width].view(batch, height, width)
        valid_h, valid_w = valid_sizes(mask).unbind(1)
        grid_y, grid_x = torch.meshgrid(
            torch.linspace(0, height - 1, height, dtype=torch.float32, device=device),
            torch.linspace(0, width - 1, width, dtype=torch.float32, device=device),
            indexing="ij")
        grid = torch.cat([grid_x.unsqueeze(-1), grid_y.unsqueeze(-1)], -1)
        scale = torch.cat([valid_w.unsqueeze(-1), valid_h.unsqueeze(-1)], 1).view(batch, 1, 1, 2)
        grid = (grid.unsqueeze(0).expand(batch, -1, -1, -1) + 0.5) / scale
        wh = torch.ones_like(grid) * 0.05 * (2.0 ** level)
        proposals.append(torch.cat((grid, wh), -1).view(batch, -1, 4))
        start += height * width
    proposals = torch.cat(proposals, 1)
    valid = ((proposals > 0.01) & (proposals < 0.99)).all(-1, keepdim=True)
    usable = valid & ~memory_padding_mask.unsqueeze(-1)
    proposals = torch.log(proposals / (1 - proposals))
    return proposals.masked_fill(~usable, float("inf")), usable


def select_top_proposals(class_logits: torch.Tensor, coords_unact: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k proposals by the first class logit (the encoder head is trained class-agnostic,
    with every target relabelled 0): class_logits [B, S, C], coords_unact [B, S, 4]
    -> detached [B, k, 4] unactivated boxes."""
    if k > class_logits.shape[1]:
        raise UserError(f"two-stage selection: {k} queries requested but the encoder only has "
                         f"{class_logits.shape[1]} positions; use fewer queries or larger images")
    top = torch.topk(class_logits[..., 0], k, dim=1)[1]
    return torch.gather(coords_unact, 1, top.unsqueeze(-1).repeat(1, 1, 4)).detach()
