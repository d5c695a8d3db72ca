"""The strongly-regular-graph (SRG) low-rank structure of the deep ReLU MSE UFM (MODEL.md §9;
Súkeník, Lampert & Mondelli, NeurIPS 2024, arXiv 2405.14468), as a critical point with its loss in
closed form (up to two scalar roots).

**Classes.** K = C(r, 2) classes, class ↔ edge e = {i, j} of the complete graph K_r, r ≥ 4 (K = 6,
10, 15, 21, …). Two classes are *adjacent* when their edges share a vertex (the triangular graph
T(r), strongly regular with parameters (K, 2(r−2), r−2, 4)) and *disjoint* otherwise. B (K × r) is
the edge–vertex incidence matrix. (r = 3 gives K = 3 with rank r = K: nothing low-rank, and T(3)
is complete, not strongly regular: refused.) Depth L ≥ 3: the construction needs at least one
ReLU layer of vertex features before the last hidden layer (L = 2 has none: refused; the analogue
with H₁, W₁ a balanced pair making H_L directly was found, at K = 10 and λ = 0.004, to have its
minimum where H_L loses its P₀ component, rank r − 1, and above DNC's loss: not derived here).
Width d ≥ K (the model's own rule).

**The point** (class means; every factor's columns class-ordered, H₁ has n equal columns per class):

* H₁, W₁: the balanced factorisation of Bᵀ = U S Vᵀ (r × K): H̄₁ = S^{1/2}Vᵀ, W₁ = U S^{1/2} on the
  first r coordinates, so H₂ = Bᵀ: **vertex units**, class e has 1 on the two vertices of its edge
  and exactly 0 (on the ReLU kink) on the other r − 2;
* W_l = I_r (2 ≤ l ≤ L − 2): H_{l+1} = Bᵀ again (vertex layers, rank r, entries 0 or positive);
* W_{L−1} (K × r, **edge units**) = B + β(J − B), β ∈ (−1, 0): row e has 1 on the vertices of e and
  β elsewhere, so the last hidden layer's pre-activation is H_L = (1−β)BBᵀ + 2βJ: 2 on the
  diagonal, 1 + β > 0 on adjacent pairs, 2β < 0 on disjoint pairs; **rank r** (BBᵀ = 2I + A₁ has
  rank r). After ReLU F = 2I + (1+β)A₁ (A₁ the adjacency of T(r)): **rank K**;
* W_L = Ω = Σ_i ω_i P_i (K × K on the first K coordinates), so Z̄ = ΩF = Σ_i z_i P_i.

P₀ = J/K, P₁, P₂ are the eigenprojectors of the Johnson scheme J(r, 2) (dimensions m = 1, r − 1,
r(r−3)/2), on which BBᵀ has eigenvalues 2(r−1), r − 2, 0 and A₁ has 2(r−2), r − 4, −2; so F has
f₀ = 2 + 2(r−2)(1+β), f₁ = 2 + (r−4)(1+β), f₂ = −2β, and ω_i = z_i/f_i.

**Norms** of these frames: N₀ = n·‖B‖_* (H₁, n copies), N₁ = ‖B‖_*, with ‖B‖_* = (r−1)√(r−2) +
√(2(r−1)) (BᵀB = (r−2)I + J); N_l = r (2 ≤ l ≤ L−2); N_{L−1} = A(β) = K(2 + (r−2)β²); N_L =
Q = Σ_i m_i z_i²/f_i². Each factor scaled by s_l with Π s_l = 1 leaves the product unchanged
(ReLU is positively homogeneous), and Σ λ_l s_l² N_l/2 is smallest when every λ_l s_l² N_l is the
same (AM–GM), which leaves

    ℓ(β, z) = Σ_i m_i (z_i − 1)²/(2K) + ((L+1)/2)·(c(β)·Q)^{1/(L+1)},
    c(β) = λ₀nN₁ · λ₁N₁ · Π_{l=2}^{L−2} λ_l r · λ_{L−1}A(β) · λ_L.

**Stationarity.** ∂ℓ/∂z_i = 0 gives z_i = f_i²/(f_i² + K·T) with one scalar T > 0, the root of the
**scale equation**

    (L+1)·log T + L·log Q(T) = log c(β),   Q(T) = Σ_i m_i f_i²/(f_i² + KT)²,

which, like DNC's, has 0 or 2 roots (T^{L+1}Q^L rises from 0 and falls back as T^{1−L}); the
smaller T (z near 1) is the minimum along the scale. At a root the penalty is ((L+1)/2)·T·Q, so

    ℓ = Σ_i m_i (z_i − 1)²/(2K) + ((L+1)/2)·T·Q(T).

∂ℓ/∂β = 0 at that z (envelope theorem) is the **shape equation**

    E(β) = A'(β)/A(β) − 2 Σ_i m_i f_i f_i' /(f_i² + KT)² / Q(T) = 0,   A'/A = 2(r−2)β/(2 + (r−2)β²),

f' = (2(r−2), r−4, −2). E < 0 at β → −1 (there F = 2I, the orthogonal frame of DNC's hidden
layer: with adjacent entries on the kink and no signal to hold them, that OF point is *not*
critical) and the first sign change above −1 is the minimum of ℓ along β. Both roots by brentq
(as :mod:`landscape.analysis.family`).

**Criticality in the full parameter space** (not only along the family; ``tests/test_srg.py``).
H_L and the logits are smooth (no live entry of H_L is at 0: adjacent 1 + β > 0, disjoint 2β < 0);
the kinks are the zeros of the vertex layers H₂ … H_{L−1} (r − 2 per class and layer, exactly 0 up
to round-off ~1e-16, since H₂ = W₁H₁ is a product of SVD factors) and the dead units (d > r or K).

* L = 3: one layer of live kinks; the gradients with slopes s ∈ [0, 1] at them are exactly the
  Clarke subdifferential, and min_s ‖∇L(θ; s)‖ (a bounded least squares) is ≤ 1e-15: Clarke-
  stationary, the library's :func:`landscape.analysis.kinks.clarke_multipliers` agreeing.
* L ≥ 4: W_l = I_r carries each kink of a vertex layer into the kink at the same place of the next,
  so the slopes enter as products c_k = s_k ⋯ s_{L−2}; over the box these fill the simplex
  0 ≤ c₁ ≤ … ≤ c_{L−2} ≤ 1, on which the gradient is affine, and its minimum norm there is ≤ 1e-15.
  That set contains the Clarke subdifferential (Clarke's chain rule), so this is a necessary
  condition; one-sided finite differences in random directions are ≥ 0 as well, and L-BFGS
  restarted from 1e-4 … 1e-3 perturbations ends above the point's loss. (The library's
  clarke_multipliers linearises each kink with the later ones off, which misses the products:
  it reports a residual ~4e-3 here; not a sign of non-stationarity.)

**Not critical: the orthogonal-frame variant.** With β = −1 (adjacent entries of H_L on the kink,
F = 2I, an OF like DNC's, W_L ∝ I and Z = γY: a one-scale family with the same rank r → K) the
adjacent kinks receive no signal (Z − Y is diagonal), so nothing holds W_{L−1}'s rows against the
weight decay: E(−1) < 0 and the loss falls as β rises. Example (K = 10, n = 1, d = 30, L = 4,
λ = 0.004): that point has loss 0.0894709 (best scale), this one 0.0875723, DNC 0.0991799.

**CE.** The same frames make sense for cross-entropy (Z̄ = Σ z_i P_i has three distinct logits:
diagonal, adjacent, disjoint), but there ∂ℓ/∂z has no one-scalar solution (softmax couples the
three eigenvalues): not derived here; a CE spec is refused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy.optimize import brentq, minimize_scalar

from ..core.spec import ModelSpec, require_regularised
from ..core.validate import SpecError
from .family import member_dnc

#: Smallest number of vertices r (K = r(r−1)/2 = 6): T(4), the octahedron, is strongly regular.
MIN_R = 4
#: Shallowest depth: one vertex layer before the last hidden layer.
MIN_L = 3
#: Grid on which the shape equation's first sign change above β = −1 is bracketed.
BETA_GRID = 400


def triangular_r(K: int) -> int | None:
    """r with K = r(r−1)/2, or None when K is not triangular."""
    K = int(K)
    if K < 1:
        return None
    r = (1 + math.isqrt(1 + 8 * K)) // 2
    return r if r * (r - 1) // 2 == K else None


def is_srg_K(K: int) -> bool:
    """K = C(r, 2) with r ≥ :data:`MIN_R` (K = 6, 10, 15, 21, …): the SRG structure exists."""
    r = triangular_r(K)
    return r is not None and r >= MIN_R


def srg_refusal(spec: ModelSpec) -> str | None:
    """Why ``spec`` has no SRG structure here (a message naming the field and its allowed range),
    or None."""
    r = triangular_r(spec.K)
    if r is None or r < MIN_R:
        return (f"K={spec.K} is invalid for the SRG structure: must be a triangular number r(r−1)/2 with r ≥ "
                f"{MIN_R} (K = 6, 10, 15, 21, 28, …): classes are the edges of the complete graph K_r")
    if spec.activation != "relu":
        return (f"activation={spec.activation!r} is invalid for the SRG structure: must be 'relu' (the rank-r "
                "pre-activations become rank K only through the ReLU)")
    if spec.loss != "mse":
        return (f"loss={spec.loss!r} is invalid for the SRG structure: must be 'mse' (the CE version has no "
                "one-scalar stationarity; not derived)")
    if spec.L < MIN_L:
        return (f"L={spec.L} is invalid for the SRG structure: must be >= {MIN_L} (one ReLU layer of vertex "
                "features before the last hidden layer)")
    return None


@dataclass(frozen=True)
class SRGType:
    """The SRG block type of K = C(r, 2) classes (classes ↔ edges of K_r, r ≥ :data:`MIN_R`), read off
    a point's class-mean logits by :func:`landscape.analysis.structure.match_srg_block`: Z̄ = Σ_i z_i P_i
    on the Johnson scheme J(r, 2) (three scales z₀, z₁, z₂; three values: diagonal, adjacent,
    disjoint). ``rank`` is K: the logits have full rank (the pre-activations of the last hidden
    layer have rank r; the ReLU lifts them to K). ``name``: ``srg(r)``, r the number of vertices
    (as ``subsets(m,j)`` names the ground set; srg(4) has 6 classes, srg(5) 10)."""

    r: int

    def __post_init__(self):
        if self.r < MIN_R:
            raise ValueError(f"an SRG block has r ≥ {MIN_R} vertices (K = C(r, 2) ≥ 6 classes), not r = {self.r}")

    @property
    def size(self) -> int:
        return self.r * (self.r - 1) // 2

    @property
    def rank(self) -> int:
        return self.size

    @property
    def name(self) -> str:
        return f"srg({self.r})"

    def matrix(self, z) -> np.ndarray:
        """Σ_i z_i P_i (size × size), classes in the lexicographic order of the edges of K_r."""
        return sum(zi * Pi for zi, Pi in zip(z, johnson_projectors(self.r)))


def srg_rank_pattern(spec: ModelSpec) -> dict:
    """{rank name (as :attr:`landscape.analysis.structure.StructureReport.rank_names`): rank} of the
    SRG point (module docstring): r for H₁, the weights W₁ … W_{L−1} and the pre-/post-activations
    of the vertex layers and H_L; K for σH_L, W_L and Z."""
    r, K, L = triangular_r(spec.K), spec.K, spec.L
    out = {"H1": r}
    for l in range(1, L):
        out[f"W{l}"] = r
        out[f"H{l + 1}"] = r
        if l + 1 < L:
            out[f"σH{l + 1}"] = r
    out.update({f"σH{L}": K, f"W{L}": K, "Z": K})
    return out


def check_srg_spec(spec: ModelSpec) -> int:
    """r of ``spec`` (K = r(r−1)/2), or a SpecError naming the field and its allowed range."""
    why = srg_refusal(spec)
    if why is not None:
        raise SpecError(why)
    require_regularised(spec, "the SRG structure", "its scales solve equations in λ")
    return triangular_r(spec.K)


def incidence(r: int) -> np.ndarray:
    """B (K, r): row e = {i, j} (edges in lexicographic order) has 1 at columns i and j."""
    edges = list(combinations(range(r), 2))
    B = np.zeros((len(edges), r))
    for e, (i, j) in enumerate(edges):
        B[e, i] = B[e, j] = 1.0
    return B


def johnson_projectors(r: int) -> list[np.ndarray]:
    """[P₀, P₁, P₂] (K, K): the eigenprojectors of J(r, 2) (ranks 1, r−1, r(r−3)/2)."""
    B = incidence(r)
    K = B.shape[0]
    Pcol = B @ np.linalg.solve(B.T @ B, B.T)
    P0 = np.full((K, K), 1.0 / K)
    return [P0, Pcol - P0, np.eye(K) - Pcol]


def multiplicities(r: int) -> np.ndarray:
    return np.array([1.0, r - 1.0, r * (r - 3) / 2.0])


def post_eigenvalues(r: int, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """(f, df/dβ): eigenvalues of F = 2I + (1+β)A₁ on P₀, P₁, P₂ and their β-derivatives."""
    f = np.array([2 + 2 * (r - 2) * (1 + beta), 2 + (r - 4) * (1 + beta), -2.0 * beta])
    return f, np.array([2.0 * (r - 2), r - 4.0, -2.0])


def nuclear_B(r: int) -> float:
    """‖B‖_* = (r−1)√(r−2) + √(2(r−1))."""
    return (r - 1) * math.sqrt(r - 2) + math.sqrt(2 * (r - 1))


def log_c(spec: ModelSpec, beta: float) -> float:
    """log c(β) = Σ_{l<L} log(λ_l N_l) + log λ_L (module docstring; W_L's norm is Q, apart)."""
    r, L, n = triangular_r(spec.K), spec.L, spec.n
    lam = spec.lambdas
    nb = nuclear_B(r)
    out = math.log(lam[0] * n * nb) + math.log(lam[1] * nb)
    out += sum(math.log(lam[l] * r) for l in range(2, L - 1))
    out += math.log(lam[L - 1] * spec.K * (2 + (r - 2) * beta * beta)) + math.log(lam[L])
    return out


def _Q(r: int, K: int, f: np.ndarray, T: float) -> float:
    return float((multiplicities(r) * f ** 2 / (f ** 2 + K * T) ** 2).sum())


def _log_Q(r: int, K: int, f: np.ndarray, u: float) -> float:
    """log Q(e^u), without forming e^u (T leaves floating-point range at extreme λ)."""
    m = multiplicities(r)
    keep = m > 0
    f2 = f[keep] ** 2
    # log(f² + K e^u), stable on both sides
    lden = np.where(u > 0, u + np.log(K + f2 * math.exp(-u) if u > 0 else K + f2),
                    np.log(f2 + K * math.exp(u) if u <= 0 else f2))
    terms = np.log(m[keep]) + np.log(f2) - 2 * lden
    top = float(terms.max())
    return top + math.log(float(np.exp(terms - top).sum()))


def srg_scale_roots(spec: ModelSpec, beta: float) -> list[float]:
    """Roots T of the scale equation (L+1)log T + L log Q(T) = log c(β), ascending (the first is
    the minimum along the scale; the second is inf where it exceeds the float range, λ → 0);
    [] when λ is too large for any."""
    r = check_srg_spec(spec)
    K, L = spec.K, spec.L
    f, _ = post_eigenvalues(r, beta)
    lc = log_c(spec, beta)
    phi = lambda u: (L + 1) * u + L * _log_Q(r, K, f, u) - lc  # noqa: E731
    top = minimize_scalar(lambda u: -phi(u), bounds=(-300.0, 300.0), method="bounded",
                          options={"xatol": 1e-12, "maxiter": 2000})
    u_max = float(top.x)
    if phi(u_max) <= 0:
        return []
    lo, hi = u_max - 1.0, u_max + 1.0
    while phi(lo) > 0:
        lo -= 2 * (u_max - lo)
    while phi(hi) > 0:
        hi += 2 * (hi - u_max)
    kw = dict(xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
    big = math.log(np.finfo(float).max)
    return [math.exp(u) if u < big else math.inf for u in (brentq(phi, lo, u_max, **kw), brentq(phi, u_max, hi, **kw))]


def shape_residual(spec: ModelSpec, beta: float) -> float:
    """E(β) of the shape equation at the minimising scale root T(β) (module docstring); nan when
    there is no root."""
    r = triangular_r(spec.K)
    roots = srg_scale_roots(spec, beta)
    if not roots:
        return float("nan")
    T, K = roots[0], spec.K
    f, fp = post_eigenvalues(r, beta)
    m = multiplicities(r)
    den = (f ** 2 + K * T) ** 2
    Q = float((m * f ** 2 / den).sum())
    return 2 * (r - 2) * beta / (2 + (r - 2) * beta * beta) - 2 * float((m * f * fp / den).sum()) / Q


@dataclass(frozen=True)
class SRGPoint:
    """The SRG critical point of a spec: shape ``beta`` (W_{L−1} = B + β(J − B)), scale root ``T``,
    logit eigenvalues ``z`` (on P₀, P₁, P₂), its ``loss`` (closed form), ``r``, the data and
    penalty terms, and (on demand) the logit class means ``Zbar`` (K, K)."""

    r: int
    beta: float
    T: float
    z: np.ndarray
    loss: float
    data: float
    penalty: float

    @property
    def Zbar(self) -> np.ndarray:
        """Σ_i z_i P_i (K, K), built on demand (K² floats)."""
        return sum(zi * Pi for zi, Pi in zip(self.z, johnson_projectors(self.r)))

    def to_dict(self) -> dict:
        return {"r": self.r, "beta": self.beta, "T": self.T, "z": [float(x) for x in self.z], "loss": self.loss,
                "data": self.data, "penalty": self.penalty, "rank_pre": self.r, "rank_post": self.r * (self.r - 1) // 2}


def srg_loss_at(spec: ModelSpec, beta: float, T: float) -> tuple[float, float, float, np.ndarray]:
    """(loss, data, penalty, z) of the family at shape β and a scale root T:
    Σ m_i(z_i − 1)²/(2K) + ((L+1)/2)·T·Q(T), z_i = f_i²/(f_i² + KT)."""
    r = triangular_r(spec.K)
    K, L = spec.K, spec.L
    f, _ = post_eigenvalues(r, beta)
    m = multiplicities(r)
    z = f ** 2 / (f ** 2 + K * T)
    data = float((m * (z - 1) ** 2).sum()) / (2 * K)
    pen = 0.5 * (L + 1) * T * _Q(r, K, f, T)
    return data + pen, data, pen, z


def srg_solution(spec: ModelSpec) -> SRGPoint | None:
    """The SRG critical point (module docstring): β the first root of E above −1, T the smaller
    scale root there; None when there is none (λ too large)."""
    r = check_srg_spec(spec)
    grid = np.linspace(-1.0, 0.0, BETA_GRID + 1)[1:-1]
    prev = None
    beta = None
    for b in grid:
        e = shape_residual(spec, float(b))
        if not math.isfinite(e):
            prev = None
            continue
        if prev is not None and prev[1] < 0 <= e:
            beta = brentq(lambda x: shape_residual(spec, x), prev[0], float(b), xtol=1e-15,
                          rtol=4 * np.finfo(float).eps, maxiter=500)
            break
        prev = (float(b), e)
    if beta is None:
        return None
    T = srg_scale_roots(spec, beta)[0]
    loss, data, pen, z = srg_loss_at(spec, beta, T)
    return SRGPoint(r, float(beta), float(T), z, loss, data, pen)


def srg_frames(spec: ModelSpec, beta: float, z) -> list[np.ndarray]:
    """The unscaled factors [H₁ (d, N), W₁, …, W_{L−1} (d, d), W_L (K, d)] (module docstring), whose
    product has logit class means Σ z_i P_i."""
    r = check_srg_spec(spec)
    K, n, d, L = spec.K, spec.n, spec.d, spec.L
    B = incidence(r)
    U, S, Vt = np.linalg.svd(B.T, full_matrices=False)
    H1 = np.zeros((d, K))
    H1[:r] = np.sqrt(S)[:, None] * Vt
    W1 = np.zeros((d, d))
    W1[:r, :r] = U * np.sqrt(S)[None, :]
    mids = []
    for _ in range(2, L - 1):
        W = np.zeros((d, d))
        W[:r, :r] = np.eye(r)
        mids.append(W)
    Wv = np.zeros((d, d))
    Wv[:K, :r] = B + beta * (1.0 - B)
    f, _ = post_eigenvalues(r, beta)
    Omega = sum((zi / fi) * Pi for zi, fi, Pi in zip(z, f, johnson_projectors(r)))
    WL = np.zeros((K, d))
    WL[:, :K] = Omega
    return [np.kron(H1, np.ones((1, n))), W1, *mids, Wv, WL]


def srg_point(spec: ModelSpec, sol: SRGPoint | None = None) -> np.ndarray:
    """Flat θ (P,) of the SRG point (``sol``: :func:`srg_solution`), every λ_l‖F_l‖² equal (AM–GM).
    Layout as :func:`landscape.analysis.family.frame_dnc_point`."""
    sol = sol if sol is not None else srg_solution(spec)
    if sol is None:
        raise SpecError(f"lambda={spec.lambdas[0]:g}: the SRG structure has no stationary scale at this λ (too "
                        "large); choose a smaller λ")
    F = srg_frames(spec, sol.beta, sol.z)
    N = [float((f * f).sum()) for f in F]
    lams = spec.lambdas
    log_t = sum(math.log(lam * Nl) for lam, Nl in zip(lams, N)) / (spec.L + 1)   # Π s_l = 1
    s = [math.exp(0.5 * (log_t - math.log(lam * Nl))) for lam, Nl in zip(lams, N)]
    return np.concatenate([(sl * f).reshape(-1) for sl, f in zip(s, F)])


def compare_with_dnc(spec: ModelSpec) -> dict:
    """{"srg": SRGPoint.to_dict() or None, "dnc_loss": the member's DNC minimum along its scale
    (:func:`landscape.analysis.family.member_dnc`) or None, "difference": srg − dnc, "srg_lower"}."""
    sol = srg_solution(spec)
    dnc = member_dnc(spec)
    dl = dnc[-1].loss if dnc else None
    out = {"srg": None if sol is None else sol.to_dict(), "dnc_loss": dl, "difference": None, "srg_lower": None}
    if sol is not None and dl is not None:
        out["difference"] = sol.loss - dl
        out["srg_lower"] = bool(sol.loss < dl)
    return out
