"""Baseline and hybrid over training, in one figure: AP without and with NMS, and duplicates per object.

Reads the ``over_training`` rows of the duplicates report (``duplicates.json``, written by
``python -m hdetr.analysis.duplicates_report``: every snapshot of both shipped references evaluated on
the same validation images), so the figure and the report's table are the same numbers.
"""
from __future__ import annotations

from typing import Any

# one colour per model, one line style per measure
_MODEL_COLOURS = ("tab:gray", "tab:blue", "tab:green", "tab:purple")


def over_training_series(report: dict[str, Any], branch: str = "one2one") -> dict[str, dict[str, list[float]]]:
    """reference -> {"step", "AP", "AP_nms", "duplicates_per_object"} lists (AP in points), sorted by step,
    for the predictions of ``branch``."""
    series: dict[str, dict[str, list[float]]] = {}
    for row in sorted(report["over_training"], key=lambda r: (r["reference"], r["step"])):
        if row["branch"] != branch:
            continue
        one = series.setdefault(row["reference"], {"step": [], "AP": [], "AP_nms": [], "duplicates_per_object": []})
        for key in one:
            one[key].append(row[key])
    return series


def plot_over_training(report: dict[str, Any], labels: dict[str, str] | None = None, axes=None):
    """Two panels sharing the step axis: the one-to-one AP of each model without NMS (solid) and with NMS
    (dashed), and its duplicates per object. ``labels``: reference name -> legend name. Returns the axes."""
    import matplotlib.pyplot as plt

    series = over_training_series(report)
    labels = labels or {}
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    ap_ax, dup_ax = axes
    for colour, (reference, one) in zip(_MODEL_COLOURS, sorted(series.items())):
        name = labels.get(reference, reference)
        ap_ax.plot(one["step"], one["AP"], color=colour, marker="o", label=f"{name}: without NMS")
        ap_ax.plot(one["step"], one["AP_nms"], color=colour, marker="o", linestyle="--", label=f"{name}: with NMS")
        dup_ax.plot(one["step"], one["duplicates_per_object"], color=colour, marker="o", label=name)
    settings = report.get("settings", {})
    ap_ax.set_ylabel("AP of the one-to-one predictions (points)")
    dup_ax.set_ylabel("duplicates per object (one-to-one, no NMS)")
    dup_ax.set_ylim(bottom=0)
    for ax in axes:
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    ap_ax.set_title(f"AP over training ({settings.get('curve_images', '?')} val images, NMS IoU "
                    f"{settings.get('nms_iou', '?')})", fontsize=11)
    dup_ax.set_title(f"second boxes on one object (score > {settings.get('score_threshold', '?')}, IoU > "
                     f"{settings.get('dup_iou', '?')})", fontsize=11)
    return axes
