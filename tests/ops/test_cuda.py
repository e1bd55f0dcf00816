"""CUDA kernel of multi-scale deformable attention vs the pure-PyTorch reference.

Needs a CUDA device (``-m cuda``); skipped at collection elsewhere. The kernels
are called directly (``forward`` / ``backward`` of the built module) so that a
failure points at the kernel, plus one check through the public dispatcher.
"""
from __future__ import annotations

import pytest
import torch

from hdetr.ops import cuda_backend
from hdetr.ops.compiled_function import CompiledMSDeformAttn
from hdetr.ops.reference import ms_deform_attn_reference

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def ext():
    module = cuda_backend.load_cuda_extension()
    if module is None:
        pytest.fail(f"CUDA op unavailable on a CUDA machine: {cuda_backend.cuda_unavailable_reason()}")
    return module


def make_inputs(n=2, lq=5, m=2, d=4, shapes=((6, 5), (3, 3), (1, 2)), p=3, dtype=torch.float32,
                loc_range=(0.0, 1.0), seed=0, device="cuda"):
    """Random op inputs: value [N, S, M, D], spatial_shapes [L, 2], level_start_index [L],
    sampling_locations [N, Lq, M, L, P, 2], attention_weights [N, Lq, M, L, P]."""
    gen = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(shapes, dtype=torch.long)
    sizes = spatial_shapes.prod(1)
    level_start_index = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    s, levels = int(sizes.sum()), len(shapes)
    low, high = loc_range
    value = torch.randn(n, s, m, d, generator=gen, dtype=torch.float64)
    locations = low + (high - low) * torch.rand(n, lq, m, levels, p, 2, generator=gen, dtype=torch.float64)
    weights = torch.rand(n, lq, m, levels, p, generator=gen, dtype=torch.float64)
    weights = weights / weights.sum((-1, -2), keepdim=True)
    to = dict(device=device)
    return (value.to(dtype=dtype, **to), spatial_shapes.to(**to), level_start_index.to(**to),
            locations.to(dtype=dtype, **to), weights.to(dtype=dtype, **to))


def reference_with_grads(value, spatial_shapes, locations, weights, grad_output):
    """Reference output and grads of <output, grad_output>, computed in float64."""
    leaves = [t.detach().double().requires_grad_(True) for t in (value, locations, weights)]
    out = ms_deform_attn_reference(leaves[0], spatial_shapes, leaves[1], leaves[2])
    grads = torch.autograd.grad(out, leaves, grad_output.double())
    return out.detach(), grads


def assert_close_rel(actual, expected, rel, name):
    """max |a - e| <= rel * max(|e|, 1e-6): a scale-aware check for low-precision dtypes."""
    err = (actual.double() - expected.double()).abs().max().item()
    scale = max(expected.double().abs().max().item(), 1e-6)
    assert err <= rel * scale, f"{name}: max abs error {err:.3e} > {rel} * max |expected| {scale:.3e}"


def check_against_reference(ext, inputs, rel_out, rel_grad):
    value, spatial_shapes, level_start_index, locations, weights = inputs
    out = ext.forward(value, spatial_shapes, level_start_index, locations, weights)
    n, lq, m = locations.shape[:3]
    assert out.shape == (n, lq, m * value.shape[-1]) and out.dtype == value.dtype
    grad_output = torch.randn(out.shape, generator=torch.Generator().manual_seed(7)).to(out)
    expected, expected_grads = reference_with_grads(value, spatial_shapes, locations, weights, grad_output)
    assert_close_rel(out, expected, rel_out, "output")
    grads = ext.backward(value, spatial_shapes, level_start_index, locations, weights, grad_output)
    for name, got, want, like in zip(("grad_value", "grad_sampling_locations", "grad_attention_weights"),
                                     grads, expected_grads, (value, locations, weights)):
        assert got.shape == like.shape and got.dtype == like.dtype, name
        assert_close_rel(got, want, rel_grad, name)


def test_float32_forward_backward_match_reference(ext):
    check_against_reference(ext, make_inputs(n=2, lq=40, m=8, d=32), rel_out=1e-5, rel_grad=1e-4)


@pytest.mark.parametrize("dtype, rel", [(torch.float16, 2e-2), (torch.bfloat16, 5e-2)])
def test_half_precision_forward_backward_match_reference(ext, dtype, rel):
    check_against_reference(ext, make_inputs(n=2, lq=30, m=4, d=32, dtype=dtype), rel_out=rel, rel_grad=rel)


def test_float64_matches_reference_tightly(ext):
    check_against_reference(ext, make_inputs(dtype=torch.float64), rel_out=1e-12, rel_grad=1e-10)


@pytest.mark.parametrize(
    "case",
    [
        dict(d=1),
        dict(d=30),
        dict(d=33),
        dict(d=64, m=3),
        dict(shapes=((1, 1), (2, 1), (1, 3))),
        dict(loc_range=(-0.6, 1.6)),
        dict(n=3, lq=1),
        dict(p=1, shapes=((4, 7),)),
    ],
    ids=["D1", "D30", "D33", "D64", "1x1-levels", "out-of-range", "N3-Lq1", "one-level-one-point"],
)
def test_awkward_shapes_match_reference(ext, case):
    check_against_reference(ext, make_inputs(dtype=torch.float32, **case), rel_out=1e-5, rel_grad=1e-4)


def test_locations_far_outside_sample_zero_and_get_zero_grads(ext):
    value, shapes, starts, locations, weights = make_inputs()
    locations = torch.full_like(locations, 5.0)
    out = ext.forward(value, shapes, starts, locations, weights)
    assert torch.count_nonzero(out) == 0
    grads = ext.backward(value, shapes, starts, locations, weights, torch.ones_like(out))
    assert all(torch.count_nonzero(g) == 0 for g in grads)


@pytest.mark.parametrize("d", [3, 33])
def test_gradcheck_float64(ext, d):
    value, shapes, starts, locations, weights = make_inputs(n=1, lq=2, m=2, d=d, shapes=((3, 4), (2, 2)), p=2,
                                                            dtype=torch.float64, loc_range=(-0.1, 1.1), seed=3)
    args = (value.requires_grad_(), locations.requires_grad_(), weights.requires_grad_())
    assert torch.autograd.gradcheck(
        lambda v, loc, w: CompiledMSDeformAttn.apply(ext, v, shapes, starts, loc, w), args, eps=1e-6, atol=1e-5)


def test_empty_queries(ext):
    value, shapes, starts, locations, weights = make_inputs(lq=0)
    out = ext.forward(value, shapes, starts, locations, weights)
    assert out.shape == (2, 0, value.shape[2] * value.shape[3])
    grad_value, grad_loc, grad_w = ext.backward(value, shapes, starts, locations, weights, out)
    assert torch.count_nonzero(grad_value) == 0 and grad_loc.shape == locations.shape and grad_w.numel() == 0


def test_rejects_cpu_tensors_and_mixed_dtypes(ext):
    value, shapes, starts, locations, weights = make_inputs()
    with pytest.raises(RuntimeError, match="must be a CUDA tensor"):
        ext.forward(value.cpu(), shapes, starts, locations, weights)
    with pytest.raises(RuntimeError, match="must have the dtype of value"):
        ext.forward(value, shapes, starts, locations.double(), weights)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_runs_on_a_non_default_device(ext):
    inputs = make_inputs(device="cuda:1")
    check_against_reference(ext, inputs, rel_out=1e-5, rel_grad=1e-4)


def test_public_dispatcher_uses_cuda_kernel(ext):
    from hdetr.ops import multi_scale_deformable_attention

    value, shapes, starts, locations, weights = make_inputs(m=4, d=8)
    leaves = [t.clone().requires_grad_(True) for t in (value, locations, weights)]
    out = multi_scale_deformable_attention(leaves[0], shapes, starts, leaves[1], leaves[2], backend="cuda")
    grad_output = torch.randn_like(out)
    grads = torch.autograd.grad(out, leaves, grad_output)
    expected, expected_grads = reference_with_grads(value, shapes, locations, weights, grad_output)
    assert_close_rel(out, expected, 1e-5, "output")
    for got, want in zip(grads, expected_grads):
        assert_close_rel(got, want, 1e-4, "grad")
