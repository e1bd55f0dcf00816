"""LVIS evaluation: the federated rules on a hand-checked case, and agreement with the lvis package."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hdetr.data.dataset import CocoDetection
from hdetr.data.synthetic import generate
from hdetr.evaluation import evaluate, evaluate_lvis
from hdetr.evaluation.lvis_eval import LVIS_MAX_DETS
from hdetr.evaluation.results import predictions_to_results

A, B, C = 1, 2, 3  # frequent, common, rare


def federated_case(tmp_path: Path) -> CocoDetection:
    """img 1: A (B verified absent); img 2: A, not exhaustively annotated; img 3: B and C."""
    images = [
        {"id": 1, "file_name": "1.png", "width": 200, "height": 200, "neg_category_ids": [B],
         "not_exhaustive_category_ids": []},
        {"id": 2, "file_name": "2.png", "width": 200, "height": 200, "neg_category_ids": [],
         "not_exhaustive_category_ids": [A]},
        {"id": 3, "file_name": "3.png", "width": 200, "height": 200, "neg_category_ids": [],
         "not_exhaustive_category_ids": []},
    ]
    boxes = [(1, A, [10, 10, 50, 50]), (2, A, [20, 20, 60, 40]), (3, B, [0, 0, 80, 80]), (3, C, [100, 100, 40, 40])]
    annotations = [{"id": i + 1, "image_id": img, "category_id": cat, "bbox": box, "area": box[2] * box[3]}
                   for i, (img, cat, box) in enumerate(boxes)]
    categories = [{"id": A, "name": "a", "frequency": "f", "image_count": 200, "instance_count": 300},
                  {"id": B, "name": "b", "frequency": "c", "image_count": 50, "instance_count": 60},
                  {"id": C, "name": "c", "frequency": "r", "image_count": 3, "instance_count": 3}]
    (tmp_path / "img").mkdir()
    for img in images:
        Image.new("RGB", (200, 200)).save(tmp_path / "img" / img["file_name"])
    (tmp_path / "lvis_val.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                        "categories": categories}))
    return CocoDetection(tmp_path / "lvis_val.json", tmp_path / "img", kind="lvis", contiguous_labels=True)


def xyxy(box):
    return [box[0], box[1], box[0] + box[2], box[1] + box[3]]


def federated_predictions():
    # labels are contiguous: A -> 0, B -> 1, C -> 2
    return {
        1: {"scores": [0.9, 0.95, 0.99], "labels": [0, 1, 2],  # A hit; B on a verified-absent image: false
            "boxes": [xyxy([10, 10, 50, 50]), [100, 100, 150, 150], [120, 0, 190, 60]]},  # positive; C: unverified
        2: {"scores": [0.8, 0.85], "labels": [0, 0],  # A hit, and an A box on a not-exhaustive image: ignored
            "boxes": [xyxy([20, 20, 60, 40]), [120, 120, 180, 180]]},
        3: {"scores": [0.5, 0.6], "labels": [1, 2], "boxes": [xyxy([0, 0, 80, 80]), xyxy([100, 100, 40, 40])]},
    }


def test_federated_rules_hand_checked(tmp_path):
    ds = federated_case(tmp_path)
    metrics = evaluate_lvis(ds, federated_predictions())
    # A: 1 (the extra box on its not-exhaustive image is ignored); B: a false positive ranked first, then a
    # hit: precision 1/2 at every recall -> 0.5; C: 1 (its detection on image 1 is neither positive nor
    # verified negative there, so it is ignored).
    assert metrics["AP"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert metrics["AP50"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert (metrics["APr"], metrics["APc"], metrics["APf"]) == pytest.approx((1.0, 0.5, 1.0))
    assert "maxDets=300" in metrics.summary and "catIds=  r" in metrics.summary
    assert evaluate(ds, federated_predictions())["APc"] == pytest.approx(0.5)  # dispatch on dataset.kind


def test_at_most_300_detections_per_image(tmp_path):
    ds = federated_case(tmp_path)
    rng = np.random.default_rng(0)
    many = {"scores": rng.uniform(0, 0.5, 400).tolist() + [0.9], "labels": [0] * 401,
            "boxes": [[150, 150, 160, 160]] * 400 + [xyxy([10, 10, 50, 50])]}
    evaluate_lvis(ds, {1: many}, results_file=tmp_path / "res.json")
    results = json.loads((tmp_path / "res.json").read_text())
    assert len(results) == LVIS_MAX_DETS and results[0]["score"] == pytest.approx(0.9)
    assert min(r["score"] for r in results) >= sorted(many["scores"])[-LVIS_MAX_DETS]


def lvis_package_eval(gt_path: Path, results: list[dict], monkeypatch) -> dict:
    """The lvis package's LVISEval; it still uses np.float, removed in NumPy 1.24."""
    monkeypatch.setattr(np, "float", float, raising=False)
    from lvis import LVIS, LVISEval, LVISResults

    with contextlib.redirect_stdout(io.StringIO()):
        gt = LVIS(str(gt_path))
        evaluator = LVISEval(gt, LVISResults(gt, results, max_dets=300), iou_type="bbox")
        evaluator.run()
    return evaluator.get_results()


def noisy_predictions(ds: CocoDetection, seed: int) -> dict:
    """Jittered, sometimes mislabelled copies of the ground truth plus random false positives."""
    rng = np.random.default_rng(seed)
    preds = {}
    for image_id in ds.image_ids:
        scores, labels, boxes = [], [], []
        for ann in ds.coco.imgToAnns[image_id]:
            if rng.random() < 0.15:
                continue
            x, y, w, h = ann["bbox"]
            jitter = rng.normal(0, 0.12, 4) * [w, h, w, h]
            boxes.append([x + jitter[0], y + jitter[1], x + w + jitter[2], y + h + jitter[3]])
            label = ds.category_id_to_label[ann["category_id"]]
            labels.append(label if rng.random() < 0.8 else int(rng.integers(0, ds.num_classes)))
            scores.append(float(rng.uniform(0.2, 1.0)))
        neg = [ds.category_id_to_label[c] for c in ds.coco.imgs[image_id]["neg_category_ids"]]
        for _ in range(4):
            x, y = rng.uniform(0, 50, 2)
            boxes.append([x, y, x + rng.uniform(5, 30), y + rng.uniform(5, 30)])
            labels.append(int(rng.choice(neg)) if neg and rng.random() < 0.5 else int(rng.integers(0, ds.num_classes)))
            scores.append(float(rng.uniform(0.0, 0.8)))
        preds[image_id] = {"scores": scores, "labels": labels, "boxes": boxes}
    return preds


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the lvis package calls logger.warn
def test_matches_the_lvis_package_to_four_decimals(tmp_path, monkeypatch):
    ds = federated_case(tmp_path)
    ours = evaluate_lvis(ds, federated_predictions())
    results = predictions_to_results(federated_predictions(), ds.label_to_category_id, LVIS_MAX_DETS)
    theirs = lvis_package_eval(tmp_path / "lvis_val.json", results, monkeypatch)
    for key in ("AP", "AP50", "AP75", "APr", "APc", "APf"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-4), key

    root = generate("lvis", tmp_path / "synth", num_images=40, num_val_images=30, seed=5, image_size=64,
                    num_classes=40)
    ds = CocoDetection(root / "instances_val.json", root / "val", kind="lvis", contiguous_labels=True)
    assert any(img["not_exhaustive_category_ids"] for img in ds.coco.dataset["images"])
    for seed in (0, 1):
        preds = noisy_predictions(ds, seed)
        ours = evaluate_lvis(ds, preds)
        theirs = lvis_package_eval(root / "instances_val.json",
                                   predictions_to_results(preds, ds.label_to_category_id, LVIS_MAX_DETS), monkeypatch)
        assert 0.05 < ours["AP"] < 0.95  # a case that exercises partial credit
        for key in ("AP", "AP50", "AP75", "APs", "APm", "APr", "APc", "APf"):
            assert ours[key] == pytest.approx(theirs[key], abs=1e-4), (seed, key)
