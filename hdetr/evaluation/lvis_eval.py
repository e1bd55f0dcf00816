"""LVIS bbox evaluation with faster-coco-eval's LVIS mode.

``COCOeval_faster(..., lvis_style=True)`` applies LVIS's federated rules: a
detection counts only on images where its category is annotated (positive) or
verified absent (``neg_category_ids``); on a category listed in
``not_exhaustive_category_ids`` unmatched detections are ignored; APr/APc/APf
average over the categories tagged rare/common/frequent. At most 300 detections
per image are scored (LVIS's limit; the rest are dropped, lowest scores first).
It agrees with the ``lvis`` package's LVISEval to four decimals (see
tests/evaluation/test_lvis.py), without that package's NumPy < 1.24 requirement.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from faster_coco_eval import COCO as FasterCOCO
from faster_coco_eval import COCOeval_faster

from hdetr.evaluation import distributed
from hdetr.evaluation.coco_eval import Metrics, collect, summary_table

LVIS_MAX_DETS = 300
LVIS_METRICS = {"AP": "AP_all", "AP50": "AP_50", "AP75": "AP_75", "APs": "AP_small", "APm": "AP_medium",
                "APl": "AP_large", "APr": "APr", "APc": "APc", "APf": "APf", "AR300": "AR_all",
                "ARs": "AR_small", "ARm": "AR_medium", "ARl": "AR_large"}


def score_lvis(ground_truth: dict[str, Any], image_ids: list[int], results: list[dict[str, Any]],
               verbose: bool = False) -> Metrics:
    """Run the LVIS-style evaluation of ``results`` on ``image_ids`` of ``ground_truth`` (a dict)."""
    lines: list[str] = []
    gt = FasterCOCO(ground_truth, use_deepcopy=True)
    dt = gt.loadRes([dict(r) for r in results])
    evaluator = COCOeval_faster(gt, dt, iouType="bbox", lvis_style=True, print_function=lines.append)
    evaluator.params.maxDets = [LVIS_MAX_DETS]
    evaluator.params.imgIds = image_ids
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    stats = evaluator.stats_as_dict
    printed = "".join(line + "\n" for line in lines)
    if verbose:
        print(printed, end="")
    summary = summary_table(printed)
    return Metrics({name: float(stats[key]) for name, key in LVIS_METRICS.items()}, summary)


def evaluate_lvis(dataset: Any, predictions: Mapping[int, Mapping[str, Any]], *, verbose: bool = False,
                  results_file: str | os.PathLike | None = None) -> Metrics:
    """LVIS metrics (AP, AP50, AP75, APs, APm, APl, APr, APc, APf, ...) of ``predictions`` on ``dataset``.

    ``dataset.coco.dataset`` must carry LVIS fields (category ``frequency``, image
    ``neg_category_ids`` / ``not_exhaustive_category_ids``). Under DDP, gathered and
    scored on rank 0; every rank receives the Metrics.
    """
    image_ids, results = collect(dataset, predictions, LVIS_MAX_DETS, results_file)
    metrics = score_lvis(dataset.coco.dataset, image_ids, results, verbose) if distributed.rank() == 0 else None
    return distributed.share_from_rank0(metrics)
