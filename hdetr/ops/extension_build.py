"""What the C++ and the CUDA op loaders share: where the sources are, where builds go,
how a build is named and summarised, and a build result remembered for the process.

Sources: the repository keeps them in its top-level ``csrc/``; a wheel or a
non-editable install ships the same tree as ``hdetr/_csrc`` (see ``setup.py``).
:func:`csrc_dir` finds either, so the lazy build works from a source checkout,
an editable install and an installed wheel alike.

Builds: ``$HDETR_OPS_CACHE`` if set, else ``$XDG_CACHE_HOME/hdetr/ops``
(``~/.cache/hdetr/ops``), one folder per kind, torch version, source folder and source hash
(``cpu-2.14.1-<place>-<hash>``), so a changed source or another torch never loads a stale binary,
and two checkouts never rebuild each other's.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType

CACHE_ENV = "HDETR_OPS_CACHE"
# A file that only a complete csrc tree has: it tells the real tree from an empty folder.
_CSRC_MARKER = "bind_cpu.cpp"


def csrc_dir() -> Path:
    """The kernel sources: the checkout's top-level ``csrc`` if there is one, else the installed ``hdetr/_csrc``.

    When neither exists (a broken install) the checkout's path is returned, so the
    loaders' "sources not found" errors name where they looked first.
    """
    # This file's own path, not hdetr.__file__: that is None when a stale editable
    # install maps hdetr as a namespace package. resolve() follows the links of a
    # strict editable install back to the checkout.
    package = Path(__file__).resolve().parents[1]
    candidates = (package.parent / "csrc", package / "_csrc")
    for candidate in candidates:
        if (candidate / _CSRC_MARKER).is_file():
            return candidate
    return candidates[0]


def cache_root() -> Path:
    """``$HDETR_OPS_CACHE`` if set, else ``$XDG_CACHE_HOME/hdetr/ops`` (``~/.cache/hdetr/ops``)."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "hdetr" / "ops"


def source_hash(files: Iterable[Path], flags: Iterable[str]) -> str:
    """16 hex digits over each file's name and content, the compiler flags and the Python ABI.

    A missing file hashes as a marker instead of raising, so a broken tree still gets a
    cache folder and the build, not the hash, reports what is missing.
    """
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
    digest.update(" ".join(flags).encode())
    digest.update(sys.implementation.cache_tag.encode())
    return digest.hexdigest()[:16]


def build_directory(kind: str, digest: str, sources: Path) -> Path:
    """``<cache_root>/<kind>-<torch version>-<place>-<digest>``, e.g. ``cpu-2.14.1-89abcdef-0123456789abcdef``.

    ``place`` hashes the sources' folder: the build files torch writes name the sources by absolute
    path, so two checkouts (git worktrees, a wheel beside a clone) sharing one folder would each
    rebuild on the other's every first use, and wait on each other's lock meanwhile."""
    import torch

    torch_version = re.sub(r"[^0-9A-Za-z.]+", "_", torch.__version__)
    place = hashlib.sha256(str(Path(sources).resolve()).encode()).hexdigest()[:8]
    return cache_root() / f"{kind}-{torch_version}-{place}-{digest}"


def summarize_build_error(message: str, max_lines: int = 3, max_chars: int = 240) -> str:
    """The compiler's own ``error:`` lines, else any line naming an error, else the last lines.

    The wrappers' lines (``Error building extension``, ninja's ``FAILED:``) only say that
    something failed, so the compiler's lines are preferred to them.
    """
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    named = [line for line in lines if re.search(r"\berror\b", line, re.IGNORECASE)]
    wrappers = ("Error building extension", "ninja:", "FAILED:")
    own = [line for line in named if not line.startswith(wrappers)]
    compiler = [line for line in own if "error:" in line.lower()]
    picked = (compiler or own or named or lines[-max_lines:])[:max_lines]
    return " | ".join(line[:max_chars] for line in picked) if picked else "unknown error"


def import_cpp_extension() -> ModuleType:
    """``torch.utils.cpp_extension``, imported without its "No CUDA runtime is found" log line.

    That line is noise on a CPU-only machine building the CPU op.
    """
    logger = logging.getLogger("torch.utils.cpp_extension")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
    finally:
        logger.setLevel(previous)
    return cpp_extension


class ExtensionUnavailable(Exception):
    """Raised by a build attempt that knows, before compiling, that it cannot work here."""


class RememberedBuild:
    """One extension's build result for this process: the module, or the reason it is missing.

    The first :meth:`load` runs the attempt under a lock (threads of one process
    build once); later calls return what it gave. An :class:`ExtensionUnavailable`
    keeps only its reason; any other exception also keeps the exception, whose
    message holds the compiler's full output.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[str, object] = {}

    def load(self, attempt: Callable[[], ModuleType], explain: Callable[[Exception], str]) -> ModuleType | None:
        """The module ``attempt()`` built, or None; ``explain(exc)`` turns a build failure into the reason."""
        with self._lock:
            if "module" not in self._state and "reason" not in self._state:
                try:
                    self._state["module"] = attempt()
                except ExtensionUnavailable as exc:
                    self._state["reason"] = str(exc)
                except Exception as exc:  # noqa: BLE001 - any build failure means "use another backend"
                    self._state["reason"] = explain(exc)
                    self._state["error"] = exc
            return self._state.get("module")  # type: ignore[return-value]

    def reason(self) -> str:
        """Why :meth:`load` returned None ('' if it has not failed)."""
        return str(self._state.get("reason", ""))

    def error(self) -> BaseException | None:
        """The exception of a failed build, with the compiler's full output, if any."""
        return self._state.get("error")  # type: ignore[return-value]

    def loaded(self) -> bool:
        """True once a build succeeded (never builds)."""
        return "module" in self._state

    def reset(self) -> None:
        """Forget the result so that the next :meth:`load` tries again."""
        with self._lock:
            self._state.clear()


__all__ = [
    "CACHE_ENV",
    "ExtensionUnavailable",
    "RememberedBuild",
    "build_directory",
    "cache_root",
    "csrc_dir",
    "import_cpp_extension",
    "source_hash",
    "summarize_build_error",
]
