"""Reading and validating a COCO-format annotation file (COCO or LVIS v1 flavour).

Everything about the annotations is checked once, when the dataset is built, so
an epoch never stops half-way on a bad record. Structural problems are errors
(``UserError`` naming the file, the record and the value); box problems that the
official code tolerates are handled by these rules and counted in one log line.
The rules shape the *training* targets only: evaluation scores against the
annotations as the file has them (as the official evaluation does), so AP stays
comparable with published numbers.

===========================  ===============================================================
rule                         training targets
===========================  ===============================================================
``degenerate``               width or height <= 0: skipped
``outside_image``            no overlap with the image after clipping: skipped
``clipped``                  partly outside the image: clipped to it (official ``clamp``)
``crowd``                    ``iscrowd=1``: skipped; COCOeval uses it to ignore detections
                             on crowds
``images_without_objects``   no training target left: the image is kept (the official code
                             keeps them; they teach "no object")
===========================  ===============================================================
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from hdetr.errors import UserError

FREQUENCIES = ("r", "c", "f")


@dataclasses.dataclass
class ImageRecord:
    """One image and its training targets (crowd and invalid boxes already removed).

    ``boxes`` [G, 4] float32 xyxy in pixels of the annotated image size, clipped to it;
    ``category_ids`` [G] int64.
    """

    id: int
    file_name: str
    width: int
    height: int
    boxes: np.ndarray
    category_ids: np.ndarray


@dataclasses.dataclass
class AnnotationSet:
    """A validated annotation file.

    ``ground_truth`` is the COCO-style dict for evaluation (every annotation of the
    file, ``area`` and ``iscrowd`` filled in where missing);
    ``images`` the per-image training targets in file order; ``counts`` how many
    records each rule of the module docstring touched.
    """

    path: Path
    ground_truth: dict[str, Any]
    images: list[ImageRecord]
    categories: list[dict[str, Any]]
    counts: Counter


def read_json(path: Path) -> Any:
    """Parse a JSON file; a missing or malformed file is a UserError naming it."""
    if not path.is_file():
        raise UserError(f"annotation file not found: {path}")
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _require(path: Path, where: str, record: Any, key: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(record, dict):
        raise UserError(f"{path}: {where} is {type(record).__name__}, expected an object")
    if key not in record:
        raise UserError(f"{path}: {where} has no {key!r} field")
    value = record[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        expected = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
        raise UserError(f"{path}: {where}.{key} = {value!r}, expected {expected}")
    return value


def _file_name(path: Path, where: str, image: dict[str, Any]) -> str:
    if isinstance(image.get("file_name"), str):
        return image["file_name"]
    # LVIS v1 names images by URL only; they live in COCO's train2017/ and val2017/.
    url = image.get("coco_url")
    if isinstance(url, str) and "/" in url:
        return "/".join(url.rstrip("/").split("/")[-2:])
    raise UserError(f"{path}: {where} has neither a 'file_name' nor a 'coco_url' field")


def _categories(path: Path, data: dict[str, Any], lvis: bool) -> list[dict[str, Any]]:
    cats = data["categories"]
    if not isinstance(cats, list) or not cats:
        raise UserError(f"{path}: 'categories' must be a non-empty list, got {cats!r:.80}")
    seen: set[int] = set()
    for i, cat in enumerate(cats):
        cid = _require(path, f"categories[{i}]", cat, "id", int)
        _require(path, f"categories[{i}]", cat, "name", str)
        if cid in seen:
            raise UserError(f"{path}: categories[{i}].id = {cid} appears twice")
        if cid < 0:
            raise UserError(f"{path}: categories[{i}].id = {cid}, expected a non-negative integer")
        seen.add(cid)
        if lvis and cat.get("frequency") not in FREQUENCIES:
            raise UserError(
                f"{path}: categories[{i}].frequency = {cat.get('frequency')!r}, expected one of r, c, f (LVIS)"
            )
    return sorted(cats, key=lambda c: c["id"])


def _box_rule(box: list[float], width: int, height: int) -> tuple[str | None, np.ndarray]:
    """Return (rule name or None, clipped xyxy box)."""
    x, y, w, h = box
    if w <= 0 or h <= 0:
        return "degenerate", np.zeros(4, np.float32)
    x0, y0, x1, y1 = x, y, x + w, y + h
    clipped = np.array([min(max(x0, 0), width), min(max(y0, 0), height),
                        min(max(x1, 0), width), min(max(y1, 0), height)], np.float32)
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        return "outside_image", clipped
    if (clipped != np.array([x0, y0, x1, y1], np.float32)).any():
        return "clipped", clipped
    return None, clipped


def load_annotations(path: str | Path, lvis: bool = False) -> AnnotationSet:
    """Read and validate a COCO-format (or LVIS v1) annotation file.

    Raises UserError for malformed JSON, missing keys, wrong types, duplicate ids,
    annotations pointing at unknown images or categories, and an empty image list.
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise UserError(f"{path}: the top level is {type(data).__name__}, expected an object")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise UserError(f"{path}: no {key!r} field at the top level")
        if not isinstance(data[key], list):
            raise UserError(f"{path}: {key!r} is {type(data[key]).__name__}, expected a list")
    if not data["images"]:
        raise UserError(f"{path}: 'images' is empty: the dataset has no images")
    categories = _categories(path, data, lvis)
    category_ids = {c["id"] for c in categories}

    images: dict[int, dict[str, Any]] = {}
    names: dict[int, str] = {}
    for i, image in enumerate(data["images"]):
        where = f"images[{i}]"
        iid = _require(path, where, image, "id", int)
        if iid in images:
            raise UserError(f"{path}: {where}.id = {iid} appears twice")
        for key in ("width", "height"):
            if _require(path, where, image, key, int) < 1:
                raise UserError(f"{path}: {where}.{key} = {image[key]}, expected a positive integer")
        names[iid] = _file_name(path, where, image)
        images[iid] = image

    counts: Counter = Counter()
    evaluated_annotations = []
    boxes: dict[int, list[np.ndarray]] = {iid: [] for iid in images}
    labels: dict[int, list[int]] = {iid: [] for iid in images}
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        _require(path, where, ann, "id", int)
        iid = _require(path, where, ann, "image_id", int)
        cid = _require(path, where, ann, "category_id", int)
        box = _require(path, where, ann, "bbox", list)
        if iid not in images:
            raise UserError(f"{path}: {where} (id {ann['id']}) has image_id = {iid}, which is not in 'images'")
        if cid not in category_ids:
            known = sorted(category_ids)
            shown = ", ".join(map(str, known[:20])) + (" ..." if len(known) > 20 else "")
            raise UserError(
                f"{path}: {where} (id {ann['id']}) has category_id = {cid}, which is not in 'categories' "
                f"(known ids: {shown})"
            )
        if len(box) != 4 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box
        ):
            raise UserError(f"{path}: {where} (id {ann['id']}).bbox = {box!r}, expected 4 finite numbers [x, y, w, h]")
        crowd = bool(ann.get("iscrowd", 0))
        evaluated_annotations.append({**ann, "iscrowd": int(crowd), "area": ann.get("area", box[2] * box[3])})
        if crowd:
            counts["crowd"] += 1
            continue
        rule, clipped = _box_rule(box, images[iid]["width"], images[iid]["height"])
        if rule is not None:
            counts[rule] += 1
        if rule in ("degenerate", "outside_image"):
            continue
        boxes[iid].append(clipped)
        labels[iid].append(cid)

    records = []
    for iid, image in images.items():
        if not boxes[iid]:
            counts["images_without_objects"] += 1
        records.append(ImageRecord(
            id=iid, file_name=names[iid], width=image["width"], height=image["height"],
            boxes=np.stack(boxes[iid]) if boxes[iid] else np.zeros((0, 4), np.float32),
            category_ids=np.asarray(labels[iid], np.int64),
        ))
    ground_truth = {**data, "annotations": evaluated_annotations,
                    "images": [{**img, "file_name": names[img["id"]]} for img in data["images"]]}
    return AnnotationSet(path=path, ground_truth=ground_truth, images=records, categories=categories,
                         counts=counts)
