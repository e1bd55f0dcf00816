"""``hdetr build-ops``: compile the deformable-attention kernels ahead of time.

Without it, the kernels are compiled on first use. The build lands in the
per-user cache (``$HDETR_OPS_CACHE``, default ``~/.cache/hdetr/ops``), one
folder per torch version and source hash.

    hdetr build-ops                 # C++ CPU op, and the CUDA op if a GPU is visible
    hdetr build-ops --backend cuda  # CUDA op; without a GPU set TORCH_CUDA_ARCH_LIST
"""
from __future__ import annotations

import argparse
import time

import torch


def register(subparsers) -> None:
    parser = subparsers.add_parser("build-ops", help="compile the C++/CUDA deformable-attention ops ahead of time",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("all", "cpu", "cuda"), default="all",
                        help="which op to build (default: cpu, plus cuda when a GPU is visible)")
    parser.add_argument("--verbose", action="store_true", help="show the compiler's output")
    parser.set_defaults(func=run)


def _build_cpu(verbose: bool) -> tuple[bool, str]:
    from hdetr.ops.cpu_backend import cpu_build_error, cpu_unavailable_reason, load_cpu_extension

    module = load_cpu_extension(verbose=verbose)
    if module is not None:
        return True, module.__file__
    detail = f"\n{cpu_build_error()}" if verbose and cpu_build_error() else ""
    return False, cpu_unavailable_reason() + detail


def _build_cuda(verbose: bool, explicit: bool) -> tuple[bool | None, str]:
    """(True, .so path) when built, (False, why) when it should have built, (None, why) when not attempted."""
    try:
        from hdetr.ops import cuda_backend
    except ImportError as exc:
        return (False if explicit else None), f"the CUDA op is not part of this installation ({exc})"
    module = cuda_backend.load_cuda_extension()
    if module is not None:
        return True, module.__file__
    reason = cuda_backend.cuda_unavailable_reason()
    if not torch.cuda.is_available() and not explicit:
        return None, reason
    if explicit and not torch.cuda.is_available() and cuda_backend.find_cuda_home() is not None:
        # No GPU here but nvcc is: compile for TORCH_CUDA_ARCH_LIST (images, clusters' login nodes).
        try:
            module = cuda_backend.build_cuda_extension(verbose=verbose)
        except Exception as exc:  # noqa: BLE001 - reported to the user with the compiler's words
            return False, f"building the CUDA op failed: {cuda_backend.summarize_build_error(str(exc))}"
        return True, module.__file__
    return False, reason


def run(args) -> int:
    from hdetr.ops.cpu_backend import cache_root

    print(f"cache: {cache_root()}  (set HDETR_OPS_CACHE to move it)")
    ok = True
    if args.backend in ("all", "cpu"):
        start = time.perf_counter()
        built, detail = _build_cpu(args.verbose)
        took = time.perf_counter() - start
        print(f"cpu : ok ({took:.1f} s, built or found in the cache) -> {detail}" if built
              else f"cpu : NOT built: {detail}")
        ok &= built
    if args.backend in ("all", "cuda"):
        start = time.perf_counter()
        built, detail = _build_cuda(args.verbose, explicit=args.backend == "cuda")
        took = time.perf_counter() - start
        if built:
            print(f"cuda: ok ({took:.1f} s, built or found in the cache) -> {detail}")
        else:
            print(f"cuda: {'NOT built' if built is False else 'skipped'}: {detail}")
        ok &= built is not False
    return 0 if ok else 1
