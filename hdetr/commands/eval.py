"""``hdetr eval``: score a checkpoint on a validation set (COCO AP, or LVIS AP).

The checkpoint's format is detected:

- an hdetr checkpoint (``hdetr train``) carries its config; ``--preset``/``--config``
  replace it and ``--set`` adjusts it (e.g. ``--set data.root=/data/coco``);
- an official H-Deformable-DETR checkpoint (``{"model", "args", ...}``) or a bare state
  dict goes through ``hdetr.from_official_checkpoint``; ``--set model.FIELD=VALUE``
  become its overrides (official flag names, e.g. ``--set model.num_queries_one2many=1500``)
  and the dataset comes from ``--preset``/``--config`` (default coco_r50_hybrid_branch_12ep).

    hdetr eval --checkpoint runs/x/checkpoint_best.pth
    hdetr eval --checkpoint r50_hybrid_branch_12eps.pth --set data.root=/data/coco
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from hdetr.commands._experiment_args import add_experiment_arguments, handled_listing

def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="evaluate an hdetr or official H-Deformable-DETR checkpoint",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=False, metavar="PATH", help="checkpoint file (.pth)")
    add_experiment_arguments(parser, None)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--max-images", type=int, default=0, help="score the first N validation images (0 = all)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--output", metavar="JSON", help="also write the metrics to this file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if handled_listing(args):
        return 0
    from hdetr.errors import UserError

    if not args.checkpoint:
        raise UserError("--checkpoint PATH is required")
    from hdetr.checkpoints.build import build_from_checkpoint

    model, cfg, fmt = build_from_checkpoint(args.checkpoint, args.preset, args.config, args.overrides)
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    from hdetr.data import build_dataset
    from hdetr.engine.distributed import resolve_device
    from hdetr.engine.evaluator import evaluate_model

    device = resolve_device(args.device)
    model.to(device)
    dataset = build_dataset(cfg.data, "val")
    metrics = evaluate_model(model, dataset, batch_size=args.batch_size, device=device, max_images=args.max_images,
                             amp=cfg.train.amp, progress=True)
    result = {"checkpoint": str(args.checkpoint), "format": fmt, **metrics}
    print(json.dumps(result, indent=1))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    return 0
