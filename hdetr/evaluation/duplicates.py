"""Duplicates per object and class-wise NMS on detections: the measures of the NMS-free property.

A one-to-one detector is "NMS-free" when it puts a single confident box on each object,
so that NMS neither removes duplicates nor changes its AP. Both are measured on
post-processed detections (``hdetr.models.postprocess``: top-k over query x class):

- ``count_duplicates``: per ground-truth object, the predictions above a score threshold
  whose IoU with it exceeds an IoU threshold; every one after the first is a duplicate.
- ``apply_nms``: class-wise NMS (``torchvision.ops.batched_nms``) on detections.
- ``image_hits``: ``count_duplicates`` for one image's detections and its target.

The definitions (score > 0.3, IoU > 0.6, NMS at IoU 0.7) are those of
``reports/analysis/duplicates.md``; they live here once, as the defaults below.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torchvision

from hdetr.boxes import box_iou, cxcywh_to_xyxy
from hdetr.errors import UserError

NMS_IOU = 0.7
SCORE_THRESHOLD = 0.3
DUPLICATE_IOU = 0.6


@dataclass(frozen=True)
class DuplicateCounts:
    """Per ground-truth object: ``hits`` [G] predictions covering it; ``duplicates`` [G] = max(hits - 1, 0)."""

    hits: torch.Tensor
    duplicates: torch.Tensor

    @property
    def num_objects(self) -> int:
        return int(self.hits.numel())


def check_thresholds(score_threshold: float, iou_threshold: float) -> None:
    for name, value in (("score_threshold", score_threshold), ("iou_threshold", iou_threshold)):
        if not 0.0 <= value <= 1.0:
            raise UserError(f"{name}={value} must be in [0, 1]")


def check_nms_iou(nms_iou: float | None) -> None:
    if nms_iou is not None and not 0.0 < nms_iou <= 1.0:
        raise UserError(f"nms_iou={nms_iou} must be in (0, 1] (or None for no NMS)")


def count_duplicates(pred_boxes: torch.Tensor, pred_scores: torch.Tensor, gt_boxes: torch.Tensor, *,
                     score_threshold: float = SCORE_THRESHOLD, iou_threshold: float = DUPLICATE_IOU) -> DuplicateCounts:
    """Predictions per object and duplicates per object for one image.

    pred_boxes [Q, 4] and gt_boxes [G, 4]: xyxy in the same frame (pixels or normalised);
    pred_scores [Q]: each prediction's score (its best class probability). A prediction
    counts for an object when its score > ``score_threshold`` and its IoU with the object
    > ``iou_threshold`` (it may count for two overlapping objects).
    """
    check_thresholds(score_threshold, iou_threshold)
    pred_boxes = torch.as_tensor(pred_boxes, dtype=torch.float32).reshape(-1, 4)
    gt_boxes = torch.as_tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4)
    pred_scores = torch.as_tensor(pred_scores, dtype=torch.float32).reshape(-1)
    if pred_scores.numel() != pred_boxes.shape[0]:
        raise UserError(f"count_duplicates: {pred_scores.numel()} scores for {pred_boxes.shape[0]} boxes")
    confident = pred_boxes[pred_scores > score_threshold]
    if not len(gt_boxes) or not len(confident):
        hits = torch.zeros(len(gt_boxes), dtype=torch.int64)
    else:
        hits = (box_iou(gt_boxes, confident)[0] > iou_threshold).sum(dim=1)
    return DuplicateCounts(hits=hits, duplicates=(hits - 1).clamp(min=0))


def unique_boxes(det: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes of the detections with their best score, each distinct box once (a query's several labels)."""
    boxes, scores = det["boxes"], det["scores"]
    if not len(boxes):
        return boxes.reshape(0, 4), scores
    unique, inverse = torch.unique(boxes, dim=0, return_inverse=True)
    best = torch.full((len(unique),), -1.0).scatter_reduce(0, inverse, scores.float(), reduce="amax")
    return unique, best


def apply_nms(detections: list[dict[str, torch.Tensor]], nms_iou: float) -> list[dict[str, torch.Tensor]]:
    """Class-wise NMS at ``nms_iou`` on each image's detections (``scores`` [k], ``labels`` [k], ``boxes`` [k, 4])."""
    check_nms_iou(nms_iou)
    kept = []
    for d in detections:
        keep = torchvision.ops.batched_nms(d["boxes"].float(), d["scores"].float(), d["labels"], nms_iou)
        kept.append({k: v[keep] for k, v in d.items()})
    return kept


def image_hits(det: dict[str, torch.Tensor], target: dict, size: torch.Tensor, *,
               score_threshold: float = SCORE_THRESHOLD, iou_threshold: float = DUPLICATE_IOU) -> torch.Tensor:
    """Predictions per ground-truth object [G] for one image: ``det``'s boxes are xyxy in the pixels of
    ``size`` (h, w); ``target["boxes"]`` normalised cxcywh. A query listed under several labels counts once."""
    h, w = (float(v) for v in size)
    gt = cxcywh_to_xyxy(target["boxes"].float()) * torch.tensor([w, h, w, h])
    return count_duplicates(*unique_boxes(det), gt, score_threshold=score_threshold, iou_threshold=iou_threshold).hits
