"""The object classes of the synthetic benchmark: shape x colour x texture.

A class is decidable from appearance alone: its outline (shape), its hue (colour)
and its surface pattern (texture). The ``coco`` kind uses a curated list in which
classes share a shape, a colour or a texture with another class, so no single cue
suffices; the ``lvis`` kind uses the full product (8 x 8 x 4 = 256 categories).
Distractors (unannotated) use muted colours and shapes outside the catalogue, or
catalogue shapes in muted colours.
"""
from __future__ import annotations

import dataclasses

from hdetr.errors import UserError

SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "diamond", "hexagon")
COLOURS = {
    "red": (215, 35, 35),
    "green": (35, 175, 55),
    "blue": (45, 75, 225),
    "yellow": (235, 205, 35),
    "magenta": (205, 45, 195),
    "cyan": (35, 195, 205),
    "orange": (245, 135, 25),
    "white": (240, 240, 240),
}
TEXTURES = ("solid", "stripes", "checker", "dots")


@dataclasses.dataclass(frozen=True)
class ObjectClass:
    shape: str
    colour: str
    texture: str

    @property
    def name(self) -> str:
        adjective = {"solid": "", "stripes": "striped ", "checker": "checkered ", "dots": "dotted "}[self.texture]
        return f"{self.colour} {adjective}{self.shape}"

    @property
    def rgb(self) -> tuple[int, int, int]:
        return COLOURS[self.colour]


COCO_CLASSES = (
    ObjectClass("circle", "red", "solid"),
    ObjectClass("square", "blue", "solid"),
    ObjectClass("triangle", "green", "solid"),
    ObjectClass("star", "yellow", "solid"),
    ObjectClass("square", "red", "stripes"),
    ObjectClass("circle", "blue", "checker"),
    ObjectClass("ring", "magenta", "solid"),
    ObjectClass("cross", "cyan", "solid"),
    ObjectClass("diamond", "orange", "dots"),
    ObjectClass("hexagon", "white", "solid"),
)

LVIS_CLASSES = tuple(
    ObjectClass(shape, colour, texture) for shape in SHAPES for colour in COLOURS for texture in TEXTURES
)


def classes_for(kind: str, num_classes: int) -> tuple[ObjectClass, ...]:
    """The first ``num_classes`` classes of the kind's catalogue."""
    catalogue = COCO_CLASSES if kind == "coco" else LVIS_CLASSES
    if not 1 <= num_classes <= len(catalogue):
        raise UserError(f"num_classes={num_classes}: the {kind} catalogue has 1..{len(catalogue)} classes")
    return catalogue[:num_classes]
