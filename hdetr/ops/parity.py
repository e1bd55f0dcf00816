"""Parity of a compiled backend against the PyTorch reference (forward and all three gradients)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from hdetr.ops.dispatch import multi_scale_deformable_attention
from hdetr.ops.reference import ms_deform_attn_reference
from hdetr.ops.sample_inputs import random_msda_inputs

# Max abs error allowed per dtype; float32 sums of a few dozen products stay well inside 1e-4.
PARITY_TOLERANCE = {torch.float64: 1e-8, torch.float32: 1e-4}
QUANTITIES = ("output", "grad_value", "grad_sampling_locations", "grad_attention_weights")


@dataclass
class ParityResult:
    """Max abs error of each quantity of ``backend`` against the reference at one dtype."""

    backend: str
    device: str
    dtype: torch.dtype
    tolerance: float
    errors: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(err <= self.tolerance for err in self.errors.values())


def forward_and_grads(inputs, backend: str, grad_output: torch.Tensor | None = None, *, seed: int = 1):
    """Run ``backend`` ("reference" | "torch" | "cpu" | "cuda" | "auto") on ``inputs`` (a
    ``sample_inputs.MSDAInputs``) -> (output [N, Lq, M*D], (grad_value, grad_sampling_locations,
    grad_attention_weights), grad_output), the gradients being those of <output, grad_output>;
    ``grad_output`` is drawn from ``seed`` when not given, so a second backend can reuse it."""
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs.differentiable()]
    value, locations, weights = leaves
    if backend == "reference":
        out = ms_deform_attn_reference(value, inputs.spatial_shapes, locations, weights)
    else:
        out = multi_scale_deformable_attention(value, inputs.spatial_shapes, inputs.level_start_index, locations,
                                               weights, backend=backend)
    if grad_output is None:
        grad_output = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
        grad_output = grad_output.to(out.device)
    grads = torch.autograd.grad(out, leaves, grad_output)
    return out.detach(), tuple(grads), grad_output


def check_parity(backend: str, dtype: torch.dtype = torch.float64, *, seed: int = 0) -> ParityResult:
    """Compare ``backend`` ("cpu" | "cuda") with the reference on a small random input.

    The input has a 1x1 level, D=33 (not a multiple of a vector width) and
    locations reaching outside the map, where kernels tend to go wrong.
    """
    device = "cuda" if backend == "cuda" else "cpu"
    inputs = random_msda_inputs(((9, 7), (5, 4), (2, 3), (1, 1)), batch=2, queries=11, heads=4, channels=33,
                                points=3, dtype=dtype, seed=seed)
    for name in ("value", "spatial_shapes", "level_start_index", "sampling_locations", "attention_weights"):
        setattr(inputs, name, getattr(inputs, name).to(device))
    expected_out, expected_grads, grad_output = forward_and_grads(inputs, "reference")
    actual_out, actual_grads, _ = forward_and_grads(inputs, backend, grad_output)
    expected, actual = (expected_out, *expected_grads), (actual_out, *actual_grads)
    result = ParityResult(backend, device, dtype, PARITY_TOLERANCE[dtype])
    for name, got, want in zip(QUANTITIES, actual, expected):
        result.errors[name] = float((got.double() - want.double()).abs().max())
    return result


__all__ = ["PARITY_TOLERANCE", "ParityResult", "QUANTITIES", "check_parity", "forward_and_grads"]
