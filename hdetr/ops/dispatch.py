"""Choose the backend of multi-scale deformable attention and run it.

Backends: ``torch`` (pure-PyTorch reference, autograd), ``cpu`` (C++ kernel in
csrc/cpu), ``cuda`` (CUDA kernel in csrc/cuda). ``auto`` takes the compiled
kernel of the tensors' device when it builds and supports the dtype
(see ``COMPILED_DTYPES``), else the reference with a warning that says why, once per
reason per process. Asking for ``cpu`` or ``cuda`` explicitly when it cannot
run raises :class:`MSDABackendError` with the reason.
"""
from __future__ import annotations

import importlib
import threading
import warnings
from dataclasses import dataclass
from types import ModuleType

import torch

from hdetr.errors import UserError
from hdetr.ops.compiled_function import CompiledMSDeformAttn
from hdetr.ops.reference import ms_deform_attn_reference
from hdetr.ops.validation import check_msda_inputs

BACKENDS = ("auto", "torch", "cpu", "cuda")
# The C++ kernel is written for float32/float64; the CUDA kernel also takes half types.
COMPILED_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float16, torch.bfloat16, torch.float32, torch.float64),
}


class MSDABackendError(UserError, RuntimeError):
    """The requested backend cannot run these inputs (not built, wrong device or dtype)."""


class MSDAFallbackWarning(UserWarning):
    """``backend="auto"`` fell back to the PyTorch reference; the message says why."""


@dataclass(frozen=True)
class BackendChoice:
    """name: "torch" | "cpu" | "cuda"; fallback_reason: why auto did not pick a kernel ('' if it did)."""

    name: str
    fallback_reason: str = ""


_warned: set[str] = set()
_warn_lock = threading.Lock()


def _load_cuda_backend() -> ModuleType | None:
    try:
        return importlib.import_module("hdetr.ops.cuda_backend")
    except ImportError:
        return None


def load_extension(kind: str) -> ModuleType | None:
    """The compiled module for ``kind`` ("cpu" | "cuda"), building it on first use; None if unavailable."""
    if kind == "cpu":
        from hdetr.ops.cpu_backend import load_cpu_extension

        return load_cpu_extension()
    if kind == "cuda":
        backend = _load_cuda_backend()
        return backend.load_cuda_extension() if backend is not None else None
    raise MSDABackendError(f"no compiled extension for backend {kind!r}; expected 'cpu' or 'cuda'")


def unavailable_reason(kind: str) -> str:
    """Why :func:`load_extension` returned None for ``kind``."""
    if kind == "cpu":
        from hdetr.ops.cpu_backend import cpu_unavailable_reason

        return cpu_unavailable_reason() or "C++ CPU op is not built"
    backend = _load_cuda_backend()
    if backend is None:
        return "CUDA op is not part of this installation (hdetr.ops.cuda_backend cannot be imported)"
    return backend.cuda_unavailable_reason() or "CUDA op is not built"


def _dtype_names(kind: str) -> str:
    return ", ".join(str(d).removeprefix("torch.") for d in COMPILED_DTYPES[kind])


def select_backend(device: torch.device | str, dtype: torch.dtype, requested: str = "auto") -> BackendChoice:
    """Resolve ``requested`` for tensors on ``device`` of ``dtype`` (may compile the kernel; never warns)."""
    if requested not in BACKENDS:
        raise MSDABackendError(f"backend={requested!r} is not one of {', '.join(BACKENDS)}")
    if requested == "torch":
        return BackendChoice("torch")
    device = torch.device(device)
    kind = "cuda" if device.type == "cuda" else "cpu" if device.type == "cpu" else None
    if requested != "auto":
        if kind != requested:
            raise MSDABackendError(
                f"backend={requested!r} needs {requested.upper()} tensors, got tensors on {device}")
        if dtype not in COMPILED_DTYPES[requested]:
            raise MSDABackendError(
                f"backend={requested!r} supports {_dtype_names(requested)} inputs, got {dtype}")
        if load_extension(requested) is None:
            raise MSDABackendError(f"backend={requested!r} is unavailable: {unavailable_reason(requested)}")
        return BackendChoice(requested)
    if kind is None:
        return BackendChoice("torch", f"no compiled kernel for device type {device.type!r}")
    if dtype not in COMPILED_DTYPES[kind]:
        return BackendChoice("torch", f"the compiled {kind} kernel takes {_dtype_names(kind)}, inputs are {dtype}")
    if load_extension(kind) is None:
        return BackendChoice("torch", unavailable_reason(kind))
    return BackendChoice(kind)


def _warn_fallback_once(reason: str) -> None:
    with _warn_lock:
        if reason in _warned:
            return
        _warned.add(reason)
    warnings.warn(
        f"multi_scale_deformable_attention: using the PyTorch reference (slower, more memory) because {reason}",
        MSDAFallbackWarning,
        stacklevel=4,  # the caller of multi_scale_deformable_attention
    )


def reset_fallback_warnings() -> None:
    """Let every fallback warning be shown again (tests)."""
    with _warn_lock:
        _warned.clear()


def multi_scale_deformable_attention(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """Multi-scale deformable attention (Deformable-DETR), differentiable in value, locations and weights.

    Args:
        value: [N, S, M, D] per-head values of all levels, flattened row-major per level.
        spatial_shapes: [L, 2] int64, (H, W) of each level; sum(H * W) == S.
        level_start_index: [L] int64, offset of each level in S.
        sampling_locations: [N, Lq, M, L, P, 2] normalised (x, y), [0, 1] inside the map;
            sampled bilinearly at (x * W - 0.5, y * H - 0.5), zeros outside.
        attention_weights: [N, Lq, M, L, P].
        backend: "auto" | "torch" | "cpu" | "cuda" (see module docstring).

    Returns:
        [N, Lq, M * D], of value's dtype; float32 when autocast is on for value's
        device (inputs are cast to float32 first, as the official op does under AMP).
    """
    device_type = value.device.type if isinstance(value, torch.Tensor) else "cpu"
    if device_type in ("cpu", "cuda") and torch.is_autocast_enabled(device_type):
        # As the official op under AMP: float32 in, float32 out, whatever
        # mixture of half and float the projections produced.
        value, sampling_locations, attention_weights = (
            t.float() if isinstance(t, torch.Tensor) and t.is_floating_point() else t
            for t in (value, sampling_locations, attention_weights))
        with torch.autocast(device_type, enabled=False):
            return _run(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, backend)
    return _run(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, backend)


def _run(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, backend):
    check_msda_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    choice = select_backend(value.device, value.dtype, backend)
    if choice.fallback_reason:
        _warn_fallback_once(choice.fallback_reason)
    if choice.name == "torch":
        return ms_deform_attn_reference(value, spatial_shapes, sampling_locations, attention_weights)
    extension = load_extension(choice.name)
    return CompiledMSDeformAttn.apply(
        extension,
        value.contiguous(),
        spatial_shapes.to(device=value.device, dtype=torch.long).contiguous(),
        level_start_index.to(device=value.device, dtype=torch.long).contiguous(),
        sampling_locations.contiguous(),
        attention_weights.contiguous(),
    )


__all__ = [
    "BACKENDS",
    "COMPILED_DTYPES",
    "BackendChoice",
    "MSDABackendError",
    "MSDAFallbackWarning",
    "load_extension",
    "multi_scale_deformable_attention",
    "reset_fallback_warnings",
    "select_backend",
    "unavailable_reason",
]
