"""COCO-format loading: label mappings, targets, batching and every kind of bad input."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hdetr.errors import ConfigError
from hdetr.config.data import DataConfig
from hdetr.data import build_dataloader, build_dataset, collate
from hdetr.data.dataset import CocoDetection
from hdetr.errors import UserError


def write_image(path: Path, size=(40, 30), mode="RGB", colour=(10, 200, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).convert(mode).save(path)


def coco_dict(num_images=2, size=(40, 30), anns=None, cats=None) -> dict:
    images = [{"id": i + 1, "file_name": f"{i}.png", "width": size[0], "height": size[1]} for i in range(num_images)]
    cats = cats if cats is not None else [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]
    if anns is None:
        anns = [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [4, 5, 10, 8], "area": 80, "iscrowd": 0},
                {"id": 2, "image_id": 2, "category_id": 3, "bbox": [0, 0, 20, 15], "area": 300, "iscrowd": 0}]
    return {"images": images, "annotations": anns, "categories": cats}


def make_dataset(tmp_path: Path, data: dict | str, *, images=True, **kwargs) -> CocoDetection:
    ann = tmp_path / "instances.json"
    ann.write_text(data if isinstance(data, str) else json.dumps(data))
    if images and not isinstance(data, str):
        for img in data.get("images", []):
            size = (img.get("width"), img.get("height"))
            write_image(tmp_path / "img" / img["file_name"], size if all(isinstance(v, int) and v > 0 for v in size) else (40, 30))
    return CocoDetection(ann, tmp_path / "img", **kwargs)


def test_targets_and_official_category_id_labels(tmp_path):
    ds = make_dataset(tmp_path, coco_dict())
    assert ds.num_classes == 8 and ds.label_to_category_id == {3: 3, 7: 7}
    assert ds.class_names[7] == "dog" and ds.class_names[0] == "N/A"
    image, target = ds[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 30, 40)  # no transforms: raw item
    assert target["labels"].tolist() == [7] and target["image_id"] == 1
    assert target["boxes"].tolist() == [[4, 5, 14, 13]]
    assert target["orig_size"].tolist() == [30, 40]
    assert ds.coco.getAnnIds() == [1, 2]


def test_contiguous_labels_and_build_dataset_layout(tmp_path):
    (tmp_path / "annotations").mkdir()
    data = coco_dict()
    (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    for img in data["images"]:
        write_image(tmp_path / "val2017" / img["file_name"])
    ds = build_dataset(DataConfig(root=str(tmp_path), label_mapping="contiguous", scale_preset="synthetic"), "val")
    assert ds.num_classes == 2 and ds.label_to_category_id == {0: 3, 1: 7} and ds.class_names == ["cat", "dog"]
    image, target = ds[0]
    assert image.dtype == torch.float32 and image.shape == (3, 128, 170)  # eval resize: shorter side 128
    assert target["labels"].tolist() == [1] and target["size"].tolist() == [128, 170]
    assert torch.allclose(target["boxes"], torch.tensor([[9 / 40, 9 / 30, 10 / 40, 8 / 30]]), atol=1e-6)


def test_lvis_images_named_by_url_and_frequency_required(tmp_path):
    data = coco_dict(cats=[{"id": 3, "name": "cat", "frequency": "r"}, {"id": 7, "name": "dog", "frequency": "f"}])
    for img in data["images"]:
        img["coco_url"] = f"http://images.cocodataset.org/train2017/{img.pop('file_name')}"
        write_image(tmp_path / "train2017" / img["coco_url"].rsplit("/", 1)[1])
    ann = tmp_path / "lvis.json"
    ann.write_text(json.dumps(data))
    ds = CocoDetection(ann, tmp_path, kind="lvis", contiguous_labels=True)
    assert len(ds) == 2 and ds.coco.imgs[1]["file_name"] == "train2017/0.png"
    data["categories"][0]["frequency"] = "x"
    ann.write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"categories\[0\]\.frequency = 'x'"):
        CocoDetection(ann, tmp_path, kind="lvis")


@pytest.mark.parametrize("text, pattern", [
    ('{"images": [', r"instances\.json: malformed JSON at line 1"),
    ('[1, 2]', r"top level is list"),
    ('{"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}', r"'images' is empty"),
])
def test_malformed_files(tmp_path, text, pattern):
    with pytest.raises(UserError, match=pattern):
        make_dataset(tmp_path, text)


def test_missing_annotation_file(tmp_path):
    with pytest.raises(UserError, match="annotation file not found"):
        CocoDetection(tmp_path / "nope.json", tmp_path)


@pytest.mark.parametrize("mutate, pattern", [
    (lambda d: d.pop("categories"), r"no 'categories' field"),
    (lambda d: d["images"][1].pop("height"), r"images\[1\] has no 'height' field"),
    (lambda d: d["images"][0].update(width=-3), r"images\[0\]\.width = -3"),
    (lambda d: d["annotations"][0].pop("bbox"), r"annotations\[0\] has no 'bbox' field"),
    (lambda d: d["annotations"][1].update(category_id=99), r"annotations\[1\] \(id 2\) has category_id = 99, which is not in 'categories' \(known ids: 3, 7\)"),
    (lambda d: d["annotations"][0].update(image_id=42), r"image_id = 42, which is not in 'images'"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), r"bbox = \[1, 2, 3\], expected 4 finite numbers"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, "a", 4]), r"expected 4 finite numbers"),
    (lambda d: d["images"].append(dict(d["images"][0])), r"images\[2\]\.id = 1 appears twice"),
    (lambda d: d["categories"][0].update(id="3"), r"categories\[0\]\.id = '3', expected int"),
])
def test_bad_records_name_file_field_and_value(tmp_path, mutate, pattern):
    data = coco_dict()
    mutate(data)
    with pytest.raises(UserError, match=pattern) as info:
        make_dataset(tmp_path, data)
    assert "instances.json" in str(info.value)


def test_box_rules_are_counted_in_one_log_line(tmp_path, caplog):
    anns = [
        {"id": 1, "image_id": 1, "category_id": 3, "bbox": [5, 5, 0, 4]},        # degenerate
        {"id": 2, "image_id": 1, "category_id": 3, "bbox": [5, 5, -4, 4]},       # negative size
        {"id": 3, "image_id": 1, "category_id": 3, "bbox": [50, 40, 5, 5]},      # outside the 40x30 image
        {"id": 4, "image_id": 1, "category_id": 3, "bbox": [-5, 20, 20, 20]},    # partly outside: clipped
        {"id": 5, "image_id": 1, "category_id": 7, "bbox": [1, 1, 5, 5], "iscrowd": 1},  # crowd
    ]
    with caplog.at_level(logging.WARNING, logger="hdetr.data"):
        ds = make_dataset(tmp_path, coco_dict(anns=anns))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "clipped=1, crowd=1, degenerate=2, images_without_objects=1, outside_image=1" in lines[0]
    _, target = ds[0]
    assert target["boxes"].tolist() == [[0, 20, 15, 30]] and target["labels"].tolist() == [3]
    assert sorted(ds.coco.anns) == [1, 2, 3, 4, 5]  # evaluation sees the file as it is (official)
    _, empty = ds[1]  # an image without annotations is kept with no targets
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)


def test_missing_images_are_skipped_and_all_missing_is_an_error(tmp_path, caplog):
    data = coco_dict(num_images=3)
    (tmp_path / "instances.json").write_text(json.dumps(data))
    write_image(tmp_path / "img" / "1.png")
    with caplog.at_level(logging.WARNING, logger="hdetr.data"):
        ds = CocoDetection(tmp_path / "instances.json", tmp_path / "img")
    assert ds.image_ids == [2] and "missing_image=2" in caplog.text
    with pytest.raises(UserError, match=r"none of its 3 images .*\(e\.g\. .*0\.png does not exist\)"):
        CocoDetection(tmp_path / "instances.json", tmp_path / "elsewhere")


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P", "I;16"])
def test_image_modes_become_rgb(tmp_path, mode):
    data = coco_dict(num_images=1, anns=[])
    data["images"][0]["file_name"] = "0.jpg" if mode == "CMYK" else "0.png"  # PNG has no CMYK
    ds = make_dataset(tmp_path, data)
    image = Image.new("RGB", (40, 30), (200, 100, 50)).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image).astype(np.uint16) * 257)
    image.save(tmp_path / "img" / data["images"][0]["file_name"])
    raw, _ = ds[0]
    assert raw.shape == (3, 30, 40) and raw.dtype == torch.uint8
    assert 40 < int(raw.float().mean()) < 230  # not clipped to white or black


def test_broken_image_is_replaced_and_named(tmp_path, caplog):
    ds = make_dataset(tmp_path, coco_dict(num_images=3))
    path = tmp_path / "img" / "1.png"
    path.write_bytes(path.read_bytes()[:40])  # truncated PNG
    with caplog.at_level(logging.WARNING, logger="hdetr.data"):
        _, target = ds[1]
        ds[1]
    assert target["image_id"] == 3  # the next readable image
    assert str(path) in ds.broken_images
    assert sum("1.png" in r.getMessage() for r in caplog.records) == 1  # logged once
    (tmp_path / "img" / "0.png").write_bytes(b"not an image")
    (tmp_path / "img" / "2.png").write_bytes(b"")
    with pytest.raises(UserError, match="no image of the dataset could be read"):
        ds[0]


def test_verify_images_leaves_out_unreadable_and_wrong_size(tmp_path, caplog):
    data = coco_dict(num_images=3)
    make_dataset(tmp_path, data)
    (tmp_path / "img" / "0.png").write_bytes(b"garbage")
    write_image(tmp_path / "img" / "2.png", size=(41, 30))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hdetr.data"):
        ds = CocoDetection(tmp_path / "instances.json", tmp_path / "img", verify_images=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "size_mismatch=1" in warnings[0] and "unreadable_image=1" in warnings[0]
    assert ds.image_ids == [2]
    assert ds.counts["unreadable_image"] == 1 and ds.counts["size_mismatch"] == 1
    assert "0.png: unreadable" in caplog.text and "differs from the annotated 40x30" in caplog.text


def test_collate_and_loader(tmp_path):
    ds = make_dataset(tmp_path, coco_dict(num_images=5))
    images, targets = collate([ds[0], ds[1]])
    assert len(images) == 2 and targets[1]["image_id"] == 2
    order = [[t["image_id"] for t in b] for _, b in build_dataloader(ds, 2, shuffle=True, seed=3)]
    again = [[t["image_id"] for t in b] for _, b in build_dataloader(ds, 2, shuffle=True, seed=3)]
    assert order == again and sorted(sum(order, [])) == [1, 2, 3, 4, 5]
    assert [len(b) for _, b in build_dataloader(ds, 2, shuffle=False, drop_last=True)] == [2, 2]


def test_distributed_loader_shards(tmp_path, monkeypatch):
    ds = make_dataset(tmp_path, coco_dict(num_images=5))
    import torch.distributed as dist

    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    seen = []
    for rank in (0, 1):
        monkeypatch.setattr(dist, "get_rank", lambda group=None, r=rank: r)
        loader = build_dataloader(ds, 1, shuffle=True, distributed=True, seed=0)
        from hdetr.data import set_epoch

        set_epoch(loader, 1)
        seen.append([b[1][0]["image_id"] for b in loader])
    assert len(seen[0]) == len(seen[1]) == 3 and set(seen[0]) | set(seen[1]) == {1, 2, 3, 4, 5}


def test_data_config_validation():
    with pytest.raises(ConfigError, match="root is empty"):
        DataConfig()
    with pytest.raises(ConfigError, match="scale_preset='huge'"):
        DataConfig(root="x", scale_preset="huge")
    cfg = DataConfig(kind="lvis", root="/data/coco")
    assert cfg.layout("train") == ("annotations/lvis_v1_train.json", "") and cfg.contiguous_labels
    assert DataConfig(root="x").layout("val") == ("annotations/instances_val2017.json", "val2017")
    assert not DataConfig(root="x").contiguous_labels


def test_worker_processes_reproduce_the_augmentation(tmp_path):
    data = coco_dict(num_images=6, size=(90, 60))
    make_dataset(tmp_path, data)
    for img in data["images"]:
        write_image(tmp_path / "img" / img["file_name"], (90, 60))
    cfg = DataConfig(root=str(tmp_path), train_annotations="instances.json", train_images="img",
                     scale_preset="synthetic")
    dataset = build_dataset(cfg, "train")

    def shapes(workers):
        loader = build_dataloader(dataset, 2, shuffle=True, num_workers=workers, seed=7)
        return [(t["image_id"], tuple(i.shape), t["boxes"].tolist()) for images, targets in loader
                for i, t in zip(images, targets)]

    first = shapes(2)
    assert first == shapes(2) and sorted(x[0] for x in first) == [1, 2, 3, 4, 5, 6]
    assert len({x[1] for x in first}) > 1  # augmented: not every image got the same size
