"""Writing a synthetic COCO- or LVIS-format dataset.

Layout of ``out_dir``::

    instances_train.json   instances_val.json   (COCO format; LVIS fields for kind "lvis")
    train/000000.png ...   val/000000.png ...
    synthetic.json         the parameters, generator version and counts

The same parameters give the same bytes: every image draws from its own
``numpy`` generator seeded by (seed, split, index), PNGs are written with fixed
settings, JSON with sorted keys.

LVIS kind. Category frequencies follow a Zipf law (rank r drawn with weight
1 / (r + 1)^``ZIPF_EXPONENT``, ranks shuffled by the seed), and every category
appears at least once in train: one instance of each category goes on top of
its scene, in its own grid cell, so occlusion cannot remove it. Each category carries ``image_count`` and ``instance_count`` (train)
and ``frequency``: LVIS's rule is rare 1-10, common 11-100, frequent > 100 images
for ~100k training images; here the two thresholds are scaled by
``num_images / 3000`` (10 and 100 become 3 and 33 at the default 1000 images; at
least 1 and 2). With the default set that makes roughly 40% of the categories
rare, 50% common and 10% frequent (the frequent ones hold most instances), close
enough to LVIS v1 (28/38/34%) for APr/APc/APf to separate head from tail. Each image lists
``neg_category_ids`` (2-8 categories verified absent, drawn by frequency) and
``not_exhaustive_category_ids``: in 10% of the images with a category drawn more
than once, one of its instances is left unannotated and the category listed
there (it stays annotated in the image otherwise), as in LVIS
federated annotation, so detections of it are not counted as false positives.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hdetr.data.synthetic.catalogue import ObjectClass, classes_for
from hdetr.data.synthetic.render import background, compose, distractor_layer, object_layer
from hdetr.errors import UserError

GENERATOR_VERSION = 1
ZIPF_EXPONENT = 1.2
LVIS_THRESHOLD_IMAGES = 3000  # training images at which LVIS's 10/100 thresholds apply unscaled
NOT_EXHAUSTIVE_RATE = 0.1
DEFAULTS = {
    "coco": {"num_images": 1000, "num_val_images": 100, "num_classes": 6},
    "lvis": {"num_images": 1000, "num_val_images": 300, "num_classes": 256},
}
# (objects per image, distractors per image, object size as a fraction of the image side)
_SCENE = {
    "coco": ((2, 8), (1, 4), (0.08, 0.8)),
    "lvis": ((3, 10), (1, 3), (0.1, 0.7)),
}


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """All parameters of a generated dataset (they define its cache folder)."""

    kind: str
    num_images: int
    num_val_images: int
    seed: int
    image_size: int
    num_classes: int
    # (min, max) objects per image; None: the kind's default (_SCENE)
    objects_per_image: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {**dataclasses.asdict(self), "generator_version": GENERATOR_VERSION}
        if self.objects_per_image is None:  # the default scene keeps the cache folders of earlier versions
            del d["objects_per_image"]
        else:
            d["objects_per_image"] = list(self.objects_per_image)
        return d

    @property
    def object_range(self) -> tuple[int, int]:
        return self.objects_per_image or _SCENE[self.kind][0]


def make_spec(kind: str = "coco", num_images: int | None = None, num_val_images: int | None = None,
              seed: int = 0, image_size: int = 128, num_classes: int | None = None,
              objects_per_image: tuple[int, int] | None = None) -> SyntheticSpec:
    """Fill in the kind's defaults and check the values (UserError on bad ones)."""
    if kind not in DEFAULTS:
        raise UserError(f"synthetic dataset kind={kind!r} is not one of {', '.join(DEFAULTS)}")
    d = DEFAULTS[kind]
    spec = SyntheticSpec(kind, d["num_images"] if num_images is None else int(num_images),
                         d["num_val_images"] if num_val_images is None else int(num_val_images),
                         int(seed), int(image_size), d["num_classes"] if num_classes is None else int(num_classes),
                         None if objects_per_image is None else tuple(int(v) for v in objects_per_image))
    if spec.num_images < 1 or spec.num_val_images < 1:
        raise UserError(f"synthetic dataset needs >= 1 train and val image, got {spec.num_images} and "
                        f"{spec.num_val_images}")
    if spec.objects_per_image is not None:
        lo, hi = spec.objects_per_image if len(spec.objects_per_image) == 2 else (0, -1)
        if not 1 <= lo <= hi <= 100:
            raise UserError(f"synthetic objects_per_image={list(objects_per_image)} must be [min, max] with "
                            f"1 <= min <= max <= 100")
    if not 32 <= spec.image_size <= 4096:
        raise UserError(f"synthetic image_size={spec.image_size} must be in 32..4096")
    classes_for(kind, spec.num_classes)
    return spec


def lvis_thresholds(num_images: int) -> tuple[int, int]:
    """(rare max, common max) image counts for a training set of ``num_images``."""
    scale = num_images / LVIS_THRESHOLD_IMAGES
    rare = max(1, round(10 * scale))
    return rare, max(rare + 1, round(100 * scale))


def _category_weights(spec: SyntheticSpec) -> np.ndarray:
    if spec.kind == "coco":
        return np.full(spec.num_classes, 1.0 / spec.num_classes)
    ranks = np.random.default_rng([spec.seed, 7]).permutation(spec.num_classes)
    w = 1.0 / (ranks + 1.0) ** ZIPF_EXPONENT
    return w / w.sum()


def _plan_split(spec: SyntheticSpec, split: str, count: int, weights: np.ndarray) -> list[list[tuple[int, bool]]]:
    """Per image, the (label, forced) of each object to draw; in LVIS train every label occurs once."""
    rng = np.random.default_rng([spec.seed, 11, 0 if split == "train" else 1])
    lo, hi = spec.object_range
    sizes = rng.integers(lo, hi + 1, count)
    labels = rng.choice(len(weights), int(sizes.sum()), p=weights)
    forced = np.zeros(len(labels), bool)
    if spec.kind == "lvis" and split == "train":
        missing = list(np.setdiff1d(np.arange(len(weights)), labels))
        counts = np.bincount(labels, minlength=len(weights))
        for slot in rng.permutation(len(labels)):
            if not missing:
                break
            if counts[labels[slot]] > 1:  # never take the last instance of another category
                counts[labels[slot]] -= 1
                labels[slot] = missing.pop()
        # One instance of each category is drawn so that occlusion cannot remove it.
        # A random occurrence, not the first: the first ones would crowd the first images.
        shuffled = rng.permutation(len(labels))
        _, chosen = np.unique(labels[shuffled], return_index=True)
        forced[shuffled[chosen]] = True
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [list(zip(labels[a:b].tolist(), forced[a:b].tolist())) for a, b in zip(bounds[:-1], bounds[1:])]


def _render_image(spec: SyntheticSpec, classes: tuple[ObjectClass, ...], split: str, index: int,
                  plan: list[tuple[int, bool]]) -> tuple[np.ndarray, list[dict]]:
    rng = np.random.default_rng([spec.seed, 0 if split == "train" else 1, index])
    s = spec.image_size
    _, (dlo, dhi), (flo, fhi) = _SCENE[spec.kind]
    size_range = (max(6.0, flo * s), fhi * s)
    layers = [object_layer(rng, classes[label], label, size_range, s) for label, forced in plan if not forced]
    layers += [distractor_layer(rng, (size_range[0], size_range[1] * 0.6), s)
               for _ in range(int(rng.integers(dlo, dhi + 1)))]
    order = rng.permutation(len(layers))
    layers = [layers[i] for i in order]
    forced = [label for label, is_forced in plan if is_forced]
    if forced:  # on top, each in its own grid cell, so the occlusion rule cannot remove them
        grid = math.ceil(math.sqrt(len(forced)))
        cell = s / grid
        for k, label in enumerate(forced):
            side = min(cell * 0.8, 0.4 * s)
            layer = object_layer(rng, classes[label], label, (max(6.0, side * 0.6), side), s)
            h, w = layer.mask.shape
            cy, cx = (k // grid + 0.5) * cell, (k % grid + 0.5) * cell
            layer.top, layer.left = int(round(cy - h / 2)), int(round(cx - w / 2))
            layers.append(layer)
    image, objects = compose(layers, background(rng, s), s)
    noisy = image.astype(np.float32) + rng.normal(0, 5, image.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8), objects


def _write_split(spec: SyntheticSpec, classes: tuple[ObjectClass, ...], split: str, count: int,
                 weights: np.ndarray, out_dir: Path) -> dict[str, Any]:
    (out_dir / split).mkdir(parents=True, exist_ok=True)
    plans = _plan_split(spec, split, count, weights)
    images, annotations = [], []
    rng = np.random.default_rng([spec.seed, 13, 0 if split == "train" else 1])
    for index, plan in enumerate(plans):
        pixels, objects = _render_image(spec, classes, split, index, plan)
        file_name = f"{index:06d}.png"
        Image.fromarray(pixels).save(out_dir / split / file_name, format="PNG", compress_level=1)  # noisy pixels barely compress: favour speed
        image = {"id": index + 1, "file_name": file_name, "width": spec.image_size, "height": spec.image_size}
        if spec.kind == "lvis":
            objects = _federate(rng, image, objects, weights)
        images.append(image)
        for obj in objects:
            x, y, w, h = obj["bbox"]
            ann = {"id": len(annotations) + 1, "image_id": image["id"], "category_id": obj["label"] + 1,
                   "bbox": [x, y, w, h], "area": obj["area"]}
            if spec.kind == "coco":
                ann["iscrowd"] = 0
            annotations.append(ann)
    return {"images": images, "annotations": annotations}


def _federate(rng: np.random.Generator, image: dict[str, Any], objects: list[dict], weights: np.ndarray) -> list[dict]:
    """Add LVIS's per-image verified-negative and not-exhaustive lists; may unannotate one object."""
    present = sorted({o["label"] for o in objects})
    labels = [o["label"] for o in objects]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    not_exhaustive: list[int] = []
    if repeated and rng.random() < NOT_EXHAUSTIVE_RATE:
        # Only a category with several instances: it stays annotated (positive) in the image.
        label = repeated[int(rng.integers(0, len(repeated)))]
        victims = [i for i, o in enumerate(objects) if o["label"] == label]
        drop = victims[int(rng.integers(0, len(victims)))]
        objects = [o for i, o in enumerate(objects) if i != drop]
        not_exhaustive = [label + 1]
    absent = np.setdiff1d(np.arange(len(weights)), present)
    n_neg = min(len(absent), int(rng.integers(2, 9)))
    p = weights[absent] / weights[absent].sum()
    negatives = rng.choice(absent, n_neg, replace=False, p=p) if n_neg else np.zeros(0, int)
    image["neg_category_ids"] = sorted(int(c) + 1 for c in negatives)
    image["not_exhaustive_category_ids"] = not_exhaustive
    return objects


def _categories(spec: SyntheticSpec, classes: tuple[ObjectClass, ...], train: dict[str, Any]) -> list[dict]:
    cats = []
    images_with: dict[int, set] = {}
    instances: dict[int, int] = {}
    for ann in train["annotations"]:
        images_with.setdefault(ann["category_id"], set()).add(ann["image_id"])
        instances[ann["category_id"]] = instances.get(ann["category_id"], 0) + 1
    rare_max, common_max = lvis_thresholds(spec.num_images)
    for label, cls in enumerate(classes):
        cid = label + 1
        cat = {"id": cid, "name": cls.name, "supercategory": cls.shape}
        if spec.kind == "lvis":
            image_count = len(images_with.get(cid, ()))
            cat.update(
                synset=f"{cls.name.replace(' ', '_')}.synthetic.01", synonyms=[cls.name],
                image_count=image_count, instance_count=instances.get(cid, 0),
                frequency="r" if image_count <= rare_max else "c" if image_count <= common_max else "f",
            )
        cats.append(cat)
    return cats


def _dump(data: Any, path: Path) -> None:
    with open(path, "w") as f:
        json.dump(data, f, sort_keys=True, separators=(",", ":"))


def write_dataset(spec: SyntheticSpec, out_dir: str | os.PathLike) -> Path:
    """Render ``spec`` into ``out_dir`` (created; existing files of the same names are replaced)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = classes_for(spec.kind, spec.num_classes)
    weights = _category_weights(spec)
    splits = {split: _write_split(spec, classes, split, count, weights, out_dir)
              for split, count in (("train", spec.num_images), ("val", spec.num_val_images))}
    categories = _categories(spec, classes, splits["train"])
    info = {"description": f"hdetr synthetic {spec.kind} benchmark", "version": str(GENERATOR_VERSION),
            "parameters": spec.to_dict()}
    for split, data in splits.items():
        _dump({"info": info, "licenses": [], "categories": categories, **data}, out_dir / f"instances_{split}.json")
    counts = {split: {"images": len(d["images"]), "annotations": len(d["annotations"])} for split, d in splits.items()}
    if spec.kind == "lvis":
        counts["frequency"] = {f: sum(c["frequency"] == f for c in categories) for f in "rcf"}
    _dump({**spec.to_dict(), "counts": counts}, out_dir / "synthetic.json")
    return out_dir
