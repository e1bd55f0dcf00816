"""Package attributes imported on first use, so that importing a package stays cheap."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, sources: dict[str, str],
                 namespace: dict[str, Any]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``sources`` maps an attribute name to the
    module that defines it; ``namespace`` is the package's ``globals()``."""

    def __getattr__(name: str) -> Any:
        if name in sources:
            return getattr(importlib.import_module(sources[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(list(namespace) + list(sources))

    return __getattr__, __dir__
