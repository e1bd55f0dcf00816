"""``hdetr train``: train a preset or config file, on one process or under torchrun.

    hdetr train --preset synthetic_demo_hybrid_branch --output-dir runs/demo_hybrid
    hdetr train --preset coco_r50_hybrid_branch_12ep --set data.root=/data/coco --set model.k_one2many=6
    torchrun --nproc_per_node=8 -m hdetr.cli train --preset coco_r50_hybrid_branch_12ep ...
    hdetr train --output-dir runs/x --resume      # continue exactly where runs/x stopped
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from hdetr.commands._experiment_args import add_experiment_arguments, experiment_from_args, handled_listing
from hdetr.errors import UserError

DEFAULT_PRESET = "synthetic_demo_hybrid_branch"


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train H-DETR (presets, --set overrides, torchrun, --resume)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_experiment_arguments(parser, DEFAULT_PRESET)
    parser.add_argument("--output-dir", metavar="DIR",
                        help="where config.yaml, metrics.jsonl, tensorboard/ and checkpoints go "
                             "(default: runs/<preset>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from DIR/checkpoint_last.pth (its config.yaml when no preset/config is given)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh in an output folder that already holds a run (its checkpoints are removed)")
    parser.set_defaults(func=run)


def _resume_config(args: argparse.Namespace, output_dir: Path):
    from hdetr.config.experiment import apply_overrides
    from hdetr.config.presets import load_experiment

    saved = output_dir / "config.yaml"
    if not saved.is_file():
        raise UserError(f"--resume: {saved} does not exist; give --preset/--config or the folder of an earlier run")
    return apply_overrides(load_experiment(config_file=saved), args.overrides)


def run(args: argparse.Namespace) -> int:
    if handled_listing(args):
        return 0
    resume_own_config = args.resume and args.output_dir and not (args.preset or args.config)
    if resume_own_config:
        cfg = _resume_config(args, Path(args.output_dir))
    else:
        cfg = experiment_from_args(args, DEFAULT_PRESET)
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    output_dir = Path(args.output_dir or Path("runs") / (cfg.name or "experiment"))
    from hdetr.engine.trainer import train

    summary = train(cfg, output_dir, resume=args.resume, overwrite=args.overwrite)
    if summary.get("rank", 0) == 0:
        print(json.dumps({k: summary[k] for k in ("stopped_by", "global_step", "epoch", "metrics", "best",
                                                   "metrics_path", "checkpoint_last", "checkpoint_best")}, indent=1))
    return 0
