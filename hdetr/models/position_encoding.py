"""Sine position encodings: for feature maps (DETR style) and for two-stage proposal boxes."""
from __future__ import annotations

import math

import torch
from torch import nn


class PositionEmbeddingSine(nn.Module):
    """2-D sine/cosine encoding of pixel positions, normalised to the unpadded image.

    Positions are cumulative counts of valid pixels, offset by -0.5 and divided by the
    valid extent, then scaled to [0, 2*pi]; each of y and x gets ``num_pos_feats``
    channels (interleaved sin/cos at geometric frequencies). No parameters.
    """

    def __init__(self, num_pos_feats: int = 128, temperature: float = 10000.0, scale: float = 2 * math.pi):
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.scale = scale

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        """mask [B, H, W] bool (True = padding) -> [B, 2 * num_pos_feats, H, W] float32 (y first, then x)."""
        not_mask = ~mask
        y_embed = not_mask.cumsum(1, dtype=torch.float32)
        x_embed = not_mask.cumsum(2, dtype=torch.float32)
        eps = 1e-6
        y_embed = (y_embed - 0.5) / (y_embed[:, -1:, :] + eps) * self.scale
        x_embed = (x_embed - 0.5) / (x_embed[:, :, -1:] + eps) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=mask.device)
        dim_t = self.temperature ** (2 * (dim_t // 2) / self.num_pos_feats)
        pos_x = x_embed[:, :, :, None] / dim_t
        pos_y = y_embed[:, :, :, None] / dim_t
        pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


def proposal_position_embedding(proposals: torch.Tensor, num_pos_feats: int,
                                 temperature: float = 10000.0) -> torch.Tensor:
    """Sine encoding of unactivated boxes for the two-stage queries.

    proposals [B, Q, 4] (logits of cx, cy, w, h) -> [B, Q, 4 * num_pos_feats]. The official
    code fixes num_pos_feats to 128 (hidden_dim 256); here it is hidden_dim // 2 so the
    result always has 2 * hidden_dim channels, what ``pos_trans`` expects.
    """
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=proposals.device)
    dim_t = temperature ** (2 * (dim_t // 2) / num_pos_feats)
    pos = proposals.sigmoid() * (2 * math.pi)
    pos = pos[:, :, :, None] / dim_t
    return torch.stack((pos[:, :, :, 0::2].sin(), pos[:, :, :, 1::2].cos()), dim=4).flatten(2)
