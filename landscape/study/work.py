"""The pure units of work of a study, and the pieces of the saddle phase that the run and its
forked worker share.

A unit is a pure function of the configuration and the trajectory indices
(:func:`run_trajectories`, :func:`run_saddle_search`, :func:`run_cross_check`), which is what an
executor ships to a worker (:mod:`landscape.study.executors`), what the λ-batch executor batches
(:mod:`landscape.study.lambda_batch`) and what the saddle prefetch computes beside the run
(:mod:`landscape.study.prefetch`); :func:`chunks` and its siblings split the indices still to run
into units. :func:`certified_mask` and :func:`saddle_descent_starts` are how
:func:`landscape.study.run.run_study` and the prefetch worker decide which points count and build
a saddle's ±ε descents, so both compute them the same way (the points themselves, both take from a
:class:`landscape.study.points.PointRegistry`). Nothing here writes the database.
"""
from __future__ import annotations

import numpy as np

from ..core.init import draw_starts
from ..core.model import DeepUFM
from ..engines import TrajectoryResults, run_pipeline
from ..engines.batching import working_batch
from .config import CHECK_OFFSET, StudyConfig, resolve_device
from .descents import descend_from_saddle, saddle_seed, unstable_directions
from .summary import CHECK, MAIN


# ----- units of work -------------------------------------------------------------------------------
def study_model(cfg: StudyConfig) -> DeepUFM:
    """The study's model on the device its ``device`` field resolves to here."""
    return DeepUFM(cfg.model, device=resolve_device(cfg.device),
                   compile={"on": True, "off": False}.get(cfg.compile, "auto"))


def study_working_batch(cfg: StudyConfig, model: DeepUFM, unit: int | None = None) -> int:
    """The study's ``working_batch``, or the measured one for a unit of ``unit`` starts (default
    ``batch_size``) when it is 0 (:func:`landscape.engines.batching.working_batch`)."""
    return cfg.working_batch or working_batch(cfg.model, model.device, unit or cfg.batch_size)


def run_trajectories(cfg: StudyConfig, indices, *, on_status=None, on_finished=None) -> TrajectoryResults:
    """Run the study's pipeline on main trajectories ``indices`` (one unit). Pure function of
    (cfg, indices): start i is drawn on the host with the seed of index i, then moved to the
    study's device; the unit runs at the working batch, refilled as rows finish."""
    model = study_model(cfg)
    theta0 = draw_starts(cfg.model, cfg.init, cfg.seed, indices, device=model.device)
    return run_pipeline(model, theta0, list(cfg.stages), on_status=on_status, on_finished=on_finished,
                        working_batch=study_working_batch(cfg, model, len(theta0)))


def run_saddle_search(cfg: StudyConfig, indices, *, on_status=None, on_finished=None) -> TrajectoryResults:
    """Run the saddle pipeline (``cfg.saddles.stages``) on saddle-search trajectories ``indices``
    (absolute indices, ≥ ``cfg.saddles.index_offset``), drawn from ``cfg.saddles.init`` (or the
    study's init). Pure function of (cfg, indices)."""
    model = study_model(cfg)
    theta0 = draw_starts(cfg.model, cfg.saddles.init or cfg.init, cfg.seed, indices, device=model.device)
    return run_pipeline(model, theta0, list(cfg.saddles.stages), on_status=on_status, on_finished=on_finished,
                        working_batch=study_working_batch(cfg, model, len(theta0)))


def run_cross_check(cfg: StudyConfig, indices, *, on_status=None, on_finished=None) -> TrajectoryResults:
    """Run the check pipeline (``cfg.cross_check.stages``) on check trajectories ``indices`` (absolute,
    CHECK_OFFSET + j): check trajectory j starts where main trajectory j starts. Pure function of
    (cfg, indices)."""
    model = study_model(cfg)
    theta0 = draw_starts(cfg.model, cfg.init, cfg.seed, [i - CHECK_OFFSET for i in indices], device=model.device)
    return run_pipeline(model, theta0, list(cfg.cross_check.stages), on_status=on_status, on_finished=on_finished,
                        working_batch=study_working_batch(cfg, model, len(theta0)))


def cross_check_chunks(cfg: StudyConfig, done: set[int] | None = None, unit: int | None = None) -> list[list[int]]:
    """Check trajectory indices still to run, split into units of ``unit`` starts (default
    ``batch_size``; :func:`run_study` gives the working batch where that is smaller). Each unit
    is committed when its rows end, so a long check (GD at λ = 2⁻¹⁴ and d = 70: hours on a CPU)
    keeps every finished unit when the run is interrupted."""
    return _split([CHECK_OFFSET + j for j in range(cfg.cross_check.starts) if not done or CHECK_OFFSET + j not in done],
                  min(cfg.batch_size, unit or cfg.batch_size))


def stages_of(cfg: StudyConfig, kind: str) -> tuple:
    """The pipeline that runs the trajectories of ``kind``: main, check, else the saddle search's."""
    return {MAIN: cfg.stages, CHECK: cfg.cross_check.stages}.get(kind, cfg.saddles.stages)


def chunks(cfg: StudyConfig, done: set[int] | None = None) -> list[list[int]]:
    """Main trajectory indices still to run, split into batches of ``batch_size``."""
    return _split([i for i in range(cfg.trajectories) if not done or i not in done], cfg.batch_size)


def saddle_chunks(cfg: StudyConfig, done: set[int] | None = None) -> list[list[int]]:
    """Saddle-search trajectory indices still to run, split into batches of ``batch_size``."""
    first = cfg.saddles.index_offset
    return _split([i for i in range(first, first + cfg.saddles.starts) if not done or i not in done], cfg.batch_size)


def _split(todo: list[int], size: int) -> list[list[int]]:
    return [todo[i:i + size] for i in range(0, len(todo), size)]


# ----- the saddle phase ----------------------------------------------------------------------------
def certified_mask(cfg: StudyConfig, res: TrajectoryResults) -> np.ndarray:
    """(B,) bool: the rows of ``res`` that converged with ‖∇L‖ ≤ the study's ``certify_tol``."""
    return res.converged & (res.grad_norm <= cfg.certify_tol)


def saddle_descent_starts(cfg: StudyConfig, model: DeepUFM, params, loss: float, evals, V,
                          directions: np.ndarray | None = None):
    """The ±ε descent starts of one saddle (θ ``params`` (P,), its ``loss`` and unstable space
    ``evals`` (m,), ``V`` (P, m)): (:class:`~landscape.study.descents.SaddleConnection` without
    results, the eigenvalue of each direction). Directions: those of
    :func:`~landscape.study.descents.unstable_directions` (seeded by the study seed and the
    saddle's loss), or the given unit ``directions`` (P, q)."""
    sd = cfg.saddles
    if directions is None:
        U, ev_dir, _ = unstable_directions(evals, V, directions=sd.directions, max_descents=sd.max_descents,
                                           degeneracy_rtol=sd.degeneracy_rtol, seed=saddle_seed(cfg.seed, loss))
    else:
        U = np.asarray(directions, dtype=np.float64).reshape(np.asarray(params).size, -1)
        ev_dir = np.full(U.shape[1], float(np.mean(evals)))
    return descend_from_saddle(model, params, U, lambda starts: None, eps=sd.eps), ev_dir
