"""λ cells as one batch (per-row λ) against the same cells one after another: wall time and answers.

Runs the paper's weight-decay axis (``--preset paper-lambda``: K=10, n=5, L=2, GD lr 0.5 then the
Newton polish) at a small width twice into fresh folders: first with the in-process executor
(cells one after the other, each unit one batched computation refilled at the working batch),
then with the default :class:`landscape.study.lambda_batch.LambdaBatchExecutor` (the same-index units of all λ
cells as one batch with λ per row, so that no cell runs its tail alone). Both in this process,
with torch's default thread count. Checks that both give the same prevalence table (counts per
label, uncertified counts, distinct points) and reports the ratio as measured, whatever it is.

Run: ``python benchmarks/bench_lambda_batch.py`` (a few minutes on 2 cores); ``--set KEY=VALUE``
changes the sweep (e.g. ``--set d=30``, ``--set 'sweep.lambda=[...]'``). Results go to
``benchmarks/results/lambda_batch.json`` (``--out`` elsewhere). ``--smoke`` (seconds, for
``benchmarks/smoke.sh``; pass ``--out``): two λ cells of 8 trajectories under L-BFGS instead of
GD (seconds rather than minutes to certified ends: it checks that the benchmark runs, not what it
measures).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from landscape.study.executors import InProcessExecutor
from landscape.study.lambda_batch import LambdaBatchExecutor
from landscape.study.sweep import load_sweep, run_sweep
from record import machine, write_result

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SET = ["d=10", "trajectories=64", "batch_size=64",
               "sweep.lambda=[0.00390625, 0.001953125, 0.0009765625, 0.00048828125, 0.000244140625]"]
#: What ``--smoke`` adds to :data:`DEFAULT_SET`.
SMOKE_SET = ["trajectories=8", "batch_size=8", "sweep.lambda=[0.0009765625, 0.00048828125]", "engine=lbfgs",
             "stages.0.max_iter=3000", "stages.0.tol=1e-8"]
#: Columns that must agree between the two executors.
SAME = ("n_trajectories", "dnc_count", "uncertified_count", "n_distinct_points", "mean_logit_rank")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/lambda_batch.json"))
    ap.add_argument("--smoke", action="store_true", help="seconds: 2 cells of 8 trajectories (pass --out)")
    args = ap.parse_args()
    overrides = DEFAULT_SET + (SMOKE_SET if args.smoke else []) + args.overrides
    sweep = load_sweep(None, overrides, preset="paper-lambda")
    print(f"sweep {sweep.name}: {len(sweep.cells)} cells at P={sweep.cells[0].config.model.P}; "
          f"{os.cpu_count()} cores, {torch.get_num_threads()} torch threads")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        alone = run_sweep(sweep, Path(tmp) / "alone", executor=InProcessExecutor(), progress=False)
        t_alone = time.perf_counter() - t
        print(f"cell after cell: {t_alone:.1f} s")
        joint = LambdaBatchExecutor()
        t = time.perf_counter()
        pooled = run_sweep(sweep, Path(tmp) / "joint", executor=joint, progress=False)
        t_joint = time.perf_counter() - t
        print(f"one batch ({joint.lambda_batches} λ-batch units): {t_joint:.1f} s; ratio {t_alone / t_joint:.2f}")

    def key(rows):
        # NaN (the mean logit rank of a cell without a certified end) as None, so that it equals itself
        return [({k: None if r[k] != r[k] else r[k] for k in SAME}, {k: v for k, v in r.items() if k.startswith("count_")})
                for r in rows]

    same = key(alone["prevalence"]) == key(pooled["prevalence"])
    result = {
        "what": "paper-lambda cells one after another (inprocess) vs as one batch with per-row λ (lambda-batch)",
        "date": time.strftime("%Y-%m-%d"), "overrides": overrides, "n_cells": len(sweep.cells),
        "P": sweep.cells[0].config.model.P,
        "machine": machine(),
        "cell_after_cell_s": t_alone, "one_batch_s": t_joint, "speedup": t_alone / t_joint,
        "joint_units": joint.lambda_batches, "same_prevalence": same,
        "cell_times_s": {c["name"]: c["wall_time_s"] for c in alone["cells"]},
        "prevalence": pooled["prevalence"], "paired": pooled["paired"],
    }
    write_result(args.out, result)
    print(f"same prevalence: {same}")
    if not same:   # as bench_sweep.py
        raise SystemExit("the two executors disagree: see the prevalence rows in the result file")


if __name__ == "__main__":
    main()
