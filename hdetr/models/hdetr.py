"""HDeformableDETR: backbone, input projections, deformable transformer, heads, query groups."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hdetr.boxes import inverse_sigmoid
from hdetr.errors import ConfigError
from hdetr.config.model import ModelConfig
from hdetr.errors import UserError
from hdetr.models.backbone import build_backbone
from hdetr.models.batching import batch_images, resize_mask, valid_sizes
from hdetr.models.heads import build_heads
from hdetr.models.postprocess import postprocess
from hdetr.models.transformer import DeformableTransformer
from hdetr.outputs import ONE2MANY, ONE2ONE, QUERY_GROUPS, ModelOutput


def check_architecture(config: ModelConfig) -> None:
    """Reject settings the official architecture cannot build, with the reason."""
    if config.hidden_dim % 32:
        raise ConfigError(f"ModelConfig: hidden_dim={config.hidden_dim} must be a multiple of 32 "
                          f"(the input projections use GroupNorm with 32 groups)")
    if config.num_feature_levels == 2:
        raise ConfigError("ModelConfig: num_feature_levels=2 is not supported: the backbone gives 3 maps "
                          "(C3-C5) when several levels are used; choose 1 (C5 only), 3, or 4+ (extra "
                          "stride-2 levels)")


def _input_projections(in_channels: Sequence[int], num_levels: int, hidden_dim: int) -> nn.ModuleList:
    """1x1 conv + GroupNorm per backbone map, then 3x3 stride-2 convs for the extra levels."""
    projections = [nn.Sequential(nn.Conv2d(c, hidden_dim, kernel_size=1), nn.GroupNorm(32, hidden_dim))
                   for c in in_channels]
    channels = in_channels[-1]
    for _ in range(num_levels - len(in_channels)):
        projections.append(nn.Sequential(nn.Conv2d(channels, hidden_dim, kernel_size=3, stride=2, padding=1),
                                         nn.GroupNorm(32, hidden_dim)))
        channels = hidden_dim
    for projection in projections:
        nn.init.xavier_uniform_(projection[0].weight, gain=1)
        nn.init.constant_(projection[0].bias, 0)
    return nn.ModuleList(projections)


class HDeformableDETR(nn.Module):
    """H-Deformable-DETR. ``model.config`` is its ModelConfig.

    Call ``model(images)`` with a list of normalised [3, H_i, W_i] tensors (padded inside), or
    ``model(padded [B, 3, H, W], mask [B, H, W] bool, True = padding)``. Returns a
    ``hdetr.outputs.ModelOutput``: per query group, ``logits`` [L, B, Q, C] and ``boxes``
    [L, B, Q, 4] (normalised cxcywh, relative to each image's unpadded size) of the decoder
    layers (all L with ``aux_loss``, else the last one), and ``enc_logits`` [B, S, C] /
    ``enc_boxes`` [B, S, 4] for the S encoder proposals (two-stage only). It also reads as the
    official output dict (``outputs["pred_logits"]`` [B, n, C], ``outputs["pred_boxes_one2many"]``
    [B, T, 4], ...; see ``hdetr.outputs``).

    ``groups`` chooses the query groups that run: by default ``(ONE2ONE, ONE2MANY)`` in train
    mode (when the model has one-to-many queries) and ``(ONE2ONE,)`` in eval mode; pass
    ``groups=QUERY_GROUPS`` to run the one-to-many queries of an eval-mode model too.
    Group DETR's groups 1..G-1 are the ONE2MANY set, as consecutive blocks of n queries.

    In train mode all ``n + T`` queries run (n = ``num_queries_one2one``, T =
    ``num_queries_one2many``, or G groups of n in group_detr), each group attending only within
    itself (unless ``mask_groups`` is off); in eval mode only the n one-to-one queries run (the
    top-n proposals in two-stage). In hybrid_epoch / hybrid_layer all queries form one group and
    count as one-to-one.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        check_architecture(config)
        self.config = config
        self.num_queries_one2one = config.num_queries_one2one
        self.num_queries_one2many = config.num_queries - config.num_queries_one2one  # T, or (G-1) n
        hidden_dim = config.hidden_dim
        self.transformer = DeformableTransformer(config)
        num_heads = config.dec_layers + 1 if config.two_stage else config.dec_layers
        self.class_embed, self.bbox_embed = build_heads(hidden_dim, config.num_classes, num_heads,
                                                        config.with_box_refine, config.two_stage)
        if not config.two_stage:
            self.query_embed = nn.Embedding(config.num_queries, hidden_dim * 2)
        elif config.mixed_selection:
            self.query_embed = nn.Embedding(config.num_queries, hidden_dim)
        backbone = build_backbone(config)
        self.input_proj = _input_projections(backbone.num_channels, config.num_feature_levels, hidden_dim)
        self.backbone = backbone

    # ----------------------------------------------------------------------------- forward
    def query_groups(self, groups: Sequence[str] | None = None) -> list[int]:
        """Sizes of the self-attention groups that run. ``groups`` names the query sets: by default
        (ONE2ONE, ONE2MANY) in training when the model has extra queries, (ONE2ONE,) in eval. With the
        extra set the groups are the scheme's ([n, T] hybrid branch, [n] * G Group DETR; one group of
        all when ``mask_groups`` is off), with ONE2ONE alone [n]."""
        if groups is None:
            groups = QUERY_GROUPS if self.training and self.num_queries_one2many > 0 else (ONE2ONE,)
        groups = tuple(groups)
        if groups not in ((ONE2ONE,), QUERY_GROUPS):
            raise UserError(f"HDeformableDETR: groups={groups!r}: choose ({ONE2ONE!r},) or {QUERY_GROUPS!r}")
        if ONE2MANY in groups and self.num_queries_one2many <= 0:
            raise UserError(f"HDeformableDETR has no one-to-many queries (scheme {self.config.scheme}); only "
                            f"hybrid_branch and group_detr models have extra query groups")
        return self.config.attention_groups() if ONE2MANY in groups else [self.num_queries_one2one]

    def forward(self, images, mask: torch.Tensor | None = None, *, groups: Sequence[str] | None = None
                ) -> ModelOutput:
        padded, mask = self._as_batch(images, mask)
        features, masks, positions = self.backbone(padded, mask)
        srcs = [projection(feature) for projection, feature in zip(self.input_proj, features)]
        for level in range(len(srcs), self.config.num_feature_levels):
            src = self.input_proj[level](features[-1] if level == len(features) else srcs[-1])
            level_mask = resize_mask(mask, src.shape[-2:])
            srcs.append(src)
            masks.append(level_mask)
            positions.append(self.backbone.position_embedding(level_mask).to(src.dtype))
        sizes = self.query_groups(groups)
        num_queries = sum(sizes)
        query_embed = self.query_embed.weight[:num_queries] if hasattr(self, "query_embed") else None
        result = self.transformer(srcs, masks, positions, query_embed, num_queries, sizes,
                                  self.class_embed, self.bbox_embed, self.config.with_box_refine)
        return self._outputs(result)

    def _outputs(self, result) -> ModelOutput:
        n = self.num_queries_one2one
        classes, coords = [], []
        for level, hidden in enumerate(result.hidden_states):
            reference = result.init_reference if level == 0 else result.references[level - 1]
            reference = inverse_sigmoid(reference)
            delta = self.bbox_embed[level](hidden) if result.box_deltas is None else result.box_deltas[level]
            if reference.shape[-1] == 4:
                coord = delta + reference
            else:
                coord = torch.cat([delta[..., :2] + reference, delta[..., 2:]], -1)
            classes.append(self.class_embed[level](hidden))
            coords.append(coord.sigmoid())
        if not self.config.aux_loss:
            classes, coords = classes[-1:], coords[-1:]
        logits, boxes = torch.stack(classes), torch.stack(coords)
        encoder = result.enc_class is not None
        return ModelOutput(
            logits={ONE2ONE: logits[:, :, :n], ONE2MANY: logits[:, :, n:]},
            boxes={ONE2ONE: boxes[:, :, :n], ONE2MANY: boxes[:, :, n:]},
            enc_logits=result.enc_class if encoder else None,
            enc_boxes=result.enc_coord_unact.sigmoid() if encoder else None,
            has_aux=self.config.aux_loss,
        )

    @staticmethod
    def _as_batch(images, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(images, (list, tuple)):
            if mask is not None:
                raise UserError("HDeformableDETR: pass either a list of images or a padded batch with its "
                                "mask, not a list and a mask")
            return batch_images(images)
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise UserError(f"HDeformableDETR: expected a list of [3, H, W] images or a [B, 3, H, W] batch, "
                            f"got {shape}")
        if mask is None:
            mask = torch.zeros(images.shape[0], *images.shape[-2:], dtype=torch.bool, device=images.device)
        elif mask.shape != (images.shape[0], *images.shape[-2:]) or mask.dtype != torch.bool:
            raise UserError(f"HDeformableDETR: mask must be bool [{images.shape[0]}, {images.shape[2]}, "
                            f"{images.shape[3]}], got {mask.dtype} {tuple(mask.shape)}")
        return images, mask

    # ------------------------------------------------------------------------- inference
    def postprocess(self, outputs: ModelOutput | dict, target_sizes: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """outputs of ``forward``, target_sizes [B, 2] (h, w) -> one dict per image with ``scores``
        [k], ``labels`` [k], ``boxes`` [k, 4] xyxy in those pixels (k = config.topk)."""
        return postprocess(outputs, target_sizes, self.config.topk)

    @torch.no_grad()
    def predict(self, images, orig_sizes=None, mask: torch.Tensor | None = None) -> list[dict[str, torch.Tensor]]:
        """Detections for a list of images (or a padded batch with ``mask``), in eval mode.

        orig_sizes: [B, 2] (h, w) of the original images the boxes should be scaled to;
        default: each input image's own (unpadded) size. Returns one dict per image:
        ``scores`` [k], ``labels`` [k] int64, ``boxes`` [k, 4] xyxy pixels.
        """
        padded, mask = self._as_batch(images, mask)
        was_training = self.training
        self.eval()
        try:
            outputs = self(padded, mask)
        finally:
            self.train(was_training)
        sizes = valid_sizes(mask) if orig_sizes is None else torch.as_tensor(orig_sizes)
        return self.postprocess(outputs, sizes)
