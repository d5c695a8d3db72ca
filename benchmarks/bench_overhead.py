"""Where a study's wall time goes: the engines against everything around them.

Runs one study (default: the embedded default model with 2,000 starts, no saddle search and no
transition states, so that the main dynamics and its bookkeeping are all there is) and splits its
wall time into

* ``engines``: every ``run_pipeline`` call of the study (the main dynamics, the polish, resumed
  descents past saddles);
* ``analysis``: ``analyse_point`` of each new distinct point (Hessian, structure, symmetry);
* ``outside``: the rest — starts, fingerprints and deduplication, commits and checkpoints, the
  summary, tree and graph.

``python benchmarks/bench_overhead.py [--trajectories N] [--set K=V …]`` prints the shares and
writes ``benchmarks/results/overhead.json`` (``--out`` elsewhere). ``--smoke`` (seconds, for
``benchmarks/smoke.sh``; pass ``--out``): 32 starts in units of 16.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

import landscape.study.points as points_module
import landscape.study.run as run_module
import landscape.study.work as work_module
from landscape.study.config import load_study


def timed(fn, bucket: dict, key: str):
    def wrapper(*a, **kw):
        t = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            bucket[key] += time.perf_counter() - t
    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trajectories", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--set", action="append", default=[], metavar="K=V", help="further overrides of the study")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "overhead.json"))
    ap.add_argument("--smoke", action="store_true", help="seconds: 32 starts in units of 16 (pass --out)")
    args = ap.parse_args()
    if args.smoke:
        args.trajectories, args.batch_size = 32, 16
    overrides = [f"trajectories={args.trajectories}", f"batch_size={args.batch_size}", "saddles.starts=0",
                 "transition_states.max_pairs=0", "name=overhead", *args.set]
    cfg = load_study(overrides=overrides)
    spent = {"engines": 0.0, "analysis": 0.0}
    run_module.run_pipeline = timed(run_module.run_pipeline, spent, "engines")     # resumed descents
    work_module.run_pipeline = timed(work_module.run_pipeline, spent, "engines")   # the trajectories
    points_module.analyse_point = timed(points_module.analyse_point, spent, "analysis")   # the registry analyses
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        summary = run_module.run_study(cfg, Path(tmp) / "study", progress=False)
        wall = time.perf_counter() - t
    outside = wall - spent["engines"] - spent["analysis"]
    rec = {"when": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.node(), "threads": torch.get_num_threads(),
           "torch": torch.__version__, "overrides": overrides, "P": cfg.model.P, "dynamics": summary["dynamics"],
           "points": len(summary["points"]), "wall_s": wall, "engines_s": spent["engines"],
           "analysis_s": spent["analysis"], "outside_s": outside,
           "shares": {"engines": spent["engines"] / wall, "analysis": spent["analysis"] / wall,
                      "outside": outside / wall}}
    print(f"{args.trajectories} starts at P={cfg.model.P} ({summary['dynamics']}): {wall:.1f} s; engines "
          f"{100 * rec['shares']['engines']:.1f}%, analysis of {rec['points']} points "
          f"{100 * rec['shares']['analysis']:.1f}%, outside {100 * rec['shares']['outside']:.1f}% ({outside:.1f} s)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rec, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    sys.exit(main())
