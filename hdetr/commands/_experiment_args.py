"""Arguments shared by ``hdetr train`` and ``hdetr eval``: which experiment, and overrides."""
from __future__ import annotations

import argparse

from hdetr.config.experiment import ExperimentConfig, apply_overrides
from hdetr.config.presets import load_experiment


def add_experiment_arguments(parser: argparse.ArgumentParser, default_preset: str | None) -> None:
    source = parser.add_mutually_exclusive_group()
    hint = f" (default: {default_preset})" if default_preset else ""
    source.add_argument("--preset", help=f"a named preset, see --list-presets{hint}")
    source.add_argument("--config", metavar="FILE", help="a YAML experiment file (may name a `base:` preset)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override one field, e.g. --set model.k_one2many=6 (repeatable; values are YAML)")
    parser.add_argument("--list-presets", action="store_true", help="print the preset names and exit")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")


def experiment_from_args(args: argparse.Namespace, default_preset: str | None) -> ExperimentConfig:
    cfg = load_experiment(preset=args.preset or (None if args.config else default_preset), config_file=args.config)
    return apply_overrides(cfg, args.overrides)


def handled_listing(args: argparse.Namespace) -> bool:
    """Answer --list-presets; True when the command has nothing more to do."""
    if args.list_presets:
        from hdetr.config.presets import list_presets

        print("\n".join(list_presets()))
        return True
    return False
