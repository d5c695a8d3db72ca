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

Beyond DNC, ReLU MSE has structures built from class-private rank-one *chains* (a class's samples
split over separate units in the first ReLU layers, samples left unserved) and, at L = 3, n = 2,
three classes sharing a hexagon of layer-2 units: :func:`mse_chain`, :func:`relu_mse_split_loss`,
:func:`relu_mse_chains_loss`, :func:`relu_mse_hexagon` and their points.

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
    return _mse_scale_roots(spec.L, 2.0 * log_frame_constant(spec))


def _mse_scale_roots(L: int, logG2: float) -> list[float]:
    """The roots γ ∈ (0, 1) of (L−1)log γ + (L+1)log(1−γ) = ``logG2``, ascending (see
    :func:`mse_dnc_scales`)."""
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


# ---------------------------------------------------------------------------------------------
# ReLU MSE: structures made of class-private rank-one chains (split paths, dropped samples)
# ---------------------------------------------------------------------------------------------
#
# With ReLU, hidden units that are on only for the samples of one class (and carry weights to and
# from that class's units only) form a *chain* that decouples from the rest of the network: the
# loss is the sum over chains of their own data term and weight decay, plus 1/(2N) for every
# sample that no chain serves (its logits are 0, ‖y‖² = 1). The chains GD finds at K=4, n=2, d=8,
# L=3 (study big-relu-mse) are rank one: every factor restricted to a chain is a scale s_l times a
# fixed 0/1 (or unit-vector) frame with ‖frame‖_F² = m_l, the product of the scales is the chain's
# logit γ on each of the r samples it serves. AM–GM over the L+1 terms λ_l m_l s_l² at a fixed
# product γ gives the penalty ((L+1)/2)(γ² Π_l λ_l m_l)^{1/(L+1)}, so the chain costs
#
#     ℓ(γ) = r(1−γ)²/(2N) + ((L+1)/2)(γ² Π_l λ_l m_l)^{1/(L+1)}
#
# — the MSE DNC family of the module docstring with G² replaced by G_c² = (N/r)^{L+1} Π_l λ_l m_l
# and the result scaled by r/N: stationary where γ^{L−1}(1−γ)^{L+1} = G_c², and there
# ℓ = (r/N)[(1−γ)²/2 + ((L+1)/2)γ(1−γ)]. A DNC class is the chain with r = n and
# m = (n, 1, …, 1) (Π m_l = n; the K classes together give G² = (λK)^{L+1}·n at equal λ, Dang's).


def mse_chain(spec: ModelSpec, r: int, counts) -> tuple[float, float] | None:
    """(γ, ℓ) of one rank-one chain serving ``r`` samples, with unit-scale factor norms ``counts`` =
    (m_0, …, m_L) (m_0 for H₁'s columns, m_l for W_l), at the minimising stationary scale (the
    larger root of γ^{L−1}(1−γ)^{L+1} = (N/r)^{L+1} Π_l λ_l m_l; comment above). ℓ is the chain's
    contribution to the loss of the whole model (data term over its r samples /(2N), plus its weight
    decay). None when the chain has no nonzero stationary scale (it is better off null)."""
    require_regularised(spec, "mse_chain", "a chain's scale solves an equation in λ")
    L, N = spec.L, spec.N
    if len(counts) != L + 1 or r < 1 or min(counts) < 1:
        raise ValueError(f"counts must be L+1 = {L + 1} positive integers and r ≥ 1")
    logG2 = (L + 1) * math.log(N / r) + sum(math.log(lam * m) for lam, m in zip(spec.lambdas, counts))
    roots = _mse_scale_roots(L, logG2)
    if not roots:
        return None
    g = roots[-1]
    return g, r / N * (0.5 * (1 - g) ** 2 + 0.5 * (L + 1) * g * (1 - g))


def relu_mse_split_counts(spec: ModelSpec, split: int) -> tuple[int, ...]:
    """(m_0, …, m_L) of a class whose n samples go through n separate units (one each) in the first
    ``split`` ReLU layers (layers 2 … split+1) and through one shared unit from layer split+2 on,
    merging in the output row c when split = L−1. split = 0 is DNC's class: (n, 1, …, 1), Π = n.
    split ≥ 1: the n H₁ columns, n W₁ rows, n weights into each separate layer, and n weights into
    the merging unit (or output row): m_l = n for l ≤ split+1, else 1; Π m_l = n^{split+2}.

    Only split 0 and 1 can be minima. With split ≥ 2 the separate units of layer 3 … split+1 take
    nonnegative inputs through weights that only decay can set, so unit i's pre-activation on the
    class's other samples is exactly 0 (a kink) with outgoing signal ∝ (γ − 1) < 0: the weight from
    the other sample's unit lowers the loss at first order (a one-sided descent towards split 1).
    A split in layer 2 escapes this because H₁ is free: the features can be obtuse, so the other
    samples' pre-activations are strictly negative (:func:`relu_mse_split_point`, ``obtuse``)."""
    L, n = spec.L, spec.n
    if not 0 <= split <= L - 1:
        raise ValueError(f"split must be in 0 … L−1 = {L - 1} (the ReLU layers a class can split through)")
    if split == 0:
        return (n,) + (1,) * L
    return tuple(n if l <= split + 1 else 1 for l in range(L + 1))


def relu_mse_split_loss(spec: ModelSpec, splits) -> float:
    """Closed-form loss of the ReLU MSE structure whose class c is a chain split through
    ``splits[c]`` ReLU layers (:func:`relu_mse_split_counts`; 0 = DNC's class), or null (None:
    logits 0, cost n/(2N)). The classes use disjoint units, so the loss is the sum of per-class
    terms and the excess over DNC is additive: Σ_c [ℓ(splits[c]) − ℓ(0)]. At K=4, n=2, L=3,
    λ=1e-3: ℓ(1) − ℓ(0) = 9.8233e-4 (the '4×self' minima at 0.0104846…), ℓ(2) − ℓ(0) = 1.61639e-3."""
    if len(splits) != spec.K:
        raise ValueError(f"one split (or None) per class: K = {spec.K}")
    total = 0.0
    for s in splits:
        ch = None if s is None else mse_chain(spec, spec.n, relu_mse_split_counts(spec, s))
        total += spec.n / (2 * spec.N) if ch is None else ch[1]
    return total


def relu_mse_chains_loss(spec: ModelSpec, chains, unserved: int = 0) -> float:
    """Loss of a structure made of disjoint rank-one chains ``chains`` = [(r, counts), …]
    (:func:`mse_chain`) and ``unserved`` samples that no chain reaches (1/(2N) each). A single
    sample served alone is (1, (1, …, 1)); a rank-one chain shared by one sample of each of two
    classes i, j (input weights u_i, u_j, output u_i e_i + u_j e_j, ‖u‖ = 1) serves one effective
    sample, (1, (1, …, 1)), and leaves the other unit of target mass unserved (unserved += 1)."""
    total = unserved / (2 * spec.N)
    for r, counts in chains:
        ch = mse_chain(spec, r, counts)
        total += r / (2 * spec.N) if ch is None else ch[1]
    return total


def _chain_scales(spec: ModelSpec, gamma: float, counts) -> list[float]:
    """s_l with λ_l m_l s_l² all equal and Π s_l = γ (AM–GM balance)."""
    L = spec.L
    logs = [math.log(lam * m) for lam, m in zip(spec.lambdas, counts)]
    log_t = (2.0 * math.log(gamma) + sum(logs)) / (L + 1)
    return [math.exp(0.5 * (log_t - x)) for x in logs]


def relu_mse_split_point(spec: ModelSpec, splits, obtuse: bool = True) -> np.ndarray:
    """Flat θ (P,) of :func:`relu_mse_split_loss`'s structure at every class's minimising scale.
    Class c (samples c·n … c·n+n−1) gets its own feature coordinates and its own units, in class
    order. split 0: one feature coordinate p, H₁[p, class] = s₀, W₁[u, p] = s₁, then one unit per
    layer, W_l[v, u] = s_l, W_L[c, v] = s_L. split ≥ 1: n feature coordinates holding unit vectors
    f_1 … f_n; H₁[:, sample i] = s₀ f_i, W₁[u_i, :] = s₁ f_iᵀ (unit u_i on for sample i only), W_l
    diagonal between separate layers, a row of n weights s_l into the merging unit (or output row).
    ``obtuse`` (default): f_i·f_j = −1/(n−1) (a regular simplex), so unit u_i's pre-activation on
    the class's other samples is strictly negative (−s₀s₁/(n−1)); else f_i = e_i, those entries
    sit on kinks at 0. The loss does not depend on this choice, but stability does: on the
    orthogonal variant those kinks carry a negative outgoing signal and moving sample j's feature
    towards unit u_i's row lowers the loss at first order. Null classes (None) get nothing.
    Raises ValueError when the structure needs more than d units or feature coordinates."""
    K, n, d, L, N = spec.K, spec.n, spec.d, spec.L, spec.N
    if len(splits) != K:
        raise ValueError(f"one split (or None) per class: K = {K}")
    H1 = np.zeros((d, N))
    Ws = [np.zeros((d, d)) for _ in range(L - 1)] + [np.zeros((K, d))]
    feat = 0
    unit = [0] * (L + 1)                        # next free unit in layers 2 … L (index = layer)
    if obtuse and n > 1:
        F = (np.eye(n) - 1.0 / n) / math.sqrt(1.0 - 1.0 / n)
    else:
        F = np.eye(n)
    for c, split in enumerate(splits):
        if split is None:
            continue
        counts = relu_mse_split_counts(spec, split)
        ch = mse_chain(spec, n, counts)
        if ch is None:
            continue
        s = _chain_scales(spec, ch[0], counts)
        cols = np.arange(c * n, (c + 1) * n)
        wide = split >= 1
        nf = n if wide else 1
        if feat + nf > d:
            raise ValueError("the structure needs more than d feature coordinates")
        # layer-j units of this class, j = 2 … L
        units = {}
        for j in range(2, L + 1):
            k = n if (wide and j <= split + 1) else 1
            if unit[j] + k > d:
                raise ValueError(f"the structure needs more than d units in layer {j}")
            units[j] = list(range(unit[j], unit[j] + k))
            unit[j] += k
        if wide:
            H1[feat:feat + n, cols] = s[0] * F
            for i, u in enumerate(units[2]):
                Ws[0][u, feat:feat + n] = s[1] * F[:, i]
        else:
            H1[feat, cols] = s[0]
            Ws[0][units[2][0] if L > 1 else c, feat] = s[1]
        feat += nf
        for l in range(2, L + 1):               # W_l: layer l → layer l+1 (the logits for l = L)
            src = units[l]
            dst = units[l + 1] if l < L else [c]
            if len(src) == len(dst):
                for a, b in zip(src, dst):
                    Ws[l - 1][b, a] = s[l]
            else:                               # n separate units merge into one
                Ws[l - 1][dst[0], src] = s[l]
    return np.concatenate([f.reshape(-1) for f in [H1, *Ws]])


# ---------------------------------------------------------------------------------------------
# ReLU MSE, L = 3, n = 2: three classes sharing a hexagon of layer-2 units
# ---------------------------------------------------------------------------------------------


def relu_mse_hexagon(spec: ModelSpec) -> dict:
    """Closed form of the 'hexagon' structure GD finds at K=4, n=2, d=8, L=3 (study big-relu-mse,
    loss 0.01225634342683…): three classes share units, the other K−3 are DNC classes.

    Geometry (classes a = 0, 1, 2, samples (a, ±)): the six features are ±v_a, |v_a| = ρ, the v_a at
    120° in one plane (H₁ of rank 2: a class's two samples are *opposite*); six layer-2 units ±w_j,
    |w_j| = ω, w_j ⟂ v_j, so unit ±w_j is on, at t = (√3/2)ρω, for exactly one sample of each class
    a ≠ j and ReLU(±w_j·x) turns the pair into |w_j·x|: the post-ReLU class means are t(J − I) (rank
    3) whichever sample. W₂ gives a unit pair (+w_j, −w_j) the same column β_j, so layer 3 collapses
    each class again: its class means Q = tβ(J − I) ≥ 0 (3×3), and Z̄ = W₃Q = b·I + δ·J.

    AM–GM: with G = QᵀQ and A = J/2 − I (so β = QA/t), the penalty is
    λ_H·3ρ² + λ₁·3ω² + λ₂‖QA‖²/t² + (λ₃/2)tr(Z̄G⁻¹Z̄ᵀ); the best G at fixed tr(AGA) and the four
    equal AM–GM terms leave 4(6·λ_Hλ₁λ₂λ₃·Y²)^{1/4} with Y = ‖Z̄A‖_* = z₁/2 + 2b (z₁ = b + 3δ the
    eigenvalue of Z̄ on 1). The data term is (1/(2K))[(z₁ − 1)² + 2(b − 1)²]; stationarity gives
    1 − b = 2(1 − z₁) =: 2ε, Y = (5 − 9ε)/2 and

        ε²(5 − 9ε) = 2√6·K²·(λ_Hλ₁λ₂λ₃)^{1/2},     ℓ_block = (10ε − 27ε²/2)/K,

    (the smallest positive root: the one near √(2√6K²√Πλ/5)). Returns {"eps", "b", "delta",
    "block_loss", "loss"} with ``loss`` = block + (K−3) DNC classes (:func:`mse_chain` with split 0).
    At K=4, λ=1e-3: ε = 3.9736218e-3, δ = ε/3 = 1.3245e-3, loss 0.012256343426792054."""
    require_regularised(spec, "relu_mse_hexagon", "its scales solve an equation in λ")
    if spec.L != 3 or spec.n != 2 or spec.K < 3 or spec.loss != "mse":
        raise ValueError("the hexagon structure is derived for MSE with L = 3, n = 2, K ≥ 3")
    K = spec.K
    rhs = 2.0 * math.sqrt(6.0) * K * K * math.sqrt(math.prod(spec.lambdas))
    h = lambda e: e * e * (5.0 - 9.0 * e) - rhs  # noqa: E731  (rises on (0, 10/27))
    if h(10.0 / 27.0) <= 0:
        raise ValueError("no hexagon scale at this λ (the block is better off null)")
    eps = brentq(h, 0.0, 10.0 / 27.0, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)
    block = (10.0 * eps - 13.5 * eps * eps) / K
    rest = 0.0
    if K > 3:
        ch = mse_chain(spec, spec.n, relu_mse_split_counts(spec, 0))
        rest = (K - 3) * (spec.n / (2 * spec.N) if ch is None else ch[1])
    return {"eps": eps, "b": 1.0 - 2.0 * eps, "delta": eps / 3.0, "block_loss": block, "loss": block + rest}


def relu_mse_hexagon_point(spec: ModelSpec) -> np.ndarray:
    """Flat θ (P,) of :func:`relu_mse_hexagon`: classes 0, 1, 2 on feature coordinates 0, 1, layer-2
    units 0 … 5 (unit 2j = +w_j, 2j+1 = −w_j), layer-3 units 0, 1, 2 with Q = G^{1/2} (entrywise
    positive, so layer 3 has no kink on the block); DNC classes 3 … K−1 on feature 2 + (c−3), layer-2
    unit 6 + (c−3), layer-3 unit 3 + (c−3). Scales from the equal AM–GM terms T = (6ΠλY²)^{1/4}:
    ρ² = T/(3λ_H), ω² = T/(3λ₁), t = T/(2√3·√(λ_Hλ₁)), tr(AGA) = S = λ₃Y²/(2T), and G's
    eigenvalues in proportion to |eigenvalues of Z̄A| (G = pI + qJ, p = bS/Y, p + 3q = 2z₁S/Y)."""
    K, d, N = spec.K, spec.d, spec.N
    hx = relu_mse_hexagon(spec)
    if max(6 + K - 3, 2 + K - 3) > d:
        raise ValueError("the hexagon structure needs d ≥ K + 3")
    lH, l1, l2, l3 = spec.lambdas
    b, dl, eps = hx["b"], hx["delta"], hx["eps"]
    z1 = b + 3 * dl
    Y = z1 / 2 + 2 * b
    T = (6 * lH * l1 * l2 * l3 * Y * Y) ** 0.25
    rho, om = math.sqrt(T / (3 * lH)), math.sqrt(T / (3 * l1))
    t = rho * om * math.sqrt(3) / 2
    S = l3 * Y * Y / (2 * T)
    p, g1 = b * S / Y, 2 * z1 * S / Y
    J, I3 = np.ones((3, 3)), np.eye(3)
    Q = math.sqrt(p) * I3 + (math.sqrt(g1) - math.sqrt(p)) / 3 * J          # G^{1/2}, G = pI + (g1−p)/3·J
    beta = Q @ (J / 2 - I3) / t
    H1, W1, W2, W3 = np.zeros((d, N)), np.zeros((d, d)), np.zeros((d, d)), np.zeros((K, d))
    for a in range(3):
        ang = 2 * math.pi * a / 3
        v = rho * np.array([math.cos(ang), math.sin(ang)])
        w = om * np.array([-math.sin(ang), math.cos(ang)])
        H1[:2, 2 * a], H1[:2, 2 * a + 1] = v, -v
        W1[2 * a, :2], W1[2 * a + 1, :2] = w, -w
        W2[:3, 2 * a] = W2[:3, 2 * a + 1] = beta[:, a]
    W3[:3, :3] = (b * I3 + dl * J) @ np.linalg.inv(Q)
    if K > 3:
        counts = relu_mse_split_counts(spec, 0)
        g, _ = mse_chain(spec, spec.n, counts)
        s = _chain_scales(spec, g, counts)
        for k, c in enumerate(range(3, K)):
            H1[2 + k, 2 * c:2 * c + 2] = s[0]
            W1[6 + k, 2 + k] = s[1]
            W2[3 + k, 6 + k] = s[2]
            W3[c, 3 + k] = s[3]
    return np.concatenate([f.reshape(-1) for f in [H1, W1, W2, W3]])
