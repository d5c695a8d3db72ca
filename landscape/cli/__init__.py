"""Command line: ``landscape SUBCOMMAND``. One module per subcommand in this package.

Each subcommand module defines ``register(subparsers)`` (adds its parser, with help text from the
module docstring, and sets ``func``) and keeps heavy imports inside the function it runs. Bad
input of any kind ends with one line ``landscape CMD: error: …`` naming the input, and exit
status 2; Ctrl-C ends with exit status 130 and says how to resume.
"""
from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = ("run", "presets", "theory", "inspect", "spectrum", "continue", "export", "report", "sweep", "net")
#: Exit status of a run stopped by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="landscape",
        description="Explore the loss landscape of deep unconstrained feature models.")
    parser.add_argument("--version", action="version", version=f"landscape {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"landscape.cli.{name.replace('continue', 'continue_')}").register(sub)
    return parser


def _user_errors() -> tuple:
    """The error types that mean bad input: SpecError always; OutputError and StoreError only if
    their modules were loaded (they cannot have been raised otherwise), so a command that fails
    early never imports torch for its message."""
    from ..core.validate import SpecError

    out = [SpecError]
    for mod, name in (("landscape.io.results", "OutputError"), ("landscape.io.store", "StoreError")):
        if mod in sys.modules:
            out.append(getattr(sys.modules[mod], name))
    return tuple(out)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        # commands that keep partial work say what they kept before this (run, sweep, spectrum, continue)
        print(f"\nlandscape {args.command}: interrupted; everything committed before is kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if isinstance(exc, _user_errors()):
            print(f"landscape {args.command}: error: {exc}", file=sys.stderr)
            return 2
        sqlite3 = sys.modules.get("sqlite3")
        if sqlite3 is not None and isinstance(exc, (sqlite3.OperationalError, sqlite3.DatabaseError)):
            # disk full, a read-only or damaged database: what was committed before stays
            print(f"landscape {args.command}: error: the study database refused the write ({exc}); "
                  "everything committed before is kept", file=sys.stderr)
            return 2
        if isinstance(exc, OSError):  # a file system refusal (read-only place, name too long, no space)
            where = f" ({exc.filename})" if exc.filename else ""
            print(f"landscape {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
            return 2
        raise
