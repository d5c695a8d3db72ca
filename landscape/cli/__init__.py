"""Command line: ``landscape SUBCOMMAND``. One module per subcommand in this package.

Each subcommand module defines ``register(subparsers)`` (adds its parser, with help text from the
module docstring, and sets ``func``) and keeps heavy imports inside the function it runs.
"""
from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = ("run", "theory", "inspect", "export", "report", "sweep")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="landscape",
        description="Explore the loss landscape of deep unconstrained feature models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"landscape.cli.{name}").register(sub)
    return parser


def main(argv=None) -> int:
    from ..model import SpecError
    from ..store import StoreError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (SpecError, StoreError) as exc:
        print(f"landscape {args.command}: error: {exc}", file=sys.stderr)
        return 2
