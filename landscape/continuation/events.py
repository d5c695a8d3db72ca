"""Events on a branch, located at the exact crossing: index changes and folds.

An **index change** is detected when the count of eigenvalues below −τ (τ = ``tau_rel``·λ, for
counting only) changes, and located as the root of the crossing eigenvalue itself — the m-th
smallest eigenvalue of the Hessian restricted to the complement of the symmetry tangents,
continuous along the branch — on the step where it changes sign (regula falsi, Illinois variant,
to ``event_rtol`` relative in p), with its slope dμ/dp and the multiplicity of the crossing; a
**fold** is the zero of ṗ located the same way (not reported as an index change; an eigenvalue
crossing at the fold itself is the fold's). Each records p, the index before and after, the
logit scale there.
"""
from __future__ import annotations

import numpy as np

from .follower import BranchPoint, Follower


def root_on_step(f: Follower, base: BranchPoint, h: float, g, g0: float, gh: float):
    """Root s* ∈ (0, h) of the continuous g(point at step s from ``base``) with g(0) = g0 and
    g(h) = gh of opposite signs, by the Illinois variant of regula falsi, until the parameter
    is bracketed to ``event_rtol``. Returns (point at the root, p*, dg/dp there, the step
    length s* of the root), or None if the corrector failed throughout."""
    a, b, ga, gb = 0.0, h, g0, gh
    pa, pb = base.p, None
    qa = qb = None
    side = 0
    for _ in range(100):
        s = b - gb * (b - a) / (gb - ga) if gb != ga else 0.5 * (a + b)
        if not (min(a, b) < s < max(a, b)):
            s = 0.5 * (a + b)
        out = f.step_from(base, s)
        if out is None:   # the corrector failed inside the step: bisect instead
            s = 0.5 * (a + b)
            out = f.step_from(base, s)
            if out is None:
                break
        q = f.analyse(out[0])
        gs = g(q)
        if gs * gb < 0:
            a, ga, pa, qa = b, gb, pb, qb
            b, gb, pb, qb = s, gs, q.p, q
            side = 0
        else:
            b, gb, pb, qb = s, gs, q.p, q
            side += 1
            if side >= 2:
                ga *= 0.5
        if pa is not None and pb is not None and abs(pb - pa) <= f.S.event_rtol * abs(pb):
            break
        if gs == 0:
            break
    if qb is None:
        return None
    slope = (gb - (g(qa) if qa is not None else g0)) / (pb - pa) if pa is not None and pb != pa else None
    return qb, pb, slope, b


def locate_fold(f: Follower, pt: BranchPoint, h: float, q_end: BranchPoint):
    """The fold on the step: the zero of ṗ (the tangent's parameter component, oriented along
    the branch) between ``pt`` and ``q_end``."""
    def tp(q: BranchPoint) -> float:
        q.tangent = f.tangent(q, pt, 0.0)
        return float(q.tangent[-1])
    return root_on_step(f, pt, h, tp, float(pt.tangent[-1]), float(q_end.tangent[-1]))


def locate_crossing(f: Follower, hist: list, hs: list, q: BranchPoint, h: float, m: int):
    """The zero of the m-th smallest eigenvalue of the restricted Hessian, a continuous function
    along the branch, on the last step on which it changed sign (looking back from the step
    ending at ``q``; τ only *counts*, so its zero may lie a few steps back). None if it did not
    change sign (the count changed by an eigenvalue that touched −τ without crossing 0). The
    last item returned is the step's offset: 0 for the step ending at ``q``, −1 the one before…"""
    pts = hist + [q]
    steps = hs + [h]
    for k in range(len(pts) - 1, 0, -1):
        a, b = pts[k - 1], pts[k]
        if m < a.eigs.size and m < b.eigs.size and a.eigs[m] * b.eigs[m] < 0:
            loc = root_on_step(f, a, steps[k - 1], lambda x: float(x.eigs[m]), float(a.eigs[m]), float(b.eigs[m]))
            return None if loc is None else (*loc, k - len(pts) + 1)
        if k < len(pts) - 8:
            break
    return None


def events_on_step(f: Follower, pt: BranchPoint, q: BranchPoint, h: float, hist: list, hs: list,
                   index_before: int) -> list[dict]:
    """The event records (folds and index changes) of the accepted step from ``pt`` to ``q`` of
    length h (``hist``, ``hs``: the points and steps before, for the look-back of
    :func:`locate_crossing`), in the order they occur along the branch, each starting at the index
    the previous one ended with (the first at ``index_before``)."""
    key, S = f.param_key, f.S
    events = []   # ((step offset, arclength on it), record, the located point)
    if q.tangent[-1] * pt.tangent[-1] < 0:
        loc = locate_fold(f, pt, h, q)
        if loc is not None:
            ev, p_ev, _, s_ev = loc
            events.append(((0, s_ev), {"kind": "fold", key: p_ev, "logit_scale": f.record(ev)["logit_scale"]}, ev))
    if q.index != pt.index:
        m = pt.index if q.index > pt.index else pt.index - 1
        loc = locate_crossing(f, hist, hs, q, h, m)
        # (an index change at the fold itself is the fold's: one event)
        # a root where no eigenvalue is within τ of 0 is a jump of the sorted eigenvalues, not a crossing
        if loc is not None and not np.any(np.abs(loc[0].eigs) <= loc[0].tau):
            loc = None
        if loc is not None and not any(e["kind"] == "fold" and abs(e[key] - loc[1]) <= 1e3 * S.event_rtol * abs(loc[1])
                                       for _, e, _ in events):
            ev, p_ev, slope, s_ev, offset = loc
            events.append(((offset, s_ev), {"kind": "index_change", key: p_ev, "eigenvalue_slope": slope,
                                            "logit_scale": f.record(ev)["logit_scale"]}, ev))
    events.sort(key=lambda x: x[0])
    return settle_indices(events, index_before, min(pt.nullity, q.nullity), q)


def settle_indices(located: list, index_before: int, persistent: int, q: BranchPoint) -> list[dict]:
    """``index_before``, ``index_after`` and ``multiplicity`` of each located event (in branch
    order: each starts where the previous one ended): the index after is the firm count below −τ
    at the event plus the crossing group (the eigenvalues within τ there, less the ``persistent``
    nullity of the step's ends) when they cross downwards (a negative slope; for a fold, when the
    step's end ``q`` has more negative eigenvalues than the firm count)."""
    idx = index_before
    for _, e, ev in located:
        firm = int((ev.eigs < -ev.tau).sum())
        group = max(int((np.abs(ev.eigs) <= ev.tau).sum()) - persistent, 0)   # the crossing eigenvalues
        e["index_before"] = idx
        if e["kind"] == "index_change":
            e["index_after"] = firm + (group if e["eigenvalue_slope"] is not None and e["eigenvalue_slope"] < 0 else 0)
        else:
            e["index_after"] = firm + (group if q.index > firm else 0)
        e["multiplicity"] = group
        idx = e["index_after"]
    return [e for _, e, _ in located]
