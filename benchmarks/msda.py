"""Multi-scale deformable attention on the CPU: C++ kernel against the grid_sample reference.

Measured side by side in one run, at the Deformable-DETR encoder shape (N=2,
levels 64x64, 32x32, 16x16, 8x8 so S=5440, Lq=S, M=8, D=32, L=4, P=4) and the
decoder shape (same value, Lq=1800), float32:

- forward time (no_grad) and forward+backward time: median of ``--repeats``
  runs after ``--warmup`` runs, the two backends alternating run by run so a
  disturbance from other processes hits both;
- peak memory of forward and of forward+backward: growth of the peak RSS
  (VmHWM, reset through /proc/self/clear_refs just before the call) over the
  RSS before the call, each measured in a fresh subprocess so that nothing
  freed by an earlier measurement is reused.

Two location patterns: ``local`` (each query samples a few pixels around its
reference point, as a trained model does) and ``uniform`` (anywhere on the
map, the cache-hostile worst case). Writes ``reports/bench/msda_cpu.json``
with the command, torch version, thread count, machine, and the load average
before and after (other processes sharing the cores show up there).

    python benchmarks/msda.py                 # full run (a few minutes on 2 cores)
    python benchmarks/msda.py --quick         # small shapes, a smoke test of the script
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from hdetr.ops import multi_scale_deformable_attention
from hdetr.ops.cpu_backend import cpu_unavailable_reason, load_cpu_extension
from hdetr.ops.sample_inputs import MSDAInputs, level_start_index_of

BACKENDS = ("torch", "cpu")
FULL_LEVELS = ((64, 64), (32, 32), (16, 16), (8, 8))
QUICK_LEVELS = ((16, 16), (8, 8), (4, 4), (2, 2))
HEADS, CHANNELS, POINTS, BATCH = 8, 32, 4, 2


def case_shapes(quick: bool) -> dict[str, dict]:
    levels = QUICK_LEVELS if quick else FULL_LEVELS
    spatial = sum(h * w for h, w in levels)
    return {
        "encoder": dict(levels=levels, queries=spatial),
        "decoder": dict(levels=levels, queries=120 if quick else 1800),
    }


def make_inputs(case: str, pattern: str, quick: bool, seed: int = 0) -> MSDAInputs:
    """float32 inputs of the case; every differentiable tensor requires grad."""
    shape = case_shapes(quick)[case]
    levels, queries = shape["levels"], shape["queries"]
    gen = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(levels, dtype=torch.long)
    spatial = int((spatial_shapes[:, 0] * spatial_shapes[:, 1]).sum())
    value = torch.randn(BATCH, spatial, HEADS, CHANNELS, generator=gen)
    num_levels = len(levels)
    loc_shape = (BATCH, queries, HEADS, num_levels, POINTS, 2)
    if pattern == "uniform":
        locations = torch.rand(loc_shape, generator=gen)
    elif case == "encoder":
        # Each encoder query sits on a pixel of its own level and samples a
        # couple of pixels around that point on every level.
        centres = torch.cat([torch.stack(torch.meshgrid((torch.arange(w) + 0.5) / w, (torch.arange(h) + 0.5) / h,
                                                        indexing="xy"), -1).reshape(-1, 2) for h, w in levels])
        size = spatial_shapes.flip(-1).float()  # (W, H) per level
        offsets = torch.randn(loc_shape, generator=gen) * 2.0 / size[None, None, None, :, None, :]
        locations = centres[None, :, None, None, None, :] + offsets
    else:
        # Decoder queries refine boxes anywhere on the image; points spread over ~10 % of it.
        centres = torch.rand(BATCH, queries, 1, 1, 1, 2, generator=gen)
        locations = centres + torch.randn(loc_shape, generator=gen) * 0.05
    weights = torch.rand(BATCH, queries, HEADS, num_levels, POINTS, generator=gen).flatten(-2).softmax(-1)
    weights = weights.view(BATCH, queries, HEADS, num_levels, POINTS)
    for t in (value, locations, weights):
        t.requires_grad_(True)
    return MSDAInputs(value, spatial_shapes, level_start_index_of(spatial_shapes), locations, weights)


def run_once(inputs: MSDAInputs, backend: str, mode: str) -> None:
    if mode == "forward":
        with torch.no_grad():
            multi_scale_deformable_attention(*inputs.as_args(), backend=backend)
        return
    out = multi_scale_deformable_attention(*inputs.as_args(), backend=backend)
    out.backward(torch.ones_like(out))
    for t in inputs.differentiable():
        t.grad = None


def time_case(inputs: MSDAInputs, mode: str, warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per run of each backend, alternating backends run by run."""
    times: dict[str, list[float]] = {b: [] for b in BACKENDS}
    for index in range(warmup + repeats):
        for backend in BACKENDS:
            start = time.perf_counter()
            run_once(inputs, backend, mode)
            elapsed = time.perf_counter() - start
            if index >= warmup:
                times[backend].append(elapsed)
    return times


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def _reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark to the current RSS (Linux >= 4.0); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_peak_memory(case: str, pattern: str, backend: str, mode: str, quick: bool, threads: int) -> int:
    """Bytes of peak RSS growth during one call, in this (fresh) process."""
    torch.set_num_threads(threads)
    inputs = make_inputs(case, pattern, quick)
    # Warm the thread pool and load the kernel on a tiny input first, so that
    # their one-time allocations are not charged to the call.
    tiny = make_inputs("decoder", "uniform", quick=True)
    run_once(tiny, backend, mode)
    if _reset_peak_rss():
        before = _status_bytes("VmRSS")
        run_once(inputs, backend, mode)
        return max(0, _status_bytes("VmHWM") - before)
    # Without clear_refs the high-water mark of the imports may hide part of the call's growth.
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    run_once(inputs, backend, mode)
    return max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before)


def peak_memory_in_subprocess(case: str, pattern: str, backend: str, mode: str, quick: bool, threads: int) -> int:
    cmd = [sys.executable, __file__, "--measure-memory", case, pattern, backend, mode, "--threads", str(threads)]
    if quick:
        cmd.append("--quick")
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return int(result.stdout.strip().splitlines()[-1])


def format_row(row: dict) -> str:
    """One table line: times in ms, peak memory growth in MB, ratios reference / kernel."""
    fwd, fb = row["forward"], row["forward_backward"]

    def ms(mode: dict, backend: str) -> str:
        return f"{mode[backend]['median_s'] * 1e3:10.1f}"

    def mb(mode: dict, backend: str, width: int) -> str:
        return f"{mode[backend]['peak_rss_growth_bytes'] / 2**20:{width}.1f}"

    return (f"{row['case']:8} {row['locations']:9} | {ms(fwd, 'torch')} {ms(fwd, 'cpu')} {fwd['speedup']:5.1f} | "
            f"{ms(fb, 'torch')} {ms(fb, 'cpu')} {fb['speedup']:5.1f} | {mb(fwd, 'torch', 10)} {mb(fwd, 'cpu', 6)} | "
            f"{mb(fb, 'torch', 10)} {mb(fb, 'cpu', 6)} {fb['memory_ratio']:5.1f}")


def machine_info() -> dict:
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return {"cpu": model, "logical_cpus": os.cpu_count(), "platform": platform.platform(),
            "python": sys.version.split()[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--patterns", nargs="+", choices=("local", "uniform"), default=["local", "uniform"])
    parser.add_argument("--quick", action="store_true", help="small shapes: checks the script, not the speed")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--output", default="reports/bench/msda_cpu.json")
    parser.add_argument("--measure-memory", nargs=4, metavar=("CASE", "PATTERN", "BACKEND", "MODE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure_memory:
        print(measure_peak_memory(*args.measure_memory, quick=args.quick, threads=args.threads))
        return 0

    torch.set_num_threads(args.threads)
    if load_cpu_extension() is None:
        print(f"the C++ CPU op is unavailable: {cpu_unavailable_reason()}", file=sys.stderr)
        return 1
    command = "python " + " ".join(shlex.quote(a) for a in ([sys.argv[0]] + (argv if argv is not None
                                                                              else sys.argv[1:])))
    load_before = os.getloadavg()
    rows = []
    header = (f"{'case':8} {'locations':9} | {'fwd ref ms':>10} {'fwd cpu ms':>10} {'x':>5} | {'f+b ref ms':>10} "
              f"{'f+b cpu ms':>10} {'x':>5} | {'fwd MB ref':>10} {'cpu':>6} | {'f+b MB ref':>10} {'cpu':>6} {'x':>5}")
    print(f"torch {torch.__version__}, {args.threads} threads, float32, median of {args.repeats} after "
          f"{args.warmup} warm-up runs")
    print(header)
    for case in ("encoder", "decoder"):
        for pattern in args.patterns:
            inputs = make_inputs(case, pattern, args.quick)
            row: dict = {"case": case, "locations": pattern,
                         "shape": {"N": BATCH, "levels": case_shapes(args.quick)[case]["levels"],
                                   "Lq": case_shapes(args.quick)[case]["queries"], "M": HEADS, "D": CHANNELS,
                                   "P": POINTS, "S": int(inputs.value.shape[1])}}
            for mode in ("forward", "forward_backward"):
                times = time_case(inputs, mode, args.warmup, args.repeats)
                row[mode] = {b: {"median_s": statistics.median(t), "min_s": min(t), "runs_s": t}
                             for b, t in times.items()}
                row[mode]["speedup"] = row[mode]["torch"]["median_s"] / row[mode]["cpu"]["median_s"]
                for backend in BACKENDS:
                    row[mode][backend]["peak_rss_growth_bytes"] = 0 if args.no_memory else peak_memory_in_subprocess(
                        case, pattern, backend, mode, args.quick, args.threads)
                cpu_bytes = max(row[mode]["cpu"]["peak_rss_growth_bytes"], 1)
                row[mode]["memory_ratio"] = row[mode]["torch"]["peak_rss_growth_bytes"] / cpu_bytes
            rows.append(row)
            print(format_row(row), flush=True)
    load_after = os.getloadavg()
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
          f"(above {args.threads} means other processes shared the cores)")
    report = {
        "command": command,
        "torch": torch.__version__,
        "threads": args.threads,
        "dtype": "float32",
        "repeats": args.repeats,
        "warmup": args.warmup,
        "quick": args.quick,
        "machine": machine_info(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "memory_measured": not args.no_memory,
        "memory_method": ("peak RSS growth during the call: VmHWM (reset via /proc/self/clear_refs) minus VmRSS "
                          "before it, in a fresh subprocess per measurement"),
        "cases": rows,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
