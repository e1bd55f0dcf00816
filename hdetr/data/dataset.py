"""COCO-format detection datasets (COCO, LVIS v1, the synthetic benchmark).

Items are ``(image, target)``: image [3, H, W] float32, normalised; target with
``boxes`` [G, 4] normalised cxcywh, ``labels`` [G] int64, ``image_id`` int,
``orig_size`` [2] int64 (h, w) of the file, ``size`` [2] int64 (h, w) after the
transforms.

Files: every image file is checked to exist when the dataset is built; missing ones
are left out (rule ``missing_image``, counted in the summary line) and if none
exists the dataset is an error naming the folder. With ``verify_images`` each
header is also opened (rules ``unreadable_image``, ``size_mismatch``). An image that
still fails to decode during an epoch is logged once (naming the file and the
reason) and replaced by the next readable image of the dataset, so the epoch goes
on; ``dataset.broken_images`` lists the files (per worker process). Evaluation
only scores the images that were predicted, so a replaced image is left out of
the metrics rather than scored as a miss.
"""
from __future__ import annotations

import contextlib
import io
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from pycocotools.coco import COCO
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from hdetr.config.data import DataConfig
from hdetr.data.annotations import AnnotationSet, load_annotations
from hdetr.data.images import check_image, load_rgb
from hdetr.data.labels import LabelMap
from hdetr.data.transforms import build_transforms
from hdetr.errors import UserError

log = logging.getLogger("hdetr.data")


def summary_line(path: Path, counts: Counter, num_images: int) -> str:
    """The one log line that reports what the validation rules did."""
    parts = ", ".join(f"{rule}={n}" for rule, n in sorted(counts.items()))
    return f"{path}: {num_images} images; rules applied: {parts}"


def coco_ground_truth(ground_truth: dict[str, Any]) -> COCO:
    """A pycocotools COCO over an in-memory dict, without its prints."""
    coco = COCO()
    coco.dataset = ground_truth
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoDetection(Dataset):
    """A COCO-format detection dataset.

    Public attributes: ``coco`` (pycocotools ground truth), ``label_to_category_id``,
    ``category_id_to_label``, ``num_classes``, ``class_names`` (see
    ``hdetr.data.labels``), ``categories`` (the file's category records, sorted by id),
    ``kind`` ("coco" | "lvis"), ``counts`` (rule -> count), ``image_ids``.
    """

    def __init__(self, annotation_file: str | Path, image_dir: str | Path, *, kind: str = "coco",
                 contiguous_labels: bool = False, transforms: Any = None, verify_images: bool = False) -> None:
        self.kind = kind
        self.image_dir = Path(image_dir)
        annotations: AnnotationSet = load_annotations(annotation_file, lvis=kind == "lvis")
        self.annotation_file = annotations.path
        self.categories = annotations.categories
        labels = LabelMap.from_categories(annotations.categories, contiguous_labels)
        self.label_to_category_id = labels.label_to_category_id
        self.category_id_to_label = labels.category_id_to_label
        self.num_classes = labels.num_classes
        self.class_names = labels.class_names
        self.counts = Counter(annotations.counts)
        self.records = self._usable_records(annotations, verify_images)
        self.coco = coco_ground_truth(annotations.ground_truth)
        self.image_ids = [r.id for r in self.records]
        self.transforms = transforms
        self.broken_images: dict[str, str] = {}
        if self.counts:
            log.warning(summary_line(self.annotation_file, self.counts, len(self.records)))

    def _usable_records(self, annotations: AnnotationSet, verify: bool) -> list:
        records = []
        first_missing = None
        for record in annotations.images:
            path = self.image_dir / record.file_name
            if verify:
                problem = check_image(path, record.width, record.height)
            else:
                problem = None if path.is_file() else "missing"
            if problem is None:
                records.append(record)
                continue
            if problem == "missing":
                self.counts["missing_image"] += 1
                first_missing = first_missing or path
            elif problem.startswith("size"):
                self.counts["size_mismatch"] += 1
                log.info(f"{path}: {problem}; left out")  # the counts go in the one warning line
            else:
                self.counts["unreadable_image"] += 1
                log.info(f"{path}: {problem}; left out")
        if not records:
            hint = f" (e.g. {first_missing} does not exist)" if first_missing else ""
            raise UserError(
                f"{annotations.path}: none of its {len(annotations.images)} images could be used from "
                f"image folder {self.image_dir}{hint}"
            )
        return records

    def __len__(self) -> int:
        return len(self.records)

    def raw_item(self, index: int) -> tuple[tv_tensors.Image, dict[str, Any]]:
        """The untransformed item: uint8 image [3, H, W] and xyxy pixel boxes (raises UserError)."""
        record = self.records[index]
        image = load_rgb(self.image_dir / record.file_name)
        height, width = image.height, image.width
        boxes = torch.from_numpy(record.boxes).reshape(-1, 4)
        if (width, height) != (record.width, record.height):
            # Annotations are in the annotated size's pixels; follow the file's pixels.
            scale = torch.tensor([width / record.width, height / record.height] * 2)
            boxes = boxes * scale
        labels = torch.tensor([self.category_id_to_label[int(c)] for c in record.category_ids], dtype=torch.int64)
        target = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width)),
            "labels": labels,
            "image_id": record.id,
            "orig_size": torch.tensor([height, width], dtype=torch.int64),
        }
        return tv_tensors.Image(F.pil_to_tensor(image)), target

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        for attempt in range(len(self.records)):
            i = (index + attempt) % len(self.records)
            try:
                image, target = self.raw_item(i)
            except UserError as exc:
                name = str(self.image_dir / self.records[i].file_name)
                if name not in self.broken_images:
                    self.broken_images[name] = str(exc)
                    log.warning(f"{exc}; using the next image instead")
                continue
            if self.transforms is not None:
                return self.transforms(image, target)
            return image, target
        raise UserError(f"{self.annotation_file}: no image of the dataset could be read from {self.image_dir}")


def build_dataset(data_config: DataConfig, split: str) -> CocoDetection:
    """The ``split`` ("train" | "val") of the dataset ``data_config`` describes.

    The train split is augmented when ``data_config.augment``; otherwise (and for
    val) it gets the evaluation resize of ``data_config.scale_preset``.
    """
    annotations, images = data_config.layout(split)
    root = Path(data_config.root).expanduser() if data_config.root else None
    if root is None:
        from hdetr.data.synthetic import ensure_dataset

        root = ensure_dataset(data_config.kind, num_images=data_config.synthetic_images or None,
                              num_val_images=data_config.synthetic_val_images or None,
                              seed=data_config.synthetic_seed, image_size=data_config.synthetic_image_size,
                              num_classes=data_config.synthetic_classes or None,
                              objects_per_image=data_config.synthetic_objects)
    train = split == "train" and data_config.augment
    return CocoDetection(
        root / annotations, root / images, kind=data_config.kind,
        contiguous_labels=data_config.contiguous_labels,
        transforms=build_transforms(data_config.scale_preset, train=train),
        verify_images=data_config.verify_images,
    )
