"""The DETR / H-DETR augmentation recipe on torchvision.transforms.v2.

Training (official ``make_coco_transforms("train")``)::

    horizontal flip (p=0.5)
    one of, with equal odds:
      - resize the shorter side to a random scale in ``train_scales``, longer side <= max_size
      - resize the shorter side to one of ``crop_resize`` -> random crop of width and height
        in ``crop_range`` -> the multi-scale resize above
    to float, ImageNet mean/std normalisation

Evaluation: the shorter side to ``eval_size``, longer side <= max_size, normalisation.

Boxes travel as ``tv_tensors.BoundingBoxes`` (xyxy pixels), so flips, resizes and
crops move them with the pixels; a crop clips boxes to the crop and drops those
left with no area (as the official ``crop``). They leave as normalised cxcywh.
Presets for small images keep the same structure at a smaller scale.
"""
from __future__ import annotations

from typing import Any

import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from hdetr.boxes import xyxy_to_cxcywh
from hdetr.config.data import SCALE_PRESETS, ScalePreset

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)




def _image_size(flat_inputs: list[Any]) -> tuple[int, int]:
    for item in flat_inputs:
        if isinstance(item, tv_tensors.Image):
            return tuple(item.shape[-2:])
        if isinstance(item, Image.Image):
            return item.height, item.width
    raise TypeError("the transform needs a tv_tensors.Image or PIL image among its inputs")


def short_side_size(height: int, width: int, size: int, max_size: int | None) -> tuple[int, int]:
    """(h, w) with the shorter side ``size`` (reduced so the longer stays <= max_size).

    The official ``get_size_with_aspect_ratio`` rounding, so evaluation inputs match
    the official code pixel for pixel.
    """
    if max_size is not None:
        short, long = float(min(height, width)), float(max(height, width))
        if long / short * size > max_size:
            size = int(round(max_size * short / long))
    if (width <= height and width == size) or (height <= width and height == size):
        return height, width
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)


class ShortSideResize(v2.Transform):
    """Resize so the shorter side is a random choice of ``sizes`` (longer side <= max_size)."""

    def __init__(self, sizes: tuple[int, ...] | list[int], max_size: int | None = None) -> None:
        super().__init__()
        self.sizes = tuple(sizes)
        self.max_size = max_size

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = _image_size(flat_inputs)
        size = self.sizes[int(torch.randint(len(self.sizes), ()))]
        return {"size": list(short_side_size(height, width, size, self.max_size))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.resize, inpt, size=params["size"], antialias=True)


class RandomSizeCrop(v2.Transform):
    """Crop a random window whose width and height are drawn from [min_size, max_size].

    Sides larger than the image are capped at the image (official ``RandomSizeCrop``);
    boxes are shifted and clipped to the window by the v2 kernel.
    """

    def __init__(self, min_size: int, max_size: int) -> None:
        super().__init__()
        self.min_size = min_size
        self.max_size = max_size

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = _image_size(flat_inputs)

        def side(limit: int) -> int:
            hi = min(limit, self.max_size)
            return int(torch.randint(min(self.min_size, hi), hi + 1, ()))

        h, w = side(height), side(width)
        top = int(torch.randint(0, height - h + 1, ()))
        left = int(torch.randint(0, width - w + 1, ()))
        return {"top": top, "left": left, "height": h, "width": w}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.crop, inpt, **params)


def drop_empty_boxes(image: Any, target: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Remove boxes (and their labels) left with zero width or height, e.g. by a crop."""
    boxes = target["boxes"]
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    if bool(keep.all()):
        return image, target
    # Indexing unwraps tv_tensors; re-wrap so later resizes still move the boxes.
    kept = tv_tensors.wrap(boxes.as_subclass(torch.Tensor)[keep], like=boxes)
    return image, {**target, "boxes": kept, "labels": target["labels"][keep]}


def finish(image: torch.Tensor, target: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    """Normalise the image and turn the boxes into normalised cxcywh with the final ``size``.

    Returns image [3, H, W] float32 and target with ``boxes`` [G, 4] in [0, 1].
    """
    image = F.to_dtype(image, torch.float32, scale=True)
    image = F.normalize(image, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    height, width = image.shape[-2:]
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    boxes = xyxy_to_cxcywh(target["boxes"].as_subclass(torch.Tensor).float()) / scale
    out = {**target, "boxes": boxes, "size": torch.tensor([height, width], dtype=torch.int64)}
    return image.as_subclass(torch.Tensor), out


def build_transforms(preset: str | ScalePreset, train: bool) -> v2.Compose:
    """The recipe for a split; the result is called as ``transform(image, target)``.

    Inputs: ``tv_tensors.Image`` uint8 [3, H, W] and a target whose ``boxes`` are
    ``tv_tensors.BoundingBoxes`` xyxy in pixels and ``labels`` [G] int64.
    """
    p = SCALE_PRESETS[preset] if isinstance(preset, str) else preset
    if not train:
        return v2.Compose([ShortSideResize([p.eval_size], p.max_size), finish])
    multi_scale = ShortSideResize(p.train_scales, p.max_size)
    return v2.Compose([
        v2.RandomHorizontalFlip(p=0.5),
        v2.RandomChoice([
            multi_scale,
            v2.Compose([ShortSideResize(p.crop_resize), RandomSizeCrop(*p.crop_range), drop_empty_boxes,
                        ShortSideResize(p.train_scales, p.max_size)]),
        ]),
        finish,
    ])
