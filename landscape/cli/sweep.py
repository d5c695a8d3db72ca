"""Run a sweep: a grid of studies (one per cell), a prevalence table and its report.

CONFIG is a study file plus a [sweep] table of KEY = [values] (keys as for --set: d, lambda, L,
K, n, activation, loss, init.scale_H, lr, engine, stages.0.lr, ...), layered on the embedded
default study; ``--preset NAME`` runs an embedded sweep (``landscape presets``). The grid is the
Cartesian product. Writes OUT/cells/<cell>/ (one study each), OUT/sweep.json (effective sweep,
executor, cells, retried units), OUT/prevalence.csv (per cell: DNC count, fraction and interval,
count and fraction per label, mean rank of the logits, uncertified count and fraction) and
OUT/report.html (the figures against every axis). Running again with the same OUT skips finished
cells and resumes unfinished ones.
"""
from __future__ import annotations


#: Most dask-local worker processes per core of this machine (each imports torch: ~0.5 GB).
WORKERS_PER_CORE = 4
#: Memory of one dask-local worker process before it computes (Python, torch, Dask).
WORKER_BYTES = 2 ** 29
#: Most torch threads per Dask worker.
MAX_TORCH_THREADS = 1024
#: Dask scheduler address schemes, and the form of an address.
SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")
#: A grid this large prints a line before its cells are expanded and validated (a few seconds).
ANNOUNCE_CELLS = 1000


def register(sub) -> None:
    p = sub.add_parser("sweep", help=__doc__.splitlines()[0], description=__doc__)
    p.add_argument("config", metavar="CONFIG", nargs="?",
                   help="sweep file (.toml), or OUT/sweep.json of an earlier sweep")
    p.add_argument("--preset", metavar="NAME", help="an embedded sweep (see `landscape presets`)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of every cell (--set trajectories=2000) or an axis "
                        "(--set 'sweep.d=[8, 16]')")
    p.add_argument("--out", metavar="DIR", help="results folder (default: runs/<name>-<YYYYmmdd-HHMMSS>); "
                                                "an existing sweep folder is resumed")
    from ..study.executor_base import EXECUTORS, FORMER_NAMES   # light: no torch

    p.add_argument("--executor", default="lambda-batch", choices=EXECUTORS,
                   type=lambda name: FORMER_NAMES.get(name, name),
                   help="where trajectory chunks run (default: lambda-batch — in this process, cells that differ "
                        "only in λ advancing as one batch; inprocess: cell after cell; the Dask executors "
                        "need pip install \"landscape[dask]\")")
    p.add_argument("--scheduler", metavar="tls://HOST:PORT", help="Dask scheduler address (--executor dask; TLS, see landscape.study.executors)")
    p.add_argument("--workers", type=int, metavar="N",
                   help=f"worker processes of --executor dask-local (default 2; at most {WORKERS_PER_CORE} per core of "
                        "this machine)")
    p.add_argument("--torch-threads", type=int, metavar="T",
                   help=f"torch threads per Dask worker, 1 to {MAX_TORCH_THREADS} (default, when not given: the host's "
                        "cores / tasks running at once)")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out folder that holds no sweep")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=main)


def main(args) -> int:
    import sys
    import time
    from pathlib import Path

    from ..core.validate import SpecError
    from ..io.results import DB_NAME, SWEEP_FILES, OutputError, check_results_folder, folder_kind
    from ..study.sweep_config import load_sweep
    from . import EXIT_INTERRUPTED, check_new_folder

    check_executor_args(args)

    def announce(n: int) -> None:
        if n >= ANNOUNCE_CELLS:
            print(f"sweep: expanding and validating {n:,} cells…", file=sys.stderr, flush=True)

    sweep = load_sweep(args.config, args.overrides, preset=args.preset, on_expand=announce)
    out = Path(args.out) if args.out else Path("runs") / f"{sweep.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if folder_kind(out) == "study":
        raise OutputError(f"--out {out} is a study folder (it holds {DB_NAME}): a sweep goes into a folder of its own")
    if not (out / SWEEP_FILES["sweep"]).is_file():
        try:
            check_results_folder(out, force=args.force)
        except OutputError as exc:
            raise OutputError(str(exc).replace("holds no study", "holds no sweep")) from None
        check_new_folder(out)
    from ..study.executors import ExecutorError, make_executor   # torch: once the sweep and folder are good
    from ..study.sweep import run_sweep
    from ..viz.sweep_report import write_sweep_report

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

    try:
        with executor:
            result = run_sweep(sweep, out, executor=executor, progress=not args.no_progress, on_cell=report)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished cells and every committed unit are kept in {out}; "
              "re-run the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    for r in result["prevalence"]:
        print(f"{r['cell']}: DNC {r['dnc_fraction']:.3f} [{r['dnc_ci_low']:.3f}, {r['dnc_ci_high']:.3f}], "
              f"uncertified {r['uncertified_fraction']:.3f}, mean rank(Z) {r['mean_logit_rank']:.2f}")
    if result["retried_units"]:
        print("retried units (lost workers): " + ", ".join(f"{u} ({k} attempts)"
                                                          for u, k in result["retried_units"].items()),
              file=sys.stderr)
    write_sweep_report(out)
    print(f"results: {out} (prevalence.csv, report.html, sweep.json, cells/)")
    return 0


def check_executor_args(args) -> None:
    """Refuse bad executor options before the sweep is read or a process started: ``--workers``
    in [1, :data:`WORKERS_PER_CORE` × cores] and within the memory budget (each worker is a
    process with its own torch), ``--torch-threads`` in [1, :data:`MAX_TORCH_THREADS`] (0 is not
    "the default": leave the option out for that), ``--scheduler`` an address SCHEME://HOST:PORT."""
    import os
    import re

    from ..core.validate import SpecError, check_int, check_memory

    if args.workers is not None:
        cores = os.cpu_count() or 1
        check_int("--workers", args.workers, 1, f" ({WORKERS_PER_CORE} per core of this machine's {cores}: each "
                  "worker is a process of its own)", maximum=WORKERS_PER_CORE * cores)
        check_memory(f"--workers={args.workers}", args.workers * WORKER_BYTES,
                     f"{args.workers} worker processes (~{WORKER_BYTES // 2 ** 20} MiB each before any work)")
    if args.torch_threads is not None:
        check_int("--torch-threads", args.torch_threads, 1,
                  " (leave the option out for the default: the host's cores / tasks running at once)",
                  maximum=MAX_TORCH_THREADS)
    if args.scheduler is not None:
        m = re.fullmatch(r"(?:([a-z]+)://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})", args.scheduler)
        if not m or (m.group(1) or "tcp") not in SCHEDULER_SCHEMES or not 1 <= int(m.group(3)) <= 65535:
            raise SpecError(f"--scheduler={args.scheduler!r} is invalid: must be a Dask scheduler address "
                            f"SCHEME://HOST:PORT with SCHEME one of {SCHEDULER_SCHEMES} and PORT in [1, 65535] "
                            "(e.g. tls://10.0.0.5:8786, the address `dask scheduler` prints)")
