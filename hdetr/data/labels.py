"""The mapping between model labels and dataset category ids.

Two conventions exist. The official COCO code feeds category ids to the model
directly (ids 1..90 with gaps, so ``num_classes = 91``); LVIS and the synthetic
sets use contiguous labels 0..C-1 in sorted category-id order. The engine stores
``label_to_category_id`` and ``class_names`` with a trained model so its outputs
can be read back.
"""
from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class LabelMap:
    """``label_to_category_id`` maps every used label to its category id;
    ``class_names`` has ``num_classes`` entries ("N/A" where no category has that label)."""

    label_to_category_id: dict[int, int]
    category_id_to_label: dict[int, int]
    num_classes: int
    class_names: list[str]

    @classmethod
    def from_categories(cls, categories: list[dict[str, Any]], contiguous: bool) -> "LabelMap":
        ids = sorted(c["id"] for c in categories)
        names = {c["id"]: c["name"] for c in categories}
        if contiguous:
            to_cat = {label: cid for label, cid in enumerate(ids)}
        else:
            to_cat = {cid: cid for cid in ids}
        num_classes = max(to_cat) + 1
        class_names = ["N/A"] * num_classes
        for label, cid in to_cat.items():
            class_names[label] = names[cid]
        return cls(label_to_category_id=to_cat, category_id_to_label={c: lb for lb, c in to_cat.items()},
                   num_classes=num_classes, class_names=class_names)
