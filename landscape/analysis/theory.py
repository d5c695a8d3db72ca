"""Closed-form results for the deep UFM (``docs/MODEL.md`` §4–§6).

Everything here is float64 numpy/scipy and independent of the trajectory engines, so the tests
can hold the engines to it. Notation: K classes, n samples per class, L weight matrices, λ the
weight decay (equal on every factor unless stated), S = I_K − 11ᵀ/K.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from ..core.model import ModelSpec


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
    n, d, L = spec.n, spec.d, spec.L
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


# ----- block structures: simplices among subsets of classes (ours, from MODEL.md §4 and §6) -----
# A block structure partitions the K classes into blocks; a block B of size k ≥ 2 with scale α has
# class-mean logits α(S_k) on B×B and 0 elsewhere (its columns sum to 0, as 1ᵀW_L = 0 requires),
# a class in no block ("null" singleton) has zero logits. The loss at a balanced point is
#     F = Σ_B (k_B/K)·CE_k(α_B) + (K−Σk_B)/K·log K + (λ(L+1)/2) Σ_B (k_B−1)(α_B√n)^{2/(L+1)},
#     CE_k(α) = log(1 + (k−1)e^{−α} + (K−k)e^{−α(1−1/k)}),
# since αS_k⊗1ᵀ has k−1 singular values α√n. F separates over blocks, and a balanced point with
# every block scale stationary is a critical point of the model: the gradient (P−Y)/N has the
# block's singular vectors and is constant on the classes outside the block. k = K is DNC; k = 2 is
# a pair (α = 2β in the pairing notation of MODEL.md §6). With unequal weight decay the reduced
# penalty uses the geometric mean Λ = (Π_l λ_l)^{1/(L+1)} (AM–GM on the balanced factors), so every
# formula here takes λ = Λ; :func:`effective_lambda` computes it.

def effective_lambda(spec: ModelSpec) -> float:
    """Λ = (Π_l λ_l)^{1/(L+1)}: the λ of the reduced problem F(Z) for per-factor weight decay."""
    return float(np.exp(np.mean(np.log(np.array(spec.lambdas)))))


def block_ce(alpha: float, k: int, K: int) -> float:
    """CE_k(α) = log(1 + (k−1)e^{−α} + (K−k)e^{−α(1−1/k)}): per-sample CE of a class in a simplex(k) block."""
    return float(np.logaddexp.reduce([0.0, math.log(k - 1) - alpha] +
                                     ([math.log(K - k) - alpha * (1 - 1 / k)] if K > k else [])))


def block_scale_log_residual(u: float, k: int, K: int, n: int, L: int, lam: float) -> float:
    """log of the block scale equation at α = e^u, zero exactly at a stationary block scale:

        α^{(L−1)/(L+1)} (k/K)(e^{−α} + ((K−k)/k) e^{−α(1−1/k)}) / (1 + (k−1)e^{−α} + (K−k)e^{−α(1−1/k)})
            = λ n^{1/(L+1)}
    (for k = K this is the DNC equation of MODEL.md §6)."""
    a = math.exp(u)
    num = [-a] + ([math.log((K - k) / k) - a * (1 - 1 / k)] if K > k else [])
    return ((L - 1) / (L + 1) * u + math.log(k / K) + float(np.logaddexp.reduce(num))
            - block_ce(a, k, K) - math.log(lam) - math.log(n) / (L + 1))


def block_scale_roots(k: int, K: int, n: int, L: int, lam: float, u_min: float = -700.0,
                      u_max: float = math.log(1e3), grid: int = 4000) -> list[float]:
    """All stationary scales α > 0 of a simplex(k) block, ascending: sign changes of
    :func:`block_scale_log_residual` on a grid of ``grid`` points in u = log α ∈ [u_min, u_max],
    each refined by Brent's method to full relative precision. Cached: every analysed point of a
    study asks for the same few (k, K, n, L, λ)."""
    return list(_block_scale_roots(int(k), int(K), int(n), int(L), float(lam), float(u_min), float(u_max), int(grid)))


@functools.lru_cache(maxsize=1024)
def _block_scale_roots(k: int, K: int, n: int, L: int, lam: float, u_min: float, u_max: float,
                       grid: int) -> tuple[float, ...]:
    us = np.linspace(u_min, u_max, grid)
    r = np.array([block_scale_log_residual(u, k, K, n, L, lam) for u in us])
    roots = []
    for i in np.nonzero(np.sign(r[:-1]) * np.sign(r[1:]) < 0)[0]:
        u = brentq(block_scale_log_residual, us[i], us[i + 1], args=(k, K, n, L, lam),
                   xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)
        roots.append(math.exp(u))
    return tuple(roots)


def block_structure_loss(blocks, K: int, n: int, L: int, lam: float) -> float:
    """Loss F of a balanced block structure; ``blocks`` is a sequence of (k, α), k ≥ 2, classes in
    no block being null singletons (formula in the comment above)."""
    used = sum(k for k, _ in blocks)
    if used > K:
        raise ValueError(f"blocks cover {used} classes: at most K={K}")
    ce = sum(k * block_ce(a, k, K) for k, a in blocks) + (K - used) * math.log(K)
    reg = sum((k - 1) * (a * math.sqrt(n)) ** (2.0 / (L + 1)) for k, a in blocks)
    return ce / K + 0.5 * lam * (L + 1) * reg


def block_Zbar(K: int, blocks) -> np.ndarray:
    """Class-mean logits (K, K) of a block structure; ``blocks`` is a sequence of (classes, α)."""
    Zb = np.zeros((K, K))
    for classes, a in blocks:
        idx = np.asarray(classes)
        Zb[np.ix_(idx, idx)] = a * simplex(len(idx))
    return Zb


def pattern_name(sizes, self_singletons: int = 0) -> str:
    """Canonical name of a block pattern from block sizes (1 = null singleton): sizes ≥ 3 as
    'simplex(k)', 2 as 'pair', 1 as 'null', plus 'self' singletons; multiplicities as 'm×', largest
    first, e.g. 'simplex(4)+3×pair'."""
    sizes = sorted(sizes, reverse=True)
    parts = []
    for s in sorted(set(sizes), reverse=True):
        m = sizes.count(s)
        name = f"simplex({s})" if s >= 3 else ("pair" if s == 2 else "null")
        parts.append(name if m == 1 else f"{m}×{name}")
    if self_singletons:
        parts.append("self" if self_singletons == 1 else f"{self_singletons}×self")
    return "+".join(parts)


# ----- class pairing (the paper's counter-example to DNC, MODEL.md §6) --------------------------
def pairing_Zbar(K: int, beta: float) -> np.ndarray:
    """Class-mean logits of the pairing structure: classes (2i, 2i+1) paired, a sample of class c
    gets +β on c, −β on its partner; for odd K the spare class K−1 gets β on itself."""
    Zb = np.zeros((K, K))
    for i in range(K // 2):
        a, b = 2 * i, 2 * i + 1
        Zb[a, a] = Zb[b, b] = beta
        Zb[b, a] = Zb[a, b] = -beta
    if K % 2:
        Zb[K - 1, K - 1] = beta
    return Zb


def pairing_loss(beta: float, K: int, n: int, L: int, lam: float) -> float:
    """ℓ_LR(β) at the balanced pairing point (MODEL.md §6). Even K = 2m:
    log(1 + e^{−2β} + (K−2)e^{−β}) + (λ(L+1)/2)·m·(2β√n)^{2/(L+1)}. Odd K = 2m+1 (spare class with β
    on itself, one more singular value β√n): ((K−1)·CE_pair + log(1 + (K−1)e^{−β}))/K
    + (λ(L+1)/2)(m(2β√n)^{2/(L+1)} + (β√n)^{2/(L+1)})."""
    m = K // 2
    pair = float(np.logaddexp.reduce([0.0, -2 * beta] + ([math.log(K - 2) - beta] if K > 2 else [])))
    reg = m * (2 * beta * math.sqrt(n)) ** (2.0 / (L + 1))
    if K % 2 == 0:
        return pair + 0.5 * lam * (L + 1) * reg
    spare = math.log1p((K - 1) * math.exp(-beta))
    reg += (beta * math.sqrt(n)) ** (2.0 / (L + 1))
    return ((K - 1) * pair + spare) / K + 0.5 * lam * (L + 1) * reg


def pairing_loss_dbeta(beta: float, K: int, n: int, L: int, lam: float) -> float:
    """Analytic dℓ_LR/dβ (both parities; see :func:`pairing_loss`)."""
    m, q = K // 2, 2.0 / (L + 1)
    e1, e2 = math.exp(-beta), math.exp(-2 * beta)
    dpair = -(2 * e2 + (K - 2) * e1) / (1 + e2 + (K - 2) * e1)
    dreg = 0.5 * lam * (L + 1) * q * beta ** (q - 1) * m * (2 * math.sqrt(n)) ** q
    if K % 2 == 0:
        return dpair + dreg
    dspare = -(K - 1) * e1 / (1 + (K - 1) * e1)
    dreg += 0.5 * lam * (L + 1) * q * beta ** (q - 1) * math.sqrt(n) ** q
    return ((K - 1) * dpair + dspare) / K + dreg


def pairing_scales(K: int, n: int, L: int, lam: float, u_min: float = -700.0,
                   u_max: float = math.log(1e3), grid: int = 4000) -> list[float]:
    """Stationary β of ℓ_LR, ascending: sign changes of dℓ_LR/dβ on a grid of ``grid`` points in
    log β ∈ [u_min, u_max], refined by Brent's method. Even K: these are the pair-block roots
    α/2 and critical points of the model. Odd K: stationary along the paper's one-parameter family
    only (the spare class's column does not sum to zero, so they are *not* critical points of the
    model; the family is the upper bound behind Theorem 1)."""
    f = lambda u: pairing_loss_dbeta(math.exp(u), K, n, L, lam)  # noqa: E731
    us = np.linspace(u_min, u_max, grid)
    r = np.array([f(u) for u in us])
    return [math.exp(brentq(f, us[i], us[i + 1], xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500))
            for i in np.nonzero(np.sign(r[:-1]) * np.sign(r[1:]) < 0)[0]]


def pairing_point(spec: ModelSpec, beta: float, rotations=None) -> np.ndarray:
    """Balanced point (flat θ, (P,)) with logits pairing_Zbar(K, β)⊗1ᵀ."""
    return balanced_point(spec, pairing_Zbar(spec.K, beta), rotations)


# ----- catalogue, Theorem 1 and matching -------------------------------------------------------
@dataclass
class TheoryStructure:
    """A closed-form structure: ``pattern`` (see :func:`pattern_name`), block ``sizes`` (k ≥ 2),
    ``scales`` α per block (pair blocks: α = 2β), ``root`` ('small'/'large'/'mixed' or 'min' for the
    odd-K pairing family), its ``loss``, ``rank`` (of every factor and of Z) and whether it is a
    ``critical`` point of the model."""

    name: str
    pattern: str
    sizes: tuple
    scales: tuple
    root: str
    loss: float
    rank: int
    critical: bool = True

    def to_dict(self) -> dict:
        return {"name": self.name, "pattern": self.pattern, "sizes": list(self.sizes),
                "scales": list(self.scales), "root": self.root, "loss": self.loss, "rank": self.rank,
                "critical": self.critical}


def _partitions(K: int, largest: int | None = None):
    """Integer partitions of K into parts ≥ 1, parts descending."""
    largest = K if largest is None else largest
    if K == 0:
        yield ()
        return
    for p in range(min(K, largest), 0, -1):
        for rest in _partitions(K - p, p):
            yield (p,) + rest


def structure_catalogue(K: int, n: int, L: int, lam: float) -> list[TheoryStructure]:
    """Closed-form structures of the linear CE model at (K, n, L, λ), sorted by loss: the origin;
    for every partition of K into blocks of size ≥ 2 (and null singletons) with all blocks at their
    large stationary scale, and, for DNC and the pairing, the small root too; for odd K also the
    paper's pairing family at its loss-minimising β (not critical)."""
    out = [TheoryStructure("zero", "zero", (), (), "-", math.log(K), 0)]
    roots = {k: block_scale_roots(k, K, n, L, lam) for k in range(2, K + 1)}
    for part in _partitions(K):
        sizes = tuple(p for p in part if p >= 2)
        if not sizes or any(not roots[k] for k in sizes):
            continue
        pat = pattern_name(part)
        choices = [("large", tuple(roots[k][-1] for k in sizes))]
        if len(roots[sizes[0]]) > 1 and (sizes == (K,) or set(part) == {2} or (set(part) == {1, 2} and part.count(1) == 1)):
            choices.append(("small", tuple(roots[k][0] for k in sizes)))
        for root, scales in choices:
            loss = block_structure_loss(list(zip(sizes, scales)), K, n, L, lam)
            name = "DNC" if sizes == (K,) else ("pairs" if set(sizes) == {2} and sum(sizes) >= K - 1 else pat)
            out.append(TheoryStructure(name, pat, sizes, scales, root, loss, sum(k - 1 for k in sizes)))
    if K % 2:
        betas = pairing_scales(K, n, L, lam)
        if betas:
            b = min(betas, key=lambda x: pairing_loss(x, K, n, L, lam))
            out.append(TheoryStructure("pairs (paper, spare on itself)", pattern_name([2] * (K // 2), 1),
                                       (2,) * (K // 2), (2 * b,) * (K // 2), "min",
                                       pairing_loss(b, K, n, L, lam), K // 2 + 1, critical=False))
    return sorted(out, key=lambda s: s.loss)


def theorem1_dnc_not_global(K: int, L: int) -> bool:
    """Theorem 1 of the paper: DNC is never a global minimum for K ≥ 4 and L ≥ 3, or K ≥ 6 and L = 2."""
    return (K >= 4 and L >= 3) or (K >= 6 and L == 2)


def dnc_global_minimum_candidate(K: int, n: int, L: int, lam: float) -> dict:
    """Whether DNC can be the global minimum at (K, n, L, λ): ``theorem1`` (True when Theorem 1
    excludes it), the large-root DNC loss, the best catalogued structure and whether it beats DNC,
    and ``candidate`` = DNC exists, is not excluded by Theorem 1 and no catalogued structure beats it."""
    cat = structure_catalogue(K, n, L, lam)
    dnc = [s for s in cat if s.name == "DNC" and s.root == "large"]
    best = cat[0]
    excluded = theorem1_dnc_not_global(K, L)
    beaten = bool(dnc) and best.loss < dnc[0].loss
    return {"theorem1_excludes_dnc": excluded, "dnc_exists": bool(dnc),
            "dnc_loss": dnc[0].loss if dnc else None, "best": best.name, "best_pattern": best.pattern,
            "best_loss": best.loss, "beaten_in_catalogue": beaten,
            "candidate": bool(dnc) and not excluded and not beaten}


def match_structure(blocks, loss: float, K: int, n: int, L: int, lam: float) -> dict:
    """Theoretical structure matching an observed block decomposition.

    ``blocks`` is a sequence of (classes, α_observed) for the blocks of size ≥ 2 (null singletons
    implied). Each block's scale is matched to the nearest (in log α) stationary root of its size;
    returns the theory pattern, scales, Z̄, loss, ``loss_difference`` = loss − theory loss,
    ``scale_rel_error`` (max over blocks of |α_obs/α_th − 1|) and the predicted rank."""
    sizes = [len(c) for c, _ in blocks]
    th_blocks, rel = [], 0.0
    for (classes, a) in blocks:
        roots = block_scale_roots(len(classes), K, n, L, lam)
        if not roots:
            return {"matched": False, "reason": f"a simplex({len(classes)}) block has no stationary scale"}
        r = min(roots, key=lambda x: abs(math.log(x) - math.log(a)))
        th_blocks.append((classes, r))
        rel = max(rel, abs(a / r - 1.0))
    th_loss = block_structure_loss([(len(c), a) for c, a in th_blocks], K, n, L, lam)
    return {"matched": True, "pattern": pattern_name(sizes + [1] * (K - sum(sizes))),
            "scales": [a for _, a in th_blocks], "Zbar": block_Zbar(K, th_blocks),
            "loss": th_loss, "loss_difference": loss - th_loss, "scale_rel_error": rel,
            "rank": sum(s - 1 for s in sizes)}
