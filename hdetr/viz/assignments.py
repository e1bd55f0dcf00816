"""Pick the assignment records and predicted boxes that one view shows.

The criterion (``criterion(outputs, targets, record=True)``) leaves one
``AssignmentRecord`` per (image, layer, group) in ``criterion.last_assignments``.
A view shows one image at one layer; these helpers select the records for it,
tabulate them query by query, and find the matching predicted boxes in the model's
``ModelOutput`` (``hdetr.outputs``), whose layout depends on the scheme:

- hybrid_branch: the one-to-many group has its own queries (``ONE2MANY``); record
  query indices point into them;
- baseline, hybrid_epoch, hybrid_layer: one set of queries (``ONE2ONE``) serves
  both groups, so a one-to-many record indexes the same outputs as a one-to-one one.

Decoder layer ``i`` is ``outputs.layer(group, i)``; layer ``ENCODER_LAYER`` is the
encoder's two-stage proposals.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch

from hdetr.errors import UserError
from hdetr.outputs import ENCODER_LAYER, ONE2MANY, ONE2ONE, QUERY_GROUPS, ModelOutput, check_group

GROUPS = QUERY_GROUPS
COST_FIELDS = ("cost_class", "cost_bbox", "cost_giou", "iou")


def select_records(records: Iterable[Any], *, image_index: int | None = None, layer: int | None = None,
                   group: str | None = None) -> list:
    """The records that match every given field (``None`` matches anything)."""
    if group is not None:
        check_group(group)
    return [
        r for r in records
        if (image_index is None or r.image_index == image_index)
        and (layer is None or r.layer == layer)
        and (group is None or r.group == group)
    ]


def layers_of(records: Iterable[Any]) -> list[int]:
    """Sorted layer indices present in the records (``ENCODER_LAYER`` = encoder proposals first)."""
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


def _layer_outputs(outputs: ModelOutput | dict, layer: int, group: str) -> dict:
    """The output dict (with pred_logits/pred_boxes) holding ``group``'s predictions at ``layer``."""
    outputs = ModelOutput.from_official_dict(outputs)
    check_group(group)
    # Without a separate one-to-many query set, both groups' records index the main queries.
    queries = ONE2MANY if group == ONE2MANY and outputs.logits[ONE2MANY].shape[2] > 0 else ONE2ONE
    return outputs.layer(queries, layer)


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
