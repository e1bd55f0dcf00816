"""Detections as a standard COCO results list / JSON file.

A prediction for one image is ``dict(scores [k], labels [k], boxes [k, 4])`` with
boxes xyxy in pixels of the original image (what ``model.predict`` and
``model.postprocess`` return); tensors or arrays. A result record is
``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` with the dataset's
own image and category ids. Labels with no category (e.g. the unused ids of
the official 91-class COCO head) are dropped: COCOeval would ignore them too.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from hdetr.errors import UserError


def _array(value: Any, name: str, image_id: int) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception:
        raise UserError(f"predictions[{image_id}][{name!r}] is {type(value).__name__}, expected a tensor or array") from None


def image_results(image_id: int, prediction: Mapping[str, Any], label_to_category_id: Mapping[int, int],
                  max_per_image: int | None = None) -> list[dict[str, Any]]:
    """COCO result records of one image, best score first, at most ``max_per_image``."""
    for key in ("scores", "labels", "boxes"):
        if key not in prediction:
            raise UserError(f"predictions[{image_id}] has no {key!r} entry (expected scores, labels, boxes)")
    scores = _array(prediction["scores"], "scores", image_id).astype(np.float64).reshape(-1)
    labels = _array(prediction["labels"], "labels", image_id).astype(np.int64).reshape(-1)
    boxes = _array(prediction["boxes"], "boxes", image_id).astype(np.float64).reshape(-1, 4)
    if not len(scores) == len(labels) == len(boxes):
        raise UserError(f"predictions[{image_id}]: {len(scores)} scores, {len(labels)} labels and {len(boxes)} boxes "
                        f"should be equally many")
    order = np.argsort(-scores, kind="stable")
    records = []
    for i in order:
        category_id = label_to_category_id.get(int(labels[i]))
        if category_id is None:
            continue
        x0, y0, x1, y1 = boxes[i].tolist()
        records.append({"image_id": int(image_id), "category_id": int(category_id),
                        "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(scores[i])})
        if max_per_image is not None and len(records) == max_per_image:
            break
    return records


def predictions_to_results(predictions: Mapping[int, Mapping[str, Any]], label_to_category_id: Mapping[int, int],
                           max_per_image: int | None = None) -> list[dict[str, Any]]:
    """All images' result records, in image-id order."""
    results = []
    for image_id in sorted(predictions):
        results.extend(image_results(image_id, predictions[image_id], label_to_category_id, max_per_image))
    return results


def write_results_json(results: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write a COCO results list as JSON (the format the COCO/LVIS servers take)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f)
    return path
