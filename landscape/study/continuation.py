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
* **steps adapt**: a corrector that needs few iterations lengthens the next step (×1.5, at most
  ``h_max``), one that fails or needs many halves it; below ``h_min`` the branch ends
  ("failed to correct").

**Events**, located by bisection on the arclength step to 1e-6 relative in p: a **fold** (ṗ
changes sign: the branch turns back in p) and an **index change** (the number of negative
eigenvalues of the Hessian restricted to the complement of the symmetry tangents changes: an
eigenvalue crosses zero — a branch point or a loss of stability). Each records p, the index before
and after, and the logit scale.

A branch ends when it reaches the target ("reached", the last step landing on it exactly), when
p would leave the model's validity (p ≤ 0: "left the model's validity (lambda ≤ 0)") or falls below
``p_floor_rtol`` of its start (the index is not resolvable there: τ ∝ λ), when it arrives at the
origin (its logit scale below ``origin_rtol`` of the start: the small-root branches do as p → 0,
and there every structure's branches meet), when the corrector fails, or after ``max_steps``. The linear algebra is dense (the Hessian is formed
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
from ..analysis.structure import analyse_structure
from ..analysis.symmetry import symmetry_space
from ..core.model import DeepUFM, ModelSpec, as_theta64
from ..core.validate import SpecError, check_choice

PARAMS = ("lambda", "lambda_H", "lambda_W", "ratio")


@dataclass(frozen=True)
class ContinuationSettings:
    """Step control and tolerances of :func:`continue_in_lambda` (stored with every branch)."""

    h0: float = 0.05
    h_min: float = 1e-7
    h_max: float = 0.5
    max_steps: int = 400
    newton_iter: int = 20
    certify_tol: float = 1e-10
    event_rtol: float = 1e-6
    tau_rel: float = 1e-3
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
    tangent: np.ndarray | None = None   # (P+1,)
    H: np.ndarray | None = None
    Q: np.ndarray | None = None
    eigs: np.ndarray | None = None
    index: int = 0
    nullity: int = 0


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
    """Arclength is measured in normalised coordinates u = θ/θ_s, q = p/p_s (θ_s the start's
    norm, p_s the parameter range), so a step is a fraction of both; tangents are stored in them."""

    def __init__(self, spec: ModelSpec, param: str, settings: ContinuationSettings, th_scale: float, p_scale: float):
        self.spec = spec.as_float64()
        self.param = param
        self.S = settings
        self.sys = _System(self.spec, param)
        self.ts, self.ps = float(th_scale), float(p_scale)

    def analyse(self, pt: _Point) -> _Point:
        pt.H = self.sys.hessian(pt.th, pt.p)
        tau = self.S.tau_rel * float(lambdas_at(self.spec, self.param, pt.p).min())
        pt.Q = _sym_basis(self.spec, pt.th, pt.H, tau)
        pt.eigs = _restricted_eigs(pt.H, pt.Q)
        pt.index = int((pt.eigs < -tau).sum())
        pt.nullity = int((np.abs(pt.eigs) <= tau).sum())
        return pt

    def tangent(self, pt: _Point, prev: np.ndarray | None, toward: float) -> np.ndarray:
        """Unit tangent (θ̇, ṗ) (module docstring), by the null vector of the bordered Jacobian
        [H, ∂F/∂p; Qᵀ, 0] (the smallest right singular vector)."""
        P = pt.th.size
        A = np.hstack([pt.H * self.ts, self.ps * self.sys.dF_dp(pt.th)[:, None]])
        if pt.Q.shape[1]:
            A = np.vstack([A, np.hstack([pt.Q.T, np.zeros((pt.Q.shape[1], 1))])])
        _, _, Vt = np.linalg.svd(A)
        t = Vt[-1]
        t = t / np.linalg.norm(t)
        if prev is not None:
            if float(t @ prev) < 0:
                t = -t
        elif t[P] * (toward - pt.p) < 0:
            t = -t
        return t

    def correct(self, th_pred, p_pred, t, base: _Point, fixed_p: float | None = None):
        """Newton on the bordered system (in normalised coordinates); returns (θ, p, iterations) or None."""
        P = th_pred.size
        ts, ps = self.ts, self.ps
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
                rows.append(np.hstack([Q.T, np.zeros((Q.shape[1], 1))]))
                rhs.append(-(Q.T @ (th - base.th)) / ts)
            dx = np.linalg.lstsq(np.vstack(rows), np.concatenate(rhs), rcond=None)[0]
            th, p = th + ts * dx[:P], p + ps * float(dx[P])
            if np.linalg.norm(dx) <= 1e-15 * (1 + np.linalg.norm(th) / ts):
                F = self.sys.grad(th, p)
                return (th, p, it) if np.linalg.norm(F) <= self.S.certify_tol else None
        F = self.sys.grad(th, p)
        return (th, p, self.S.newton_iter) if np.linalg.norm(F) <= self.S.certify_tol else None

    def step_from(self, pt: _Point, h: float):
        P = pt.th.size
        t = pt.tangent
        out = self.correct(pt.th + h * self.ts * t[:P], pt.p + h * self.ps * t[P], t, pt)
        if out is None:
            return None
        th, p, it = out
        return _Point(th, p), it

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

    def locate(self, pt: _Point, h: float, kind: str, before: int) -> tuple[_Point, float]:
        """Bisection on the step from ``pt`` for the event ``kind`` between 0 and h."""
        lo, hi = 0.0, h
        best = None
        p_lo, p_hi = pt.p, None
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            out = self.step_from(pt, mid)
            if out is None:
                hi = mid
                continue
            q = self.analyse(out[0])
            if kind == "fold":
                q.tangent = self.tangent(q, pt.tangent, 0.0)
                crossed = q.tangent[-1] * pt.tangent[-1] < 0
            else:
                crossed = q.index != before
            if crossed:
                hi, p_hi, best = mid, q.p, q
            else:
                lo, p_lo = mid, q.p
            if p_hi is not None and abs(p_hi - p_lo) <= self.S.event_rtol * abs(p_hi):
                break
        return best, (p_lo + p_hi) / 2 if p_hi is not None else pt.p


def continue_in_lambda(spec: ModelSpec, theta, *, param: str = "lambda", to: float, point_id: int | None = None,
                       label: str | None = None, settings: ContinuationSettings = ContinuationSettings()) -> Branch:
    """Follow the critical point θ (P,) of ``spec`` in ``param`` towards ``to`` (module docstring)."""
    check_choice("param", param, PARAMS)
    if not (isinstance(to, (int, float)) and math.isfinite(to) and to > 0):
        raise SpecError(f"--to={to!r} is invalid: must be a finite number > 0 (a weight decay)")
    S = settings
    th0 = as_theta64(spec, theta).numpy().copy()
    p0 = param_value(spec.as_float64(), param)
    f = _Follower(spec, param, settings, th_scale=max(float(np.linalg.norm(th0)), 1e-3),
                  p_scale=abs(to - p0) + abs(p0))
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
    scale = 1.0  # steps are in the normalised arclength
    h = S.h0
    for _ in range(S.max_steps):
        out = f.step_from(pt, h)
        if out is None:
            h *= 0.5
            if h < S.h_min * scale:
                br.end = f"failed to correct at {f.param_key}={pt.p:.8g}"
                return br
            continue
        q, iters = out
        if q.p <= 0:
            h *= 0.5
            if h < S.h_min * scale:
                br.end = f"left the model's validity ({f.param_key} ≤ 0)"
                return br
            continue
        passed = (q.p - to) * (pt.p - to) <= 0 and q.p != pt.p
        if passed:  # land exactly on the target
            fin = f.correct(q.th, to, None, pt, fixed_p=to)
            if fin is not None:
                q = _Point(fin[0], fin[1])
        f.analyse(q)
        q.tangent = f.tangent(q, pt.tangent, to)
        events = []
        if q.index != pt.index:  # the first crossing on the step (the predicate is monotone there)
            ev, p_ev = f.locate(pt, h, "index", pt.index)
            events.append({"kind": "index_change", f.param_key: p_ev, "index_before": pt.index,
                           "index_after": ev.index if ev is not None else q.index,
                           "logit_scale": f.record(ev)["logit_scale"] if ev is not None else None})
        if q.tangent[-1] * pt.tangent[-1] < 0 and not passed:
            ev, p_ev = f.locate(pt, h, "fold", pt.index)
            fold = {"kind": "fold", f.param_key: p_ev, "index_before": ev.index if ev is not None else pt.index,
                    "index_after": q.index, "logit_scale": f.record(ev)["logit_scale"] if ev is not None else None}
            # an index change at the fold itself is the fold's: one event, index before → after
            if events and abs(events[0][f.param_key] - p_ev) <= 1e3 * S.event_rtol * abs(p_ev):
                fold["index_before"] = pt.index
                events = []
            elif events:
                fold["index_before"] = events[-1]["index_after"]
            events.append(fold)
        br.events += events
        br.steps.append(f.record(q))
        if passed:
            br.end = "reached"
            return br
        a0 = br.steps[0]["logit_scale"]
        if br.steps[-1]["label"] == "zero" or br.steps[-1]["logit_scale"] < S.origin_rtol * a0:
            # the small-scale branches end at the origin, where every structure's branches meet
            br.end = f"arrived at the origin ({f.param_key}={q.p:.4g})"
            return br
        if q.p < S.p_floor_rtol * p0:
            br.end = f"{f.param_key} → 0 (below {S.p_floor_rtol:g} of the start, at {q.p:.4g})"
            return br
        pt = q
        h = min(h * 1.5, S.h_max * scale) if iters <= 3 else (h * 0.5 if iters > 6 else h)
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
                      dense_limit: int | None = None) -> Branch:
    """Embed θ into every width d+1..``to`` and re-analyse it: per width its loss, ‖∇L‖, index,
    nullity net of symmetry, and symmetry zero modes (the dimension of its critical manifold's
    gauge orbit)."""
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
    br.end = "reached"
    return br
