"""``hdetr selfcheck``: versions, the op backend ``auto`` picks, and kernel parity.

Every compiled backend that is available here (C++ CPU; CUDA when a GPU is
visible) is compared with the PyTorch reference on a small random input, in
float64 and float32: max abs error of the output and of the gradients for
value, sampling_locations and attention_weights. Exit code 1 if any exceeds
its tolerance. The first run may compile the kernels (about a minute).
"""
from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys

import torch

from hdetr.ops.parity import QUANTITIES


def register(subparsers) -> None:
    parser = subparsers.add_parser("selfcheck", help="print versions and check the deformable-attention kernels",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(func=run)


def _compiler_version() -> str:
    compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        return "none found"
    try:
        out = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{compiler} ({exc})"
    return out.splitlines()[0] if out else compiler


def _print_versions() -> None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        hdetr_version = version("hdetr")
    except PackageNotFoundError:
        hdetr_version = "not installed (running from a source tree)"
    try:
        import torchvision

        vision = torchvision.__version__
    except ImportError:
        vision = "not installed"
    cuda = (f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} device(s) visible"
            if torch.version.cuda else "no CUDA build")
    print(f"hdetr       {hdetr_version}")
    print(f"python      {sys.version.split()[0]} ({platform.platform()})")
    print(f"torch       {torch.__version__} ({cuda}; {torch.get_num_threads()} CPU threads)")
    print(f"torchvision {vision}")
    print(f"c++         {_compiler_version()}")


def _print_auto_choice(device: str) -> str | None:
    """Print the backend ``auto`` uses for float32 tensors on ``device``; return it if compiled."""
    from hdetr.ops import select_backend

    choice = select_backend(device, torch.float32)
    why = f" (reference fallback: {choice.fallback_reason})" if choice.fallback_reason else ""
    if choice.name == "cpu":
        from hdetr.ops.cpu_backend import load_cpu_extension

        why = f" ({load_cpu_extension().kernel_isa()} inner loops)"
    print(f"auto backend for {device.upper()} float32 tensors: {choice.name}{why}")
    return choice.name if choice.name != "torch" else None


def run(args) -> int:
    from hdetr.ops.parity import check_parity

    _print_versions()
    backends = [b for b in [_print_auto_choice("cpu")] if b]
    if torch.cuda.is_available():
        backends += [b for b in [_print_auto_choice("cuda")] if b]
    if not backends:
        print("no compiled backend available: only the PyTorch reference runs here (nothing to compare)")
        return 0
    header = f"{'backend':8} {'dtype':8} " + " ".join(f"{q:>24}" for q in QUANTITIES) + "  tolerance  result"
    print("\nparity against the PyTorch reference (max abs error):")
    print(header)
    failed = False
    for backend in backends:
        for dtype in (torch.float64, torch.float32):
            result = check_parity(backend, dtype)
            errors = " ".join(f"{result.errors[q]:>24.3e}" for q in QUANTITIES)
            verdict = "ok" if result.passed else "FAILED"
            print(f"{backend:8} {str(dtype).removeprefix('torch.'):8} {errors}  {result.tolerance:9.0e}  {verdict}")
            failed |= not result.passed
    if failed:
        print("selfcheck FAILED: a compiled kernel disagrees with the reference", file=sys.stderr)
        return 1
    print("selfcheck passed")
    return 0
