"""A small, exactly known results folder for the figure and report tests, built from closed forms.

Deep linear CE UFM, K=4, n=2, d=6, L=3, λ=1e-3 (P = 144, dense Hessians). Five balanced critical
points of :mod:`landscape.analysis.theory`, analysed with :func:`landscape.analysis.analyse_point`:

====  =====================  =========  ======  =============================================
 id   structure              kind       starts  edges
====  =====================  =========  ======  =============================================
 0    DNC, large root        minimum    18
 1    pairs, large root      minimum    9
 2    zero (origin)          minimum    2
 3    simplex(3)+null        saddle     0       direction 0: + → 0 (DNC), − → 1 (pairs)
 4    pair+2×null            saddle     0       direction 0: + → 3, − → 1 (pairs)
====  =====================  =========  ======  =============================================

plus 3 starts stopped at ``max_iter``: 32 starts in all. The folder follows the results-folder
contract of ``landscape run`` (config.json, summary.json, study.sqlite, spectra.npz, tree.json,
graph.graphml); trajectory seeds and stop details are placeholders, the points are exact.
"""
from __future__ import annotations

import json
from pathlib import Path

from landscape.analysis import theory
from landscape.study import stats
from landscape.analysis import analyse_point
from landscape.io.results import analysis_spectra, write_spectra
from landscape.study.config import load_study
from landscape.analysis.dedup import fingerprint
from landscape.study.graph import basin_graph, disconnectivity_tree, write_graphml, write_tree_json
from landscape.io.records import PointRecord, TrajectoryRecord
from landscape.io.store import StudyStore

OVERRIDES = ["K=4", "n=2", "d=6", "L=3", "lambda=1e-3", "trajectories=32", "name=fixture"]
COUNTS = {0: 18, 1: 9, 2: 2}
N_MAX_ITER = 3
N = sum(COUNTS.values()) + N_MAX_ITER
EDGES = [(3, 0, 1, 0), (3, 0, -1, 1), (4, 0, 1, 3), (4, 0, -1, 1)]


def thetas(spec):
    """θ of points 0..4 (table in the module docstring)."""
    K, n, L, lam = spec.K, spec.n, spec.L, spec.lam
    a = theory.dnc_scale_roots(K, n, L, lam)[-1]
    b = theory.pairing_scales(K, n, L, lam)[-1]
    r3 = theory.block_scale_roots(3, K, n, L, lam)[-1]
    r2 = theory.block_scale_roots(2, K, n, L, lam)[-1]
    return [theory.dnc_point(spec, a), theory.pairing_point(spec, b), theory.balanced_point(spec, 0 * theory.simplex(K)),
            theory.balanced_point(spec, theory.block_Zbar(K, [((0, 1, 2), r3)])),
            theory.balanced_point(spec, theory.block_Zbar(K, [((0, 1), r2)]))]


def _kind(a) -> str:
    return {"minimum": "minimum", "saddle": "saddle"}.get(a.hessian.type, "degenerate")


def build_study(out) -> Path:
    """Write the folder into ``out`` (created) and return it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_study(None, OVERRIDES)
    spec = cfg.model
    ths = thetas(spec)
    ans = [analyse_point(spec, th) for th in ths]
    pts = [{"id": i, "kind": _kind(a), "label": a.label, "loss": a.loss, "grad_norm": a.grad_norm,
            "hessian_index": a.hessian.index, "fingerprint": fingerprint(spec, th), "params": th,
            "spectrum": a.spectrum, "analysis": a.to_dict()} for i, (a, th) in enumerate(zip(ans, ths))]
    owners = [pid for pid, c in COUNTS.items() for _ in range(c)] + [None] * N_MAX_ITER
    trajs = [{"idx": i, "seed": i, "stop_reason": "converged" if pid is not None else "max_iter",
              "certified": pid is not None, "point_id": pid, "loss": None if pid is None else ans[pid].loss}
             for i, pid in enumerate(owners)]
    loss = {i: a.loss for i, a in enumerate(ans)}
    edges = [{"saddle_id": s, "direction": j, "sign": sg, "target_id": t, "eps": 1e-3,
              "eigenvalue": float(ans[s].spectrum[0]), "barrier": loss[s] - loss[t], "stop_reason": "converged"}
             for s, j, sg, t in EDGES]
    with StudyStore.create(out, cfg.to_dict(), spec) as store:
        store.commit_unit(0, trajs, pts, edges)
        G = basin_graph(store.points(), store.edges(), store.basin_counts(), store.n_trajectories())
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    write_spectra(out / "spectra.npz", [analysis_spectra(a) for a in ans], range(len(ans)))
    write_tree_json(disconnectivity_tree(G), out / "tree.json")
    write_graphml(G, out / "graph.graphml")
    prov = {"engine": "gd", "step": 0.5, "init": "gaussian"}
    recs_t = [TrajectoryRecord.from_mapping(t) for t in trajs]
    recs_p = [PointRecord.from_mapping(p) for p in pts]
    bf = stats.basin_fractions(recs_t, recs_p, prov, species_kinds=("minimum",))
    rows = {r["point_id"]: r for r in bf["points"]}
    acc = stats.accumulation_curve(recs_t, recs_p)
    summary_points = []
    for i, a in enumerate(ans):
        r = rows.get(i, {"count": 0, "fraction": 0.0, **dict(zip(("ci_low", "ci_high"), stats.wilson_interval(0, N)))})
        d = a.to_dict()
        summary_points.append({
            "id": i, "kind": _kind(a), "label": a.label, "loss": a.loss, "grad_norm": a.grad_norm,
            "rank_pattern": d["rank_pattern"], "index": d["index"], "nullity": d["nullity"],
            "symmetry_zero_modes": d["symmetry_zero_modes"], "excess_zero_modes": d["excess_zero_modes"],
            "type": d["type"], "smallest_nonzero_eigenvalue": d["smallest_nonzero_eigenvalue"], "dnc_metrics": d["dnc"],
            "theory_match": {k: v for k, v in (d["theory"] or {}).items() if k != "Zbar"},
            "basin_count": r["count"], "fraction": r["fraction"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]})
    dnc = next(r for r in bf["labels"] if r["label"] == "DNC")
    best = min(summary_points, key=lambda p: p["loss"])
    summary = {
        "study": cfg.name, "config": cfg.to_dict(), "dynamics": cfg.describe_dynamics(),
        "environment": {"landscape": "test fixture"}, "wall_time_s": 0.0, "timings": {}, "trajectory_time_s": 0.0, "n_trajectories": N,
        "stop_reasons": {"converged": N - N_MAX_ITER, "max_iter": N_MAX_ITER},
        "tolerances": {"certify_tol": cfg.certify_tol}, "points": summary_points,
        "labels": [{k: r[k] for k in ("label", "n_points", "count", "fraction", "ci_low", "ci_high")} for r in bf["labels"]],
        "uncertified": bf["uncertified"], "unseen": {k: bf["unseen"][k] for k in ("estimate", "n1", "n")},
        "accumulation": {"n_trajectories": acc["n_trajectories"].tolist(), "n_distinct": acc["n_distinct"].tolist()},
        "graph": {"n_nodes": G.number_of_nodes(), "n_edges": G.number_of_edges(), "tree": "tree.json",
                  "graphml": "graph.graphml"},
        "headline": {"dnc_fraction": dnc["fraction"], "dnc_ci_low": dnc["ci_low"], "dnc_ci_high": dnc["ci_high"],
                     "lowest_loss_label": best["label"], "lowest_loss": best["loss"], "lowest_loss_point": best["id"]},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return out
