"""Strict, validated dataclass configs.

Every config in hdetr is a dataclass that inherits `Config`. It can be built from a
plain dict (YAML, a checkpoint, ``--set key=value`` overrides); unknown keys and
values of the wrong type are rejected with one line that names the field, the value
and what was expected, so a typo never silently falls back to a default.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

# Defined below the configs (hdetr.errors imports nothing of hdetr); importable from here too.
from hdetr.errors import ConfigError

C = TypeVar("C", bound="Config")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _number(owner: str, name: str, value: Any, tp: type) -> int | float:
    """``value`` as an int (ints, whole floats, integer strings) or a float (numbers, numeric
    strings); a bool is neither, though Python counts it as an int."""
    if not isinstance(value, bool):
        if isinstance(value, str):
            try:
                return tp(value)
            except ValueError:
                pass
        elif tp is float and isinstance(value, (int, float)):
            return float(value)
        elif tp is int and (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            return int(value)
    expected = "an integer" if tp is int else "a number"
    raise ConfigError(f"{owner}.{name}: got {value!r}, expected {expected}")


def _coerce(owner: str, name: str, value: Any, tp: Any) -> Any:
    """Return ``value`` as type ``tp`` or raise ConfigError naming ``owner.name``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(owner, name, value, arg)
            except ConfigError:
                continue  # the error below names the whole union
        raise ConfigError(f"{owner}.{name}: got {value!r}, expected {_type_name(tp)}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{owner}.{name}: got {value!r}, expected a list")
        item_tp = (typing.get_args(tp) or (Any,))[0]
        items = [_coerce(owner, name, v, item_tp) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if isinstance(tp, type) and issubclass(tp, Config):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{owner}.{name}: got {value!r}, expected a mapping for {tp.__name__}")
        return tp.from_dict(value, owner=f"{owner}.{name}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{owner}.{name}: got {value!r}, expected true or false")
    if tp is int or tp is float:
        return _number(owner, name, value, tp)
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{owner}.{name}: got {value!r}, expected a string")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{owner}.{name}: got {value!r}, expected {_type_name(tp)}")
    return value


@dataclasses.dataclass
class Config:
    """Base of all configs: strict construction from dicts, validation, round trips."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(type(self).__name__, f.name, getattr(self, f.name), hints[f.name]))
        self.validate()

    def validate(self) -> None:
        """Reject impossible combinations; subclasses raise ConfigError with a clear message."""

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], owner: str | None = None) -> C:
        owner = owner or cls.__name__
        if not isinstance(data, dict):
            raise ConfigError(f"{owner}: expected a mapping, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"{owner}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(names))}"
            )
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self: C, **changes: Any) -> C:
        return self.from_dict({**self.to_dict(), **changes})
