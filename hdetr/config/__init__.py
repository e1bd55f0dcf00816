"""Validated dataclass configurations."""
from hdetr.config.base import Config
from hdetr.config.model import SCHEMES, ModelConfig
from hdetr.errors import ConfigError

__all__ = ["Config", "ConfigError", "ModelConfig", "SCHEMES"]
