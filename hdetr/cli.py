"""The ``hdetr`` command line.

Each subcommand lives in its own module under ``hdetr.commands`` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.
Errors meant for the user (bad config, bad file) are printed as one line, not a
traceback.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import hdetr.commands
from hdetr.errors import ConfigError, UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hdetr", description="H-DETR: DETRs with Hybrid Matching")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(hdetr.commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"hdetr.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ConfigError, UserError, FileNotFoundError) as exc:
        print(f"hdetr {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hdetr {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
