"""COCO evaluation against hand-checked cases, the results JSON, and DDP gathering."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image

from hdetr.data.dataset import CocoDetection
from hdetr.errors import UserError
from hdetr.evaluation import evaluate, evaluate_coco

# image 1 (200 x 200): a 100 x 100 cat, a 30 x 20 dog; image 2 (200 x 100): a 60 x 60 cat
ANNOTATIONS = [
    {"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 100, 100], "area": 10000, "iscrowd": 0},
    {"id": 2, "image_id": 1, "category_id": 7, "bbox": [120, 150, 30, 20], "area": 600, "iscrowd": 0},
    {"id": 3, "image_id": 2, "category_id": 3, "bbox": [100, 20, 60, 60], "area": 3600, "iscrowd": 0},
]


def build(tmp_path: Path, annotations=ANNOTATIONS, contiguous=True) -> CocoDetection:
    images = [{"id": 1, "file_name": "1.png", "width": 200, "height": 200},
              {"id": 2, "file_name": "2.png", "width": 200, "height": 100}]
    data = {"images": images, "annotations": annotations,
            "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]}
    (tmp_path / "img").mkdir(exist_ok=True)
    for img in images:
        Image.new("RGB", (img["width"], img["height"])).save(tmp_path / "img" / img["file_name"])
    (tmp_path / "gt.json").write_text(json.dumps(data))
    return CocoDetection(tmp_path / "gt.json", tmp_path / "img", contiguous_labels=contiguous)


def detections(dataset, shift=0.0, score=1.0):
    """Every ground-truth box as a detection, moved right by ``shift`` px."""
    out = {}
    for image_id in dataset.image_ids:
        anns = dataset.coco.imgToAnns[image_id]
        boxes = torch.tensor([[a["bbox"][0] + shift, a["bbox"][1], a["bbox"][0] + a["bbox"][2] + shift,
                               a["bbox"][1] + a["bbox"][3]] for a in anns], dtype=torch.float32)
        labels = torch.tensor([dataset.category_id_to_label[a["category_id"]] for a in anns])
        out[image_id] = {"scores": torch.full((len(anns),), score), "labels": labels, "boxes": boxes.reshape(-1, 4)}
    return out


def test_perfect_detector_scores_one(tmp_path):
    ds = build(tmp_path)
    metrics = evaluate_coco(ds, detections(ds))
    assert metrics["AP"] == metrics["AP50"] == metrics["AP75"] == pytest.approx(1.0)
    assert [metrics[k] for k in ("APs", "APm", "APl", "AR100")] == pytest.approx([1.0] * 4)  # 600, 3600, 10000 px
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000" in metrics.summary
    assert "Loading" not in metrics.summary  # progress chatter is not part of the summary


def test_shifted_detector_scores_what_the_iou_thresholds_imply(tmp_path, capsys):
    ds = build(tmp_path, ANNOTATIONS[:1])
    # 100 x 100 box moved 20 px: IoU = 80 * 100 / (2 * 10000 - 8000) = 2/3, a hit at 0.50, 0.55, 0.60, 0.65
    metrics = evaluate_coco(ds, {1: detections(ds, shift=20.0)[1]})
    assert metrics["AP"] == pytest.approx(0.4) and metrics["AP50"] == pytest.approx(1.0)
    assert metrics["AP75"] == pytest.approx(0.0)
    assert capsys.readouterr().out == ""  # pycocotools' prints are captured
    evaluate_coco(ds, {1: detections(ds, shift=20.0)[1]}, verbose=True)
    assert "Average Precision" in capsys.readouterr().out


def test_false_positive_between_two_hits(tmp_path):
    anns = [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 50, 50], "area": 2500, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 3, "bbox": [10, 10, 50, 50], "area": 2500, "iscrowd": 0}]
    ds = build(tmp_path, anns)
    preds = {1: {"scores": [0.9, 0.8], "labels": [0, 0], "boxes": [[0, 0, 50, 50], [120, 120, 170, 170]]},
             2: {"scores": [0.7], "labels": [0], "boxes": [[10, 10, 60, 60]]}}
    # precision 1 up to recall 0.5, then 2/3 up to recall 1: (51 * 1 + 50 * 2/3) / 101 points
    assert evaluate_coco(ds, preds)["AP"] == pytest.approx((51 + 50 * 2 / 3) / 101)


def test_detections_on_crowd_regions_are_ignored(tmp_path):
    anns = [dict(ANNOTATIONS[0]), {"id": 9, "image_id": 1, "category_id": 3, "bbox": [100, 100, 90, 90],
                                   "area": 8100, "iscrowd": 1}]
    ds = build(tmp_path, anns)
    assert len(ds.coco.anns) == 2 and ds.counts["crowd"] == 1
    preds = {1: {"scores": [0.9, 0.5], "labels": [0, 0], "boxes": [[110, 110, 150, 150], [0, 0, 100, 100]]}}
    assert evaluate_coco(ds, preds)["AP"] == pytest.approx(1.0)


def test_results_json_and_label_mapping(tmp_path):
    ds = build(tmp_path, contiguous=False)  # official COCO style: labels are category ids
    preds = detections(ds)
    preds[1]["labels"] = torch.tensor([3, 7])
    preds[2] = {"scores": torch.tensor([0.2, 0.9]), "labels": torch.tensor([0, 3]),  # label 0: no category
                "boxes": torch.tensor([[0.0, 0, 1, 1], [100, 20, 160, 80]])}
    metrics = evaluate_coco(ds, preds, results_file=tmp_path / "out" / "results.json")
    assert metrics["AP"] == pytest.approx(1.0)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results == [
        {"image_id": 1, "category_id": 3, "bbox": [0.0, 0.0, 100.0, 100.0], "score": 1.0},
        {"image_id": 1, "category_id": 7, "bbox": [120.0, 150.0, 30.0, 20.0], "score": 1.0},
        {"image_id": 2, "category_id": 3, "bbox": [100.0, 20.0, 60.0, 60.0], "score": pytest.approx(0.9)},
    ]


def test_no_detections_and_bad_predictions(tmp_path):
    ds = build(tmp_path)
    empty = {"scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}
    assert evaluate(ds, {1: empty, 2: empty})["AP"] == 0.0
    with pytest.raises(UserError, match="predictions dict is empty"):
        evaluate_coco(ds, {})
    with pytest.raises(UserError, match="image_id 5, which is not in .*gt.json"):
        evaluate_coco(ds, {5: empty})
    with pytest.raises(UserError, match=r"predictions\[1\] has no 'boxes' entry"):
        evaluate_coco(ds, {1: {"scores": [1.0], "labels": [0]}})
    with pytest.raises(UserError, match="1 scores, 2 labels and 1 boxes"):
        evaluate_coco(ds, {1: {"scores": [1.0], "labels": [0, 1], "boxes": [[0, 0, 1, 1]]}})


def _ddp_worker(rank: int, world: int, root: str, store: str, queue) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        ds = CocoDetection(Path(root) / "gt.json", Path(root) / "img", contiguous_labels=True)
        mine = {k: v for k, v in detections(ds, shift=20.0).items() if (k - 1) % world == rank}
        metrics = evaluate_coco(ds, mine, results_file=Path(root) / "ddp.json")
        queue.put((rank, dict(metrics), metrics.summary))
    finally:
        dist.destroy_process_group()


def test_ddp_predictions_are_gathered_and_scored_once(tmp_path):
    ds = build(tmp_path)
    single = evaluate_coco(ds, detections(ds, shift=20.0))
    ctx = mp.get_context("fork")  # the parent has imported everything: no second start-up
    queue = ctx.Queue()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, str(tmp_path), str(tmp_path / "store"), queue))
             for r in range(2)]
    for p in procs:
        p.start()
    outputs = sorted(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert [o[0] for o in outputs] == [0, 1]
    for _, metrics, summary in outputs:  # each rank alone holds half the images, yet sees the full score
        assert metrics == pytest.approx(dict(single)) and summary == single.summary
    assert len(json.loads((tmp_path / "ddp.json").read_text())) == 3
