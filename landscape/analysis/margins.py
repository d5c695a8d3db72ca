"""λ = 0: directions, normalised margins and their KKT certificates (MODEL.md §11), linear CE model.

Without weight decay the cross-entropy of the deep linear UFM has no finite minimiser away from
saddles: gradient descent drives ‖θ‖ → ∞ and converges in direction (Lyu & Li 2020; Ji &
Telgarsky 2020) to a KKT point of

    min ½‖θ‖²  subject to  m_ic(θ) = z_{y_i}(θ) − z_c(θ) ≥ 1   for every sample i, class c ≠ y_i,

where the logits Z = W_L⋯W₁H₁ are homogeneous of degree L+1 in θ. This module measures and
certifies such directions. Conventions are those of MODEL.md §1 and
:class:`landscape.core.spec.ModelSpec`: K classes, n samples per class, N = K·n class-ordered
columns (sample i has label y_i = i // n), factors [H₁ (d×N), W₁..W_{L−1} (d×d), W_L (K×d)] laid out
row-major in one flat θ. Everything is float64 numpy/scipy.

**Shape argument.** Every function takes ``shape``: either a tuple ``(K, n, d, L)`` or a
``ModelSpec`` of the linear CE model (λ = 0, :attr:`~landscape.core.spec.ModelSpec.unregularised`,
or any λ, which is ignored).

* :func:`margins` — the (N, K−1) margins z_{y_i} − z_c, classes c ≠ y_i in increasing order;
  :func:`normalised_margin` γ(θ) = min margin / ‖θ‖^{L+1}, invariant under θ → tθ (t > 0), the
  gauge O(d) at every interface and class relabelling.
* :func:`kkt_certificate` — rescale θ̂ = θ/(min margin)^{1/(L+1)} (min margin 1), take the
  support S = {(i, c): m_ic(θ̂) ≤ 1 + rtol} and solve θ̂ = Σ_S α_ic ∇m_ic(θ̂), α ≥ 0, by
  non-negative least squares (stationarity of the Lagrangian ½‖θ‖² − Σα(m − 1); complementary
  slackness holds by construction, α = 0 off S). The relative residual ‖θ̂ − Σα∇m‖/‖θ̂‖ is the
  certificate. Euler's identity ⟨θ, ∇m⟩ = (L+1)m gives, at a KKT point, Σ_S α = ‖θ̂‖²/(L+1),
  reported as a check.
* :func:`polish_direction` — Newton's method on the KKT system of the support (m_S(θ) = 1 as
  equalities with multipliers μ), dense, each step the minimum-norm least-squares solution (the
  gauge orbit, and for low-rank codes non-unique multipliers, make the KKT matrix singular), with
  an active set: a constraint whose multiplier turns negative leaves S, a violated one joins.
* :func:`second_order` — the Lagrangian's Hessian on the tangent space of the support, net of
  the gauge: a local maximum of the margin, or a saddle of it.
* Closed forms for collapsed codes (:func:`code_margin`, :func:`nc_code_margin`,
  :func:`pairs_code_margin`): the derivation is in :func:`code_margin`'s docstring.

Margin gradients are written by hand: m_s = ⟨E_s, Z⟩ with E_s = (e_{y_i} − e_c)e_iᵀ, and with
A_l = F_L⋯F_{l+1} (A_L = I_K), X_l = F_{l−1}⋯F_0 (X_0 = I_N), F_0 = H₁, F_l = W_l,
∂m_s/∂F_l = (A_l[y_i] − A_l[c])ᵀ X_l[:, i]ᵀ (an outer product). The Hessian of ⟨U, Z⟩ is zero
within a factor (Z is linear in each) and between factors p < q has entries
∂²/∂F_q[a,b]∂F_p[c,e] = (A_qᵀ U X_pᵀ)[a,e] · (F_{q−1}⋯F_{p+1})[b,c].
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy.linalg import lstsq, null_space
from scipy.optimize import minimize, nnls

from ..core.spec import factor_offsets, factor_shapes


# ----- shape and layout ---------------------------------------------------------------------------
class MarginShape(NamedTuple):
    """Shape (K, n, d, L) of a deep linear CE UFM, with the flat layout of ModelSpec."""

    K: int
    n: int
    d: int
    L: int

    @property
    def N(self) -> int:
        return self.K * self.n

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """Shapes of the L+1 factors [H₁, W₁, …, W_L] (ModelSpec.shapes)."""
        return factor_shapes(self.K, self.n, self.d, self.L)

    @property
    def offsets(self) -> list[int]:
        return factor_offsets(self.shapes)

    @property
    def P(self) -> int:
        return self.offsets[-1]


def as_shape(shape) -> MarginShape:
    """A :class:`MarginShape` from ``(K, n, d, L)`` or a linear CE ``ModelSpec`` (λ ignored)."""
    if isinstance(shape, MarginShape):
        return shape
    if hasattr(shape, "activation") and hasattr(shape, "loss"):
        if shape.activation != "linear" or shape.loss != "ce":
            raise ValueError(f"margins are of the linear CE model: got activation={shape.activation!r}, "
                             f"loss={shape.loss!r}")
        return MarginShape(int(shape.K), int(shape.n), int(shape.d), int(shape.L))
    try:
        K, n, d, L = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (K, n, d, L) or a ModelSpec: got {shape!r}") from None
    if K < 2 or n < 1 or L < 1 or d < K:
        raise ValueError(f"shape (K={K}, n={n}, d={d}, L={L}) needs K ≥ 2, n ≥ 1, L ≥ 1, d ≥ K")
    return MarginShape(K, n, d, L)


def _theta(sh: MarginShape, theta) -> np.ndarray:
    if hasattr(theta, "detach"):  # a torch tensor
        theta = theta.detach().cpu().numpy()
    th = np.asarray(theta, dtype=np.float64).reshape(-1)
    if th.size != sh.P:
        raise ValueError(f"theta has {th.size} entries: the shape needs P={sh.P}")
    if not np.all(np.isfinite(th)):
        raise ValueError("theta has non-finite entries")
    return th


def factors(shape, theta) -> list[np.ndarray]:
    """The factors [H₁, W₁, …, W_L] of a flat θ (copies)."""
    sh = as_shape(shape)
    th = _theta(sh, theta)
    o = sh.offsets
    return [th[o[j]:o[j + 1]].reshape(s).copy() for j, s in enumerate(sh.shapes)]


def logits(shape, theta) -> np.ndarray:
    """Z = W_L⋯W₁H₁, (K, N)."""
    F = factors(shape, theta)
    Z = F[0]
    for W in F[1:]:
        Z = W @ Z
    return Z


def constraint_index(K: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, y_i, c) of every margin constraint, flattened row-major from the (N, K−1) layout of
    :func:`margins` (sample i slowest, classes c ≠ y_i ascending)."""
    N = K * n
    i = np.repeat(np.arange(N), K - 1)
    y = i // n
    j = np.tile(np.arange(K - 1), N)
    c = j + (j >= y)
    return i, y, c


# ----- margins -----------------------------------------------------------------------------------
def margins(shape, theta) -> np.ndarray:
    """Margins z_{y_i}(θ) − z_c(θ), (N, K−1): row i is sample i, columns the classes c ≠ y_i in
    increasing order."""
    sh = as_shape(shape)
    Z = logits(sh, theta)
    i, y, c = constraint_index(sh.K, sh.n)
    return (Z[y, i] - Z[c, i]).reshape(sh.N, sh.K - 1)


def normalised_margin(shape, theta) -> float:
    """γ(θ) = min margin / ‖θ‖^{L+1} (scale-free: margins are homogeneous of degree L+1)."""
    sh = as_shape(shape)
    th = _theta(sh, theta)
    nrm = float(np.linalg.norm(th))
    if nrm == 0.0:
        raise ValueError("θ = 0 has no direction")
    return float(margins(sh, th).min()) / nrm ** (sh.L + 1)


def _chains(F: list[np.ndarray], N: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A_l = F_L⋯F_{l+1} (A_L = I_K) and X_l = F_{l−1}⋯F_0 (X_0 = I_N), l = 0..L."""
    L = len(F) - 1
    X = [np.eye(N)]
    for l in range(1, L + 1):
        X.append(F[l - 1] if l == 1 else F[l - 1] @ X[l - 1])
    A = [None] * (L + 1)
    A[L] = np.eye(F[L].shape[0])
    for l in range(L - 1, -1, -1):
        A[l] = F[L] if l == L - 1 else A[l + 1] @ F[l + 1]
    return A, X


def _selected(sh, rows):
    """(sample, true class, other class) of the constraints ``rows`` (default all)."""
    i, y, c = constraint_index(sh.K, sh.n)
    if rows is None:
        return i, y, c
    rows = np.asarray(rows, dtype=int)
    return i[rows], y[rows], c[rows]


def margin_jacobian(shape, theta, rows=None) -> np.ndarray:
    """∇_θ m_s(θ) of the constraints ``rows`` (indices into the flattened (N·(K−1)) order of
    :func:`constraint_index`; default all), shape (|rows|, P), by hand (module docstring)."""
    sh = as_shape(shape)
    F = factors(sh, theta)
    i, y, c = _selected(sh, rows)
    A, X = _chains(F, sh.N)
    blocks = []
    for l in range(sh.L + 1):
        a = A[l][y] - A[l][c]          # (M, r_l)
        x = X[l][:, i].T               # (M, c_l)
        blocks.append((a[:, :, None] * x[:, None, :]).reshape(len(i), -1))
    return np.concatenate(blocks, axis=1)


def margin_hessian(shape, theta, mu, rows=None) -> np.ndarray:
    """Hessian of Σ_s μ_s m_s(θ) over the constraints ``rows`` (default all), dense (P, P):
    the Hessian of ⟨U, Z(θ)⟩ with U = Σ_s μ_s (e_{y_s} − e_{c_s}) e_{i_s}ᵀ (module docstring)."""
    sh = as_shape(shape)
    F = factors(sh, theta)
    i, y, c = _selected(sh, rows)
    mu = np.asarray(mu, dtype=np.float64).reshape(-1)
    if mu.size != i.size:
        raise ValueError(f"{mu.size} multipliers for {i.size} constraints")
    U = np.zeros((sh.K, sh.N))
    np.add.at(U, (y, i), mu)
    np.add.at(U, (c, i), -mu)
    A, X = _chains(F, sh.N)
    o = sh.offsets
    H = np.zeros((sh.P, sh.P))
    for q in range(1, sh.L + 1):
        B = np.eye(F[q].shape[1])     # F_{q−1}⋯F_{p+1}, grown as p decreases
        for p in range(q - 1, -1, -1):
            if p < q - 1:
                B = B @ F[p + 1]
            T = A[q].T @ U @ X[p].T   # (r_q, c_p)
            blk = np.einsum("ae,bc->abce", T, B).reshape(o[q + 1] - o[q], o[p + 1] - o[p])
            H[o[q]:o[q + 1], o[p]:o[p + 1]] = blk
            H[o[p]:o[p + 1], o[q]:o[q + 1]] = blk.T
    return H


def balanced_factorisation(shape, Z) -> np.ndarray:
    """Flat θ (P,) of the balanced factorisation of the logits Z (K, N): with Z = UΣVᵀ (rank r:
    singular values above σ₁·1e-14), H₁ = Q₀Σ^{1/(L+1)}Vᵀ, W_l = Q_lΣ^{1/(L+1)}Q_{l−1}ᵀ,
    W_L = UΣ^{1/(L+1)}Q_{L−1}ᵀ, Q_l the first r coordinate directions of ℝ^d. Every factor has the
    singular values σ_i^{1/(L+1)}, so ‖θ‖² = (L+1)Σσ_i^{2/(L+1)}, the least of any factorisation
    of Z (:func:`code_margin`): of all θ with these logits it has the largest normalised margin."""
    sh = as_shape(shape)
    Z = np.asarray(Z, dtype=np.float64)
    if Z.shape != (sh.K, sh.N):
        raise ValueError(f"Z has shape {Z.shape}: must be (K, N) = ({sh.K}, {sh.N})")
    U, s, Vt = np.linalg.svd(Z, full_matrices=False)
    r = int(np.sum(s > s[0] * 1e-14)) if s.size and s[0] > 0 else 0
    U, s, Vt = U[:, :r], s[:r], Vt[:r]
    root = np.diag(s ** (1.0 / (sh.L + 1)))
    E = np.eye(sh.d)[:, :r]
    F = [E @ root @ Vt] + [E @ root @ E.T for _ in range(1, sh.L)] + [U @ root @ E.T]
    return np.concatenate([f.reshape(-1) for f in F])


# ----- KKT certificate ---------------------------------------------------------------------------
@dataclass
class MarginCertificate:
    """First-order certificate of a direction for min ½‖θ‖² s.t. margins ≥ 1.

    ``theta_hat``: the direction rescaled to min margin 1; ``gamma`` = 1/‖θ̂‖^{L+1} (= the
    normalised margin of θ); ``support``: flat constraint indices (:func:`constraint_index`) with
    margin ≤ 1 + support_rtol, ``support_pairs`` their (sample i, class c); ``multipliers`` α ≥ 0
    (NNLS), one per support constraint; ``residual`` = ‖θ̂ − Σα∇m‖/‖θ̂‖ (stationarity);
    ``euler_gap`` = |Σα − ‖θ̂‖²/(L+1)| / (‖θ̂‖²/(L+1)) (zero at a KKT point); ``slack``: smallest
    margin off the support minus 1 (inf when every constraint is in S); ``polish``: what
    :func:`polish_direction` did (None from :func:`kkt_certificate`)."""

    gamma: float
    theta_hat: np.ndarray
    support: np.ndarray
    support_pairs: np.ndarray
    multipliers: np.ndarray
    residual: float
    euler_gap: float
    slack: float
    support_rtol: float
    polish: dict | None = field(default=None)

    @property
    def support_size(self) -> int:
        return int(self.support.size)

    @property
    def min_multiplier(self) -> float:
        return float(self.multipliers.min()) if self.multipliers.size else float("nan")

    def is_kkt(self, tol: float = 1e-10) -> bool:
        """Stationary to ``tol`` (multipliers are ≥ 0 and feasibility holds by construction)."""
        return bool(self.residual <= tol)

    def to_dict(self) -> dict:
        return {"gamma": self.gamma, "support_size": self.support_size, "residual": self.residual,
                "euler_gap": self.euler_gap, "slack": self.slack, "support_rtol": self.support_rtol,
                "min_multiplier": self.min_multiplier, "multiplier_sum": float(self.multipliers.sum()),
                "polish": self.polish}


def rescale_to_unit_margin(shape, theta) -> np.ndarray:
    """θ̂ = θ / (min margin)^{1/(L+1)}: the same direction with min margin 1 (min margin must be > 0)."""
    sh = as_shape(shape)
    th = _theta(sh, theta)
    m = float(margins(sh, th).min())
    if not m > 0:
        raise ValueError(f"min margin {m:.3e} ≤ 0: the direction does not separate the classes")
    return th / m ** (1.0 / (sh.L + 1))


def _certify(sh: MarginShape, th_hat: np.ndarray, support: np.ndarray, rtol: float,
             polish: dict | None = None) -> MarginCertificate:
    m = margins(sh, th_hat).reshape(-1)
    i, _, c = constraint_index(sh.K, sh.n)
    J = margin_jacobian(sh, th_hat, support)
    alpha, _ = nnls(J.T, th_hat, maxiter=max(50 * support.size, 1000))
    nrm2 = float(th_hat @ th_hat)
    res = float(np.linalg.norm(th_hat - J.T @ alpha)) / math.sqrt(nrm2)
    target = nrm2 / (sh.L + 1)
    off = np.setdiff1d(np.arange(m.size), support)
    return MarginCertificate(
        gamma=1.0 / nrm2 ** ((sh.L + 1) / 2), theta_hat=th_hat, support=support,
        support_pairs=np.stack([i[support], c[support]], axis=1), multipliers=alpha,
        residual=res, euler_gap=abs(float(alpha.sum()) - target) / target,
        slack=float(m[off].min() - 1.0) if off.size else math.inf, support_rtol=rtol, polish=polish)


def kkt_certificate(shape, theta, support_rtol: float = 1e-6) -> MarginCertificate:
    """Certificate of θ's direction (see :class:`MarginCertificate`): rescale to min margin 1,
    support = margins ≤ 1 + ``support_rtol``, multipliers α ≥ 0 by scipy.optimize.nnls on
    θ̂ = Σ_S α ∇m(θ̂), and the relative stationarity residual."""
    sh = as_shape(shape)
    th_hat = rescale_to_unit_margin(sh, theta)
    m = margins(sh, th_hat).reshape(-1)
    support = np.flatnonzero(m <= 1.0 + support_rtol)
    return _certify(sh, th_hat, support, support_rtol)


# ----- polish ------------------------------------------------------------------------------------
def _kkt_residual(sh: MarginShape, th: np.ndarray, S: np.ndarray, mu: np.ndarray):
    """F(θ, μ) = (θ − J_Sᵀμ, m_S(θ) − 1), the margins of every constraint, and J_S."""
    J = margin_jacobian(sh, th, S)
    m = margins(sh, th).reshape(-1)
    return np.concatenate([th - J.T @ mu, m[S] - 1.0]), m, J


def _newton_active_set(sh: MarginShape, th: np.ndarray, S: np.ndarray, tol: float, max_iter: int,
                       max_changes: int) -> dict:
    """Newton on the KKT system of the support S with an active set (:func:`polish_direction`)."""
    P, M = sh.P, sh.N * (sh.K - 1)
    thr = math.sqrt(tol)
    mu, _ = nnls(margin_jacobian(sh, th, S).T, th, maxiter=max(50 * S.size, 1000))
    changes: list[tuple[str, int]] = []
    converged = False
    stalls = 0
    history: list[float] = []
    Fv, m, J = _kkt_residual(sh, th, S, mu)
    it = 0
    while it < max_iter:
        scale = max(1.0, float(np.linalg.norm(th)))
        if np.linalg.norm(Fv) <= tol * scale:
            if mu.size and mu.min() < -thr and len(changes) < max_changes:
                k = int(np.argmin(mu))
                changes.append(("drop", int(S[k])))
                S, mu = np.delete(S, k), np.delete(mu, k)
                Fv, m, J = _kkt_residual(sh, th, S, mu)
                continue
            converged = not (mu.size and mu.min() < -thr)
            break
        it += 1
        Hm = margin_hessian(sh, th, mu, S)
        KKT = np.block([[np.eye(P) - Hm, -J.T], [J, np.zeros((S.size, S.size))]])
        try:
            step = lstsq(KKT, -Fv, cond=1e-13, lapack_driver="gelsd")[0]
        except (np.linalg.LinAlgError, ValueError):
            # LAPACK's SVD can fail to converge on a badly scaled KKT matrix (seen with one BLAS
            # thread): the pivoted-QR solver instead, and a start that defeats both is not polished
            try:
                step = lstsq(KKT, -Fv, cond=1e-13, lapack_driver="gelsy")[0]
            except (np.linalg.LinAlgError, ValueError):
                break
        if not np.all(np.isfinite(step)):
            break
        t, best = 1.0, float(np.linalg.norm(Fv))
        for _ in range(40):
            th_new, mu_new = th + t * step[:P], mu + t * step[P:]
            F_new, m_new, J_new = _kkt_residual(sh, th_new, S, mu_new)
            if np.linalg.norm(F_new) < best or t < 1e-8:
                break
            t *= 0.5
        off = np.setdiff1d(np.arange(M), S)
        viol = off[m_new[off] < 1.0 - thr]
        if viol.size and len(changes) < max_changes:
            changes.extend(("add", int(k)) for k in viol)
            S = np.sort(np.concatenate([S, viol]))
            mu, _ = nnls(margin_jacobian(sh, th, S).T, th, maxiter=max(50 * S.size, 1000))
            Fv, m, J = _kkt_residual(sh, th, S, mu)
            continue
        th, mu, Fv, m, J = th_new, mu_new, F_new, m_new, J_new
        stalls = stalls + 1 if t < 1e-8 else 0
        history.append(float(np.linalg.norm(Fv)))
        # no progress (five failed line searches, or ‖F‖ not halved in 15 steps): a start too far
        # for a local method, or a support whose equalities have no solution nearby
        if stalls >= 5 or (len(history) > 15 and history[-1] > 0.5 * history[-16]):
            break
    return {"theta": th, "mu": mu, "support": S, "converged": bool(converged), "iterations": it,
            "changes": changes,
            "kkt_residual": float(np.linalg.norm(Fv)) / max(1.0, float(np.linalg.norm(th)))}


def _slsqp(sh: MarginShape, th: np.ndarray, maxiter: int) -> np.ndarray:
    """A local solution of min ½‖θ‖² s.t. m(θ) ≥ 1 from θ by scipy's SLSQP (analytic Jacobian)."""
    res = minimize(lambda x: (0.5 * float(x @ x), x), th, jac=True, method="SLSQP",
                   constraints=[{"type": "ineq", "fun": lambda x: margins(sh, x).reshape(-1) - 1.0,
                                 "jac": lambda x: margin_jacobian(sh, x)}],
                   options={"maxiter": maxiter, "ftol": 1e-15})
    return np.asarray(res.x, dtype=np.float64)


def _used_units(F: list[np.ndarray]) -> list[np.ndarray]:
    """Per interface l = 1..L of the factors F, the hidden units j in use: row j of F_{l−1} or
    column j of F_l not exactly zero."""
    return [np.flatnonzero(np.any(F[l - 1] != 0, axis=1) | np.any(F[l] != 0, axis=0)) for l in range(1, len(F))]


class _Compact(NamedTuple):
    """θ restricted to the hidden units it uses (:func:`compact_width`): the narrower shape, the
    unit indices kept at each interface (the used ones first, padded with unused ones to the
    common width), and θ in that shape."""

    shape: MarginShape
    units: list[np.ndarray]
    theta: np.ndarray

    def expand(self, full: MarginShape, th_small: np.ndarray) -> np.ndarray:
        """θ (full.P,) of the narrow θ: its units put back in their places, zeros elsewhere."""
        Fs = factors(self.shape, th_small)
        F = [np.zeros(s) for s in full.shapes]
        u = self.units
        F[0][u[0], :] = Fs[0]
        for l in range(1, full.L):
            F[l][np.ix_(u[l], u[l - 1])] = Fs[l]
        F[full.L][:, u[-1]] = Fs[full.L]
        return np.concatenate([f.reshape(-1) for f in F])


def compact_width(shape, theta) -> _Compact | None:
    """θ (P,) at the narrowest width w that holds it exactly, or None where w would be the full d.

    A hidden unit that θ does not use (its row in the factor below and its column in the factor
    above exactly zero, as in a :func:`balanced_factorisation` of logits of rank r < d) stays
    unused along Newton's and SLSQP's paths: every monomial of the logits that contains one of its
    coordinates contains two (one entry of the row, one of the column), so the margins' gradients
    are zero there and the KKT matrix has no block coupling them to the used coordinates (MODEL.md
    §8, width embedding); the right-hand side is zero on that block, so Newton's minimum-norm step
    and SLSQP's step (its BFGS matrix stays block-diagonal) are zero there too. The block itself
    is not zero: it holds the curvature along the directions that raise the rank, which is why the
    certificate and :func:`second_order` are taken at the full width (a code that is a local
    maximum of the margin at width w can be a saddle at d). The max-margin problem is therefore
    solved at width w (each interface's used units permuted to the front, a gauge symmetry, and
    padded with unused ones to the widest interface's count) and embedded back. Exact in exact
    arithmetic; it changes round-off (lstsq's rank cut-off is relative to the whole matrix) and
    the cost: the dense KKT solves scale as P³.

    Returns ``_Compact(shape, units, theta)``: the width-w shape, ``units`` (L integer arrays of
    length w, the full-width unit of each narrow unit at interfaces 1 … L) and θ in that shape
    (``shape.P``,)."""
    sh = as_shape(shape)
    F = factors(sh, theta)
    used = _used_units(F)
    w = max(1, max(u.size for u in used))
    if w >= sh.d:
        return None
    units = [np.concatenate([u, np.setdiff1d(np.arange(sh.d), u)[:w - u.size]]) for u in used]
    small = MarginShape(sh.K, sh.n, w, sh.L)
    Fs = [F[0][units[0], :]] + [F[l][np.ix_(units[l], units[l - 1])] for l in range(1, sh.L)] + [F[sh.L][:, units[-1]]]
    return _Compact(small, units, np.concatenate([f.reshape(-1) for f in Fs]))


def polish_direction(shape, theta, tol: float = 1e-10, support_rtol: float = 1e-3,
                     max_iter: int = 200, max_changes: int | None = None,
                     fallback: str | None = "slsqp", first: str = "newton") -> tuple[np.ndarray, MarginCertificate]:
    """Polish θ's direction to a KKT point of min ½‖θ‖² s.t. margins ≥ 1; returns (θ̂, certificate).

    θ̂ starts at θ rescaled to min margin 1, the support S at the constraints with margin
    ≤ 1 + ``support_rtol`` (a GD end is only approximately equal-margin: it must be *decided*,
    its support stable, before polishing), the multipliers μ at the NNLS solution. Newton's method
    then solves F(θ, μ) = (θ − J_S(θ)ᵀμ, m_S(θ) − 1) = 0 (J_S the margin Jacobian of S; the KKT
    matrix [[I − Σμ∇²m, −J_Sᵀ], [J_S, 0]]), each step the minimum-norm least-squares solution of
    the dense KKT matrix (the gauge orbit makes it singular, and so do non-unique multipliers),
    backtracking on ‖F‖, to ‖F‖ ≤ ``tol``·max(1, ‖θ‖). Active set (as for ReLU kinks): a step
    that takes constraints off S below 1 − √tol is not taken, those constraints join S (μ
    re-solved by NNLS) and the step is recomputed; at convergence a multiplier < −√tol (the most
    negative) leaves S and Newton goes on. At most ``max_changes`` changes (default: the number of
    constraints) and ``max_iter`` Newton steps.

    Newton is local: from a start whose support is not yet decided the equalities m_S = 1 may
    have no solution nearby and it stalls. Then, with ``fallback="slsqp"`` (default), scipy's
    SLSQP solves the inequality-constrained problem from the same θ̂ (a local method too: it
    goes to a nearby KKT point, not necessarily the one GD would reach), and Newton polishes its
    end on the constraints with margin ≤ 1 + 1e-6. ``fallback=None`` reports the failure.
    ``first="slsqp"`` starts with that stage (SLSQP, then Newton): SLSQP lowers ‖θ‖ at fixed
    margins, so it climbs the normalised margin and leaves a saddle of it, where Newton goes to
    the nearest KKT point of either kind (:func:`second_order` tells them apart).

    Both stages run at the width of the hidden units θ uses (:func:`compact_width`: the same
    iterates, embedded back; ``polish["width"]``), so a balanced start of rank r costs what a
    width-r model does.

    The certificate is computed afresh (NNLS, :func:`kkt_certificate`'s rule) at the polished θ̂
    on the constraints with margin ≤ 1 + 1e-8; ``certificate.polish`` records ``converged``
    (Newton reached ``tol`` on a settled active set), ``stage`` ("newton" or "slsqp+newton"),
    ``iterations``, ``changes`` (("add" | "drop", constraint index)), ``kkt_residual``
    (‖F‖/max(1, ‖θ‖)) and the Newton multipliers' minimum."""
    if fallback not in (None, "slsqp"):
        raise ValueError(f"fallback must be None or 'slsqp': got {fallback!r}")
    if first not in ("newton", "slsqp"):
        raise ValueError(f"first must be 'newton' or 'slsqp': got {first!r}")
    full = as_shape(shape)
    th0 = rescale_to_unit_margin(full, theta)
    narrow = compact_width(full, th0)
    sh = full if narrow is None else narrow.shape
    if narrow is not None:
        th0 = narrow.theta
    max_changes = sh.N * (sh.K - 1) if max_changes is None else int(max_changes)
    if first == "slsqp":
        x = rescale_to_unit_margin(sh, _slsqp(sh, th0, maxiter=max(200, max_iter)))
        S = np.flatnonzero(margins(sh, x).reshape(-1) <= 1.0 + 1e-6)
        out = _newton_active_set(sh, x, S, tol, max_iter, max_changes)
        out["changes"] = [("restart", -1)] + out["changes"]
        stage = "slsqp+newton"
    else:
        S = np.flatnonzero(margins(sh, th0).reshape(-1) <= 1.0 + support_rtol)
        out = _newton_active_set(sh, th0, S, tol, max_iter, max_changes)
        stage = "newton"
    if not out["converged"] and fallback == "slsqp" and first == "newton":
        x = rescale_to_unit_margin(sh, _slsqp(sh, th0, maxiter=max(200, max_iter)))
        S = np.flatnonzero(margins(sh, x).reshape(-1) <= 1.0 + 1e-6)
        first = out
        out = _newton_active_set(sh, x, S, tol, max_iter, max_changes)
        out["iterations"] += first["iterations"]
        out["changes"] = first["changes"] + [("restart", -1)] + out["changes"]
        stage = "slsqp+newton"
    th_end = out["theta"] if narrow is None else narrow.expand(full, out["theta"])
    th_hat = rescale_to_unit_margin(full, th_end)   # exact min margin 1 (a no-op to rounding)
    m = margins(full, th_hat).reshape(-1)
    cert_rtol = 1e-8
    support = np.flatnonzero(m <= 1.0 + cert_rtol)
    mu = out["mu"]
    polish = {"converged": out["converged"], "stage": stage, "iterations": out["iterations"],
              "changes": out["changes"], "kkt_residual": out["kkt_residual"],
              "newton_min_multiplier": float(mu.min()) if mu.size else float("nan"),
              "start_support_rtol": support_rtol, "width": sh.d}
    return th_hat, _certify(full, th_hat, support, cert_rtol, polish)


# ----- second order ------------------------------------------------------------------------------
def second_order(shape, theta_hat, support, multipliers, tol: float = 1e-6) -> dict:
    """Second-order test of a KKT point θ̂ (unit min margin) of min ½‖θ‖² s.t. margins ≥ 1:
    the eigenvalues of the Lagrangian's Hessian I − Σ_S μ_s∇²m_s on the tangent space of the
    support, {δ: J_S δ = 0} (scipy.linalg.null_space of the support's margin Jacobian).

    A negative eigenvalue (below −``tol``) is a direction along which the margins of the support
    stay equal to first order while ‖θ‖ falls: the direction is a saddle of the normalised margin,
    not a local maximum. Zero eigenvalues (|μ| ≤ ``tol``) include the gauge orbit, of dimension
    L·(r·d − r(r+1)/2) at a balanced point with logits of rank r (MODEL.md §5; r from the
    logits' singular values, relative threshold 1e-8); the rest are ``excess_zero_modes``.
    Exact when every multiplier is positive and the support's gradients are independent (LICQ,
    ``licq``); otherwise the tangent space of the whole support is smaller than the critical
    cone, and a negative direction that leaves a weakly active constraint may be missed.

    Returns ``{"negative", "zero", "gauge_zero_modes", "excess_zero_modes", "smallest",
    "smallest_positive", "tangent_dim", "licq", "tol"}``."""
    sh = as_shape(shape)
    th = _theta(sh, theta_hat)
    S = np.asarray(support, dtype=int)
    mu = np.asarray(multipliers, dtype=np.float64).reshape(-1)
    J = margin_jacobian(sh, th, S)
    H = np.eye(sh.P) - margin_hessian(sh, th, mu, S)
    Nt = null_space(J) if S.size else np.eye(sh.P)
    ev = np.linalg.eigvalsh(Nt.T @ H @ Nt) if Nt.shape[1] else np.zeros(0)
    z = np.linalg.svd(logits(sh, th), compute_uv=False)
    r = int(np.sum(z > z[0] * 1e-8)) if z.size and z[0] > 0 else 0
    gauge = sh.L * (r * sh.d - r * (r + 1) // 2)
    zero = int(np.sum(np.abs(ev) <= tol))
    pos = ev[ev > tol]
    return {"negative": int(np.sum(ev < -tol)), "zero": zero, "gauge_zero_modes": gauge,
            "excess_zero_modes": zero - gauge, "smallest": float(ev.min()) if ev.size else float("nan"),
            "smallest_positive": float(pos.min()) if pos.size else float("nan"), "tangent_dim": int(Nt.shape[1]),
            "licq": bool(np.linalg.matrix_rank(J) == S.size) if S.size else True, "tol": float(tol)}


# ----- closed forms for collapsed codes ----------------------------------------------------------
def code_min_margin(Zbar) -> float:
    """Smallest margin of the class-mean logits Z̄ (K×K, column c the logits of class c):
    min_c min_{c'≠c} Z̄[c, c] − Z̄[c', c]."""
    Zb = np.asarray(Zbar, dtype=np.float64)
    K = Zb.shape[0]
    if Zb.shape != (K, K):
        raise ValueError(f"Zbar must be K×K: got shape {Zb.shape}")
    D = np.diag(Zb)[None, :] - Zb
    D[np.arange(K), np.arange(K)] = np.inf
    return float(D.min())


def code_norm2(Zbar, n: int, L: int) -> float:
    """Smallest ‖θ‖² of a depth-L factorisation of Z = Z̄ ⊗ 1_nᵀ: (L+1)·Σ_i σ_i(Z)^{2/(L+1)},
    with σ_i(Z) = √n·σ_i(Z̄) (see :func:`code_margin`), over the non-zero singular values
    (numerical rank: σ > σ_max·K·eps)."""
    Zb = np.asarray(Zbar, dtype=np.float64)
    s = np.linalg.svd(Zb, compute_uv=False) * math.sqrt(n)
    if s.size == 0 or s[0] == 0.0:
        return 0.0
    # numerical rank first: σ^{2/(L+1)} magnifies round-off (1e-16 → 4e-7 at L = 4)
    s = s[s > s[0] * max(Zb.shape) * np.finfo(float).eps]
    return (L + 1) * float(np.sum(s ** (2.0 / (L + 1))))


def code_margin(Zbar, n: int, L: int) -> float:
    """Normalised margin γ of the code Z̄ (class-mean logits, K×K) at its best factorisation:

        γ(Z̄) = min margin(Z̄) / ((L+1)·Σ_i σ_i(Z̄⊗1_nᵀ)^{2/(L+1)})^{(L+1)/2}.

    Derivation. The margins of θ depend on θ only through Z = Z̄ ⊗ 1_nᵀ, so the best direction
    realising Z minimises ‖θ‖² = Σ_l ‖F_l‖_F² over factorisations Z = F_L⋯F_0 (F_0 = H₁).
    (i) Hölder for Schatten quasi-norms, ‖AB‖_{S_p} ≤ ‖A‖_{S_q}‖B‖_{S_r} with 1/p = 1/q + 1/r
    (all p, q, r > 0), applied to L+1 factors with q = 2 each gives
    ‖Z‖_{S_{2/(L+1)}} = (Σ_i σ_i^{2/(L+1)})^{(L+1)/2} ≤ Π_l ‖F_l‖_F.
    (ii) AM–GM: Σ_l ‖F_l‖² ≥ (L+1)·(Π_l ‖F_l‖²)^{1/(L+1)} ≥ (L+1)·Σ_i σ_i(Z)^{2/(L+1)}.
    (iii) The balanced factorisation (MODEL.md §4; :func:`landscape.analysis.theory.balanced_point`)
    gives every factor the singular values σ_i^{1/(L+1)}, so ‖F_l‖² = Σ_i σ_i^{2/(L+1)} for each of
    the L+1 factors and equality holds. Hence min ‖θ‖² = (L+1)Σσ_i(Z)^{2/(L+1)}, and since the
    margins are linear in Z and ‖θ‖^{L+1} = (‖θ‖²)^{(L+1)/2}, γ = min margin / (min‖θ‖²)^{(L+1)/2};
    the ratio is invariant under Z̄ → tZ̄ (both sides are of degree 1). σ_i(Z̄⊗1_nᵀ) = √n σ_i(Z̄)
    because (Z̄⊗1ᵀ)(Z̄⊗1ᵀ)ᵀ = n Z̄Z̄ᵀ."""
    Zb = np.asarray(Zbar, dtype=np.float64)
    return code_min_margin(Zb) / code_norm2(Zb, n, L) ** ((L + 1) / 2)


def nc_code(K: int) -> np.ndarray:
    """The neural-collapse simplex code S = I − 11ᵀ/K: every margin (1 − 1/K) − (−1/K) = 1."""
    return np.eye(K) - np.ones((K, K)) / K


def nc_code_margin(K: int, n: int, L: int) -> float:
    """γ_NC = ((L+1)(K−1))^{−(L+1)/2} · n^{−1/2}.

    S has K−1 singular values 1 (an orthogonal projector of rank K−1), so Z = S⊗1ᵀ has K−1
    singular values √n and min ‖θ‖² = (L+1)(K−1)n^{1/(L+1)}; min margin 1, so
    γ = ((L+1)(K−1))^{−(L+1)/2}·(n^{1/(L+1)})^{−(L+1)/2}. At the unit-margin balanced point the
    KKT multipliers are unique and equal: α_ic = n^{−L/(L+1)}/K (from θ = Jᵀ U with
    U = U_Z Σ^{(1−L)/(L+1)} V_Zᵀ = n^{−L/(L+1)} S⊗1ᵀ, whose off-diagonal entries are −α)."""
    return float(((L + 1) * (K - 1)) ** (-(L + 1) / 2) / math.sqrt(n))


def nc_multiplier(K: int, n: int, L: int) -> float:
    """The (unique, equal) KKT multiplier of every constraint at the unit-margin NC point,
    n^{−L/(L+1)}/K (see :func:`nc_code_margin`)."""
    return float(n ** (-L / (L + 1)) / K)


def pairs_code(K: int) -> np.ndarray:
    """The pairs / orthoplex code for even K = 2m, scaled to min margin 1: classes (2j, 2j+1)
    paired, a class's column has +1 on itself, −1 on its partner, 0 elsewhere (β = 1: the margin
    against the partner is 2β = 2, against every other class β = 1, so β = 1 gives min margin 1)."""
    if K % 2 or K < 2:
        raise ValueError(f"the pairs code needs an even K ≥ 2: got K={K}")
    Zb = np.zeros((K, K))
    for j in range(K // 2):
        a, b = 2 * j, 2 * j + 1
        Zb[a, a] = Zb[b, b] = 1.0
        Zb[a, b] = Zb[b, a] = -1.0
    return Zb


def pairs_code_margin(K: int, n: int, L: int) -> float:
    """γ_pairs = ((L+1)·m)^{−(L+1)/2} / (2√n), K = 2m.

    Each pair block β[[1, −1], [−1, 1]] = 2β·uuᵀ (u = (1, −1)/√2) has one singular value 2β, so
    Z = pairs⊗1ᵀ (β = 1, min margin 1) has m singular values 2√n and
    min ‖θ‖² = (L+1)·m·(2√n)^{2/(L+1)}; γ = ((L+1)m)^{−(L+1)/2}·(2√n)^{−1}.
    Ratio to NC: γ_pairs/γ_NC = (2(K−1)/K)^{(L+1)/2} / 2 (independent of n): at K = 4,
    (3/2)^{(L+1)/2}/2 = 0.75, 0.919, 1.125, 1.378 for L = 1..4, so NC has the larger margin for
    L ≤ 2 and the pairs code for L ≥ 3 (crossover (L+1)/2 = log 2/log 1.5, L ≈ 2.42). As K → ∞
    the ratio → 2^{(L−1)/2}: pairs beat NC for L ≥ 2 at large K (K ≥ 6 at L = 2:
    (5/3)^{1.5}/2 = 1.076). The support at the unit-margin balanced point is every non-partner
    constraint (partner margins are 2); per sample the multipliers sum to
    (2√n)^{(1−L)/(L+1)}/√n (θ = JᵀU forces U's own-class entry; its partner entry is 0). At K = 4
    the support's margin gradients are independent and the multipliers unique (equal, half that
    sum); for K ≥ 6 they are not (measured: J_S has rank 21 of 24 at K = 6, n = 1 and 39 of 48 at
    n = 2): LICQ fails there and Newton alone converges slowly (:func:`polish_direction`)."""
    if K % 2 or K < 2:
        raise ValueError(f"the pairs code needs an even K ≥ 2: got K={K}")
    m = K // 2
    return float(((L + 1) * m) ** (-(L + 1) / 2) / (2 * math.sqrt(n)))


def pairs_self_code(K: int, p: int) -> np.ndarray:
    """The centred code of p pairs and s = K − 2p classes alone, min margin 1 (MODEL.md §11):
    Z̄ = (I − 11ᵀ/K)·B with B block-diagonal, a pair block [[1, −1], [−1, 1]] on classes
    (2j, 2j+1), j < p, and B's column e_c for every class c ≥ 2p (alone). A paired class's column
    is +1 on itself, −1 on its partner, 0 elsewhere (already centred); a class alone has
    1 − 1/K on itself and −1/K elsewhere. Margins: 2 against the partner, 1 against every other
    class. p = 0 is NC (:func:`nc_code`), p = K/2 the pairs code (:func:`pairs_code`)."""
    s = K - 2 * p
    if K < 2 or p < 0 or s < 0:
        raise ValueError(f"p={p} pairs of K={K} classes: need 0 ≤ 2p ≤ K")
    B = np.zeros((K, K))
    for j in range(p):
        a, b = 2 * j, 2 * j + 1
        B[a, a] = B[b, b] = 1.0
        B[a, b] = B[b, a] = -1.0
    for c in range(2 * p, K):
        B[c, c] = 1.0
    return B - B.mean(axis=0, keepdims=True)


def pairs_self_code_margin(K: int, n: int, L: int, p: int) -> float:
    """γ of :func:`pairs_self_code`: ((L+1)·Σσ_i^{2/(L+1)})^{−(L+1)/2} (min margin 1,
    :func:`code_margin`) with the singular values of Z = Z̄ ⊗ 1_nᵀ, s = K − 2p:

    * p values 2√n: the pair columns are ±(e_a − e_b), each pair one singular value 2 (as in
      :func:`pairs_code_margin`); they are orthogonal to every other column (a pair column sums
      to zero and is zero on the other classes' rows);
    * the columns of the classes alone, m_c = e_c − 1/K·1 (c in a set A of s classes), have Gram
      matrix m_cᵀm_{c'} = δ_{cc'} − 1/K, i.e. I_s − 11ᵀ/K: eigenvalues 1 (s − 1 times) and
      1 − s/K (once), singular values √n (s − 1 times) and √(n(1 − s/K)) (zero for s = K).

    So γ = ((L+1)·[p·(2√n)^{2/(L+1)} + (s−1)·n^{1/(L+1)} + (n(1 − s/K))^{1/(L+1)}])^{−(L+1)/2}
    (for s = 0 the bracket is p·(2√n)^{2/(L+1)}): s = K gives :func:`nc_code_margin`, p = K/2
    :func:`pairs_code_margin`. At K = 10, n = 1, L = 2: γ/γ_NC = 1.2075, 1.1337, 1.0695, 1.0149,
    1 for p = 5, 4, 3, 2, 0 (p = 1: 0.972)."""
    s = K - 2 * p
    if K < 2 or p < 0 or s < 0:
        raise ValueError(f"p={p} pairs of K={K} classes: need 0 ≤ 2p ≤ K")
    e = 2.0 / (L + 1)
    total = p * (2 * math.sqrt(n)) ** e
    if s:
        total += (s - 1) * n ** (e / 2) + (n * (1 - s / K)) ** (e / 2)
    return float(((L + 1) * total) ** (-(L + 1) / 2))


def subsets_code_margin(m: int, j: int, n: int, L: int) -> float:
    """γ of the subsets(m, j) code (:class:`landscape.analysis.theory.BlockType`): K = C(m, j)
    classes at the j-subsets S of an m-set, class-mean logits ∝ M̂, M̂_ST = (|S∩T| − j²/m)/σ with
    σ = K·j(m − j)/(m(m − 1)), an orthogonal projector of rank m − 1. A class's margin against T is
    (j − |S∩T|)/σ, least (1/σ) against the subsets that share j − 1 elements, so σM̂ has min margin
    1 and m − 1 singular values σ, and Z = σM̂ ⊗ 1_nᵀ has them σ√n:
    γ = ((L+1)(m − 1)(σ√n)^{2/(L+1)})^{−(L+1)/2}. j = 1 is NC (σ = 1); subsets(5, 2) (K = 10, the
    edges of K₅, σ = 3, rank 4) has γ/γ_NC = (9/(4·3^{2/(L+1)}))^{(L+1)/2}: 1.125 at L = 2, 1.6875 at L = 3."""
    K = math.comb(m, j)
    if not (m >= 2 and 1 <= j < m):
        raise ValueError(f"subsets(m={m}, j={j}) needs 1 ≤ j < m")
    sigma = K * j * (m - j) / m / (m - 1)
    return float(((L + 1) * (m - 1) * (sigma * math.sqrt(n)) ** (2.0 / (L + 1))) ** (-(L + 1) / 2))
