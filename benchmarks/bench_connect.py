"""Transition states among the minima of a finished study: min-mode following against Newton-MR.

Copies a finished study's database to a temporary folder (the original is never written) and
runs the batched double-ended search (:func:`landscape.study.transition_states.search_transition_states`: aligned
NEB bands for every pair of minima that hold basin counts, DoubleEndedConnect-style recursion)
twice from the same stored minima, side by side: once refining each band's climbing image by
minimum-mode following (the default, ``[connect] refine = "minmode"``) and once by Newton-MR (the
0.2 refinement, ``refine = "newton"``). Reports per method: pairs tried, their outcomes, the
transition states (index, the labels they join, both barriers), how many components the minima
with basin counts form before and after (joined through certified index-1 transition states), and
the wall time.

``python benchmarks/bench_connect.py [--study DIR] [--max-pairs N] [--max-depth D] [--strategy pairs|graph]
[--methods minmode newton]`` (default: ``data/paper/width/cells/d=70``, the paper's size, the 6
pairs among its four minima); results go to ``benchmarks/results/connect.json``
(``--out`` elsewhere). ``--smoke`` (seconds, for ``benchmarks/smoke.sh``; pass ``--out``): the
d = 10 cell of the same sweep (P = 700, its two minima), one pair, depth 1, min-mode only. The
study is only ever read through a temporary copy of its database: nothing is written under it
(not even SQLite's WAL index).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import networkx as nx

from landscape.io.store import StudyStore
from landscape.study.config import StudyConfig
from landscape.study.transition_states import TransitionStateSettings, search_transition_states
from landscape.study.run import StudyRun
from record import machine, write_result

ROOT = Path(__file__).resolve().parents[1]


def components(store: StudyStore) -> int:
    """Connected components of the minima that hold basin counts, joined by stored transition states."""
    counts = store.basin_counts()
    held = [p.id for p in store.points() if p.kind == "minimum" and counts.get(p.id, 0) > 0]
    G = nx.Graph()
    G.add_nodes_from(held)
    G.add_edges_from((t.min1_id, t.min2_id) for t in store.transition_states())
    return nx.number_connected_components(G.subgraph(held))


def run(study: Path, refine: str, max_pairs: int, max_depth: int, strategy: str = "pairs") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(study / "study.sqlite", Path(tmp) / "study.sqlite")
        with StudyStore.open(Path(tmp)) as store:
            cfg = StudyConfig.from_dict(store.config)
            cfg = replace(cfg, transition_states=TransitionStateSettings(max_pairs=max_pairs, max_depth=max_depth, refine=refine,
                                                       strategy=strategy))
            before = components(store)
            study_run = StudyRun(cfg, store, lambda e: None)
            t = time.perf_counter()
            n = search_transition_states(study_run)
            wall = time.perf_counter() - t
            pts = {p.id: p for p in store.points()}
            ts = [{"saddle": t.saddle_id, "index": pts[t.saddle_id].hessian_index, "loss": pts[t.saddle_id].loss,
                   "joins": [t.min1_id, t.min2_id], "labels": [pts[t.min1_id].label, pts[t.min2_id].label],
                   "barriers": [t.barrier1, t.barrier2], "refined_by": (t.details or {}).get("refined_by")}
                  for t in store.transition_states()]
            attempts = store.get_meta("connect_attempts", [])
            store_report = store.get_meta("connect_report")
            after = components(store)
            P = cfg.model.P
    report = store_report
    print(f"{refine}/{strategy}: {n} transition states from {len(attempts)} pairs in {wall:.0f} s; components {before} → {after}; "
          + "; ".join(f"{'–'.join(map(str, r['labels']))} {r['barriers'][0]:.3g}/{r['barriers'][1]:.3g}" for r in ts),
          flush=True)
    return {"refine": refine, "strategy": strategy, "P": P, "report": report, "pairs_tried": len(attempts), "transition_states": n, "wall_s": wall,
            "components_before": before, "components_after": after, "records": ts,
            "outcomes": [{k: a.get(k) for k in ("pair", "outcome", "index", "refined_by", "minmode_converged")}
                         for a in attempts]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default=str(ROOT / "data/paper/width/cells/d=70"))
    ap.add_argument("--max-pairs", type=int, default=6)
    ap.add_argument("--max-depth", type=int, default=2)
    ap.add_argument("--methods", nargs="+", default=["minmode", "newton"], choices=["minmode", "newton"])
    ap.add_argument("--strategy", default="pairs", choices=["pairs", "graph"],
                    help="pairs: the max-pairs most-visited pairs and max-depth rounds (as measured first); "
                         "graph: DoubleEndedConnect over all minima")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/connect.json"))
    ap.add_argument("--smoke", action="store_true",
                    help="seconds: the d=10 cell (P=700), one pair, depth 1, minmode only (pass --out)")
    args = ap.parse_args()
    if args.smoke:
        args.study, args.max_pairs, args.max_depth, args.methods = str(ROOT / "data/paper/width/cells/d=10"), 1, 1, ["minmode"]
    study = Path(args.study)
    rows = [run(study, m, args.max_pairs, args.max_depth, args.strategy) for m in args.methods]
    P = rows[0]["P"]
    result = {"what": "search_transition_states on a finished study's minima: min-mode following vs Newton-MR refinement",
              "date": time.strftime("%Y-%m-%d"), "study": str(study.relative_to(ROOT) if study.is_relative_to(ROOT) else study),
              "P": P, "max_pairs": args.max_pairs, "max_depth": args.max_depth, "strategy": args.strategy,
              "machine": machine(),
              "runs": rows}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
