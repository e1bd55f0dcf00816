"""Summaries of assignment records per (group, layer): how many positives, how well they fit.

``summarize_records(records, targets)`` turns the criterion's ``last_assignments`` into
one ``LayerStats`` per (group, layer); ``stats_to_row`` flattens them into the scalar
keys the training loop writes to ``metrics.jsonl`` (``type: "assignments"`` rows)::

    one2one/layer2/positives   matched queries per ground-truth object (1.0 for one-to-one)
    one2one/layer2/matched_iou mean IoU of the matched predictions with their targets

``hdetr.analysis.dynamics`` reads those rows back into curves. This module sits with
the records (below the engine) so the training loop can use it without importing the
analysis suite.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from hdetr.matching.records import AssignmentRecord
from hdetr.outputs import ENCODER_LAYER, QUERY_GROUPS

STAT_FIELDS = ("positives", "matched_iou")


@dataclass(frozen=True)
class LayerStats:
    """Assignment statistics of one (group, layer) over a batch (or a dataset).

    positives: matched queries per ground-truth object (K for a full one-to-many match).
    matched_iou: mean IoU of the matched predictions with their targets (nan without matches).
    num_matches / num_objects: the counts behind the ratios.
    """

    group: str
    layer: int
    positives: float
    matched_iou: float
    num_matches: int
    num_objects: int


def layer_key(layer: int) -> str:
    """``layer2`` for decoder layer 2, ``enc`` for the encoder proposals (``ENCODER_LAYER``)."""
    return "enc" if layer == ENCODER_LAYER else f"layer{layer}"


def summarize_records(records: Iterable[AssignmentRecord], objects_per_image: Sequence[int]) -> list[LayerStats]:
    """One LayerStats per (group, layer) present in ``records``, one-to-one first, layers ascending.

    objects_per_image: the number of ground-truth objects of each image of the batch
    (``len(targets[i]["labels"])``), so that images without matches still count.
    """
    sums: dict[tuple[str, int], list[float]] = {}
    for record in records:
        entry = sums.setdefault((record.group, int(record.layer)), [0, 0.0])
        entry[0] += len(record)
        entry[1] += float(record.iou.sum()) if len(record) else 0.0
    num_objects = int(sum(objects_per_image))
    order = {g: i for i, g in enumerate(QUERY_GROUPS)}
    stats = []
    for (group, layer), (matches, iou_sum) in sorted(sums.items(), key=lambda kv: (order.get(kv[0][0], 2), kv[0][1])):
        stats.append(LayerStats(
            group=group, layer=layer,
            positives=matches / num_objects if num_objects else float("nan"),
            matched_iou=iou_sum / matches if matches else float("nan"),
            num_matches=int(matches), num_objects=num_objects,
        ))
    return stats


def stats_to_row(stats: Iterable[LayerStats]) -> dict[str, float]:
    """Flat ``{group}/{layer}/{field}`` scalars for a metrics row."""
    row = {}
    for s in stats:
        for field in STAT_FIELDS:
            row[f"{s.group}/{layer_key(s.layer)}/{field}"] = float(getattr(s, field))
    return row
