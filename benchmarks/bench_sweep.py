"""In-process against ``dask-local`` on one sweep: wall time, speed-up, and the same answers.

Runs one sweep twice into fresh folders, first with the in-process executor (cells one after the
other, each chunk one batched computation with torch's default thread count), then with a Dask
``LocalCluster`` of ``--workers`` processes (one task and cores/workers torch threads each; cells
run concurrently, this process writes every database). The Dask time includes starting the
cluster (reported separately too). It checks that both runs give the same prevalence table (same
counts per label, same uncertified counts, same number of distinct points) and reports the
speed-up as measured, whatever it is.

Default sweep: ``data/sweeps/width_lambda_small.toml`` (4 cells) with gradient descent (lr 0.5,
at most 2000 steps, then the Newton polish) instead of L-BFGS so that computing dominates, 32
trajectories per cell in chunks of 8: 16 units. Run: ``python benchmarks/bench_sweep.py`` (about a minute on 2 cores);
extra ``--set KEY=VALUE`` options change the sweep. Results go to
``benchmarks/results/sweep.json`` (``--out`` elsewhere). ``--smoke`` (seconds, most of them the
cluster's start; for ``benchmarks/smoke.sh``, pass ``--out``): the two d = 8 cells, 4 trajectories
each in units of 2; it checks that the benchmark runs and both executors agree, not the speed-up.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from landscape.study.executors import InProcessExecutor, LocalDaskExecutor
from landscape.study.sweep import load_sweep, run_sweep

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SET = ["trajectories=32", "batch_size=8", "engine=gd", "lr=0.5", "stages.0.max_iter=2000",
               "stages.0.stall_window=1000"]
#: What ``--smoke`` adds to :data:`DEFAULT_SET`.
SMOKE_SET = ["trajectories=4", "batch_size=2", "sweep.d=[8]"]
#: Columns that must agree between the two executors.
SAME = ("n_trajectories", "dnc_count", "uncertified_count", "n_distinct_points", "mean_logit_rank")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", default=str(ROOT / "data/sweeps/width_lambda_small.toml"))
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/sweep.json"))
    ap.add_argument("--smoke", action="store_true", help="seconds: 2 cells of 4 trajectories (pass --out)")
    args = ap.parse_args()
    overrides = DEFAULT_SET + (SMOKE_SET if args.smoke else []) + args.overrides
    sweep = load_sweep(args.sweep, overrides)
    n_units = sum(-(-c.config.trajectories // c.config.batch_size) for c in sweep.cells)
    print(f"sweep {sweep.name}: {len(sweep.cells)} cells, {n_units} units; {os.cpu_count()} cores")

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        ref = run_sweep(sweep, Path(tmp) / "inprocess", executor=InProcessExecutor(), progress=False)
        t_in = time.perf_counter() - t
        print(f"in-process ({torch.get_num_threads()} torch threads): {t_in:.1f} s")

        t = time.perf_counter()
        with LocalDaskExecutor(args.workers) as ex:
            t_start = time.perf_counter() - t
            threads = sorted(set(ex.worker_torch_threads().values()))
            t_run = time.perf_counter()
            got = run_sweep(sweep, Path(tmp) / "dask", executor=ex, progress=False)
            t_run = time.perf_counter() - t_run
        t_dask = time.perf_counter() - t
        print(f"dask-local ({args.workers} workers x {threads} torch threads): {t_dask:.1f} s "
              f"(cluster start {t_start:.1f} s, sweep {t_run:.1f} s)")

    same = all(all(a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]) for k in SAME)
               and {k: v for k, v in a.items() if k.startswith("frac_")} == {k: v for k, v in b.items() if k.startswith("frac_")}
               for a, b in zip(ref["prevalence"], got["prevalence"]))
    result = {
        "sweep": sweep.to_dict(), "overrides": overrides, "n_cells": len(sweep.cells), "n_units": n_units,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
        "inprocess_s": t_in, "inprocess_torch_threads": torch.get_num_threads(),
        "dask_local_s": t_dask, "dask_cluster_start_s": t_start, "dask_sweep_s": t_run,
        "dask_workers": args.workers, "dask_torch_threads": threads,
        "speedup_total": t_in / t_dask, "speedup_excluding_cluster_start": t_in / t_run,
        "same_prevalence": same, "retried_units": got["retried_units"],
        "prevalence": ref["prevalence"],
    }
    print(f"speed-up {result['speedup_total']:.2f}x including cluster start, "
          f"{result['speedup_excluding_cluster_start']:.2f}x excluding it; same prevalence table: {same}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"written {args.out}")
    if not same:
        raise SystemExit("the two executors disagree: see the prevalence rows in the result file")


if __name__ == "__main__":
    main()
