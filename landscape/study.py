"""Running a study: random starts → engine pipeline → certified, deduplicated, analysed critical
points in a database → basin fractions, the basin graph and a results folder.

The study lives in its database (:class:`landscape.store.StudyStore`, ``DIR/study.sqlite``);
everything else in the folder is derived from it. :func:`run_study` does, in order:

1. **Main trajectories** (indices 0..trajectories−1), in units of ``batch_size``: each unit runs
   the study's pipeline as one batched computation; the certified end points (‖∇L‖ ≤ certify_tol)
   are fingerprinted and deduplicated modulo symmetry (:class:`landscape.dedup.Deduplicator`)
   against every point already stored; each *new* distinct point is analysed
   (:func:`landscape.analysis.analyse_point`); then the unit's trajectories and new points are
   committed in **one transaction**. A run killed at any moment loses at most the unit in flight
   and resumes from what was committed (the same call on the same folder), never storing a
   trajectory twice (the index is the database key). A trajectory that blows up stops as
   ``diverged`` and is stored like any other.
2. **Saddle search** (``[saddles] starts``): trajectories ``index_offset + j``, seeded like any
   trajectory of that index, run the saddle pipeline (Newton-MR: critical points of any index).
   They are stored as trajectories of kind ``saddle_search`` and never count in the fractions.
3. **Connections**: for every distinct point whose Hessian has negative eigenvalues (kind
   ``saddle``), descend from θ_s ± eps·v_j along each unit negative-curvature eigenvector v_j
   (:func:`landscape.graph.connect_saddle`) with the ``descend`` pipeline; certified end points are
   deduplicated (new ones analysed) and each descent is stored as an edge (saddle, j, sign,
   target, barrier = saddle loss − target loss), one saddle per transaction. Saddles found by
   these descents are connected in further rounds (at most ``max_rounds``).
4. **Summary** (:func:`summarise`, a function of the database alone): basin fractions of the main
   trajectories for every distinct point and every label with Wilson intervals, uncertified
   trajectories by stop reason, the Good–Turing unseen mass and the accumulation curve of
   distinct minima (kinds :data:`LEAF_KINDS`), the basin graph and its disconnectivity tree.

Results folder: ``config.json`` (the effective configuration), ``study.sqlite``, ``spectra.npz``
(:func:`landscape.analysis.save_spectra`, keyed by point id), ``tree.json``
(:func:`landscape.graph.tree_to_json`), ``graph.graphml``, ``summary.json`` (keys in
:data:`SUMMARY_KEYS`) and ``report.html`` (:func:`landscape.report.write_report`).
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from . import __version__
from .analysis import analyse_point, stored_spectra, write_spectra
from .config import StudyConfig
from .dedup import Deduplicator, fingerprints
from .flows import STOP_REASONS, TrajectoryResults, run_pipeline
from .graph import basin_graph, connect_saddle, disconnectivity_tree, tree_to_json, write_graphml
from .hessian import dense_hessian, hessian_operator
from .init import draw_starts, trajectory_seed
from .model import DeepUFM
from .stats import accumulation_curve, basin_fractions, wilson_interval
from .store import DB_NAME, StoreError, StudyStore, json_default

#: Kinds of stored trajectories (the ``kind`` entry of their ``engine`` record).
MAIN, SADDLE_SEARCH = "main", "saddle_search"
#: Point kinds that are leaves of the disconnectivity tree and species of the unseen-mass and
#: accumulation estimates: minima, and index-0 points whose second order cannot decide.
LEAF_KINDS = ("minimum", "degenerate")
#: Confidence level of every interval.
CONFIDENCE = 0.95
#: Merges of the disconnectivity tree within this loss of each other become one node.
TREE_LEVEL_TOL = 0.0
#: Store kind of each :data:`landscape.hessian.TYPES` value.
KIND_OF_TYPE = {"minimum": "minimum", "saddle": "saddle", "degenerate_minimum_or_saddle": "degenerate"}
#: Stop reason stored on a descent that certified at its own saddle (it never left it).
RETURNED = "returned to the saddle"
#: Top-level keys of summary.json, in order.
SUMMARY_KEYS = ("study", "config", "dynamics", "environment", "wall_time_s", "n_trajectories", "stop_reasons",
                "tolerances", "points", "labels", "uncertified", "unseen", "accumulation", "graph", "headline",
                "files")
#: Keys of each summary.json point record.
POINT_KEYS = ("id", "kind", "label", "loss", "grad_norm", "rank_pattern", "index", "nullity", "symmetry_zero_modes",
              "excess_zero_modes", "type", "smallest_nonzero_eigenvalue", "dnc_metrics", "theory_match",
              "basin_count", "fraction", "ci_low", "ci_high")
#: Files of a results folder (summary.json "files").
FILES = {"config": "config.json", "summary": "summary.json", "database": DB_NAME, "spectra": "spectra.npz",
         "tree": "tree.json", "graphml": "graph.graphml", "report": "report.html"}


# ----- pure units of work ---------------------------------------------------------------------------
def run_trajectories(cfg: StudyConfig, indices, *, on_status=None, on_finished=None) -> TrajectoryResults:
    """Run the study's pipeline on main trajectories ``indices`` (one batch). Pure function of
    (cfg, indices): start i is drawn with the seed of index i."""
    model = DeepUFM(cfg.model)
    theta0 = draw_starts(cfg.model, cfg.init, cfg.seed, indices)
    return run_pipeline(model, theta0, list(cfg.stages), on_status=on_status, on_finished=on_finished)


def run_saddle_search(cfg: StudyConfig, indices, *, on_status=None, on_finished=None) -> TrajectoryResults:
    """Run the saddle pipeline (``cfg.saddles.stages``) on saddle-search trajectories ``indices``
    (absolute indices, ≥ ``cfg.saddles.index_offset``), drawn from ``cfg.saddles.init`` (or the
    study's init). Pure function of (cfg, indices)."""
    model = DeepUFM(cfg.model)
    theta0 = draw_starts(cfg.model, cfg.saddles.init or cfg.init, cfg.seed, indices)
    return run_pipeline(model, theta0, list(cfg.saddles.stages), on_status=on_status, on_finished=on_finished)


def chunks(cfg: StudyConfig, done: set[int] | None = None) -> list[list[int]]:
    """Main trajectory indices still to run, split into batches of ``batch_size``."""
    return _split([i for i in range(cfg.trajectories) if not done or i not in done], cfg.batch_size)


def saddle_chunks(cfg: StudyConfig, done: set[int] | None = None) -> list[list[int]]:
    """Saddle-search trajectory indices still to run, split into batches of ``batch_size``."""
    first = cfg.saddles.index_offset
    return _split([i for i in range(first, first + cfg.saddles.starts) if not done or i not in done], cfg.batch_size)


def _split(todo: list[int], size: int) -> list[list[int]]:
    return [todo[i:i + size] for i in range(0, len(todo), size)]


def negative_directions(cfg: StudyConfig, theta, index: int, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (m,) below −tau and their unit eigenvectors (P, m) of the Hessian at θ (P,), in
    float64: dense ``eigh`` when P ≤ ``analysis.dense_limit`` (the path the analysis used), else
    ARPACK for the ``index`` most negative eigenpairs (tolerance ``analysis.lanczos_tol``, start
    vector drawn with ``analysis.lanczos_seed``)."""
    if cfg.model.P <= cfg.analysis.dense_limit:
        w, V = np.linalg.eigh(dense_hessian(cfg.model, theta))
    else:
        from scipy.sparse.linalg import eigsh

        a = cfg.analysis
        v0 = np.random.default_rng(a.lanczos_seed).standard_normal(cfg.model.P)
        w, V = eigsh(hessian_operator(cfg.model, theta), k=int(index), which="SA", tol=a.lanczos_tol, v0=v0)
        order = np.argsort(w)
        w, V = w[order], V[:, order]
    neg = w < -tau
    return w[neg], V[:, neg]


# ----- json helpers -------------------------------------------------------------------------------
def write_json(path: Path, obj) -> None:
    """Write JSON atomically (temporary file, then rename), so a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=json_default, allow_nan=True))
    tmp.replace(path)


def environment() -> dict:
    return {"landscape": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "threads": torch.get_num_threads()}


def _same_json(a, b) -> bool:
    return json.loads(json.dumps(a, sort_keys=True)) == json.loads(json.dumps(b, sort_keys=True))


def open_study(cfg: StudyConfig, out_dir: str | Path) -> StudyStore:
    """The study database of ``out_dir``: created for ``cfg`` if absent, else opened (and checked
    to hold exactly ``cfg``; :class:`StoreError` otherwise)."""
    db = Path(out_dir) / DB_NAME
    if not db.exists():
        return StudyStore.create(db, cfg.to_dict(), cfg.model)
    store = StudyStore.open(db)
    if not _same_json(store.config, cfg.to_dict()):
        store.close()
        raise StoreError(f"{db} holds a study with a different configuration: resume it with "
                         f"`landscape run --resume {Path(out_dir)}`, or write to another folder")
    return store


def load_config(out_dir: str | Path) -> StudyConfig:
    """The configuration of the study stored in ``out_dir`` (its database)."""
    with StudyStore.open(Path(out_dir) / DB_NAME) as store:
        return StudyConfig.from_dict(store.config)


# ----- the run -----------------------------------------------------------------------------------
class _Session:
    """State of one run_study call: the store and the deduplicator."""

    def __init__(self, cfg: StudyConfig, store: StudyStore, report: Callable[[dict], None]):
        self.cfg, self.store, self.report = cfg, store, report
        self.model = DeepUFM(cfg.model)
        self.dedup = Deduplicator(cfg.dedup, [(p["id"], p["fingerprint"]) for p in store.points()],
                                  next_id=store.next_point_id())
        units = store.committed_units()
        self.next_unit = (max(units) + 1) if units else 0

    def unit_id(self) -> int:
        u = self.next_unit
        self.next_unit += 1
        return u

    def assign(self, thetas: torch.Tensor) -> tuple[list[int], list[dict]]:
        """Point ids of the certified points ``thetas`` (M, P) and the records of the new ones
        (analysed here, in float64)."""
        if thetas.shape[0] == 0:
            return [], []
        ids, new = [], []
        for th, fp in zip(thetas, fingerprints(self.cfg.model, thetas)):
            pid, is_new = self.dedup.assign(fp)
            ids.append(pid)
            if is_new:
                a = analyse_point(self.cfg.model, th, **self.cfg.analysis.kwargs())
                new.append({"id": pid, "kind": KIND_OF_TYPE[a.hessian.type], "label": a.label, "loss": a.loss,
                            "grad_norm": a.grad_norm, "hessian_index": a.hessian.index, "fingerprint": fp,
                            "params": th.detach().to(torch.float64).numpy(), "spectrum": a.spectrum,
                            "analysis": a.to_dict()})
        return ids, new

    def certified(self, res: TrajectoryResults) -> np.ndarray:
        return res.converged & (res.grad_norm <= self.cfg.certify_tol)

    def commit_trajectories(self, unit: int, indices: list[int], res: TrajectoryResults, kind: str) -> None:
        """Deduplicate, analyse and store one unit of trajectories in one transaction."""
        ok = self.certified(res)
        rows = np.nonzero(ok)[0]
        ids, new = self.assign(res.theta[torch.from_numpy(rows)])
        point_of = dict(zip(rows.tolist(), ids))
        trajs = []
        for b, i in enumerate(indices):
            r = res.row(b)
            trajs.append({"idx": i, "seed": trajectory_seed(self.cfg.seed, i), "stop_reason": r["stop_reason"],
                          "certified": bool(ok[b]), "iterations": r["iterations"], "n_grad": r["n_grad"],
                          "n_hvp": r["n_hvp"], "wall_time": r["wall_time"], "loss": r["loss"],
                          "grad_norm": r["grad_norm"], "point_id": point_of.get(b),
                          "engine": {"kind": kind, "last_stage": r["last_stage"], "stop_detail": r["stop_detail"]}})
        self.store.commit_unit(unit, trajs, new, wall_time=float(res.wall_time.max(initial=0.0)))

    def connect(self, saddle: Mapping) -> int:
        """Descend from one stored saddle along each negative direction; store its new points and
        edges in one transaction. Returns the number of edges."""
        cfg, a = self.cfg, saddle["analysis"]
        t0 = time.perf_counter()
        evals, V = negative_directions(cfg, saddle["params"], saddle["hessian_index"], a["tau"])
        if evals.size == 0:
            raise StoreError(f"point {saddle['id']} is stored as a saddle of index {saddle['hessian_index']} "
                             f"but its Hessian has no eigenvalue below −τ = {-a['tau']:.3g}")
        conn = connect_saddle(self.model, saddle["params"], V,
                              lambda starts: run_pipeline(self.model, starts, list(cfg.saddles.descend)),
                              eps=cfg.saddles.eps)
        res: TrajectoryResults = conn.results
        ok = self.certified(res)
        rows = np.nonzero(ok)[0]
        ids, new = self.assign(res.theta[torch.from_numpy(rows)])
        # a descent that certifies at the saddle itself never left it: no edge (a self-loop)
        target = {r: pid for r, pid in zip(rows.tolist(), ids) if pid != saddle["id"]}
        targets = [(target.get(r), float(res.loss[r]) if r in target else None,
                    RETURNED if ok[r] and r not in target else
                    str(res.stop_reason[r]) + (f" ({res.stop_detail[r]})" if res.stop_detail[r] else ""))
                   for r in range(len(res))]
        edges = conn.edges(saddle["id"], targets, evals)
        self.store.commit_unit(self.unit_id(), [], new, edges, wall_time=time.perf_counter() - t0)
        return len(edges)


def _progress_reporter(progress) -> Callable[[dict], None]:
    if callable(progress):
        return progress
    if not progress:
        return lambda event: None
    from tqdm.auto import tqdm

    def report(event: dict) -> None:
        tqdm.write(f"[{event['phase']}] {event['done']}/{event['total']} " + event.get("note", ""))

    return report


def run_study(cfg: StudyConfig, out_dir: str | Path, *, progress: bool | Callable[[dict], None] = True,
              executor=None) -> dict:
    """Run (or resume) the study ``cfg`` into the results folder ``out_dir``; return the summary.

    Steps and files in the module docstring. If ``out_dir`` already holds a database of the same
    configuration, only what it lacks is computed (a resumed run); a different configuration
    raises :class:`landscape.store.StoreError`.

    ``progress``: True (a progress bar for trajectories, a line per committed unit), False
    (silent) or a callable that receives, after each committed unit, ``{"phase": "trajectories" |
    "saddle_search" | "connect", "unit": int, "done": int, "total": int}`` (connect events add a
    ``"note"``; an exception the callable raises,
    e.g. KeyboardInterrupt, stops the run after that commit). ``executor``
    (:mod:`landscape.executors`): where the trajectory units are computed (default: here, one
    after the other); the results always come back here and this process alone writes the database.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    store = open_study(cfg, out)
    try:
        write_json(out / FILES["config"], cfg.to_dict())
        report = _progress_reporter(progress)
        session = _Session(cfg, store, report)
        done = set(store.completed_indices().tolist())
        _run_units(session, out, "trajectories", chunks(cfg, done), run_trajectories, MAIN, cfg.trajectories,
                   executor, progress is True)
        _run_units(session, out, "saddle_search", saddle_chunks(cfg, done), run_saddle_search, SADDLE_SEARCH,
                   cfg.saddles.starts, executor, progress is True)
        _connect_saddles(session)
        summary = _finish(session, out, time.perf_counter() - t_start)
    finally:
        store.close()
    from .report import write_report

    write_report(out)
    return summary


def _run_units(session: _Session, out: Path, phase: str, todo: list[list[int]], fn, kind: str, total: int,
               executor, bar: bool) -> None:
    """Compute and commit the units ``todo`` of one trajectory kind (see :func:`run_study`)."""
    from .executors import Unit

    cfg = session.cfg
    done = total - sum(len(c) for c in todo)
    if not todo:
        return
    units = [Unit(str(out), session.unit_id(), (cfg, idx)) for idx in todo]
    if executor is not None:
        results = executor.map_units(fn, units)
    else:
        from tqdm.auto import tqdm

        pbar = tqdm(total=sum(len(c) for c in todo) * len(cfg.stages if kind == MAIN else cfg.saddles.stages),
                    desc=f"{cfg.name} {phase}", unit="traj-stage", disable=not bar, dynamic_ncols=True)

        def status(s):
            pbar.set_postfix_str(f"{s['engine']} it={s['iteration']} active={s['active']}", refresh=False)

        results = ((u, fn(*u.args, on_status=status, on_finished=pbar.update)) for u in units)
    try:
        for unit, res in results:
            session.commit_trajectories(unit.chunk, list(unit.args[1]), res, kind)
            done += len(unit.args[1])
            session.report({"phase": phase, "unit": unit.chunk, "done": done, "total": total})
    finally:
        if executor is None:
            pbar.close()


def _connect_saddles(session: _Session) -> None:
    """Connect every stored saddle that has no edges yet, for at most ``max_rounds`` rounds."""
    store = session.store
    for _ in range(session.cfg.saddles.max_rounds):
        connected = {e["saddle_id"] for e in store.edges()}
        todo = [p["id"] for p in store.points() if p["kind"] == "saddle" and p["id"] not in connected]
        if not todo:
            return
        for k, pid in enumerate(todo):
            n = session.connect(store.point(pid))
            session.report({"phase": "connect", "unit": session.next_unit - 1, "done": k + 1, "total": len(todo),
                            "note": f"saddle {pid}: {n} descents"})


# ----- summary -----------------------------------------------------------------------------------
def main_trajectories(store: StudyStore) -> list[dict]:
    """Stored trajectories of the main dynamics (those that count in the fractions)."""
    return [t for t in store.trajectories() if (t["engine"] or {}).get("kind") == MAIN]


def _uncertified_reason(t: Mapping) -> str:
    detail = (t["engine"] or {}).get("stop_detail")
    return t["stop_reason"] + (f" ({detail})" if detail else "")


def summarise(cfg: StudyConfig, store: StudyStore) -> dict:
    """Everything summary.json derives from the database (no wall time, environment or files):
    ``n_trajectories``, ``stop_reasons``, ``tolerances``, ``points``, ``labels``, ``uncertified``,
    ``unseen``, ``accumulation``, ``headline``, and the basin graph ``G`` and disconnectivity
    tree ``T`` (networkx objects, not JSON). Fractions are of all main trajectories
    (:func:`landscape.stats.basin_fractions`); saddle-search trajectories never count."""
    trajs = main_trajectories(store)
    n = len(trajs)
    points = store.points()
    # "stalled" splits by detail (gradient_flat / plateau) in the uncertified rows
    detailed = [{**t, "stop_reason": _uncertified_reason(t)} if t["point_id"] is None else t for t in trajs]
    prov = {"engine": " → ".join(s.engine for s in cfg.stages), "step": cfg.describe_dynamics(),
            "init": cfg.init.to_dict()}
    bf = basin_fractions(detailed, points, prov, CONFIDENCE, species_kinds=LEAF_KINDS)
    counts = {r["point_id"]: r["count"] for r in bf["points"]}
    rows = []
    for p in sorted(points, key=lambda p: (p["loss"], p["id"])):
        a = p["analysis"] or {}
        c = counts.get(p["id"], 0)
        lo, hi = wilson_interval(c, n, CONFIDENCE)
        theory = a.get("theory")
        rows.append({"id": p["id"], "kind": p["kind"], "label": p["label"], "loss": p["loss"],
                     "grad_norm": p["grad_norm"], "rank_pattern": a.get("rank_pattern"), "index": a.get("index"),
                     "nullity": a.get("nullity"), "symmetry_zero_modes": a.get("symmetry_zero_modes"),
                     "excess_zero_modes": a.get("excess_zero_modes"), "type": a.get("type"),
                     "smallest_nonzero_eigenvalue": a.get("smallest_nonzero_eigenvalue"), "dnc_metrics": a.get("dnc"),
                     "theory_match": None if theory is None else {k: v for k, v in theory.items() if k != "Zbar"},
                     "basin_count": c, "fraction": c / n if n else None, "ci_low": lo, "ci_high": hi})
    labels = {}
    for r in rows:
        labels.setdefault(r["label"], []).append(r)
    label_rows = []
    for lab, rs in labels.items():
        c = sum(r["basin_count"] for r in rs)
        lo, hi = wilson_interval(c, n, CONFIDENCE)
        label_rows.append({"label": lab, "n_points": len(rs), "count": c, "fraction": c / n if n else None,
                           "ci_low": lo, "ci_high": hi})
    label_rows.sort(key=lambda r: (-r["count"], str(r["label"])))
    acc = accumulation_curve(trajs, points, species_kinds=LEAF_KINDS)
    G = basin_graph(points, store.edges(), counts, n)
    T = disconnectivity_tree(G, level_tol=TREE_LEVEL_TOL, leaf_kinds=LEAF_KINDS)
    dnc = next((r for r in label_rows if r["label"] == "DNC"), None)
    if dnc is None:
        lo, hi = wilson_interval(0, n, CONFIDENCE)
        dnc = {"fraction": 0.0 if n else None, "ci_low": lo, "ci_high": hi}
    best = rows[0] if rows else None
    return {
        "n_trajectories": n,
        "stop_reasons": {r: sum(1 for t in trajs if t["stop_reason"] == r) for r in STOP_REASONS},
        "tolerances": {"certify_tol": cfg.certify_tol, "dedup": cfg.dedup.to_dict(), "analysis": cfg.analysis.to_dict(),
                       "confidence": CONFIDENCE, "saddle_eps": cfg.saddles.eps, "tree_level_tol": TREE_LEVEL_TOL},
        "points": rows,
        "labels": label_rows,
        "uncertified": bf["uncertified"],
        "unseen": {k: bf["unseen"][k] for k in ("estimate", "n1", "n")},
        "accumulation": {"n_trajectories": acc["n_trajectories"].tolist(), "n_distinct": acc["n_distinct"].tolist()},
        "headline": {"dnc_fraction": dnc["fraction"], "dnc_ci_low": dnc["ci_low"], "dnc_ci_high": dnc["ci_high"],
                     "lowest_loss_label": best and best["label"], "lowest_loss": best and best["loss"],
                     "lowest_loss_point": best and best["id"]},
        "G": G, "T": T,
    }


def _finish(session: _Session, out: Path, wall: float) -> dict:
    """Write spectra.npz, tree.json, graph.graphml and summary.json; return the summary."""
    cfg, store = session.cfg, session.store
    s = summarise(cfg, store)
    G, T = s.pop("G"), s.pop("T")
    # from the stored analyses, so points analysed by an earlier (interrupted) process cost nothing
    points = store.points(with_params=True)
    write_spectra(out / FILES["spectra"], [stored_spectra(p["analysis"], p["spectrum"]) for p in points],
                  [p["id"] for p in points])
    write_json(out / FILES["tree"], tree_to_json(T))
    write_graphml(G, out / FILES["graphml"])
    summary = {"study": cfg.name, "config": cfg.to_dict(), "dynamics": cfg.describe_dynamics(),
               "environment": environment(), "wall_time_s": wall,
               **{k: s[k] for k in SUMMARY_KEYS[5:SUMMARY_KEYS.index("graph")]},
               "graph": {"n_nodes": G.number_of_nodes(), "n_edges": G.number_of_edges(), "tree": FILES["tree"],
                         "graphml": FILES["graphml"]},
               "headline": s["headline"], "files": dict(FILES)}
    write_json(out / FILES["summary"], summary)
    return summary
