"""Closed-form results for the deep UFM (``docs/MODEL.md`` §4–§6).

Everything here is float64 numpy/scipy and independent of the trajectory engines, so the tests
can hold the engines to it. Notation: K classes, n samples per class, L weight matrices, λ the
weight decay (equal on every factor unless stated), S = I_K − 11ᵀ/K.
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq, root

from ..core.spec import ModelSpec, require_regularised
from .labels import DNC, PAIRS, ZERO


# ----- DNC in the deep linear CE model (MODEL.md §6) -------------------------------------------
def dnc_scale_roots(K: int, n: int, L: int, lam: float) -> list[float]:
    """All α > 0 with Z = αS⊗1ᵀ critical, ascending (0, 1 or 2 roots; 2 for L ≥ 2 and small λ):
    the simplex(K) case of :func:`block_scale_roots` (the same equation, MODEL.md §6). A small root
    below the smallest positive double (λ ≲ 1e-100 at L = 2) is not representable and left out."""
    return block_scale_roots(K, K, n, L, lam)


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
    optionally rotated by ``rotations`` (L orthogonal d×d matrices, one per interface). At λ = 0
    (:attr:`ModelSpec.unregularised`) c_l = 1: every factor has the singular values σ_i^{1/(L+1)},
    the factorisation of Z of least ‖θ‖² (:func:`landscape.analysis.margins.code_margin`).
    """
    n, d, L = spec.n, spec.d, spec.L
    Z = np.kron(np.asarray(Zbar, dtype=float), np.ones((1, n)))
    U, s, Vt = np.linalg.svd(Z, full_matrices=False)
    r = int(np.sum(s > s[0] * 1e-12)) if s[0] > 0 else 0
    U, s, Vt = U[:, :r], s[:r], Vt[:r]
    lams = np.array(spec.lambdas)
    c = np.ones(L + 1) if spec.unregularised else np.sqrt(effective_lambda(spec) / lams)
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

# Subset blocks (ours): the classes of a block of size C(m, j) are the j-subsets S of an m-set, with
# class-mean logits α·M̂, M̂_ST = (|S∩T| − j²/m)/σ, σ the non-zero eigenvalue of the Gram matrix
# of the centred vectors v_S = Σ_{i∈S} e_i − (j/m)1 (so M̂ is the orthogonal projector onto an
# (m−1)-dimensional space and every singular value of αM̂⊗1ᵀ is α√n, as for a simplex). j = 1 is
# simplex(m); j = 2, m = 5 puts 10 classes at the centres of the edges of a 4-simplex (the rank-4
# minimum GD finds at K = 10, d = 10; its "disjoint" relation is the Petersen graph). Every class of
# such a block sees the same multiset of logit differences, so the gradient (P − Y)/N lies in the
# algebra spanned by the relations |S∩T| = i, which M̂ diagonalises: the point is critical as soon
# as its one scale is stationary (the component outside the range of Z is not constrained by the
# factorised model), and the loss and the scale equation below hold with the class's offsets.

@dataclass(frozen=True)
class BlockType:
    """A block of C(m, j) classes at the j-subsets of an m-set (comment above); j = 1: simplex(m)."""

    m: int
    j: int = 1

    @property
    def size(self) -> int:
        return math.comb(self.m, self.j)

    @property
    def rank(self) -> int:
        return self.m - 1

    @property
    def name(self) -> str:
        if self.j == 1:
            return "pair" if self.m == 2 else f"simplex({self.m})"
        return f"subsets({self.m},{self.j})"

    @functools.cached_property
    def _sigma(self) -> float:
        m, j = self.m, self.j
        return self.size * j * (m - j) / m / (m - 1)

    @property
    def self_value(self) -> float:
        """M̂_SS = j(m − j)/(mσ)."""
        return self.j * (self.m - self.j) / self.m / self._sigma

    @property
    def offsets(self) -> tuple:
        """((count, δ), …): for the other classes T of the block, grouped by |S∩T| = i < j, how many
        and the logit gap δ = M̂_SS − M̂_ST = (j − i)/σ (per unit scale α)."""
        m, j = self.m, self.j
        return tuple((math.comb(j, i) * math.comb(m - j, j - i), (j - i) / self._sigma)
                     for i in range(j) if math.comb(j, i) * math.comb(m - j, j - i) > 0)

    def matrix(self) -> np.ndarray:
        """M̂ (size × size), classes in the lexicographic order of the j-subsets."""
        subsets = list(itertools.combinations(range(self.m), self.j))
        G = np.array([[len(set(a) & set(b)) for b in subsets] for a in subsets], dtype=float) - self.j ** 2 / self.m
        return G / self._sigma


def block_types(size: int) -> list[BlockType]:
    """Every block type of ``size`` classes: simplex(size), and subsets(m, j) with C(m, j) = size,
    2 ≤ j ≤ m/2 (j and m − j give the same block, negated), leaving out those with zero entries
    (j²/m an integer: M̂ then splits into smaller blocks, e.g. subsets(4,2) is 3×pair)."""
    out = [BlockType(size, 1)] if size >= 2 else []
    for m in range(4, size + 1):
        for j in range(2, m // 2 + 1):
            if math.comb(m, j) == size and (j * j) % m:
                out.append(BlockType(m, j))
    return out


def block_type_ce(alpha: float, bt: BlockType, K: int) -> float:
    """Per-sample CE of a class in a block of type ``bt`` at scale α:
    log(1 + Σ count·e^{−αδ} + (K − size)e^{−α M̂_SS})."""
    terms = [0.0] + [math.log(c) - alpha * d for c, d in bt.offsets]
    if K > bt.size:
        terms.append(math.log(K - bt.size) - alpha * bt.self_value)
    return float(np.logaddexp.reduce(terms))


def block_type_log_residual(u: float, bt: BlockType, K: int, n: int, L: int, lam: float) -> float:
    """log of the scale equation of a block of type ``bt`` at α = e^u, zero exactly at a stationary
    scale: d/dα[(size/K)·CE(α) + (λ(L+1)/2)·rank·(α√n)^{2/(L+1)}] = 0 reads
        α^{(L−1)/(L+1)} · (size/(K·rank)) · (−dCE/dα) = λ n^{1/(L+1)}."""
    a = math.exp(u)
    num = [math.log(c * d) - a * d for c, d in bt.offsets]
    if K > bt.size:
        num.append(math.log((K - bt.size) * bt.self_value) - a * bt.self_value)
    return ((L - 1) / (L + 1) * u + math.log(bt.size / (K * bt.rank)) + float(np.logaddexp.reduce(num))
            - block_type_ce(a, bt, K) - math.log(lam) - math.log(n) / (L + 1))


def block_type_roots(bt: BlockType, K: int, n: int, L: int, lam: float) -> list[float]:
    """Stationary scales α of a block of type ``bt``, ascending (as :func:`block_scale_roots`)."""
    return list(_block_type_roots(bt, int(K), int(n), int(L), float(lam)))


@functools.lru_cache(maxsize=2048)
def _block_type_roots(bt: BlockType, K: int, n: int, L: int, lam: float) -> tuple[float, ...]:
    level = math.log(lam) + math.log(n) / (L + 1)
    logf = lambda u: block_type_log_residual(u, bt, K, n, L, lam) + level  # noqa: E731
    return tuple(unimodal_level_roots(logf, level, increasing_start=L > 1))


def effective_lambda(spec: ModelSpec) -> float:
    """Λ = (Π_l λ_l)^{1/(L+1)}: the λ of the reduced problem F(Z) for per-factor weight decay
    (refused at λ = 0: there is no reduced problem, the closed forms at λ = 0 are the normalised
    margins of :mod:`landscape.analysis.margins`)."""
    require_regularised(spec, "effective_lambda (the λ of the closed forms)", "every closed form of the "
                        "catalogue is a stationary scale of the regularised loss")
    return float(np.exp(np.mean(np.log(np.array(spec.lambdas)))))


def block_scale_log_residual(u: float, k: int, K: int, n: int, L: int, lam: float) -> float:
    """log of the block scale equation at α = e^u, zero exactly at a stationary block scale:

        α^{(L−1)/(L+1)} (k/K)(e^{−α} + ((K−k)/k) e^{−α(1−1/k)}) / (1 + (k−1)e^{−α} + (K−k)e^{−α(1−1/k)})
            = λ n^{1/(L+1)}
    (for k = K this is the DNC equation of MODEL.md §6; the simplex case of
    :func:`block_type_log_residual`)."""
    return block_type_log_residual(u, BlockType(int(k)), K, n, L, lam)


def block_scale_roots(k: int, K: int, n: int, L: int, lam: float) -> list[float]:
    """All stationary scales α > 0 of a simplex(k) block, ascending (0, 1 or 2; k = K is DNC).

    The scale equation is log f(α) = log(λ n^{1/(L+1)}) with f the left-hand side of
    :func:`block_scale_log_residual`; its roots are bracketed on either side of the maximiser of
    log f in u = log α (:func:`unimodal_level_roots`), with no fixed range of α, and refined by
    Brent's method to full relative precision, so two roots a hair apart next to a fold are both
    found and a root at α > 1000 (λ → 0) is not lost. Unimodality of log f in u: *proved* for
    k = K (d log f/du = p − αe^α/(e^α + K − 1), p = (L−1)/(L+1), and αe^α/(e^α+K−1) is strictly
    increasing: its derivative is e^α(e^α + (1+α)(K−1))/(e^α+K−1)² > 0), and for L = 1 (p = 0:
    log f decreasing, one root at most); for k < K and for subset blocks *checked* numerically
    (``tests/test_theory.py::test_scale_maps_are_unimodal``: one sign change of d log f/du on a
    fine grid of u ∈ [−40, 12] for K ≤ 12, every k, L ≤ 6). Cached: every analysed point of a
    study asks for the same few (k, K, n, L, λ)."""
    return block_type_roots(BlockType(int(k)), K, n, L, lam)


#: u = log α below which α underflows (the smallest normal double is e^{−708.4}).
_U_UNDERFLOW = math.log(np.finfo(float).tiny)


def unimodal_level_roots(logf, level: float, increasing_start: bool = True) -> list[float]:
    """Roots α = e^u, ascending, of log f(u) = ``level`` for a function log f of u = log α that
    rises to one maximum and then falls to −∞ (``increasing_start``), or falls from its limit at
    u → −∞ (otherwise: one root at most).

    The maximiser u* is bracketed by doubling steps from u = 0 and located by Brent's minimiser
    (to ~1e-9 in u; log f is flat there, so its value is exact to ~1e-17); each root is then
    bracketed by doubling steps away from u* and solved by Brent's method to full precision. A
    root whose α is below the smallest normal double is not representable and left out."""
    from scipy.optimize import minimize_scalar

    g = lambda u: logf(u) - level  # noqa: E731
    if not increasing_start:
        lo = _U_UNDERFLOW
        if g(lo) <= 0:
            return []
        hi = 1.0
        while g(hi) > 0:
            hi = 2 * hi + 1
        return [math.exp(brentq(g, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500))]
    # bracket the maximiser: a < b < c with logf(b) ≥ logf(a), logf(c)
    a, b, step = -1.0, 0.0, 1.0
    fa, fb = logf(a), logf(b)
    if fa > fb:  # the maximum lies to the left
        while fa > fb:
            b, fb = a, fa
            step *= 2
            a = b - step
            fa = logf(a)
        c = b + step / 2 if step > 1 else 0.0
    else:
        c, fc = 1.0, logf(1.0)
        while fc > fb:
            a, b, fb = b, c, fc
            step *= 2
            c = b + step
            fc = logf(c)
    res = minimize_scalar(lambda u: -logf(u), bracket=(a, b, c), method="brent", tol=1e-12)
    um = float(res.x) if -res.fun >= fb else b
    gm = g(um)
    if gm < 0:
        return []
    if gm == 0:
        return [math.exp(um)]
    roots = []
    for direction in (-1.0, 1.0):
        step, edge = 1.0, um + direction
        while g(edge) > 0:
            step *= 2
            edge = um + direction * step
        lo, hi = (edge, um) if direction < 0 else (um, edge)
        roots.append(brentq(g, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500))
    return [math.exp(u) for u in roots if u > _U_UNDERFLOW]


def block_structure_loss(blocks, K: int, n: int, L: int, lam: float) -> float:
    """Loss F of a balanced block structure; ``blocks`` is a sequence of (k or :class:`BlockType`, α)
    (k ≥ 2: simplex(k)) or (:class:`AntiprismType`, (a, b)) or (:class:`CappedAntiprismType`,
    (a, s, α, γ)), classes in no block being null
    singletons (formulas above):
    F = Σ (size/K)·CE(α) + (K − Σ size)/K·log K + (λ(L+1)/2) Σ Σ_i (s_i√n)^{2/(L+1)}, s_i the block's
    singular values (α, rank times; an antiprism's a, a, b; a capped antiprism's a, a, s)."""
    types = [(b if isinstance(b, (BlockType, AntiprismType, CappedAntiprismType)) else BlockType(int(b)), a)
             for b, a in blocks]
    used = sum(bt.size for bt, _ in types)
    if used > K:
        raise ValueError(f"blocks cover {used} classes: at most K={K}")
    ce = sum(capped_antiprism_ce(a, bt, K) if isinstance(bt, CappedAntiprismType)
             else bt.size * (antiprism_ce(a, bt, K) if isinstance(bt, AntiprismType) else block_type_ce(a, bt, K))
             for bt, a in types) + (K - used) * math.log(K)
    reg = sum(sum((s * math.sqrt(n)) ** (2.0 / (L + 1)) for s in block_singular_values(bt, a)) for bt, a in types)
    return ce / K + 0.5 * lam * (L + 1) * reg


def block_singular_values(bt, scale) -> tuple:
    """Non-zero singular values of a block: α (rank times) for a :class:`BlockType`, (a, a, b) for
    an :class:`AntiprismType` at scales (a, b), (a, a, s) for a :class:`CappedAntiprismType`."""
    if isinstance(bt, AntiprismType):
        a, b = scale
        return (float(a), float(a), float(b))
    if isinstance(bt, CappedAntiprismType):
        return (float(scale[0]), float(scale[0]), float(scale[1]))
    return (float(scale),) * bt.rank


def is_simplex_type(bt) -> bool:
    """Whether a block type is simplex(k) (pair for k = 2), named by its size in a pattern."""
    return isinstance(bt, BlockType) and bt.j == 1


def block_Zbar(K: int, blocks) -> np.ndarray:
    """Class-mean logits (K, K) of a block structure; ``blocks`` is a sequence of (classes, α) for
    simplex blocks or (classes, α, :class:`BlockType`) (classes in the type's subset order) or
    (classes, (a, b), :class:`AntiprismType`) (classes in cycle order) or (classes, (a, s, α, γ),
    :class:`CappedAntiprismType`) (the cycle's classes in order, then the caps p₊, p₋)."""
    Zb = np.zeros((K, K))
    for b in blocks:
        classes, a = b[0], b[1]
        bt = b[2] if len(b) > 2 else BlockType(len(classes))
        idx = np.asarray(classes)
        Zb[np.ix_(idx, idx)] = bt.matrix(a) if isinstance(bt, (AntiprismType, CappedAntiprismType)) else a * bt.matrix()
    return Zb


def pattern_name(sizes, self_singletons: int = 0, types=()) -> str:
    """Canonical name of a block pattern from block sizes (1 = null singleton) or, for blocks that
    are not simplices, ``types`` (:class:`BlockType` or :class:`AntiprismType`, counted besides
    ``sizes``): 'simplex(k)', 'antiprism(m)',
    'pair', 'subsets(m,j)', 'null', plus 'self' singletons; multiplicities as 'm×', largest first,
    e.g. 'simplex(4)+3×pair'."""
    items = [(s, BlockType(s).name if s >= 2 else "null") for s in sizes] + [(t.size, t.name) for t in types]
    items.sort(key=lambda x: (-x[0], x[1]))
    parts, seen = [], []
    for size, name in items:
        if name in seen:
            continue
        seen.append(name)
        m = sum(1 for _, nm in items if nm == name)
        parts.append(name if m == 1 else f"{m}×{name}")
    if self_singletons:
        parts.append("self" if self_singletons == 1 else f"{self_singletons}×self")
    return "+".join(parts)


def one_scale_closed_form(Mhat: np.ndarray, rank: int, alpha_obs: float, K: int, n: int, L: int,
                          lam: float) -> tuple[float, float] | None:
    """(α, loss) of the stationary scale nearest ``alpha_obs`` along the family Z̄ = αM̂ (M̂ (K, K)
    with ``rank`` singular values 1: a one-scale structure read off a point), or None if no
    stationary scale is found within a factor 2¹⁰ of it. Loss of a balanced point of the family:
    F(α) = mean_c [logsumexp(αM̂_{·c}) − αM̂_cc] + (λ(L+1)/2)·rank·(α√n)^{2/(L+1)};
    dF/dα = mean_c [softmax(αM̂_{·c})·M̂_{·c} − M̂_cc] + λ·rank·n^{1/(L+1)}·α^{(1−L)/(L+1)}."""
    from scipy.special import logsumexp, softmax

    M = np.asarray(Mhat, dtype=np.float64)
    q = 2.0 / (L + 1)

    def dF(a):
        P = softmax(a * M, axis=0)
        return float(np.mean((P * M).sum(axis=0) - np.diag(M))) + lam * rank * n ** (1 / (L + 1)) * a ** (q - 1)

    def F(a):
        return float(np.mean(logsumexp(a * M, axis=0) - a * np.diag(M))) + 0.5 * lam * (L + 1) * rank * (a * math.sqrt(n)) ** q

    lo = hi = float(alpha_obs)
    for _ in range(10):
        lo, hi = lo / 2, hi * 2
        if dF(lo) * dF(hi) < 0:
            break
    else:
        return None
    a = brentq(dF, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)
    return a, F(a)


# ----- antiprism blocks: two scales (the digits-linear "other" minimum) -----------------------
# m classes (m even) at the vertices of an (m/2)-gonal antiprism: on a cycle c_0 … c_{m−1}, the
# class-mean logits of the block are Z̄_{c_j c_k} = a·(2/m)cos(2π(j−k)/m) + b·(1/m)(−1)^{j−k}, i.e.
# a P₁ + b P_{m/2} with P₁ (rank 2) and P_{m/2} (rank 1) the orthogonal projectors on the Fourier
# modes 1 and m/2 of the cycle: a regular m-gon in a plane (singular value a, twice) with its
# vertices lifted alternately up and down an axis (singular value b). Rank 3, two scales (a, b).
# The softmax of every column is a function of the cyclic distance, so the CE gradient is a
# symmetric circulant (plus constant columns on the classes outside the block, orthogonal to
# the block's range): it maps each Fourier mode to itself and the point is critical as soon as
# the two scales are stationary (two equations, :func:`antiprism_scale_residual`). a = b is
# simplex(m) only for m = 4 (P₁ + P₂ = S₄); for m = 6 and a = b the block splits into 3×pair.

@dataclass(frozen=True)
class AntiprismType:
    """An antiprism block of m classes (m even ≥ 4, comment above); scales are (a, b)."""

    m: int

    def __post_init__(self):
        if self.m < 4 or self.m % 2:
            raise ValueError(f"an antiprism block has an even number m ≥ 4 of classes, not {self.m}")

    @property
    def size(self) -> int:
        return self.m

    @property
    def rank(self) -> int:
        return 3

    @property
    def name(self) -> str:
        return f"antiprism({self.m})"

    @property
    def self_value(self) -> tuple:
        """Own-class logit per unit (a, b): (2/m, 1/m)."""
        return (2.0 / self.m, 1.0 / self.m)

    @property
    def offsets(self) -> tuple:
        """((count, δ_a, δ_b), …): the other classes of the block, grouped by cyclic distance
        k = 1 … m/2, how many and the logit gap Z̄_cc − Z̄_c'c = a·δ_a + b·δ_b."""
        m = self.m
        return tuple((2 if 2 * k < m else 1, 2.0 / m * (1.0 - math.cos(2 * math.pi * k / m)),
                      (1.0 - (-1.0) ** k) / m) for k in range(1, m // 2 + 1))

    def matrix(self, scales) -> np.ndarray:
        """a P₁ + b P_{m/2} (m × m), classes in cycle order."""
        a, b = scales
        k = np.arange(self.m)
        diff = k[:, None] - k[None, :]
        return a * (2.0 / self.m) * np.cos(2 * np.pi * diff / self.m) + b * (1.0 / self.m) * (-1.0) ** diff


def antiprism_ce(scales, at: AntiprismType, K: int) -> float:
    """Per-sample CE of a class in an antiprism block at scales (a, b):
    log(1 + Σ_k count_k e^{−aδ_a − bδ_b} + (K − m)e^{−(2a + b)/m})."""
    a, b = scales
    terms = [0.0] + [math.log(c) - a * da - b * db for c, da, db in at.offsets]
    if K > at.size:
        sa, sb = at.self_value
        terms.append(math.log(K - at.size) - a * sa - b * sb)
    return float(np.logaddexp.reduce(terms))


def antiprism_scale_residual(scales, at: AntiprismType, K: int, n: int, L: int, lam: float) -> np.ndarray:
    """The two scale equations of an antiprism block, divided by the penalty's terms, zero exactly
    at stationary scales: with F = (m/K)·CE(a, b) + (λ(L+1)/2)·n^{1/(L+1)}(2a^q + b^q), q = 2/(L+1),
        ∂F/∂a = 0 ⇔ (m/K)(−∂CE/∂a)·a^{1−q}/(2λ n^{1/(L+1)}) − 1 = 0, and
        ∂F/∂b = 0 ⇔ (m/K)(−∂CE/∂b)·b^{1−q}/(λ n^{1/(L+1)}) − 1 = 0."""
    a, b = scales
    q = 2.0 / (L + 1)
    logs, da, db = [0.0], [0.0], [0.0]
    for c, xa, xb in at.offsets:
        logs.append(math.log(c) - a * xa - b * xb)
        da.append(xa)
        db.append(xb)
    if K > at.size:
        sa, sb = at.self_value
        logs.append(math.log(K - at.size) - a * sa - b * sb)
        da.append(sa)
        db.append(sb)
    w = np.exp(np.array(logs) - np.logaddexp.reduce(logs))
    mga, mgb = float(w @ np.array(da)), float(w @ np.array(db))       # −∂CE/∂a, −∂CE/∂b
    c0 = lam * n ** (1.0 / (L + 1))
    return np.array([at.size / K * mga * a ** (1 - q) / (2 * c0) - 1.0,
                     at.size / K * mgb * b ** (1 - q) / c0 - 1.0])


def antiprism_scales(at: AntiprismType, K: int, n: int, L: int, lam: float, guess) -> tuple | None:
    """Stationary scales (a, b) of an antiprism block nearest ``guess`` (a, b): the two equations
    of :func:`antiprism_scale_residual` solved in (log a, log b) (:func:`polished_root`: scipy's
    hybrid Powell method, polished by Newton steps to full precision); None when no root is found."""
    u = polished_root(lambda u: antiprism_scale_residual(np.exp(u), at, K, n, L, lam),
                      np.log(np.asarray(guess, dtype=float)))
    return None if u is None else (float(math.exp(u[0])), float(math.exp(u[1])))


def polished_root(f, x0: np.ndarray, residual: float = 1e-12) -> np.ndarray | None:
    """A root of f: Rᵏ → Rᵏ near ``x0``: scipy's hybrid Powell method, then five Newton steps with
    a central-difference Jacobian (step 1e-6) to full precision; None where the iterate leaves the
    finite numbers or max|f| stays above ``residual``."""
    x = np.asarray(root(f, np.asarray(x0, dtype=float), method="hybr", tol=1e-15).x, dtype=float)
    k = x.size
    for _ in range(5):
        if not np.all(np.isfinite(x)):
            return None
        J = np.empty((k, k))
        for i in range(k):
            h = np.zeros(k)
            h[i] = 1e-6
            J[:, i] = (f(x + h) - f(x - h)) / 2e-6
        try:
            x = x - np.linalg.solve(J, f(x))
        except np.linalg.LinAlgError:
            break
    if not np.all(np.isfinite(x)) or float(np.abs(f(x)).max()) > residual:
        return None
    return x


def antiprism_block_loss(scales, at: AntiprismType, K: int, n: int, L: int, lam: float) -> float:
    """The block's share of F: (m/K)·CE(a, b) + (λ(L+1)/2)(2(a√n)^q + (b√n)^q), q = 2/(L+1)."""
    a, b = scales
    q = 2.0 / (L + 1)
    return (at.size / K * antiprism_ce(scales, at, K)
            + 0.5 * lam * (L + 1) * (2 * (a * math.sqrt(n)) ** q + (b * math.sqrt(n)) ** q))


# ----- capped antiprism blocks: one block of m + 2 classes (the digits-standard rank-3 minimum) -----
# The m classes of an antiprism(m) block (cycle c_0 … c_{m−1}, the regular m-gon a P₁) and two
# *cap* classes p₊, p₋ on its axis. With e_p = (1_{p₊} − 1_{p₋})/√2 (the caps' pair direction) and
# e_a = Σ_j (−1)^j 1_{c_j}/√m (the alternation up and down the axis), the class-mean logits
# (rows: logits, columns: classes) are
#     Z̄ = a P₁ + s·u vᵀ,  u = cos α e_p + sin α e_a,  v = cos γ e_p + sin γ e_a,
# a rank-one coupling of the pair direction and the axis: rank 3, singular values (a, a, s), four
# parameters (a, s, α, γ). α = γ = 0 is a pair of scale s/2 beside a planar m-gon (rank 3); the
# direct sum antiprism(m)+pair is the rank-4 point M = diag(2β, b) of the 2 × 2 coupling
# M = Σ m_xy e_x e_yᵀ that this block restricts to rank one. Each cap sits on the axis above one
# of the antiprism's two (m/2)-gons. Found as a certified minimum of the digits-standard UFM
# (K = 10, n = 50, L = 3, λ_eff = 1e-3; loss 0.1011575224, below subsets(5,2)); the scale
# equations are the stationarity of F in (a, s, α, γ) (:func:`capped_antiprism_gradient`) and
# the point is critical in the full model (tests/test_capped_antiprism.py).

@dataclass(frozen=True)
class CappedAntiprismType:
    """A capped antiprism block: m antiprism classes (m even ≥ 4) and two caps (comment above);
    parameters (a, s, α, γ), classes in the order c_0 … c_{m−1}, p₊, p₋."""

    m: int

    def __post_init__(self):
        if self.m < 4 or self.m % 2:
            raise ValueError(f"a capped antiprism block has an even number m ≥ 4 of cycle classes, not {self.m}")

    @property
    def size(self) -> int:
        return self.m + 2

    @property
    def rank(self) -> int:
        return 3

    @property
    def name(self) -> str:
        return f"capped_antiprism({self.m})"

    def axes(self) -> tuple[np.ndarray, np.ndarray]:
        """(e_p, e_a), each (m + 2,): the caps' pair direction and the cycle's alternation."""
        m = self.m
        e_p = np.zeros(m + 2)
        e_p[m], e_p[m + 1] = 1 / math.sqrt(2), -1 / math.sqrt(2)
        e_a = np.zeros(m + 2)
        e_a[:m] = (-1.0) ** np.arange(m) / math.sqrt(m)
        return e_p, e_a

    def parts(self, params) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(P₁ on the cycle, u, v, ∂u/∂α, ∂v/∂γ) at ``params`` (a, s, α, γ); P₁ (m+2, m+2)."""
        _, _, al, ga = params
        m = self.m
        P1 = np.zeros((m + 2, m + 2))
        P1[:m, :m] = AntiprismType(m).matrix((1.0, 0.0))   # the m-gon's projector on the cycle
        e_p, e_a = self.axes()
        u, v = math.cos(al) * e_p + math.sin(al) * e_a, math.cos(ga) * e_p + math.sin(ga) * e_a
        du, dv = -math.sin(al) * e_p + math.cos(al) * e_a, -math.sin(ga) * e_p + math.cos(ga) * e_a
        return P1, u, v, du, dv

    def matrix(self, params) -> np.ndarray:
        """a P₁ + s·u vᵀ ((m+2) × (m+2), rows logits, columns classes)."""
        P1, u, v, _, _ = self.parts(params)
        return params[0] * P1 + params[1] * np.outer(u, v)


def _block_softmax(B: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """For a block B (k × k) of a K-class Z̄ whose other classes are null (their rows 0 in the
    block's columns): per column c, the CE term log Σ_r e^{Z̄_rc − Z̄_cc} over all K rows, and the
    softmax restricted to the block's rows (k × k)."""
    from scipy.special import logsumexp

    k = B.shape[0]
    cols = B - np.diag(B)[None, :]
    # the K − k null rows are one row of −Z̄_cc with weight K − k
    lse = logsumexp(np.vstack([cols, -np.diag(B)[None, :]]), axis=0,
                    b=np.r_[np.ones(k), float(K - k)][:, None])
    return lse, np.exp(cols - lse[None, :])


def capped_antiprism_ce(params, ct: CappedAntiprismType, K: int) -> float:
    """Σ over the block's m + 2 classes of the per-sample CE at ``params`` (the other K − m − 2
    classes null)."""
    lse, _ = _block_softmax(ct.matrix(params), K)
    return float(lse.sum())


def capped_antiprism_gradient(params, ct: CappedAntiprismType, K: int, n: int, L: int, lam: float) -> np.ndarray:
    """∂F/∂(a, s, α, γ) of the block's share of F, each divided by its penalty term's scale so that
    it is zero exactly at stationary parameters: with G = (softmax − I)/K the CE gradient in Z̄ and
    c₀ = λ n^{1/(L+1)} (so ∂R/∂a = 2c₀a^{q−1}, ∂R/∂s = c₀s^{q−1}),
        ⟨G, P₁⟩/(2c₀a^{q−1}) + 1,  ⟨G, uvᵀ⟩/(c₀s^{q−1}) + 1,  s⟨G, u'vᵀ⟩/(c₀s^q),  s⟨G, uv'ᵀ⟩/(c₀s^q)."""
    a, s = params[0], params[1]
    q = 2.0 / (L + 1)
    P1, u, v, du, dv = ct.parts(params)
    _, P = _block_softmax(ct.matrix(params), K)
    G = (P - np.eye(P.shape[0])) / K
    c0 = lam * n ** (1.0 / (L + 1))
    return np.array([float(np.sum(G * P1)) / (2 * c0 * a ** (q - 1)) + 1.0,
                     float(u @ G @ v) / (c0 * s ** (q - 1)) + 1.0,
                     s * float(du @ G @ v) / (c0 * s ** q),
                     s * float(u @ G @ dv) / (c0 * s ** q)])


def capped_antiprism_params(ct: CappedAntiprismType, K: int, n: int, L: int, lam: float, guess) -> tuple | None:
    """Stationary parameters (a, s, α, γ) of a capped antiprism block nearest ``guess``: the four
    equations of :func:`capped_antiprism_gradient` solved in (log a, log s, α, γ)
    (:func:`polished_root`); None when no root is found (residual above 1e-12)."""
    def f(x):
        return capped_antiprism_gradient((math.exp(x[0]), math.exp(x[1]), x[2], x[3]), ct, K, n, L, lam)

    g = np.asarray(guess, dtype=float)
    if g.shape != (4,) or not np.all(np.isfinite(g)) or g[0] <= 0 or g[1] <= 0:
        return None
    x = polished_root(f, np.array([math.log(g[0]), math.log(g[1]), g[2], g[3]]))
    return None if x is None else (float(math.exp(x[0])), float(math.exp(x[1])), float(x[2]), float(x[3]))


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


def pairing_scales(K: int, n: int, L: int, lam: float) -> list[float]:
    """Stationary β of ℓ_LR, ascending. dℓ_LR/dβ = 0 reads β^p·(−dCE/dβ) = λ C q, with
    p = (L−1)/(L+1), q = 2/(L+1) and C the coefficient of β^q in the penalty
    ((L+1)/2)·(m(2√n)^q [+ √n^q for odd K]); its roots are bracketed around the maximiser of the
    left-hand side in log β (:func:`unimodal_level_roots`, no fixed range; unimodality checked
    numerically in the tests). Even K: these are the pair-block roots α/2 and critical points of
    the model. Odd K: stationary along the paper's one-parameter family only (the spare class's
    column does not sum to zero, so they are *not* critical points of the model; the family is
    the upper bound behind Theorem 1)."""
    return list(_pairing_scales(int(K), int(n), int(L), float(lam)))


@functools.lru_cache(maxsize=256)
def _pairing_scales(K: int, n: int, L: int, lam: float) -> tuple[float, ...]:
    p, q = (L - 1) / (L + 1), 2.0 / (L + 1)
    C = 0.5 * (L + 1) * q * ((K // 2) * (2 * math.sqrt(n)) ** q + (math.sqrt(n) ** q if K % 2 else 0.0))

    def log_minus_dce(u: float) -> float:
        b = math.exp(u)
        # −dCE/dβ of the pair classes, (2e^{−2β} + (K−2)e^{−β})/(1 + e^{−2β} + (K−2)e^{−β}), in logs
        num = np.logaddexp(math.log(2) - 2 * b, math.log(K - 2) - b) if K > 2 else math.log(2) - 2 * b
        den = float(np.logaddexp.reduce([0.0, -2 * b] + ([math.log(K - 2) - b] if K > 2 else [])))
        val = num - den
        if K % 2:  # ((K−1)·pair + spare)/K, spare: (K−1)e^{−β}/(1 + (K−1)e^{−β})
            spare = math.log(K - 1) - b - float(np.logaddexp(0.0, math.log(K - 1) - b))
            val = float(np.logaddexp(math.log((K - 1) / K) + val, spare - math.log(K)))
        return p * u + val

    return tuple(unimodal_level_roots(log_minus_dce, math.log(lam * C), increasing_start=L > 1))


def pairing_point(spec: ModelSpec, beta: float, rotations=None) -> np.ndarray:
    """Balanced point (flat θ, (P,)) with logits pairing_Zbar(K, β)⊗1ᵀ."""
    return balanced_point(spec, pairing_Zbar(spec.K, beta), rotations)


# ----- catalogue, Theorem 1 and matching -------------------------------------------------------
@dataclass
class TheoryStructure:
    """A closed-form structure: ``pattern`` (see :func:`pattern_name`), block ``sizes`` (k ≥ 2),
    ``scales`` α per block (pair blocks: α = 2β), ``types`` (the :class:`BlockType` name of each
    block), ``root`` ('small'/'large'/'mixed' or 'min' for the
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
    types: tuple = ()

    def to_dict(self) -> dict:
        return {"name": self.name, "pattern": self.pattern, "sizes": list(self.sizes), "types": list(self.types),
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
    for every partition of K into blocks of size ≥ 2 (and null singletons) and every choice of
    block type per part (:func:`block_types`: simplices, and subset blocks where C(m, j) is the
    part's size) with all blocks at their large stationary scale, and, for DNC and the pairing,
    the small root too; for odd K also the paper's pairing family at its loss-minimising β (not
    critical)."""
    out = [TheoryStructure(ZERO.name, ZERO.name, (), (), "-", math.log(K), 0)]
    for part in _partitions(K):
        sizes = tuple(p for p in part if p >= 2)
        if not sizes:
            continue
        seen = set()
        for combo in itertools.product(*(block_types(k) for k in sizes)):
            key = tuple(sorted(t.name for t in combo))
            if key in seen:
                continue
            seen.add(key)
            roots = [block_type_roots(t, K, n, L, lam) for t in combo]
            if any(not r for r in roots):
                continue
            simplices = all(t.j == 1 for t in combo)
            extra = [t for t in combo if t.j > 1]
            pat = pattern_name([p for p in part if p < 2] + [t.size for t in combo if t.j == 1], types=extra)
            choices = [("large", tuple(r[-1] for r in roots))]
            if simplices and len(roots[0]) > 1 and (sizes == (K,) or set(part) == {2}
                                                    or (set(part) == {1, 2} and part.count(1) == 1)):
                choices.append(("small", tuple(r[0] for r in roots)))
            for root, scales in choices:
                loss = block_structure_loss(list(zip(combo, scales)), K, n, L, lam)
                name = (DNC.name if sizes == (K,) and simplices else
                        PAIRS.name if simplices and set(sizes) == {2} and sum(sizes) >= K - 1 else pat)
                out.append(TheoryStructure(name, pat, sizes, scales, root, loss, sum(t.rank for t in combo),
                                           types=tuple(t.name for t in combo)))
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
    dnc = [s for s in cat if s.name == DNC.name and s.root == "large"]
    best = cat[0]
    excluded = theorem1_dnc_not_global(K, L)
    beaten = bool(dnc) and best.loss < dnc[0].loss
    return {"theorem1_excludes_dnc": excluded, "dnc_exists": bool(dnc),
            "dnc_loss": dnc[0].loss if dnc else None, "best": best.name, "best_pattern": best.pattern,
            "best_loss": best.loss, "beaten_in_catalogue": beaten,
            "candidate": bool(dnc) and not excluded and not beaten}


#: A certified point matches a closed form when their losses agree to MATCH_LOSS_ATOL and every
#: block scale to MATCH_SCALE_RTOL (a point certified to ‖∇L‖ ≤ 1e-10 is within ~1e-17 in loss and
#: ~1e-7 relative in scale of its exact critical point).
MATCH_LOSS_ATOL = 1e-10
MATCH_SCALE_RTOL = 1e-5


def match_structure(blocks, loss: float, K: int, n: int, L: int, lam: float) -> dict:
    """Theoretical structure matching an observed block decomposition.

    ``blocks`` is a sequence of (classes, α_observed) for simplex blocks of size ≥ 2, or
    (classes, α_observed, :class:`BlockType`), or (classes, (a, b)_observed, :class:`AntiprismType`)
    or (classes, (a, s, α, γ)_observed, :class:`CappedAntiprismType`) (null singletons implied). Each block's scale is taken to the nearest (in log α) stationary
    root of its type (an antiprism's two scales: the root of its two scale equations found from the
    observed ones, :func:`antiprism_scales`); returns the theory pattern, scales,
    Z̄, loss, ``loss_difference`` = loss − theory loss, ``scale_rel_error`` (max over blocks of
    |α_obs/α_th − 1|), the predicted rank and ``matched``: True only when |loss_difference| ≤
    :data:`MATCH_LOSS_ATOL` and ``scale_rel_error`` ≤ :data:`MATCH_SCALE_RTOL` (otherwise the same
    fields describe the *nearest* structure of that pattern, with a ``reason``)."""
    types = [b[2] if len(b) > 2 else BlockType(len(b[0])) for b in blocks]
    th_blocks, rel = [], 0.0
    for b, bt in zip(blocks, types):
        classes, a = b[0], b[1]
        if isinstance(bt, AntiprismType):
            r = antiprism_scales(bt, K, n, L, lam, a)
            if r is None:
                return {"matched": False, "reason": f"no stationary scales of an {bt.name} block near {tuple(a)}"}
            th_blocks.append((classes, r, bt))
            rel = max(rel, max(abs(x / y - 1.0) for x, y in zip(a, r)))
            continue
        if isinstance(bt, CappedAntiprismType):   # scales a, s relative; the angles α, γ absolute
            r = capped_antiprism_params(bt, K, n, L, lam, a)
            if r is None:
                return {"matched": False, "reason": f"no stationary parameters of a {bt.name} block near {tuple(a)}"}
            th_blocks.append((classes, r, bt))
            rel = max(rel, abs(a[0] / r[0] - 1.0), abs(a[1] / r[1] - 1.0),
                      abs(math.remainder(a[2] - r[2], 2 * math.pi)), abs(math.remainder(a[3] - r[3], 2 * math.pi)))
            continue
        roots = block_type_roots(bt, K, n, L, lam)
        if not roots:
            return {"matched": False, "reason": f"a {bt.name} block has no stationary scale"}
        r = min(roots, key=lambda x: abs(math.log(x) - math.log(a)))
        th_blocks.append((classes, r, bt))
        rel = max(rel, abs(a / r - 1.0))
    th_loss = block_structure_loss([(bt, a) for _, a, bt in th_blocks], K, n, L, lam)
    used = sum(bt.size for bt in types)
    out = {"pattern": pattern_name([1] * (K - used) + [bt.size for bt in types if is_simplex_type(bt)],
                                   types=[bt for bt in types if not is_simplex_type(bt)]),
           "scales": [list(a) if isinstance(a, tuple) else a for _, a, _ in th_blocks],
           "Zbar": block_Zbar(K, th_blocks),
           "loss": th_loss, "loss_difference": loss - th_loss, "scale_rel_error": rel,
           "rank": sum(bt.rank for bt in types), "tolerances": {"loss_atol": MATCH_LOSS_ATOL, "scale_rtol": MATCH_SCALE_RTOL}}
    out["matched"] = bool(abs(out["loss_difference"]) <= MATCH_LOSS_ATOL and rel <= MATCH_SCALE_RTOL)
    if not out["matched"]:
        out["reason"] = (f"nearest closed form {out['pattern']} differs: loss difference {out['loss_difference']:.3e}, "
                         f"scale error {rel:.3e}")
    return out
