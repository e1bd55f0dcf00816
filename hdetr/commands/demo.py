"""``hdetr demo``: train the baseline and H-DETR on the synthetic benchmark on a CPU, over seeds, and report.

Generates (or reuses) the synthetic dataset, trains ``synthetic_demo_baseline`` and
``synthetic_demo_hybrid_branch`` for the same number of optimiser steps with each of
three seeds (two runs at a time, one thread each; about 10 minutes on 2 cores),
scores them with pycocotools and writes reports/demo/ (table.md with mean, spread
and 95 % intervals at equal iterations and equal wall time, ap_curve.png,
ap_wall_time.png, loss_curve.png, results.json, command.txt). Finished runs in the
work folder are kept: a second call, or one after an interruption, only trains
what is missing.
"""
from __future__ import annotations

import argparse
import shlex

DEFAULT_REPORT_DIR = "reports/demo"
DEFAULT_WORK_DIR = "runs/demo"


def register(subparsers) -> None:
    from hdetr.studies.demo import DEFAULT_SEEDS

    parser = subparsers.add_parser("demo", help="baseline vs H-DETR on the synthetic set, 3 seeds, on CPU (~10 min)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report-dir", default=DEFAULT_REPORT_DIR, help=f"(default: {DEFAULT_REPORT_DIR})")
    parser.add_argument("--work-dir", default=DEFAULT_WORK_DIR,
                        help=f"run folders with checkpoints (default: {DEFAULT_WORK_DIR})")
    parser.add_argument("--max-iters", type=int, help="optimiser steps per run (default: the presets' budget)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS),
                        help=f"training seeds, each for both models (default: {' '.join(map(str, DEFAULT_SEEDS))})")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each (default: 2)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override a field of both demo presets (repeatable)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hdetr.errors import UserError
    from hdetr.reports.demo import demo_table, findings, write_demo_report
    from hdetr.studies.demo import run_demo_study

    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: expected at least 1")
    if len(set(args.seeds)) != len(args.seeds):
        raise UserError(f"--seeds {' '.join(map(str, args.seeds))}: each seed once")
    demo = run_demo_study(args.work_dir, seeds=args.seeds, max_iters=args.max_iters, overrides=args.overrides,
                          jobs=args.jobs)
    table = write_demo_report(demo, args.report_dir, _command_line(args))
    print("")
    print("\n".join(demo_table(demo.records, demo.configs)))
    print("")
    print("\n".join(findings(demo.records)))
    print(f"\nreport: {table}")
    return 0


def _command_line(args: argparse.Namespace) -> str:
    """The command as typed, rebuilt from the parsed arguments (recorded in the report)."""
    from hdetr.studies.demo import DEFAULT_SEEDS

    parts = ["hdetr", "demo"]
    if args.report_dir != DEFAULT_REPORT_DIR:
        parts += ["--report-dir", args.report_dir]
    if args.work_dir != DEFAULT_WORK_DIR:
        parts += ["--work-dir", args.work_dir]
    if args.max_iters is not None:
        parts += ["--max-iters", str(args.max_iters)]
    if list(args.seeds) != list(DEFAULT_SEEDS):
        parts += ["--seeds", *map(str, args.seeds)]
    if args.jobs != 2:
        parts += ["--jobs", str(args.jobs)]
    for override in args.overrides:
        parts += ["--set", override]
    return " ".join(shlex.quote(p) for p in parts)
