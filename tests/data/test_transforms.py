"""The augmentation recipe keeps boxes on their pixels, and the eval resize matches the official sizes."""
from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from hdetr.boxes import cxcywh_to_xyxy
from hdetr.data.transforms import (IMAGENET_MEAN, IMAGENET_STD, SCALE_PRESETS, RandomSizeCrop, build_transforms,
                                   drop_empty_boxes, finish, short_side_size)

COLOURS = {0: (1.0, 0.0, 0.0), 1: (0.0, 1.0, 0.0), 2: (0.0, 0.0, 1.0)}
RECTS = {0: (10, 20, 70, 60), 1: (120, 15, 190, 120), 2: (60, 90, 110, 140)}  # xyxy in a 200 x 150 image


def scene():
    image = torch.full((3, 150, 200), 128, dtype=torch.uint8)
    for label, (x0, y0, x1, y1) in RECTS.items():
        image[:, y0:y1, x0:x1] = (torch.tensor(COLOURS[label]) * 255).to(torch.uint8)[:, None, None]
    boxes = tv_tensors.BoundingBoxes(torch.tensor([RECTS[k] for k in sorted(RECTS)], dtype=torch.float32),
                                     format="XYXY", canvas_size=(150, 200))
    return tv_tensors.Image(image), {"boxes": boxes, "labels": torch.tensor(sorted(RECTS)), "image_id": 5}


def colour_mask(image: torch.Tensor, label: int) -> torch.Tensor:
    """Pixels closer to the label's colour than to the grey background."""
    rgb = image * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]
    colour = torch.tensor(COLOURS[label])[:, None, None]
    return ((rgb - colour).abs().amax(0) < 0.25)


def extent(mask: torch.Tensor) -> list[float]:
    rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
    return [cols[0].item(), rows[0].item(), cols[-1].item() + 1, rows[-1].item() + 1]


@pytest.mark.parametrize("preset, runs", [("synthetic", 40), ("small", 25), ("coco", 6)])
def test_boxes_follow_the_pixels_through_training_augmentation(preset, runs):
    transform = build_transforms(preset, train=True)
    flipped = cropped = 0
    for seed in range(runs):
        torch.manual_seed(seed)
        image, target = transform(*scene())
        assert image.dtype == torch.float32 and target["image_id"] == 5
        height, width = image.shape[-2:]
        assert target["size"].tolist() == [height, width]
        assert min(height, width) <= max(SCALE_PRESETS[preset].train_scales)
        assert max(height, width) <= SCALE_PRESETS[preset].max_size
        assert ((target["boxes"] >= 0) & (target["boxes"] <= 1)).all()
        boxes = cxcywh_to_xyxy(target["boxes"]) * torch.tensor([width, height, width, height])
        labels = target["labels"].tolist()
        for label, box in zip(labels, boxes.tolist()):
            if min(box[2] - box[0], box[3] - box[1]) < 2:
                continue  # a sliver left by the crop, thinner than a pixel after resizing (kept, as official)
            mask = colour_mask(image, label)
            assert mask.any(), f"seed {seed}: a box for label {label} whose pixels are gone"
            assert extent(mask) == pytest.approx(box, abs=2.0), f"seed {seed}, label {label}"
        for label in set(COLOURS) - set(labels):
            assert colour_mask(image, label).sum() <= 2, f"seed {seed}: label {label} visible but its box dropped"
        flipped += 0 in labels and boxes[labels.index(0), 0] > width / 2
        cropped += abs(width / height - 200 / 150) > 0.05
    assert flipped > 0 and cropped > 0  # both the flip and the crop branch ran


def test_crop_drops_boxes_that_leave_the_window():
    transform = v2.Compose([RandomSizeCrop(60, 60), drop_empty_boxes, finish])
    dropped = 0
    for seed in range(30):
        torch.manual_seed(seed)
        image, target = transform(*scene())
        assert image.shape == (3, 60, 60)
        boxes = cxcywh_to_xyxy(target["boxes"]) * 60
        for label, box in zip(target["labels"].tolist(), boxes.tolist()):
            assert extent(colour_mask(image, label)) == pytest.approx(box, abs=1e-4)  # no resize: exact
        for label in set(COLOURS) - set(target["labels"].tolist()):
            assert not colour_mask(image, label).any()
        dropped += len(target["labels"]) < 3
    assert dropped > 0


@pytest.mark.parametrize("height, width, size, max_size, expected", [
    (480, 640, 800, 1333, (800, 1066)),   # COCO-like landscape
    (640, 427, 800, 1333, (1199, 800)),   # portrait
    (100, 1000, 800, 1333, (133, 1330)),  # long side capped at max_size
    (800, 600, 800, 1333, (1066, 800)),
    (128, 128, 128, 213, (128, 128)),     # unchanged
])
def test_eval_resize_uses_official_rounding(height, width, size, max_size, expected):
    assert short_side_size(height, width, size, max_size) == expected


def test_eval_transform_is_deterministic_and_normalises():
    transform = build_transforms("coco", train=False)
    image, target = transform(*scene())
    again, _ = transform(*scene())
    assert image.shape == (3, 800, 1066) and torch.equal(image, again)
    assert target["size"].tolist() == [800, 1066]
    grey = (128 / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(image[:, -1, 0], grey, atol=1e-4)
    expected = torch.tensor([RECTS[k] for k in sorted(RECTS)], dtype=torch.float32) / torch.tensor([200, 150, 200, 150])
    assert torch.allclose(cxcywh_to_xyxy(target["boxes"]), expected, atol=1e-6)
