"""Transition states between minima: a batched double-ended search, modulo the model's symmetries.

Default: the 6 most-visited pairs of minima (``[connect] max_pairs``), 14 interior images per band.

For the pairs of minima to connect (:class:`TransitionStateSettings`: every pair among the minima that
hold basin counts, most-visited first, up to ``max_pairs``, plus the pairs the user names),
:func:`search_transition_states`:

1. **aligns** each pair's second minimum to the first modulo symmetry
   (:func:`landscape.analysis.symmetry.align`: class relabelling, an orthogonal Procrustes
   rotation per gauge interface, hidden-unit permutations for ReLU), so the band is not a gauge
   artefact;
2. runs a **nudged elastic band** with a climbing image for every pair at once
   (:func:`landscape.engines.neb.run_neb`, images × pairs on the leading dimension); with
   ``[connect] insert`` = k, grows every relaxed band by k images where it brackets a maximum
   worst (AutoNEB-style, :func:`landscape.engines.neb.insert_images`) and relaxes it again;
3. **refines** the climbing image (and its two neighbours) by minimum-mode following
   (:mod:`landscape.engines.minmode`: uphill along the lowest Hessian mode, downhill in its
   complement, so it ends at index-1 saddles, not at the nearest critical point), polished with
   the study's saddle pipeline (Newton-MR) to ‖∇L‖ ≤ certify_tol; rows where min-mode following
   fails are refined by Newton-MR from the image (``[connect] refine = "newton"``: always), which
   converges to the nearby critical point of any index. The results join the study's registry of
   points (:class:`landscape.study.points.PointRegistry`: deduplicated, a new one analysed once),
   and it keeps an index-1 saddle (net of symmetry zero modes; one found by min-mode following
   first) as the candidate transition state — or, when the band's barrier refines only to a
   saddle of higher index (a straight band between symmetric end points can be a symmetric valley whose
   highest point is such a saddle), records it as a *connecting saddle*: its descents join the
   basin graph, but it is not a transition state;
4. **confirms** it: descents from ±ε along its negative eigenvector with the study's descent
   pipeline (:meth:`landscape.study.run.StudyRun.descend_from`, stored as edges) must reach two distinct
   minima (for a connecting saddle, also along the band's tangent at the climbing image projected
   onto the unstable space: the band's own way across; edge direction ``BAND_DIRECTION``); the transition state is stored (saddle, its two minima, the barrier from each side,
   the band's highest image and length) and the two minima are joined;
5. **splits** a pair whose band dips into a third basin (AutoNEB-style; ``[connect] split``):
   every interior image that is a local minimum of its band's loss profile (:func:`band_minima`)
   is descended with the study's saddle-descent pipeline; a minimum other than the pair's two is
   stored (it holds no basin count) and the sub-pairs (first end, it, …, second end) are searched
   next (``pairs`` strategy) or enter the graph of minima as new nodes (``graph`` strategy);
6. **recurses** like pele's DoubleEndedConnect: when the transition state joins other minima than
   the pair, the unconnected sub-pairs (each end of the pair with the nearer of the new minima)
   are searched in the next round, up to ``max_depth`` rounds. Pairs already joined through stored
   transition states are skipped, and every attempt is recorded in the database (so a resumed
   study does not repeat it).
"""
from __future__ import annotations

import sys

import time
from collections import Counter
from dataclasses import replace
from typing import Any, Protocol

import networkx as nx
import numpy as np
import torch

from ..analysis.point import LEAF_KINDS
from ..analysis.symmetry import align
from ..engines import run_pipeline
from ..engines.minmode import follow_min_mode
from ..engines.neb import insert_images, run_neb
from ..io.records import PointRecord, TransitionStateRecord
from ..io.store import StudyStore

#: Meta key of the record of attempted pairs.
ATTEMPTS_KEY = "connect_attempts"
#: Edge direction number of descents along a band's tangent (the unstable directions count from 0).
BAND_DIRECTION = 1000


from .transition_state_settings import TransitionStateSettings  # noqa: E402  (the [transition_states] table, torch-free)
from .points import PointRegistry  # noqa: E402
from .summary import main_trajectories  # noqa: E402


class StudyRunView(Protocol):
    """What the double-ended search needs from a study run (:class:`landscape.study.run.StudyRun`
    is one): its configuration, store and model, its registry of distinct points, and the study's
    own certify and descend steps, so every saddle and minimum it finds is deduplicated, analysed,
    stored and connected as the study's are."""

    cfg: Any                 #: the :class:`~landscape.study.config.StudyConfig`
    store: StudyStore
    model: Any               #: the study's :class:`~landscape.core.model.DeepUFM`
    points: PointRegistry    #: the study's distinct points (deduplication, analysis, kinds)
    next_unit: int

    def certified(self, res) -> np.ndarray:
        """(B,) bool: which rows of a :class:`TrajectoryResults` are certified critical points."""

    def unit_id(self) -> int:
        """A fresh unit number for a commit."""

    def descend_from(self, saddle: PointRecord, directions=None, first_direction: int = 0) -> int:
        """Descend from ±ε along a saddle's unstable directions (stored as edges); returns how many."""

    def report(self, event: dict) -> None:
        """A progress event."""


def candidate_pairs(points: list[PointRecord], counts: dict, cfg: TransitionStateSettings) -> tuple[list[tuple[int, int]], list[dict]]:
    """The pairs to connect: among the minima holding basin counts (most-visited first), pairs in
    the order (0,1), (0,2), (1,2), (0,3), … up to ``max_pairs``, then the user's pairs; and the
    user's pairs left out, each with the reason (a point the study does not hold: the study is
    finished without that pair instead of failing after its trajectories, and on every resume)."""
    kind = {p.id: p.kind for p in points}
    held = held_minima(points, counts)
    pairs = [(held[i], held[j]) for j in range(len(held)) for i in range(j)][:cfg.max_pairs]
    skipped = []
    for a, b in cfg.pairs:
        if a not in kind or b not in kind:
            skipped.append({"pair": [a, b], "outcome": f"skipped: transition_states.pairs names point {a if a not in kind else b}, "
                                                       f"which the study does not hold (it has {sorted(kind)})"})
        elif (a, b) not in pairs and (b, a) not in pairs and a != b:
            pairs.append((a, b))
    return pairs, skipped


def _joined(store: StudyStore) -> nx.utils.UnionFind:
    uf = nx.utils.UnionFind()
    for t in store.transition_states():
        uf.union(t.min1_id, t.min2_id)
    return uf


def _ends_of(store: StudyStore, saddle_id: int) -> list[int]:
    """Distinct minima the stored descents from a saddle reached."""
    kinds = {p.id: p.kind for p in store.points()}
    out = []
    for e in store.edges():
        if e.saddle_id == saddle_id and e.target_id is not None and kinds.get(e.target_id) in LEAF_KINDS:
            if e.target_id not in out:
                out.append(e.target_id)
    return out


def band_minima(E: np.ndarray, depth: float) -> list[int]:
    """Interior images (indices 1 … M of a band's loss profile ``E`` (M+2,), end points included)
    that are local minima of the profile at least ``depth`` × (max E − min E) below both
    neighbours: where a band between two minima dips into a third basin."""
    E = np.asarray(E, dtype=np.float64)
    tol = depth * float(E.max() - E.min())
    return [i for i in range(1, E.size - 1) if E[i] < E[i - 1] - tol and E[i] < E[i + 1] - tol]


def search_pairs(run: StudyRunView, pairs: list[tuple[int, int]]) -> list[dict]:
    """One round of the double-ended search (module docstring, steps 1–4) for ``pairs``, batched.
    Returns one record per pair: {"pair", "outcome", "saddle_id", "joins", "transition_state"}."""
    cfg, store, model = run.cfg, run.store, run.model
    spec = cfg.model
    if not pairs:
        return []
    t0 = time.perf_counter()
    pts = {p: store.point(p) for pr in pairs for p in pr}
    A = np.stack([pts[a].params for a, _ in pairs])
    B = np.stack([align(spec, pts[a].params, pts[b].params)[0] for a, b in pairs])
    opts = cfg.transition_states.neb_options()
    band = {"max_iter": cfg.transition_states.neb_iter, "tol": cfg.transition_states.neb_tol}
    res = run_neb(model, torch.from_numpy(A), torch.from_numpy(B), opts, **band)
    if cfg.transition_states.insert:   # AutoNEB-style: images where the maxima are resolved worst, then relax again
        with torch.no_grad():
            R, _ = insert_images(res.images, res.loss, cfg.transition_states.insert, model.loss)
        opts = replace(opts, images=opts.images + cfg.transition_states.insert)
        res = run_neb(model, R[:, 0], R[:, -1], opts, initial=R, **band)
    Q, M = len(pairs), opts.images
    # refine the climbing image and its neighbours (interior only) with the saddle pipeline
    cand_idx = []
    for q in range(Q):
        c = int(res.climbing[q])
        cand_idx.append([i for i in (c, c - 1, c + 1) if 1 <= i <= M])
    starts = torch.cat([res.images[q, cand_idx[q]] for q in range(Q)]).cpu()
    # AutoNEB-style splitting: descend from the band's interior local minima of the loss
    split_idx = [band_minima(res.loss[q].cpu().numpy(), cfg.transition_states.split_depth) if cfg.transition_states.split else []
                 for q in range(Q)]
    by_minmode = np.zeros(starts.shape[0], dtype=bool)
    if cfg.transition_states.refine == "minmode":
        # climb the lowest mode, descend the rest: index-1 saddles; polish those with Newton-MR,
        # and fall back to Newton-MR from the image where it failed
        mm = follow_min_mode(model, starts, cfg.transition_states.minmode_options(), max_iter=cfg.transition_states.minmode_iter)
        by_minmode = mm.converged
        starts = torch.where(torch.from_numpy(by_minmode)[:, None], mm.theta.to(starts.dtype), starts)
    ref = run_pipeline(model, starts, list(cfg.saddles.stages))
    new: list[dict] = []
    ok = run.certified(ref)
    rows = np.nonzero(ok)[0]
    ids = dict(zip(rows.tolist(), run.points.assign(ref.theta[torch.from_numpy(rows)], new)))
    split_ids: dict[int, int] = {}
    if any(split_idx):
        low = torch.cat([res.images[q, split_idx[q]] for q in range(Q) if split_idx[q]]).cpu()
        down = run_pipeline(model, low, list(cfg.saddles.descend))
        rows = np.nonzero(run.certified(down))[0]
        split_ids = dict(zip(rows.tolist(), run.points.assign(down.theta[torch.from_numpy(rows)], new)))
    if new:
        run.store.commit_unit(run.unit_id(), [], new, wall_time=time.perf_counter() - t0)
    out = []
    r = s_row = 0
    for q, (a, b) in enumerate(pairs):
        rec = {"pair": [a, b], "neb_images": M, "neb_converged": bool(res.converged[q]),
               "neb_iterations": int(res.iterations[q]),
               "neb_force": float(res.force[q]), "path_max_loss": float(res.loss[q].max()),
               "path_length": float(res.length[q]), "saddle_id": None, "joins": [], "outcome": "no index-1 saddle"}
        split = []  # minima other than the pair's, in the order of the band's images
        for _ in split_idx[q]:
            m = split_ids.get(s_row)
            s_row += 1
            if m is not None and m not in (a, b) and m not in split and store.point(m).kind in LEAF_KINDS:
                split.append(m)
        rec["band_minima"] = len(split_idx[q])
        rec["split"] = split
        cands = []
        rec["minmode_converged"] = int(by_minmode[r:r + len(cand_idx[q])].sum())
        for i in cand_idx[q]:
            pid = ids.get(r)
            mm_row = bool(by_minmode[r])
            r += 1
            if pid is None:
                continue
            p = store.point(pid)
            if p.kind == "saddle":
                # index 1 first, then what min-mode following found, then the saddle nearest the
                # climbing image's loss
                cands.append((p.hessian_index != 1, not mm_row, abs(p.loss - float(res.loss[q, i])), pid, mm_row))
        if cands:
            *_, sid, mm_row = min(cands)
            rec["saddle_id"] = sid
            rec["refined_by"] = "min-mode following" if mm_row else "newton-mr"
            saddle = store.point(sid)
            if not any(e.saddle_id == sid for e in store.edges()):
                run.descend_from(saddle)
            if saddle.hessian_index > 1 and not any(e.saddle_id == sid and e.direction >= BAND_DIRECTION
                                                       for e in store.edges()):
                # a degenerate or higher-index unstable space: descend along the band's own way
                # across the barrier, its tangent at the climbing image projected onto that space
                c = int(res.climbing[q])
                tangent = (res.images[q, c + 1] - res.images[q, c - 1]).cpu().numpy()
                space = run.points.unstable_space(saddle)   # None only for a kink saddle (index 0)
                u = space[1] @ (space[1].T @ tangent) if space is not None else np.zeros_like(tangent)
                if np.linalg.norm(u) > 1e-12 * np.linalg.norm(tangent):
                    run.descend_from(saddle, directions=u / np.linalg.norm(u), first_direction=BAND_DIRECTION)
            ends = _ends_of(store, sid)
            rec["joins"] = ends
            index = store.point(sid).hessian_index
            rec["index"] = index
            if len(ends) < 2:
                rec["outcome"] = "descents did not reach two minima"
            elif index == 1:
                rec["outcome"] = "transition state"
            else:  # the band's barrier is a higher-index saddle: it joins the basin graph, but is no TS
                rec["outcome"] = f"connecting saddle of index {index}"
        out.append(rec)
    return out


#: Meta key of the connect phase's report (strategy, pairs tried, components, what stopped it).
REPORT_KEY = "connect_report"


def main_basin_counts(store: StudyStore) -> dict[int, int]:
    """{point id: main trajectories that certified there}: the basin counts of the study's own
    dynamics (saddle-search and check trajectories left out)."""
    return dict(Counter(t.point_id for t in main_trajectories(store) if t.certified and t.point_id is not None))


def held_minima(points: list[PointRecord], counts: dict) -> list[int]:
    """Minima that hold basin counts (``counts``: {point id: starts}), most-visited first."""
    kind = {p.id: p.kind for p in points}
    return sorted((pid for pid, c in counts.items() if c > 0 and kind.get(pid) in LEAF_KINDS),
                  key=lambda pid: (-counts[pid], pid))


def components_of(held: list[int], uf: nx.utils.UnionFind) -> int:
    """How many components the minima ``held`` form, joined through stored transition states."""
    return len({uf[m] for m in held})


def plan_path(held: list[int], minima: list[int], dist2, uf: nx.utils.UnionFind,
              failed: set) -> tuple[list[tuple[int, int]], str]:
    """The next pairs to search, as pele's DoubleEndedConnect chooses them: on the complete graph
    of ``minima`` with edge weight 0 between minima already joined by transition states, ∞ (no
    edge) for pairs in ``failed`` (frozensets: searched without joining them), and the aligned
    distance² ``dist2(a, b)`` otherwise, the cheapest path from the component of the most-visited
    minimum ``held[0]`` to a minimum of ``held`` outside it (the nearest such, ties to the
    most-visited); its edges between different components are the pairs. Returns (pairs, "") or
    ([], why): "connected" (every held minimum in one component) or "no untried pair left"."""
    if not held:
        return [], "connected"
    root = uf[held[0]]
    outside = [m for m in held if uf[m] != root]
    if not outside:
        return [], "connected"
    G = nx.Graph()
    G.add_nodes_from(minima)
    for i, a in enumerate(minima):
        for b in minima[i + 1:]:
            if uf[a] == uf[b]:
                G.add_edge(a, b, weight=0.0)
            elif frozenset((a, b)) not in failed:
                G.add_edge(a, b, weight=float(dist2(a, b)))
    sources = {m for m in minima if uf[m] == root}
    dist, paths = nx.multi_source_dijkstra(G, sources, weight="weight")
    reachable = [m for m in outside if m in dist]
    if not reachable:
        return [], "no untried pair left"
    target = min(reachable, key=lambda m: (dist[m], held.index(m)))
    path = paths[target]
    return [(a, b) for a, b in zip(path, path[1:]) if uf[a] != uf[b]], ""


def _record_round(run: StudyRunView, found: list[dict], attempts: list, tried: set, losses: dict,
                  done: int, total: int) -> list:
    """Store the transition states of one round of :func:`search_pairs`, append its attempts and
    report it (round ``done`` of ``total``); returns the sub-pairs DoubleEndedConnect would search
    next (each end of a pair whose transition state joined other minima, with the nearer of those
    minima)."""
    store = run.store
    nxt = []
    for rec in found:
        a, b = rec["pair"]
        tried.add(tuple(sorted((a, b))))
        attempts.append({k: rec.get(k) for k in ("pair", "outcome", "saddle_id", "index", "joins", "neb_images",
                                                   "neb_converged", "neb_iterations", "path_max_loss", "path_length",
                                                   "refined_by", "minmode_converged", "band_minima", "split")})
        joined = rec["outcome"] == "transition state" and set(rec["joins"][:2]) == {a, b}
        if rec.get("split") and not joined:  # split the pair at the band's intermediate minima
            chain = [a, *rec["split"], b]
            nxt += list(zip(chain, chain[1:]))
        if rec["outcome"] != "transition state":
            continue
        sid = rec["saddle_id"]
        m1, m2 = rec["joins"][:2]
        s_loss = store.point(sid).loss
        store.add_transition_states([TransitionStateRecord(
            saddle_id=sid, min1_id=m1, min2_id=m2, barrier1=s_loss - losses.get(m1, store.point(m1).loss),
            barrier2=s_loss - losses.get(m2, store.point(m2).loss), path_max_loss=rec["path_max_loss"],
            path_length=rec["path_length"], pair_a=a, pair_b=b,
            details={k: rec.get(k) for k in ("neb_converged", "neb_iterations", "neb_force", "refined_by")})])
        losses.update({p.id: p.loss for p in store.points()})
        if {m1, m2} != {a, b}:
            pa = store.point(a).params
            near_a = min((m1, m2), key=lambda m: align(run.cfg.model, pa, store.point(m).params)[1]["distance"])
            other = m2 if near_a == m1 else m1
            nxt += [(a, near_a), (other, b)]
    store.set_meta(ATTEMPTS_KEY, attempts)
    run.report({"phase": "transition_states", "unit": run.next_unit - 1, "done": done, "total": total,
                "note": f"{sum(r['outcome'] == 'transition state' for r in found)} of {len(found)} pairs joined"})
    return nxt


def search_transition_states(run: StudyRunView) -> int:
    """Join the minima by transition states (module docstring); returns how many transition states
    are stored after it. Nothing to do when ``max_pairs`` is 0 and no pair is named. Writes the
    phase's report (:data:`REPORT_KEY`): strategy, pairs tried, transition states, components of
    the minima holding basin counts before and after, and what stopped it."""
    cfg, store = run.cfg.transition_states, run.store
    if cfg.max_pairs == 0 and not cfg.pairs:
        return len(store.transition_states())
    t0 = time.perf_counter()
    attempts = store.get_meta(ATTEMPTS_KEY, [])
    tried = {tuple(sorted(x["pair"])) for x in attempts}
    points, counts = store.points(), main_basin_counts(store)
    todo, skipped = candidate_pairs(points, counts, cfg)
    for rec in skipped:
        if tuple(rec["pair"]) not in {tuple(x["pair"]) for x in attempts}:
            attempts.append(rec)
        print(f"landscape: {rec['outcome']}; the study is finished without it", file=sys.stderr)
    if skipped:
        store.set_meta(ATTEMPTS_KEY, attempts)
    losses = {p.id: p.loss for p in store.points()}
    held = held_minima(points, counts)
    before = components_of(held, _joined(store))
    n_before = len(attempts)
    if cfg.strategy == "pairs":
        stopped = "the listed pairs and max_depth rounds are done"
        for depth in range(cfg.max_depth + 1):
            uf = _joined(store)
            todo = [(a, b) for a, b in dict.fromkeys(todo) if tuple(sorted((a, b))) not in tried and uf[a] != uf[b]]
            todo = list({tuple(sorted(p)): p for p in todo}.values())   # one search per unordered pair
            if not todo:
                break
            found = search_pairs(run, todo)
            nxt = _record_round(run, found, attempts, tried, losses, depth + 1, cfg.max_depth + 1)
            todo = [(x, y) for x, y in nxt if x != y]
    else:
        spec = run.cfg.model
        params: dict[int, np.ndarray] = {}
        cache: dict[frozenset, float] = {}

        def dist2(a: int, b: int) -> float:
            key = frozenset((a, b))
            if key not in cache:
                for m in (a, b):
                    if m not in params:
                        params[m] = store.point(m).params
                cache[key] = align(spec, params[a], params[b])[1]["distance"] ** 2
            return cache[key]

        bad = {tuple(r["pair"]) for r in skipped}
        named = [(a, b) for a, b in cfg.pairs if (a, b) not in bad and a != b and tuple(sorted((a, b))) not in tried]
        rounds = 0
        while True:
            n_tried = len(attempts) - n_before
            if time.perf_counter() - t0 > cfg.budget_s:
                stopped = f"budget: {cfg.budget_s:g} s spent"
                break
            if n_tried >= cfg.max_pairs:
                stopped = f"max_pairs: {cfg.max_pairs} pairs searched"
                break
            uf = _joined(store)
            if named:
                pairs, why, named = named, "", []
            else:
                kinds = {p.id: p.kind for p in store.points()}
                minima = sorted(pid for pid, k in kinds.items() if k in LEAF_KINDS)
                joined_pairs = {frozenset((t.min1_id, t.min2_id)) for t in store.transition_states()}
                failed = {frozenset(p) for p in tried} - joined_pairs
                pairs, why = plan_path(held, minima, dist2, uf, failed)
            pairs = [p for p in pairs if tuple(sorted(p)) not in tried][:cfg.max_pairs - n_tried]
            if not pairs:
                stopped = why or "no untried pair left"
                break
            found = search_pairs(run, pairs)
            rounds += 1
            _record_round(run, found, attempts, tried, losses, rounds, rounds)
    uf = _joined(store)
    report = {"strategy": cfg.strategy, "pairs_tried": len(attempts) - n_before,
              "transition_states": len(store.transition_states()), "held_minima": len(held),
              "components_before": before, "components_after": components_of(held, uf),
              "stopped": "connected" if held and components_of(held, uf) == 1 else stopped,
              "wall_s": time.perf_counter() - t0}
    store.set_meta(REPORT_KEY, report)
    return len(store.transition_states())
