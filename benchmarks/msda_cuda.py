"""CUDA kernel of multi-scale deformable attention vs the PyTorch reference, side by side.

Times forward and forward+backward (through autograd, as the model runs them) with
CUDA events, and records the peak extra memory of one call, for the Deformable-DETR
encoder shape (N=2, levels 64x64/32x32/16x16/8x8 so S=5440, Lq=S, M=8, D=32, L=4,
P=4) and a decoder shape (Lq=1800), in float32 and bfloat16. Prints the ratios and
writes JSON (with the command that produced it) to ``--out`` (default reports/bench).

Usage:  python benchmarks/msda_cuda.py [--out DIR] [--iters 20] [--warmup 3]
Without a CUDA device it prints why and exits 0.
"""
from __future__ import annotations

import argparse
import datetime
import json
import shlex
import statistics
import sys
from pathlib import Path

import torch

LEVELS = ((64, 64), (32, 32), (16, 16), (8, 8))
SHAPES = {
    "encoder": dict(batch=2, queries=sum(h * w for h, w in LEVELS), heads=8, channels=32, points=4),
    "decoder": dict(batch=2, queries=1800, heads=8, channels=32, points=4),
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def make_inputs(batch, queries, heads, channels, points, dtype, device="cuda", seed=0):
    """value [N, S, M, D], spatial_shapes [L, 2], level_start_index [L],
    sampling_locations [N, Lq, M, L, P, 2], attention_weights [N, Lq, M, L, P]."""
    gen = torch.Generator(device=device).manual_seed(seed)
    spatial_shapes = torch.tensor(LEVELS, dtype=torch.long, device=device)
    sizes = spatial_shapes.prod(1)
    level_start_index = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    s, levels = int(sizes.sum()), len(LEVELS)
    value = torch.randn(batch, s, heads, channels, generator=gen, device=device).to(dtype)
    locations = torch.rand(batch, queries, heads, levels, points, 2, generator=gen, device=device).to(dtype)
    logits = torch.randn(batch, queries, heads, levels * points, generator=gen, device=device)
    weights = logits.softmax(-1).view(batch, queries, heads, levels, points).to(dtype)
    return value, spatial_shapes, level_start_index, locations, weights


def time_ms(fn, iters, warmup):
    """Median milliseconds of fn() over iters runs, measured with CUDA events."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def peak_extra_mb(fn):
    """Peak memory allocated by one fn() call beyond what was allocated before it, in MiB."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def measure(backend_fn, inputs, iters, warmup):
    value, shapes, starts, locations, weights = inputs
    leaves = [t.detach().clone().requires_grad_(True) for t in (value, locations, weights)]
    grad_output = torch.randn_like(backend_fn(value, shapes, starts, locations, weights))

    def forward():
        with torch.no_grad():
            return backend_fn(value, shapes, starts, locations, weights)

    def forward_backward():
        out = backend_fn(leaves[0], shapes, starts, leaves[1], leaves[2])
        return torch.autograd.grad(out, leaves, grad_output)

    return {
        "forward_ms": time_ms(forward, iters, warmup),
        "forward_backward_ms": time_ms(forward_backward, iters, warmup),
        "forward_peak_extra_mib": peak_extra_mb(forward),
        "forward_backward_peak_extra_mib": peak_extra_mb(forward_backward),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/bench"), help="folder for msda_cuda.json")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)

    if not torch.cuda.is_available():
        print("msda_cuda benchmark: no CUDA device visible (torch.cuda.is_available() is False); nothing to measure")
        return 0
    from hdetr.ops import cuda_backend
    from hdetr.ops.compiled_function import CompiledMSDeformAttn
    from hdetr.ops.reference import ms_deform_attn_reference

    extension = cuda_backend.load_cuda_extension()
    if extension is None:
        print(f"msda_cuda benchmark: the CUDA op is unavailable: {cuda_backend.cuda_unavailable_reason()}",
              file=sys.stderr)
        return 1

    backends = {
        "cuda": lambda v, s, i, loc, w: CompiledMSDeformAttn.apply(extension, v, s, i, loc, w),
        "reference": lambda v, s, i, loc, w: ms_deform_attn_reference(v, s, loc, w),
    }
    results = []
    for shape_name, shape in SHAPES.items():
        for dtype_name, dtype in DTYPES.items():
            inputs = make_inputs(**shape, dtype=dtype)
            row = {"shape": shape_name, **shape, "levels": [list(hw) for hw in LEVELS], "dtype": dtype_name}
            with torch.no_grad():
                got = backends["cuda"](*inputs)
                want = backends["reference"](*inputs)
            row["max_abs_diff_vs_reference"] = (got.float() - want.float()).abs().max().item()
            for name, fn in backends.items():
                row[name] = measure(fn, inputs, args.iters, args.warmup)
            cuda, ref = row["cuda"], row["reference"]
            row["speedup_forward"] = ref["forward_ms"] / cuda["forward_ms"]
            row["speedup_forward_backward"] = ref["forward_backward_ms"] / cuda["forward_backward_ms"]
            row["memory_ratio_forward_backward"] = (
                ref["forward_backward_peak_extra_mib"] / max(cuda["forward_backward_peak_extra_mib"], 1e-9))
            results.append(row)
            print(f"{shape_name:8s} {dtype_name:9s} fwd {cuda['forward_ms']:7.3f} ms vs ref {ref['forward_ms']:7.3f} ms "
                  f"(x{row['speedup_forward']:.1f}) | fwd+bwd {cuda['forward_backward_ms']:7.3f} ms vs ref "
                  f"{ref['forward_backward_ms']:7.3f} ms (x{row['speedup_forward_backward']:.1f}) | peak fwd+bwd "
                  f"{cuda['forward_backward_peak_extra_mib']:.0f} MiB vs {ref['forward_backward_peak_extra_mib']:.0f} MiB"
                  f" | max diff {row['max_abs_diff_vs_reference']:.2e}", flush=True)
            del inputs
            torch.cuda.empty_cache()

    report = {
        "benchmark": "msda_cuda",
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "iters": args.iters,
        "warmup": args.warmup,
        "timing": "median of CUDA-event times; forward under no_grad, forward_backward through autograd",
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "msda_cuda.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
