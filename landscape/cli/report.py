"""Write the HTML report of a results folder: DIR/report.html, one self-contained page.

The page holds the configuration, the headline answer (the fraction of starts that reached DNC,
with its interval, and the lowest-loss structure), the interactive figures and a table of the
distinct critical points; plotly.js is embedded, so it opens with no network.
"""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("report", help=__doc__.splitlines()[0], description=__doc__)
    p.add_argument("dir", metavar="DIR", help="results folder written by `landscape run`")
    p.set_defaults(func=main)


def main(args) -> int:
    import sys

    from ..report import write_report

    try:
        path = write_report(args.dir)
    except (FileNotFoundError, ValueError) as exc:
        print(f"landscape report: error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0
