"""The CUDA sources of the deformable-attention op compile and link (nvcc, no GPU needed).

The compile test builds the full extension into a fresh folder for sm_80 and
sm_90 and imports it, so a CUDA compile error fails CI even on CPU-only runners;
it never touches a GPU. The other tests check the loader's contract on a
machine without a usable device.
"""
from __future__ import annotations

import pytest
import torch

from hdetr.ops import cuda_backend

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
