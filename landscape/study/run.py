"""Running a study: random starts → engine pipeline → certified, deduplicated, analysed critical
points in a database.

The study lives in its database (:class:`landscape.io.store.StudyStore`, ``DIR/study.sqlite``);
everything else in the folder is derived from it (:mod:`landscape.study.summary`). :func:`run_study`
does, in order:

1. **Main trajectories** (indices 0..trajectories−1), in units of ``batch_size``: each unit runs
   the study's pipeline as one batched computation (:func:`run_trajectories`, a pure function of
   the configuration and the indices, which is what an executor ships to a worker); the certified
   end points (‖∇L‖ ≤ certify_tol) go to the study's registry of points
   (:class:`~landscape.study.points.PointRegistry`): fingerprinted and deduplicated modulo
   symmetry against every point already stored, each *new* distinct point analysed once; then the
   unit's trajectories and new points are committed in **one transaction**. The state of the
   call in progress (store, registry, unit numbers, the saddle prefetch) is a :class:`StudyRun`.

   **Descent-faithful ends.** Under a descent dynamics (gd, flow, lbfgs) a trajectory counts only
   where that dynamics ends: at a minimum. A finisher (the Newton polish) may only shorten the
   last convex stretch; the driver already refuses to hand over while it finds negative
   curvature, and here every certified end point's analysed kind is checked: a row that ended at
   a saddle (or at a point whose analysis could not be verified) has its polish discarded and its
   main dynamics resumed from the pre-polish state, with the condition that it converges only
   below the saddle's loss (minus ``ESCAPE_RTOL``·|loss|), for at most ``max_saddle_visits``
   visits; a saddle on ReLU kinks, or a point there that is not Clarke-stationary, which GD does
   not leave by itself, is resumed from a start below its loss: moved at most ``saddles.eps``
   across a kink, or at most 10·``saddles.eps`` along a negative curvature the loss follows on
   the kink set
   (:func:`~landscape.study.kink_finish.escape_across_kinks`). Every visit is stored with the
   trajectory (``saddle_visits``: the saddle and how many
   iterations the trajectory lingered with ‖∇L‖ at the hand-off tolerance before handing over).
   A row still at a saddle after its last visit, or out of budget, is stored uncertified.
   Newton-MR as the main engine is a critical-point finder: its ends are kept as they are.

   A run killed at any moment loses at most the unit in flight and resumes from what was
   committed (the same call on the same folder), never storing a trajectory twice.
   **Check** (``[cross_check] starts``, optional): main starts 0..starts−1 run again by the check
   dynamics (``[[cross_check.stages]]``), stored as trajectories ``CHECK_OFFSET + j`` of kind
   ``check``, finished faithfully like the main ones, never counted in the fractions; the summary
   says how often both end at the same point (:func:`landscape.study.summary.cross_check_record`).
2. **Saddle search** (``[saddles] starts``): trajectories ``index_offset + j`` run the saddle
   pipeline (Newton-MR: critical points of any index). Stored with kind ``saddle_search``; never
   counted in the fractions.
3. **Connections**: every stored saddle without edges is descended from θ_s ± eps·u along its
   unstable directions (:mod:`landscape.study.descents`) with the ``descend`` pipeline, one
   saddle per transaction; saddles found by these descents are connected in further rounds (at
   most ``max_rounds``).
4. **Transition states** (``[transition_states]``): :mod:`landscape.study.transition_states`.
5. **Summary** and derived files: :func:`landscape.study.summary.finish`. (The featured spectra
   and ``report.html`` follow in :func:`landscape.run_study`, :mod:`landscape.viz.pipeline`.)
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..analysis.kinks import kink_descents
from ..analysis.point import LEAF_KINDS
from ..core.init import trajectory_seed
from ..engines import TrajectoryResults, run_pipeline
from ..engines.outcomes import Detail, Outcome, with_detail
from ..io.records import PointRecord, TrajectoryRecord
from ..io.lambda0_store import Lambda0Store
from ..io.results import DB_NAME, FILES, LAMBDA0_FILES, has_lambda0_database, write_json
from ..io.store import StoreError, StudyStore
from .config import CHECK_OFFSET, StudyConfig
from .kink_finish import escape_across_kinks, finish_on_kinks, kink_refused
from .lambda0 import run_lambda0_study
from .transition_states import search_transition_states
from .executor_base import Unit
from .points import PointRegistry
from .prefetch import SaddlePrefetch, prefetch_possible
from .summary import CHECK, MAIN, finish
from .descents import descend_from_saddle
from .work import (certified_mask, cross_check_chunks, chunks, run_cross_check, run_saddle_search,
                   run_trajectories, saddle_chunks, saddle_descent_starts, stages_of, study_model,
                   study_working_batch)

#: Kind of the stored saddle-search trajectories (``main`` ones count in the fractions).
SADDLE_SEARCH = "saddle_search"
#: Stop reason stored on a descent that certified at its own saddle (it never left it).
RETURNED = Outcome.RETURNED
#: A trajectory resumed past a saddle converges only below saddle loss − ESCAPE_RTOL·|loss|.
ESCAPE_RTOL = 1e-9
#: Stop detail of a row still at a saddle after its last allowed visit.
SADDLE_VISITS = Detail.SADDLE_VISITS


# ----- opening -------------------------------------------------------------------------------------
def open_study(cfg: StudyConfig, out_dir: str | Path) -> StudyStore:
    """The study database of ``out_dir``: created for ``cfg`` if absent (or empty: a file left by
    a run killed while creating it), else opened and checked to hold exactly ``cfg``."""
    db = Path(out_dir) / DB_NAME
    if not db.exists() or StudyStore.is_uninitialised(db):
        StudyStore.discard_uninitialised(db)
        return StudyStore.create(db, cfg.to_dict(), cfg.model)
    store = StudyStore.open(db)
    try:
        stored = StudyConfig.from_dict(store.config).to_dict()
    except Exception:
        stored = store.config
    if stored != cfg.to_dict():
        store.close()
        raise StoreError(f"{db} holds a study with a different configuration: resume it with "
                         f"`landscape run --resume {Path(out_dir)}`, or write to another folder")
    return store


def load_config(out_dir: str | Path) -> StudyConfig:
    """The configuration of the study stored in ``out_dir`` (its database: study.sqlite, or
    lambda0.sqlite for a λ = 0 study)."""
    if not (Path(out_dir) / DB_NAME).exists() and has_lambda0_database(out_dir):
        return StudyConfig.from_dict(Lambda0Store.read_config(Path(out_dir) / LAMBDA0_FILES["database"]))
    with StudyStore.open(Path(out_dir) / DB_NAME, readonly=True) as store:
        return StudyConfig.from_dict(store.config)


# ----- the run -------------------------------------------------------------------------------------
class StudyRun:
    """One :func:`run_study` call in progress: the configuration, the store, the study's model,
    its distinct points (:class:`~landscape.study.points.PointRegistry`: deduplication, analysis,
    kinds), the next unit number and the saddle prefetch; the steps that finish, store and
    connect trajectories (module docstring)."""

    def __init__(self, cfg: StudyConfig, store: StudyStore, report: Callable[[dict], None]):
        self.cfg, self.store, self.report = cfg, store, report
        self.model = study_model(cfg)
        self.points = PointRegistry.of_study(cfg, store, self.model.device)
        #: results computed beside the run (:class:`landscape.study.prefetch.SaddlePrefetch`), or None
        self.prefetch = None
        units = store.committed_units()
        self.next_unit = (max(units) + 1) if units else 0

    def start_prefetch(self, chunks: list[list[int]]) -> None:
        """Compute the saddle-search units ``chunks`` and their first descents beside the run
        (:mod:`landscape.study.prefetch`); its analyses are taken where θ matches exactly."""
        self.prefetch = SaddlePrefetch.start(self.cfg, chunks)
        self.points.precomputed = self.prefetch.analysis

    def unit_id(self) -> int:
        u = self.next_unit
        self.next_unit += 1
        return u

    def certified(self, res: TrajectoryResults) -> np.ndarray:
        return certified_mask(self.cfg, res)

    def descent_budget(self, stages) -> int:
        """Iterations a descent of ``stages`` may run in all: the first stage's ``max_iter``, times
        ``kink_rounds`` (1 but for ReLU models, :class:`landscape.study.config.StudyConfig`)."""
        return stages[0].max_iter * self.cfg.kink_rounds

    def finish_kinks_in_rounds(self, res: TrajectoryResults, stages) -> None:
        """ReLU: finish the rows of ``res`` that stopped near kinks on them
        (:func:`landscape.study.kink_finish.finish_on_kinks`); a row the polish refused because its
        descent had not settled runs ``stages`` again for another ``stages[0].max_iter`` steps and is
        offered to the polish again, up to ``kink_rounds`` rounds in all (the polish only ever
        finishes a last stretch, so more rounds change which rows finish, never where). In those
        rounds the first stage runs its whole ``max_iter`` (its ``tol`` lowered to ``certify_tol``):
        GD that had handed over at its tol while bouncing across kinks would otherwise hand over
        again at once, and the round would change nothing. In place."""
        rows, rounds = None, self.cfg.kink_rounds
        budget = self.descent_budget(stages)
        # another round runs the first stage for its whole max_iter: a row handed over at its tol
        # (GD bouncing across kinks at ‖∇L‖ ≈ 1e-3) would hand over again at once, unchanged
        again = [replace(stages[0], tol=min(stages[0].tol, self.cfg.certify_tol)), *stages[1:]]
        for rnd in range(rounds):
            finish_on_kinks(self.cfg, res, rows, budget=budget)
            rows = kink_refused(self.cfg, res, budget) if rnd + 1 < rounds else np.zeros(0, dtype=np.int64)
            if rows.size == 0:
                return
            left = np.minimum(stages[0].max_iter, budget - res.main_iterations[rows])
            start = res.theta if res.handoff_theta is None else res.handoff_theta   # where the descent stopped
            sub = run_pipeline(self.model, start[torch.from_numpy(rows)], again, iter_budget=torch.from_numpy(left))
            res.replace_rows(rows, sub, add_counts=True)

    def finish_faithfully(self, res: TrajectoryResults, stages, new: list[PointRecord]) -> tuple[dict, dict]:
        """Point ids of the certified rows of ``res`` ({row: id}) and the saddle visits of every
        row ({row: [visit, …]}), after resuming every descent row that ended at a non-minimum
        (module docstring). ``res`` is updated in place; new points go to ``new``."""
        visits: dict[int, list[dict]] = {}
        points = self.points
        self.finish_kinks_in_rounds(res, stages)   # ReLU: descents that stopped near kinks, finished on them
        descent = stages[0].descent
        budget0 = self.descent_budget(stages)
        for visit in range(self.cfg.max_saddle_visits + 1):
            rows = np.nonzero(self.certified(res))[0]
            point_of = dict(zip(rows.tolist(), points.assign(res.theta[torch.from_numpy(rows)], new)))
            if not descent:
                return point_of, visits
            stuck = np.array([r for r, pid in point_of.items() if points.kinds[pid] not in LEAF_KINDS], dtype=np.int64)
            if stuck.size == 0:
                return point_of, visits
            for r in stuck.tolist():
                fs = int(res.first_small[r]) if res.first_small is not None else -1
                visits.setdefault(r, []).append({"point_id": point_of[r], "kind": points.kinds[point_of[r]],
                                                 "handoff_iteration": int(res.main_iterations[r]),
                                                 "lingered": int(res.main_iterations[r]) - fs if fs >= 0 else 0})
            left = budget0 - res.main_iterations[stuck]
            out_of_budget = stuck[(left <= 0) | (visit == self.cfg.max_saddle_visits)]
            res.stop_reason[out_of_budget] = np.where(left[np.isin(stuck, out_of_budget)] <= 0,
                                                      Outcome.MAX_ITER.value, Outcome.STALLED.value)
            res.stop_detail[out_of_budget] = SADDLE_VISITS.value
            resume = stuck[~np.isin(stuck, out_of_budget)]
            if resume.size == 0:
                continue
            loss = np.array([points.losses[point_of[r]] for r in resume.tolist()])
            ceiling = torch.from_numpy(loss - ESCAPE_RTOL * np.abs(loss))
            starts = res.handoff_theta[torch.from_numpy(resume)]
            across = np.array([points.descends_across_kinks(point_of[r]) for r in resume.tolist()], dtype=bool)
            if across.any():   # ReLU: a point GD does not leave by itself, left across its kink
                moved_from, moved = escape_across_kinks(self.cfg.model, res.theta[torch.from_numpy(resume[across])],
                                                        self.cfg.saddles.eps, ceiling.numpy()[across], visit=visit)
                starts = starts.clone()
                starts[torch.from_numpy(np.nonzero(across)[0][moved])] = moved_from[torch.from_numpy(moved)]
            sub = run_pipeline(self.model, starts, list(stages),
                               loss_ceiling=ceiling, iter_budget=torch.from_numpy(left[np.isin(stuck, resume)]))
            res.replace_rows(resume, sub, add_counts=True)
            # ReLU: a resumed descent stops near kinks again, where only the kink polish certifies it
            finish_on_kinks(self.cfg, res, resume, budget=budget0)
        rows = np.nonzero(self.certified(res))[0]
        return {r: pid for r, pid in zip(rows.tolist(), points.assign(res.theta[torch.from_numpy(rows)], new))}, visits

    def commit_trajectories(self, unit: int, indices: list[int], res: TrajectoryResults, kind: str) -> None:
        """Finish faithfully, deduplicate, analyse and store one unit of trajectories in one
        transaction."""
        new: list[PointRecord] = []
        stages = stages_of(self.cfg, kind)
        point_of, visits = self.finish_faithfully(res, stages, new)
        ok = self.certified(res)
        trajs = []
        for b, i in enumerate(indices):
            r = res.row(b)
            eng = {"kind": kind, "last_stage": r["last_stage"], "stop_detail": r["stop_detail"]}
            if "curvature_witnesses" in r:
                eng["curvature_witnesses"] = r["curvature_witnesses"]
            if b in visits:
                eng["saddle_visits"] = visits[b]
            trajs.append(TrajectoryRecord(
                idx=i, seed=trajectory_seed(self.cfg.seed, i - CHECK_OFFSET if kind == CHECK else i),
                stop_reason=r["stop_reason"],
                certified=bool(ok[b]) and b in point_of, iterations=r["iterations"], n_grad=r["n_grad"],
                n_hvp=r["n_hvp"], wall_time=r["wall_time"], loss=r["loss"], grad_norm=r["grad_norm"],
                point_id=point_of.get(b) if ok[b] else None, engine=eng))
        self.store.commit_unit(unit, trajs, new, wall_time=float(res.wall_time.max(initial=0.0)))

    def descend_from(self, saddle: PointRecord, directions: np.ndarray | None = None, first_direction: int = 0) -> int:
        """Descend from one stored saddle along its unstable directions (default: those of
        :func:`landscape.study.descents.unstable_directions`; or the given unit ``directions``
        (P, q), numbered from ``first_direction``); store its new points and edges in one
        transaction. Returns the number of edges."""
        return self.descend_from_many([saddle], directions=directions, first_direction=first_direction)

    def descend_from_many(self, saddles: list[PointRecord], directions: np.ndarray | None = None,
                          first_direction: int = 0) -> int:
        """:meth:`descend_from` for several saddles at once: the ±ε descents of all of them run as one
        batch (rows are independent, so each descent ends where it would alone), their new points
        and edges are stored in one transaction. ``directions`` only with one saddle. Returns the
        number of edges."""
        cfg, sd = self.cfg, self.cfg.saddles
        if directions is not None and len(saddles) != 1:
            raise ValueError("directions are given for one saddle at a time")
        if not saddles:
            return 0
        t0 = time.perf_counter()
        conns, dirs, kept = [], [], []
        for saddle in saddles:
            space = self.points.unstable_space(saddle)
            if space is not None:
                conn, ev_dir = saddle_descent_starts(cfg, self.model, saddle.params, saddle.loss,
                                                     *space, directions=directions)
            else:   # a saddle on ReLU kinks with no Hessian descent direction: across its kinks
                across = (directions if directions is not None else
                          kink_descents(cfg.model, saddle.params).vectors[:, :max(1, sd.max_descents // 2)])
                if across.shape[1] == 0:
                    continue
                conn, ev_dir = descend_from_saddle(self.model, saddle.params, across, lambda starts: None, eps=sd.eps), None
            conns.append(conn)
            dirs.append(ev_dir)
            kept.append(saddle)
        saddles = kept
        if not saddles:
            return 0
        starts = torch.cat([c.starts for c in conns])
        res: TrajectoryResults | None = self.prefetch.descents(starts) if self.prefetch is not None else None
        if res is None:
            res = run_pipeline(self.model, starts, list(sd.descend))
        new: list[PointRecord] = []
        point_of, _ = self.finish_faithfully(res, sd.descend, new)
        ok = self.certified(res)
        edges, r = [], 0
        for saddle, conn, ev_dir in zip(saddles, conns, dirs):
            # a descent that certifies at the saddle itself never left it: no edge (a self-loop)
            targets = []
            for _ in range(conn.starts.shape[0]):
                pid = point_of.get(r) if ok[r] else None
                if pid is not None and pid != saddle.id:
                    targets.append((pid, self.points.losses[pid], Outcome.CONVERGED.value))
                elif pid == saddle.id:
                    targets.append((None, None, RETURNED.value))
                else:
                    targets.append((None, None, with_detail(res.stop_reason[r], res.stop_detail[r])))
                r += 1
            edges += conn.edges(saddle.id, targets, ev_dir, first_direction=first_direction)
        self.store.commit_unit(self.unit_id(), [], new, edges, wall_time=time.perf_counter() - t0)
        return len(edges)


#: Phases whose progress a bar shows (counted in trajectories), not a line per unit.
_BAR_PHASES = ("trajectories", "saddle_search")


def _progress_reporter(progress) -> Callable[[dict], None]:
    if callable(progress):
        return progress
    if not progress:
        return lambda event: None
    from tqdm.auto import tqdm

    def report(event: dict) -> None:
        if event["phase"] in _BAR_PHASES:
            return   # their bar counts them, in trajectories
        tqdm.write(f"[{event['phase']}] {event['done']}/{event['total']} " + event.get("note", ""))

    return report


def run_study(cfg: StudyConfig, out_dir: str | Path, *, progress: bool | Callable[[dict], None] = True,
              executor=None, prefetch: bool | None = None) -> dict:
    """Run (or resume) the study ``cfg`` into the results folder ``out_dir``; return the summary
    (the content of summary.json, a dict).

    The study layer's part of :func:`landscape.run_study` (:mod:`landscape.viz.pipeline`), which
    is what ``landscape run`` calls: that function adds the featured spectra and ``report.html``
    (the report belongs to the viz layer, after this one) and returns a typed
    :class:`~landscape.study.result.StudyResult`; a notebook wants it, not this one.

    Steps in the module docstring; the derived files (summary.json, spectra.npz, tree.json,
    graph.graphml) are written by :func:`landscape.study.summary.finish`. If
    ``out_dir`` already holds a database of the same configuration, only what it lacks is
    computed (a resumed run); a different configuration raises :class:`StoreError`.

    ``progress``: True (a progress bar for trajectories, a line per committed unit), False
    (silent) or a callable that receives, after each committed unit, ``{"phase": "trajectories" |
    "saddle_search" | "saddle_descents" | "transition_states", "unit": int, "done": int, "total": int}``
    (saddle-descent events add a ``"note"``; an exception the callable raises, e.g. KeyboardInterrupt,
    stops the run after that commit). ``executor`` (:mod:`landscape.study.executors`): where the
    trajectory units are computed (default: here, one after the other); the results always come
    back here and this process alone writes the database. ``prefetch``: compute the saddle search
    and its first descents in a forked worker while the trajectories run
    (:mod:`landscape.study.prefetch`); None: where that can gain (two cores, the CPU, Linux).
    """
    if cfg.model.unregularised:   # λ = 0: directions, not critical points (its own procedure and folder)
        return run_lambda0_study(cfg, out_dir, progress=progress)
    out = Path(out_dir)
    if has_lambda0_database(out):
        raise StoreError(f"{out} holds a λ = 0 study ({LAMBDA0_FILES['database']}): a study with λ > 0 goes into a "
                         "folder of its own")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    store = open_study(cfg, out)
    run = None
    try:
        write_json(out / FILES["config"], cfg.to_dict())
        report = _progress_reporter(progress)
        run = StudyRun(cfg, store, report)
        done = set(store.completed_indices().tolist())
        saddle_todo = saddle_chunks(cfg, done)
        if executor is None and saddle_todo and (prefetch_possible(cfg) if prefetch is None else prefetch):
            run.start_prefetch(saddle_todo)
        timings: dict[str, float] = {"setup_s": time.perf_counter() - t_start}
        t = time.perf_counter()
        _run_units(run, out, "trajectories", chunks(cfg, done), run_trajectories, MAIN, cfg.trajectories,
                   executor, progress is True)
        if cfg.cross_check.starts:
            unit = study_working_batch(cfg, run.model)
            _run_units(run, out, "check", cross_check_chunks(cfg, done, unit), run_cross_check, CHECK, cfg.cross_check.starts,
                       executor, progress is True)
        timings["trajectories_s"], t = time.perf_counter() - t, time.perf_counter()
        search = run_saddle_search
        if run.prefetch is not None:
            run.prefetch.collect()
            # a phase of its own, before the saddle search's: the phases add up to at most the wall time
            timings["saddle_prefetch_wait_s"], t = time.perf_counter() - t, time.perf_counter()

            def search(cfg_, idx, on_status=None, on_finished=None):
                res = run.prefetch.unit(idx)
                if res is None:
                    return run_saddle_search(cfg_, idx, on_status=on_status, on_finished=on_finished)
                if on_finished is not None:   # the progress bar counts trajectory-stages
                    on_finished(len(idx) * len(cfg_.saddles.stages))
                return res
        _run_units(run, out, "saddle_search", saddle_todo, search, SADDLE_SEARCH,
                   cfg.saddles.starts, executor, progress is True)
        timings["saddle_search_s"], t = time.perf_counter() - t, time.perf_counter()
        _descend_from_saddles(run)
        timings["saddle_descents_s"], t = time.perf_counter() - t, time.perf_counter()
        search_transition_states(run)
        timings["transition_states_s"] = time.perf_counter() - t
        summary = finish(cfg, store, out, time.perf_counter() - t_start, timings)
    finally:
        if run is not None and run.prefetch is not None:
            run.prefetch.close()
        store.close()
    return summary


def _run_units(run: StudyRun, out: Path, phase: str, todo: list[list[int]], fn, kind: str, total: int,
               executor, bar: bool) -> None:
    """Compute and commit the units ``todo`` of one trajectory kind (see :func:`run_study`)."""
    cfg = run.cfg
    done = total - sum(len(c) for c in todo)
    if not todo:
        return
    units = [Unit(str(out), run.unit_id(), (cfg, idx)) for idx in todo]
    pbar = None
    if executor is not None:
        results = executor.map_units(fn, units)
    else:
        from tqdm.auto import tqdm

        n_stages = len(stages_of(cfg, kind))
        # counted in trajectories: a trajectory-stage is 1/n_stages of a trajectory, and a row that
        # skips its remaining stages counts them at once, so the count is whole when a row ends
        pbar = tqdm(total=total, initial=done, desc=f"{cfg.name} {phase}", unit="traj", disable=not bar,
                    dynamic_ncols=True,
                    bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} trajectories [{elapsed}<{remaining}{postfix}]")

        def status(s):
            pbar.set_postfix_str(f"{s['engine']} it={s['iteration']} active={s['active']}", refresh=False)

        def finished(k):
            pbar.update(k / n_stages)

        results = ((u, fn(*u.args, on_status=status, on_finished=finished)) for u in units)
    try:
        for unit, res in results:
            run.commit_trajectories(unit.chunk, list(unit.args[1]), res, kind)
            done += len(unit.args[1])
            run.report({"phase": phase, "unit": unit.chunk, "done": done, "total": total})
    finally:
        if pbar is not None:
            pbar.close()


def _descend_from_saddles(run: StudyRun) -> None:
    """Connect every stored saddle that has no edges yet, for at most ``max_rounds`` rounds."""
    store = run.store
    for _ in range(run.cfg.saddles.max_rounds):
        connected = {e.saddle_id for e in store.edges()}
        saddles = [store.point(p.id) for p in store.points() if p.kind == "saddle" and p.id not in connected]
        saddles = [p for p in saddles if run.points.descends_across_kinks(p.id) or run.points.unstable_space(p) is not None]
        todo = [p.id for p in saddles]
        if not todo:
            return
        n = run.descend_from_many(saddles)
        run.report({"phase": "saddle_descents", "unit": run.next_unit - 1, "done": len(todo), "total": len(todo),
                   "note": f"saddles {todo}: {n} descents, one batch"})
