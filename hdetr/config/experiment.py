"""One experiment = a model, a dataset and a training recipe, plus command-line overrides.

An experiment is written as a mapping with the sections ``model``, ``data`` and
``train`` (YAML presets, ``config.yaml`` of a run, a checkpoint's ``config``).
Overrides use dotted paths, ``section.field=value``, with the value read as YAML
(``model.k_one2many=6``, ``train.lr_drop_epochs=[8,11]``, ``model.pretrained_backbone=null``);
the result is rebuilt from scratch, so every override is type-checked and the
combination validated like the preset itself.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Iterable

import yaml

from hdetr.config.base import Config, ConfigError, _coerce
from hdetr.config.data import SCALE_PRESETS, DataConfig
from hdetr.config.model import LEGACY_NUM_EPOCHS, MOVED_NUM_EPOCHS, ModelConfig, without_legacy_fields
from hdetr.config.train import TrainConfig

SECTIONS = ("model", "data", "train")


@dataclasses.dataclass
class ExperimentConfig(Config):
    """A whole run: ``model`` (architecture + scheme), ``data`` (dataset), ``train`` (recipe)."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=lambda: DataConfig(synthetic=True))
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    name: str = ""  # the preset it came from, for logs and reports

    @classmethod
    def from_dict(cls, data: dict[str, Any], owner: str | None = None) -> "ExperimentConfig":
        """As ``Config.from_dict``; a config saved before ``model.num_epochs`` moved to ``train.epochs``
        (run folders, checkpoints, YAML files) is read when the two agree, or for any scheme but the
        epoch scheme, whose schedule it was; otherwise refused."""
        model = data.get("model") if isinstance(data, dict) else None
        if not isinstance(model, dict) or LEGACY_NUM_EPOCHS not in model:
            return super().from_dict(data, owner)
        legacy = model[LEGACY_NUM_EPOCHS]
        cfg = super().from_dict({**data, "model": without_legacy_fields(model)}, owner)
        try:
            same = _coerce("ExperimentConfig.model", LEGACY_NUM_EPOCHS, legacy, int) == cfg.train.epochs
        except ConfigError:
            same = False
        if cfg.model.scheme == "hybrid_epoch" and not same:
            raise ConfigError(
                f"{owner or cls.__name__}: model.num_epochs={legacy!r} (the epoch scheme's schedule, in configs "
                f"written before it moved) differs from train.epochs={cfg.train.epochs}; the schedule is now "
                f"train.epochs alone: set train.epochs to the length you mean and remove model.num_epochs")
        return cfg

    def validate(self) -> None:
        self._check_two_stage_room()
        d = self.data
        if d.synthetic and not d.root and d.synthetic_classes > self.model.num_classes:
            raise ConfigError(
                f"ExperimentConfig: data.synthetic_classes={d.synthetic_classes} categories need "
                f"model.num_classes >= {d.synthetic_classes} (it is {self.model.num_classes})")
        if self.train.lr_drop_epochs and max(self.train.lr_drop_epochs) > self.train.epochs:
            raise ConfigError(
                f"ExperimentConfig: train.lr_drop_epochs={self.train.lr_drop_epochs} has a drop after the "
                f"last epoch (train.epochs={self.train.epochs})"
            )

    def _check_two_stage_room(self) -> None:
        """Two-stage selection takes all training queries from the encoder positions: refuse, now, a
        config whose smallest augmented image has fewer positions than that (not a crash mid-run)."""
        m = self.model
        if not m.two_stage:
            return
        side = min(SCALE_PRESETS[self.data.scale_preset].train_scales)  # every training image's shorter side >= it
        positions = m.encoder_positions(side, side)
        if m.num_queries > positions:
            raise ConfigError(
                f"ExperimentConfig: two-stage selection needs model.num_queries_one2one + model.num_queries_one2many "
                f"= {m.num_queries_one2one} + {m.num_queries_one2many} = {m.num_queries} encoder positions, but the "
                f"smallest training image of data.scale_preset={self.data.scale_preset!r} ({side}x{side} px) has only "
                f"{positions}; use at most {positions} queries, larger images or more model.num_feature_levels")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"model.k_one2many=6"`` -> ``("model", "k_one2many", 6)``; the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected section.field=value, e.g. model.k_one2many=6")
    path, raw = text.split("=", 1)
    parts = path.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"override {text!r}: expected section.field=value with section one of {', '.join(SECTIONS)}")
    section, field = parts
    if section not in SECTIONS:
        raise ConfigError(f"override {text!r}: unknown section {section!r}; expected one of {', '.join(SECTIONS)}")
    if (section, field) == ("model", LEGACY_NUM_EPOCHS):
        raise ConfigError(f"override {text!r}: {MOVED_NUM_EPOCHS}; use train.epochs={raw.strip()} instead")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({exc.__class__.__name__})") from None
    if value is not None and not isinstance(value, str) and _is_text_field(section, field):
        value = raw.strip()  # data.root=2017 is a folder name, not a number
    return section, field, value


def _is_text_field(section: str, field: str) -> bool:
    owner = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}[section]
    hint = typing.get_type_hints(owner).get(field)
    return hint is str or hint == (str | None)


def apply_overrides(cfg: ExperimentConfig | dict, overrides: Iterable[str]) -> ExperimentConfig:
    """Return a new, validated config with ``section.field=value`` overrides applied in order."""
    data = cfg.to_dict() if isinstance(cfg, Config) else merge_dicts({}, cfg)
    for text in overrides:
        section, field, value = parse_override(text)
        data.setdefault(section, {})[field] = value
    return experiment_from_dict(data)


def experiment_from_dict(data: dict[str, Any], source: str = "ExperimentConfig") -> ExperimentConfig:
    """Build a validated ExperimentConfig; errors name ``source`` (a file or preset) and the field."""
    try:
        return ExperimentConfig.from_dict(data)
    except ConfigError as exc:
        if source == "ExperimentConfig":
            raise
        raise ConfigError(f"{source}: {exc}") from None
    except TypeError as exc:  # a section given as a scalar, e.g. "model: 3"
        raise ConfigError(f"{source}: {exc}") from None


def merge_dicts(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, everything else in ``changes`` replaces ``base``."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_dicts(out[key], value)
        else:
            out[key] = value
    return out


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with sections {', '.join(SECTIONS)}, got {type(data).__name__}")
    return data
