"""Exceptions whose messages are written for the user."""
from hdetr.config.base import ConfigError


class UserError(Exception):
    """An error whose message names the file, field or value and what was expected."""


__all__ = ["ConfigError", "UserError"]
