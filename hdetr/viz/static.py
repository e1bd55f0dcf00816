"""Static matplotlib views: assignments per layer, cost terms per query, detections.

These are the views CI can render and the notebooks fall back to without a
widget frontend. Every function draws on a given ``ax`` (or a new one) and
returns it, so views can be combined into one figure.
"""
from __future__ import annotations

from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Rectangle

from hdetr.errors import UserError
from hdetr.outputs import ENCODER_LAYER
from hdetr.viz.assignments import (COST_FIELDS, GROUPS, last_decoder_layer, layers_of, matched_boxes,
                                   query_rows, select_records)
from hdetr.viz.image import boxes_to_pixels, image_size, padded_extent, to_display

COLORS = {"gt": "#2ca02c", "one2one": "#d62728", "one2many": "#1f77b4", "detection": "#ff7f0e", "baseline": "#9467bd"}
# line style as well as colour tells ground truth, one-to-one and one-to-many apart on any object colour
LINESTYLES = {"gt": "-", "one2one": ":", "one2many": "--"}


def _new_ax(ax):
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    return ax


def _add_box(ax, xyxy, color: str, linestyle: str = "-", linewidth: float = 1.5, label: str | None = None,
             gid: str | None = None) -> Rectangle:
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    patch = Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linestyle=linestyle,
                      linewidth=linewidth, label=label)
    patch.set_gid(gid)
    ax.add_patch(patch)
    return patch


def draw_assignments(image: torch.Tensor, targets: dict, records: Sequence[Any], outputs: dict, *,
                     image_index: int = 0, layer: int | None = None, groups: Sequence[str] = GROUPS,
                     class_names: Sequence[str] | None = None, connect: bool = True, legend: bool = True,
                     title: str | None = None, fontsize: float = 9, ax=None):
    """Draw one image with its ground truth and the predictions matched to it at one layer.

    Args:
        image: normalised image [3, H, W] (the ``image_index``-th of the batch).
        targets: that image's target dict (``boxes`` [G, 4] normalised cxcywh, ``labels`` [G]).
        records: the criterion's ``last_assignments`` (any images/layers; filtered here).
        outputs: the model outputs the records were made from (batched).
        layer: decoder layer (default: the last one recorded); ``ENCODER_LAYER`` = encoder proposals.
        groups: which groups to draw; one-to-one dotted red, one-to-many (K copies) dashed blue.
        connect: draw a thin line from each matched prediction's centre to its target's.
        legend: draw a legend beside the panel (off when a figure shares one legend between panels).
        title: the panel title (default: image and layer); fontsize: of the title and labels.

    The view is padded to hold every drawn box, so objects and predictions that cross the
    image edge are not cut. Ground-truth boxes are solid green and labelled with their index (and class name).
    Returns the matplotlib Axes; its patches are GT boxes first, then the matched boxes
    group by group (patch gid ``"gt:<i>"`` or ``"<group>:q<query>"``).
    """
    ax = _new_ax(ax)
    height, width = image_size(image)
    ax.imshow(to_display(image))
    image_records = select_records(records, image_index=image_index)
    if layer is None:
        layer = last_decoder_layer(image_records)
    gt_boxes = boxes_to_pixels(targets["boxes"], height, width)
    labels = targets.get("labels", torch.zeros(len(gt_boxes), dtype=torch.long)).tolist()
    for i, box in enumerate(gt_boxes):
        _add_box(ax, box, COLORS["gt"], LINESTYLES["gt"], linewidth=2.5, label="ground truth" if i == 0 else None,
                 gid=f"gt:{i}")
        name = class_names[labels[i]] if class_names else str(labels[i])
        ax.text(box[0], box[1], f"{i}:{name}", color="white", fontsize=fontsize - 1, va="bottom",
                bbox=dict(facecolor=COLORS["gt"], alpha=0.8, pad=1, linewidth=0))
    for group in groups:
        group_records = select_records(image_records, layer=layer, group=group)
        for record, boxes in zip(group_records, matched_boxes(group_records, outputs)):
            pixels = boxes_to_pixels(boxes, height, width)
            for j, box in enumerate(pixels):
                query = int(record.query_indices[j])
                _add_box(ax, box, COLORS[group], LINESTYLES[group], linewidth=1.6,
                         label=group if j == 0 else None, gid=f"{group}:q{query}")
                if connect:
                    target_box = gt_boxes[int(record.target_indices[j])]
                    ax.plot([(box[0] + box[2]) / 2, (target_box[0] + target_box[2]) / 2],
                            [(box[1] + box[3]) / 2, (target_box[1] + target_box[3]) / 2],
                            color=COLORS[group], linewidth=0.7, alpha=0.8, gid=f"{group}:q{query}->t")
    (x0, x1), (y0, y1) = padded_extent(_patch_boxes(ax.patches), height, width)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y1, y0)
    where = "encoder proposals" if layer == ENCODER_LAYER else f"decoder layer {layer}"
    ax.set_title(title if title is not None else f"image {image_index}, {where}", fontsize=fontsize)
    ax.axis("off")
    if legend and ax.patches:
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=fontsize - 2)  # beside the image, not on it
    return ax


def _patch_boxes(patches):
    """xyxy corners of rectangle patches."""
    for patch in patches:
        px, py = patch.get_xy()
        yield px, py, px + patch.get_width(), py + patch.get_height()


def shared_legend(fig, axes, fontsize: float = 12) -> None:
    """One legend for a figure of panels (below them), from the labelled artists of all ``axes``, each label once."""
    handles = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=len(handles), fontsize=fontsize,
                   frameon=False, bbox_to_anchor=(0.5, 0.0))


def draw_assignments_by_layer(image: torch.Tensor, targets: dict, records: Sequence[Any], outputs: dict, *,
                              image_index: int = 0, layers: Sequence[int] | None = None,
                              groups: Sequence[str] = GROUPS, ncols: int = 3,
                              class_names: Sequence[str] | None = None, panel_size: float = 4.6):
    """One ``draw_assignments`` panel per layer (default: every layer recorded for the image).

    Panels are ``panel_size`` inches square and share ONE legend below them (a legend per
    panel would repeat itself and shrink the images). Returns the matplotlib Figure; its
    first ``len(layers)`` axes are the panels in layer order.
    """
    if layers is None:
        layers = layers_of(select_records(records, image_index=image_index))
    if not layers:
        raise UserError(f"no assignment records for image {image_index}")
    ncols = max(1, min(ncols, len(layers)))
    nrows = -(-len(layers) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows + 0.6), squeeze=False)
    flat = axes.ravel()
    for ax, layer in zip(flat, layers):
        draw_assignments(image, targets, records, outputs, image_index=image_index, layer=layer,
                         groups=groups, class_names=class_names, legend=False, fontsize=12, ax=ax)
    for ax in flat[len(layers):]:
        ax.set_visible(False)
    fig.tight_layout(rect=(0, 0.6 / (panel_size * nrows + 0.6), 1, 1))  # room for the shared legend below
    shared_legend(fig, flat[:len(layers)])
    return fig


def draw_models_side_by_side(image: torch.Tensor, targets: dict, runs: dict, *, image_index: int = 0,
                             layer: int | None = None, groups: Sequence[str] = ("one2one",),
                             class_names: Sequence[str] | None = None, panel_size: float = 5.5):
    """The same image under several models: one ``draw_assignments`` panel each, one shared legend.

    runs: title -> (records, outputs) of that model on the batch (``criterion.last_assignments``
    after ``criterion(outputs, targets, record=True)``). Returns the Figure (panels in ``runs`` order).
    """
    fig, axes = plt.subplots(1, len(runs), figsize=(panel_size * len(runs), panel_size + 0.6), squeeze=False)
    flat = axes.ravel()
    for ax, (title, (records, outputs)) in zip(flat, runs.items()):
        draw_assignments(image, targets, records, outputs, image_index=image_index, layer=layer, groups=groups,
                         class_names=class_names, legend=False, fontsize=12, ax=ax)
        ax.set_title(f"{title}: {ax.get_title()}", fontsize=13)
    fig.tight_layout(rect=(0, 0.6 / (panel_size + 0.6), 1, 0.97))
    shared_legend(fig, flat)
    return fig


def draw_cost_heatmap(records: Sequence[Any], *, image_index: int = 0, layer: int | None = None,
                      group: str = "one2one", ax=None):
    """Query-by-query heat map of the matching cost terms and IoU at one layer.

    Rows are the matched queries (labelled ``q<query> -> t<target>/c<copy>``), columns
    ``cost_class``, ``cost_bbox``, ``cost_giou``, ``iou``; each cell shows its value.
    Each column is coloured on its own scale, since the terms have different ranges.
    Returns the Axes; its texts are the [P, 4] values row by row.
    """
    ax = _new_ax(ax)
    image_records = select_records(records, image_index=image_index)
    if layer is None:
        layer = last_decoder_layer(image_records)
    rows = query_rows(select_records(image_records, layer=layer, group=group))
    if not rows:
        raise UserError(f"no {group} matches recorded for image {image_index} at layer {layer}")
    values = np.array([[row[name] for name in COST_FIELDS] for row in rows], dtype=np.float64)
    span = values.max(axis=0) - values.min(axis=0)
    scaled = (values - values.min(axis=0)) / np.where(span > 0, span, 1.0)
    ax.imshow(scaled, cmap="viridis", aspect="auto", vmin=0, vmax=1)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=6,
                    color="white" if scaled[i, j] < 0.5 else "black")
    ax.set_xticks(range(len(COST_FIELDS)), COST_FIELDS, fontsize=7)
    ax.set_yticks(range(len(rows)), [f"q{r['query']} -> t{r['target']}/c{r['copy']}" for r in rows], fontsize=6)
    ax.set_title(f"{group} costs, image {image_index}, layer {layer}", fontsize=9)
    return ax


def draw_detections(image: torch.Tensor, detections: dict, *, score_threshold: float = 0.3,
                    class_names: Sequence[str] | None = None, topk_if_none: int = 0, target: dict | None = None,
                    legend: bool = True, ax=None):
    """Draw ``model.predict`` output for one image: boxes [k, 4] xyxy pixels, scores [k], labels [k].

    Boxes are in the pixels of the image as given; detections below ``score_threshold``
    are skipped, except that when none passes it and ``topk_if_none`` > 0 the
    ``topk_if_none`` best are drawn (dashed) and the title says so. ``target`` (the
    dataset's target of the image) adds its ground-truth boxes, thick green, so that a
    missed object or a second box on one object can be seen. Labels sit inside their box's
    top edge, clear of the title. Returns the Axes (one patch per drawn box).
    """
    ax = _new_ax(ax)
    ax.imshow(to_display(image))
    height, width = image_size(image)
    if target is not None and len(target["labels"]):
        for i, box in enumerate(boxes_to_pixels(target["boxes"], height, width).tolist()):
            _add_box(ax, box, COLORS["gt"], linewidth=3.0, label="ground truth" if i == 0 else None)
    all_scores = detections["scores"].detach().cpu()
    keep = all_scores >= score_threshold
    fallback = not bool(keep.any()) and topk_if_none > 0 and len(all_scores) > 0
    if fallback:
        keep = torch.zeros_like(keep)
        keep[all_scores.argsort(descending=True)[:topk_if_none]] = True
    boxes = detections["boxes"].detach().cpu()[keep]
    scores = all_scores[keep].tolist()
    labels = detections["labels"].detach().cpu()[keep].tolist()
    for i, (box, score, label) in enumerate(zip(boxes.tolist(), scores, labels)):
        _add_box(ax, box, COLORS["detection"], linestyle="--" if fallback else "-", linewidth=1.5,
                 label="detection (class score)" if i == 0 else None)
        name = class_names[label] if class_names else str(label)
        ax.text(box[0] + 1, box[1] + 1, f"{name} {score:.2f}", color="black", fontsize=8, va="top",
                bbox=dict(facecolor=COLORS["detection"], alpha=0.75, pad=1, linewidth=0))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    if fallback:
        ax.set_title(f"no detection with score >= {score_threshold}: the top {len(scores)} drawn (dashed) "
                     f"with their scores", fontsize=10, pad=8)
    else:
        gt = f", {len(target['labels'])} objects" if target is not None else ""
        ax.set_title(f"{len(scores)} detections with score >= {score_threshold}{gt}", fontsize=11, pad=8)
    if legend and ax.patches:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=2, fontsize=9, frameon=False)
    ax.axis("off")
    return ax


def draw_detections_side_by_side(image: torch.Tensor, target: dict, detections: dict, *,
                                 score_threshold: float = 0.3, class_names: Sequence[str] | None = None,
                                 topk_if_none: int = 0, panel_size: float = 5.5):
    """The same image's detections from several models, each panel with the ground truth, one shared legend.

    detections: title -> ``model.predict`` output for the image. Returns the Figure (panels in that order).
    """
    fig, axes = plt.subplots(1, len(detections), figsize=(panel_size * len(detections), panel_size + 0.6),
                             squeeze=False)
    flat = axes.ravel()
    for ax, (title, found) in zip(flat, detections.items()):
        draw_detections(image, found, score_threshold=score_threshold, class_names=class_names,
                        topk_if_none=topk_if_none, target=target, legend=False, ax=ax)
        ax.set_title(f"{title}\n{ax.get_title()}", fontsize=12, pad=8)
    fig.tight_layout(rect=(0, 0.6 / (panel_size + 0.6), 1, 1))
    shared_legend(fig, flat)
    return fig
