"""Training metrics as JSON lines (``metrics.jsonl``) and TensorBoard events.

One JSON object per line, appended and flushed as it happens::

    {"type": "train", "epoch": 0, "iter": 9, "step": 10, "loss": 12.3, "loss_ce": 1.1, ...,
     "lr": 0.0002, "lr_backbone": 2e-05, "grad_norm": 3.2, "images_per_s": 14.2, "time": 12.5}
    {"type": "eval", "epoch": 0, "iter": 99, "step": 100, "AP": 0.12, "AP50": 0.31, ..., "time": 40.2}

Train rows: ``epoch`` is the 0-based epoch, ``iter`` the batch index within it, ``step``
the number of optimiser steps done; the loss terms (official names, unweighted; ``loss``
is the weighted total that is optimised) average the ``log_every_iters`` steps since
the previous row over all processes; ``lr`` is the main group's rate, ``lr_backbone`` /
``lr_linear_proj`` the others'. Eval rows: the state after ``step`` steps, ``epoch``
epochs and ``iter`` batches of the next one (``iter`` 0 at epoch ends); AP values are
fractions (0.487 = 48.7 AP), -1 where COCO has no such objects. ``time`` is seconds
since the run first started (resumes continue the count); an ``error`` row records why
a run stopped early (a non-finite loss). With ``train.assignment_stats_every_iters`` an
``assignments`` row every N steps holds that step's ``{group}/layer{i}/positives``
(matched queries per object) and ``{group}/layer{i}/matched_iou`` (``enc`` for the
encoder proposals); see ``hdetr.matching.record_stats``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a metrics.jsonl file (a folder is taken to contain one)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class MetricsLogger:
    """Writes rows on the main process; other processes get a logger that does nothing."""

    def __init__(self, output_dir: str | Path, *, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.path = Path(output_dir) / METRICS_FILE
        self._tb = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(Path(output_dir) / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (a resumed run redoes those steps)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [row for row in read_metrics(self.path) if row.get("step", 0) <= step]
        self.path.write_text("".join(json.dumps(row) + "\n" for row in kept))

    def log(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in row.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps(clean) + "\n")
        if self._tb is not None:
            kind = row.get("type", "train")
            for key, value in row.items():
                if key in ("type", "epoch", "iter", "step", "time") or not isinstance(value, (int, float)):
                    continue
                self._tb.add_scalar(f"{kind}/{key}", value, global_step=row.get("step", 0))
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
