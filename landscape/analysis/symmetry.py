"""The symmetries of MODEL.md §5: gauge tangents, the symmetry space, and the group actions.

Gauge. For each interface i between factor F_i (rows of size d) and F_{i+1} (columns of size d)
and each antisymmetric A ∈ so(d), the gauge tangent is δF_i = A F_i, δF_{i+1} = −F_{i+1} A (the
derivative of F_i → O F_i, F_{i+1} → F_{i+1} Oᵀ at O = I). The linear model has L interfaces
(H₁|W₁, W₁|W₂, …, W_{L−1}|W_L); with ReLU only H₁|W₁ is a continuous symmetry (hidden-unit
permutations remain at every ReLU layer). The span of the tangents is computed by SVD (its
numerical rank under ``symmetry_rtol``) rather than assumed; at a linear critical point of rank
r it equals L·(r·d − r(r+1)/2). At a critical point these vectors are in the Hessian's null
space (:func:`null_part` keeps only the part that verifiably is).

Discrete symmetries: hidden-unit permutations (a special gauge rotation, :func:`apply_gauge`
with a permutation matrix) and class relabelling (:func:`relabel_classes`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from ..core.gauge import class_rotation_tangents
from ..core.gauge import gauge_interfaces, has_class_rotations  # noqa: F401  (re-exported: the interfaces with a gauge, the class rotations)
from ..core.model import DeepUFM, ModelSpec
from ..core.validate import check_memory
from .settings import DEFAULT_SYMMETRY_RTOL, symmetry_matrix_bytes  # noqa: F401  (declared with every analysis default)


def _interface_bases(spec: ModelSpec, F, rtol: float) -> list[tuple[int, np.ndarray, int]]:
    """(i, U_i, r_i) per gauge interface: the left singular vectors of [F_i, F_{i+1}ᵀ] and their
    numerical rank (d × d work per interface)."""
    out = []
    for i in gauge_interfaces(spec):
        U, sv, _ = np.linalg.svd(np.hstack([F[i], F[i + 1].T]), full_matrices=True)
        r = int(np.sum(sv > rtol * sv[0])) if sv.size and sv[0] > 0 else 0
        out.append((i, U, r))
    return out


def _check_rows(spec: ModelSpec, n_rows: int) -> None:
    check_memory(f"the symmetry space of this point (K={spec.K}, n={spec.n}, d={spec.d}, L={spec.L}: P={spec.P:,})",
                 symmetry_matrix_bytes(n_rows, spec.P),
                 f"its dense {n_rows:,} × {spec.P:,} gauge-tangent matrix and SVD")


def symmetry_rows(spec: ModelSpec, theta, rtol: float = DEFAULT_SYMMETRY_RTOL) -> int:
    """Rows of :func:`symmetry_tangents` at θ, from the interfaces' ranks alone (nothing of the
    matrix is built)."""
    d = spec.d
    return sum(r * d - r * (r + 1) // 2 for _, _, r in _interface_bases(spec, spec.split(theta), rtol))


def check_symmetry_memory(spec: ModelSpec, theta, rtol: float = DEFAULT_SYMMETRY_RTOL) -> None:
    """The refusal of :func:`symmetry_tangents` (a ResourceError with the estimate) ahead of it:
    for a command that checks every point before it writes anything."""
    _check_rows(spec, symmetry_rows(spec, theta, rtol))


def symmetry_tangents(spec: ModelSpec, theta, rtol: float = DEFAULT_SYMMETRY_RTOL) -> np.ndarray:
    """Gauge tangent vectors at θ that can be non-zero, stacked as rows: (T, P).

    For interface i let u_1..u_d be the left singular vectors of [F_i, F_{i+1}ᵀ] (d × ·), the
    first r_i of them spanning its numerical range (singular values > rtol·largest). A generator
    A = u_a u_bᵀ − u_b u_aᵀ with both a, b ≥ r_i annihilates F_i and F_{i+1} (tangent exactly 0), so
    only pairs a < r_i, a < b are built: δF_i = A F_i, δF_{i+1} = −F_{i+1} A, every other factor 0
    (r_i·d − r_i(r_i+1)/2 rows per interface, out of d(d−1)/2). The span's dimension is then found
    numerically by :func:`symmetry_space`.

    The matrix is dense (rows × P float64, and its SVD takes about
    :data:`~landscape.analysis.settings.SYMMETRY_COPIES` such copies): its size is known from the
    ranks r_i before anything of it is allocated, and a point whose symmetry space would exceed
    the memory budget is refused then (:class:`landscape.core.validate.ResourceError`, with the
    estimate), not after the allocation fails.
    """
    F = spec.split(theta)
    offs = spec.offsets
    d = spec.d
    rows = []
    bases = _interface_bases(spec, F, rtol)
    _check_rows(spec, sum(r * d - r * (r + 1) // 2 for _, _, r in bases)
                + (spec.K * (spec.K - 1) // 2 if has_class_rotations(spec) else 0))
    for i, U, r in bases:
        Fi, Fn = F[i], F[i + 1]
        UF = U.T @ Fi          # (d, cols_i): row a is u_aᵀ F_i
        FU = Fn @ U            # (rows_{i+1}, d): column a is F_{i+1} u_a
        for a in range(r):
            b = np.arange(a + 1, d)
            if b.size == 0:
                continue
            dFi = U[:, a][None, :, None] * UF[b][:, None, :] - U[:, b].T[:, :, None] * UF[a][None, None, :]
            dFn = -FU[:, a][None, :, None] * U[:, b].T[:, None, :] + FU[:, b].T[:, :, None] * U[:, a][None, None, :]
            block = np.zeros((b.size, spec.P))
            block[:, offs[i]:offs[i + 1]] = dFi.reshape(b.size, -1)
            block[:, offs[i + 1]:offs[i + 2]] = dFn.reshape(b.size, -1)
            rows.append(block)
    if has_class_rotations(spec):
        rows.append(class_rotation_tangents(spec, [torch.from_numpy(f)[None] for f in F])[0].numpy())
    return np.vstack(rows) if rows else np.zeros((0, spec.P))


@dataclass
class SymmetrySpace:
    """Span of the gauge tangents at a point.

    ``basis`` (P, s) orthonormal; ``singular_values`` of the stacked tangents (descending);
    ``dimension`` s = #{σ > rtol·σ_max} (0 at the origin); ``gap`` = σ_s/σ_{s+1} (inf when
    σ_{s+1} = 0 or s is full)."""

    basis: np.ndarray
    singular_values: np.ndarray
    dimension: int
    rtol: float
    gap: float


def symmetry_space(spec: ModelSpec, theta, rtol: float = DEFAULT_SYMMETRY_RTOL) -> SymmetrySpace:
    """Orthonormal basis and dimension of the gauge-orbit tangent space at θ (SVD of the tangents)."""
    T = symmetry_tangents(spec, theta, rtol)
    if T.shape[0] == 0:
        return SymmetrySpace(np.zeros((spec.P, 0)), np.zeros(0), 0, rtol, float("inf"))
    _, s, Vt = np.linalg.svd(T, full_matrices=False)
    dim = int(np.sum(s > rtol * s[0])) if s[0] > 0 else 0
    gap = float(s[dim - 1] / s[dim]) if 0 < dim < len(s) and s[dim] > 0 else float("inf")
    return SymmetrySpace(Vt[:dim].T.copy(), s, dim, rtol, gap)


def null_part(Q: np.ndarray, HQ: np.ndarray, tau: float) -> tuple[np.ndarray, int]:
    """The part of the symmetry tangent space span(Q) (Q: (P, s) orthonormal, HQ = H·Q) on which
    the Hessian vanishes: eigen-directions of QᵀHQ with |μ| ≤ τ. Returns (basis (P, s'), s − s').

    At a critical point every orbit tangent is a null vector of H, so s' = s. Near a point whose
    orbit collapses (θ within certification noise of the origin, where H ≈ λI) the tangents are
    numerically resolvable but not zero modes; they are dropped instead of counted.
    """
    if Q.shape[1] == 0:
        return Q, 0
    M = Q.T @ HQ
    mu, U = np.linalg.eigh(0.5 * (M + M.T))
    keep = np.abs(mu) <= tau
    if keep.all():
        return Q, 0
    return Q @ U[:, keep], int((~keep).sum())


# ----- group actions -------------------------------------------------------------------------
def apply_gauge(spec: ModelSpec, theta, transforms: dict) -> np.ndarray:
    """θ with F_i → O F_i, F_{i+1} → F_{i+1} Oᵀ for each interface i → O (d×d orthogonal) in
    ``transforms``. Any O ∈ O(d) is a symmetry at the interfaces of :func:`gauge_interfaces`;
    a permutation matrix (hidden-unit permutation) is one at every interface, also with ReLU."""
    F = spec.split(theta)
    for i, O in transforms.items():
        F[i] = O @ F[i]
        F[i + 1] = F[i + 1] @ O.T
    return spec.join(F)


def relabel_classes(spec: ModelSpec, theta, perm) -> np.ndarray:
    """θ with class c renamed perm[c]: H₁'s column block c moves to block perm[c] and W_L's row c to
    row perm[c], so Z̄ → ΠZ̄Πᵀ and the loss is unchanged."""
    perm = np.asarray(perm)
    F = spec.split(theta)
    n = spec.n
    H = F[0].reshape(spec.d, spec.K, n)
    Hn, Wn = np.empty_like(H), np.empty_like(F[-1])
    Hn[:, perm] = H
    Wn[perm] = F[-1]
    F[0], F[-1] = Hn.reshape(spec.d, spec.N), Wn
    return spec.join(F)


# ----- alignment modulo symmetry --------------------------------------------------------------
def _procrustes(M: np.ndarray) -> np.ndarray:
    """argmax_{R ∈ O(d)} tr(Rᵀ M) = U Vᵀ for M = U Σ Vᵀ."""
    U, _, Vt = np.linalg.svd(M)
    return U @ Vt


def _best_permutation_matrix(M: np.ndarray) -> np.ndarray:
    """argmax over permutation matrices Π of tr(Πᵀ M) (Hungarian algorithm)."""
    rows, cols = linear_sum_assignment(-M)
    Pm = np.zeros_like(M)
    Pm[rows, cols] = 1.0
    return Pm


def class_permutation(spec: ModelSpec, ref, theta) -> np.ndarray:
    """A class relabelling π making θ's class-mean logits Z̄ close to ref's: a linear assignment on
    the sorted columns and diagonals of Z̄, refined by pairwise swaps that lower
    ‖Z̄_ref − Π Z̄ Πᵀ‖_F (a local search for the quadratic assignment). Returns perm for
    :func:`relabel_classes`."""
    model = DeepUFM(spec.as_float64())
    K, n = spec.K, spec.n
    Z = model.logits(torch.from_numpy(np.stack([np.asarray(ref, float), np.asarray(theta, float)])))
    zb = Z.numpy().reshape(2, K, K, n).mean(axis=3)
    A, B = zb[0], zb[1]
    cost = (np.abs(np.sort(A, axis=0)[:, :, None] - np.sort(B, axis=0)[:, None, :]).sum(axis=0)
            + np.abs(np.diag(A)[:, None] - np.diag(B)[None, :]))
    r, c = linear_sum_assignment(cost)
    perm = np.empty(K, dtype=int)
    perm[c] = r  # class c of θ becomes class perm[c]

    def mismatch(p):
        Bp = np.empty_like(B)
        Bp[np.ix_(p, p)] = B
        return float(np.linalg.norm(A - Bp))

    best = mismatch(perm)
    improved = True
    while improved:
        improved = False
        for i in range(K):
            for j in range(i + 1, K):
                q = perm.copy()
                q[i], q[j] = q[j], q[i]
                m = mismatch(q)
                if m < best - 1e-14:
                    perm, best, improved = q, m, True
    return perm


def align(spec: ModelSpec, ref, theta, *, sweeps: int = 50, rtol: float = 1e-13) -> tuple[np.ndarray, dict]:
    """θ moved along its symmetry orbit to be as close as possible to ``ref`` (both (P,)).

    What is aligned: (1) the class labels (:func:`class_permutation`); (2) every gauge interface:
    with R_i acting as F_{i−1} → R_i F_{i−1}, F_i → F_i R_iᵀ, minimise Σ_i ‖F_i^ref − R_{i+1} F_i R_iᵀ‖²
    (R_0 = R_{L+1} = I): a forward pass (R_i from F_{i−1} alone, given R_{i−1}; exact for a rotated
    copy with full-rank factors), then block-coordinate sweeps, each R_i an orthogonal Procrustes solution
    (U Vᵀ of F_{i−1}^ref (F_{i−1} R_{i−1}ᵀ)ᵀ + F_i^refᵀ R_{i+1} F_i) at the interfaces with an
    O(d) gauge, and the best permutation matrix (hidden-unit permutation, Hungarian algorithm) at
    the other ReLU interfaces; sweeps stop when the distance changes by less than ``rtol``
    relative. Sample permutations within a class are not aligned. Every step is a symmetry, so
    the loss is unchanged. Returns (aligned θ, {"class_perm", "distance", "distance_before",
    "sweeps"}).
    """
    ref = np.asarray(ref, dtype=np.float64).reshape(-1)
    th0 = np.asarray(theta, dtype=np.float64).reshape(-1)
    before = float(np.linalg.norm(ref - th0))
    perm = class_permutation(spec, ref, th0)
    th = relabel_classes(spec, th0, perm)
    A = spec.split(ref)
    L = spec.L
    d = spec.d
    R = [np.eye(d) for _ in range(L + 2)]  # R[0] and R[L+1] stay the identity (no gauge there)
    cont = set(gauge_interfaces(spec))     # interface i (1-based) has an O(d) gauge iff i-1 in cont
    Fb = spec.split(th)

    def moved():
        out = []
        for i, F in enumerate(Fb):
            left = R[i + 1] if i < L else np.eye(F.shape[0])
            right = R[i].T if i > 0 else np.eye(F.shape[1])
            out.append(left @ F @ right)
        return out

    def solve(i: int, both: bool) -> None:
        M = A[i - 1] @ (Fb[i - 1] @ (R[i - 1].T if i > 1 else np.eye(Fb[i - 1].shape[1]))).T
        if both:
            nxt = R[i + 1] if i < L else np.eye(Fb[i].shape[0])
            M = M + A[i].T @ (nxt @ Fb[i])
        R[i] = _procrustes(M) if (i - 1) in cont else _best_permutation_matrix(M)

    for i in range(1, L + 1):  # a forward pass (each R_i from the factor before it): exact for a rotated copy
        solve(i, both=False)
    dist = float(np.linalg.norm(spec.join(moved()) - ref))
    k = 0
    for k in range(1, sweeps + 1):
        for i in range(1, L + 1):
            solve(i, both=True)
        new = float(np.linalg.norm(spec.join(moved()) - ref))
        done = abs(dist - new) <= rtol * max(dist, 1.0)
        dist = new
        if done:
            break
    return spec.join(moved()), {"class_perm": perm.tolist(), "distance": dist, "distance_before": before, "sweeps": k}
