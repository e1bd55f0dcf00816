"""Subcommands of the ``hdetr`` CLI; every public module here defines ``register(subparsers)``."""
