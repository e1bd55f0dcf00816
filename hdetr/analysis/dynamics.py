"""Curves of the assignment statistics the training loop logs (``type: "assignments"`` rows).

``assignment_curves(run)`` reads a run folder (or its metrics.jsonl) into
``{(group, layer, field): (steps, values)}`` with field ``positives`` or
``matched_iou`` (see ``hdetr.matching.record_stats``); ``eval_curve`` gives AP over steps.
"""
from __future__ import annotations

from pathlib import Path

from hdetr.engine.metrics_log import read_metrics
from hdetr.errors import UserError
from hdetr.matching.record_stats import STAT_FIELDS
from hdetr.outputs import ENCODER_LAYER


def _parse_layer(text: str) -> int:
    return ENCODER_LAYER if text == "enc" else int(text.removeprefix("layer"))


def assignment_curves(run: str | Path) -> dict[tuple[str, int, str], tuple[list[int], list[float]]]:
    """(group, layer, field) -> (steps, values) from the run's ``assignments`` rows.

    A run logged without ``train.assignment_stats_every_iters`` raises UserError saying so.
    """
    rows = [r for r in read_metrics(run) if r.get("type") == "assignments"]
    if not rows:
        raise UserError(f"{run}: no assignment statistics in its metrics.jsonl; train with "
                        f"--set train.assignment_stats_every_iters=50 (or any N > 0)")
    curves: dict[tuple[str, int, str], tuple[list[int], list[float]]] = {}
    for row in rows:
        for key, value in row.items():
            parts = key.split("/")
            if len(parts) != 3 or parts[2] not in STAT_FIELDS:
                continue
            steps, values = curves.setdefault((parts[0], _parse_layer(parts[1]), parts[2]), ([], []))
            steps.append(int(row["step"]))
            values.append(float(value))
    return dict(sorted(curves.items(), key=lambda kv: (kv[0][0] != "one2one", kv[0][1], kv[0][2])))


def eval_curve(run: str | Path, metric: str = "AP") -> tuple[list[int], list[float]]:
    """(steps, values) of ``metric`` in the run's eval rows."""
    rows = [r for r in read_metrics(run) if r.get("type") == "eval" and metric in r]
    return [int(r["step"]) for r in rows], [float(r[metric]) for r in rows]


def plot_assignment_curves(runs: dict[str, str | Path], *, field: str = "positives", layer: int | None = None,
                           ax=None):
    """One line per (run, group) of ``field`` over steps at ``layer`` (default: the last decoder layer);
    one-to-one solid, one-to-many dashed. Returns the Axes."""
    import matplotlib.pyplot as plt

    if field not in STAT_FIELDS:
        raise UserError(f"field={field!r} is not one of {', '.join(STAT_FIELDS)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    for name, run in runs.items():
        curves = assignment_curves(run)
        layers = sorted({l for (_, l, f) in curves if f == field and l >= 0})
        at = layers[-1] if layer is None else layer
        for (group, l, f), (steps, values) in curves.items():
            if f == field and l == at:
                ax.plot(steps, values, linestyle="-" if group == "one2one" else "--", marker=".",
                        label=f"{name} {group}")
    ax.set_xlabel("training step")
    ax.set_ylabel({"positives": "matched queries per object", "matched_iou": "IoU of matched predictions"}[field])
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.grid(alpha=0.3)
    return ax
