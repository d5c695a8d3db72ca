"""Is the kink polish faithful to gradient descent? (issue 35 §1)

A ReLU study's descent stops after ``stages.0.max_iter`` GD steps, short of its kink point, and
the kink polish (:func:`landscape.analysis.kinks.hand_off_to_kinks`) finishes the last stretch. The
finish is faithful when it lands where GD itself goes. This benchmark runs the same starts twice,
for M and for ``--factor`` × M GD steps (same engine, step and initialisation as the preset),
hands both ends to the kink polish, and compares, row by row:

* ``agree``: both hand-offs certified and the two polished points are one point modulo the model's
  symmetries (the study's own deduplication fingerprints, with its tolerances) and equal in loss to
  1e-9 relative;
* ``gd_above``: the long descent's loss is not below the short hand-off's polished loss (GD has not
  gone past it to somewhere lower), and ``gap``: how far above it GD still is, relative;
* rows certified only after the long descent (the short one had not settled) are counted apart:
  the polish refused them rather than guess.

Reports the counts and writes JSON (engine, step, init, M, the machine). Usage::

    python benchmarks/bench_kink_faithful.py --preset relu-ce --starts 32 --steps 30000
    python benchmarks/bench_kink_faithful.py --smoke
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from landscape.analysis.dedup import Deduplicator, fingerprints
from landscape.analysis.kinks import hand_off_to_kinks
from landscape.analysis.point import analyse_point
from landscape.study.config import load_study
from landscape.study.work import run_trajectories

from record import machine, write_result


def descend(cfg, indices: list[int], steps: int):
    """The study's first (GD) stage alone, for ``steps`` steps, from the starts ``indices``."""
    n = max(indices) + 1
    c = load_study(None, [f"trajectories={n}", f"batch_size={n}", f"stages.0.max_iter={steps}",
                          "stages.0.tol=1e-300", f"stages.0.stall_window={10 * steps}"], preset=cfg)
    c = dataclasses.replace(c, stages=c.stages[:1])
    t = time.perf_counter()
    res = run_trajectories(c, list(indices))
    return c, res, time.perf_counter() - t


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="relu-ce")
    ap.add_argument("--starts", type=int, default=32)
    ap.add_argument("--steps", type=int, default=30000, help="M: the study's GD budget")
    ap.add_argument("--factor", type=int, default=10)
    ap.add_argument("--indices", default="", help="comma-separated start indices (default 0..starts−1)")
    ap.add_argument("--smoke", action="store_true", help="a toy run (4 starts, 3000 steps, factor 2)")
    ap.add_argument("--out", default="benchmarks/results/kink_faithful.json")
    a = ap.parse_args(argv)
    if a.smoke:
        a.starts, a.steps, a.factor = 4, 3000, 2
    idx = [int(i) for i in a.indices.split(",")] if a.indices else list(range(a.starts))
    a.starts = len(idx)
    cfg, short, t_short = descend(a.preset, idx, a.steps)
    _, long_, t_long = descend(a.preset, idx, a.factor * a.steps)
    spec = cfg.model
    hs = hand_off_to_kinks(spec, short.theta, short.loss, short.grad_norm, tol=cfg.certify_tol,
                           stalled=short.stop_reason == "stalled")
    hl = hand_off_to_kinks(spec, long_.theta, long_.loss, long_.grad_norm, tol=cfg.certify_tol,
                           stalled=long_.stop_reason == "stalled")
    both = hs.ok & hl.ok
    agree = np.zeros(a.starts, dtype=bool)
    for b in np.nonzero(both)[0]:
        dd = Deduplicator(cfg.dedup)
        fp = fingerprints(spec, np.stack([hs.theta[b], hl.theta[b]]))
        same = dd.assign(fp[0])[0] == dd.assign(fp[1])[0]
        agree[b] = same and abs(hs.loss[b] - hl.loss[b]) <= 1e-9 * abs(hl.loss[b])
    # what the study makes of a point the two disagree on: its kind by the study's own analysis (a
    # saddle or an undecided point holds no basin count: the study resumes or leaves that row)
    kinds = {}
    for b in np.nonzero(both & ~agree)[0].tolist():
        kinds[idx[b]] = {w: {"kind": analyse_point(spec, th[b], cfg.analysis).kind, "loss": float(lo[b])}
                         for w, th, lo in (("short", hs.theta, hs.loss), ("long", hl.theta, hl.loss))}
    np.savez_compressed(str(a.out).replace(".json", ".npz"), indices=np.array(idx), short=hs.theta, long=hl.theta,
                        short_ok=hs.ok, long_ok=hl.ok, gd_long=long_.theta.numpy())
    gd_long = np.asarray(long_.loss, dtype=np.float64)
    gap = (gd_long - hs.loss) / np.abs(hs.loss)
    out = {"preset": a.preset, "dynamics": f"{cfg.stages[0].describe()} (one round), then the kink polish; init {cfg.init.name}",
           "lr": cfg.stages[0].lr,
           "starts": a.starts, "steps": a.steps, "factor": a.factor,
           "certified_short": int(hs.ok.sum()), "certified_long": int(hl.ok.sum()),
           "both": int(both.sum()), "agree": int(agree[both].sum()),
           "indices": idx, "disagree": kinds,
           "gd_above": int((gap[hs.ok] >= -1e-12).sum()),
           "gap_of_long_gd": {"min": float(gap[hs.ok].min(initial=np.inf)), "max": float(gap[hs.ok].max(initial=-np.inf))},
           "only_long_certified": int((~hs.ok & hl.ok).sum()),
           "refused_short": sorted({r for r, k in zip(hs.reason, hs.ok) if not k}),
           "seconds": {"gd_short": t_short, "gd_long": t_long}, "machine": machine(),
           "date": time.strftime("%Y-%m-%d")}
    print(f"{a.preset}: {a.starts} starts, GD {a.steps} vs {a.factor * a.steps} steps ({out['dynamics']}): "
          f"certified {out['certified_short']} / {out['certified_long']}; of the {out['both']} certified by both, "
          f"{out['agree']} polish to the same point; the long GD stays above the short polish in "
          f"{out['gd_above']} of {out['certified_short']}; certified only after the long run: {out['only_long_certified']}")
    write_result(a.out, out)
    return out


if __name__ == "__main__":
    main()
