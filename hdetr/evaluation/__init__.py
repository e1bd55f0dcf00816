"""COCO and LVIS evaluation of detections.

- ``evaluate_coco(dataset, predictions)`` (pycocotools COCOeval, bbox)
- ``evaluate_lvis(dataset, predictions)`` (faster-coco-eval, LVIS rules)
- ``evaluate(dataset, predictions)``: whichever fits ``dataset.kind``
- ``predictions_to_results`` / ``write_results_json``: standard COCO results JSON

``predictions`` maps image_id -> dict(scores [k], labels [k], boxes [k, 4] xyxy in
original pixels). Both return ``Metrics`` (a dict of floats with ``.summary`` text)
and gather predictions across DDP ranks first.
"""
from __future__ import annotations

from typing import Any, Mapping

from hdetr.evaluation.coco_eval import Metrics, evaluate_coco
from hdetr.evaluation.lvis_eval import evaluate_lvis
from hdetr.evaluation.results import predictions_to_results, write_results_json


def evaluate(dataset: Any, predictions: Mapping[int, Mapping[str, Any]], **kwargs: Any) -> Metrics:
    """``evaluate_lvis`` for an LVIS dataset, ``evaluate_coco`` otherwise."""
    if getattr(dataset, "kind", "coco") == "lvis":
        return evaluate_lvis(dataset, predictions, **kwargs)
    return evaluate_coco(dataset, predictions, **kwargs)


__all__ = ["Metrics", "evaluate", "evaluate_coco", "evaluate_lvis", "predictions_to_results", "write_results_json"]
