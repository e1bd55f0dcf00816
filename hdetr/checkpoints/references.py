"""The reference checkpoints hdetr ships: small detectors trained on the synthetic benchmark.

``hdetr.load_reference(name)`` returns the model in eval mode (float32) with
``experiment_config`` (its ExperimentConfig), ``class_names`` (label -> name),
``reference_name`` and ``trained`` (steps, the training command, final metrics) attached;
``hdetr.list_references()`` lists the names. The files live in
``hdetr/checkpoints/reference_files`` (package data) with ``manifest.json``; a file whose
checksum differs from the manifest's is refused. ``python -m hdetr.checkpoints.make_references
RUNS_DIR`` makes them from the runs of ``scripts/train_references.sh``.

A reference file is ``{"model": fp16 state dict, "config": ExperimentConfig dict,
"class_names": [...], "trained": {"steps", "command", "metrics"}}``; ``manifest.json``
beside it maps each name to ``{"file", "sha256", "bytes", "metrics_log", "command"}``.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from hdetr.errors import UserError

FILES_DIR = Path(__file__).resolve().parent / "reference_files"
MANIFEST = "manifest.json"
REBUILD_HINT = ("train and package them with `bash scripts/train_references.sh` (or, from finished runs, "
                "`python -m hdetr.checkpoints.make_references RUNS_DIR`)")


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(directory: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """name -> manifest entry of the references in ``directory`` (default: the package's files)."""
    path = Path(directory or FILES_DIR) / MANIFEST
    if not path.is_file():
        raise UserError(f"reference manifest {path}: does not exist; {REBUILD_HINT}")
    try:
        data = json.loads(path.read_text())
        entries = data["references"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"reference manifest {path}: not a manifest with a 'references' mapping ({exc}); "
                        f"{REBUILD_HINT}") from exc
    return dict(entries)


def list_references(directory: str | Path | None = None) -> list[str]:
    """The names ``load_reference`` accepts (``[]`` when no references are installed)."""
    try:
        return sorted(read_manifest(directory))
    except UserError:
        return []


def _verified_file(name: str, directory: str | Path | None) -> tuple[Path, dict[str, Any]]:
    entries = read_manifest(directory)
    if name not in entries:
        raise UserError(f"unknown reference {name!r}; the references are: {', '.join(sorted(entries)) or 'none'}")
    entry = entries[name]
    path = Path(directory or FILES_DIR) / entry["file"]
    if not path.is_file():
        raise UserError(f"reference {name!r}: file {path} does not exist; {REBUILD_HINT}")
    actual = sha256_of(path)
    if actual != entry["sha256"]:
        raise UserError(f"reference {name!r}: file {path} is corrupted or was replaced (sha256 {actual[:12]}..., "
                        f"the manifest expects {entry['sha256'][:12]}...); reinstall hdetr or {REBUILD_HINT}")
    return path, entry


def load_reference(name: str, directory: str | Path | None = None) -> torch.nn.Module:
    """The reference model ``name`` in eval mode (float32), its checksum verified.

    Attached: ``experiment_config`` (ExperimentConfig), ``class_names`` (list, one per label),
    ``reference_name`` and ``trained`` ({"steps", "command", "metrics"}). ``model.config`` is
    its ModelConfig as for any built model.
    """
    from hdetr import build_model
    from hdetr.checkpoints.state_dict import load_exactly, load_torch_file
    from hdetr.config.experiment import experiment_from_dict

    path, _ = _verified_file(name, directory)
    data = load_torch_file(path, f"reference {name!r}", hint=f"; {REBUILD_HINT}")
    missing = [key for key in ("model", "config", "class_names", "trained") if key not in data]
    if missing:
        raise UserError(f"reference {name!r}: file {path} lacks {', '.join(missing)}; {REBUILD_HINT}")
    config = experiment_from_dict(data["config"], source=f"{path} (its config)")
    model = build_model(config.model)
    load_exactly(model, {k: v.float() if v.is_floating_point() else v for k, v in data["model"].items()}, str(path))
    model.eval()
    model.experiment_config = config
    model.class_names = list(data["class_names"])
    model.reference_name = name
    model.trained = dict(data["trained"])
    return model
