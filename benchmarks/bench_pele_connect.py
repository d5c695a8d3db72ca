"""Transition states between two minima of a paper-size study: this tool's search against pele's DoubleEndedConnect.

pele (GPL; ``pip install pele`` into the benchmark environment, run as a peer, never copied) is
given the same two minima, the study's loss and gradient (float64, :class:`DeepUFM`) as a
``BasePotential``, and this tool's alignment modulo symmetry
(:func:`landscape.analysis.symmetry.align`: class relabelling, Procrustes per gauge interface) as
its ``mindist``; its transition-state search projects out the UFM's gauge-orbit tangents (the tool's
:func:`~landscape.analysis.symmetry.symmetry_space`) as its zero-mode projection
(``orthogZeroEigs``; pele's default removes rigid-body modes of atoms, ``--no-projection`` none:
then its index screen meets ~900 exact zero modes at P = 9100), and its tolerances are scaled to
this landscape (:data:`TS_PARAMS`, :data:`NEB_PARAMS`; pele's defaults are for atomic clusters). The tool searches the same pair
with its own connect phase (:func:`landscape.study.transition_states.search_transition_states`, ``strategy = "pairs"``,
the pair named, ``max_depth = 2``) on a temporary copy of the study (the original is never
written). Per pair and method: success, the transition states on the joining path (loss, ‖∇L‖,
the minima they join), the highest one and the barrier out of the first minimum through it, and
the wall time. The tool's saddles are certified (index 1 from the exact Hessian); pele's are
reported as it returns them, with their Hessian index computed here by the tool's own analysis.

``python benchmarks/bench_pele_connect.py [--study DIR] [--pairs A,B C,D] [--niter N]`` (default:
``data/paper/width/cells/d=70``, P = 9100, pairs 1,3 (pairs – simplex(6)+2×pair) and 2,3
(simplex(8)+pair – simplex(6)+2×pair), the two pairs the tool joined directly in
``data/paper/fig2-d70``); results go to ``benchmarks/results/pele_connect.json``.

Where pele is not installed, a run that asks for it says so and exits 0 without writing anything
(``--methods landscape`` runs the tool's search alone). ``--smoke`` (seconds, for
``benchmarks/smoke.sh``; pass ``--out``): the d = 10 cell of the same sweep (P = 700), its pair
0,1 (the tool's search to depth 1), pele with 2 cycles where installed, else the tool's search
alone. The study is only ever read through a temporary copy of its database: nothing is written
under it (not even SQLite's WAL index).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import networkx as nx
import numpy as np
import torch

from landscape.analysis.point import analyse_point
from landscape.analysis.symmetry import align, symmetry_space
from landscape.core.model import DeepUFM
from landscape.io.store import StudyStore
from landscape.study.config import StudyConfig
from landscape.study.transition_states import search_transition_states
from landscape.study.run import StudyRun
from record import machine, write_result

ROOT = Path(__file__).resolve().parents[1]
#: pele's transition-state search: no rigid-body projection (a UFM's zero modes are gauge modes),
#: Lanczos-style lowest eigenvector (not pele's numerical Hessian, 9100 gradients a time here), and
#: its rms gradient tolerance at ‖∇L‖ ≈ 1e-7 (rms = ‖∇L‖/√P) with room to get there.
TS_PARAMS = {"hessian_diagonalization": False, "tol": 1e-9, "nsteps": 1000}
#: pele's band: its default quench tolerance (rms 1e-2) is above this landscape's whole force scale
#: (the band would stop at step 0), so 1e-6, as this tool's band tolerance in rms terms; the
#: spring k = 1 as this tool's (pele's 100 left its band at rms 0.68 after 500 steps at P = 9100).
#: ‖∇L‖ at which pele's quench from a transition state's two sides stops.
QUENCH_TOL = 1e-8
NEB_PARAMS = {"NEBquenchParams": {"tol": 1e-6, "maxErise": 100.0, "nsteps": 3000}, "k": 1.0}


def ours(study: Path, a: int, b: int, max_depth: int = 2) -> dict:
    """The tool's connect phase on the named pair, on a copy of the study."""
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(study / "study.sqlite", Path(tmp) / "study.sqlite")
        with StudyStore.open(Path(tmp)) as store:
            cfg = StudyConfig.from_dict(store.config)
            cfg = replace(cfg, transition_states=replace(cfg.transition_states, max_pairs=0, pairs=((a, b),), strategy="pairs",
                                               max_depth=max_depth))
            t = time.perf_counter()
            search_transition_states(StudyRun(cfg, store, lambda e: None))
            wall = time.perf_counter() - t
            pts = {p.id: p for p in store.points()}
            G = nx.Graph()
            for ts in store.transition_states():
                G.add_edge(ts.min1_id, ts.min2_id, saddle=ts.saddle_id)
            ok = a in G and b in G and nx.has_path(G, a, b)
            path = nx.shortest_path(G, a, b) if ok else []
            saddles = [G.edges[u, v]["saddle"] for u, v in zip(path, path[1:])]
            rows = [{"loss": pts[s].loss, "grad_norm": pts[s].grad_norm, "index": pts[s].hessian_index,
                     "joins": [pts[u].label, pts[v].label]} for s, (u, v) in zip(saddles, zip(path, path[1:]))]
            out = {"method": "landscape connect (NEB + min-mode following)", "success": ok, "wall_s": wall,
                   "path": [pts[m].label for m in path], "transition_states": rows,
                   "attempts": len(store.get_meta("connect_attempts", []))}
            if rows:
                top = max(r["loss"] for r in rows)
                out.update(highest=top, barrier_from_first=top - pts[a].loss)
            return out


def theirs(spec, pa: np.ndarray, pb: np.ndarray, la: float, lb: float, niter: int, project: bool = True) -> dict:
    """pele's DoubleEndedConnect between the same two minima (module docstring)."""
    from pele.landscape import DoubleEndedConnect
    from pele.potentials import BasePotential
    from pele.storage import Database

    model = DeepUFM(spec)
    calls = {"n": 0}

    class UFMPotential(BasePotential):
        def getEnergy(self, x):
            calls["n"] += 1
            return float(model.loss(torch.from_numpy(np.asarray(x, dtype=np.float64))[None])[0])

        def getEnergyGradient(self, x):
            calls["n"] += 1
            E, g = model.loss_and_grad(torch.from_numpy(np.asarray(x, dtype=np.float64))[None])
            return float(E[0]), g[0].numpy().copy()

    cache = {"x": None, "Q": None}

    def gauge_projection(v, coords):
        """v with the gauge-orbit tangents at coords projected out (pele's ``orthogZeroEigs``: its
        zero-mode projection, here the UFM's symmetry tangents instead of rigid-body modes); the
        basis is recomputed when coords moved by more than 1e-3 relative."""
        x = np.asarray(coords, dtype=np.float64)
        if cache["x"] is None or np.linalg.norm(x - cache["x"]) > 1e-3 * np.linalg.norm(x):
            cache["x"], cache["Q"] = x.copy(), symmetry_space(spec, x).basis
        Q = cache["Q"]
        return v - Q @ (Q.T @ v)

    ts_params = {**TS_PARAMS, "orthogZeroEigs": gauge_projection} if project else {**TS_PARAMS, "orthogZeroEigs": None}

    def mindist(x1, x2):
        x2a, info = align(spec, np.asarray(x1), np.asarray(x2))
        return float(info["distance"]), np.asarray(x1).copy(), np.asarray(x2a)

    from pele.optimize import lbfgs_cpp

    def quench(x):
        """pele's C++ L-BFGS to ‖∇L‖ ≤ 1e-8 (its rms test, tol/√P), small steps (the barrier on one
        side of a TS here can be 1e-5 high: pele's default quench, rms 1e-4 and its step, stops at
        once or steps back across it)."""
        return lbfgs_cpp(np.asarray(x, dtype=np.float64).copy(), pot, tol=QUENCH_TOL / np.sqrt(spec.P),
                         nsteps=200000, M=10, maxstep=0.01)

    pot = UFMPotential()
    db = Database(accuracy=1e-10)   # minima told apart by energy to 1e-10 (pele's default: 1e-3)
    m1, m2 = db.addMinimum(la, pa), db.addMinimum(lb, pb)
    t = time.perf_counter()
    conn = DoubleEndedConnect(m1, m2, pot, mindist, db, niter=niter, verbosity=0,
                              local_connect_params={"tsSearchParams": ts_params, "NEBparams": NEB_PARAMS,
                                                    "pushoff_params": {"quench": quench}})
    conn.connect()
    wall = time.perf_counter() - t
    ok = bool(conn.success())
    out = {"method": "pele DoubleEndedConnect (NEB + hybrid eigenvector following)",
           "zero_modes": "gauge tangents projected out" if project else "not projected", "success": ok, "wall_s": wall,
           "potential_calls": calls["n"], "minima_found": len(db.minima()),
           "transition_states_found": len(db.transition_states())}
    if ok:
        mints, _, energies = conn.returnPath()
        rows = []
        for ts in mints[1::2]:
            g = model.loss_and_grad(torch.from_numpy(np.asarray(ts.coords, dtype=np.float64))[None])[1][0]
            a = analyse_point(spec, np.asarray(ts.coords, dtype=np.float64))
            rows.append({"loss": float(ts.energy), "grad_norm": float(g.norm()), "index": a.hessian.index,
                         "label": a.label})
        out["transition_states"] = rows
        out["path_energies"] = [float(e) for e in energies]
        top = max(r["loss"] for r in rows)
        out.update(highest=top, barrier_from_first=top - la)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default=str(ROOT / "data/paper/width/cells/d=70"))
    ap.add_argument("--pairs", nargs="+", default=["1,3", "2,3"])
    ap.add_argument("--niter", type=int, default=20, help="pele's DoubleEndedConnect cycles per pair")
    ap.add_argument("--methods", nargs="+", default=["landscape", "pele"], choices=["landscape", "pele"])
    ap.add_argument("--no-projection", action="store_true",
                    help="leave pele's zero-mode projection off (orthogZeroEigs=None) instead of the gauge tangents")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/pele_connect.json"))
    ap.add_argument("--smoke", action="store_true",
                    help="seconds: the d=10 cell (P=700), pair 0,1, pele 2 cycles where installed (pass --out)")
    args = ap.parse_args()
    have_pele = importlib.util.find_spec("pele") is not None
    if args.smoke:
        args.study, args.pairs, args.niter = str(ROOT / "data/paper/width/cells/d=10"), ["0,1"], 2
        if not have_pele:
            print("pele is not installed (pip install pele): smoke run of the landscape method only", flush=True)
            args.methods = [m for m in args.methods if m != "pele"] or ["landscape"]
    elif "pele" in args.methods and not have_pele:
        print("pele is not installed (pip install pele): skipping this benchmark, nothing written "
              "(--methods landscape runs this tool's search alone)", flush=True)
        return
    study = Path(args.study)
    with tempfile.TemporaryDirectory() as src:
        # read (and search) a copy: even a read-only open of a WAL database writes its index next to it
        shutil.copy(study / "study.sqlite", Path(src) / "study.sqlite")
        rows, cfg = run_pairs(Path(src), args)
    result = {"what": "two pairs of minima joined by this tool's connect phase and by pele's DoubleEndedConnect "
                      "(the tool's alignment as pele's distance), side by side",
              "date": time.strftime("%Y-%m-%d"),
              "study": str(study.relative_to(ROOT) if study.is_relative_to(ROOT) else study), "P": cfg.model.P,
              "machine": machine(),
              "rows": rows}
    write_result(args.out, result)


def run_pairs(study: Path, args) -> tuple[list[dict], StudyConfig]:
    """Each pair of ``args.pairs`` by each method of ``args.methods``, on ``study`` (a copy)."""
    with StudyStore.open(study, readonly=True) as store:
        cfg = StudyConfig.from_dict(store.config)
        pts = {p.id: store.point(p.id) for p in store.points()}
    rows = []
    for text in args.pairs:
        a, b = map(int, text.split(","))
        row = {"pair": [a, b], "labels": [pts[a].label, pts[b].label], "losses": [pts[a].loss, pts[b].loss]}
        if "landscape" in args.methods:
            row["landscape"] = ours(study, a, b, max_depth=1 if args.smoke else 2)
            print(f"{a},{b} landscape: {json.dumps(row['landscape'], default=str)}", flush=True)
        if "pele" in args.methods:
            row["pele"] = theirs(cfg.model, pts[a].params, pts[b].params, pts[a].loss, pts[b].loss, args.niter,
                                 project=not args.no_projection)
            print(f"{a},{b} pele: {json.dumps(row['pele'], default=str)}", flush=True)
        rows.append(row)
    return rows, cfg


if __name__ == "__main__":
    main()
