"""Input checks for multi-scale deformable attention, with errors that name the argument.

Every backend gets the same checks, so a shape mistake reads the same whether
the reference, the C++ or the CUDA kernel would have run.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from hdetr.errors import UserError


class MSDAInputError(UserError, ValueError):
    """Inconsistent inputs to multi_scale_deformable_attention (names the argument and the expected shape)."""


@dataclass(frozen=True)
class MSDAProblem:
    """Sizes of one call: value [N, S, M, D], locations [N, Lq, M, L, P, 2]."""

    batch: int
    spatial: int
    heads: int
    channels: int
    queries: int
    levels: int
    points: int
    level_shapes: tuple[tuple[int, int], ...]


def _shape(t: torch.Tensor) -> list[int]:
    return list(t.shape)


def _require_tensor(name: str, obj) -> torch.Tensor:
    if not isinstance(obj, torch.Tensor):
        raise MSDAInputError(f"{name} must be a torch.Tensor, got {type(obj).__name__}")
    return obj


def check_msda_inputs(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> MSDAProblem:
    """Check shapes, dtypes and devices; return the sizes.

    value [N, S, M, D] float; spatial_shapes [L, 2] integer (H, W) with
    sum(H * W) == S; level_start_index [L] integer, the exclusive cumulative
    sum of H * W; sampling_locations [N, Lq, M, L, P, 2] and attention_weights
    [N, Lq, M, L, P] of value's dtype and device. Reads spatial_shapes and
    level_start_index on the host (one sync for CUDA tensors).
    """
    for name, obj in (("value", value), ("spatial_shapes", spatial_shapes), ("level_start_index", level_start_index),
                      ("sampling_locations", sampling_locations), ("attention_weights", attention_weights)):
        _require_tensor(name, obj)
    if value.dim() != 4:
        raise MSDAInputError(f"value must have shape [N, S, M, D] (4 dims), got {_shape(value)}")
    if not value.is_floating_point():
        raise MSDAInputError(f"value must be a floating tensor, got dtype {value.dtype}")
    n, s, m, d = (int(x) for x in value.shape)
    if spatial_shapes.dim() != 2 or spatial_shapes.shape[1] != 2:
        raise MSDAInputError(
            f"spatial_shapes must have shape [L, 2] holding (H, W) per level, got {_shape(spatial_shapes)}")
    if spatial_shapes.is_floating_point() or spatial_shapes.is_complex() or spatial_shapes.dtype == torch.bool:
        raise MSDAInputError(f"spatial_shapes must be an integer tensor (int64), got dtype {spatial_shapes.dtype}")
    levels = int(spatial_shapes.shape[0])
    if levels == 0:
        raise MSDAInputError("spatial_shapes must describe at least one level, got shape [0, 2]")
    if sampling_locations.dim() != 6 or sampling_locations.shape[-1] != 2:
        raise MSDAInputError(
            f"sampling_locations must have shape [N, Lq, M, L, P, 2] (6 dims, last = (x, y)), "
            f"got {_shape(sampling_locations)}")
    lq, p = int(sampling_locations.shape[1]), int(sampling_locations.shape[4])
    expected = [n, lq, m, levels, p, 2]
    if _shape(sampling_locations) != expected:
        raise MSDAInputError(
            f"sampling_locations must have shape [N, Lq, M, L, P, 2] = {expected} "
            f"(N={n}, M={m} from value, L={levels} from spatial_shapes), got {_shape(sampling_locations)}")
    if _shape(attention_weights) != expected[:5]:
        raise MSDAInputError(
            f"attention_weights must have shape [N, Lq, M, L, P] = {expected[:5]} "
            f"(matching sampling_locations), got {_shape(attention_weights)}")
    for name, t in (("sampling_locations", sampling_locations), ("attention_weights", attention_weights)):
        if t.dtype != value.dtype:
            raise MSDAInputError(f"{name} must have value's dtype {value.dtype}, got {t.dtype}")
        if t.device != value.device:
            raise MSDAInputError(f"{name} must be on value's device {value.device}, got {t.device}")
    if _shape(level_start_index) != [levels]:
        raise MSDAInputError(
            f"level_start_index must have shape [L] = [{levels}] (L from spatial_shapes), "
            f"got {_shape(level_start_index)}")
    if level_start_index.is_floating_point() or level_start_index.dtype == torch.bool:
        raise MSDAInputError(
            f"level_start_index must be an integer tensor (int64), got dtype {level_start_index.dtype}")
    shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    starts = [int(x) for x in level_start_index.tolist()]
    if any(h <= 0 or w <= 0 for h, w in shapes):
        raise MSDAInputError(f"spatial_shapes must hold positive (H, W) per level, got {shapes}")
    sizes = [h * w for h, w in shapes]
    if sum(sizes) != s:
        raise MSDAInputError(
            f"spatial_shapes {shapes} cover sum(H*W) = {sum(sizes)} positions, but value has S = {s} "
            f"(value shape {_shape(value)})")
    expected_starts = [sum(sizes[:i]) for i in range(levels)]
    if starts != expected_starts:
        raise MSDAInputError(
            f"level_start_index must be the offsets of the levels in S, {expected_starts} for spatial_shapes "
            f"{shapes}, got {starts}")
    return MSDAProblem(n, s, m, d, lq, levels, p, tuple(shapes))


__all__ = ["MSDAInputError", "MSDAProblem", "check_msda_inputs"]
