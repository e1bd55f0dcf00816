"""Train another DETR-like detector with hdetr's supervision plans (see docs/plug_in.md).

The criterion (``hdetr.build_criterion``) reads hdetr's typed model output
(``hdetr.outputs.ModelOutput``, which also reads as the official H-Deformable-DETR dict);
``criterion_outputs`` builds it from the per-layer tensors any DETR-like decoder has, so a
detector needs no other change to be trained with any scheme's plan.
"""
from __future__ import annotations

import torch

from hdetr.errors import UserError
from hdetr.outputs import ONE2MANY, ONE2ONE, ModelOutput


def criterion_outputs(logits: torch.Tensor, boxes: torch.Tensor, num_one2one: int | None = None,
                      enc_logits: torch.Tensor | None = None, enc_boxes: torch.Tensor | None = None
                      ) -> ModelOutput:
    """The criterion's input from stacked decoder predictions.

    logits [L, B, Q, C] (one logit per class, sigmoid/focal, no background column) and boxes
    [L, B, Q, 4] (normalised cxcywh in [0, 1], relative to each image's unpadded size), one
    entry per decoder layer, last layer last. ``num_one2one``: the first n queries are the
    main (one-to-one) set and the other Q - n the extra ones (the hybrid branch's T one-to-many
    queries, or Group DETR's groups 1..G-1 as consecutive blocks of n); None: all Q are the main
    set (baseline, hybrid_epoch, hybrid_layer). enc_logits [B, S, C] / enc_boxes [B, S, 4]: the
    two-stage encoder proposals, if the detector has them.
    """
    if logits.dim() != 4 or boxes.shape != (*logits.shape[:3], 4):
        raise UserError(f"criterion_outputs: expected logits [L, B, Q, C] and boxes [L, B, Q, 4], got "
                        f"{tuple(logits.shape)} and {tuple(boxes.shape)}")
    n = logits.shape[2] if num_one2one is None else num_one2one
    if not 0 < n <= logits.shape[2]:
        raise UserError(f"criterion_outputs: num_one2one={num_one2one} must be in 1..Q={logits.shape[2]}")
    return ModelOutput(logits={ONE2ONE: logits[:, :, :n], ONE2MANY: logits[:, :, n:]},
                       boxes={ONE2ONE: boxes[:, :, :n], ONE2MANY: boxes[:, :, n:]},
                       enc_logits=enc_logits, enc_boxes=enc_boxes, has_aux=logits.shape[0] > 1)
