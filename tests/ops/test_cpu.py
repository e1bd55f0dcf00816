"""The C++ CPU kernel of multi-scale deformable attention against the PyTorch reference."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hdetr.ops import multi_scale_deformable_attention
from hdetr.ops import parity
from hdetr.ops.cpu_backend import cpu_unavailable_reason, load_cpu_extension
from hdetr.ops.sample_inputs import random_msda_inputs

TOLERANCE = {torch.float64: dict(atol=1e-10, rtol=1e-9), torch.float32: dict(atol=2e-5, rtol=1e-4)}


@pytest.fixture(scope="module", autouse=True)
def cpu_extension():
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler on this machine")
    module = load_cpu_extension()
    if module is None:
        pytest.fail(f"the C++ CPU op failed to build: {cpu_unavailable_reason()}")
    return module


def forward_and_grads(inputs, backend, grad_output=None):
    return parity.forward_and_grads(inputs, backend, grad_output, seed=7)


def assert_matches_reference(inputs):
    expected, expected_grads, grad_output = forward_and_grads(inputs, "reference")
    actual, actual_grads, _ = forward_and_grads(inputs, "cpu", grad_output)
    tol = TOLERANCE[inputs.value.dtype]
    torch.testing.assert_close(actual, expected, **tol)
    for name, got, want in zip(("value", "sampling_locations", "attention_weights"), actual_grads, expected_grads):
        torch.testing.assert_close(got, want, **tol, msg=lambda m, name=name: f"grad of {name}: {m}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("channels", [1, 30, 32, 33, 64])
def test_matches_reference_across_channel_counts(dtype, channels):
    inputs = random_msda_inputs(((5, 7), (3, 2), (1, 1)), batch=2, queries=6, heads=2, channels=channels,
                                points=3, dtype=dtype, seed=channels)
    assert_matches_reference(inputs)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("batch,queries", [(1, 1), (3, 1), (1, 9), (3, 5)])
def test_matches_reference_for_batch_and_query_counts(dtype, batch, queries):
    inputs = random_msda_inputs(((4, 6), (2, 3)), batch=batch, queries=queries, heads=4, channels=8, points=2,
                                dtype=dtype, seed=batch * 10 + queries)
    assert_matches_reference(inputs)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_single_pixel_levels(dtype):
    inputs = random_msda_inputs(((1, 1), (1, 1), (1, 1)), batch=2, queries=5, heads=2, channels=4, points=3,
                                dtype=dtype, seed=3)
    assert_matches_reference(inputs)


def test_locations_far_outside_give_zero_output_and_zero_location_grads():
    inputs = random_msda_inputs(((4, 4), (2, 2)), queries=4, location_range=(1.5, 3.0), seed=4)
    out, (grad_value, grad_locations, grad_weights), _ = forward_and_grads(inputs, "cpu")
    assert torch.count_nonzero(out) == 0
    assert torch.count_nonzero(grad_value) == 0
    assert torch.count_nonzero(grad_locations) == 0
    assert torch.count_nonzero(grad_weights) == 0
    assert_matches_reference(inputs)


def test_locations_on_the_border_band_match_reference():
    # Points within half a pixel outside the map still read the border pixels.
    for seed, band in enumerate([(-0.2, 0.05), (0.95, 1.2)]):
        inputs = random_msda_inputs(((4, 5), (2, 3), (1, 1)), queries=12, location_range=band, seed=seed)
        assert_matches_reference(inputs)


def test_non_contiguous_inputs_match_reference():
    base = random_msda_inputs(((5, 4), (2, 2)), batch=2, queries=6, heads=3, channels=6, points=2, seed=5)
    value = base.value.transpose(0, 1).contiguous().transpose(0, 1)
    locations = base.sampling_locations.permute(1, 0, 2, 3, 4, 5).contiguous().permute(1, 0, 2, 3, 4, 5)
    weights = base.attention_weights.transpose(1, 2).contiguous().transpose(1, 2)
    assert not (value.is_contiguous() or locations.is_contiguous() or weights.is_contiguous())
    shapes = base.spatial_shapes.t().contiguous().t()
    strided = type(base)(value, shapes, base.level_start_index, locations, weights)
    assert_matches_reference(strided)


def test_gradients_flow_only_to_inputs_that_need_them():
    inputs = random_msda_inputs(seed=6)
    value = inputs.value.clone().requires_grad_(True)
    out = multi_scale_deformable_attention(value, inputs.spatial_shapes, inputs.level_start_index,
                                           inputs.sampling_locations, inputs.attention_weights, backend="cpu")
    out.sum().backward()
    assert value.grad is not None and inputs.sampling_locations.grad is None


def test_gradcheck_value_locations_weights():
    inputs = random_msda_inputs(((3, 4), (2, 2), (1, 1)), batch=1, queries=3, heads=2, channels=3, points=2,
                                seed=8, location_range=(-0.1, 1.1))

    def op(value, locations, weights):
        return multi_scale_deformable_attention(value, inputs.spatial_shapes, inputs.level_start_index, locations,
                                                weights, backend="cpu")

    leaves = [t.clone().requires_grad_(True) for t in inputs.differentiable()]
    assert torch.autograd.gradcheck(op, leaves, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_multithreaded_paths_match_reference(dtype):
    # One head and several threads splits the queries into chunks with their own
    # grad_value buffers; enough work to leave the serial path.
    previous = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        for heads, batch in ((1, 1), (2, 3)):
            inputs = random_msda_inputs(((8, 8), (4, 4)), batch=batch, queries=96, heads=heads, channels=32,
                                        points=4, dtype=dtype, seed=heads)
            assert_matches_reference(inputs)
    finally:
        torch.set_num_threads(previous)


def test_extension_functions_have_the_shared_signature(cpu_extension):
    inputs = random_msda_inputs(seed=9)
    out = cpu_extension.forward(*inputs.as_args())
    assert out.shape == (2, 7, 3 * 5)
    grads = cpu_extension.backward(*inputs.as_args(), torch.ones_like(out))
    assert [tuple(g.shape) for g in grads] == [tuple(t.shape) for t in inputs.differentiable()]


def test_extension_rejects_levels_that_overflow_value(cpu_extension):
    inputs = random_msda_inputs(((4, 4), (2, 2)), seed=10)
    bad_starts = torch.tensor([0, 18])
    with pytest.raises(RuntimeError, match="does not fit in S"):
        cpu_extension.forward(inputs.value, inputs.spatial_shapes, bad_starts, inputs.sampling_locations,
                              inputs.attention_weights)


def available_instruction_sets(extension) -> list[str]:
    isas = ["generic"]
    try:
        extension.set_kernel_isa("avx2")
        isas.append("avx2")
    except RuntimeError:
        pass
    finally:
        extension.set_kernel_isa("auto")
    return isas


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_every_instruction_set_matches_reference(cpu_extension, dtype):
    # The generic loops are what CPUs without AVX2 run; check them here too.
    try:
        for isa in available_instruction_sets(cpu_extension):
            cpu_extension.set_kernel_isa(isa)
            assert cpu_extension.kernel_isa() == isa
            for channels in (1, 33, 64):
                inputs = random_msda_inputs(((5, 6), (2, 3), (1, 1)), batch=2, queries=5, heads=2, channels=channels,
                                            points=3, dtype=dtype, seed=channels)
                assert_matches_reference(inputs)
    finally:
        cpu_extension.set_kernel_isa("auto")


def test_unknown_instruction_set_is_rejected(cpu_extension):
    with pytest.raises(RuntimeError, match="unknown instruction set 'sse9'"):
        cpu_extension.set_kernel_isa("sse9")
    assert cpu_extension.kernel_isa() in ("generic", "avx2")


def test_benchmark_script_runs_and_writes_its_report(tmp_path):
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "msda.py"
    output = tmp_path / "msda_cpu.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(script), "--quick", "--repeats", "1", "--warmup", "0", "--patterns",
                             "local", "--no-memory", "--output", str(output)], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(output.read_text())
    assert report["command"].startswith("python ") and "--quick" in report["command"]
    assert [c["case"] for c in report["cases"]] == ["encoder", "decoder"]
    assert report["cases"][0]["forward_backward"]["speedup"] > 0
    # The memory probe itself, in this process, on the smallest case.
    spec = importlib.util.spec_from_file_location("msda_benchmark", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.measure_peak_memory("decoder", "local", "cpu", "forward_backward", quick=True, threads=1) >= 0
