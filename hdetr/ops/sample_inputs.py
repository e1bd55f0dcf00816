"""Random inputs of multi-scale deformable attention, for parity checks, tests and benchmarks."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class MSDAInputs:
    """value [N, S, M, D], spatial_shapes [L, 2] int64 (H, W), level_start_index [L] int64,
    sampling_locations [N, Lq, M, L, P, 2] (x, y), attention_weights [N, Lq, M, L, P]."""

    value: torch.Tensor
    spatial_shapes: torch.Tensor
    level_start_index: torch.Tensor
    sampling_locations: torch.Tensor
    attention_weights: torch.Tensor

    def as_args(self) -> tuple[torch.Tensor, ...]:
        return (self.value, self.spatial_shapes, self.level_start_index, self.sampling_locations,
                self.attention_weights)

    def differentiable(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.value, self.sampling_locations, self.attention_weights


def level_start_index_of(spatial_shapes: torch.Tensor) -> torch.Tensor:
    """[L] offsets of each level in the flattened S axis, for spatial_shapes [L, 2]."""
    sizes = spatial_shapes[:, 0] * spatial_shapes[:, 1]
    return torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])


def random_msda_inputs(
    level_shapes=((6, 4), (3, 5), (1, 1)),
    *,
    batch: int = 2,
    queries: int = 7,
    heads: int = 3,
    channels: int = 5,
    points: int = 4,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    location_range: tuple[float, float] = (-0.2, 1.2),
    requires_grad: bool = False,
) -> MSDAInputs:
    """Locations are uniform in ``location_range`` (the default puts some outside the map);
    attention weights are positive and sum to 1 over (L, P) as after the official softmax."""
    gen = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(level_shapes, dtype=torch.long)
    starts = level_start_index_of(shapes)
    num_levels = len(level_shapes)
    spatial = int((shapes[:, 0] * shapes[:, 1]).sum())
    value = torch.randn(batch, spatial, heads, channels, generator=gen, dtype=dtype)
    low, high = location_range
    locations = torch.rand(batch, queries, heads, num_levels, points, 2, generator=gen, dtype=dtype)
    locations = locations * (high - low) + low
    weights = torch.rand(batch, queries, heads, num_levels, points, generator=gen, dtype=dtype)
    weights = weights / weights.flatten(-2).sum(-1)[..., None, None]
    if requires_grad:
        for t in (value, locations, weights):
            t.requires_grad_(True)
    return MSDAInputs(value, shapes, starts, locations, weights)


__all__ = ["MSDAInputs", "level_start_index_of", "random_msda_inputs"]
