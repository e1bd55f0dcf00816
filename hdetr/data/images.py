"""Opening image files as 8-bit RGB, with errors that name the file.

Any mode PIL reads is accepted: grayscale, palette, CMYK, 16-bit and alpha images
become RGB the way the official code does it (``convert("RGB")``; an alpha
channel is dropped, not composited). Truncated or unreadable files raise
``UserError`` naming the file and what PIL reported.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from hdetr.errors import UserError


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # convert("RGB") clips 16-bit grayscale at 255 (near-white); map 0..65535 to 0..255.
        array = np.asarray(image, dtype=np.float64)
        if array.size and array.max() > 255:
            array = array / 257.0
        array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
        return Image.fromarray(array).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def load_rgb(path: str | Path) -> Image.Image:
    """Return the fully decoded image at ``path`` as an RGB PIL image."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            return _to_rgb(image)
    except FileNotFoundError:
        raise UserError(f"image file not found: {path}") from None
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image file PIL can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"{path}: cannot decode image ({exc})") from None


def check_image(path: str | Path, width: int, height: int) -> str | None:
    """Cheap header check: None if ``path`` opens and is width x height, else the reason."""
    try:
        with Image.open(path) as image:
            size = image.size
            image.verify()
    except FileNotFoundError:
        return "missing"
    except Exception as exc:  # PIL raises many types on corrupt headers
        return f"unreadable ({exc})"
    if size != (width, height):
        return f"size {size[0]}x{size[1]} differs from the annotated {width}x{height}"
    return None
