"""Following a critical point in the weight decay: :func:`continue_in_lambda`.

A critical point θ*(p) solves F(θ, p) = ∇L(θ; p) = 0, p the continuation parameter
(:mod:`.parameters`); pseudo-arclength continuation (:mod:`.follower`) follows the curve
(θ(s), p(s)) through folds, where it turns back in p, and the events on every step are located
(:mod:`.events`).

**Steps adapt to the branch, never to the target**: a corrector that needs few iterations
lengthens the next step (×1.5, at most ``h_max``), one that needs many halves it, and a corrected
point is accepted only if it continues the branch (:meth:`.follower.Follower.continues`),
otherwise the step is halved; below ``h_min`` the branch ends.

A branch ends when it reaches the target ("reached", the last step landing on it exactly), when
p would leave the model's validity (p ≤ 0: "left the model's validity (lambda ≤ 0)") or falls below
``p_floor_rtol`` of its start (the index is not resolvable there: τ ∝ λ), when it arrives at the
origin (its logit scale below ``origin_rtol`` of the start: the small-root branches do as p → 0,
and there every structure's branches meet), where the index cannot be resolved (τ under the
eigenvalue noise ``noise_mult``·ε·ρ, or the symmetry orbit's dimension changing as the rank
dissolves in round-off), when no step continues the branch, or after ``max_steps``. The linear
algebra is dense (the Hessian is formed at every step): meant for P up to a few thousand.
"""
from __future__ import annotations

import numpy as np

from ..analysis.labels import ZERO
from ..core.model import ModelSpec, as_theta64
from ..core.validate import check_choice, check_number
from .branch import Branch
from .events import events_on_step
from .follower import BranchPoint, Follower
from .parameters import PARAMS, param_value
from .settings import ContinuationSettings


def continue_in_lambda(spec: ModelSpec, theta, *, param: str = "lambda", to: float, point_id: int | None = None,
                       label: str | None = None, settings: ContinuationSettings = ContinuationSettings(),
                       progress=None, observe=None) -> Branch:
    """Follow the critical point θ (P,) of ``spec`` in ``param`` (one of :data:`.parameters.PARAMS`)
    towards ``to`` (a finite number > 0; module docstring). ``progress(step record, events)``
    hears every accepted step as it is taken (the start first), with the events located on that
    step (a list of event records, usually empty). ``observe(θ, p)``, called first, sees the
    accepted point itself (θ (P,) float64, p) and returns a dict of further fields for its step
    record (the λ → 0 limit adds the normalised margin,
    :mod:`landscape.study.lambda0_limit`), or None."""
    check_choice("param", param, PARAMS)
    to = check_number("--to", to)
    S = settings
    th0 = as_theta64(spec, theta).numpy().copy()
    p0 = param_value(spec.as_float64(), param)
    check_number(f"the start's {param}", p0)   # λ = 0 (the max-margin setting) has no λ-family to scale
    f = Follower(spec, param, settings, float(np.linalg.norm(th0)))
    key = f.param_key
    br = Branch(point_id, label)
    pt = f.analyse(BranchPoint(th0, p0))
    if np.linalg.norm(f.sys.grad(pt.th, pt.p)) > S.certify_tol:
        out = f.correct(pt.th, pt.p, None, pt, fixed_p=pt.p)
        if out is None:
            br.end = "the start is not a critical point to certify_tol"
            return br
        pt = f.analyse(BranchPoint(out[0], out[1]))
    pt.tangent = f.tangent(pt, None, to)

    def record(q: BranchPoint) -> dict:
        rec = f.record(q)
        if observe is not None:
            rec.update(observe(q.th, q.p) or {})
        return rec

    br.steps.append(record(pt))
    if progress is not None:
        progress(br.steps[-1], [])
    hist, hs = [pt], []
    h = S.h0
    for _ in range(S.max_steps):
        out = f.step_from(pt, h)
        q = None
        if out is not None and out[0].p > 0:
            q, iters = out
            f.analyse(q)
            q.tangent = f.tangent(q, pt, to)
            if not f.continues(pt, q, h):
                q = None
        if q is None:
            h *= 0.5
            if h < S.h_min:
                br.end = (f"left the model's validity ({key} ≤ 0)" if out is not None and out[0].p <= 0
                          else f"failed to continue the branch at {key}={pt.p:.8g} (step below h_min)")
                return br
            continue
        passed = (q.p - to) * (pt.p - to) <= 0 and q.p != pt.p
        index_before = br.events[-1]["index_after"] if br.events else br.steps[0]["index"]
        events = events_on_step(f, pt, q, h, hist, hs, index_before)
        if passed:  # land exactly on the target
            fin = f.correct(q.th, to, None, pt, fixed_p=to)
            if fin is not None:
                q = f.analyse(BranchPoint(fin[0], fin[1]))
                q.tangent = f.tangent(q, pt, to)
        br.events += events
        br.steps.append(record(q))
        if progress is not None:
            progress(br.steps[-1], events)
        if passed:
            br.end = "reached"
            return br
        a0 = br.steps[0]["logit_scale"]
        if br.steps[-1]["label"] == ZERO.name or br.steps[-1]["logit_scale"] < S.origin_rtol * a0:
            # the small-scale branches end at the origin, where every structure's branches meet
            br.end = f"arrived at the origin ({key}={q.p:.4g})"
            return br
        if q.Q.shape[1] != pt.Q.shape[1]:
            br.end = (f"the index is not resolvable beyond {key}={q.p:.4g}: the symmetry orbit's dimension changed "
                      f"({pt.Q.shape[1]} → {q.Q.shape[1]}), so the rank of the point is not resolved there")
            return br
        if q.tau <= q.noise:
            br.end = (f"the index is not resolvable below {key}={q.p:.4g}: τ = {S.tau_rel:g}·λ = {q.tau:.3g} is under "
                      f"the eigenvalue noise {q.noise:.3g}")
            return br
        if q.p < S.p_floor_rtol * p0:
            br.end = f"{key} → 0 (below {S.p_floor_rtol:g} of the start, at {q.p:.4g})"
            return br
        pt.H = None   # kept: eigs, Q, tangent (the history the event search looks back on)
        hist.append(q)
        hs.append(h)
        if len(hist) > 12:
            hist.pop(0)
            hs.pop(0)
        pt = q
        h = min(h * 1.5, S.h_max) if iters <= 3 else (h * 0.5 if iters > 6 else h)
    br.end = "max_steps"
    return br
