"""``hdetr demo``: train the baseline and H-DETR on the synthetic benchmark on a CPU, compare, report.

Generates (or reuses) the synthetic dataset, trains ``synthetic_demo_baseline`` and
``synthetic_demo_hybrid_branch`` with the same iteration budget (about 2 minutes each
on 2 cores, with a wall-clock guard), scores both with pycocotools and writes
reports/demo/ (table.md, loss_curve.png, ap_curve.png, results.json, command.txt).
"""
from __future__ import annotations

import argparse
import shlex

DEFAULT_REPORT_DIR = "reports/demo"


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="baseline vs H-DETR on the synthetic set, on CPU (~5 min)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report-dir", default=DEFAULT_REPORT_DIR, help=f"(default: {DEFAULT_REPORT_DIR})")
    parser.add_argument("--work-dir", default="runs/demo", help="run folders with checkpoints (default: runs/demo)")
    parser.add_argument("--max-iters", type=int, help="iterations per model (default: the presets' budget)")
    parser.add_argument("--max-minutes", type=float, help="wall-clock guard per model, minutes (default: presets')")
    parser.add_argument("--seed", type=int, help="training seed of both models (default: the presets')")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override a field of both demo presets (repeatable)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hdetr.engine.demo import run_demo

    run_demo(args.report_dir, args.work_dir, max_iters=args.max_iters,
             max_wall_seconds=None if args.max_minutes is None else 60.0 * args.max_minutes,
             seed=args.seed, overrides=args.overrides, command=_command_line(args))
    return 0


def _command_line(args: argparse.Namespace) -> str:
    """The command as typed, rebuilt from the parsed arguments (recorded in the report)."""
    parts = ["hdetr", "demo"]
    if args.report_dir != DEFAULT_REPORT_DIR:
        parts += ["--report-dir", args.report_dir]
    if args.work_dir != "runs/demo":
        parts += ["--work-dir", args.work_dir]
    for flag, value in (("--max-iters", args.max_iters), ("--max-minutes", args.max_minutes), ("--seed", args.seed)):
        if value is not None:
            parts += [flag, str(value)]
    for override in args.overrides:
        parts += ["--set", override]
    return " ".join(shlex.quote(p) for p in parts)
