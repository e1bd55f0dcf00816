"""Pick the assignment records and predicted boxes that one view shows.

The criterion (``criterion(outputs, targets, record=True)``) leaves one
``AssignmentRecord`` per (image, layer, group) in ``criterion.last_assignments``.
A view shows one image at one layer; these helpers select the records for it,
tabulate them query by query, and find the matching predicted boxes in the model
outputs, whose layout depends on the scheme:

- hybrid_branch: the one-to-many group has its own outputs (``pred_boxes_one2many``,
  ``aux_outputs_one2many``); record query indices point into them;
- baseline, hybrid_epoch, hybrid_layer: one set of queries (``pred_boxes``) serves
  both groups, so a one-to-many record indexes the same outputs as a one-to-one one.

Decoder layer ``i`` is ``aux_outputs[i]`` for all but the last layer, which is the
top level of the dict; layer ``-1`` is the encoder's two-stage proposals.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch

from hdetr.errors import UserError

GROUPS = ("one2one", "one2many")
ENCODER_LAYER = -1
COST_FIELDS = ("cost_class", "cost_bbox", "cost_giou", "iou")


def select_records(records: Iterable[Any], *, image_index: int | None = None, layer: int | None = None,
                   group: str | None = None) -> list:
    """The records that match every given field (``None`` matches anything)."""
    if group is not None and group not in GROUPS:
        raise UserError(f"group={group!r} is not one of {', '.join(GROUPS)}")
    return [
        r for r in records
        if (image_index is None or r.image_index == image_index)
        and (layer is None or r.layer == layer)
        and (group is None or r.group == group)
    ]


def layers_of(records: Iterable[Any]) -> list[int]:
    """Sorted layer indices present in the records (``-1`` = encoder proposals first)."""
    return sorted({int(r.layer) for r in records})


def groups_of(records: Iterable[Any]) -> list[str]:
    """Groups present in the records, one-to-one first."""
    present = {r.group for r in records}
    return [g for g in GROUPS if g in present]


def last_decoder_layer(records: Iterable[Any]) -> int:
    """The highest layer index in the records (the layer inference uses)."""
    layers = layers_of(records)
    if not layers:
        raise UserError("no assignment records: run the criterion with record=True first")
    return layers[-1]


def query_rows(records: Iterable[Any]) -> list[dict]:
    """One dict per matched query: image, layer, group, query, target, copy, cost terms, IoU.

    Rows are sorted by (image, layer, group, query) so tables read in query order.
    """
    rows = []
    for r in records:
        columns = {name: getattr(r, name).detach().cpu().tolist() for name in COST_FIELDS}
        queries = r.query_indices.detach().cpu().tolist()
        targets = r.target_indices.detach().cpu().tolist()
        copies = r.copy_indices.detach().cpu().tolist()
        for i, query in enumerate(queries):
            rows.append({
                "image": int(r.image_index), "layer": int(r.layer), "group": r.group,
                "query": int(query), "target": int(targets[i]), "copy": int(copies[i]),
                **{name: float(columns[name][i]) for name in COST_FIELDS},
            })
    group_order = {g: i for i, g in enumerate(GROUPS)}
    rows.sort(key=lambda row: (row["image"], row["layer"], group_order[row["group"]], row["query"]))
    return rows


def _has_one2many_outputs(outputs: dict) -> bool:
    boxes = outputs.get("pred_boxes_one2many")
    return isinstance(boxes, torch.Tensor) and boxes.dim() == 3 and boxes.shape[1] > 0


def _layer_outputs(outputs: dict, layer: int, group: str) -> dict:
    """The output dict (with pred_logits/pred_boxes) holding ``group``'s predictions at ``layer``."""
    if group not in GROUPS:
        raise UserError(f"group={group!r} is not one of {', '.join(GROUPS)}")
    if layer == ENCODER_LAYER:
        if "enc_outputs" not in outputs:
            raise UserError("layer=-1 (encoder proposals) needs outputs['enc_outputs'] (two_stage models)")
        return outputs["enc_outputs"]
    suffix = "_one2many" if group == "one2many" and _has_one2many_outputs(outputs) else ""
    aux = outputs.get("aux_outputs" + suffix) or []
    num_layers = len(aux) + 1
    if not 0 <= layer < num_layers:
        raise UserError(f"layer={layer} is out of range: the outputs hold decoder layers 0..{num_layers - 1} "
                        f"(and -1 for the encoder proposals)")
    if layer == num_layers - 1:
        return {"pred_logits": outputs["pred_logits" + suffix], "pred_boxes": outputs["pred_boxes" + suffix]}
    return aux[layer]


def predicted_boxes(outputs: dict, *, image_index: int, layer: int, group: str) -> torch.Tensor:
    """Normalised cxcywh boxes [Q, 4] of every query of ``group`` at ``layer`` for one image."""
    return _layer_outputs(outputs, layer, group)["pred_boxes"][image_index].detach().cpu()


def predicted_scores(outputs: dict, *, image_index: int, layer: int, group: str) -> torch.Tensor:
    """Best class probability [Q] (sigmoid, as the focal-loss head) of every query of ``group`` at ``layer``."""
    logits = _layer_outputs(outputs, layer, group)["pred_logits"][image_index].detach().cpu()
    return logits.sigmoid().max(dim=-1).values


def matched_boxes(records: Sequence[Any], outputs: dict) -> list[torch.Tensor]:
    """For each record, the predicted boxes [P, 4] of its matched queries (normalised cxcywh)."""
    result = []
    for r in records:
        boxes = predicted_boxes(outputs, image_index=r.image_index, layer=r.layer, group=r.group)
        if len(r.query_indices) and int(r.query_indices.max()) >= boxes.shape[0]:
            raise UserError(
                f"record (image {r.image_index}, layer {r.layer}, {r.group}) points at query "
                f"{int(r.query_indices.max())} but the outputs hold {boxes.shape[0]} queries: "
                f"were the records made from these outputs?"
            )
        result.append(boxes[r.query_indices.long().cpu()])
    return result
