"""Detections from raw outputs: top-k over (query, class) pairs, boxes in pixels. No NMS."""
from __future__ import annotations

import torch

from hdetr.boxes import cxcywh_to_xyxy
from hdetr.errors import UserError


@torch.no_grad()
def postprocess(outputs: dict, target_sizes: torch.Tensor, topk: int = 100) -> list[dict[str, torch.Tensor]]:
    """outputs with ``pred_logits`` [B, Q, C] and ``pred_boxes`` [B, Q, 4] (normalised cxcywh);
    target_sizes [B, 2] (h, w) of the images the boxes should be expressed in.

    Returns one dict per image: ``scores`` [k] (sigmoid probabilities, descending), ``labels``
    [k] int64, ``boxes`` [k, 4] xyxy in pixels, with k = min(topk, Q * C). A query can appear
    with several labels, as in the official evaluation.
    """
    logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
    target_sizes = torch.as_tensor(target_sizes, device=logits.device)
    if target_sizes.dim() != 2 or target_sizes.shape != (logits.shape[0], 2):
        raise UserError(f"postprocess: target_sizes must be [{logits.shape[0]}, 2] (h, w), "
                        f"got {tuple(target_sizes.shape)}")
    batch, _, num_classes = logits.shape
    prob = logits.sigmoid().view(batch, -1)
    k = min(topk, prob.shape[1])
    scores, flat_index = torch.topk(prob, k, dim=1)
    query_index = flat_index // num_classes
    labels = flat_index % num_classes
    boxes = torch.gather(cxcywh_to_xyxy(boxes), 1, query_index.unsqueeze(-1).repeat(1, 1, 4))
    img_h, img_w = target_sizes.unbind(1)
    scale = torch.stack([img_w, img_h, img_w, img_h], dim=1).to(boxes.dtype)
    boxes = boxes * scale[:, None, :]
    return [{"scores": s, "labels": l, "boxes": b} for s, l, b in zip(scores, labels, boxes)]
