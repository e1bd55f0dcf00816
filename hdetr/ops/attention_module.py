"""``MSDeformAttn``: the multi-scale deformable attention layer (projections around the op).

Each query predicts, per head, level and point, a sampling offset around its
reference point and an attention weight; values are sampled bilinearly at those
locations (``hdetr.ops.multi_scale_deformable_attention``) and mixed by the
weights. Parameter names and initialisation follow the official Deformable-DETR
module, so official checkpoints load as they are.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hdetr.ops import multi_scale_deformable_attention


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention with ``n_heads`` heads, ``n_levels`` levels and
    ``n_points`` sampling points per head and level."""

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4,
                 backend: str = "auto"):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"MSDeformAttn: d_model={d_model} must be divisible by n_heads={n_heads}")
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.backend = backend
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Offsets start on a ring: head h points in direction 2*pi*h/n_heads, point p at
        # distance p+1, so the heads initially look at different neighbourhoods.
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2)
        grid = grid.repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(self, query: torch.Tensor, reference_points: torch.Tensor, input_flatten: torch.Tensor,
                spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
                padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """query [N, Lq, C]; reference_points [N, Lq, L, 2] (x, y) or [N, Lq, L, 4] (cx, cy, w, h)
        normalised to the padded map; input_flatten [N, S, C] with S = sum of H_l * W_l;
        spatial_shapes [L, 2] (H, W) int64; level_start_index [L]; padding_mask [N, S]
        (True = padding) -> [N, Lq, C]."""
        n, len_q, _ = query.shape
        len_in = input_flatten.shape[1]
        value = self.value_proj(input_flatten)
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[..., None], 0.0)
        value = value.view(n, len_in, self.n_heads, self.d_model // self.n_heads)
        offsets = self.sampling_offsets(query).view(n, len_q, self.n_heads, self.n_levels, self.n_points, 2)
        weights = self.attention_weights(query).view(n, len_q, self.n_heads, self.n_levels * self.n_points)
        weights = F.softmax(weights, -1).view(n, len_q, self.n_heads, self.n_levels, self.n_points)
        if reference_points.shape[-1] == 2:
            # offsets are in pixels of each level: divide by (W, H)
            # in the offsets' dtype: dividing by the int64 shapes takes a slow type-promoting path (same values)
            normalizer = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1).to(offsets.dtype)
            locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        elif reference_points.shape[-1] == 4:
            # offsets are relative to the reference box: half its size spread over the points
            locations = (reference_points[:, :, None, :, None, :2]
                         + offsets / self.n_points * reference_points[:, :, None, :, None, 2:] * 0.5)
        else:
            raise ValueError(f"MSDeformAttn: reference_points must end in 2 or 4 values, got "
                             f"shape {tuple(reference_points.shape)}")
        output = multi_scale_deformable_attention(value, spatial_shapes, level_start_index, locations, weights,
                                                  backend=self.backend)
        return self.output_proj(output)
