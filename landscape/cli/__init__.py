"""Command line: ``landscape SUBCOMMAND``. One module per subcommand in this package.

Each subcommand module defines ``register(subparsers)`` (adds its parser, with help text from the
module docstring, and sets ``func``) and keeps heavy imports inside the function it runs. Bad
input of any kind ends with one line ``landscape CMD: error: …`` naming the input, and exit
status 2; Ctrl-C ends with exit status 130 and says how to resume. Output piped into a reader that
stops early (``landscape presets | head -1``) ends quietly with exit status 0.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

SUBCOMMANDS = ("run", "presets", "theory", "inspect", "spectrum", "continue", "export", "report", "sweep", "net")
#: Exit status of a run stopped by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    from ..core.validate import MEMORY_BUDGET_ENV

    parser = argparse.ArgumentParser(
        prog="landscape",
        description="Explore the loss landscape of deep unconstrained feature models.",
        epilog=f"Memory: inputs whose estimated memory exceeds the budget (environment variable {MEMORY_BUDGET_ENV}, "
               "e.g. 64G; default half of this machine's RAM) are refused before anything runs, with the estimate.")
    parser.add_argument("--version", action="version", version=f"landscape {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"landscape.cli.{name.replace('continue', 'continue_')}").register(sub)
    return parser


def _user_errors() -> tuple:
    """The error types that mean bad input: SpecError always; OutputError, StoreError and
    Lambda0StoreError only if their modules were loaded (they cannot have been raised otherwise),
    so a command that fails early never imports torch for its message."""
    from ..core.validate import SpecError

    out = [SpecError]
    for mod, name in (("landscape.io.results", "OutputError"), ("landscape.io.store", "StoreError"),
                      ("landscape.io.lambda0_store", "Lambda0StoreError")):
        if mod in sys.modules:
            out.append(getattr(sys.modules[mod], name))
    return tuple(out)


def check_new_folder(path, option: str = "--out") -> None:
    """Refuse at once a results folder that cannot be created: where ``path`` does not exist yet,
    a real probe (a temporary folder made and removed in its nearest existing ancestor), so a
    place that refuses new folders (``/proc``, a read-only mount, a full disk) is named with the
    reason before anything is computed or written. An existing folder is left to the command's
    own checks."""
    import tempfile
    from pathlib import Path

    from ..core.validate import SpecError

    path = Path(path)
    if path.exists():
        return
    anc = path.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".landscape-probe-", dir=anc))
    except OSError as exc:
        raise SpecError(f"{option} {path} cannot be created: {anc} does not accept new folders "
                        f"({exc.strerror or exc}); choose another folder") from None


def _stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader has gone (a BrokenPipeError from it)."""
    try:
        import select

        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):   # no poll here, or stdout has no descriptor
        return True


def _quiet_stdout() -> None:
    """Point standard output at /dev/null, so the interpreter's last flush finds no broken pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def main(argv=None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # the reader of our output stopped early (`landscape presets | head -1`): nothing to report
        if not _stdout_closed():
            raise
        _quiet_stdout()
        return 0


def _main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()   # a broken pipe shows here, not in the interpreter's last flush
        return code
    except BrokenPipeError:
        if _stdout_closed():
            raise
        return _error(args, sys.exc_info()[1])
    except KeyboardInterrupt:
        # commands that keep partial work say what they kept before this (run, sweep, spectrum, continue)
        print(f"\nlandscape {args.command}: interrupted; everything committed before is kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        return _error(args, exc)


def _error(args, exc: BaseException) -> int:
    """Exit status 2 and one line on standard error for bad input or a refusal of the file
    system or the database; anything else is a bug and raised as it is."""
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
        why = (exc.strerror or (errno.errorcode.get(exc.errno, "") if exc.errno else "") or str(exc)
               or type(exc).__name__)
        if exc.filename:
            other = f" → {exc.filename2}" if exc.filename2 else ""
            msg = f"{exc.filename}{other}: {why} (the file system refused it)"
        else:
            msg = f"{why} ({type(exc).__name__})"
        print(f"landscape {args.command}: error: {msg}", file=sys.stderr)
        return 2
    raise exc
