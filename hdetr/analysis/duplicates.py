"""Duplicates and NMS per branch: the paper's Table 13 argument at any scale.

H-DETR keeps only the one-to-one branch at inference because one-to-one matching
teaches it to put a single box on each object, while the one-to-many branch, trained to
put K boxes on each object, needs NMS (paper, Table 13: 13.5 AP without NMS, 48.6 with
it). Here:

- ``count_duplicates`` counts, for each ground-truth object, the predictions above a
  score threshold whose IoU with it exceeds an IoU threshold; every one after the first
  is a duplicate.
- ``nms_detections`` turns raw outputs into detections (top-k over query x class, as the
  model's post-processing) with or without class-wise NMS (``torchvision.ops.batched_nms``).
- ``branch_table`` evaluates each branch without and with NMS on a dataset with
  ``hdetr.evaluation`` (COCO AP) and counts its duplicates.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch

from hdetr.analysis.branches import BRANCHES, branch_outputs
from hdetr.boxes import box_iou, cxcywh_to_xyxy
from hdetr.errors import UserError
from hdetr.evaluation.duplicates import (DuplicateCounts, apply_nms, check_nms_iou, check_thresholds,  # noqa: F401
                                         count_duplicates, image_hits)
from hdetr.models.postprocess import postprocess
from hdetr.outputs import ONE2ONE


def nms_detections(outputs: dict, target_sizes: torch.Tensor, *, topk: int = 100,
                   nms_iou: float | None = None) -> list[dict[str, torch.Tensor]]:
    """Detections per image (``scores`` [k], ``labels`` [k], ``boxes`` [k, 4] xyxy in ``target_sizes``
    pixels): top-k over (query, class) pairs, then, when ``nms_iou`` is given, class-wise NMS at that IoU."""
    check_nms_iou(nms_iou)
    detections = postprocess(outputs, target_sizes, topk)
    return detections if nms_iou is None else apply_nms(detections, nms_iou)


@dataclass(frozen=True)
class BranchRow:
    """One line of the table: a branch, with or without NMS, its COCO AP / AP50 (fractions) and its
    duplicates (``predictions_per_object``: mean hits; ``duplicates_per_object``: mean duplicates)."""

    branch: str
    nms: bool
    AP: float
    AP50: float
    predictions_per_object: float
    duplicates_per_object: float


@torch.no_grad()
def branch_table(model, dataset, *, max_images: int = 60, batch_size: int = 4, nms_iou: float = 0.7,
                 score_threshold: float = 0.3, dup_iou: float = 0.6, branches: Iterable[str] | None = None,
                 topk: int | None = None) -> list[BranchRow]:
    """Each branch of ``model`` (default: one2one, and one2many when the model has it) without and
    with NMS on the first ``max_images`` images of ``dataset``.

    Duplicates are counted on the raw outputs (without NMS) and after NMS on the kept
    detections, with ``score_threshold`` and ``dup_iou`` (see ``count_duplicates``).
    """
    from hdetr import evaluation
    from hdetr.data import collate

    if branches is None:
        branches = [b for b in BRANCHES if b == ONE2ONE or getattr(model, "num_queries_one2many", 0)]
    branches = list(branches)
    topk = topk or model.config.topk
    count = min(max_images, len(dataset)) if max_images else len(dataset)
    if count < 1:
        raise UserError("branch_table: the dataset has no images")
    predictions = {(b, n): {} for b in branches for n in (False, True)}
    hits = {(b, n): [] for b in branches for n in (False, True)}
    for start in range(0, count, batch_size):
        images, targets = collate([dataset[i] for i in range(start, min(start + batch_size, count))])
        sizes = torch.stack([t["orig_size"] for t in targets])
        for branch in branches:
            outputs = branch_outputs(model, images, branch)
            for use_nms in (False, True):
                dets = nms_detections(outputs, sizes, topk=topk, nms_iou=nms_iou if use_nms else None)
                for target, det, size in zip(targets, dets, sizes):
                    predictions[(branch, use_nms)][int(target["image_id"])] = det
                    hits[(branch, use_nms)].append(image_hits(det, target, size, score_threshold=score_threshold,
                                                              iou_threshold=dup_iou))
    rows = []
    for branch in branches:
        for use_nms in (False, True):
            metrics = evaluation.evaluate(dataset, predictions[(branch, use_nms)])
            h = torch.cat(hits[(branch, use_nms)]).float()
            rows.append(BranchRow(branch=branch, nms=use_nms, AP=float(metrics["AP"]), AP50=float(metrics["AP50"]),
                                  predictions_per_object=float(h.mean()) if h.numel() else float("nan"),
                                  duplicates_per_object=float((h - 1).clamp(min=0).mean()) if h.numel() else float("nan")))
    return rows


def rows_to_markdown(rows: Iterable[BranchRow], paper: dict | None = None) -> str:
    """The table as markdown; ``paper`` (branch -> {"no_nms": AP, "nms": AP}, AP in %) adds the paper's column."""
    head = "| branch | NMS | AP | AP50 | predictions / object | duplicates / object |" + (" paper AP |" if paper else "")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cells = [r.branch, "yes" if r.nms else "no", f"{100 * r.AP:.1f}", f"{100 * r.AP50:.1f}",
                 f"{r.predictions_per_object:.2f}", f"{r.duplicates_per_object:.2f}"]
        if paper:
            value = (paper.get(r.branch) or {}).get("nms" if r.nms else "no_nms")
            cells.append("-" if value is None else f"{value:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def covering_predictions(outputs: dict, gt_box: torch.Tensor, *, score_threshold: float = 0.3,
                         iou_threshold: float = 0.6) -> tuple[torch.Tensor, torch.Tensor]:
    """The predictions of one image that cover one object: ``boxes`` [m, 4] and ``scores`` [m], best first.

    ``outputs``: one branch's ``pred_logits`` [1, Q, C] / ``pred_boxes`` [1, Q, 4] (normalised cxcywh);
    ``gt_box`` [4]: the object, normalised xyxy. A prediction covers it as in ``count_duplicates``.
    """
    check_thresholds(score_threshold, iou_threshold)
    boxes = cxcywh_to_xyxy(outputs["pred_boxes"][0].float())
    scores = outputs["pred_logits"][0].float().sigmoid().max(dim=-1).values
    iou = box_iou(gt_box.reshape(1, 4).float(), boxes)[0][0]
    keep = (scores > score_threshold) & (iou > iou_threshold)
    order = scores[keep].argsort(descending=True)
    return boxes[keep][order], scores[keep][order]


@torch.no_grad()
def draw_object_duplicates(model, image: torch.Tensor, target: dict, object_index: int | None = None, *,
                           score_threshold: float = 0.3, iou_threshold: float = 0.6, zoom: float = 1.0,
                           baseline=None, axes=None):
    """One object of one image and, one panel each, the one-to-one and the one-to-many predictions that
    cover it (``covering_predictions``): the one-to-many branch puts several boxes on it, a trained
    one-to-one branch one. ``baseline`` (a one-to-one model) adds a third panel with its predictions on the
    same object. ``object_index`` None picks the object the one-to-many branch covers most.
    Ground truth: thick green solid; one-to-one: red dotted; one-to-many: blue dashed; baseline: purple
    dotted; their scores in the legend. ``zoom`` > 0 shows the object with that many object sizes of margin
    on each side (0: the whole image). Returns (axes, object_index, {panel: number of covering predictions})."""
    import matplotlib.pyplot as plt

    from hdetr.viz.image import image_size, to_display
    from hdetr.viz.static import COLORS, LINESTYLES, _add_box

    gt = cxcywh_to_xyxy(target["boxes"].float())
    panels = [(branch, model, branch, COLORS[branch], LINESTYLES[branch]) for branch in BRANCHES]
    if baseline is not None:
        panels.append(("baseline one2one", baseline, "one2one", COLORS["baseline"], LINESTYLES["one2one"]))
    covering = {}
    for title, panel_model, branch, _, _ in panels:
        outputs = branch_outputs(panel_model, [image], branch)
        covering[title] = [covering_predictions(outputs, box, score_threshold=score_threshold,
                                                iou_threshold=iou_threshold) for box in gt]
    if object_index is None:
        object_index = max(range(len(gt)), key=lambda i: len(covering["one2many"][i][1]))
    if axes is None:
        _, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 5.0))
    height, width = image_size(image)
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    counts = {}
    for ax, (title, _, branch, colour, linestyle) in zip(axes, panels):
        ax.imshow(to_display(image))
        _add_box(ax, gt[object_index] * scale, COLORS["gt"], LINESTYLES["gt"], linewidth=3.0, label="ground truth")
        boxes, scores = covering[title][object_index]
        counts[title] = len(scores)
        listed = ", ".join(f"{v:.2f}" for v in scores.tolist()[:6]) + (", ..." if len(scores) > 6 else "")
        for rank, box in enumerate(boxes * scale):
            _add_box(ax, box, colour, linestyle, linewidth=2.0,
                     label=f"{title} (scores {listed})" if rank == 0 else None)
        x0, y0, x1, y1 = (gt[object_index] * scale).tolist()
        if zoom > 0:  # small objects: the stack of boxes is only visible close up
            mx, my = max(zoom * (x1 - x0), 8.0), max(zoom * (y1 - y0), 8.0)
            ax.set_xlim(max(0.0, x0 - mx), min(width, x1 + mx))
            ax.set_ylim(min(height, y1 + my), max(0.0, y0 - my))
        else:
            ax.set_xlim(0, width)
            ax.set_ylim(height, 0)
        ax.axis("off")
        ax.set_title(f"{title}: {len(scores)} box(es)\nscore > {score_threshold}, IoU > {iou_threshold}",
                     fontsize=11)
        ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(0.0, -0.02), frameon=False)
    return axes, object_index, counts
