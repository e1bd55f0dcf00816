"""The CUDA op's sources, checked without a GPU.

- The compile test builds the full extension with nvcc into a fresh folder for
  sm_80 and sm_90 and imports it, so a CUDA compile error fails CI on CPU-only
  runners; it never touches a GPU.
- The emulation tests compile the kernels of ``ms_deform_attn_kernels.cuh`` as
  C++ (``csrc/cuda/emulation``: 32 std::threads per warp, real shuffles and
  atomics) and compare them with the PyTorch reference, so their arithmetic is
  tested on every machine, with or without a GPU.
- The rest checks the loader's contract on a machine without a usable device.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import shutil
from pathlib import Path

import pytest
import torch

from hdetr.ops import cuda_backend
from hdetr.ops.compiled_function import CompiledMSDeformAttn

CI_ARCH_LIST = "8.0;9.0"

needs_nvcc = pytest.mark.skipif(
    torch.version.cuda is None or cuda_backend.find_cuda_home() is None,
    reason="nvcc not found (set CUDA_HOME to a CUDA toolkit) or torch built without CUDA",
)


@pytest.mark.nvcc
@pytest.mark.slow
@needs_nvcc
def test_cuda_extension_compiles_and_links(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", CI_ARCH_LIST)
    try:
        module = cuda_backend.build_cuda_extension(tmp_path / "build")
    except Exception as exc:  # noqa: BLE001 - the test's job is to show nvcc's message
        pytest.fail(f"building the CUDA op failed:\n{exc}", pytrace=False)
    assert callable(module.forward) and callable(module.backward)
    assert "grad_output" in module.backward.__doc__
    built = list((tmp_path / "build").glob("*.so")) + list((tmp_path / "build").glob("*.pyd"))
    assert built, f"no shared library in {tmp_path / 'build'}"


@pytest.mark.nvcc
@needs_nvcc
def test_compile_error_reports_nvcc_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", CI_ARCH_LIST)
    broken = tmp_path / "src"
    broken.mkdir()
    (broken / "broken_kernel.cu").write_text("__global__ void k(float* x) { x[0] = undeclared_name; }\n")
    with pytest.raises(RuntimeError) as info:
        cuda_backend.build_cuda_extension(tmp_path / "build", source_root=broken)
    message = str(info.value)
    assert "undeclared_name" in message and "error" in message
    summary = cuda_backend.summarize_build_error(message)
    assert "broken_kernel.cu" in summary and "undeclared_name" in summary


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the loader on a machine without a CUDA device")
def test_loader_returns_none_with_reason_without_device():
    cuda_backend.reset_cuda_extension_state()
    try:
        assert cuda_backend.load_cuda_extension() is None
        reason = cuda_backend.cuda_unavailable_reason()
        assert "without CUDA" in reason or "no CUDA device" in reason
        assert cuda_backend.load_cuda_extension() is None  # remembered, still no exception
    finally:
        cuda_backend.reset_cuda_extension_state()


def test_build_dir_follows_cache_env_and_sources(tmp_path, monkeypatch):
    monkeypatch.setenv(cuda_backend.CACHE_ENV, str(tmp_path / "ops"))
    build_dir = cuda_backend.default_build_dir()
    assert build_dir.parent == tmp_path / "ops"
    assert build_dir.name.startswith("cuda-") and build_dir.name.endswith(cuda_backend.source_hash())
    names = {p.name for p in cuda_backend.cuda_sources()}
    assert {"bind_cuda.cpp", "ms_deform_attn_cuda.cu", "ms_deform_attn_cuda.h"} <= names

    copy = tmp_path / "src"
    copy.mkdir()
    for path in cuda_backend.cuda_sources():
        (copy / path.name).write_bytes(path.read_bytes())
    assert cuda_backend.source_hash(copy) == cuda_backend.source_hash()
    (copy / "ms_deform_attn_cuda.cu").write_text((copy / "ms_deform_attn_cuda.cu").read_text() + "\n// edit\n")
    assert cuda_backend.source_hash(copy) != cuda_backend.source_hash()


def test_missing_source_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        cuda_backend.cuda_sources(tmp_path / "nowhere")


# --- the CUDA kernels, emulated on the CPU ----------------------------------------------------

def _load_cuda_cases():
    """tests/ops/test_cuda.py's input builder and reference comparison (one source for both files)."""
    spec = importlib.util.spec_from_file_location("_msda_cuda_cases", Path(__file__).with_name("test_cuda.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cases = _load_cuda_cases()
EMULATION_BLOCKS = 3  # a small grid, so the kernels' grid-stride loops run many times


class _EmulatedKernels:
    """The interface of the CUDA module (forward/backward) over the emulation, for CPU tensors."""

    def __init__(self, module):
        self.module = module

    def forward(self, *inputs):
        return self.module.forward(*inputs, EMULATION_BLOCKS)

    def backward(self, *inputs):
        return tuple(self.module.backward(*inputs, EMULATION_BLOCKS))


@pytest.fixture(scope="module")
def emulated():
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler (c++ / g++) to build the kernel emulation")
    from torch.utils.cpp_extension import load

    harness = cuda_backend.source_dir() / "emulation" / "emulate_kernels.cpp"
    kernels = cuda_backend.source_dir() / "ms_deform_attn_kernels.cuh"
    digest = hashlib.sha256(harness.read_bytes() + kernels.read_bytes()).hexdigest()[:16]
    build_dir = cuda_backend.cache_root() / f"cuda-emulation-{digest}"
    build_dir.mkdir(parents=True, exist_ok=True)
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "No CUDA runtime" noise
    module = load(name=f"hdetr_msda_cuda_emulation_{digest}", sources=[str(harness)],
                  extra_cflags=["-O1", "-std=c++20"], extra_ldflags=["-pthread"],
                  build_directory=str(build_dir), verbose=False)
    return _EmulatedKernels(module)


EMULATED_CASES = {
    "D32-M8": dict(n=2, lq=6, m=8, d=32),
    "D1": dict(d=1),
    "D30": dict(d=30),
    "D33": dict(d=33),
    "D64": dict(d=64, m=3),
    "1x1-levels": dict(shapes=((1, 1), (2, 1), (1, 3))),
    "out-of-range": dict(loc_range=(-0.6, 1.6)),
    "N3-Lq1": dict(n=3, lq=1),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(EMULATED_CASES.values()), ids=list(EMULATED_CASES))
def test_emulated_kernels_match_reference_float32(emulated, case):
    cases.check_against_reference(emulated, cases.make_inputs(device="cpu", **case), rel_out=1e-5, rel_grad=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("dtype, rel", [(torch.float64, 1e-10), (torch.float16, 2e-2), (torch.bfloat16, 5e-2)])
def test_emulated_kernels_match_reference_other_dtypes(emulated, dtype, rel):
    inputs = cases.make_inputs(n=2, lq=8, m=4, d=32, dtype=dtype, device="cpu")
    cases.check_against_reference(emulated, inputs, rel_out=rel, rel_grad=rel)


@pytest.mark.slow
def test_emulated_kernels_gradcheck_float64(emulated):
    value, shapes, starts, locations, weights = cases.make_inputs(
        n=1, lq=2, m=2, d=33, shapes=((3, 4), (2, 2)), p=2, dtype=torch.float64, loc_range=(-0.1, 1.1), seed=3,
        device="cpu")
    args = (value.requires_grad_(), locations.requires_grad_(), weights.requires_grad_())
    assert torch.autograd.gradcheck(
        lambda v, loc, w: CompiledMSDeformAttn.apply(emulated, v, shapes, starts, loc, w), args, eps=1e-6,
        atol=1e-5)
