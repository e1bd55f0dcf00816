"""The deformable transformer: multi-level flattening, encoder, query initialisation, decoder.

Query initialisation follows H-Deformable-DETR:

- single stage: learned ``query_embed`` [Q, 2C] split into position and content, reference
  points predicted from the position part;
- two-stage: the top-Q encoder proposals give the reference boxes and (through
  ``pos_trans``) the query positions; the content is the proposals' other half, or a
  learned ``query_embed`` [Q, C] with mixed query selection.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from hdetr.config.model import ModelConfig
from hdetr.models.batching import valid_sizes
from hdetr.models.deformable_decoder import DeformableTransformerDecoder, DeformableTransformerDecoderLayer
from hdetr.models.deformable_encoder import DeformableTransformerEncoder, DeformableTransformerEncoderLayer
from hdetr.models.position_encoding import proposal_position_embedding
from hdetr.models.two_stage import grid_proposals, select_top_proposals
from hdetr.ops.attention_module import MSDeformAttn


@dataclass
class FlatFeatures:
    """All levels flattened into one sequence of S = sum(H_l * W_l) positions."""

    src: torch.Tensor  # [B, S, C]
    mask: torch.Tensor  # [B, S] bool, True = padding
    pos: torch.Tensor  # [B, S, C] position + level embedding
    spatial_shapes: torch.Tensor  # [L, 2] int64 (H, W)
    level_start_index: torch.Tensor  # [L]
    valid_ratios: torch.Tensor  # [B, L, 2] (w, h) fraction of each level that is not padding


@dataclass
class DecoderResult:
    hidden_states: torch.Tensor  # [num_layers, B, Q, C]
    init_reference: torch.Tensor  # [B, Q, 2|4] in [0, 1]
    references: torch.Tensor  # [num_layers, B, Q, 2|4]: what layer i+1's boxes are relative to
    enc_class: torch.Tensor | None  # [B, S, num_classes] encoder proposal logits (two-stage)
    enc_coord_unact: torch.Tensor | None  # [B, S, 4] encoder proposal boxes before sigmoid
    box_deltas: list[torch.Tensor] | None  # num_layers x [B, Q, 4] box head outputs (box refinement)


def valid_ratio(mask: torch.Tensor) -> torch.Tensor:
    """mask [B, H, W] -> [B, 2] (w, h) fraction of the map that is not padding."""
    _, height, width = mask.shape
    valid_h, valid_w = valid_sizes(mask).unbind(1)
    return torch.stack([valid_w.float() / width, valid_h.float() / height], -1)


class DeformableTransformer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        d_model = config.hidden_dim
        self.d_model = d_model
        self.two_stage = config.two_stage
        self.mixed_selection = config.mixed_selection
        encoder_layer = DeformableTransformerEncoderLayer(
            d_model, config.dim_feedforward, config.dropout, config.num_feature_levels, config.nheads,
            config.enc_n_points, config.msda_backend)
        self.encoder = DeformableTransformerEncoder(encoder_layer, config.enc_layers)
        decoder_layer = DeformableTransformerDecoderLayer(
            d_model, config.dim_feedforward, config.dropout, config.num_feature_levels, config.nheads,
            config.dec_n_points, config.msda_backend)
        self.decoder = DeformableTransformerDecoder(decoder_layer, config.dec_layers, config.look_forward_twice)
        self.level_embed = nn.Parameter(torch.empty(config.num_feature_levels, d_model))
        if self.two_stage:
            self.enc_output = nn.Linear(d_model, d_model)
            self.enc_output_norm = nn.LayerNorm(d_model)
            self.pos_trans = nn.Linear(d_model * 2, d_model * 2)
            self.pos_trans_norm = nn.LayerNorm(d_model * 2)
        else:
            self.reference_points = nn.Linear(d_model, 2)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        if not self.two_stage:
            nn.init.xavier_uniform_(self.reference_points.weight, gain=1.0)
            nn.init.constant_(self.reference_points.bias, 0.0)
        nn.init.normal_(self.level_embed)

    def flatten(self, srcs: Sequence[torch.Tensor], masks: Sequence[torch.Tensor],
                pos_embeds: Sequence[torch.Tensor]) -> FlatFeatures:
        """srcs / pos_embeds [B, C, H_l, W_l] and masks [B, H_l, W_l] per level -> FlatFeatures."""
        shapes = [tuple(src.shape[-2:]) for src in srcs]
        src_flat = torch.cat([src.flatten(2).transpose(1, 2) for src in srcs], 1)
        mask_flat = torch.cat([mask.flatten(1) for mask in masks], 1)
        pos_flat = torch.cat([pos.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1)
                              for lvl, pos in enumerate(pos_embeds)], 1)
        spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=src_flat.device)
        level_start_index = torch.cat((spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1]))
        valid_ratios = torch.stack([valid_ratio(m) for m in masks], 1)
        return FlatFeatures(src_flat, mask_flat, pos_flat, spatial_shapes, level_start_index, valid_ratios)

    def forward(self, srcs, masks, pos_embeds, query_embed: torch.Tensor | None, num_queries: int,
                group_sizes: Sequence[int], class_heads: Sequence[nn.Module],
                box_heads: Sequence[nn.Module], refine_boxes: bool) -> DecoderResult:
        """Encode the levels, initialise ``num_queries`` queries and decode them.

        query_embed: [Q, 2C] single-stage, [Q, C] with mixed selection, None otherwise.
        class_heads / box_heads: the model's heads; with two-stage, entry ``dec_layers`` scores
        the encoder proposals; with ``refine_boxes`` the first ``dec_layers`` box heads refine
        the references between decoder layers.
        """
        flat = self.flatten(srcs, masks, pos_embeds)
        memory = self.encoder(flat.src, flat.spatial_shapes, flat.level_start_index, flat.valid_ratios,
                              flat.pos, flat.mask)
        batch, _, channels = memory.shape
        enc_class = enc_coord_unact = None
        if self.two_stage:
            proposals, usable = grid_proposals(flat.mask, flat.spatial_shapes)
            output_memory = self.enc_output_norm(self.enc_output(memory.masked_fill(~usable, 0.0)))
            num_layers = self.decoder.num_layers
            enc_class = class_heads[num_layers](output_memory)
            enc_coord_unact = box_heads[num_layers](output_memory) + proposals
            top_coords = select_top_proposals(enc_class, enc_coord_unact, num_queries)
            reference_points = top_coords.sigmoid()
            pos_trans = self.pos_trans_norm(self.pos_trans(proposal_position_embedding(top_coords, channels // 2)))
            if self.mixed_selection:
                tgt = query_embed.unsqueeze(0).expand(batch, -1, -1)
                query_pos = pos_trans[..., :channels]
            else:
                query_pos, tgt = torch.split(pos_trans, channels, dim=2)
        else:
            query_pos, tgt = torch.split(query_embed, channels, dim=1)
            query_pos = query_pos.unsqueeze(0).expand(batch, -1, -1)
            tgt = tgt.unsqueeze(0).expand(batch, -1, -1)
            reference_points = self.reference_points(query_pos).sigmoid()
        hidden_states, references, box_deltas = self.decoder(
            tgt, reference_points, memory, flat.spatial_shapes, flat.level_start_index, flat.valid_ratios,
            query_pos, flat.mask, group_sizes, box_heads if refine_boxes else None)
        return DecoderResult(hidden_states, reference_points, references, enc_class, enc_coord_unact, box_deltas)
