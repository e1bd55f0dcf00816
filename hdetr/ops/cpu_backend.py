"""Build and load the C++ CPU kernel of multi-scale deformable attention.

Nothing compiles at import: the first call of :func:`load_cpu_extension`
compiles ``csrc/bind_cpu.cpp`` and ``csrc/cpu/*.cpp`` with
``torch.utils.cpp_extension.load`` (ninja, ``-O3``, OpenMP so that
``at::parallel_for`` really runs in parallel) into a per-user cache,
``~/.cache/hdetr/ops/cpu-<torch version>-<source hash>`` or ``$HDETR_OPS_CACHE/...``.
``cpp_extension.load`` holds a file lock inside that folder while it builds,
so several processes starting at once (DDP) build it once and share it.

The inner loops are compiled twice, for any x86-64/other CPU and for AVX2 +
FMA (GCC on x86-64), and the extension picks one at run time from the CPU's
flags; ``HDETR_MSDA_CPU_ISA=generic`` forces the portable loops, and the
module's ``kernel_isa()`` / ``set_kernel_isa(name)`` report and switch them.

A failed build (no compiler, compiler error) never raises here: the loader
returns ``None`` and :func:`cpu_unavailable_reason` says why.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import sys
import threading
from pathlib import Path
from types import ModuleType

import torch

_EXTENSION_PREFIX = "hdetr_msda_cpu"
_CXX_FLAGS = ("-O3", "-fopenmp")
_LD_FLAGS = ("-fopenmp",)

_lock = threading.Lock()
_state: dict[str, object] = {}


def source_dir() -> Path:
    """The ``csrc`` folder: the repository's for an editable install, else the packaged copy."""
    # This file's own path, not hdetr.__file__: that is None when an editable
    # install maps hdetr as a namespace package.
    package = Path(__file__).resolve().parents[1]
    for candidate in (package.parent / "csrc", package / "_csrc"):
        if (candidate / "bind_cpu.cpp").is_file():
            return candidate
    return package.parent / "csrc"


def cpu_sources(root: Path | None = None) -> list[Path]:
    """Binding file first, then every C++ file of ``csrc/cpu`` (entry points and one file per instruction set)."""
    root = source_dir() if root is None else Path(root)
    return [root / "bind_cpu.cpp", *sorted((root / "cpu").glob("*.cpp"))]


def cache_root() -> Path:
    """``$HDETR_OPS_CACHE`` if set, else ``$XDG_CACHE_HOME/hdetr/ops`` (``~/.cache/hdetr/ops``)."""
    override = os.environ.get("HDETR_OPS_CACHE")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "hdetr" / "ops"


def source_hash(root: Path | None = None) -> str:
    """Hash of every source and header, the flags, and the Python ABI: a change rebuilds."""
    root = source_dir() if root is None else Path(root)
    digest = hashlib.sha256()
    files = cpu_sources(root) + sorted((root / "cpu").glob("*.h"))
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
    digest.update(" ".join(_CXX_FLAGS + _LD_FLAGS).encode())
    digest.update(f"{sys.implementation.cache_tag}".encode())
    return digest.hexdigest()[:16]


def build_directory(root: Path | None = None) -> Path:
    """``<cache_root>/cpu-<torch version>-<source hash>``."""
    torch_version = re.sub(r"[^0-9A-Za-z.]+", "_", torch.__version__)
    return cache_root() / f"cpu-{torch_version}-{source_hash(root)}"


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++") or shutil.which("clang++")


def summarize_build_error(message: str, max_lines: int = 3, max_chars: int = 240) -> str:
    """The compiler's ``error:`` lines, else any line naming an error, else the last lines."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    compiler = [line for line in lines if "error:" in line and not line.startswith("Error building extension")]
    named = [line for line in lines if re.search(r"\berror\b", line, re.IGNORECASE)]
    picked = (compiler or named or lines[-max_lines:])[:max_lines]
    return " | ".join(line[:max_chars] for line in picked) if picked else "unknown error"


def _import_cpp_extension_load():
    # Importing cpp_extension logs "No CUDA runtime is found" on CPU-only
    # machines, which is noise for a CPU build.
    logger = logging.getLogger("torch.utils.cpp_extension")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils.cpp_extension import load
    finally:
        logger.setLevel(previous)
    return load


def _build(root: Path | None, verbose: bool) -> ModuleType:
    load = _import_cpp_extension_load()

    sources = cpu_sources(root)
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"C++ sources of the CPU op not found: {', '.join(missing)}")
    if not sources[1:]:
        raise FileNotFoundError(f"no C++ kernel sources in {sources[0].parent / 'cpu'}")
    if _compiler() is None:
        raise RuntimeError("no C++ compiler found (looked for $CXX, c++, g++, clang++)")
    build_dir = build_directory(root)
    build_dir.mkdir(parents=True, exist_ok=True)
    # The hash in the module name keeps two builds apart within one process.
    name = f"{_EXTENSION_PREFIX}_{build_dir.name.rsplit('-', 1)[-1]}"
    return load(
        name=name,
        sources=[str(p) for p in sources],
        # Copies: cpp_extension appends to the lists it is given.
        extra_cflags=list(_CXX_FLAGS),
        extra_ldflags=list(_LD_FLAGS),
        extra_include_paths=[str(sources[0].parent)],
        build_directory=str(build_dir),
        verbose=verbose,
    )


def load_cpu_extension(*, verbose: bool = False, source_root: Path | str | None = None) -> ModuleType | None:
    """Compile (first call) and return the extension, or ``None`` if it cannot be built.

    The result, success or failure, is remembered for the process; ``source_root``
    points at another ``csrc`` folder (tests use it to simulate a broken build).
    The module has ``forward(value, spatial_shapes, level_start_index,
    sampling_locations, attention_weights) -> [N, Lq, M*D]`` and ``backward(...,
    grad_output) -> (grad_value, grad_sampling_locations, grad_attention_weights)``.
    """
    root = Path(source_root) if source_root is not None else None
    with _lock:
        if "module" in _state or "reason" in _state:
            return _state.get("module")  # type: ignore[return-value]
        try:
            _state["module"] = _build(root, verbose)
        except Exception as exc:  # noqa: BLE001 - any build failure means "fall back", with the reason kept
            where = build_directory(root) if _compiler() else "(no build attempted)"
            _state["reason"] = f"C++ CPU op could not be built in {where}: {summarize_build_error(str(exc))}"
            _state["error"] = exc
        return _state.get("module")  # type: ignore[return-value]


def cpu_unavailable_reason() -> str:
    """Why :func:`load_cpu_extension` returned ``None`` ('' if it has not failed)."""
    return str(_state.get("reason", ""))


def cpu_build_error() -> BaseException | None:
    """The exception of the failed build, with the full compiler output, if any."""
    return _state.get("error")  # type: ignore[return-value]


def is_cpu_extension_loaded() -> bool:
    """True once a build succeeded in this process (never compiles)."""
    return "module" in _state


def reset_cpu_extension_state() -> None:
    """Forget the remembered build result so that the next load tries again."""
    with _lock:
        _state.clear()


__all__ = [
    "build_directory",
    "cache_root",
    "cpu_build_error",
    "cpu_sources",
    "cpu_unavailable_reason",
    "is_cpu_extension_loaded",
    "load_cpu_extension",
    "reset_cpu_extension_state",
    "source_dir",
    "source_hash",
    "summarize_build_error",
]
