"""The finisher of ReLU studies: descents that stopped near kinks, polished on their kink manifold.

With weight decay, ReLU minima put pre-activation entries exactly at 0 (MODEL.md §10): gradient
descent reaches them sub-linearly and ‖∇L‖ never meets the certification tolerance.
:func:`finish_on_kinks` hands every row of a batch that did not certify, but stopped close
(max_iter, stalled, or converged above the tolerance), to
:func:`landscape.analysis.kinks.hand_off_to_kinks`, which polishes it on the manifold of its
active set only where that finishes the last stretch of the descent (the loss falls by at most
1e-4 relative and never rises; every entry off the kinks keeps its sign). A finished row is
``converged`` with stop detail :data:`KINK_DETAIL` and the projected gradient ‖∇f₀ − Jᵀμ‖ on its
manifold as gradient norm; whether its point is a minimum, a saddle on the manifold or undecided
is its analysis' (:func:`landscape.analysis.point.analyse_point`), and a descent's row at a saddle
is resumed by the run from a start below its loss (:func:`escape_across_kinks`): GD does not
leave a point on kinks by itself.
"""
from __future__ import annotations

import numpy as np
import torch

from ..analysis.kinks import hand_off_to_kinks, kink_escape
from ..engines import TrajectoryResults
from ..engines.outcomes import Detail, Outcome
from .work import certified_mask

#: Stop detail of a row certified on ReLU kinks (``kink: <why>``: one the polish refused).
KINK_DETAIL = Detail.KINK
#: Stop reasons of rows handed to the kink polish.
HANDED = (Outcome.MAX_ITER, Outcome.STALLED, Outcome.CONVERGED)


def finish_on_kinks(cfg, res: TrajectoryResults, rows: np.ndarray | None = None, budget: int | None = None) -> int:
    """Finish the uncertified rows of ``res`` (a batch of a study with configuration ``cfg``;
    only those among ``rows`` when given) on their kinks, in place (module docstring). A refused
    row keeps its stop reason, and its stop detail says why (``kink: …``). A row whose descent
    stalled, or has run its whole ``budget`` of first-stage iterations (no more steps will settle
    it: GD bouncing across kinks at ‖∇L‖ ≈ 3e-3 after 180,000 steps), is read at the looser
    active-set thresholds too (:data:`landscape.analysis.kinks.HANDOFF_RTOLS`), under the same
    acceptance tests. Returns the number of rows finished; 0 for a model without ReLU."""
    if cfg.model.activation != "relu" or len(res) == 0:
        return 0
    todo = ~certified_mask(cfg, res) & np.isin(res.stop_reason, HANDED)
    if rows is not None:
        todo &= np.isin(np.arange(len(res)), rows)
    rows = np.nonzero(todo)[0]
    if rows.size == 0:
        return 0
    idx = torch.from_numpy(rows)
    spent = np.zeros(rows.size, dtype=bool)
    if budget is not None and res.main_iterations is not None:
        spent = res.main_iterations[rows] >= budget
    h = hand_off_to_kinks(cfg.model, res.theta[idx].cpu(), res.loss[rows], res.grad_norm[rows], tol=cfg.certify_tol,
                          stalled=(res.stop_reason[rows] == Outcome.STALLED.value) | spent)
    for r, why in zip(rows[~h.ok].tolist(), (w for w, k in zip(h.reason, h.ok) if not k)):
        res.stop_detail[r] = KINK_DETAIL.explained(why)   # why the kink polish refused the row (it had the last word)
    ok = rows[h.ok]
    if ok.size:
        res.theta[torch.from_numpy(ok)] = torch.from_numpy(h.theta[h.ok]).to(res.theta)
        res.loss[ok] = h.loss[h.ok]
        res.grad_norm[ok] = h.residual[h.ok]
        res.stop_reason[ok] = Outcome.CONVERGED.value
        res.stop_detail[ok] = KINK_DETAIL.value
    return int(ok.size)


def kink_refused(cfg, res: TrajectoryResults, budget: int) -> np.ndarray:
    """Rows of ``res`` the kink polish refused whose first stage has run fewer than ``budget``
    iterations: the ones another round of descent may settle (:meth:`landscape.study.run.StudyRun.finish_kinks_in_rounds`)."""
    if cfg.model.activation != "relu" or len(res) == 0 or res.main_iterations is None:
        return np.zeros(0, dtype=np.int64)
    refused = np.array([KINK_DETAIL.heads(d) and str(d) != KINK_DETAIL for d in res.stop_detail], dtype=bool)
    return np.nonzero(refused & ~certified_mask(cfg, res) & (res.main_iterations < budget))[0]


def escape_across_kinks(spec, theta: torch.Tensor, eps: float, below: np.ndarray,
                        visit: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Where a descent resumes from the points θ (B, P) (certified ends on ReLU kinks of the model
    ``spec`` that are not minima): a start below the loss ``below`` (B,) found by
    :func:`landscape.analysis.kinks.kink_escape`: across a kink along a first-order descent
    (the direction ``visit`` mod m first: ``visit`` counts the descent's resumes, so a descent
    that came back starts along the next direction rather than repeat its last start; ``eps``
    the longest Euclidean step, the saddle descents' ``saddles.eps``), or along a negative
    curvature that the loss follows on the kink set. Gradient descent with ReLU'(0) = 0 does not
    leave such a point by itself: beside a held entry, on its off side, it sees only the decay,
    which holds the entry at the kink, and from a start above the point's loss it comes back —
    the point is its limit, not its end, and only this start (a perturbed descent's, where a
    smooth saddle's unstable direction does the same by itself) lets it go on. Returns the starts
    (B, P) and ``moved`` (B,) bool: rows with no such start keep θ (the caller resumes them
    elsewhere)."""
    out = theta.clone()
    moved = np.zeros(theta.shape[0], dtype=bool)
    for b in range(theta.shape[0]):
        start = kink_escape(spec, theta[b].detach().cpu().to(torch.float64), eps, float(below[b]), visit=visit)
        if start is not None:
            out[b] = torch.from_numpy(start).to(theta)
            moved[b] = True
    return out, moved
