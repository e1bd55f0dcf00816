"""Training, evaluation and the CPU demo.

- ``train(cfg, output_dir, resume=False) -> dict``: the training loop (hdetr.engine.trainer)
- ``evaluate_model(model, dataset, batch_size=2, ...) -> dict``: COCO / LVIS AP (hdetr.engine.evaluator)
- ``read_metrics(path) -> list[dict]``: rows of a run's metrics.jsonl (hdetr.engine.metrics_log)
"""
from __future__ import annotations

import importlib

_LAZY = {
    "train": "hdetr.engine.trainer",
    "TrainingDiverged": "hdetr.engine.trainer",
    "evaluate_model": "hdetr.engine.evaluator",
    "read_metrics": "hdetr.engine.metrics_log",
    "run_demo": "hdetr.engine.demo",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hdetr.engine' has no attribute {name!r}")


__all__ = list(_LAZY)
