"""Backend choice, fallback warnings, lazy build and input validation of the op dispatcher."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings

import pytest
import torch

import hdetr.ops.cpu_backend as cpu_backend
import hdetr.ops.dispatch as dispatch
from hdetr.ops import (
    MSDABackendError,
    MSDAFallbackWarning,
    MSDAInputError,
    ms_deform_attn_reference,
    multi_scale_deformable_attention,
    select_backend,
)
from hdetr.ops.sample_inputs import random_msda_inputs

needs_compiler = pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                                    reason="no C++ compiler on this machine")


@pytest.fixture
def fresh_op_state():
    """Forget the build result and the warnings before and after the test."""
    cpu_backend.reset_cpu_extension_state()
    dispatch.reset_fallback_warnings()
    yield
    cpu_backend.reset_cpu_extension_state()
    dispatch.reset_fallback_warnings()


@pytest.fixture
def broken_sources(tmp_path, monkeypatch):
    """A csrc tree that fails to compile at once, built into a private cache."""
    root = tmp_path / "csrc"
    (root / "cpu").mkdir(parents=True)
    (root / "bind_cpu.cpp").write_text('#error "kernel broken on purpose"\n')
    (root / "cpu" / "kernel.cpp").write_text('#error "kernel broken on purpose"\n')
    monkeypatch.setenv("HDETR_OPS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cpu_backend, "source_dir", lambda: root)
    return root


def call(inputs, backend="auto"):
    return multi_scale_deformable_attention(*inputs.as_args(), backend=backend)


@needs_compiler
def test_auto_picks_the_cpu_kernel_when_built(fresh_op_state):
    inputs = random_msda_inputs(dtype=torch.float32, requires_grad=True)
    assert select_backend("cpu", torch.float32) == dispatch.BackendChoice("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error", MSDAFallbackWarning)
        out = call(inputs)
    assert "CompiledMSDeformAttn" in type(out.grad_fn).__name__
    reference = ms_deform_attn_reference(inputs.value, inputs.spatial_shapes, inputs.sampling_locations,
                                         inputs.attention_weights)
    torch.testing.assert_close(out, reference, atol=2e-5, rtol=1e-4)


def test_failed_build_falls_back_with_one_warning(fresh_op_state, broken_sources):
    inputs = random_msda_inputs(dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = call(inputs)
        second = call(inputs)
    fallbacks = [w for w in caught if issubclass(w.category, MSDAFallbackWarning)]
    assert len(fallbacks) == 1
    assert "kernel broken on purpose" in str(fallbacks[0].message)
    assert "PyTorch reference" in str(fallbacks[0].message)
    reference = ms_deform_attn_reference(inputs.value, inputs.spatial_shapes, inputs.sampling_locations,
                                         inputs.attention_weights)
    torch.testing.assert_close(first, reference)
    torch.testing.assert_close(second, reference)
    assert "kernel broken on purpose" in cpu_backend.cpu_unavailable_reason()


def test_explicit_cpu_backend_raises_when_the_build_failed(fresh_op_state, broken_sources):
    inputs = random_msda_inputs()
    with pytest.raises(MSDABackendError, match="backend='cpu' is unavailable: .*broken on purpose"):
        call(inputs, backend="cpu")


def test_missing_loader_result_is_remembered_and_warned_once(fresh_op_state, monkeypatch):
    attempts = []

    def failing_build(root, verbose):
        attempts.append(root)
        raise RuntimeError("Error building extension 'x': c++: error: simulated compiler failure")

    monkeypatch.setattr(cpu_backend, "_build", failing_build)
    inputs = random_msda_inputs()
    with pytest.warns(MSDAFallbackWarning, match="simulated compiler failure"):
        call(inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MSDAFallbackWarning)
        call(inputs)
    assert len(attempts) == 1


def test_missing_compiler_is_reported_without_building(fresh_op_state, monkeypatch):
    monkeypatch.setattr(cpu_backend, "_compiler", lambda: None)
    assert cpu_backend.load_cpu_extension() is None
    assert "no C++ compiler found" in cpu_backend.cpu_unavailable_reason()
    assert select_backend("cpu", torch.float32).name == "torch"


def test_cache_location_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HDETR_OPS_CACHE", str(tmp_path / "ops"))
    build_dir = cpu_backend.build_directory()
    assert build_dir.parent == tmp_path / "ops"
    assert build_dir.name.startswith("cpu-") and build_dir.name.endswith(cpu_backend.source_hash())
    monkeypatch.delenv("HDETR_OPS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cpu_backend.cache_root() == tmp_path / "xdg" / "hdetr" / "ops"


def test_torch_backend_never_compiles(fresh_op_state, monkeypatch):
    def forbidden_build(root, verbose):
        raise AssertionError("backend='torch' must not compile the C++ op")

    monkeypatch.setattr(cpu_backend, "_build", forbidden_build)
    inputs = random_msda_inputs(requires_grad=True)
    out = call(inputs, backend="torch")
    out.sum().backward()
    assert not cpu_backend.is_cpu_extension_loaded()
    assert cpu_backend.cpu_unavailable_reason() == ""


def test_importing_the_ops_package_compiles_nothing():
    code = ("import sys, hdetr.ops, hdetr.ops.dispatch, hdetr.ops.cpu_backend; "
            "assert 'torch.utils.cpp_extension' not in sys.modules, 'cpp_extension imported'")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr


def test_auto_for_cuda_tensors_without_cuda_op_falls_back(monkeypatch):
    monkeypatch.setattr(dispatch, "_load_cuda_backend", lambda: None)
    choice = select_backend("cuda", torch.float32)
    assert choice.name == "torch"
    assert "CUDA op" in choice.fallback_reason
    with pytest.raises(MSDABackendError, match="backend='cuda' is unavailable"):
        select_backend("cuda", torch.float32, "cuda")


def test_unsupported_dtype_uses_reference_under_auto_and_fails_explicitly():
    choice = select_backend("cpu", torch.bfloat16)
    assert choice.name == "torch" and "bfloat16" in choice.fallback_reason
    with pytest.raises(MSDABackendError, match="float32, float64 inputs"):
        select_backend("cpu", torch.bfloat16, "cpu")


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_autocast_runs_in_float32_like_the_official_op(backend):
    inputs = random_msda_inputs(dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = multi_scale_deformable_attention(inputs.value.bfloat16(), inputs.spatial_shapes,
                                               inputs.level_start_index, inputs.sampling_locations,
                                               inputs.attention_weights.bfloat16(), backend=backend)
    assert out.dtype == torch.float32
    expected = ms_deform_attn_reference(inputs.value.bfloat16().float(), inputs.spatial_shapes,
                                        inputs.sampling_locations, inputs.attention_weights.bfloat16().float())
    torch.testing.assert_close(out, expected, atol=2e-5, rtol=1e-4)


def test_fallback_warning_points_at_the_caller(fresh_op_state, monkeypatch):
    monkeypatch.setattr(dispatch, "load_extension", lambda kind: None)
    monkeypatch.setattr(dispatch, "unavailable_reason", lambda kind: "simulated")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call(random_msda_inputs())
    assert [w.filename for w in caught if issubclass(w.category, MSDAFallbackWarning)] == [__file__]


def test_backend_device_mismatch_and_unknown_backend_are_rejected():
    with pytest.raises(MSDABackendError, match="backend='cuda' needs CUDA tensors, got tensors on cpu"):
        select_backend("cpu", torch.float32, "cuda")
    with pytest.raises(MSDABackendError, match="backend='fast' is not one of auto, torch, cpu, cuda"):
        call(random_msda_inputs(), backend="fast")


def _replace(inputs, **changes):
    args = dict(value=inputs.value, spatial_shapes=inputs.spatial_shapes, level_start_index=inputs.level_start_index,
                sampling_locations=inputs.sampling_locations, attention_weights=inputs.attention_weights)
    args.update(changes)
    return args


INVALID_CASES = {
    "value_3d": (lambda i: dict(value=i.value[0]), r"value must have shape \[N, S, M, D\]"),
    "value_int": (lambda i: dict(value=i.value.long()), "value must be a floating tensor"),
    "spatial_sum": (lambda i: dict(value=i.value[:, :-1]), r"sum\(H\*W\) = 40 positions, but value has S = 39"),
    "spatial_float": (lambda i: dict(spatial_shapes=i.spatial_shapes.double()),
                      "spatial_shapes must be an integer tensor"),
    "spatial_3_cols": (lambda i: dict(spatial_shapes=torch.ones(3, 3, dtype=torch.long)),
                       r"spatial_shapes must have shape \[L, 2\]"),
    "locations_heads": (lambda i: dict(sampling_locations=i.sampling_locations[:, :, :2]),
                        r"sampling_locations must have shape \[N, Lq, M, L, P, 2\] = \[2, 7, 3, 3, 4, 2\]"),
    "locations_levels": (lambda i: dict(sampling_locations=i.sampling_locations[:, :, :, :2]),
                         r"L=3 from spatial_shapes"),
    "weights_points": (lambda i: dict(attention_weights=i.attention_weights[..., :3]),
                       r"attention_weights must have shape \[N, Lq, M, L, P\] = \[2, 7, 3, 3, 4\]"),
    "weights_dtype": (lambda i: dict(attention_weights=i.attention_weights.float()),
                      "attention_weights must have value's dtype torch.float64"),
    "start_index": (lambda i: dict(level_start_index=torch.tensor([0, 20, 35])),
                    r"level_start_index must be the offsets .* \[0, 24, 39\]"),
    "start_index_len": (lambda i: dict(level_start_index=torch.tensor([0, 24])),
                        r"level_start_index must have shape \[L\] = \[3\]"),
    "not_a_tensor": (lambda i: dict(value=[1.0]), "value must be a torch.Tensor, got list"),
}


@pytest.mark.parametrize("case", sorted(INVALID_CASES))
@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_invalid_inputs_name_the_argument(case, backend):
    mutate, message = INVALID_CASES[case]
    inputs = random_msda_inputs()  # levels (6, 4), (3, 5), (1, 1): S = 40
    with pytest.raises(MSDAInputError, match=message):
        multi_scale_deformable_attention(**_replace(inputs, **mutate(inputs)), backend=backend)


# A Python C-API module (no pybind11, no torch headers): compiles in about a second.
LIGHT_BINDING = """
#include <Python.h>
#define JOIN2(a, b) a##b
#define JOIN(a, b) JOIN2(a, b)
#define TEXT2(x) #x
#define TEXT(x) TEXT2(x)
int light_kernel();
static PyObject* forward(PyObject*, PyObject*) { return PyLong_FromLong(light_kernel()); }
static PyMethodDef methods[] = {{"forward", forward, METH_NOARGS, ""}, {nullptr, nullptr, 0, nullptr}};
static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, TEXT(TORCH_EXTENSION_NAME), nullptr, -1, methods};
PyMODINIT_FUNC JOIN(PyInit_, TORCH_EXTENSION_NAME)(void) { return PyModule_Create(&module_def); }
"""


@needs_compiler
def test_concurrent_first_builds_share_one_cache(tmp_path):
    # Two processes (as in DDP) build into one empty cache at once; the file
    # lock of cpp_extension makes one build while the other waits, then both
    # load the same library. A light source tree (no torch headers) keeps the
    # compile short; the build path is the one the real op takes.
    root = tmp_path / "csrc"
    (root / "cpu").mkdir(parents=True)
    (root / "bind_cpu.cpp").write_text(LIGHT_BINDING)
    (root / "cpu" / "kernel.cpp").write_text("int light_kernel() { return 42; }\n")
    code = ("from hdetr.ops.cpu_backend import load_cpu_extension, cpu_unavailable_reason; "
            f"m = load_cpu_extension(source_root={str(root)!r}); "
            "print(f'{m.__file__} {m.forward()}' if m else 'FAILED ' + cpu_unavailable_reason())")
    env = {**os.environ, "HDETR_OPS_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1", "MAX_JOBS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    lines = [out.strip().splitlines()[-1] for out, _ in outputs]
    assert lines[0] == lines[1], outputs
    library, answer = lines[0].split()
    assert answer == "42" and library.startswith(str(tmp_path / "cache")) and library.endswith(".so")


@needs_compiler
def test_selfcheck_reports_the_cpu_backend_and_passes(capsys):
    from hdetr.cli import main

    assert main(["selfcheck"]) == 0
    out = capsys.readouterr().out
    assert "auto backend for CPU float32 tensors: cpu" in out
    assert "selfcheck passed" in out


@needs_compiler
def test_selfcheck_fails_when_a_kernel_disagrees(capsys, monkeypatch):
    real = cpu_backend.load_cpu_extension()

    class SkewedKernel:
        """The real kernel with a 1 % error in the forward."""

        @staticmethod
        def forward(*args):
            return real.forward(*args) * 1.01

        backward = staticmethod(real.backward)

    monkeypatch.setattr(dispatch, "load_extension", lambda kind: SkewedKernel)
    from hdetr.cli import main

    assert main(["selfcheck"]) == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.out and "selfcheck FAILED" in captured.err


def test_build_ops_reports_a_failed_build(fresh_op_state, broken_sources, capsys):
    from hdetr.cli import main

    assert main(["build-ops", "--backend", "cpu"]) == 1
    out = capsys.readouterr().out
    assert "cpu : NOT built" in out and "kernel broken on purpose" in out


@needs_compiler
def test_build_ops_prints_the_built_library(capsys):
    from hdetr.cli import main

    assert main(["build-ops", "--backend", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "cpu : ok" in out and ".so" in out
