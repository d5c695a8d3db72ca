"""Hessian eigen-analysis of a critical point: spectra, symmetry zero modes, index and nullity.

Two paths, chosen by the parameter count P against ``dense_limit``:

* **dense** (P ≤ dense_limit): the exact Hessian by autodiff (:meth:`DeepUFM.hessian`), full
  spectrum by ``numpy.linalg.eigvalsh``.
* **Lanczos** (P > dense_limit): the Hessian as a ``scipy.sparse.linalg.LinearOperator`` of exact
  Hessian-vector products (:meth:`DeepUFM.hvp_operator`) and ARPACK ``eigsh``: the ``k`` largest
  eigenvalues (``which='LA'``), and the ``k`` smallest algebraic (``'SA'``, "most_negative") and
  ``k`` of smallest magnitude (``'SM'``) of the operator with the symmetry zero modes *deflated*
  (shifted to the top of the spectrum), so both are net of the symmetry zero modes (which are
  counted from the symmetry space directly, after checking ‖Hq‖ ≤ τ).

Symmetry zero modes (``docs/MODEL.md`` §5). For each interface i between factor F_i (rows
of size d) and F_{i+1} (columns of size d) and each antisymmetric A ∈ so(d), the gauge tangent is
δF_i = A F_i, δF_{i+1} = −F_{i+1} A (the derivative of F_i → O F_i, F_{i+1} → F_{i+1} Oᵀ at O = I).
The linear model has L interfaces (H₁|W₁, W₁|W₂, …, W_{L−1}|W_L); with ReLU only H₁|W₁ is a
continuous symmetry. The span of the tangents (generators that provably give zero dropped, see
:func:`symmetry_tangents`) is computed by SVD (its numerical rank under ``symmetry_rtol``) rather
than assumed; at a linear critical point of rank r it equals
L·(r·d − r(r+1)/2). At a critical point these vectors are in the Hessian's null space; the
residual max‖H q‖ over an orthonormal basis q of the span is reported.

Zero threshold. An eigenvalue μ counts as negative if μ < −τ and as zero if |μ| ≤ τ. The
curvature scale of the genuine modes is set by the weight decay (MODEL.md §6: the origin's Hessian
is λI, and at DNC points the smallest non-symmetry eigenvalues are ≈ λ), so the default is
τ = max(tau_rel · min_l λ_l, noise_mult · ε · ρ(H)) with tau_rel = 1e-3, ε the float64 machine
epsilon, ρ(H) the spectral radius and noise_mult = 1e4 (round-off floor for large ‖H‖).
Symmetry zero modes measure ~1e-16 on the DNC test points, genuine modes ≥ λ, so the default
separates them by about ten orders of magnitude. τ and its ingredients are stored with the result.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from .model import DeepUFM, ModelSpec, as_theta64

DEFAULT_DENSE_LIMIT = 3000
DEFAULT_TAU_REL = 1e-3
DEFAULT_NOISE_MULT = 1e4
DEFAULT_SYMMETRY_RTOL = 1e-8
DEFAULT_LANCZOS_K = 20
DEFAULT_LANCZOS_TOL = 1e-10
DEFAULT_LANCZOS_SEED = 0

TYPES = ("minimum", "degenerate_minimum_or_saddle", "saddle")


def _float64_model(spec: ModelSpec) -> DeepUFM:
    return DeepUFM(spec.as_float64())


def dense_hessian(spec: ModelSpec, theta) -> np.ndarray:
    """Exact dense Hessian (P, P) at θ (P,), float64, symmetrised."""
    return _float64_model(spec).hessian(as_theta64(spec, theta)).numpy()


def hessian_operator(spec: ModelSpec, theta, chunk: int = 256) -> LinearOperator:
    """The Hessian at θ as a symmetric (P, P) ``LinearOperator`` of exact Hessian-vector products.

    ``matvec`` and ``matmat`` both work; up to ``chunk`` vectors go through one batched
    double-backward pass (θ repeated, :meth:`DeepUFM.hvp_operator`).
    """
    model = _float64_model(spec)
    th = as_theta64(spec, theta)
    P = spec.P
    ops: dict[int, object] = {}

    def block(V: np.ndarray) -> np.ndarray:
        m = V.shape[1]
        if m not in ops:
            ops[m] = model.hvp_operator(th.unsqueeze(0).expand(m, P).contiguous())
        return ops[m](torch.from_numpy(np.ascontiguousarray(V.T))).numpy().T

    def matmat(V: np.ndarray) -> np.ndarray:
        V = np.asarray(V, dtype=np.float64).reshape(P, -1)
        return np.hstack([block(V[:, j:j + chunk]) for j in range(0, V.shape[1], chunk)])

    return LinearOperator((P, P), matvec=lambda v: matmat(v).reshape(-1), matmat=matmat,
                          rmatvec=lambda v: matmat(v).reshape(-1), dtype=np.float64)


def gauge_interfaces(spec: ModelSpec) -> list[int]:
    """Interfaces i (between factor i and factor i+1, factors [H₁, W₁, …, W_L]) with an O(d) gauge:
    all L for the linear model, only 0 (H₁|W₁) with ReLU."""
    return list(range(spec.L)) if spec.activation == "linear" else [0]


def symmetry_tangents(spec: ModelSpec, theta, rtol: float = DEFAULT_SYMMETRY_RTOL) -> np.ndarray:
    """Gauge tangent vectors at θ that can be non-zero, stacked as rows: (T, P).

    For interface i let u_1..u_d be the left singular vectors of [F_i, F_{i+1}ᵀ] (d × ·), the
    first r_i of them spanning its numerical range (singular values > rtol·largest). A generator
    A = u_a u_bᵀ − u_b u_aᵀ with both a, b ≥ r_i annihilates F_i and F_{i+1} (tangent exactly 0), so
    only pairs a < r_i, a < b are built: δF_i = A F_i, δF_{i+1} = −F_{i+1} A, every other factor 0
    (r_i·d − r_i(r_i+1)/2 rows per interface, out of d(d−1)/2). The span's dimension is then found
    numerically by :func:`symmetry_space`.
    """
    th = as_theta64(spec, theta).numpy()
    shapes = spec.shapes
    offs = np.concatenate([[0], np.cumsum([r * c for r, c in shapes])])
    F = [th[offs[j]:offs[j + 1]].reshape(shapes[j]) for j in range(len(shapes))]
    d = spec.d
    rows = []
    for i in gauge_interfaces(spec):
        Fi, Fn = F[i], F[i + 1]
        U, sv, _ = np.linalg.svd(np.hstack([Fi, Fn.T]), full_matrices=True)
        r = int(np.sum(sv > rtol * sv[0])) if sv.size and sv[0] > 0 else 0
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


def _null_part(Q: np.ndarray, HQ: np.ndarray, tau: float) -> tuple[np.ndarray, int]:
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


def classify(index: int, excess_zero_modes: int) -> str:
    """'minimum' (index 0, no excess zero modes), 'degenerate_minimum_or_saddle' (index 0 with
    excess zero modes: second order cannot decide) or 'saddle' (index > 0)."""
    if index > 0:
        return "saddle"
    return "minimum" if excess_zero_modes <= 0 else "degenerate_minimum_or_saddle"


@dataclass
class HessianReport:
    """Second-order classification of one point (see the module docstring for τ).

    method: 'dense' (``spectrum`` is all P eigenvalues, ascending) or 'lanczos' (``spectrum`` is the
    ascending union of the subsets in ``parts``: 'most_negative', 'smallest_magnitude' — net of the
    symmetry modes — and 'largest'; index and nullity are then lower bounds when flagged).
    """

    method: str
    spectrum: np.ndarray
    parts: dict = field(default_factory=dict)
    index: int = 0
    nullity: int = 0
    symmetry_zero_modes: int = 0
    excess_zero_modes: int = 0
    type: str = "minimum"
    strict: bool = True
    smallest_nonzero_eigenvalue: float | None = None
    largest_eigenvalue: float = 0.0
    largest_zero_magnitude: float | None = None
    tau: float = 0.0
    tau_rel: float = DEFAULT_TAU_REL
    noise_mult: float = DEFAULT_NOISE_MULT
    tau_source: str = "default"
    symmetry_rtol: float = DEFAULT_SYMMETRY_RTOL
    symmetry_gap: float = float("inf")
    symmetry_residual: float = 0.0
    symmetry_verified: bool = True
    symmetry_unverified: int = 0  # orbit tangents that are not Hessian null vectors (see _null_part)
    index_is_lower_bound: bool = False
    nullity_is_lower_bound: bool = False
    lanczos_k: int | None = None
    lanczos_converged: bool | None = None
    lanczos_tol: float | None = None
    lanczos_seed: int | None = None
    dense_limit: int = DEFAULT_DENSE_LIMIT

    @property
    def description(self) -> str:
        """One line, e.g. 'strict saddle of index 3' or 'minimum'."""
        if self.type == "saddle":
            kind = "strict saddle" if self.strict else f"saddle ({self.excess_zero_modes} excess zero modes)"
            return f"{kind} of index {self.index}"
        if self.type == "degenerate_minimum_or_saddle":
            return (f"index 0 with {self.excess_zero_modes} excess zero modes: "
                    "second order cannot decide between minimum and saddle")
        return "minimum (index 0, no excess zero modes)"

    def to_dict(self) -> dict:
        """JSON-safe summary (spectra excluded; save them with :func:`landscape.analysis.save_spectra`)."""
        keys = ("method", "index", "nullity", "symmetry_zero_modes", "excess_zero_modes", "type", "strict",
                "smallest_nonzero_eigenvalue", "largest_eigenvalue", "largest_zero_magnitude", "tau",
                "tau_rel", "noise_mult", "tau_source", "symmetry_rtol", "symmetry_gap", "symmetry_unverified",
                "symmetry_residual", "symmetry_verified", "index_is_lower_bound",
                "nullity_is_lower_bound", "lanczos_k", "lanczos_converged", "lanczos_tol", "lanczos_seed", "dense_limit")
        out = {k: _json_float(getattr(self, k)) for k in keys}
        out["description"] = self.description
        out["parts"] = {k: [float(x) for x in v] for k, v in self.parts.items()}
        return out


def _json_float(v):
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if np.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def default_tau(spec: ModelSpec, spectral_radius: float, tau_rel: float = DEFAULT_TAU_REL,
                noise_mult: float = DEFAULT_NOISE_MULT) -> float:
    """τ = max(tau_rel · min_l λ_l, noise_mult · ε · ρ(H)) (module docstring)."""
    return max(tau_rel * min(spec.lambdas), noise_mult * np.finfo(np.float64).eps * spectral_radius)


def _eigsh(op, k, which, ncv, tol, seed):
    """eigsh with ARPACK relative tolerance ``tol`` from a start vector drawn with ``seed`` (ARPACK's
    own start is unseeded); on non-convergence keep the converged pairs and say so (the report's
    ``lanczos_converged`` is then False)."""
    v0 = np.random.default_rng(seed).standard_normal(op.shape[0])
    try:
        return np.sort(eigsh(op, k=k, which=which, ncv=ncv, tol=tol, v0=v0, return_eigenvectors=False)), True
    except ArpackNoConvergence as exc:
        return np.sort(np.asarray(exc.eigenvalues, dtype=np.float64)), False


def analyse_hessian(spec: ModelSpec, theta, *, tau: float | None = None, tau_rel: float = DEFAULT_TAU_REL,
                    noise_mult: float = DEFAULT_NOISE_MULT, dense_limit: int = DEFAULT_DENSE_LIMIT,
                    lanczos_k: int = DEFAULT_LANCZOS_K, lanczos_tol: float = DEFAULT_LANCZOS_TOL,
                    lanczos_seed: int = DEFAULT_LANCZOS_SEED, symmetry_rtol: float = DEFAULT_SYMMETRY_RTOL) -> HessianReport:
    """Index, nullity, symmetry and excess zero modes and type of the point θ (P,).

    Dense when P ≤ ``dense_limit``, else Lanczos with ``lanczos_k`` eigenvalues per subset, each
    to ARPACK relative tolerance ``lanczos_tol`` (the most negative and the smallest-magnitude ones
    from the symmetry-deflated operator, whose symmetry directions are moved to 2ρ+1; a cluster of
    exact symmetry zeros would otherwise stall ARPACK).
    ``tau=None`` uses :func:`default_tau`. Nullity = #{|μ| ≤ τ}; excess = nullity − symmetry
    dimension; ``strict`` is True when there are no excess zero modes.
    """
    sym = symmetry_space(spec, theta, symmetry_rtol)
    P = spec.P
    if P <= dense_limit:
        H = dense_hessian(spec, theta)
        ev = np.linalg.eigvalsh(H)
        rho = float(max(abs(ev[0]), abs(ev[-1])))
        t = default_tau(spec, rho, tau_rel, noise_mult) if tau is None else float(tau)
        Q, unverified = _null_part(sym.basis, H @ sym.basis, t)
        s = Q.shape[1]
        resid = float(np.linalg.norm(H @ Q, axis=0).max()) if s else 0.0
        index = int(np.sum(ev < -t))
        zero = np.abs(ev) <= t
        nullity = int(zero.sum())
        nonzero = np.abs(ev[~zero])
        rep = HessianReport(method="dense", spectrum=ev, index=index, nullity=nullity,
                            smallest_nonzero_eigenvalue=float(ev[~zero][np.argmin(nonzero)]) if nonzero.size else None,
                            largest_eigenvalue=float(ev[-1]),
                            largest_zero_magnitude=float(np.abs(ev[zero]).max()) if nullity else None)
        converged = None
        k = None
    else:
        op = hessian_operator(spec, theta)
        k = int(min(lanczos_k, P - 2))
        ncv = int(min(P, max(2 * k + 1, 40)))
        big, c2 = _eigsh(op, k, "LA", ncv, lanczos_tol, lanczos_seed)
        t_sym = default_tau(spec, abs(float(big[-1])), tau_rel, noise_mult) if tau is None else float(tau)
        Q, unverified = _null_part(sym.basis, op.matmat(sym.basis) if sym.dimension else sym.basis, t_sym)
        s = Q.shape[1]
        shift = 2.0 * abs(big[-1]) + 1.0

        def deflated(V):
            V = V.reshape(P, -1)
            W = V - Q @ (Q.T @ V)
            HW = op.matmat(W)
            return HW - Q @ (Q.T @ HW) + shift * (Q @ (Q.T @ V))

        dop = LinearOperator((P, P), matvec=lambda v: deflated(v).reshape(-1), matmat=deflated, dtype=np.float64)
        neg, c1 = _eigsh(dop, k, "SA", ncv, lanczos_tol, lanczos_seed)
        rho = float(max(abs(neg[0]), abs(big[-1])))
        t = default_tau(spec, rho, tau_rel, noise_mult) if tau is None else float(tau)
        small, c3 = _eigsh(dop, k, "SM", ncv, lanczos_tol, lanczos_seed)
        small = small[np.argsort(np.abs(small), kind="stable")]
        resid = float(np.linalg.norm(op.matmat(Q), axis=0).max()) if s else 0.0
        index = int(np.sum(neg < -t))
        zero = np.abs(small) <= t
        nullity = s + int(zero.sum())
        nz = small[~zero]
        spectrum = np.sort(np.concatenate([neg, small, big]))
        rep = HessianReport(method="lanczos", spectrum=spectrum,
                            parts={"most_negative": neg, "smallest_magnitude": small, "largest": big},
                            index=index, nullity=nullity,
                            smallest_nonzero_eigenvalue=float(nz[0]) if nz.size else None,
                            largest_eigenvalue=float(big[-1]),
                            largest_zero_magnitude=float(np.abs(small[zero]).max()) if zero.any() else None,
                            index_is_lower_bound=bool(index == len(neg)),
                            nullity_is_lower_bound=bool(zero.all()))
        converged = bool(c1 and c2 and c3)
    rep.symmetry_zero_modes = s
    rep.excess_zero_modes = rep.nullity - s
    rep.type = classify(rep.index, rep.excess_zero_modes)
    rep.strict = rep.excess_zero_modes <= 0
    rep.tau, rep.tau_rel, rep.noise_mult = t, tau_rel, noise_mult
    rep.tau_source = "default" if tau is None else "given"
    rep.symmetry_rtol, rep.symmetry_gap = symmetry_rtol, sym.gap
    rep.symmetry_residual = resid
    rep.symmetry_unverified = unverified
    rep.symmetry_verified = bool(resid <= t)
    rep.lanczos_k, rep.lanczos_converged, rep.dense_limit = k, converged, dense_limit
    rep.lanczos_tol = None if k is None else lanczos_tol
    rep.lanczos_seed = None if k is None else lanczos_seed
    return rep


# ----- symmetry actions (for invariance checks) ------------------------------------------------
def _split(spec: ModelSpec, theta) -> list[np.ndarray]:
    th = as_theta64(spec, theta).numpy()
    out, i = [], 0
    for r, c in spec.shapes:
        out.append(th[i:i + r * c].reshape(r, c).copy())
        i += r * c
    return out


def apply_gauge(spec: ModelSpec, theta, transforms: dict) -> np.ndarray:
    """θ with F_i → O F_i, F_{i+1} → F_{i+1} Oᵀ for each interface i → O (d×d orthogonal) in
    ``transforms``. Any O ∈ O(d) is a symmetry at the interfaces of :func:`gauge_interfaces`;
    a permutation matrix (hidden-unit permutation) is one at every interface, also with ReLU."""
    F = _split(spec, theta)
    for i, O in transforms.items():
        F[i] = O @ F[i]
        F[i + 1] = F[i + 1] @ O.T
    return np.concatenate([f.reshape(-1) for f in F])


def relabel_classes(spec: ModelSpec, theta, perm) -> np.ndarray:
    """θ with class c renamed perm[c]: H₁'s column block c moves to block perm[c] and W_L's row c to
    row perm[c], so Z̄ → ΠZ̄Πᵀ and the loss is unchanged."""
    perm = np.asarray(perm)
    F = _split(spec, theta)
    n = spec.n
    H = F[0].reshape(spec.d, spec.K, n)
    Hn, Wn = np.empty_like(H), np.empty_like(F[-1])
    Hn[:, perm] = H
    Wn[perm] = F[-1]
    F[0], F[-1] = Hn.reshape(spec.d, spec.N), Wn
    return np.concatenate([f.reshape(-1) for f in F])
