"""Run a sweep: a grid of studies (one per cell) and a prevalence table.

CONFIG is a study file plus a [sweep] table of KEY = [values] (keys as for --set: d, lambda, L,
K, n, activation, loss, init.scale_H, lr, engine, stages.0.lr, ...); the grid is their Cartesian
product. Writes OUT/cells/<cell>/ (one study each), OUT/sweep.json (effective sweep, executor,
cells, retried units) and OUT/prevalence.csv (per cell: DNC fraction and interval, fraction per
label, mean rank of the logits, uncertified fraction). Running again with the same OUT skips
finished cells and resumes unfinished ones.
"""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("sweep", help=__doc__.splitlines()[0], description=__doc__)
    p.add_argument("config", metavar="CONFIG", help="sweep file (.toml), or OUT/sweep.json of an earlier sweep")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of every cell (--set trajectories=2000) or an axis "
                        "(--set 'sweep.d=[8, 16]')")
    p.add_argument("--out", metavar="DIR", help="results folder (default: runs/<name>-<YYYYmmdd-HHMMSS>); "
                                                "an existing sweep folder is resumed")
    p.add_argument("--executor", default="inprocess", choices=("inprocess", "dask", "dask-local"),
                   help="where trajectory chunks run (default: inprocess; the Dask executors need "
                        "pip install \"landscape[dask]\")")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="Dask scheduler address (--executor dask)")
    p.add_argument("--workers", type=int, metavar="N", help="worker processes of --executor dask-local (default 2)")
    p.add_argument("--torch-threads", type=int, metavar="T",
                   help="torch threads per Dask worker (default: the host's cores / tasks running at once)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=main)


def main(args) -> int:
    import sys
    import time
    from pathlib import Path

    from ..executors import ExecutorError, make_executor
    from ..model import SpecError
    from ..sweep import load_sweep, run_sweep

    sweep = load_sweep(args.config, args.overrides)
    out = Path(args.out) if args.out else Path("runs") / f"{sweep.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        executor = make_executor(args.executor, scheduler=args.scheduler, workers=args.workers,
                                 torch_threads=args.torch_threads)
    except ExecutorError as exc:
        raise SpecError(str(exc)) from None
    n = len(sweep.cells)
    print(f"sweep {sweep.name}: {n} cells over {', '.join(sweep.axes)}; executor {executor.describe()}")

    def report(cell, summary, status):
        i = next(k for k, c in enumerate(sweep.cells) if c.name == cell.name) + 1
        print(f"[{i}/{n}] {cell.name}: {status}, {summary['n_trajectories']} trajectories", flush=True)

    with executor:
        result = run_sweep(sweep, out, executor=executor, progress=not args.no_progress, on_cell=report)
    for r in result["prevalence"]:
        print(f"{r['cell']}: DNC {r['dnc_fraction']:.3f} [{r['dnc_ci_low']:.3f}, {r['dnc_ci_high']:.3f}], "
              f"uncertified {r['uncertified_fraction']:.3f}, mean rank(Z) {r['mean_logit_rank']:.2f}")
    if result["retried_units"]:
        print("retried units (lost workers): " + ", ".join(f"{u} ({k} attempts)"
                                                          for u, k in result["retried_units"].items()),
              file=sys.stderr)
    print(f"results: {out} (prevalence.csv, sweep.json, cells/)")
    return 0
