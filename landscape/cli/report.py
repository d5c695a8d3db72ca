"""Write the HTML report of a results folder: DIR/report.html, one self-contained page.

For a study folder: the configuration, the headline answer (the fraction of starts that reached
DNC, with its interval, the lowest-loss structure, the lowest barrier out of DNC), the interactive
figures and a table of the distinct critical points. For a sweep folder: the prevalence figures
against every axis. For a ``landscape net`` folder: the singular values of the heads, the loss
against the closed forms and the UFM label fractions. plotly.js is embedded, so the page opens with no network.
"""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("report", help=__doc__.splitlines()[0], description=__doc__)
    p.add_argument("dir", metavar="DIR", help="results folder written by `landscape run`, `landscape sweep` or `landscape net`")
    p.set_defaults(func=main)


def main(args) -> int:
    import sys
    from pathlib import Path

    from ..io.results import SWEEP_FILES, is_net_folder

    try:
        if (Path(args.dir) / SWEEP_FILES["sweep"]).is_file():
            from ..viz.sweep_report import write_sweep_report

            path = write_sweep_report(args.dir)
        elif _is_lambda0(args.dir):
            print(f"landscape report: {args.dir} is a λ = 0 run: it has no report page; `landscape inspect "
                  f"{args.dir}` prints its summary (summary.json, directions.json)", file=sys.stderr)
            return 2
        elif is_net_folder(args.dir):
            from ..viz.net_report import write_net_report

            path = write_net_report(args.dir)
        else:
            from ..viz.report import write_report

            path = write_report(args.dir)
    except (FileNotFoundError, ValueError) as exc:
        print(f"landscape report: error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0


def _is_lambda0(path) -> bool:
    from ..study.lambda0 import is_lambda0_folder

    return is_lambda0_folder(path)
