"""The demo-size training step, profiled and timed: before/after the optimiser change, side by side.

    OMP_NUM_THREADS=1 python benchmarks/train_step.py [--rounds 6] [--json reports/bench/train_step.json]

One process builds the demo's H-DETR (hybrid branch, ResNet-18, 128 px, batch 4) twice
from the same weights — AdamW as a per-tensor loop (``train.fused_optimizer=false``,
the earlier default) and fused (``true``, the default now) — and times full steps
(forward, matching, loss, backward, clipping, optimiser) in alternating rounds, so
both see the same machine load; the ratio is the median of per-round ratios. It then
prints the operator profile of one step (where the time goes) and, with ``--json``,
writes the numbers.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import hdetr
    from hdetr.config.experiment import apply_overrides
    from hdetr.config.presets import get_preset
    from hdetr.data import build_dataset, collate
    from hdetr.engine.optim import build_optimizer

    cfg = apply_overrides(get_preset("synthetic_demo_hybrid_branch"), ["data.num_workers=0"])
    torch.manual_seed(0)
    model = hdetr.build_model(cfg.model)
    criterion = hdetr.build_criterion(model.config)
    data = build_dataset(cfg.data, "train")
    batches = [collate([data[4 * i + j] for j in range(4)]) for i in range(4)]
    variants = {}
    for name, fused in (("per-tensor AdamW (before)", False), ("fused AdamW (after)", True)):
        m = copy.deepcopy(model).train()
        variants[name] = (m, build_optimizer(m, apply_overrides(cfg, [f"train.fused_optimizer={fused}"]).train))

    def step(m, opt, batch) -> None:
        images, targets = batch
        loss = criterion.total_loss(criterion(m(images), targets, epoch=0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), cfg.train.clip_max_norm)
        opt.step()

    for m, opt in variants.values():  # warm-up: op compilation, allocator
        step(m, opt, batches[0])
    times = {name: [] for name in variants}
    for r in range(args.rounds):
        for name, (m, opt) in variants.items():
            start = time.perf_counter()
            step(m, opt, batches[r % len(batches)])
            times[name].append(time.perf_counter() - start)
    before, after = (times[n] for n in variants)
    ratios = [b / a for b, a in zip(before, after)]
    result = {name: {"median_s": statistics.median(t), "min_s": min(t)} for name, t in times.items()}
    result["speedup_median_of_round_ratios"] = statistics.median(ratios)
    for name, r in result.items():
        print(f"{name}: {r}")

    from torch.profiler import ProfilerActivity, profile

    m, opt = variants["fused AdamW (after)"]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(m, opt, batches[1])
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=40)
    print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        top = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:12]
        total = sum(e.self_cpu_time_total for e in prof.key_averages())
        result["profile_top_ops"] = [{"op": e.key, "share": round(e.self_cpu_time_total / total, 4)} for e in top]
        result["setup"] = ("synthetic_demo_hybrid_branch, batch 4, 128 px, one thread; "
                           f"{args.rounds} alternating rounds, torch {torch.__version__}")
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
