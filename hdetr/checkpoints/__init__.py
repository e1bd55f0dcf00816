"""Every way weights come in or go out of hdetr.

- ``state_dict``: reading torch files safely (``load_torch_file``), loading a state dict
  exactly (``load_exactly``), with errors that name the file and the keys;
- ``pretrained``: backbone weights (ImageNet or other) from a local file;
- ``training``: hdetr's training checkpoints (atomic writes, exact-resume state, format
  detection);
- ``official``: import and export of official H-Deformable-DETR checkpoints
  (``from_official_checkpoint``, ``to_official_state_dict``);
- ``references``: the shipped reference models (``load_reference``, ``list_references``);
  ``make_references`` packages finished runs as those files;
- ``build``: a model and its experiment config from any checkpoint file
  (``build_from_checkpoint``, what ``hdetr eval`` reads).

The names below are imported on first use, so that importing the package stays cheap.
"""
from __future__ import annotations

from hdetr.lazy_exports import lazy_exports

_LAZY = {
    "hdetr.checkpoints.official": ("from_official_checkpoint", "to_official_state_dict"),
    "hdetr.checkpoints.references": ("load_reference", "list_references"),
    "hdetr.checkpoints.build": ("build_from_checkpoint",),
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY, globals())
