"""Assignment records: which query matched which target, where, and at what cost.

The criterion fills ``criterion.last_assignments`` with these when called with
``record=True`` (and does none of this work otherwise). The notebooks'
visualisations and the K-positives checks read them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AssignmentRecord:
    """The matches of one image, at one layer, in one plan group.

    image_index: position of the image in the batch.
    layer: decoder layer 0..dec_layers-1, or -1 for the two-stage encoder proposals.
    group: "one2one" | "one2many" (the plan group's tag).
    query_indices: [P] long, index into the group's query outputs (e.g. pred_boxes_one2many[b]).
    target_indices: [P] long, index into the image's targets (labels/boxes).
    copy_indices: [P] long, which of the K ground-truth copies was matched (0 for one-to-one).
    cost_class, cost_bbox, cost_giou: [P] float, the unweighted matching cost terms of each pair
        (the matched total is set_cost_class * cost_class + set_cost_bbox * cost_bbox + set_cost_giou * cost_giou).
    iou: [P] float, IoU of the matched prediction with its target.
    """

    image_index: int
    layer: int
    group: str
    query_indices: torch.Tensor
    target_indices: torch.Tensor
    copy_indices: torch.Tensor
    cost_class: torch.Tensor
    cost_bbox: torch.Tensor
    cost_giou: torch.Tensor
    iou: torch.Tensor

    def __len__(self) -> int:
        return len(self.query_indices)


ROW_FIELDS = ("image_index", "layer", "group", "query", "target", "copy", "cost_class", "cost_bbox",
              "cost_giou", "iou")


def records_to_rows(records: list[AssignmentRecord]) -> list[dict]:
    """One dict per matched pair, with the keys in ``ROW_FIELDS`` (plain Python numbers), for tables."""
    rows = []
    for record in records:
        columns = zip(
            record.query_indices.tolist(),
            record.target_indices.tolist(),
            record.copy_indices.tolist(),
            record.cost_class.tolist(),
            record.cost_bbox.tolist(),
            record.cost_giou.tolist(),
            record.iou.tolist(),
        )
        for query, target, copy, cost_class, cost_bbox, cost_giou, iou in columns:
            rows.append({
                "image_index": record.image_index,
                "layer": record.layer,
                "group": record.group,
                "query": query,
                "target": target,
                "copy": copy,
                "cost_class": cost_class,
                "cost_bbox": cost_bbox,
                "cost_giou": cost_giou,
                "iou": iou,
            })
    return rows
