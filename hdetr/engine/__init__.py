"""Training and evaluation.

- ``train(cfg, output_dir, resume=False) -> dict``: the training loop (hdetr.engine.trainer)
- ``evaluate_model(model, dataset, batch_size=2, ...) -> dict``: COCO / LVIS AP (hdetr.engine.evaluator)
- ``read_metrics(path) -> list[dict]``: rows of a run's metrics.jsonl (hdetr.engine.metrics_log)
"""
from __future__ import annotations

from hdetr.lazy_exports import lazy_exports

_LAZY = {
    "train": "hdetr.engine.trainer",
    "TrainingDiverged": "hdetr.engine.trainer",
    "evaluate_model": "hdetr.engine.evaluator",
    "read_metrics": "hdetr.engine.metrics_log",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())

__all__ = list(_LAZY)
