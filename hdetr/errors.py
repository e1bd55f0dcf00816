"""Exceptions whose messages are written for the user.

This module imports nothing of hdetr, so every layer (configs, models, engine) can raise them.
"""


class UserError(Exception):
    """An error whose message names the file, field or value and what was expected."""


class ConfigError(ValueError):
    """A configuration that cannot be built; the message is meant for the user as is."""


__all__ = ["ConfigError", "UserError"]
