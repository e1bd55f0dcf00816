"""Multi-scale deformable attention: one function, three backends (cuda, cpu, torch).

``multi_scale_deformable_attention(value, spatial_shapes, level_start_index,
sampling_locations, attention_weights, *, backend="auto")`` dispatches to the
CUDA kernel for CUDA tensors, the C++ kernel for CPU tensors, or the pure-PyTorch
reference (see :mod:`hdetr.ops.dispatch`). Importing this package compiles
nothing; kernels are built on first use or with ``hdetr build-ops``.
``MSDeformAttn`` (the attention nn.Module) is imported lazily.
"""
from __future__ import annotations

from hdetr.lazy_exports import lazy_exports
from hdetr.ops.dispatch import (
    BACKENDS,
    MSDABackendError,
    MSDAFallbackWarning,
    multi_scale_deformable_attention,
    select_backend,
)
from hdetr.ops.reference import ms_deform_attn_reference
from hdetr.ops.validation import MSDAInputError

__getattr__, __dir__, _LAZY_NAMES = lazy_exports(__name__, {"hdetr.ops.attention_module": ("MSDeformAttn",)}, globals())

__all__ = [
    "BACKENDS",
    "MSDABackendError",
    "MSDAFallbackWarning",
    "MSDAInputError",
    *_LAZY_NAMES,  # MSDeformAttn
    "ms_deform_attn_reference",
    "multi_scale_deformable_attention",
    "select_backend",
]
