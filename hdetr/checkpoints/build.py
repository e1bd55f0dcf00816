"""A model and its experiment config from any checkpoint file hdetr reads.

``build_from_checkpoint(path, preset, config_file, overrides)`` detects the format:

- an hdetr training checkpoint carries its config; ``preset``/``config_file`` replace it
  and ``overrides`` (``"section.field=value"``) adjust it;
- an official H-Deformable-DETR checkpoint (``{"model", "args", ...}``) or a bare state
  dict goes through ``from_official_checkpoint``; the ``model.FIELD=VALUE`` overrides
  become its keyword overrides (official flag names) and the dataset comes from
  ``preset``/``config_file`` (default ``OFFICIAL_DEFAULT_PRESET``).

``hdetr eval`` and the analysis and experiment reports load checkpoints through it.
"""
from __future__ import annotations

import json
from pathlib import Path

OFFICIAL_DEFAULT_PRESET = "coco_r50_hybrid_branch_12ep"


def build_from_checkpoint(path: str | Path, preset: str | None, config_file: str | None, overrides: list[str]):
    """(model, ExperimentConfig, format) for any supported checkpoint file."""
    from hdetr import build_model, from_official_checkpoint
    from hdetr.config.experiment import apply_overrides, experiment_from_dict, parse_override
    from hdetr.config.presets import load_experiment
    from hdetr.checkpoints.state_dict import load_exactly
    from hdetr.checkpoints.training import checkpoint_format, read_checkpoint

    ckpt = read_checkpoint(path)
    fmt = checkpoint_format(ckpt, str(path))
    if fmt == "hdetr":
        if preset or config_file:
            cfg = load_experiment(preset=preset, config_file=config_file)
        else:
            cfg = experiment_from_dict(ckpt["config"], source=f"{path} (its config)")
        cfg = apply_overrides(cfg, overrides)
        model = build_model(cfg.model)
        load_exactly(model, ckpt["model"], str(path))
        return model, cfg, fmt
    model_changes = {}
    other = []
    for text in overrides:
        section, field, value = parse_override(text)
        if section == "model":
            model_changes[field] = value
        else:
            other.append(text)
    model = from_official_checkpoint(ckpt if fmt == "official" else {"model": ckpt}, **model_changes)
    cfg = load_experiment(preset=preset or (None if config_file else OFFICIAL_DEFAULT_PRESET), config_file=config_file)
    cfg = apply_overrides(cfg, other + [f"model.{k}={json.dumps(v)}" for k, v in model.config.to_dict().items()])
    return model, cfg, fmt
