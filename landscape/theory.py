"""Closed-form results for the deep UFM (``shared/docs/MODEL.md`` §4–§6).

Everything here is float64 numpy/scipy and independent of the trajectory engines, so the tests
can hold the engines to it. Notation: K classes, n samples per class, L weight matrices, λ the
weight decay (equal on every factor unless stated), S = I_K − 11ᵀ/K.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq, minimize_scalar

from .model import ModelSpec


# ----- DNC in the deep linear CE model (MODEL.md §6) -------------------------------------------
def dnc_scale_residual(alpha: float, K: int, n: int, L: int, lam: float) -> float:
    """α^{(L−1)/(L+1)}/(e^α + K − 1) − λ n^{1/(L+1)}; zero exactly at a DNC critical scale."""
    return alpha ** ((L - 1) / (L + 1)) / (math.exp(alpha) + K - 1) - lam * n ** (1.0 / (L + 1))


def dnc_scale_roots(K: int, n: int, L: int, lam: float) -> list[float]:
    """All α > 0 with Z = αS⊗1ᵀ critical, ascending (0, 1 or 2 roots; 2 for L ≥ 2 and small λ).

    Roots are found by Brent's method in log α on either side of the maximum of the left-hand
    side α^{(L−1)/(L+1)}/(e^α + K − 1), so the tiny root near the origin is resolved to full
    relative precision.
    """
    c = lam * n ** (1.0 / (L + 1))
    p = (L - 1) / (L + 1)
    r = lambda u: p * u - np.logaddexp(math.exp(u), math.log(K - 1)) - math.log(c)  # noqa: E731  (u = log α)
    if L == 1:
        x = 1.0 / c - (K - 1)
        return [math.log(x)] if x > 1 else []
    # maximiser of log f(α): p(e^α + K − 1) = α e^α  → solve in α on (0, ∞)
    am = brentq(lambda a: p * (math.exp(a) + K - 1) - a * math.exp(a), 1e-300, 50.0)
    um = math.log(am)
    if r(um) < 0:
        return []
    if r(um) == 0:
        return [am]
    lo = brentq(r, -800.0, um, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)
    hi = brentq(r, um, math.log(1e3), xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)
    return [math.exp(lo), math.exp(hi)]


def dnc_loss(alpha: float, K: int, n: int, L: int, lam: float) -> float:
    """Loss of the balanced DNC point of scale α: log(1+(K−1)e^{−α}) + (λ(L+1)/2)(K−1)(α√n)^{2/(L+1)}."""
    return math.log1p((K - 1) * math.exp(-alpha)) + 0.5 * lam * (L + 1) * (K - 1) * (alpha * math.sqrt(n)) ** (2.0 / (L + 1))


# ----- L = 1 cross-entropy (Zhu et al.) --------------------------------------------------------
def l1_ce_optimum(K: int, n: int, lam_W: float, lam_H: float) -> tuple[float, float]:
    """(α*, loss*) of the L = 1 CE UFM; α* = 0 and loss log K when c = √(nλ_Wλ_H) ≥ 1/K."""
    c = math.sqrt(n * lam_W * lam_H)
    if c >= 1.0 / K:
        return 0.0, math.log(K)
    a = math.log(1.0 / c - (K - 1))
    return a, -math.log(1.0 - (K - 1) * c) + (K - 1) * c * a


# ----- deep linear MSE (Dang et al.) -----------------------------------------------------------
def mse_optimum(K: int, n: int, L: int, lam_W: float, lam_H: float) -> tuple[float, float]:
    """(γ*, loss*) of the deep linear MSE UFM (L ≥ 2): Z* = γ*Y, γ* the largest root in (0, 1) of
    γ^{L−1}(1−γ)^{L+1} = (λ_W K)^L (λ_H K n); (0, 1/2) when no such root exists."""
    if L < 2:
        raise ValueError("mse_optimum needs L >= 2")
    rhs = (lam_W * K) ** L * (lam_H * K * n)
    if rhs >= (L - 1) ** (L - 1) / L ** (2 * L):
        return 0.0, 0.5
    h = lambda g: (L - 1) * math.log(g) + (L + 1) * math.log1p(-g) - math.log(rhs)  # noqa: E731
    gm = (L - 1) / (2 * L)
    g = brentq(h, gm, float(np.nextafter(1.0, 0.0)), xtol=1e-16, rtol=4 * np.finfo(float).eps, maxiter=500)
    return g, (1 - g) ** 2 / 2 + (L + 1) / 2 * g * (1 - g)


# ----- symmetry ------------------------------------------------------------------------------
def gauge_orbit_dimension(L: int, r: int, d: int) -> int:
    """Dimension L·(r·d − r(r+1)/2) of the O(d) gauge orbit through a linear critical point of rank r."""
    return L * (r * d - r * (r + 1) // 2)


# ----- building balanced points --------------------------------------------------------------
def simplex(K: int) -> np.ndarray:
    """S = I_K − 11ᵀ/K."""
    return np.eye(K) - np.ones((K, K)) / K


def balanced_point(spec: ModelSpec, Zbar: np.ndarray, rotations=None) -> np.ndarray:
    """Flat θ (P,) of a balanced linear point whose logits are Z = Zbar ⊗ 1_nᵀ.

    Z = UΣVᵀ (rank r); every factor carries singular values σ_i^{1/(L+1)} times c_l, with
    c_l = √(Λ/λ_l), Λ = (Πλ_l)^{1/(L+1)}, so λ_{l+1}W_{l+1}ᵀW_{l+1} = λ_l W_l W_lᵀ (MODEL.md §4)
    and the product W_L⋯W₁H₁ is exactly Z. Hidden bases are the first r coordinate directions,
    optionally rotated by ``rotations`` (L orthogonal d×d matrices, one per interface).
    """
    K, n, d, L = spec.K, spec.n, spec.d, spec.L
    Z = np.kron(np.asarray(Zbar, dtype=float), np.ones((1, n)))
    U, s, Vt = np.linalg.svd(Z, full_matrices=False)
    r = int(np.sum(s > s[0] * 1e-12)) if s[0] > 0 else 0
    U, s, Vt = U[:, :r], s[:r], Vt[:r]
    lams = np.array(spec.lambdas)
    Lam = np.exp(np.mean(np.log(lams)))
    c = np.sqrt(Lam / lams)
    root = s ** (1.0 / (L + 1))
    Q = [np.eye(d)[:, :r] if rotations is None else rotations[l] @ np.eye(d)[:, :r] for l in range(L)]
    H1 = c[0] * Q[0] @ np.diag(root) @ Vt
    Ws = [c[l] * Q[l] @ np.diag(root) @ Q[l - 1].T for l in range(1, L)]
    WL = c[L] * U @ np.diag(root) @ Q[L - 1].T
    return np.concatenate([f.reshape(-1) for f in [H1, *Ws, WL]])


def dnc_point(spec: ModelSpec, alpha: float, rotations=None) -> np.ndarray:
    """Balanced DNC point with logits αS⊗1ᵀ (flat θ, (P,))."""
    return balanced_point(spec, alpha * simplex(spec.K), rotations)
