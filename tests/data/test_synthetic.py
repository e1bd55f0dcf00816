"""The synthetic benchmark: real COCO/LVIS files, deterministic, federated LVIS fields, cache, CLI."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from faster_coco_eval import COCO as FasterCOCO
from PIL import Image
from pycocotools.coco import COCO

from hdetr.cli import main
from hdetr.config.data import DataConfig, synthetic
from hdetr.data import build_dataset
from hdetr.data.synthetic import default_dataset_dir, ensure_dataset, generate
from hdetr.data.synthetic.generator import lvis_thresholds
from hdetr.data.synthetic.render import Layer, compose
from hdetr.errors import UserError


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def coco_set(tmp_path_factory) -> Path:
    return generate("coco", tmp_path_factory.mktemp("coco"), num_images=12, num_val_images=4, seed=3, image_size=96)


@pytest.fixture(scope="module")
def lvis_set(tmp_path_factory) -> Path:
    return generate("lvis", tmp_path_factory.mktemp("lvis"), num_images=60, num_val_images=10, seed=1, image_size=64)


def test_same_seed_same_bytes_other_seed_other_bytes(coco_set, tmp_path):
    again = generate("coco", tmp_path / "a", num_images=12, num_val_images=4, seed=3, image_size=96)
    assert files(again) == files(coco_set)
    other = generate("coco", tmp_path / "b", num_images=12, num_val_images=4, seed=4, image_size=96)
    assert files(other)["train/000000.png"] != files(coco_set)["train/000000.png"]


def test_coco_kind_loads_in_both_toolkits(coco_set):
    for split, count in (("train", 12), ("val", 4)):
        path = coco_set / f"instances_{split}.json"
        for coco in (COCO(str(path)), FasterCOCO(str(path))):
            assert len(coco.getImgIds()) == count and len(coco.getCatIds()) == 6
        gt = COCO(str(path))
        assert len(gt.getAnnIds()) >= 2 * count
        for image in gt.dataset["images"]:
            assert Image.open(coco_set / split / image["file_name"]).size == (96, 96)
        for ann in gt.dataset["annotations"]:
            x, y, w, h = ann["bbox"]
            assert w >= 3 and h >= 3 and x >= 0 and y >= 0 and x + w <= 96 and y + h <= 96
            assert 0 < ann["area"] <= w * h and ann["iscrowd"] == 0
    names = [c["name"] for c in gt.dataset["categories"]]
    assert names[:2] == ["red circle", "blue square"] and "red striped square" in names


def test_dataset_of_the_synthetic_set(coco_set):
    ds = build_dataset(synthetic(root=str(coco_set)), "val")
    assert len(ds) == 4 and ds.num_classes == 6 and ds.label_to_category_id[0] == 1
    image, target = ds[0]
    assert image.shape == (3, 128, 128)  # the synthetic preset's eval size
    assert target["labels"].max() < 6 and len(target["boxes"]) == len(ds.coco.getAnnIds(imgIds=[1]))


def test_lvis_kind_fields_follow_the_lvis_rules(lvis_set):
    train = json.loads((lvis_set / "instances_train.json").read_text())
    val = json.loads((lvis_set / "instances_val.json").read_text())
    assert len(train["categories"]) == 256 and train["categories"] == val["categories"]
    images_with, instances = defaultdict(set), defaultdict(int)
    for ann in train["annotations"]:
        images_with[ann["category_id"]].add(ann["image_id"])
        instances[ann["category_id"]] += 1
    rare_max, common_max = lvis_thresholds(60)
    for cat in train["categories"]:
        count = len(images_with[cat["id"]])
        assert cat["image_count"] == count >= 1  # every category occurs in train
        assert cat["instance_count"] == instances[cat["id"]]
        assert cat["frequency"] == ("r" if count <= rare_max else "c" if count <= common_max else "f")
    assert {c["frequency"] for c in train["categories"]} == {"r", "c", "f"}
    not_exhaustive = 0
    for data in (train, val):
        present = defaultdict(set)
        for ann in data["annotations"]:
            present[ann["image_id"]].add(ann["category_id"])
        for image in data["images"]:
            assert image["neg_category_ids"] and not set(image["neg_category_ids"]) & present[image["id"]]
            not_exhaustive += len(image["not_exhaustive_category_ids"])
    assert not_exhaustive > 0
    assert "iscrowd" not in train["annotations"][0] and FasterCOCO(str(lvis_set / "instances_val.json")).getImgIds()


def test_lvis_thresholds_scale_with_the_training_set():
    assert lvis_thresholds(3000) == (10, 100)
    assert lvis_thresholds(1000) == (3, 33)
    assert lvis_thresholds(10) == (1, 2)


def square(top, left, side, label):
    return Layer(top, left, np.ones((side, side), bool), np.full((side, side, 3), 200, np.uint8), label)


def test_occlusion_rule_and_visible_boxes():
    bg = np.zeros((50, 50, 3))
    _, objects = compose([square(0, 0, 20, 0), square(0, 8, 20, 1)], bg, 50)  # 40% of the first visible
    assert objects == [{"label": 0, "bbox": [0, 0, 8, 20], "area": 160}, {"label": 1, "bbox": [8, 0, 20, 20], "area": 400}]
    _, objects = compose([square(0, 0, 20, 0), square(0, 5, 20, 1)], bg, 50)  # 25% visible: removed
    assert [o["label"] for o in objects] == [1]
    image, objects = compose([square(0, 0, 20, 0), square(0, 15, 20, -1)], bg, 50)  # distractors: no box
    assert objects == [{"label": 0, "bbox": [0, 0, 15, 20], "area": 300}] and image[5, 30].tolist() == [200] * 3
    _, objects = compose([square(-15, -15, 20, 0)], bg, 50)  # 25% inside the image: removed
    assert objects == []


def test_cache_folder_and_ensure(tmp_path, monkeypatch):
    monkeypatch.setenv("HDETR_DATA_DIR", str(tmp_path))
    small = dict(num_images=3, num_val_images=2, image_size=48)
    path = default_dataset_dir("coco", **small)
    assert path.parent == tmp_path and path.name.startswith("coco-")
    assert default_dataset_dir("coco", **small, seed=1) != path
    assert ensure_dataset("coco", **small) == path and (path / "instances_val.json").is_file()
    stamp = (path / "train" / "000000.png").stat().st_mtime_ns
    assert ensure_dataset("coco", **small) == path
    assert (path / "train" / "000000.png").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no staging folder left behind
    cfg = DataConfig(synthetic=True, synthetic_images=3, synthetic_val_images=2, synthetic_image_size=48)
    dataset = build_dataset(cfg, "val")  # an empty root means the cached set with these parameters
    assert dataset.image_dir == path / "val" and len(dataset) == 2 and dataset.num_classes == 6


def test_cli_synth(tmp_path, capsys):
    assert main(["data", "synth", "--kind", "lvis", "--out", str(tmp_path / "d"), "--images", "8",
                 "--val-images", "2", "--image-size", "48", "--classes", "20"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "d" / "instances_val.json").read_text())["categories"]) == 20
    assert main(["data", "synth", "--out", str(tmp_path / "e"), "--classes", "11"]) == 2
    assert "num_classes=11: the coco catalogue has 1..10 classes" in capsys.readouterr().err
    with pytest.raises(UserError, match="image_size=8"):
        generate("coco", tmp_path / "f", image_size=8)
