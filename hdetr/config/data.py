"""The data configuration: which dataset, where its files are, how images are scaled.

Paths are resolved against ``root``; an empty string for an annotation or image
field means "the usual layout for this kind":

=========================  ==========================================  ===========================
layout                     annotations                                  images
=========================  ==========================================  ===========================
coco                       ``annotations/instances_{train,val}2017.json``  ``{train,val}2017/``
lvis (v1)                  ``annotations/lvis_v1_{train,val}.json``      ``root`` + the last two parts
                                                                       of each image's ``coco_url``
                                                                       (``train2017/xxx.jpg``)
synthetic (``hdetr data``)  ``instances_{train,val}.json``                ``{train,val}/``
=========================  ==========================================  ===========================

With ``synthetic=True`` and an empty ``root`` the dataset is the generated
benchmark in its default cache folder (``hdetr.data.synthetic.ensure_dataset``),
made on first use.
"""
from __future__ import annotations

import dataclasses

from hdetr.config.base import Config, ConfigError

KINDS = ("coco", "lvis")
LABEL_MAPPINGS = ("auto", "category_id", "contiguous")
@dataclasses.dataclass(frozen=True)
class ScalePreset:
    """Sizes of the augmentation recipe (hdetr.data.transforms), in pixels of the shorter image side (max_size: longer side)."""

    train_scales: tuple[int, ...]
    max_size: int
    crop_resize: tuple[int, ...]
    crop_range: tuple[int, int]
    eval_size: int


SCALE_PRESETS = {
    # The official COCO recipe.
    "coco": ScalePreset(tuple(range(480, 801, 32)), 1333, (400, 500, 600), (384, 600), 800),
    # The same ratios at 0.4x, for 256-512 px images.
    "small": ScalePreset(tuple(range(192, 321, 16)), 533, (160, 200, 240), (152, 240), 320),
    # The same ratios at 0.16x, for the 128 px synthetic benchmark.
    "synthetic": ScalePreset(tuple(range(80, 129, 8)), 213, (64, 80, 96), (64, 96), 128),
    # 192 px synthetic images, the smallest training side 128 px: room for n + T = 100 + 200 two-stage
    # queries with 3 feature levels (336 encoder positions; the 128 px preset's 80 px side has 134).
    "synthetic_192": ScalePreset(tuple(range(128, 193, 8)), 320, (112, 128, 144), (112, 144), 192),
}


@dataclasses.dataclass
class DataConfig(Config):
    kind: str = "coco"  # coco | lvis: the annotation flavour and the evaluator
    root: str = ""
    synthetic: bool = False  # the generated benchmark (root may stay empty: default cache)
    train_annotations: str = ""
    train_images: str = ""
    val_annotations: str = ""
    val_images: str = ""
    # category_id: label = category id, num_classes = max id + 1 (official COCO, 91 classes);
    # contiguous: labels 0..C-1 in sorted category-id order; auto: category_id for real
    # COCO, contiguous for LVIS and the synthetic sets.
    label_mapping: str = "auto"
    scale_preset: str = "coco"  # coco (800/1333) | small (320/533) | synthetic (128/213)
    augment: bool = True  # train split: flip + multi-scale + crop; False: the eval resize
    num_workers: int = 2
    verify_images: bool = False  # open every image header at construction (slow on big sets)
    # synthetic generator parameters (used when synthetic=True and root is empty)
    synthetic_images: int = 0  # training images; 0 = the kind's default
    synthetic_val_images: int = 0  # validation images; 0 = the kind's default
    synthetic_seed: int = 0
    synthetic_image_size: int = 128
    synthetic_classes: int = 0  # categories drawn from the kind's catalogue; 0 = the kind's default
    synthetic_objects: list[int] | None = None  # [min, max] objects per image; None = the kind's default

    def validate(self) -> None:
        def bad(msg: str) -> ConfigError:
            return ConfigError(f"DataConfig: {msg}")

        if self.kind not in KINDS:
            raise bad(f"kind={self.kind!r} is not one of {', '.join(KINDS)}")
        if self.label_mapping not in LABEL_MAPPINGS:
            raise bad(f"label_mapping={self.label_mapping!r} is not one of {', '.join(LABEL_MAPPINGS)}")
        if self.scale_preset not in SCALE_PRESETS:
            raise bad(f"scale_preset={self.scale_preset!r} is not one of {', '.join(SCALE_PRESETS)}")
        if self.num_workers < 0:
            raise bad(f"num_workers={self.num_workers} must be >= 0")
        if not self.synthetic and not self.root:
            raise bad("root is empty: set root to the dataset folder (or synthetic=true for the generated set)")
        for name in ("synthetic_images", "synthetic_val_images"):
            if getattr(self, name) < 0:
                raise bad(f"{name}={getattr(self, name)} must be >= 0 (0: the default)")
        if self.synthetic_classes < 0:
            raise bad(f"synthetic_classes={self.synthetic_classes} must be >= 0 (0: the default)")
        if self.synthetic_objects is not None and not (
                len(self.synthetic_objects) == 2 and 1 <= self.synthetic_objects[0] <= self.synthetic_objects[1] <= 100):
            raise bad(f"synthetic_objects={self.synthetic_objects} must be [min, max] with 1 <= min <= max <= 100")
        if self.synthetic_image_size < 32:
            raise bad(f"synthetic_image_size={self.synthetic_image_size} must be >= 32")

    @property
    def contiguous_labels(self) -> bool:
        """Whether labels are 0..C-1 (else they are the category ids themselves)."""
        if self.label_mapping == "auto":
            return self.synthetic or self.kind == "lvis"
        return self.label_mapping == "contiguous"

    def layout(self, split: str) -> tuple[str, str]:
        """(annotation file, image folder) of ``split`` relative to ``root``, defaults filled in."""
        if split not in ("train", "val"):
            raise ConfigError(f"DataConfig: split={split!r} is not one of train, val")
        annotations = getattr(self, f"{split}_annotations")
        images = getattr(self, f"{split}_images")
        if self.synthetic:
            default = (f"instances_{split}.json", split)
        elif self.kind == "lvis":
            default = (f"annotations/lvis_v1_{split}.json", "")
        else:
            default = (f"annotations/instances_{split}2017.json", f"{split}2017")
        return annotations or default[0], images or default[1]


def synthetic(kind: str = "coco", **changes) -> DataConfig:
    """The generated benchmark of ``kind`` in its default cache folder, small-image scales."""
    return DataConfig(**{"kind": kind, "synthetic": True, "scale_preset": "synthetic", **changes})
