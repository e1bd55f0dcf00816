"""COCO bbox evaluation with pycocotools' COCOeval.

``evaluate_coco(dataset, predictions)`` scores ``predictions`` (image_id -> dict of
scores [k], labels [k], boxes [k, 4] xyxy original pixels) against
``dataset.coco`` on the images that were predicted (an image with no detection
should still be present, with empty tensors). It returns ``Metrics``: a dict of
AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl (floats in [0, 1];
-1 where the ground truth has nothing to score, as COCOeval reports it), with the
printed COCO summary kept as text in ``metrics.summary``. pycocotools' prints are
captured unless ``verbose``.
"""
from __future__ import annotations

import contextlib
import io
import os
from typing import Any, Mapping

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hdetr.errors import UserError
from hdetr.evaluation import distributed
from hdetr.evaluation.results import predictions_to_results, write_results_json

COCO_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


class Metrics(dict):
    """Metric name -> float, plus ``summary``: the evaluator's printed table."""

    def __init__(self, values: Mapping[str, float], summary: str = "") -> None:
        super().__init__(values)
        self.summary = summary


def collect(dataset: Any, predictions: Mapping[int, Mapping[str, Any]], max_per_image: int | None,
            results_file: str | os.PathLike | None) -> tuple[list[int], list[dict[str, Any]]]:
    """Checked image ids and result records of all ranks (written to ``results_file`` on rank 0)."""
    known = dataset.coco.imgs
    for image_id in predictions:
        if image_id not in known:
            raise UserError(f"predictions name image_id {image_id!r}, which is not in {dataset.annotation_file}")
    results = predictions_to_results(predictions, dataset.label_to_category_id, max_per_image)
    image_ids, results = distributed.gather(sorted(predictions), results)
    if not image_ids:
        raise UserError("no predictions to evaluate: the predictions dict is empty")
    if results_file is not None and distributed.rank() == 0:
        write_results_json(results, results_file)
    return image_ids, results


def _empty_results(gt: COCO) -> COCO:
    # pycocotools' loadRes fails on an empty list; an empty result set scores 0.
    res = COCO()
    res.dataset = {"images": list(gt.dataset["images"]), "categories": list(gt.dataset["categories"]),
                   "annotations": []}
    with contextlib.redirect_stdout(io.StringIO()):
        res.createIndex()
    return res


def score_coco(gt: COCO, image_ids: list[int], results: list[dict[str, Any]], verbose: bool = False) -> Metrics:
    """Run COCOeval (bbox) on ``results`` for ``image_ids`` and return its Metrics."""
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        dt = gt.loadRes([dict(r) for r in results]) if results else _empty_results(gt)
        evaluator = COCOeval(gt, dt, iouType="bbox")
        evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    if verbose:
        print(text.getvalue(), end="")
    return Metrics({name: float(v) for name, v in zip(COCO_METRICS, evaluator.stats)}, summary_table(text.getvalue()))


def summary_table(printed: str) -> str:
    """The metric lines of an evaluator's output, without its progress chatter."""
    return "".join(line + "\n" for line in printed.splitlines() if line.lstrip().startswith("Average"))


def evaluate_coco(dataset: Any, predictions: Mapping[int, Mapping[str, Any]], *, verbose: bool = False,
                  results_file: str | os.PathLike | None = None) -> Metrics:
    """COCO bbox metrics of ``predictions`` on ``dataset`` (a ``CocoDetection``).

    Under DDP every rank passes its own predictions; they are gathered, scored on
    rank 0, and every rank receives the same Metrics.
    """
    image_ids, results = collect(dataset, predictions, None, results_file)
    metrics = score_coco(dataset.coco, image_ids, results, verbose) if distributed.rank() == 0 else None
    return distributed.share_from_rank0(metrics)
