"""Following critical points as the weight decay or the width changes.

**Continuation in λ** (:func:`continue_in_lambda`). A critical point θ*(p) solves
F(θ, p) = ∇L(θ; p) = 0, with p the continuation parameter: ``lambda`` (every factor's weight
decay scaled together, λ_l = p·λ_l⁰/λ⁰), ``lambda_H`` (H₁'s only), ``lambda_W`` (the weights',
scaled together) or ``ratio`` (λ_H = p·λ_W). Only the regulariser depends on p, so
∂F/∂p = (dλ/dp)∘θ and ∂F/∂θ = H_data(θ) + diag(λ(p)).

Pseudo-arclength continuation (Keller 1977) follows the curve (θ(s), p(s)) through folds, where it
turns back in p:

* **tangent**: the unit (θ̇, ṗ) with H θ̇ + (∂F/∂p) ṗ = 0, θ̇ orthogonal to the symmetry tangents,
  oriented like the previous one (the first one towards the target);
* **predictor**: (θ, p) + h·(θ̇, ṗ);
* **corrector**: Newton on F = 0 together with ⟨θ − θ_pred, θ̇⟩ + (p − p_pred)ṗ = 0 and the **phase
  condition** Qᵀ(θ − θ_k) = 0: the correction is orthogonal to the symmetry tangents Q at the
  last point. The Hessian is singular along the gauge orbit (MODEL.md §5), so without it the
  corrector could drift along the orbit; the phase condition fixes the gauge (instead of relying
  on MINRES's minimum-norm step), and the bordered system — the Jacobian, the arclength row and
  the s phase rows — is solved densely by least squares (it has full column rank away from
  bifurcation points). Every corrected point is certified to ‖∇L‖ ≤ ``certify_tol``.
* **steps adapt to the branch, never to the target**: arclength is measured in coordinates
  normalised at every accepted point (θ/‖θ_k‖, p/|p_k|), so a step h is a relative change; a
  corrector that needs few iterations lengthens the next step (×1.5, at most ``h_max``), one that
  needs many halves it, and a corrected point is accepted only if it **continues the branch**
  (:meth:`_Follower.continues`: corrector drift ≤ ``max_drift``·h, tangent turn ≤ ``max_turn``,
  loss change as the tangent predicts), otherwise the step is halved; below ``h_min`` the branch
  ends.

**Events**, located at the exact crossing: an **index change** is detected when the count of
eigenvalues below −τ (τ = ``tau_rel``·λ, for counting only) changes, and located as the root of
the crossing eigenvalue itself — the m-th smallest eigenvalue of the Hessian restricted to the
complement of the symmetry tangents, continuous along the branch — on the step where it changes
sign (regula falsi, Illinois variant, to ``event_rtol`` relative in p), with its slope dμ/dp and
the multiplicity of the crossing; a **fold** is the zero of ṗ located the same way (not reported
as an index change; an eigenvalue crossing at the fold itself is the fold's). Each records p, the
index before and after, the logit scale there.

A branch ends when it reaches the target ("reached", the last step landing on it exactly), when
p would leave the model's validity (p ≤ 0: "left the model's validity (lambda ≤ 0)") or falls below
``p_floor_rtol`` of its start (the index is not resolvable there: τ ∝ λ), when it arrives at the
origin (its logit scale below ``origin_rtol`` of the start: the small-root branches do as p → 0,
and there every structure's branches meet), where the index cannot be resolved (τ under the
eigenvalue noise ``noise_mult``·ε·ρ, or the symmetry orbit's dimension changing as the rank
dissolves in round-off), when no step continues the branch, or after ``max_steps``. The linear algebra is dense (the Hessian is formed
at every step): meant for P up to a few thousand.

**Width embedding** (:func:`embed_width`, :func:`continue_in_width`). A critical point at width d
stays critical at any d' > d when H₁ gets d'−d zero rows and every W_l zero rows and columns
(W_L zero columns). Proof: the new hidden units have zero incoming weights, so their
pre-activations are 0 and (σ(0) = 0, for ReLU too) their outputs are 0; every gradient entry of a
new coordinate is then a product with a zero block — the gradient of a new row of W_l is
δ_l·h_{l−1}ᵀ restricted to a new unit, δ_l there being W_{l+1}ᵀδ_{l+1} through the zero new
column of W_{l+1}; the gradient of a new column of W_{l+1} is δ_{l+1}·(new outputs)ᵀ = 0; the
weight decay of a zero entry is 0 — and the old coordinates see exactly the old network. So the
loss and ‖∇L‖ are unchanged, while the symmetry orbit grows: L·(r·d' − r(r+1)/2) in the linear
model, the quantity behind Theorem 5.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..analysis.hessian import analyse_hessian, dense_hessian
from ..analysis.labels import ZERO
from ..analysis.structure import analyse_structure
from ..analysis.symmetry import symmetry_space
from ..core.model import DeepUFM, ModelSpec, as_theta64
from ..core.validate import SpecError, check_choice

PARAMS = ("lambda", "lambda_H", "lambda_W", "ratio")


@dataclass(frozen=True)
class ContinuationSettings:
    """Step control and tolerances of :func:`continue_in_lambda` (stored with every branch)."""

    h0: float = 0.05
    h_min: float = 1e-9
    h_max: float = 0.25
    max_steps: int = 400
    newton_iter: int = 20
    certify_tol: float = 1e-10
    event_rtol: float = 1e-10
    tau_rel: float = 1e-3
    noise_mult: float = 1e4
    max_drift: float = 0.5
    max_turn: float = 0.35
    origin_rtol: float = 1e-6
    p_floor_rtol: float = 1e-9

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def lambdas_at(spec: ModelSpec, param: str, p: float) -> np.ndarray:
    """Per-factor weight decay (L+1,) at parameter value p (module docstring)."""
    check_choice("param", param, PARAMS)
    lam = np.array(spec.lambdas, dtype=np.float64)
    if param == "lambda":
        return lam * (p / spec.lam if spec.lam_H is None and spec.lam_W is None else p / lam.mean())
    if param == "lambda_H":
        return np.concatenate([[p], lam[1:]])
    if param == "lambda_W":
        w = lam[1:]
        return np.concatenate([lam[:1], w * (p / w.mean())])
    return np.concatenate([[p * lam[1:].mean()], lam[1:]])


def param_value(spec: ModelSpec, param: str) -> float:
    """The parameter's value at the spec (the inverse of :func:`lambdas_at`)."""
    lam = np.array(spec.lambdas, dtype=np.float64)
    if param == "lambda":
        return float(spec.lam if spec.lam_H is None and spec.lam_W is None else lam.mean())
    if param == "lambda_H":
        return float(lam[0])
    if param == "lambda_W":
        return float(lam[1:].mean())
    return float(lam[0] / lam[1:].mean())


def spec_at(spec: ModelSpec, param: str, p: float) -> ModelSpec:
    lam = lambdas_at(spec, param, p)
    return replace(spec.as_float64(), lam=float(lam.mean()), lam_H=float(lam[0]), lam_W=tuple(float(x) for x in lam[1:]))


class _System:
    """F(θ, p) = ∇L(θ; p), its Jacobian and ∂F/∂p, from the data part computed once per θ."""

    def __init__(self, spec: ModelSpec, param: str):
        self.spec, self.param = spec.as_float64(), param
        self.model = DeepUFM(self.spec)
        self.lam0 = np.repeat(np.array(self.spec.lambdas), [r * c for r, c in self.spec.shapes])
        p0 = param_value(self.spec, param)
        eps = 1e-6 * max(abs(p0), 1e-12)
        self.dlam = np.repeat((lambdas_at(self.spec, param, p0 + eps) - lambdas_at(self.spec, param, p0 - eps)) / (2 * eps),
                              [r * c for r, c in self.spec.shapes])

    def lam_vec(self, p: float) -> np.ndarray:
        return np.repeat(lambdas_at(self.spec, self.param, p), [r * c for r, c in self.spec.shapes])

    def grad(self, th: np.ndarray, p: float) -> np.ndarray:
        _, g = self.model.loss_and_grad(torch.from_numpy(th))
        return g.numpy() + (self.lam_vec(p) - self.lam0) * th

    def loss(self, th: np.ndarray, p: float) -> float:
        l = float(self.model.loss(torch.from_numpy(th)[None])[0])
        return l + 0.5 * float(((self.lam_vec(p) - self.lam0) * th * th).sum())

    def hessian(self, th: np.ndarray, p: float) -> np.ndarray:
        H = dense_hessian(self.spec, th)
        return H + np.diag(self.lam_vec(p) - self.lam0)

    def dF_dp(self, th: np.ndarray) -> np.ndarray:
        return self.dlam * th


def _sym_basis(spec: ModelSpec, th: np.ndarray, H: np.ndarray, tau: float) -> np.ndarray:
    from ..analysis.symmetry import null_part

    sym = symmetry_space(spec, th)
    Q, _ = null_part(sym.basis, H @ sym.basis, tau) if sym.dimension else (sym.basis, 0)
    return Q


def _restricted_eigs(H: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Eigenvalues of H restricted to the complement of span(Q) (P − s of them)."""
    if Q.shape[1] == 0:
        return np.linalg.eigvalsh(H)
    C = np.linalg.svd(np.eye(H.shape[0]) - Q @ Q.T)[0][:, :H.shape[0] - Q.shape[1]]
    return np.linalg.eigvalsh(C.T @ H @ C)


@dataclass
class _Point:
    th: np.ndarray
    p: float
    tangent: np.ndarray | None = None   # (P+1,), in the point's normalised coordinates
    H: np.ndarray | None = None
    Q: np.ndarray | None = None
    eigs: np.ndarray | None = None
    index: int = 0
    nullity: int = 0
    tau: float = 0.0
    noise: float = 0.0
    ts: float = 1.0      # θ scale of the normalised coordinates at this point
    ps: float = 1.0      # parameter scale


@dataclass
class Branch:
    """One followed branch: ``steps`` (records), ``events`` and the ``end`` reason."""

    point_id: int | None
    label: str | None
    steps: list = field(default_factory=list)
    events: list = field(default_factory=list)
    end: str = ""
    rank: int | None = None

    def to_dict(self) -> dict:
        out = {"point_id": self.point_id, "label": self.label, "steps": self.steps, "events": self.events, "end": self.end}
        if self.rank is not None:
            out["rank"] = self.rank
        return out


class _Follower:
    """Arclength is measured in coordinates normalised at every accepted point k,
    u = θ/‖θ_k‖, q = p/|p_k|: a step h is a relative change of both, so the step size follows the
    branch (its curvature, the corrector's iterations, the turn of the tangent) and never the
    target. Tangents are stored in the coordinates of their own point."""

    def __init__(self, spec: ModelSpec, param: str, settings: ContinuationSettings, th0_norm: float):
        self.spec = spec.as_float64()
        self.param = param
        self.S = settings
        self.sys = _System(self.spec, param)
        self.ts_floor = 1e-8 * max(th0_norm, 1e-300)

    def analyse(self, pt: _Point) -> _Point:
        pt.H = self.sys.hessian(pt.th, pt.p)
        pt.tau = self.S.tau_rel * float(lambdas_at(self.spec, self.param, pt.p).min())
        pt.Q = _sym_basis(self.spec, pt.th, pt.H, pt.tau)
        pt.eigs = _restricted_eigs(pt.H, pt.Q)
        rho = float(np.abs(pt.eigs).max()) if pt.eigs.size else 0.0
        pt.noise = self.S.noise_mult * np.finfo(np.float64).eps * max(rho, float(np.abs(pt.H).max()))
        pt.index = int((pt.eigs < -pt.tau).sum())
        pt.nullity = int((np.abs(pt.eigs) <= pt.tau).sum())
        pt.ts = max(float(np.linalg.norm(pt.th)), self.ts_floor)
        pt.ps = abs(pt.p)
        return pt

    def tangent(self, pt: _Point, prev: _Point | None, toward: float) -> np.ndarray:
        """Unit tangent (θ̇, ṗ) (module docstring) in ``pt``'s coordinates, by the null vector of the
        bordered Jacobian [H, ∂F/∂p; Qᵀ, 0] (the smallest right singular vector), oriented like the
        previous point's tangent (compared in physical units) or, for the first, towards ``toward``."""
        P = pt.th.size
        A = np.hstack([pt.H * pt.ts, pt.ps * self.sys.dF_dp(pt.th)[:, None]])
        if pt.Q.shape[1]:
            A = np.vstack([A, np.hstack([pt.Q.T * pt.ts, np.zeros((pt.Q.shape[1], 1))])])
        _, _, Vt = np.linalg.svd(A)
        t = Vt[-1] / np.linalg.norm(Vt[-1])
        if prev is not None:
            if float(self.physical(t, pt) @ self.physical(prev.tangent, prev)) < 0:
                t = -t
        elif t[P] * (toward - pt.p) < 0:
            t = -t
        return t

    @staticmethod
    def physical(t: np.ndarray, pt: _Point) -> np.ndarray:
        """A tangent in physical units (θ̇, ṗ), normalised."""
        v = np.concatenate([t[:-1] * pt.ts, [t[-1] * pt.ps]])
        return v / np.linalg.norm(v)

    def correct(self, th_pred, p_pred, t, base: _Point, fixed_p: float | None = None):
        """Newton on the bordered system (in ``base``'s normalised coordinates); returns
        (θ, p, iterations) or None."""
        P = th_pred.size
        ts, ps = base.ts, base.ps
        th, p = th_pred.copy(), float(p_pred if fixed_p is None else fixed_p)
        Q = base.Q
        for it in range(1, self.S.newton_iter + 1):
            if p <= 0:
                return None
            F = self.sys.grad(th, p)
            if not np.all(np.isfinite(F)):
                return None
            r = 0.0 if fixed_p is not None else float((th - th_pred) / ts @ t[:P] + (p - p_pred) / ps * t[P])
            if np.linalg.norm(F) <= self.S.certify_tol and abs(r) <= 1e-12 and it > 1:
                return th, p, it - 1
            H = self.sys.hessian(th, p)
            rows = [np.hstack([H * ts, ps * self.sys.dF_dp(th)[:, None]])]
            rhs = [-F]
            if fixed_p is None:
                rows.append(t[None, :])
                rhs.append(np.array([-r]))
            else:
                rows.append(np.eye(1, P + 1, P))
                rhs.append(np.zeros(1))
            if Q.shape[1]:
                rows.append(np.hstack([Q.T * ts, np.zeros((Q.shape[1], 1))]))
                rhs.append(-(Q.T @ (th - base.th)))
            try:
                dx = np.linalg.lstsq(np.vstack(rows), np.concatenate(rhs), rcond=None)[0]
            except np.linalg.LinAlgError:
                return None
            th, p = th + ts * dx[:P], p + ps * float(dx[P])
            if np.linalg.norm(dx) <= 1e-15 * (1 + np.linalg.norm(th) / ts):
                F = self.sys.grad(th, p)
                return (th, p, it) if np.linalg.norm(F) <= self.S.certify_tol else None
        F = self.sys.grad(th, p)
        return (th, p, self.S.newton_iter) if np.linalg.norm(F) <= self.S.certify_tol else None

    def step_from(self, pt: _Point, h: float):
        P = pt.th.size
        t = pt.tangent
        out = self.correct(pt.th + h * pt.ts * t[:P], pt.p + h * pt.ps * t[P], t, pt)
        if out is None:
            return None
        th, p, it = out
        return _Point(th, p), it

    def continues(self, pt: _Point, q: _Point, h: float) -> bool:
        """Whether the corrected point ``q`` continues ``pt``'s branch: the corrector moved it at
        most ``max_drift``·h from the predictor, the tangent turned by at most ``max_turn`` radians,
        and the loss changed as the tangent predicts, to ``max_drift``·h relative (dL/ds = ∂L/∂p·ṗ
        on the branch, ∇_θL being 0)."""
        S, P = self.S, pt.th.size
        d = np.concatenate([(q.th - pt.th) / pt.ts, [(q.p - pt.p) / pt.ps]])
        if np.linalg.norm(d - h * pt.tangent) > S.max_drift * h:
            return False
        if float(self.physical(q.tangent, q) @ self.physical(pt.tangent, pt)) < math.cos(S.max_turn):
            return False
        l0, l1 = self.sys.loss(pt.th, pt.p), self.sys.loss(q.th, q.p)
        dldp = 0.5 * float((self.sys.dlam * pt.th * pt.th).sum())
        predicted = dldp * h * pt.ps * pt.tangent[P]
        return abs((l1 - l0) - predicted) <= S.max_drift * h * max(abs(l0), abs(l1), 1e-300)

    def record(self, pt: _Point) -> dict:
        th = pt.th
        st = analyse_structure(self.spec, th)
        z = st.ranks["Z"].singular_values
        r = st.ranks["Z"].rank
        scale = float(z[:r].mean() / math.sqrt(self.spec.n)) if r else 0.0
        return {self.param_key: pt.p, "loss": self.sys.loss(th, pt.p), "grad_norm": float(np.linalg.norm(self.sys.grad(th, pt.p))),
                "index": pt.index, "nullity": pt.nullity, "symmetry_zero_modes": int(pt.Q.shape[1]),
                "logit_scale": scale, "z_singular_values": [float(x) for x in z[:max(r, 1)]], "label": st.label}

    @property
    def param_key(self) -> str:
        return "lambda" if self.param == "lambda" else self.param

    def root_on_step(self, base: _Point, h: float, g, g0: float, gh: float):
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
            out = self.step_from(base, s)
            if out is None:   # the corrector failed inside the step: bisect instead
                s = 0.5 * (a + b)
                out = self.step_from(base, s)
                if out is None:
                    break
            q = self.analyse(out[0])
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
            if pa is not None and pb is not None and abs(pb - pa) <= self.S.event_rtol * abs(pb):
                break
            if gs == 0:
                break
        if qb is None:
            return None
        slope = (gb - (g(qa) if qa is not None else g0)) / (pb - pa) if pa is not None and pb != pa else None
        return qb, pb, slope, b

    def locate_fold(self, pt: _Point, h: float, q_end: _Point):
        """The fold on the step: the zero of ṗ (the tangent's parameter component, oriented along
        the branch) between ``pt`` and ``q_end``."""
        def tp(q: _Point) -> float:
            q.tangent = self.tangent(q, pt, 0.0)
            return float(q.tangent[-1])
        return self.root_on_step(pt, h, tp, float(pt.tangent[-1]), float(q_end.tangent[-1]))

    def locate_crossing(self, hist: list, hs: list, q: _Point, h: float, m: int):
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
                loc = self.root_on_step(a, steps[k - 1], lambda x: float(x.eigs[m]), float(a.eigs[m]), float(b.eigs[m]))
                return None if loc is None else (*loc, k - len(pts) + 1)
            if k < len(pts) - 8:
                break
        return None


def continue_in_lambda(spec: ModelSpec, theta, *, param: str = "lambda", to: float, point_id: int | None = None,
                       label: str | None = None, settings: ContinuationSettings = ContinuationSettings(),
                       progress=None) -> Branch:
    """Follow the critical point θ (P,) of ``spec`` in ``param`` towards ``to`` (module docstring).
    ``progress(step record, events)`` hears every accepted step as it is taken (the start first),
    with the events located on that step (a list of event records, usually empty)."""
    check_choice("param", param, PARAMS)
    if not (isinstance(to, (int, float)) and math.isfinite(to) and to > 0):
        raise SpecError(f"--to={to!r} is invalid: must be a finite number > 0 (a weight decay)")
    S = settings
    th0 = as_theta64(spec, theta).numpy().copy()
    p0 = param_value(spec.as_float64(), param)
    f = _Follower(spec, param, settings, float(np.linalg.norm(th0)))
    key = f.param_key
    br = Branch(point_id, label)
    pt = f.analyse(_Point(th0, p0))
    if np.linalg.norm(f.sys.grad(pt.th, pt.p)) > S.certify_tol:
        out = f.correct(pt.th, pt.p, None, pt, fixed_p=pt.p)
        if out is None:
            br.end = "the start is not a critical point to certify_tol"
            return br
        pt = f.analyse(_Point(out[0], out[1]))
    pt.tangent = f.tangent(pt, None, to)
    br.steps.append(f.record(pt))
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
        events = []   # ((step offset, arclength on it), record, the located point)
        if q.tangent[-1] * pt.tangent[-1] < 0:
            loc = f.locate_fold(pt, h, q)
            if loc is not None:
                ev, p_ev, _, s_ev = loc
                events.append(((0, s_ev), {"kind": "fold", key: p_ev, "logit_scale": f.record(ev)["logit_scale"]}, ev))
        if q.index != pt.index:
            m = pt.index if q.index > pt.index else pt.index - 1
            loc = f.locate_crossing(hist, hs, q, h, m)
            # (an index change at the fold itself is the fold's: one event)
            # a root where no eigenvalue is within τ of 0 is a jump of the sorted eigenvalues, not a crossing
            if loc is not None and not np.any(np.abs(loc[0].eigs) <= loc[0].tau):
                loc = None
            if loc is not None and not any(e["kind"] == "fold" and abs(e[key] - loc[1]) <= 1e3 * S.event_rtol * abs(loc[1])
                                           for _, e, _ in events):
                ev, p_ev, slope, s_ev, offset = loc
                events.append(((offset, s_ev), {"kind": "index_change", key: p_ev, "eigenvalue_slope": slope,
                                                "logit_scale": f.record(ev)["logit_scale"]}, ev))
        idx = br.events[-1]["index_after"] if br.events else br.steps[0]["index"]
        events.sort(key=lambda x: x[0])
        persistent = min(pt.nullity, q.nullity)
        for _, e, ev in events:   # each event starts where the previous one ended
            firm = int((ev.eigs < -ev.tau).sum())
            group = max(int((np.abs(ev.eigs) <= ev.tau).sum()) - persistent, 0)   # the crossing eigenvalues
            e["index_before"] = idx
            if e["kind"] == "index_change":
                e["index_after"] = firm + (group if e["eigenvalue_slope"] is not None and e["eigenvalue_slope"] < 0 else 0)
            else:
                e["index_after"] = firm + (group if q.index > firm else 0)
            e["multiplicity"] = group
            idx = e["index_after"]
        events = [e for _, e, _ in events]
        if passed:  # land exactly on the target
            fin = f.correct(q.th, to, None, pt, fixed_p=to)
            if fin is not None:
                q = f.analyse(_Point(fin[0], fin[1]))
                q.tangent = f.tangent(q, pt, to)
        br.events += events
        br.steps.append(f.record(q))
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


# ----- width ---------------------------------------------------------------------------------------------
def embed_width(spec: ModelSpec, theta, d_new: int) -> tuple[ModelSpec, np.ndarray]:
    """θ at width d embedded into width ``d_new`` ≥ d by zero rows and columns (module docstring)."""
    if d_new < spec.d:
        raise SpecError(f"d={d_new} is invalid: must be >= the point's width {spec.d}")
    big = replace(spec, d=int(d_new))
    F = spec.split(theta)
    G = []
    for (r, c), (R, C), f in zip(spec.shapes, big.shapes, F):
        g = np.zeros((R, C))
        g[:r, :c] = f
        G.append(g)
    return big, big.join(G)


def continue_in_width(spec: ModelSpec, theta, *, to: int, point_id: int | None = None, label: str | None = None,
                      dense_limit: int | None = None, progress=None) -> Branch:
    """Embed θ into every width d+1..``to`` and re-analyse it: per width its loss, ‖∇L‖, index,
    nullity net of symmetry, and symmetry zero modes (the dimension of its critical manifold's
    gauge orbit). ``progress(step record)`` hears every width as it is done."""
    if not (isinstance(to, int) and to >= spec.d):
        raise SpecError(f"--to={to!r} is invalid: must be an integer width >= {spec.d}")
    br = Branch(point_id, label)
    br.rank = analyse_structure(spec.as_float64(), theta).ranks["Z"].rank
    for d in range(spec.d, to + 1):
        s2, th = embed_width(spec, theta, d)
        m = DeepUFM(s2.as_float64())
        loss, g = m.loss_and_grad(torch.from_numpy(th))
        h = analyse_hessian(s2.as_float64(), th, dense_limit=dense_limit)
        br.steps.append({"d": d, "P": s2.P, "loss": float(loss), "grad_norm": float(g.norm()), "index": h.index,
                         "nullity": h.excess_zero_modes, "symmetry_zero_modes": h.symmetry_zero_modes,
                         "method": h.method})
        if progress is not None:
            progress(br.steps[-1])
    br.end = "reached"
    return br
