"""Figures of a report: measured metric per variant beside the paper's, and training curves."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt

from hdetr.experiments.report import ComparisonRow, paper_number, mean_and_spread
from hdetr.experiments.study import curves


def comparison_figure(rows: Sequence[ComparisonRow], *, metric: str = "AP", title: str = "",
                      scale: str = "", loss_key: str = "loss_giou"):
    """Three panels: measured ``metric`` (bar = mean, dots = runs), the paper's, and ``loss_key`` vs step.

    Measured and paper values are in percent. The loss panel reads each run's
    metrics.jsonl (first run of each variant); it is left empty when there are none.
    The default, the last layer's one-to-one GIoU loss, is comparable across schemes
    (the total loss is not: it includes the one-to-many terms).
    Returns the matplotlib Figure.
    """
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    labels = [r.label for r in rows]
    positions = range(len(rows))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    measured_ax, paper_ax, loss_ax = axes
    for i, row in enumerate(rows):
        values = row.values(metric)
        mean, _ = mean_and_spread(values)
        color = colors[i % len(colors)]
        measured_ax.bar(i, mean or 0.0, color=color, alpha=0.6)
        measured_ax.scatter([i] * len(values), values, color="black", s=12, zorder=3)
        paper = paper_number(row.paper.get(metric))
        paper_ax.bar(i, paper or 0.0, color=color, alpha=0.6 if paper is not None else 0.0)
        if paper is not None:
            paper_ax.text(i, paper, f"{paper:.1f}", ha="center", va="bottom", fontsize=7)
        for steps, values in curves(row, loss_key)[:1]:
            if steps:
                loss_ax.plot(steps, values, color=color, label=row.label)
    for ax, name in ((measured_ax, f"measured {metric} ({scale} scale)"), (paper_ax, f"paper {metric}")):
        ax.set_xticks(list(positions), labels, rotation=25, ha="right", fontsize=7)
        ax.set_ylabel(f"{metric} (%)", fontsize=8)
        ax.set_title(name, fontsize=9)
    measured_ax.set_ylim(bottom=0)
    paper_values = [paper_number(r.paper.get(metric)) for r in rows]
    paper_values = [v for v in paper_values if v is not None]
    if paper_values:  # zoom so the paper's (small) differences are visible
        paper_ax.set_ylim(min(paper_values) - 3, max(paper_values) + 1.5)
    loss_ax.set_title(f"one-to-one {loss_key} in training (first run)", fontsize=9)
    loss_ax.set_xlabel("step", fontsize=8)
    if loss_ax.lines:
        loss_ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
