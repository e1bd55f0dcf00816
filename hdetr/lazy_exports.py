"""Package attributes imported on first use, so that importing a package stays cheap."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, sources: dict[str, tuple[str, ...]], namespace: dict[str, Any]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, names)`` for ``package``.

    ``sources`` maps each module to the attributes of it that the package exports;
    ``namespace`` is the package's ``globals()``; ``names`` lists every lazy attribute
    in the order given (a package's ``__all__``).
    """
    where = {name: module for module, names in sources.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name in where:
            return getattr(importlib.import_module(where[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(list(namespace) + list(where))

    return __getattr__, __dir__, list(where)
