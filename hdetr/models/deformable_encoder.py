"""The deformable encoder: every pixel of every level attends to a few sampled points."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from hdetr.ops.attention_module import MSDeformAttn


class DeformableTransformerEncoderLayer(nn.Module):
    """Post-norm layer: deformable self-attention then a ReLU FFN."""

    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int, n_points: int,
                 msda_backend: str = "auto"):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points, backend=msda_backend)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src, pos, reference_points, spatial_shapes, level_start_index, padding_mask):
        """src, pos [B, S, C]; reference_points [B, S, L, 2] -> [B, S, C]."""
        attended = self.self_attn(src + pos, reference_points, src, spatial_shapes, level_start_index, padding_mask)
        src = self.norm1(src + self.dropout1(attended))
        ffn = self.linear2(self.dropout2(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout3(ffn))


class DeformableTransformerEncoder(nn.Module):
    def __init__(self, layer: DeformableTransformerEncoderLayer, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(num_layers)])
        self.num_layers = num_layers

    @staticmethod
    def reference_points(spatial_shapes: torch.Tensor, valid_ratios: torch.Tensor) -> torch.Tensor:
        """Pixel centres of every level, normalised by each image's valid extent and then put
        back on every level's padded map: spatial_shapes [L, 2], valid_ratios [B, L, 2] (w, h)
        -> [B, S, L, 2] (x, y)."""
        points = []
        for level, (height, width) in enumerate(spatial_shapes.tolist()):
            ref_y, ref_x = torch.meshgrid(
                torch.linspace(0.5, height - 0.5, height, dtype=torch.float32, device=valid_ratios.device),
                torch.linspace(0.5, width - 0.5, width, dtype=torch.float32, device=valid_ratios.device),
                indexing="ij")
            ref_y = ref_y.reshape(-1)[None] / (valid_ratios[:, None, level, 1] * height)
            ref_x = ref_x.reshape(-1)[None] / (valid_ratios[:, None, level, 0] * width)
            points.append(torch.stack((ref_x, ref_y), -1))
        return torch.cat(points, 1)[:, :, None] * valid_ratios[:, None]

    def forward(self, src, spatial_shapes, level_start_index, valid_ratios, pos, padding_mask):
        """src, pos [B, S, C]; padding_mask [B, S] -> memory [B, S, C]."""
        reference_points = self.reference_points(spatial_shapes, valid_ratios)
        output = src
        for layer in self.layers:
            output = layer(output, pos, reference_points, spatial_shapes, level_start_index, padding_mask)
        return output
