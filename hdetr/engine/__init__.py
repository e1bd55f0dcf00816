"""Training and evaluation.

- ``train(cfg, output_dir, resume=False) -> dict``: the training loop (hdetr.engine.trainer)
- ``evaluate_model(model, dataset, batch_size=2, ...) -> dict``: COCO / LVIS AP (hdetr.engine.evaluator)
- ``read_metrics(path) -> list[dict]``: rows of a run's metrics.jsonl (hdetr.engine.metrics_log)
"""
from __future__ import annotations

from hdetr.lazy_exports import lazy_exports

_LAZY = {
    "hdetr.engine.trainer": ("train", "TrainingDiverged"),
    "hdetr.engine.evaluator": ("evaluate_model",),
    "hdetr.engine.metrics_log": ("read_metrics",),
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY, globals())
