"""Build and load the C++ CPU kernel of multi-scale deformable attention.

Nothing compiles at import: the first call of :func:`load_cpu_extension`
compiles ``csrc/bind_cpu.cpp`` and ``csrc/cpu/*.cpp`` with
``torch.utils.cpp_extension.load`` (ninja, ``-O3``, OpenMP so that
``at::parallel_for`` really runs in parallel) into a per-user cache,
``~/.cache/hdetr/ops/cpu-<torch version>-<source hash>`` or ``$HDETR_OPS_CACHE/...``
(where the sources and the cache are: :mod:`hdetr.ops.extension_build`).
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

import os
import shutil
from pathlib import Path
from types import ModuleType

from hdetr.ops import extension_build
from hdetr.ops.extension_build import cache_root, summarize_build_error

_EXTENSION_PREFIX = "hdetr_msda_cpu"
_CXX_FLAGS = ("-O3", "-fopenmp")
_LD_FLAGS = ("-fopenmp",)

_build_result = extension_build.RememberedBuild()


def source_dir() -> Path:
    """The ``csrc`` folder: the checkout's for a source tree or an editable install, else the packaged copy."""
    return extension_build.csrc_dir()


def cpu_sources(root: Path | None = None) -> list[Path]:
    """Binding file first, then every C++ file of ``csrc/cpu`` (entry points and one file per instruction set)."""
    root = source_dir() if root is None else Path(root)
    return [root / "bind_cpu.cpp", *sorted((root / "cpu").glob("*.cpp"))]


def source_hash(root: Path | None = None) -> str:
    """Hash of every source and header, the flags, and the Python ABI: a change rebuilds."""
    root = source_dir() if root is None else Path(root)
    files = cpu_sources(root) + sorted((root / "cpu").glob("*.h"))
    return extension_build.source_hash(files, _CXX_FLAGS + _LD_FLAGS)


def build_directory(root: Path | None = None) -> Path:
    """``<cache_root>/cpu-<torch version>-<source folder>-<source hash>``."""
    root = source_dir() if root is None else Path(root)
    return extension_build.build_directory("cpu", source_hash(root), root)


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++") or shutil.which("clang++")


def _build(root: Path | None, verbose: bool) -> ModuleType:
    sources = cpu_sources(root)
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"C++ sources of the CPU op not found: {', '.join(missing)}")
    if not sources[1:]:
        raise FileNotFoundError(f"no C++ kernel sources in {sources[0].parent / 'cpu'}")
    if _compiler() is None:
        raise RuntimeError("no C++ compiler found (looked for $CXX, c++, g++, clang++)")
    cpp_extension = extension_build.import_cpp_extension()
    build_dir = build_directory(root)
    build_dir.mkdir(parents=True, exist_ok=True)
    # The hash in the module name keeps two builds apart within one process.
    name = f"{_EXTENSION_PREFIX}_{build_dir.name.rsplit('-', 1)[-1]}"
    return cpp_extension.load(
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

    def explain(exc: Exception) -> str:
        where = build_directory(root) if _compiler() else "(no build attempted)"
        return f"C++ CPU op could not be built in {where}: {summarize_build_error(str(exc))}"

    # _build is looked up at call time, so tests can replace it.
    return _build_result.load(lambda: _build(root, verbose), explain)


# The remembered result, as this module's functions: why load_cpu_extension() returned
# None ('' if it has not failed); the failed build's exception with the full compiler
# output; whether a build succeeded in this process (never compiles); forget the result
# so that the next load tries again.
cpu_unavailable_reason = _build_result.reason
cpu_build_error = _build_result.error
is_cpu_extension_loaded = _build_result.loaded
reset_cpu_extension_state = _build_result.reset


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
