"""Figures of a report: measured metric per variant beside the paper's, and training curves."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt

from hdetr.reports.comparison import paper_number
from hdetr.studies.rows import ComparisonRow
from hdetr.studies.statistics import summarize
from hdetr.studies.variants import curves


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
        mean = summarize(values).mean
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


def ap_band_figure(panels, path, *, by: str = "step", labels=None, styles=None, title: str = "",
                   value: str = "AP", ylabel: str = "AP (%), mean ± sd over seeds", zero_line: bool = False):
    """AP over iterations (``by="step"``) or training seconds (``by="seconds"``), one panel per entry.

    panels: panel title -> model name -> RunRecords (hdetr.studies.run_records); each model is drawn as
    the mean over its runs with a ± sd band, at the evaluation steps every run has. In seconds, a model's
    steps are scaled by its mean measured seconds per step. ``value`` names another evaluation series
    (``RunRecord.series``, e.g. ``"nms_gap"``); runs without it are left out. Saves to ``path``.
    """
    from hdetr.studies.run_records import variant_speed

    labels = labels or {}
    styles = styles or {}
    default_styles = [("tab:blue", "-"), ("tab:red", "--"), ("tab:green", "-."), ("tab:purple", ":")]
    keys = list(panels)
    cols = min(3, max(1, len(keys)))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False, sharey=True)
    for ax, key in zip(axes.flat, keys):
        for i, (model, records) in enumerate(panels[key].items()):
            records = [r for r in records if r.eval_steps and r.series(value)]
            if not records:
                continue
            steps = sorted(set.intersection(*[set(r.eval_steps) for r in records]))
            scale = (variant_speed(records) or 0.0) if by == "seconds" else 1.0
            xs = [s * scale for s in steps]
            values = [[r.series(value)[r.eval_steps.index(s)] for r in records] for s in steps]
            summaries = [summarize(v) for v in values]
            mean = [s.mean for s in summaries]
            sd = [s.sd or 0.0 for s in summaries]  # one run: no band
            color, ls = styles.get(model, default_styles[i % len(default_styles)])
            ax.plot(xs, mean, color=color, linestyle=ls, marker="o", ms=3,
                    label=f"{labels.get(model, model)} ({len(records)} seeds)")
            ax.fill_between(xs, [m - s for m, s in zip(mean, sd)], [m + s for m, s in zip(mean, sd)],
                            color=color, alpha=0.15)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("optimiser step" if by == "step" else "training seconds (measured s/step)", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        if zero_line:
            ax.axhline(0.0, color="0.4", linewidth=0.8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best" if value != "AP" else "lower right")
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
