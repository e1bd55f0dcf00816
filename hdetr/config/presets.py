"""Named experiment presets: the paper's runs and the synthetic CPU runs.

A preset is a YAML file in ``hdetr/presets/`` with the sections ``model``, ``data``
and ``train``. A variant names its ``base`` and only what differs (detrex habit)::

    # hdetr/presets/coco_r50_baseline_12ep.yaml
    base: coco_r50_hybrid_branch_12ep
    model: {scheme: baseline, num_queries_one2many: 0}

The paper's grid (backbone x schedule x scheme), its K / T / lambda sweep points
(``hdetr/paper_tables.json``) and the Group DETR comparison are generated below from a few lines each,
as variants of the YAML presets, so there is one place per fact.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from hdetr.config.base import ConfigError
from hdetr.config.experiment import ExperimentConfig, experiment_from_dict, load_yaml_mapping, merge_dicts
from hdetr.config.model import GROUP_DETR_SCHEME, PAPER_SCHEMES
from hdetr.paper import load_paper_tables

PRESET_DIR = Path(__file__).resolve().parents[1] / "presets"

# Schemes as in the paper's Table 6: their one home is hdetr.config.model.PAPER_SCHEMES.
_SCHEME_CHANGES = PAPER_SCHEMES
# Official schedules: StepLR drop one epoch before the end of 12, six before the end of 36.
_SCHEDULES = {"12ep": (12, 11), "36ep": (36, 30)}
# Swin-L at 36 epochs uses drop-path 0.5 in the official configs.
_BACKBONES = {"r50": {"backbone": "resnet50"}, "swin_t": {"backbone": "swin_tiny"},
              "swin_l": {"backbone": "swin_large"}}


def _grid() -> dict[str, dict[str, Any]]:
    """coco_{backbone}_{scheme}_{schedule}: variants of coco_r50_hybrid_branch_12ep."""
    out = {}
    for bb, bb_changes in _BACKBONES.items():
        for sched, (epochs, lr_drop) in _SCHEDULES.items():
            for scheme, scheme_changes in _SCHEME_CHANGES.items():
                model = {**bb_changes, **scheme_changes}
                if bb == "swin_l" and sched == "36ep":
                    model["drop_path_rate"] = 0.5
                out[f"coco_{bb}_{scheme}_{sched}"] = {
                    "base": "coco_r50_hybrid_branch_12ep",
                    "model": model,
                    "train": {"epochs": epochs, "lr_drop": lr_drop},
                }
    return out


# Table 6's rows: R50, two-stage Deformable-DETR with 2x FFN (2048) and none of the other tricks
# (dropout 0.1, no mixed query selection, no look forward twice), 12 epochs.
_TABLE6_NO_TRICKS = {"dropout": 0.1, "mixed_selection": False, "look_forward_twice": False}
TABLE6_PRESETS = {
    "baseline": "coco_r50_table6_baseline_12ep",
    "baseline_1800q": "coco_r50_table6_baseline_1800q_12ep",
    "hybrid_branch": "coco_r50_table6_hybrid_branch_12ep",
    "hybrid_epoch": "coco_r50_table6_hybrid_epoch_12ep",
    "hybrid_layer": "coco_r50_table6_hybrid_layer_12ep",
}


def _table6() -> dict[str, dict[str, Any]]:
    """coco_r50_table6_*_12ep: Table 6's schemes without the tricks, plus the 1800-query baseline."""
    changes = {**_SCHEME_CHANGES, "baseline_1800q": {"scheme": "baseline", "num_queries_one2one": 1800,
                                                      "num_queries_one2many": 0}}
    return {name: {"base": "coco_r50_hybrid_branch_12ep", "model": {**_TABLE6_NO_TRICKS, **changes[key]}}
            for key, name in TABLE6_PRESETS.items()}


def _group_detr() -> dict[str, dict[str, Any]]:
    """coco_r50_group_detr_12ep: Group DETR (Chen et al., ICCV 2023, arXiv 2207.13085) on this Deformable-DETR,
    R50, 12 epochs, all tricks. G=11 (hdetr.config.model.GROUP_DETR_SCHEME: the group count Group DETR is
    reported to use for its DETR variants, not confirmed against the paper text here). Two-stage: the G n = 3300
    training queries take the top 3300 encoder proposals, group i the i-th block of 300, so the first group (the
    one inference keeps) gets the same top-300 proposals as at evaluation."""
    return {"coco_r50_group_detr_12ep": {"base": "coco_r50_hybrid_branch_12ep", "model": dict(GROUP_DETR_SCHEME)}}


def _sweeps() -> dict[str, dict[str, Any]]:
    """The 12-epoch R50 sweeps of the paper: K (with T=300K), T (K=6), lambda (K=6, T=1500)."""
    sweeps = load_paper_tables()["sweeps_12ep"]
    base = "coco_r50_hybrid_branch_12ep"
    out = {}
    for k in sweeps["K_with_T_300K"]:
        if int(k) > 0:  # K=0 is the baseline preset
            out[f"{base}_k{k}"] = {"base": base, "model": {"k_one2many": int(k), "num_queries_one2many": 300 * int(k)}}
    for t in sweeps["T_with_K6"]:
        out[f"{base}_t{t}"] = {"base": base, "model": {"num_queries_one2many": int(t)}}
    for lam in sweeps["lambda_with_K6_T1500"]:
        out[f"{base}_lambda{lam}"] = {"base": base, "model": {"lambda_one2many": float(lam)}}
    return out


@functools.lru_cache(maxsize=1)
def _definitions() -> dict[str, dict[str, Any]]:
    defs: dict[str, dict[str, Any]] = {}
    for path in sorted(PRESET_DIR.glob("*.yaml")):
        defs[path.stem] = load_yaml_mapping(path)
    for name, definition in {**_grid(), **_table6(), **_group_detr(), **_sweeps()}.items():
        defs.setdefault(name, definition)  # a YAML file of the same name wins
    return defs


def list_presets() -> list[str]:
    """Names of every preset (YAML files and generated paper variants), sorted."""
    return sorted(name for name in _definitions() if not name.startswith("_"))


def preset_dict(name: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The merged mapping of a preset, its bases resolved (no validation yet)."""
    defs = _definitions()
    if name not in defs:
        close = [n for n in list_presets() if name.split("_")[0] in n][:8]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise ConfigError(f"unknown preset {name!r} ({len(list_presets())} presets; `hdetr train --list-presets`){hint}")
    if name in _seen:
        raise ConfigError(f"preset {name!r}: circular base chain {' -> '.join(_seen + (name,))}")
    definition = dict(defs[name])
    base = definition.pop("base", None)
    merged = preset_dict(base, _seen + (name,)) if base else {}
    merged = merge_dicts(merged, definition)
    merged["name"] = name
    return merged


def get_preset(name: str) -> ExperimentConfig:
    """The validated ExperimentConfig of a named preset (see ``list_presets()``)."""
    return experiment_from_dict(preset_dict(name), source=f"preset {name}")


def load_experiment(preset: str | None = None, config_file: str | Path | None = None) -> ExperimentConfig:
    """A preset, or a YAML file (which may name a ``base`` preset), validated."""
    if config_file is None:
        return get_preset(preset or "synthetic_demo_hybrid_branch")
    data = load_yaml_mapping(config_file)
    base = data.pop("base", None) or preset
    merged = merge_dicts(preset_dict(base), data) if base else data
    return experiment_from_dict(merged, source=str(config_file))
