"""The embedded synthetic benchmark: real COCO/LVIS-format datasets drawn on the fly.

- ``generate(kind, out_dir, num_images=..., seed=..., image_size=...)`` writes one
  (layout in ``hdetr.data.synthetic.generator``); ``hdetr data synth`` is its CLI.
- ``default_dataset_dir(kind, ...)``: ``$HDETR_DATA_DIR`` or ``~/.cache/hdetr/datasets``,
  then ``<kind>-<hash of the parameters>``.
- ``ensure_dataset(kind, ...)``: that folder, generated once (atomically, so two
  processes asking at the same time never see a half-written set).

Defaults (``DEFAULTS``): coco kind 1000 train + 100 val images of 128 x 128 px with
6 classes (2-8 objects and 1-4 distractors per image); lvis kind 1000 train + 300
val images of 128 px with 256 long-tailed categories. Scenes, classes and the
occlusion rule are described in ``render`` and ``catalogue``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from hdetr.data.synthetic.generator import DEFAULTS, GENERATOR_VERSION, SyntheticSpec, make_spec, write_dataset

MARKER = "synthetic.json"


def generate(kind: str = "coco", out_dir: str | os.PathLike = ".", *, num_images: int | None = None,
             num_val_images: int | None = None, seed: int = 0, image_size: int = 128,
             num_classes: int | None = None, objects_per_image: tuple[int, int] | None = None) -> Path:
    """Write a synthetic dataset into ``out_dir`` and return its path.

    ``num_images`` training images (default per kind), ``num_val_images`` validation
    images, square images of ``image_size`` px, the first ``num_classes`` classes of
    the kind's catalogue, ``objects_per_image`` = (min, max) objects drawn per image
    (default per kind). Same arguments, same bytes.
    """
    spec = make_spec(kind, num_images, num_val_images, seed, image_size, num_classes, objects_per_image)
    return write_dataset(spec, out_dir)


def _cache_root() -> Path:
    env = os.environ.get("HDETR_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hdetr" / "datasets"


def default_dataset_dir(kind: str = "coco", *, num_images: int | None = None, num_val_images: int | None = None,
                        seed: int = 0, image_size: int = 128, num_classes: int | None = None,
                        objects_per_image: tuple[int, int] | None = None) -> Path:
    """Where ``ensure_dataset`` keeps the dataset with these parameters."""
    spec = make_spec(kind, num_images, num_val_images, seed, image_size, num_classes, objects_per_image)
    digest = hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
    return _cache_root() / f"{kind}-{digest}"


def ensure_dataset(kind: str = "coco", *, num_images: int | None = None, num_val_images: int | None = None,
                   seed: int = 0, image_size: int = 128, num_classes: int | None = None,
                   objects_per_image: tuple[int, int] | None = None) -> Path:
    """The default-location dataset with these parameters, generated if absent."""
    params = dict(num_images=num_images, num_val_images=num_val_images, seed=seed, image_size=image_size,
                  num_classes=num_classes, objects_per_image=objects_per_image)
    target = default_dataset_dir(kind, **params)
    if (target / MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        generate(kind, staging, **params)
        try:
            os.replace(staging, target)
        except OSError:
            if not (target / MARKER).is_file():  # not a concurrent winner: a real failure
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


__all__ = ["DEFAULTS", "GENERATOR_VERSION", "SyntheticSpec", "default_dataset_dir", "ensure_dataset", "generate"]
