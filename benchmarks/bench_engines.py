"""Speed of the batched engines against the alternatives researchers use today.

1. GD throughput (trajectory-steps per second) of the default study's GD phase: the batched
   engine at B trajectories against the plain loop a researcher would write (one trajectory at a
   time, ``torch.optim.SGD`` and autograd), on the same starts. Prints the ratio.
2. Time per certified critical point (‖∇L‖ ≤ 1e-10) for every engine pipeline of ``landscape``
   and for pele's ``lbfgs_cpp`` quench (one start at a time; ``pip install pele``), on the same
   starts, with the basin fractions each produces (end points grouped by loss to 1e-7).

Run: ``python benchmarks/bench_engines.py`` (about 2–3 minutes on 2 cores). ``--quick`` for a
smaller run; ``--smoke`` (seconds, for ``benchmarks/smoke.sh``: toy sizes, pass ``--out``) checks
that it runs, not what it measures. Results are printed and written to
``benchmarks/results/engines.json`` (``--out`` elsewhere).
"""
from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from baselines import pele_quench, sgd_baseline
from landscape.core.init import draw_starts
from landscape.core.model import DeepUFM
from landscape.engines import StageConfig, run_engine, run_pipeline
from landscape.study.config import load_study


def fractions(loss: np.ndarray, certified: np.ndarray) -> dict:
    """Fraction of all starts per distinct end loss (rounded to 1e-7); uncertified separately."""
    c = Counter(f"{x:.7f}" for x in loss[certified])
    n = len(loss)
    out = {k: round(v / n, 4) for k, v in sorted(c.items())}
    out["uncertified"] = round(float((~certified).sum()) / n, 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--B", type=int, default=1024, help="batch size for the GD throughput test")
    ap.add_argument("--steps", type=int, default=200, help="GD steps in the throughput test")
    ap.add_argument("--baseline-trajectories", type=int, default=16, help="trajectories the SGD loop runs")
    ap.add_argument("--starts", type=int, default=512, help="starts for the per-critical-point comparison")
    ap.add_argument("--no-pele", action="store_true", help="skip pele even if installed")
    ap.add_argument("--quick", action="store_true", help="smaller sizes")
    ap.add_argument("--smoke", action="store_true", help="toy sizes (seconds): pass --out")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "engines.json"))
    args = ap.parse_args()
    if args.quick:
        args.B, args.steps, args.baseline_trajectories, args.starts = 256, 50, 4, 48
    if args.smoke:
        args.B, args.steps, args.baseline_trajectories, args.starts = 32, 5, 2, 8
    cfg = load_study()
    model = DeepUFM(cfg.model)
    report: dict = {"config": cfg.to_dict(), "threads": torch.get_num_threads()}

    # ---- 1. GD throughput -------------------------------------------------------------------
    theta0 = draw_starts(cfg.model, cfg.init, cfg.seed, range(args.B))
    lr = cfg.stages[0].lr
    gd = StageConfig(engine="gd", lr=lr, max_iter=args.steps, tol=1e-300, stall_window=10 ** 9)
    run_engine(model, theta0[:8], StageConfig(engine="gd", lr=lr, max_iter=5, tol=1e-300))  # warm-up
    t = time.perf_counter()
    res = run_engine(model, theta0, gd)
    t_batched = time.perf_counter() - t
    nb = args.baseline_trajectories
    t_loop, loop_loss = sgd_baseline(model, theta0[:nb], lr, args.steps)
    thr_b = args.B * args.steps / t_batched
    thr_l = nb * args.steps / t_loop
    agree = float(np.max(np.abs(loop_loss - res.loss[:nb])))
    print(f"[GD throughput] batched B={args.B}: {thr_b:,.0f} traj-steps/s; one-at-a-time torch.optim.SGD: "
          f"{thr_l:,.0f} traj-steps/s; ratio {thr_b / thr_l:.1f}x (same starts, max |Δloss| {agree:.1e})")
    report["gd_throughput"] = {"B": args.B, "steps": args.steps, "batched_traj_steps_per_s": thr_b,
                               "sgd_loop_traj_steps_per_s": thr_l, "ratio": thr_b / thr_l, "max_loss_diff": agree}

    # ---- 2. time per certified critical point ---------------------------------------------
    M = args.starts
    starts = draw_starts(cfg.model, cfg.init, cfg.seed, range(M))
    polish = StageConfig(engine="newton", max_iter=100, stall_window=10, tol=1e-10)
    pipelines = {
        "gd(lr=0.5)+newton": [cfg.stages[0], polish],
        "flow(dopri5)+newton": [StageConfig(engine="flow", max_iter=20000, tol=1e-6), polish],
        "lbfgs": [StageConfig(engine="lbfgs", max_iter=5000, tol=1e-10, stall_window=200)],
    }
    rows = {}
    for name, stages in pipelines.items():
        t = time.perf_counter()
        r = run_pipeline(model, starts, stages)
        dt = time.perf_counter() - t
        cert = r.grad_norm <= 1e-10
        rows[name] = {"seconds": dt, "certified": int(cert.sum()), "ms_per_certified": 1e3 * dt / max(cert.sum(), 1),
                      "fractions": fractions(r.loss, cert)}
    if not args.no_pele:
        try:
            dt, th, steps = pele_quench(model, starts, 1e-10)
            loss, g = model.loss_and_grad(th)
            cert = (g.norm(dim=1) <= 1e-10).numpy()
            rows["pele lbfgs_cpp"] = {"seconds": dt, "certified": int(cert.sum()),
                                      "ms_per_certified": 1e3 * dt / max(cert.sum(), 1),
                                      "median_steps": float(np.median(steps)), "fractions": fractions(loss.numpy(), cert)}
        except ImportError:
            print("pele is not installed (pip install pele): skipping the pele comparison")
    print(f"[per certified critical point] {M} starts of the default study")
    for name, r in rows.items():
        print(f"  {name:22s} {r['seconds']:7.2f} s  certified {r['certified']:4d}/{M}  "
              f"{r['ms_per_certified']:8.3f} ms/point  fractions {r['fractions']}")
    if "pele lbfgs_cpp" in rows:
        best = min((r["ms_per_certified"], n) for n, r in rows.items() if n != "pele lbfgs_cpp")
        ratio = rows["pele lbfgs_cpp"]["ms_per_certified"] / best[0]
        print(f"  fastest landscape engine ({best[1]}) is {ratio:.1f}x faster per certified point than pele")
        report["pele_ratio"] = ratio
    report["per_point"] = rows
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
