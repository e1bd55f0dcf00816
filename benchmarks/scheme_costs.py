"""Cost columns of Table 6 / Table 7 for the hybrid schemes: train s/iter (ratio to the baseline), FPS, memory, params.

Scales:

- ``cpu`` (default): the ablation study's cpu-scale models (``hdetr.studies.scales.ablation_study("cpu")``:
  ResNet-18, 128 px, baseline / hybrid branch / epoch / layer), batch 2, on this CPU; peak memory is
  the peak RSS of a fresh process per scheme;
- ``paper``: Table 6's R50 presets (``coco_r50_table6_*_12ep``) at the paper's shapes (batch 2 of
  800 x 800 padded images by default), meant for a GPU (CUDA max allocated memory); ``--dtype``
  fp32, bf16 or both.

Training steps alternate between the schemes (``iterations`` rounds), so machine load hits all alike.

    python benchmarks/scheme_costs.py                      # cpu scale -> reports/bench/scheme_costs.json
    python benchmarks/scheme_costs.py --scale paper --device cuda --dtype both \
        --output reports/bench/scheme_costs_cuda.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "reports" / "bench" / "scheme_costs.json"


def main(argv=None) -> int:
    from hdetr.studies.scheme_costs import scheme_costs, scheme_models

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=("cpu", "paper"), default="cpu")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("fp32", "bf16", "both"), default="fp32")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=None, help="default: the scale's (128 cpu, 800 paper)")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    models, size = scheme_models(args.scale)
    size = args.image_size or size
    results = {}
    for dtype in (("fp32", "bf16") if args.dtype == "both" else (args.dtype,)):
        print(f"{args.scale} scale, {args.device}, {dtype}, batch {args.batch_size} of {size}x{size}:")
        costs = scheme_costs(models, batch_size=args.batch_size, image_size=size, iterations=args.iterations,
                             device=args.device, dtype=dtype)
        results[dtype] = [dataclasses.asdict(c) for c in costs]
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    payload = {"command": " ".join(["python", "benchmarks/scheme_costs.py",
                                    *map(shlex.quote, argv if argv is not None else sys.argv[1:])]),
               "scale": args.scale, "device": device_name, "batch_size": args.batch_size, "image_size": size,
               "iterations": args.iterations, "threads": args.threads, "torch": torch.__version__,
               "train_step": "forward + matching + loss + backward, no optimiser update; median over interleaved "
                             "rounds; ratio to the first scheme (baseline)",
               "results": results}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.output.resolve().relative_to(ROOT) if args.output.resolve().is_relative_to(ROOT) else args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
