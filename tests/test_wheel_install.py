"""The released package: an sdist and a wheel built from the tracked files carry the kernel
sources, and hdetr installed from the wheel, outside the source tree, builds its C++ op.

Chain: the checkout's files -> sdist -> wheel (built from the sdist, so both are checked) ->
a fresh virtual environment -> ``hdetr selfcheck`` and one model forward pass with
``msda_backend="cpu"``, both from a folder outside the source tree and with a private op cache.
The new environment gets only hdetr from the wheel; torch and the other dependencies are
reached through a ``.pth`` file naming this interpreter's site-packages, so nothing is
downloaded (``--no-index``, no build isolation).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
KERNEL_FILES = ["bind_cpu.cpp", "cpu/ms_deform_attn_cpu.cpp", "cpu/msda_kernels_avx2.cpp",
                "cpu/msda_kernels_impl.h", "cuda/bind_cuda.cpp", "cuda/ms_deform_attn_cuda.cu",
                "cuda/ms_deform_attn_kernels.cuh"]

FORWARD = """
import json, sys, torch, hdetr
from hdetr.config.model import ModelConfig
from hdetr.ops.cpu_backend import is_cpu_extension_loaded, source_dir
config = ModelConfig(backbone="resnet18", enc_layers=1, dec_layers=2, dim_feedforward=64, hidden_dim=64,
                     nheads=4, num_queries_one2one=6, num_queries_one2many=12, k_one2many=2, num_classes=5,
                     msda_backend="cpu", freeze_stem=False)
model = hdetr.build_model(config).eval()
with torch.no_grad():
    out = model([torch.rand(3, 64, 48, generator=torch.Generator().manual_seed(0))])
print(json.dumps({"file": hdetr.__file__, "sources": str(source_dir()), "compiled": is_cpu_extension_loaded(),
                  "logits": list(out["pred_logits"].shape), "finite": bool(torch.isfinite(out["pred_boxes"]).all())}))
"""


def _tracked_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to know which files are tracked")
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    return [name for name in listed if (ROOT / name).is_file()]


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _outside_env(cache: Path) -> dict[str, str]:
    """This process's environment without anything that would import the source tree."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, "HDETR_OPS_CACHE": str(cache), "OMP_NUM_THREADS": "1"}


def test_wheel_installed_outside_the_tree_builds_the_cpu_kernel(tmp_path):
    source = tmp_path / "src"
    for name in _tracked_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)

    _run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(tmp_path / 'dist')!r})"],
         cwd=source)
    (sdist,) = (tmp_path / "dist").glob("hdetr-*.tar.gz")
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {f"csrc/{name}" for name in KERNEL_FILES} <= in_sdist and "LICENSE" in in_sdist

    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir",
          "-w", str(tmp_path / "wheels"), str(sdist)], cwd=tmp_path)
    (wheel,) = (tmp_path / "wheels").glob("hdetr-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
        metadata = archive.read(next(n for n in in_wheel if n.endswith(".dist-info/METADATA"))).decode()
    assert {f"hdetr/_csrc/{name}" for name in KERNEL_FILES} <= in_wheel
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in in_wheel)
    assert "License-Expression: Apache-2.0" in metadata and "example.com" not in metadata

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    # Installed before the .pth below exists, so pip sees only the new environment.
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
          "--no-cache-dir", str(wheel)], cwd=tmp_path)
    site_packages = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              cwd=tmp_path).strip())
    dependencies = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
                    str(Path(torch.__file__).resolve().parents[1])}
    (site_packages / "zz_dependencies.pth").write_text("".join(f"{d}\n" for d in sorted(dependencies)))

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = _outside_env(tmp_path / "cache")
    report = _run([str(venv / "bin" / "hdetr"), "selfcheck"], cwd=work, env=env)
    assert "auto backend for CPU float32 tensors: cpu" in report and "selfcheck passed" in report, report
    assert list((tmp_path / "cache").glob("cpu-*")), "the op was not built in HDETR_OPS_CACHE"

    result = json.loads(_run([str(python), "-c", FORWARD], cwd=work, env=env).strip().splitlines()[-1])
    installed = Path(result["file"]).resolve()
    assert installed.is_relative_to(site_packages.resolve()), result
    assert not installed.is_relative_to(ROOT) and not installed.is_relative_to(source), result
    assert Path(result["sources"]) == installed.parent / "_csrc"
    assert result["compiled"] and result["logits"] == [1, 6, 5] and result["finite"], result
