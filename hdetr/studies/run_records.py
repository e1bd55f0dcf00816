"""What a finished run's folder says, read once: final metrics, AP curve, cost per step, mechanism.

``RunRecord`` is the one reader of a run's ``metrics.jsonl`` for reports: the
equal-iteration view compares ``metrics`` (the evaluation at the last step), the
equal-wall-time view compares the AP curves at the same seconds of training
(``sec_per_iter``: the measured mean of the run's training windows, evaluation
excluded), and the mechanism columns come from the ``assignments`` rows
(positives per object and matched IoU per group and decoder layer) and the
one-to-one loss of the last decoder layer.
"""
from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Any, Sequence

from hdetr.engine.metrics_log import read_metrics
from hdetr.studies.statistics import Summary, difference, summarize, value_at


def one_to_one_loss(row: dict[str, Any], model_config: dict[str, Any]) -> float:
    """The last decoder layer's one-to-one loss, weighted as in training (comparable across schemes)."""
    return (model_config["cls_loss_coef"] * row["loss_ce"] + model_config["bbox_loss_coef"] * row["loss_bbox"]
            + model_config["giou_loss_coef"] * row["loss_giou"])


@dataclasses.dataclass
class RunRecord:
    """One finished run.

    steps: optimiser steps reached; budget: train.max_iters asked for (0 = none).
    metrics: the last evaluation, COCO/LVIS values in [0, 1].
    eval_steps / eval_ap: the AP curve (AP in percent).
    eval_values: every evaluation's numbers by name, in order of ``eval_steps`` (COCO values in percent;
        with the NMS-free measures, ``AP_nms``, ``nms_gap`` in points and ``duplicates_per_object`` as
        counted); a name some evaluations lack (runs older than the measure) is left out.
    sec_per_iter: median seconds per training step over the run's logged windows (evaluation excluded;
        the median, because other work on a shared machine slows some windows down).
    one2one_loss: one-to-one loss of the last decoder layer over the last ``tail`` train rows.
    assignments: ``<group>/<layer>/<positives|matched_iou>`` averaged over the second half of training.
    """

    key: str
    seed: int
    run_dir: Path
    steps: int
    budget: int
    metrics: dict[str, float]
    eval_steps: list[int]
    eval_ap: list[float]
    sec_per_iter: float | None
    one2one_loss: float | None
    assignments: dict[str, float]
    eval_values: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    def series(self, name: str) -> list[float] | None:
        """The values of ``name`` at ``eval_steps`` (``"AP"`` is ``eval_ap``), None when not measured."""
        return self.eval_ap if name == "AP" else self.eval_values.get(name)

    @property
    def short(self) -> bool:
        return bool(self.budget) and self.steps < self.budget

    @property
    def train_seconds(self) -> float | None:
        return None if not self.sec_per_iter else self.steps * self.sec_per_iter


def load_record(run_dir: str | Path, key: str, seed: int, config: dict[str, Any], *, tail: int = 5) -> RunRecord:
    """Read a run folder; ``config`` is the run's config as a dict (its model losses and budget)."""
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    train = [r for r in rows if r.get("type") == "train"]
    evals = [r for r in rows if r.get("type") == "eval"]
    batch = config["train"]["batch_size"]
    speeds = [batch / r["images_per_s"] for r in train if r.get("images_per_s")]
    steps = max([int(r["step"]) for r in train + evals], default=0)
    half = steps / 2
    stats: dict[str, list[float]] = {}
    for r in rows:
        if r.get("type") == "assignments" and r["step"] > half:
            for k, v in r.items():
                if "/" in k and isinstance(v, (int, float)):
                    stats.setdefault(k, []).append(float(v))
    losses = [one_to_one_loss(r, config["model"]) for r in train[-tail:] if "loss_giou" in r]
    last = evals[-1] if evals else {}
    counted = {"duplicates_per_object", "predictions_per_object"}
    names = [k for k in (evals[0] if evals else {}) if k in counted or k.startswith("AP") or k == "nms_gap"]
    eval_values = {k: [float(r[k]) * (1.0 if k in counted else 100.0) for r in evals]
                   for k in names if all(isinstance(r.get(k), (int, float)) for r in evals)}
    return RunRecord(
        key=key, seed=seed, run_dir=run_dir, steps=steps, budget=int(config["train"].get("max_iters") or 0),
        metrics={k: float(v) for k, v in last.items()
                 if isinstance(v, (int, float)) and (k[:2] == "AP" or k == "nms_gap" or k.endswith("_per_object"))},
        eval_steps=[int(r["step"]) for r in evals], eval_ap=[100.0 * r["AP"] for r in evals],
        sec_per_iter=statistics.median(speeds) if speeds else None,
        one2one_loss=sum(losses) / len(losses) if losses else None,
        assignments={k: sum(v) / len(v) for k, v in stats.items()}, eval_values=eval_values)


def _final(records: Sequence[RunRecord], name: str) -> list[float]:
    """Each run's last-evaluation ``name``: COCO values (and the NMS gap) in percent, counts as they are;
    runs without the measure and COCO's undefined -1 left out."""
    if name.endswith("_per_object"):
        return [r.metrics[name] for r in records if name in r.metrics]
    if name == "nms_gap":
        return [100.0 * r.metrics[name] for r in records if name in r.metrics]
    return [100.0 * r.metrics[name] for r in records if r.metrics.get(name, -1) >= 0]


def metric(records: Sequence[RunRecord], name: str = "AP") -> Summary:
    """Seed summary of the last evaluation's ``name`` (percent for COCO values; see ``_final``)."""
    return summarize(_final(records, name))


def equal_wall_seconds(groups: Sequence[Sequence[RunRecord]]) -> float | None:
    """The wall-time budget all groups reached: the smallest (mean steps x speed) of a group."""
    times = []
    for records in groups:
        sec = variant_speed(records)
        if sec is None or not records:
            return None
        times.append(sec * sum(r.steps for r in records) / len(records))
    return min(times) if times else None


def ap_values_at_seconds(records: Sequence[RunRecord], seconds: float) -> list[float]:
    """Each run's AP (percent) after ``seconds`` of training, every run at its variant's mean speed (so the
    variant's cost per step and not one run's machine load decides where it stands); linear between
    evaluations, runs that never reached ``seconds`` left out."""
    sec = variant_speed(records)
    if sec is None:
        return []
    values = [value_at([0.0, *[s * sec for s in r.eval_steps]], [0.0, *r.eval_ap], seconds) for r in records]
    return [v for v in values if v is not None]


def ap_at_seconds(records: Sequence[RunRecord], seconds: float) -> Summary:
    return summarize(ap_values_at_seconds(records, seconds))


def compare(a: Sequence[RunRecord], b: Sequence[RunRecord], name: str = "AP") -> Summary:
    """mean(a) - mean(b) of the final ``name`` (percent), Welch 95 % interval."""
    return difference(_final(a, name), _final(b, name))


def compare_at_seconds(a: Sequence[RunRecord], b: Sequence[RunRecord], seconds: float) -> Summary:
    """The AP difference after the same seconds of training."""
    return difference(ap_values_at_seconds(a, seconds), ap_values_at_seconds(b, seconds))


def _mean(values: Sequence[float | None]) -> float | None:
    values = [v for v in values if v]
    return sum(values) / len(values) if values else None


def variant_speed(records: Sequence[RunRecord]) -> float | None:
    """Seconds per step of a variant: the median of its runs' medians."""
    values = [r.sec_per_iter for r in records if r.sec_per_iter]
    return statistics.median(values) if values else None


def mean_of(records: Sequence[RunRecord], attr: str) -> float | None:
    return _mean([getattr(r, attr) for r in records])
