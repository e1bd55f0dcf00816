"""The deformable decoder with query groups and iterative box refinement.

Query groups (one-to-one, one-to-many, Group DETR's groups) share every weight but must
not see each other in self-attention. The official code masks an (n+T) x (n+T)
attention with the block-diagonal ``group_attention_mask``; here each group's queries
attend among themselves in a separate call, which gives the same numbers (tested
against the mask) without computing the blocked scores.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hdetr.boxes import inverse_sigmoid
from hdetr.ops.attention_module import MSDeformAttn


def group_attention_mask(group_sizes: Sequence[int], mask_groups: bool = True,
                         device: torch.device | None = None) -> torch.Tensor:
    """The decoder's self-attention mask: bool [Q, Q], Q = sum(group_sizes), True = query i may
    attend to key j. Block-diagonal (each group sees only itself) with ``mask_groups``; all True
    without (one group). ``nn.MultiheadAttention`` takes its negation (True = blocked)."""
    q = sum(group_sizes)
    if not mask_groups:
        return torch.ones(q, q, dtype=torch.bool, device=device)
    ids = torch.repeat_interleave(torch.arange(len(group_sizes), device=device),
                                  torch.as_tensor(list(group_sizes), device=device))
    return ids[:, None] == ids[None, :]


class DeformableTransformerDecoderLayer(nn.Module):
    """Post-norm layer: group-wise self-attention, deformable cross-attention, ReLU FFN."""

    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int, n_points: int,
                 msda_backend: str = "auto"):
        super().__init__()
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points, backend=msda_backend)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def group_self_attention(self, tgt: torch.Tensor, query_pos: torch.Tensor,
                             group_sizes: Sequence[int]) -> torch.Tensor:
        """tgt, query_pos [B, Q, C], sum(group_sizes) == Q -> [B, Q, C]; no attention across groups:
        the same as attention masked with ``group_attention_mask(group_sizes)``, one call per block."""
        outputs = []
        for content, pos in zip(tgt.split(list(group_sizes), 1), query_pos.split(list(group_sizes), 1)):
            q = content + pos
            outputs.append(self.self_attn(q, q, content, need_weights=False)[0])
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, 1)

    def forward(self, tgt, query_pos, reference_points, memory, spatial_shapes, level_start_index,
                padding_mask, group_sizes):
        """tgt, query_pos [B, Q, C]; reference_points [B, Q, L, 2|4]; memory [B, S, C] -> [B, Q, C]."""
        tgt = self.norm2(tgt + self.dropout2(self.group_self_attention(tgt, query_pos, group_sizes)))
        attended = self.cross_attn(tgt + query_pos, reference_points, memory, spatial_shapes, level_start_index,
                                   padding_mask)
        tgt = self.norm1(tgt + self.dropout1(attended))
        ffn = self.linear2(self.dropout3(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout4(ffn))


class DeformableTransformerDecoder(nn.Module):
    def __init__(self, layer: DeformableTransformerDecoderLayer, num_layers: int, look_forward_twice: bool):
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(num_layers)])
        self.num_layers = num_layers
        self.look_forward_twice = look_forward_twice

    def forward(self, tgt, reference_points, memory, spatial_shapes, level_start_index, valid_ratios,
                query_pos, padding_mask, group_sizes: Sequence[int], box_heads: Sequence[nn.Module] | None = None):
        """Run every layer; refine the reference boxes after each one when ``box_heads`` is given.

        tgt, query_pos [B, Q, C]; reference_points [B, Q, 2] (x, y) or [B, Q, 4] (cx, cy, w, h)
        in [0, 1]; memory [B, S, C]; valid_ratios [B, L, 2]. Returns (hidden states
        [num_layers, B, Q, C], references [num_layers, B, Q, 2|4], box deltas: a list of
        num_layers [B, Q, 4], or None without refinement). The references are the boxes each
        layer's predictions are relative to in the next step; the deltas are the box heads'
        outputs, returned so the model does not compute them again. With look-forward-twice
        the references keep their gradient, so layer i's box loss also trains layer i-1's head.
        """
        output = tgt
        hidden_states, references, deltas = [], [], []
        for lid, layer in enumerate(self.layers):
            if reference_points.shape[-1] == 4:
                points_input = reference_points[:, :, None] * torch.cat([valid_ratios, valid_ratios], -1)[:, None]
            else:
                points_input = reference_points[:, :, None] * valid_ratios[:, None]
            output = layer(output, query_pos, points_input, memory, spatial_shapes, level_start_index,
                           padding_mask, group_sizes)
            refined = None
            if box_heads is not None:
                delta = box_heads[lid](output)
                deltas.append(delta)
                if reference_points.shape[-1] == 4:
                    refined = (delta + inverse_sigmoid(reference_points)).sigmoid()
                else:
                    # a point reference becomes a box: the head's w, h are used as they are
                    refined = torch.cat([delta[..., :2] + inverse_sigmoid(reference_points), delta[..., 2:]],
                                        -1).sigmoid()
                reference_points = refined.detach()
            hidden_states.append(output)
            references.append(refined if self.look_forward_twice else reference_points)
        return torch.stack(hidden_states), torch.stack(references), deltas or None
