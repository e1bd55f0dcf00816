"""Builds and loads the CUDA kernels of multi-scale deformable attention.

The sources live in ``csrc/cuda`` (the checkout's, or the copy an installed
package ships; see :mod:`hdetr.ops.extension_build`) and are compiled on first
use with ``torch.utils.cpp_extension.load`` (ninja, honours ``MAX_JOBS`` and
``TORCH_CUDA_ARCH_LIST``) into a per-user cache: ``$HDETR_OPS_CACHE`` (default
``~/.cache/hdetr/ops``) ``/cuda-<torch>-<source hash>``. cpp_extension holds a
file lock in that folder while it builds, so DDP ranks starting together build once.
A changed source or another torch version gets a fresh directory, so a stale
binary is never loaded.

``load_cuda_extension()`` never raises: it returns ``None`` when CUDA cannot be
used here, and ``cuda_unavailable_reason()`` says why. ``build_cuda_extension()``
raises, with nvcc's message, and works without a GPU (the compile test uses it).

The loaded module has:

- ``forward(value [N, S, M, D], spatial_shapes [L, 2] int64, level_start_index [L] int64,
  sampling_locations [N, Lq, M, L, P, 2], attention_weights [N, Lq, M, L, P]) -> [N, Lq, M*D]``
- ``backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
  grad_output [N, Lq, M*D]) -> (grad_value, grad_sampling_locations, grad_attention_weights)``

for float64, float32, float16 and bfloat16 CUDA tensors (contiguous).
"""
from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import torch

from hdetr.ops import extension_build
from hdetr.ops.extension_build import CACHE_ENV, ExtensionUnavailable, cache_root

_SOURCE_SUFFIXES = (".cu", ".cpp", ".h", ".cuh")
_COMPILE_FLAGS = ["-O3"]
_CUDA_COMPILE_FLAGS = ["-O3"]
_NO_NVCC = "nvcc not found: set CUDA_HOME to a CUDA toolkit root (with bin/nvcc and include/cuda_runtime.h)"

_build_result = extension_build.RememberedBuild()


def source_dir() -> Path:
    """``csrc/cuda``: the checkout's for a source tree or an editable install, else the packaged copy."""
    return extension_build.csrc_dir() / "cuda"


def cuda_sources(root: Path | str | None = None) -> list[Path]:
    """The extension's files in ``root`` (default :func:`source_dir`): .cu/.cpp and their headers."""
    root = source_dir() if root is None else Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"CUDA sources of the op not found: {root} is not a directory")
    return sorted(p for p in root.iterdir() if p.suffix in _SOURCE_SUFFIXES)


def source_hash(root: Path | str | None = None) -> str:
    """Short hash of every source's name and content and of the flags: the cache key of a build."""
    return extension_build.source_hash(cuda_sources(root), _COMPILE_FLAGS + _CUDA_COMPILE_FLAGS)


def default_build_dir() -> Path:
    """``<cache_root>/cuda-<torch version>-<source folder>-<source hash>``."""
    return extension_build.build_directory("cuda", source_hash(), source_dir())


def find_cuda_home() -> Path | None:
    """The CUDA toolkit root holding ``bin/nvcc`` and ``include/cuda_runtime.h``, or None.

    Checks ``$CUDA_HOME``, ``$CUDA_PATH``, torch's own guess, then ``/usr/local/cuda``.
    torch guesses from ``which nvcc``, which points to the wrong root when ``nvcc`` is a
    wrapper script (``/usr/local/bin/nvcc`` -> ``/usr/local``), so each guess is verified.
    """
    cpp_extension = extension_build.import_cpp_extension()
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), cpp_extension.CUDA_HOME,
                  "/usr/local/cuda"]
    for candidate in candidates:
        if not candidate:
            continue
        root = Path(candidate)
        if (root / "bin" / "nvcc").is_file() and (root / "include" / "cuda_runtime.h").is_file():
            return root
    return None


def build_cuda_extension(build_dir: Path | str | None = None, *, verbose: bool = False,
                         source_root: Path | str | None = None) -> ModuleType:
    """Compile (or reuse) and import the CUDA extension; raises with nvcc's message on failure.

    Needs nvcc but no GPU: without a visible device, set ``TORCH_CUDA_ARCH_LIST``
    (e.g. ``"8.0;9.0"``) to choose the architectures to compile for.
    """
    cpp_extension = extension_build.import_cpp_extension()
    if torch.version.cuda is None:
        raise RuntimeError(f"torch {torch.__version__} was built without CUDA; install a CUDA build of torch")
    cuda_home = find_cuda_home()
    if cuda_home is None:
        raise RuntimeError(_NO_NVCC)
    # cpp_extension reads its module-level CUDA_HOME when it builds the nvcc
    # command line and include paths, so a wrong import-time guess is replaced.
    cpp_extension.CUDA_HOME = str(cuda_home)
    root = source_dir() if source_root is None else Path(source_root)
    compiled = [str(p) for p in cuda_sources(root) if p.suffix in (".cu", ".cpp")]
    if not compiled:
        raise FileNotFoundError(f"no .cu or .cpp files in {root}")
    build_dir = Path(build_dir) if build_dir is not None else default_build_dir()
    build_dir.mkdir(parents=True, exist_ok=True)
    return cpp_extension.load(
        # The hash in the name keeps two builds apart within one process.
        name=f"hdetr_msda_cuda_{source_hash(root)}",
        sources=compiled,
        extra_cflags=_COMPILE_FLAGS,
        extra_cuda_cflags=_CUDA_COMPILE_FLAGS,
        extra_include_paths=[str(root)],
        build_directory=str(build_dir),
        with_cuda=True,
        verbose=verbose,
    )


def summarize_build_error(message: str, max_lines: int = 6) -> str:
    """nvcc's / the compiler's own error lines, else the last lines of the message."""
    return extension_build.summarize_build_error(message, max_lines=max_lines)


def _attempt_load() -> ModuleType:
    if torch.version.cuda is None:
        raise ExtensionUnavailable(f"torch {torch.__version__} was built without CUDA")
    if not torch.cuda.is_available():
        raise ExtensionUnavailable("no CUDA device is visible (torch.cuda.is_available() is False)")
    if find_cuda_home() is None:
        raise ExtensionUnavailable(_NO_NVCC)
    return build_cuda_extension()


def _explain(exc: Exception) -> str:
    return (f"building the CUDA op from {source_dir()} in {default_build_dir()} failed: "
            f"{summarize_build_error(str(exc))}")


def load_cuda_extension() -> ModuleType | None:
    """The compiled CUDA op module, or None when it cannot be used here. Never raises.

    Builds once per process (and once per source/torch version on disk); later
    calls return the remembered result. ``cuda_unavailable_reason()`` says why
    it is None.
    """
    return _build_result.load(_attempt_load, _explain)


def cuda_unavailable_reason() -> str:
    """Why ``load_cuda_extension()`` returns None ('' when the op is loaded).

    Tries the load first if nobody has, so the answer is never a guess.
    """
    load_cuda_extension()
    return _build_result.reason()


# The failed build's exception with nvcc's full output, if any; forget the remembered
# result so that the next load tries again (tests).
cuda_build_error = _build_result.error
reset_cuda_extension_state = _build_result.reset


__all__ = [
    "CACHE_ENV",
    "build_cuda_extension",
    "cache_root",
    "cuda_build_error",
    "cuda_sources",
    "cuda_unavailable_reason",
    "default_build_dir",
    "find_cuda_home",
    "load_cuda_extension",
    "reset_cuda_extension_state",
    "source_dir",
    "source_hash",
    "summarize_build_error",
]
