"""Forward time and peak memory of the default H-Deformable-DETR on CPU.

The paper's R50 hybrid model (300 + 1500 queries, 6 + 6 layers, FFN 2048, two-stage,
box refinement, mixed selection, look forward twice) on two 512x512 images. Each case
runs in a fresh subprocess so its peak RSS is its own:

- ``train``: train mode, all 1800 queries, group-wise self-attention (this project);
- ``train_masked``: the same with the official masked (n+T) x (n+T) self-attention,
  for the side-by-side ratio;
- ``eval``: eval mode under ``torch.no_grad``, the 300 one-to-one queries;
- ``self_attention``: one decoder self-attention (forward + backward, 2 x 1800 queries),
  group-wise and masked alternately in one process: the part the two formulations differ in.

    python benchmarks/model_forward.py      # writes reports/bench/model_forward_cpu.json
"""
from __future__ import annotations

import argparse
import json
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPORT = Path(__file__).resolve().parents[1] / "reports" / "bench" / "model_forward_cpu.json"
CASES = ("train", "train_masked", "eval", "self_attention")


def _masked_self_attention(layer, tgt, query_pos, group_sizes):
    """The official formulation: one attention over all queries, cross-group pairs masked."""
    total = sum(group_sizes)
    blocked = torch.ones(total, total, dtype=torch.bool, device=tgt.device)
    start = 0
    for size in group_sizes:
        blocked[start:start + size, start:start + size] = False
        start += size
    q = tgt + query_pos
    return layer.self_attn(q, q, tgt, attn_mask=blocked, need_weights=False)[0]


def run_self_attention(repeats: int) -> dict:
    from hdetr.models.deformable_decoder import DeformableTransformerDecoderLayer

    torch.manual_seed(0)
    layer = DeformableTransformerDecoderLayer(256, 2048, 0.0, 4, 8, 4)
    groups = [300, 1500]
    tgt = torch.randn(2, sum(groups), 256, requires_grad=True)
    pos = torch.randn(2, sum(groups), 256)
    variants = {"grouped": lambda: layer.group_self_attention(tgt, pos, groups),
                "masked": lambda: _masked_self_attention(layer, tgt, pos, groups)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(repeats + 1):
        for name, run in variants.items():  # alternate so machine load hits both alike
            start = time.perf_counter()
            run().sum().backward()
            if i:
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {"case": "self_attention", "queries": sum(groups), "step_s": times, "median_s": medians,
            "masked_over_grouped": medians["masked"] / medians["grouped"],
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "threads": torch.get_num_threads()}


def run_case(case: str, repeats: int, size: int, backend: str) -> dict:
    if case == "self_attention":
        return run_self_attention(max(repeats, 5))
    from hdetr.config.model import hybrid_branch
    from hdetr.models import build_model
    from hdetr.models.deformable_decoder import DeformableTransformerDecoderLayer
    from hdetr.ops import select_backend

    if case == "train_masked":
        DeformableTransformerDecoderLayer.group_self_attention = _masked_self_attention
    torch.manual_seed(0)
    model = build_model(hybrid_branch(msda_backend=backend))
    model.train(case != "eval")
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(2, size, size, dtype=torch.bool)
    times = []
    for i in range(repeats + 1):  # the first call warms up allocators and kernels
        start = time.perf_counter()
        with torch.set_grad_enabled(case != "eval"):
            outputs = model(images, mask)
        elapsed = time.perf_counter() - start
        del outputs
        if i:
            times.append(elapsed)
    return {
        "case": case,
        "queries": sum(model.query_groups()),
        "forward_s": times,
        "forward_median_s": statistics.median(times),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "msda_backend": select_backend("cpu", torch.float32, backend).name,
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "cpu"))
    parser.add_argument("--output", type=Path, default=REPORT)
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # internal: one case, JSON on stdout
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case, args.repeats, args.size, args.backend)))
        return 0
    results = {}
    for case in CASES:
        command = [sys.executable, __file__, "--case", case, "--repeats", str(args.repeats), "--size",
                   str(args.size), "--backend", args.backend]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            print(done.stderr[-2000:], file=sys.stderr)
            return done.returncode
        results[case] = json.loads(done.stdout.strip().splitlines()[-1])
        if case == "self_attention":
            print(f"{case:13s} {results[case]['queries']:5d} queries  forward+backward grouped "
                  f"{results[case]['median_s']['grouped'] * 1000:.0f} ms, masked "
                  f"{results[case]['median_s']['masked'] * 1000:.0f} ms")
            continue
        print(f"{case:13s} {results[case]['queries']:5d} queries  forward {results[case]['forward_median_s']:.2f} s"
              f"  peak RSS {results[case]['peak_rss_mib']:.0f} MiB  ({results[case]['msda_backend']})")
    ratios = {
        "train_masked_over_train_time": results["train_masked"]["forward_median_s"] / results["train"]["forward_median_s"],
        "train_over_eval_time": results["train"]["forward_median_s"] / results["eval"]["forward_median_s"],
        "self_attention_masked_over_grouped_time": results["self_attention"]["masked_over_grouped"],
    }
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}")
    report = {
        "command": " ".join(["python", "benchmarks/model_forward.py", *map(shlex.quote, argv or sys.argv[1:])]),
        "model": "R50 hybrid branch, 300 + 1500 queries, 6 + 6 layers, FFN 2048, two-stage, box refine, "
                 "mixed selection, look forward twice",
        "images": f"2 x {args.size}x{args.size}",
        "torch": torch.__version__,
        "cases": results,
        "ratios": ratios,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
