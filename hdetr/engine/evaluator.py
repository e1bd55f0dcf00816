"""Evaluation loop: one-to-one predictions on a validation set, scored by COCO / LVIS AP.

Under torchrun every process predicts its share of the images (every N-th) and
``hdetr.evaluation`` gathers them before scoring, so every process must call it
together. Images are fed in batches without augmentation; the model's own post-processing turns outputs into
top-k detections in original-image pixels, which ``hdetr.evaluation`` scores with
pycocotools (COCO) or the LVIS protocol.
"""
from __future__ import annotations

import contextlib
import time
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from hdetr.distributed import rank_and_world
from hdetr.outputs import ModelOutput


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def predict_dataset(model: nn.Module, dataset: Dataset, *, batch_size: int = 2, device: torch.device | str | None = None,
                    max_images: int = 0, amp: bool = False, num_workers: int = 0,
                    progress: bool = False, each_batch=None) -> dict[int, dict[str, torch.Tensor]]:
    """image_id -> dict(scores [k], labels [k], boxes [k, 4] xyxy in original pixels), on the CPU.

    ``each_batch(targets, detections)``, when given, also sees every batch's targets and detections
    (on the CPU): measures that need the ground truth beside the raw detections (duplicates)."""
    from hdetr.data import collate

    model = _unwrap(model)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    count = min(max_images, len(dataset)) if max_images else len(dataset)
    rank, world = rank_and_world()
    subset = Subset(dataset, range(rank, count, world)) if (count < len(dataset) or world > 1) else dataset
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=num_workers)
    was_training = model.training
    model.eval()
    predictions: dict[int, dict[str, torch.Tensor]] = {}
    batches = loader
    if progress:
        from tqdm import tqdm

        batches = tqdm(loader, desc="eval", leave=False, dynamic_ncols=True)
    try:
        for images, targets in batches:
            images = [img.to(device) for img in images]
            with _autocast(device, amp):
                outputs = model(images)
            outputs = ModelOutput.from_official_dict(outputs).float()
            sizes = torch.stack([t["orig_size"] for t in targets]).to(device)
            detections = [{k: v.detach().cpu() for k, v in result.items()}
                          for result in model.postprocess(outputs, sizes)]
            for target, result in zip(targets, detections):
                predictions[int(target["image_id"])] = result
            if each_batch is not None:
                each_batch(targets, detections)
    finally:
        model.train(was_training)
    return predictions


def score_predictions(dataset: Dataset, predictions: dict[int, dict[str, torch.Tensor]]) -> dict[str, float]:
    """COCO or LVIS metrics of ``predictions`` against the dataset's ground truth."""
    from hdetr import evaluation

    kind = getattr(dataset, "kind", None) or ("lvis" if "lvis" in type(dataset).__name__.lower() else "coco")
    if kind == "lvis":
        return evaluation.evaluate_lvis(dataset, predictions)
    return evaluation.evaluate_coco(dataset, predictions)


def evaluate_model(model: nn.Module, dataset: Dataset, batch_size: int = 2, *, device: torch.device | str | None = None,
                   max_images: int = 0, amp: bool = False, num_workers: int = 0,
                   progress: bool = False, nms_iou: float | None = None) -> dict[str, Any]:
    """AP, AP50, AP75, APs, APm, APl (and APr/APc/APf on LVIS) of ``model`` on ``dataset``.

    ``max_images`` > 0 evaluates the first N images only (quick checks during CPU runs);
    the result then also says how many images were scored (``num_images``) and how long
    prediction took (``eval_seconds``). Under torchrun every process must call it.

    ``nms_iou`` (the NMS-free property, ``hdetr.evaluation.duplicates``): the same detections
    are also scored after class-wise NMS at that IoU (``AP_nms``, ``AP50_nms``, ``AP75_nms``,
    ``nms_gap`` = AP_nms - AP), and ``duplicates_per_object`` / ``predictions_per_object`` count
    the confident boxes on each ground-truth object without NMS (this process's images).
    """
    from hdetr.evaluation.duplicates import apply_nms, image_hits

    start = time.perf_counter()
    hits: list[torch.Tensor] = []

    def count_hits(targets, detections) -> None:
        for target, det in zip(targets, detections):
            hits.append(image_hits(det, target, target["orig_size"]))

    predictions = predict_dataset(model, dataset, batch_size=batch_size, device=device, max_images=max_images,
                                  amp=amp, num_workers=num_workers, progress=progress,
                                  each_batch=count_hits if nms_iou is not None else None)
    metrics = dict(score_predictions(dataset, predictions))
    if nms_iou is not None:
        ids = list(predictions)
        kept = dict(zip(ids, apply_nms([predictions[i] for i in ids], nms_iou)))
        with_nms = score_predictions(dataset, kept)
        for key in ("AP", "AP50", "AP75"):
            metrics[f"{key}_nms"] = float(with_nms[key])
        metrics["nms_gap"] = metrics["AP_nms"] - float(metrics["AP"])
        h = torch.cat(hits).float() if hits else torch.zeros(0)
        metrics["predictions_per_object"] = float(h.mean()) if h.numel() else float("nan")
        metrics["duplicates_per_object"] = float((h - 1).clamp(min=0).mean()) if h.numel() else float("nan")
    metrics["num_images"] = min(max_images, len(dataset)) if max_images else len(dataset)
    metrics["eval_seconds"] = round(time.perf_counter() - start, 3)
    return metrics
