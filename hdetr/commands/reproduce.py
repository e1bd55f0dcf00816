"""``hdetr reproduce [coco|lvis|ablations|all] --scale smoke|cpu|paper``: regenerate the paper's tables.

Runs the experiment notebooks in ``notebooks/experiments/`` with papermill; the
executed notebooks go to ``<out>/notebooks/`` and the tables (markdown + JSON +
PNG, each with this command) to ``<out>/<name>/<scale>/``.
"""
from __future__ import annotations

import argparse
import time

import yaml

from hdetr.errors import UserError

SCALE_HELP = ("smoke: seconds, CI; cpu: minutes on a laptop CPU (synthetic data, tiny models); "
              "paper: the paper's presets on the real dataset (needs -p DATA_ROOT=..., GPUs, days)")


def _parse_parameter(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise UserError(f"-p {text!r}: expected NAME=VALUE, e.g. -p SEEDS=[0,1]")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise UserError(f"-p {text!r}: the value is not valid YAML") from None
    return key.strip(), value


def run(args: argparse.Namespace) -> int:
    from hdetr.studies.reproduce import EXPERIMENTS, run_experiment

    parameters = dict(_parse_parameter(p) for p in args.param)
    if args.experiment == "all" and args.scale == "paper":
        raise UserError("at paper scale run `hdetr reproduce coco`, `lvis` and `ablations` one by one, each "
                        "with -p DATA_ROOT=<its dataset>")
    names = list(EXPERIMENTS) if args.experiment == "all" else [args.experiment]
    for name in names:
        start = time.time()
        print(f"hdetr reproduce: {name} at scale {args.scale} ({EXPERIMENTS[name].description}) ...", flush=True)
        paths = run_experiment(name, args.scale, reports_dir=args.out, parameters=parameters,
                               log_output=args.verbose, progress_bar=args.verbose)
        print(f"  done in {time.time() - start:.0f}s: report {paths['report_dir']}, notebook {paths['notebook']}",
              flush=True)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "reproduce", help="regenerate the paper's tables (papermill experiment notebooks)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", choices=["coco", "lvis", "ablations", "all"])
    parser.add_argument("--scale", default="smoke", choices=["smoke", "cpu", "paper"], help=SCALE_HELP)
    parser.add_argument("--out", default=None, help="reports folder (default: reports/ of the source checkout)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="notebook parameter (YAML value), e.g. -p SEEDS=[0,1] -p DATA_ROOT=/data/coco")
    parser.add_argument("-v", "--verbose", action="store_true", help="stream the notebook's output")
    parser.set_defaults(func=run)
