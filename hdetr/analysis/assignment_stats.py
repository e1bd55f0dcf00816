"""Per-layer statistics of the criterion's assignments, for one batch or a whole dataset.

``batch_assignment_stats(model, criterion, images, targets)`` runs the model in train
mode (so every query group and layer is supervised as in training) without gradients,
matches with ``record=True`` and returns one ``LayerStats`` per (group, layer) with the
positives per object and the matched IoU, plus ``matched_rank``: the mean rank, by
score among the group's queries (0 = highest), of the matched queries.
``dataset_assignment_stats`` sums the same over the first N images of a dataset.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from hdetr.matching.record_stats import LayerStats, summarize_records
from hdetr.viz.assignments import predicted_scores


@dataclass(frozen=True)
class AssignmentStats:
    """LayerStats plus ``matched_rank``: mean score rank of the matched queries (0 = the top query)."""

    group: str
    layer: int
    positives: float
    matched_iou: float
    matched_rank: float
    num_matches: int
    num_objects: int


@torch.no_grad()
def _records(model, criterion, images, targets, epoch: int):
    was_training = model.training
    model.train()  # all query groups run, as in training
    try:
        outputs = model(images)
    finally:
        model.train(was_training)
    criterion(outputs, targets, epoch=epoch, record=True)
    return criterion.last_assignments, outputs


def _rank_sums(records, outputs) -> dict[tuple[str, int], float]:
    sums: dict[tuple[str, int], float] = {}
    for r in records:
        if not len(r):
            continue
        scores = predicted_scores(outputs, image_index=r.image_index, layer=r.layer, group=r.group)
        rank = torch.empty_like(scores, dtype=torch.int64)
        rank[scores.argsort(descending=True)] = torch.arange(len(scores))
        key = (r.group, int(r.layer))
        sums[key] = sums.get(key, 0.0) + float(rank[r.query_indices.long().cpu()].sum())
    return sums


def _combine(stats: list[LayerStats], rank_sums: dict) -> list[AssignmentStats]:
    return [AssignmentStats(group=s.group, layer=s.layer, positives=s.positives, matched_iou=s.matched_iou,
                            matched_rank=rank_sums.get((s.group, s.layer), 0.0) / s.num_matches if s.num_matches
                            else float("nan"), num_matches=s.num_matches, num_objects=s.num_objects)
            for s in stats]


def batch_assignment_stats(model, criterion, images, targets, epoch: int = 0) -> list[AssignmentStats]:
    """Statistics of one batch (``images``: list of [3, H, W]; ``targets``: the criterion's target dicts)."""
    records, outputs = _records(model, criterion, images, targets, epoch)
    return _combine(summarize_records(records, [len(t["labels"]) for t in targets]), _rank_sums(records, outputs))


def dataset_assignment_stats(model, criterion, dataset, *, max_images: int = 60, batch_size: int = 4,
                             epoch: int = 0) -> list[AssignmentStats]:
    """The statistics over the first ``max_images`` images of ``dataset`` (sums over batches, then ratios)."""
    from hdetr.data import collate

    count = min(max_images, len(dataset)) if max_images else len(dataset)
    totals: dict[tuple[str, int], list[float]] = {}
    for start in range(0, count, batch_size):
        images, targets = collate([dataset[i] for i in range(start, min(start + batch_size, count))])
        records, outputs = _records(model, criterion, images, targets, epoch)
        ranks = _rank_sums(records, outputs)
        for s in summarize_records(records, [len(t["labels"]) for t in targets]):
            t = totals.setdefault((s.group, s.layer), [0, 0.0, 0.0, 0])
            t[0] += s.num_matches
            t[1] += s.matched_iou * s.num_matches if s.num_matches else 0.0
            t[2] += ranks.get((s.group, s.layer), 0.0)
            t[3] += s.num_objects
    return [AssignmentStats(group=g, layer=l, positives=m / n if n else float("nan"),
                            matched_iou=i / m if m else float("nan"), matched_rank=r / m if m else float("nan"),
                            num_matches=int(m), num_objects=int(n))
            for (g, l), (m, i, r, n) in totals.items()]
