"""Validated dataclass configurations."""
from hdetr.config.base import Config, ConfigError
from hdetr.config.model import SCHEMES, ModelConfig

__all__ = ["Config", "ConfigError", "ModelConfig", "SCHEMES"]
