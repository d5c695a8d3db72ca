"""Closed forms of DNC for every member of the family: {linear, ReLU} × {CE, MSE} (MODEL.md §6, §9).

DNC is the collapse of the member in question (MODEL.md §9):

* linear CE: logits Z̄ = αS (simplex ETF), every factor of rank K−1 (:mod:`landscape.analysis.theory`);
* linear MSE: Z̄ = γI (Z = γY, an orthogonal frame; Dang et al. 2023);
* ReLU CE: hidden class means an orthogonal frame (non-negative, rank K, so ReLU is the identity on
  them), logits Z̄ = αS;
* ReLU MSE: hidden class means an orthogonal frame, Z̄ = γI.

Every point built here factors its logits through the frame E = the first K coordinate directions
of ℝ^d (so d ≥ K): H₁ = a·E⊗1_nᵀ, W_l = b_l·EEᵀ (1 ≤ l < L), W_L = c·T Eᵀ with T = S (CE) or I
(MSE); the product is Z̄ = (a·Πb_l·c)·T. With weight decay λ_l on factor l, ‖F_l‖² = s_l²·N_l with
N_0 = Kn, N_l = K (1 ≤ l < L), N_L = ‖T‖_F² (K−1 for S, K for I). The penalty Σλ_l‖F_l‖²/2 at a
fixed product is smallest when every λ_l‖F_l‖² is the same t (AM–GM), which leaves one scale:

    penalty(s) = ((L+1)/2)·(s·G)^{2/(L+1)},   G = Π_l √(λ_l N_l),   s = α (CE) or γ (MSE).

The data term is log(1 + (K−1)e^{−α}) for CE and (1−γ)²/2 for MSE, so

* CE: ℓ(α) = log(1 + (K−1)e^{−α}) + ((L+1)/2)(αG)^{2/(L+1)}. This is the linear DNC loss of
  MODEL.md §6 with λ replaced by λ' = G^{2/(L+1)}/((K−1)n^{1/(L+1)}) (for the ETF frame of the
  linear model G^{2/(L+1)} = Λ(K−1)n^{1/(L+1)}, so λ' = Λ; for the orthogonal frame of ReLU at
  equal λ, λ' = λ·(K/(K−1))^{L/(L+1)}): the same scale equation and roots.
* MSE: ℓ(γ) = (1−γ)²/2 + ((L+1)/2)(γG)^{2/(L+1)}, stationary where
  γ^{L−1}(1−γ)^{L+1} = G² = Π_l λ_l N_l, which for λ_H on H₁ and λ_W on every W_l is Dang et
  al.'s (λ_W K)^L(λ_H K n); at a root the loss is (1−γ)²/2 + ((L+1)/2)γ(1−γ). For linear MSE the
  orthogonal frame is the ETF-free optimum's own factorisation (Z̄ = γI has K equal singular
  values), so linear and ReLU MSE share the closed form.

ReLU points built here sit on kinks (MODEL.md §10): every pre-activation entry off the frame is 0.
Backpropagation with ReLU'(0) = 0 (torch's convention) sees a smooth piece on which the point is
critical: the backpropagated signal vanishes on those entries for MSE, and for CE the piece with
the off-frame entries inactive is exactly the orthogonal-frame factorisation above.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from ..core.spec import ModelSpec, require_regularised
from .theory import dnc_loss, dnc_scale_roots, effective_lambda, simplex


def frame_norms(spec: ModelSpec) -> list[float]:
    """N_l = ‖F_l‖²/s_l² of every factor of the orthogonal-frame DNC point (module docstring):
    [Kn, K, …, K, ‖T‖²] with ‖T‖² = K−1 (CE, T = S) or K (MSE, T = I)."""
    K = spec.K
    last = K - 1 if spec.loss == "ce" else K
    return [K * spec.n] + [K] * (spec.L - 1) + [last]


def log_frame_constant(spec: ModelSpec) -> float:
    """log G = ½ Σ_l log(λ_l N_l), G = Π_l √(λ_l N_l): the penalty of the orthogonal-frame DNC point
    is ((L+1)/2)(s·G)^{2/(L+1)} (kept in logs: G itself under- or overflows at large depth)."""
    require_regularised(spec, "the DNC closed forms of the family", "they are stationary scales of the "
                        "regularised loss")
    return 0.5 * sum(math.log(lam * N) for lam, N in zip(spec.lambdas, frame_norms(spec)))


def relu_ce_equivalent_lambda(spec: ModelSpec) -> float:
    """λ' with which the linear DNC formulas of MODEL.md §6 give the ReLU CE DNC point (module
    docstring): G^{2/(L+1)}/((K−1)·n^{1/(L+1)})."""
    if spec.loss != "ce":
        raise ValueError("relu_ce_equivalent_lambda is for the cross-entropy loss")
    L = spec.L
    return math.exp(2.0 * log_frame_constant(spec) / (L + 1)) / ((spec.K - 1) * spec.n ** (1.0 / (L + 1)))


def mse_dnc_scales(spec: ModelSpec) -> list[float]:
    """Stationary γ ∈ (0, 1) of the MSE DNC family, ascending: the roots of
    (L−1)log γ + (L+1)log(1−γ) = log G² (module docstring). L = 1: one root γ = 1 − G when G < 1.
    L ≥ 2: the left side rises then falls in γ with its maximum at γ_m = (L−1)/(2L), so 0 or 2 roots
    (the larger is the minimum along the family, Dang et al.'s γ*)."""
    L = spec.L
    logG2 = 2.0 * log_frame_constant(spec)
    if L == 1:
        G = math.exp(0.5 * logG2)
        return [1.0 - G] if G < 1.0 else []
    h = lambda g: (L - 1) * math.log(g) + (L + 1) * math.log1p(-g) - logG2  # noqa: E731
    gm = (L - 1) / (2 * L)
    if h(gm) <= 0:
        return []
    top = float(np.nextafter(1.0, 0.0))
    low = float(np.finfo(float).tiny)
    out = []
    if h(low) < 0:
        out.append(brentq(h, low, gm, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=1000))
    out.append(brentq(h, gm, top, xtol=1e-16, rtol=4 * np.finfo(float).eps, maxiter=500))
    return out


def mse_dnc_loss(gamma: float, spec: ModelSpec) -> float:
    """ℓ(γ) = (1−γ)²/2 + ((L+1)/2)(γG)^{2/(L+1)} of the MSE DNC point of scale γ (linear or ReLU)."""
    L = spec.L
    pen = math.exp(2.0 * (math.log(gamma) + log_frame_constant(spec)) / (L + 1)) if gamma > 0 else 0.0
    return 0.5 * (1 - gamma) ** 2 + 0.5 * (L + 1) * pen


@dataclass(frozen=True)
class MemberDNC:
    """DNC of one member: ``scale`` (α for CE, γ for MSE), its ``loss``, the logit matrix Z̄ (K, K)
    and the ``geometry`` of the hidden class means ("ETF" centred simplex or "OF" orthogonal frame)."""

    scale: float
    loss: float
    Zbar: np.ndarray
    geometry: str

    def to_dict(self) -> dict:
        return {"scale": self.scale, "loss": self.loss, "geometry": self.geometry}


def member_dnc(spec: ModelSpec) -> list[MemberDNC]:
    """Every stationary DNC point of the member ``spec`` along its one-scale family, ascending in
    scale; the last is the minimum along the family (the large-α root for CE, Dang's γ* for MSE).
    Linear CE: the ETF points of MODEL.md §6; the others: the orthogonal frame (module docstring)."""
    require_regularised(spec, "member_dnc", "DNC's scale solves an equation in λ (MODEL.md §6)")
    K, n, L = spec.K, spec.n, spec.L
    if spec.loss == "ce":
        if spec.activation == "linear":
            lam, geometry = effective_lambda(spec), "ETF"
        else:
            lam, geometry = relu_ce_equivalent_lambda(spec), "OF"
        return [MemberDNC(a, dnc_loss(a, K, n, L, lam), a * simplex(K), geometry)
                for a in dnc_scale_roots(K, n, L, lam)]
    return [MemberDNC(g, mse_dnc_loss(g, spec), g * np.eye(K), "OF") for g in mse_dnc_scales(spec)]


def frame_dnc_point(spec: ModelSpec, scale: float) -> np.ndarray:
    """Flat θ (P,) of the orthogonal-frame DNC point of ``scale`` (α for CE: Z̄ = αS; γ for MSE:
    Z̄ = γI), with every λ_l‖F_l‖² equal (module docstring). Layout of θ: H₁ (d, N), W₁ … W_{L−1}
    (d, d), W_L (K, d), each row-major."""
    K, n, d, L = spec.K, spec.n, spec.d, spec.L
    N = frame_norms(spec)
    lams = spec.lambdas
    # λ_l s_l² N_l = t for every l and Π s_l = scale
    log_t = (2.0 * math.log(scale) + sum(math.log(lam * Nl) for lam, Nl in zip(lams, N))) / (L + 1)
    s = [math.exp(0.5 * (log_t - math.log(lam * Nl))) for lam, Nl in zip(lams, N)]
    E = np.eye(d)[:, :K]
    T = simplex(K) if spec.loss == "ce" else np.eye(K)
    H1 = s[0] * np.kron(E, np.ones((1, n)))
    Ws = [s[l] * (E @ E.T) for l in range(1, L)]
    WL = s[L] * T @ E.T
    return np.concatenate([f.reshape(-1) for f in [H1, *Ws, WL]])


def mse_rank_structures(spec: ModelSpec) -> list[dict]:
    """The MSE structures with r of the K classes collapsed onto an orthogonal frame and the rest
    null, Z̄ = γ·P (P an orthogonal projector of rank r, any class rotation), r = 1 … K, at the
    minimising γ of the DNC family (linear or ReLU MSE). With N_l counted on r classes,
    G_r^{2/(L+1)} = (r/K)·G^{2/(L+1)}, so the scale equation is DNC's and
        ℓ_r = (K − r)/(2K) + (r/K)·ℓ_DNC(γ*):
    the K − r null classes cost 1/2 each. Each is critical (tested against the model's gradient).
    Returns [{"rank", "gamma", "loss", "label"}], by loss."""
    if spec.loss != "mse":
        raise ValueError("mse_rank_structures is for the MSE loss")
    top = member_dnc(spec)
    if not top:
        return []
    g, K = top[-1], spec.K
    out = [{"rank": r, "gamma": g.scale, "loss": (K - r) / (2 * K) + r / K * g.loss,
            "label": "DNC" if r == K else f"OF({r})"} for r in range(1, K + 1)]
    return sorted(out, key=lambda x: x["loss"])
