"""The predictor-corrector of pseudo-arclength continuation (Keller 1977): the system F(θ, p) =
∇L(θ; p) = 0, the analysis of a point on the branch, its tangent, the corrector, and the test
that a corrected point continues the branch.

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
* **acceptance** (:meth:`Follower.continues`): corrector drift ≤ ``max_drift``·h, tangent turn ≤
  ``max_turn``, loss change as the tangent predicts.

Arclength is measured in coordinates normalised at every accepted point (θ/‖θ_k‖, p/|p_k|), so a
step h is a relative change. The linear algebra is dense (the Hessian is formed at every step).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch

from ..analysis.hessian import dense_hessian
from ..analysis.symmetry import null_part, symmetry_space
from ..core.model import DeepUFM, ModelSpec
from .branch import param_key, step_record
from .parameters import lambdas_at, param_value
from .settings import ContinuationSettings


class GradientSystem:
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


def symmetry_basis(spec: ModelSpec, th: np.ndarray, H: np.ndarray, tau: float) -> np.ndarray:
    """Orthonormal symmetry tangents at θ that the Hessian H annihilates to τ (P, s)."""
    sym = symmetry_space(spec, th)
    Q, _ = null_part(sym.basis, H @ sym.basis, tau) if sym.dimension else (sym.basis, 0)
    return Q


def restricted_eigs(H: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Eigenvalues of H restricted to the complement of span(Q) (P − s of them)."""
    if Q.shape[1] == 0:
        return np.linalg.eigvalsh(H)
    C = np.linalg.svd(np.eye(H.shape[0]) - Q @ Q.T)[0][:, :H.shape[0] - Q.shape[1]]
    return np.linalg.eigvalsh(C.T @ H @ C)


@dataclass
class BranchPoint:
    """A point (θ, p) on the branch, its tangent and, once analysed (:meth:`Follower.analyse`), its
    Hessian, symmetry tangents, restricted eigenvalues, index, nullity and thresholds."""

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


class Follower:
    """Arclength is measured in coordinates normalised at every accepted point k,
    u = θ/‖θ_k‖, q = p/|p_k|: a step h is a relative change of both, so the step size follows the
    branch (its curvature, the corrector's iterations, the turn of the tangent) and never the
    target. Tangents are stored in the coordinates of their own point."""

    def __init__(self, spec: ModelSpec, param: str, settings: ContinuationSettings, th0_norm: float):
        self.spec = spec.as_float64()
        self.param = param
        self.S = settings
        self.sys = GradientSystem(self.spec, param)
        self.ts_floor = 1e-8 * max(th0_norm, 1e-300)

    def analyse(self, pt: BranchPoint) -> BranchPoint:
        pt.H = self.sys.hessian(pt.th, pt.p)
        pt.tau = self.S.tau_rel * float(lambdas_at(self.spec, self.param, pt.p).min())
        pt.Q = symmetry_basis(self.spec, pt.th, pt.H, pt.tau)
        pt.eigs = restricted_eigs(pt.H, pt.Q)
        rho = float(np.abs(pt.eigs).max()) if pt.eigs.size else 0.0
        pt.noise = self.S.noise_mult * np.finfo(np.float64).eps * max(rho, float(np.abs(pt.H).max()))
        pt.index = int((pt.eigs < -pt.tau).sum())
        pt.nullity = int((np.abs(pt.eigs) <= pt.tau).sum())
        pt.ts = max(float(np.linalg.norm(pt.th)), self.ts_floor)
        pt.ps = abs(pt.p)
        return pt

    def tangent(self, pt: BranchPoint, prev: BranchPoint | None, toward: float) -> np.ndarray:
        """Unit tangent (θ̇, ṗ) (module docstring) in ``pt``'s coordinates, by the null vector of the
        bordered Jacobian [H, ∂F/∂p; Qᵀ, 0] (the smallest right singular vector), oriented like the
        previous point's tangent (compared in physical units) or, for the first, towards ``toward``."""
        P = pt.th.size
        A = np.hstack([pt.H * pt.ts, pt.ps * self.sys.dF_dp(pt.th)[:, None]])
        # each block of rows scaled to unit size (the null vector does not change): at small λ the
        # Jacobian is O(λ) and the phase rows O(1), a scaling LAPACK's divide and conquer can fail on
        A = A / max(float(np.abs(A).max()), 1e-300)
        if pt.Q.shape[1]:
            A = np.vstack([A, np.hstack([pt.Q.T, np.zeros((pt.Q.shape[1], 1))])])
        try:
            _, _, Vt = np.linalg.svd(A)
        except np.linalg.LinAlgError:   # divide and conquer failed: the QR-iteration driver
            Vt = scipy.linalg.svd(A, lapack_driver="gesvd")[2]
        t = Vt[-1] / np.linalg.norm(Vt[-1])
        if prev is not None:
            if float(self.physical(t, pt) @ self.physical(prev.tangent, prev)) < 0:
                t = -t
        elif t[P] * (toward - pt.p) < 0:
            t = -t
        return t

    @staticmethod
    def physical(t: np.ndarray, pt: BranchPoint) -> np.ndarray:
        """A tangent in physical units (θ̇, ṗ), normalised."""
        v = np.concatenate([t[:-1] * pt.ts, [t[-1] * pt.ps]])
        return v / np.linalg.norm(v)

    def correct(self, th_pred, p_pred, t, base: BranchPoint, fixed_p: float | None = None):
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
            J = np.hstack([H * ts, ps * self.sys.dF_dp(th)[:, None]])
            c = 1.0 / max(float(np.abs(J).max()), 1e-300)   # the equations F = 0 scaled to unit size
            rows = [J * c]
            rhs = [-F * c]
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

    def step_from(self, pt: BranchPoint, h: float):
        """The predictor h along ``pt``'s tangent, corrected: (the new point, unanalysed, and the
        corrector's iterations), or None."""
        P = pt.th.size
        t = pt.tangent
        out = self.correct(pt.th + h * pt.ts * t[:P], pt.p + h * pt.ps * t[P], t, pt)
        if out is None:
            return None
        th, p, it = out
        return BranchPoint(th, p), it

    def continues(self, pt: BranchPoint, q: BranchPoint, h: float) -> bool:
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

    def record(self, pt: BranchPoint) -> dict:
        """The step record of an analysed point (:func:`landscape.continuation.branch.step_record`)."""
        th = pt.th
        return step_record(self.spec, self.param, th, pt.p, loss=self.sys.loss(th, pt.p),
                           grad_norm=float(np.linalg.norm(self.sys.grad(th, pt.p))), index=pt.index,
                           nullity=pt.nullity, symmetry_zero_modes=int(pt.Q.shape[1]))

    @property
    def param_key(self) -> str:
        return param_key(self.param)
