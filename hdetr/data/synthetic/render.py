"""Drawing one synthetic scene: textured background, objects, distractors, occlusion.

Objects and distractors are stacked in a random order; later ones hide earlier
ones. The box of an object is the extent of its *visible* pixels and its area the
visible pixel count. Occlusion rule: an object with less than
``MIN_VISIBLE_FRACTION`` (30%) of its full silhouette visible (hidden by others or
cut by the image border), or whose visible extent is under ``MIN_VISIBLE_SIDE``
pixels, is removed from the scene before painting, so every painted object is
annotated and nothing unannotated looks like a class instance. Removing an object
only uncovers others, so the rule is applied until nothing changes.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image, ImageDraw

from hdetr.data.synthetic.catalogue import SHAPES, ObjectClass

MIN_VISIBLE_FRACTION = 0.3
MIN_VISIBLE_SIDE = 3


@dataclasses.dataclass
class Layer:
    """A painted item: ``mask`` [h, w] bool at (top, left) in the image, ``patch`` [h, w, 3] uint8;
    ``label`` is the class index, or -1 for a distractor."""

    top: int
    left: int
    mask: np.ndarray
    patch: np.ndarray
    label: int


def _unit_outline(shape: str) -> list[np.ndarray]:
    """Polygons of the shape in [-1, 1]^2; a second polygon is a hole (ring)."""
    def regular(n: int, phase: float, radius: float = 1.0) -> np.ndarray:
        a = phase + 2 * math.pi * np.arange(n) / n
        return radius * np.stack([np.cos(a), np.sin(a)], 1)

    if shape == "circle":
        return [regular(40, 0)]
    if shape == "ring":
        return [regular(40, 0), regular(40, 0, 0.55)]
    if shape == "square":
        return [np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float) * 0.85]
    if shape == "diamond":
        return [regular(4, 0)]
    if shape == "triangle":
        return [regular(3, -math.pi / 2) + np.array([0, 0.2])]
    if shape == "hexagon":
        return [regular(6, 0)]
    if shape == "star":
        outer, inner = regular(5, -math.pi / 2), regular(5, -math.pi / 2 + math.pi / 5, 0.45)
        return [np.stack([outer, inner], 1).reshape(-1, 2)]
    if shape == "cross":
        a = 0.33
        return [np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1], [-a, 1],
                          [-a, a], [-1, a], [-1, -a], [-a, -a]], float)]
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def _blob_outline(rng: np.random.Generator) -> list[np.ndarray]:
    n = int(rng.integers(5, 10))
    angles = np.sort(rng.uniform(0, 2 * math.pi, n))
    radii = rng.uniform(0.4, 1.0, n)
    return [np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)]


# How far each shape may turn while still reading as itself (a square turned 45
# degrees would be a diamond).
_MAX_TURN = {"circle": 180, "ring": 180, "star": 180, "hexagon": 180, "square": 12, "diamond": 12,
             "triangle": 20, "cross": 20, "blob": 180}


def silhouette(outline: list[np.ndarray], size: float, aspect: float, turn_deg: float) -> np.ndarray:
    """Rasterise ``outline`` at ``size`` px (geometric mean of the sides): bool mask [h, w]."""
    sx, sy = size / 2 * math.sqrt(aspect), size / 2 / math.sqrt(aspect)
    t = math.radians(turn_deg)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    polys = [(p * np.array([sx, sy])) @ rot.T for p in outline]
    lo = np.floor(polys[0].min(0)) - 1
    hi = np.ceil(polys[0].max(0)) + 1
    w, h = int(hi[0] - lo[0]), int(hi[1] - lo[1])
    canvas = Image.new("L", (max(w, 1), max(h, 1)), 0)
    draw = ImageDraw.Draw(canvas)
    for i, poly in enumerate(polys):
        draw.polygon([tuple(xy) for xy in (poly - lo)], fill=255 if i == 0 else 0)
    return np.asarray(canvas) > 127


def surface(rng: np.random.Generator, rgb: tuple[int, int, int], texture: str, h: int, w: int,
            size: float) -> np.ndarray:
    """The object's pixels [h, w, 3] uint8: jittered colour, texture, soft shading."""
    base = np.clip(np.asarray(rgb, float) * rng.uniform(0.85, 1.1) + rng.normal(0, 10, 3), 0, 255)
    dark = base * 0.3
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    period = max(3.0, size / 4)
    if texture == "stripes":
        t = math.radians(rng.uniform(0, 180))
        on = ((xx * math.cos(t) + yy * math.sin(t)) // (period / 2)) % 2 == 0
    elif texture == "checker":
        on = ((xx // (period / 2)) + (yy // (period / 2))) % 2 == 0
    elif texture == "dots":
        cx, cy = (xx % period) - period / 2, (yy % period) - period / 2
        on = cx * cx + cy * cy > (period * 0.3) ** 2
    else:
        on = np.ones((h, w), bool)
    pixels = np.where(on[..., None], base, dark)
    g = rng.uniform(-0.12, 0.12, 2)
    shade = 1 + g[0] * (xx / max(w, 1) - 0.5) + g[1] * (yy / max(h, 1) - 0.5)
    return np.clip(pixels * shade[..., None], 0, 255).astype(np.uint8)


def muted_colour(rng: np.random.Generator) -> np.ndarray:
    """A desaturated colour: distinct from every catalogue colour."""
    grey = rng.uniform(50, 190)
    return np.clip(grey + rng.normal(0, 12, 3), 0, 255)


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured, muted background [size, size, 3] float."""
    style = rng.integers(0, 3)
    if style == 0:  # low-frequency blotches
        cells = int(rng.integers(3, 8))
        grid = np.stack([muted_colour(rng) for _ in range(cells * cells)]).reshape(cells, cells, 3)
        img = Image.fromarray(grid.astype(np.uint8)).resize((size, size), Image.BILINEAR)
        out = np.asarray(img, float)
    else:
        yy, xx = np.mgrid[0:size, 0:size].astype(float) / size
        a, b = muted_colour(rng), muted_colour(rng)
        if style == 1:  # gradient
            t = rng.uniform(0, 2 * math.pi)
            mix = (np.cos(t) * xx + np.sin(t) * yy)
            mix = (mix - mix.min()) / max(np.ptp(mix), 1e-6)
        else:  # soft stripes
            t = rng.uniform(0, math.pi)
            freq = rng.uniform(4, 12)
            mix = 0.5 + 0.5 * np.sin(2 * math.pi * freq * (np.cos(t) * xx + np.sin(t) * yy))
        out = a * (1 - mix[..., None]) + b * mix[..., None]
    return out  # pixel noise is added once over the whole scene


def object_layer(rng: np.random.Generator, cls: ObjectClass, label: int, size_range: tuple[float, float],
                 image_size: int) -> Layer:
    size = math.exp(rng.uniform(math.log(size_range[0]), math.log(size_range[1])))
    mask = silhouette(_unit_outline(cls.shape), size, rng.uniform(0.7, 1.45),
                      rng.uniform(-_MAX_TURN[cls.shape], _MAX_TURN[cls.shape]))
    return _place(rng, mask, surface(rng, cls.rgb, cls.texture, *mask.shape, size), label, image_size)


def distractor_layer(rng: np.random.Generator, size_range: tuple[float, float], image_size: int) -> Layer:
    size = math.exp(rng.uniform(math.log(size_range[0]), math.log(size_range[1])))
    kind = rng.integers(0, 3)
    if kind == 0:  # a catalogue shape in a muted colour: colour matters
        shape = SHAPES[int(rng.integers(0, len(SHAPES)))]
        outline = _unit_outline(shape)
    elif kind == 1:  # an irregular blob
        outline = _blob_outline(rng)
    else:  # a thin bar
        outline = [np.array([[-1, -0.08], [1, -0.08], [1, 0.08], [-1, 0.08]])]
        size *= 1.5
    mask = silhouette(outline, size, rng.uniform(0.7, 1.45), rng.uniform(-180, 180))
    texture = ("solid", "stripes", "checker")[int(rng.integers(0, 3))]
    patch = surface(rng, tuple(muted_colour(rng)), texture, *mask.shape, size)
    return _place(rng, mask, patch, -1, image_size)


def _place(rng: np.random.Generator, mask: np.ndarray, patch: np.ndarray, label: int, image_size: int) -> Layer:
    h, w = mask.shape
    cy, cx = rng.uniform(0, image_size, 2)
    return Layer(top=int(round(cy - h / 2)), left=int(round(cx - w / 2)), mask=mask, patch=patch, label=label)


def _clip(layer: Layer, image_size: int) -> tuple[slice, slice, slice, slice]:
    """(image rows, image cols, mask rows, mask cols) of the layer's part inside the image."""
    h, w = layer.mask.shape
    y0, x0 = max(layer.top, 0), max(layer.left, 0)
    y1, x1 = min(layer.top + h, image_size), min(layer.left + w, image_size)
    if y1 <= y0 or x1 <= x0:
        return slice(0, 0), slice(0, 0), slice(0, 0), slice(0, 0)
    return (slice(y0, y1), slice(x0, x1), slice(y0 - layer.top, y1 - layer.top), slice(x0 - layer.left, x1 - layer.left))


def _owner_map(layers: list[Layer], image_size: int) -> np.ndarray:
    owner = np.full((image_size, image_size), -1, np.int32)
    for k, layer in enumerate(layers):
        ys, xs, my, mx = _clip(layer, image_size)
        region = owner[ys, xs]
        region[layer.mask[my, mx]] = k
    return owner


def compose(layers: list[Layer], bg: np.ndarray, image_size: int) -> tuple[np.ndarray, list[dict]]:
    """Apply the occlusion rule, paint, and return (image [S, S, 3] uint8, objects).

    Each object is a dict with ``label``, ``bbox`` [x, y, w, h] of its visible pixels
    and ``area`` (visible pixel count).
    """
    layers = list(layers)
    while True:
        owner = _owner_map(layers, image_size)
        drop = set()
        for k, layer in enumerate(layers):
            if layer.label < 0:
                continue
            visible = owner == k
            count = int(visible.sum())
            if count < MIN_VISIBLE_FRACTION * layer.mask.sum():
                drop.add(k)
                continue
            ys, xs = np.nonzero(visible.any(1))[0], np.nonzero(visible.any(0))[0]
            if ys[-1] - ys[0] + 1 < MIN_VISIBLE_SIDE or xs[-1] - xs[0] + 1 < MIN_VISIBLE_SIDE:
                drop.add(k)
        if not drop:
            break
        layers = [layer for k, layer in enumerate(layers) if k not in drop]

    image = bg.copy()
    for layer in layers:
        ys, xs, my, mx = _clip(layer, image_size)
        region = image[ys, xs]
        m = layer.mask[my, mx]
        region[m] = layer.patch[my, mx][m]
    objects = []
    for k, layer in enumerate(layers):
        if layer.label < 0:
            continue
        visible = owner == k
        ys, xs = np.nonzero(visible.any(1))[0], np.nonzero(visible.any(0))[0]
        objects.append({
            "label": layer.label,
            "bbox": [int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)],
            "area": int(visible.sum()),
        })
    return np.clip(image, 0, 255).astype(np.uint8), objects
