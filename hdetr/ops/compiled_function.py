"""One autograd Function for both compiled backends (C++ CPU and CUDA).

Both extension modules expose the same two functions:
``forward(value, spatial_shapes, level_start_index, sampling_locations,
attention_weights) -> [N, Lq, M*D]`` and ``backward(..., grad_output) ->
(grad_value, grad_sampling_locations, grad_attention_weights)``.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


class CompiledMSDeformAttn(torch.autograd.Function):
    """Apply with ``(extension, value, spatial_shapes, level_start_index, sampling_locations, attention_weights)``.

    Inputs must already be contiguous and on one device; gradients flow to
    value, sampling_locations and attention_weights (first order only, as in
    the official op).
    """

    @staticmethod
    def forward(ctx, extension, value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        ctx.extension = extension
        ctx.save_for_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        return extension.forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights = ctx.saved_tensors
        grad_value, grad_locations, grad_weights = ctx.extension.backward(
            value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
            grad_output.contiguous())
        needs = ctx.needs_input_grad
        return (
            None,
            grad_value if needs[1] else None,
            None,
            None,
            grad_locations if needs[4] else None,
            grad_weights if needs[5] else None,
        )


__all__ = ["CompiledMSDeformAttn"]
