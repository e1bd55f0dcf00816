"""Training-step cost of the hybrid branch against the baseline, split into its parts.

Both models share every weight (the baseline keeps the first 300 query
embeddings of the hybrid one): R50, 6 encoder + 6 decoder layers, FFN 2048,
two-stage with box refinement, mixed selection and look forward twice, on the
same two 512x512 images. Steps alternate baseline / hybrid so machine load hits
both alike; each step is timed as forward, matching + loss, and backward.

    python benchmarks/hybrid_overhead.py     # writes reports/bench/hybrid_overhead.json

``--profile`` adds the operators that grow most from the baseline step to the
hybrid step (torch.profiler, self CPU time) to the report. Every part is timed
on two clocks: process CPU time (primary: on a shared machine, time spent
waiting for a core does not count) and wall time.
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from hdetr.config.model import baseline, hybrid_branch
from hdetr.losses import build_criterion
from hdetr.models import build_model

REPORT = Path(__file__).resolve().parents[1] / "reports" / "bench" / "hybrid_overhead.json"
PARTS = ("forward", "matching_loss", "backward")


def make_models(num_one2one: int, num_one2many: int, k: int):
    common = dict(num_queries_one2one=num_one2one, enc_layers=6, dec_layers=6, dim_feedforward=2048)
    torch.manual_seed(0)
    hybrid = build_model(hybrid_branch(num_queries_one2many=num_one2many, k_one2many=k, **common))
    base = build_model(baseline(**common))
    shared = {}
    for key, value in hybrid.state_dict().items():
        target = base.state_dict()[key]
        shared[key] = value[: target.shape[0]] if value.shape != target.shape else value
    base.load_state_dict(shared)
    return base.train(), hybrid.train()


def make_batch(size: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(2, 3, size, size, generator=gen)
    mask = torch.zeros(2, size, size, dtype=torch.bool)
    targets = []
    for count in (12, 25):
        boxes = torch.cat((torch.rand(count, 2, generator=gen) * 0.6 + 0.2,
                           torch.rand(count, 2, generator=gen) * 0.3 + 0.05), 1)
        targets.append({"labels": torch.randint(0, 91, (count,), generator=gen), "boxes": boxes})
    return images, mask, targets


class _Clock:
    """Wall time and this process's CPU time. On a machine shared with other jobs the CPU
    time of a single-threaded run is the stable measure (waiting for a core does not count)."""

    def __init__(self):
        self.marks = [(time.perf_counter(), time.process_time())]

    def mark(self) -> None:
        self.marks.append((time.perf_counter(), time.process_time()))

    def parts(self) -> dict[str, dict[str, float]]:
        spans = list(zip(self.marks, self.marks[1:]))
        return {clock: {part: end[i] - start[i] for part, (start, end) in zip(PARTS, spans)}
                for i, clock in enumerate(("wall", "cpu"))}


def train_step(model, criterion, images, mask, targets) -> dict[str, dict[str, float]]:
    """One training step -> {"wall" | "cpu": {part: seconds}}."""
    model.zero_grad(set_to_none=True)
    clock = _Clock()
    outputs = model(images, mask)
    clock.mark()
    losses = criterion(outputs, targets)
    total = criterion.total_loss(losses)
    clock.mark()
    total.backward()
    clock.mark()
    return clock.parts()


def profile_ops(model, criterion, images, mask, targets) -> dict[str, tuple[float, int]]:
    """Self CPU milliseconds and calls per operator over one training step."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_step(model, criterion, images, mask, targets)
    return {e.key: (e.self_cpu_time_total / 1000, e.count) for e in prof.key_averages()}


def profile_difference(runs, images, mask, targets, rows: int = 15) -> list[dict]:
    """The operators whose time grows most from the baseline step to the hybrid step."""
    base = profile_ops(*runs["baseline"], images, mask, targets)
    hybrid = profile_ops(*runs["hybrid"], images, mask, targets)
    table = []
    for op, (ms, calls) in hybrid.items():
        base_ms = base.get(op, (0.0, 0))[0]
        table.append({"op": op, "hybrid_ms": ms, "baseline_ms": base_ms, "extra_ms": ms - base_ms, "hybrid_calls": calls})
    table.sort(key=lambda row: row["extra_ms"], reverse=True)
    print(f"{'operator':50s} {'hybrid ms':>10s} {'baseline ms':>12s} {'extra ms':>10s}")
    for row in table[:rows]:
        print(f"{row['op'][:50]:50s} {row['hybrid_ms']:10.1f} {row['baseline_ms']:12.1f} {row['extra_ms']:10.1f}")
    return table[:rows]


def _summarise(times: dict[str, dict[str, list[float]]]) -> dict:
    """Per-part medians of each model, the step ratio and the matching + loss share."""
    median = {name: {part: statistics.median(v) for part, v in parts.items()} for name, parts in times.items()}
    step = {name: sum(parts.values()) for name, parts in median.items()}
    return {
        "median_seconds": median,
        "step_seconds": step,
        "ratio_step": step["hybrid"] / step["baseline"],
        "ratio_per_part": {part: median["hybrid"][part] / median["baseline"][part] for part in PARTS},
        "matching_loss_share": median["hybrid"]["matching_loss"] / step["hybrid"],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--output", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    base, hybrid = make_models(300, 1500, 6)
    runs = {"baseline": (base, build_criterion(base.config)), "hybrid": (hybrid, build_criterion(hybrid.config))}
    images, mask, targets = make_batch(args.size, seed=0)
    for model, criterion in runs.values():  # warm-up (allocator, op dispatch, kernel builds)
        train_step(model, criterion, images, mask, targets)
    times = {clock: {name: {part: [] for part in PARTS} for name in runs} for clock in ("wall", "cpu")}
    for _ in range(args.repeats):
        for name, (model, criterion) in runs.items():
            for clock, parts in train_step(model, criterion, images, mask, targets).items():
                for part, seconds in parts.items():
                    times[clock][name][part].append(seconds)

    summary = {clock: _summarise(per_clock) for clock, per_clock in times.items()}
    cpu = summary["cpu"]
    result = {
        "command": " ".join(["python", "benchmarks/hybrid_overhead.py", *map(shlex.quote, argv or sys.argv[1:])]),
        "setup": {"backbone": "resnet50", "enc_layers": 6, "dec_layers": 6, "dim_feedforward": 2048,
                  "images": [2, 3, args.size, args.size], "queries": {"baseline": 300, "hybrid": "300+1500"},
                  "k_one2many": 6, "boxes_per_image": [len(t["labels"]) for t in targets],
                  "msda_backend": hybrid.config.msda_backend, "threads": args.threads, "torch": torch.__version__},
        "repeats": args.repeats,
        "primary_clock": "cpu (process CPU time; the machine is shared, wall time is reported too)",
        "ratio_hybrid_over_baseline": cpu["ratio_step"],
        "matching_loss_share_of_hybrid_step": cpu["matching_loss_share"],
        "cpu": cpu,
        "wall": summary["wall"],
        "all_seconds": times,
        "targets": "hybrid/baseline <= 1.5; matching+loss <= 5% of the hybrid step",
    }
    for clock in ("cpu", "wall"):
        s = summary[clock]
        for name in runs:
            parts = "  ".join(f"{part} {s['median_seconds'][name][part] * 1000:8.1f} ms" for part in PARTS)
            print(f"[{clock:4s}] {name:9s} step {s['step_seconds'][name] * 1000:8.1f} ms   {parts}")
        print(f"[{clock:4s}] hybrid / baseline: {s['ratio_step']:.2f}x   per part: "
              + ", ".join(f"{p} {r:.2f}x" for p, r in s["ratio_per_part"].items())
              + f"   matching + loss share of the hybrid step: {s['matching_loss_share']:.1%}")
    if args.profile:
        result["profile_extra_ops"] = profile_difference(runs, images, mask, targets)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
