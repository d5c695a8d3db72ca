"""Hessian eigen-analysis of a critical point: spectra, symmetry zero modes, index and nullity.

Two paths (:func:`choose_method`):

* **dense**: the exact Hessian from batched Hessian-vector products (:func:`dense_hessian`, the
  dense builder of :class:`landscape.core.operators.CurvatureOperator`),
  the full spectrum by LAPACK (``scipy.linalg.eigh``), the eigenvectors of the negative
  eigenvalues by a second, subset call. Chosen when P ≤ ``dense_limit``, or, with
  ``dense_limit=None``, when the cost model (:func:`dense_cost_s`, a LAPACK timing measured once
  per process on this machine and scaled as P³) predicts at most ``dense_budget_s`` seconds.
* **Lanczos**: block Lanczos with full reorthogonalisation on exact Hessian-vector products
  (:func:`landscape.core.linalg.block_lanczos`, block size k + 4, so eigenvalues of multiplicity up
  to the block size are resolved — a single-vector method sees one copy of an exact multiple
  eigenvalue): the ``k`` largest eigenvalues, and the ``k`` smallest in the complement of the
  symmetry zero modes ("most_negative", net of the symmetry modes, which are counted from the
  symmetry space directly after checking ‖Hq‖ ≤ τ). "smallest_magnitude" is read from the same
  run, and from a block Lanczos run on H² (restricted to that complement) when the point has
  negative eigenvalues, since then the eigenvalues nearest zero are interior.

Symmetry zero modes: :mod:`landscape.analysis.symmetry` (MODEL.md §5).

Zero threshold. An eigenvalue μ counts as negative if μ < −τ and as zero if |μ| ≤ τ. The
curvature scale of the genuine modes is set by the weight decay (MODEL.md §6: the origin's Hessian
is λI, and at DNC points the smallest non-symmetry eigenvalues are ≈ λ), so the default is
τ = max(tau_rel · min_l λ_l, noise_mult · ε · ρ(H)) with tau_rel = 1e-3
(:data:`landscape.core.thresholds.DEFAULT_TAU_REL`, shared with the engines), ε the float64 machine
epsilon, ρ(H) the spectral radius and noise_mult = 1e4 (round-off floor for large ‖H‖).
Symmetry zero modes measure ~1e-16 on the DNC test points, genuine modes ≥ λ, so the default
separates them by about ten orders of magnitude. τ and its ingredients are stored with the result.
"""
from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import torch

from ..core.jsonsafe import json_float
from ..core.linalg import TORCH_EIGVALSH_FROM, block_lanczos, symmetric_eigh
from ..core.model import DeepUFM, ModelSpec, as_theta64
from ..core.operators import HessianOperator
from ..core.spec import require_regularised
from .settings import (DEFAULT_DENSE_BUDGET_S, DEFAULT_DENSE_LIMIT, DEFAULT_LANCZOS_K,  # noqa: F401
                       DEFAULT_LANCZOS_SEED, DEFAULT_LANCZOS_TOL, DEFAULT_NOISE_MULT, DEFAULT_SYMMETRY_RTOL,
                       DEFAULT_TAU_REL)
from .symmetry import null_part, symmetry_space

# DEFAULT_DENSE_LIMIT (None: choose dense vs Lanczos by the measured cost model; an integer: dense
# iff P ≤ it) and the other defaults are declared in :mod:`landscape.analysis.settings`.
#: Restarts of each block Lanczos run before it is reported as not converged.
DEFAULT_LANCZOS_RESTARTS = 30

TYPES = ("minimum", "degenerate_minimum_or_saddle", "saddle")


def _float64_model(spec: ModelSpec, device="cpu") -> DeepUFM:
    return DeepUFM(spec.as_float64(), device=device)


def hessian_operator(spec: ModelSpec, theta, device="cpu") -> HessianOperator:
    """The exact Hessian at θ (P,) as an operator of one row (B = 1), float64, on ``device``
    (:class:`landscape.core.operators.HessianOperator`)."""
    return _float64_model(spec, device).hvp_operator(as_theta64(spec, theta).to(device).reshape(1, -1))


def dense_hessian(spec: ModelSpec, theta, device="cpu") -> np.ndarray:
    """Exact dense Hessian (P, P) at θ (P,), float64, symmetrised (computed on ``device``):
    :meth:`~landscape.core.operators.CurvatureOperator.dense` of :func:`hessian_operator`."""
    return hessian_operator(spec, theta, device).dense()[0].cpu().numpy()


def hessian_matmat(spec: ModelSpec, theta, device="cpu", chunk: int = 256):
    """V (P, b) ↦ H(θ)V (P, b), exact, on ``device``: up to ``chunk`` vectors per batched
    product (θ repeated, :meth:`~landscape.core.operators.CurvatureOperator.matmat` of
    :func:`hessian_operator`), operators cached by b."""
    op = hessian_operator(spec, theta, device)
    return lambda V: op.matmat(V, chunk)


@functools.lru_cache(maxsize=4)
def _lapack_seconds_per_cube(device_type: str) -> float:
    """Seconds per P³ of a symmetric eigen-decomposition here, from one timed call at P = 1200."""
    n = 1200
    A = np.random.default_rng(0).standard_normal((n, n))
    A = A + A.T
    t = time.perf_counter()
    scipy.linalg.eigh(A, eigvals_only=True, check_finite=False)
    return (time.perf_counter() - t) / n ** 3


@functools.lru_cache(maxsize=4)
def _torch_eigvalsh_seconds_per_cube(threads: int) -> float:
    """Seconds per P³ of ``torch.linalg.eigvalsh`` here (the eigenvalues-alone solve of
    :func:`symmetric_eigh` from ``TORCH_EIGVALSH_FROM`` rows on), from one timed call at that
    size after a warm-up call."""
    n = TORCH_EIGVALSH_FROM
    torch.linalg.eigvalsh(torch.eye(64, dtype=torch.float64))
    A = torch.from_numpy(np.random.default_rng(0).standard_normal((n, n)))
    A = A + A.T
    t = time.perf_counter()
    torch.linalg.eigvalsh(A)
    return (time.perf_counter() - t) / n ** 3


#: The point analysis' dense path (Hessian build, eigenvalues alone, symmetry checks) in units of
#: one ``torch.linalg.eigvalsh`` solve of the same size (measured at P = 9100: 9.7 s + 14.1 s +
#: 4 s against 14.1 s).
ANALYSIS_DENSE_WORK = 2.0


def dense_cost_s(P: int, work: float = 1.3, eigvals_only: bool = False) -> float:
    """Predicted seconds of a dense path at P parameters on this machine: ``work`` times one
    LAPACK eigenvalue solve of size P (measured once, scaled as P³). The spectrum's dense path
    (eigenvectors too) is :data:`landscape.analysis.spectrum.SPECTRUM_DENSE_WORK` scipy solves.
    ``eigvals_only`` (the point analysis): from ``TORCH_EIGVALSH_FROM`` rows on, the unit is the
    torch solve the analysis uses there (:func:`symmetric_eigh`), at this process's torch threads."""
    if eigvals_only and P >= TORCH_EIGVALSH_FROM:
        return work * _torch_eigvalsh_seconds_per_cube(torch.get_num_threads()) * float(P) ** 3
    return work * _lapack_seconds_per_cube("cpu") * float(P) ** 3


def dense_fits(P: int, matrices: float = 2.5) -> bool:
    """Whether ``matrices`` dense P × P float64 matrices fit in half of this machine's RAM."""
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        mem = float("inf")
    return matrices * 8 * P * P <= 0.5 * mem


def choose_method(P: int, dense_limit: int | None, dense_budget_s: float = DEFAULT_DENSE_BUDGET_S, *,
                  work: float = 1.3, matrices: float = 2.5, eigvals_only: bool = False) -> tuple[str, str]:
    """('dense' | 'lanczos', why). With an integer ``dense_limit``: dense iff P ≤ it. With None:
    dense iff :func:`dense_cost_s` (``work`` solves) ≤ ``dense_budget_s`` and ``matrices``
    dense P × P float64 matrices fit in half of the RAM."""
    if dense_limit is not None:
        return ("dense" if P <= dense_limit else "lanczos"), f"dense_limit={dense_limit}"
    cost = dense_cost_s(P, work, eigvals_only)
    fits = dense_fits(P, matrices)
    why = f"cost model: dense predicted {cost:.3g} s (budget {dense_budget_s:g} s){'' if fits else ', too large for memory'}"
    return ("dense" if cost <= dense_budget_s and fits else "lanczos"), why


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
    dense_limit: int | None = DEFAULT_DENSE_LIMIT
    method_reason: str = ""
    wall_time_s: float = 0.0
    negative_vectors: np.ndarray | None = field(default=None, repr=False)

    @property
    def verified(self) -> bool:
        """False when the analysis could not verify its own answer: a Lanczos run that did not
        converge, or symmetry tangents that are not Hessian null vectors. Such a point is stored
        with the kind ``unverified``, which never counts as a minimum."""
        return bool(self.symmetry_verified and self.lanczos_converged is not False)

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
        """JSON-safe summary (the spectrum itself and the eigenvectors excluded)."""
        keys = ("method", "index", "nullity", "symmetry_zero_modes", "excess_zero_modes", "type", "strict",
                "smallest_nonzero_eigenvalue", "largest_eigenvalue", "largest_zero_magnitude", "tau",
                "tau_rel", "noise_mult", "tau_source", "symmetry_rtol", "symmetry_gap", "symmetry_unverified",
                "symmetry_residual", "symmetry_verified", "index_is_lower_bound",
                "nullity_is_lower_bound", "lanczos_k", "lanczos_converged", "lanczos_tol", "lanczos_seed", "dense_limit",
                "method_reason", "wall_time_s", "verified")
        out = {k: json_float(getattr(self, k)) for k in keys}
        out["description"] = self.description
        out["parts"] = {k: [float(x) for x in v] for k, v in self.parts.items()}
        return out




def default_tau(spec: ModelSpec, spectral_radius: float, tau_rel: float = DEFAULT_TAU_REL,
                noise_mult: float = DEFAULT_NOISE_MULT) -> float:
    """τ = max(tau_rel · min_l λ_l, noise_mult · ε · ρ(H)) (module docstring); refused at λ = 0
    (the threshold would fall to round-off)."""
    require_regularised(spec, "the Hessian's zero threshold τ = tau_rel·min λ", "at λ = 0 it is 0, and "
                        "round-off would decide the index")
    return max(tau_rel * min(spec.lambdas), noise_mult * np.finfo(np.float64).eps * spectral_radius)


def _counts(ev: np.ndarray, t: float) -> tuple[int, int, float | None, float | None]:
    """(index, nullity, smallest non-zero eigenvalue (signed), largest zero magnitude) of a set
    of eigenvalues under the threshold t."""
    zero = np.abs(ev) <= t
    nz = ev[~zero]
    return (int(np.sum(ev < -t)), int(zero.sum()), float(nz[np.argmin(np.abs(nz))]) if nz.size else None,
            float(np.abs(ev[zero]).max()) if zero.any() else None)


def _dense_eigvals(H: np.ndarray, device) -> np.ndarray:
    """All eigenvalues of a symmetric H, ascending: LAPACK on the host, or torch on a GPU."""
    if torch.device(device).type == "cuda":
        return torch.linalg.eigvalsh(torch.from_numpy(H).to(device)).cpu().numpy()
    return symmetric_eigh(H, vectors=False)


def _dense(spec, theta, sym, tau, tau_rel, noise_mult, device):
    H = dense_hessian(spec, theta, device)
    ev = _dense_eigvals(H, device)
    rho = float(max(abs(ev[0]), abs(ev[-1])))
    t = default_tau(spec, rho, tau_rel, noise_mult) if tau is None else float(tau)
    Q, unverified = null_part(sym.basis, H @ sym.basis, t)
    resid = float(np.linalg.norm(H @ Q, axis=0).max()) if Q.shape[1] else 0.0
    index, nullity, snz, zmax = _counts(ev, t)
    vecs = symmetric_eigh(H, subset=(0, index - 1))[1] if index else None
    rep = HessianReport(method="dense", spectrum=ev, index=index, nullity=nullity, smallest_nonzero_eigenvalue=snz,
                        largest_eigenvalue=float(ev[-1]), largest_zero_magnitude=zmax, negative_vectors=vecs)
    return rep, t, Q, unverified, resid


def _lanczos(spec, theta, sym, tau, tau_rel, noise_mult, k, tol, seed, device):
    P = spec.P
    mm = hessian_matmat(spec, theta, device)
    kw = {"tol": tol, "seed": seed, "max_restarts": DEFAULT_LANCZOS_RESTARTS, "device": device}
    big, _, c_big, _ = block_lanczos(mm, P, k, which="LA", **kw)
    big = big.cpu().numpy()
    t_sym = default_tau(spec, abs(float(big[-1])), tau_rel, noise_mult) if tau is None else float(tau)
    Qs = torch.from_numpy(sym.basis).to(device)
    HQ = mm(Qs).cpu().numpy() if sym.dimension else sym.basis
    Q, unverified = null_part(sym.basis, HQ, t_sym)
    Qt = torch.from_numpy(np.ascontiguousarray(Q)).to(device)

    def project(V):
        return V - Qt @ (Qt.T @ V) if Qt.shape[1] else V

    neg, Vneg, c_neg, _ = block_lanczos(lambda V: project(mm(V)), P, k, which="SA", project=project,
                                        **{**kw, "seed": seed + 1})
    neg, Vneg = neg.cpu().numpy(), Vneg.cpu().numpy()
    rho = float(max(abs(neg[0]), abs(big[-1])))
    t = default_tau(spec, rho, tau_rel, noise_mult) if tau is None else float(tau)
    index, zeros_sa, _, _ = _counts(neg, t)
    small, c_small = neg, True
    if index:  # the eigenvalues nearest zero are interior: the bottom of H² in the complement
        _, Vsq, c_small, _ = block_lanczos(lambda V: project(mm(project(mm(V)))), P, k, which="SA",
                                           project=project, **{**kw, "seed": seed + 2})
        small = np.sort((Vsq * project(mm(Vsq))).sum(dim=0).cpu().numpy())  # Rayleigh quotients
    small = small[np.argsort(np.abs(small), kind="stable")][:k]
    resid = float(torch.linalg.vector_norm(mm(Qt), dim=0).max()) if Q.shape[1] else 0.0
    _, zeros_sm, snz, zmax = _counts(small, t)
    # the SA run holds every eigenvalue up to its largest: its zero count is complete when that one
    # is above τ; otherwise the smallest-magnitude run may have seen more
    nullity = Q.shape[1] + (zeros_sa if neg[-1] > t else max(zeros_sa, zeros_sm))
    spectrum = np.sort(np.concatenate([neg, big]))
    rep = HessianReport(method="lanczos", spectrum=spectrum,
                        parts={"most_negative": neg, "smallest_magnitude": small, "largest": big},
                        index=index, nullity=nullity, smallest_nonzero_eigenvalue=snz, largest_eigenvalue=float(big[-1]),
                        largest_zero_magnitude=zmax, index_is_lower_bound=bool(index == len(neg)),
                        nullity_is_lower_bound=bool(np.all(np.abs(small) <= t)),
                        negative_vectors=Vneg[:, neg < -t] if index else None)
    rep.lanczos_converged = bool(c_big and c_neg and c_small)
    return rep, t, Q, unverified, resid


def analyse_hessian(spec: ModelSpec, theta, *, tau: float | None = None, tau_rel: float = DEFAULT_TAU_REL,
                    noise_mult: float = DEFAULT_NOISE_MULT, dense_limit: int | None = DEFAULT_DENSE_LIMIT,
                    dense_budget_s: float = DEFAULT_DENSE_BUDGET_S, lanczos_k: int = DEFAULT_LANCZOS_K,
                    lanczos_tol: float = DEFAULT_LANCZOS_TOL, lanczos_seed: int = DEFAULT_LANCZOS_SEED,
                    symmetry_rtol: float = DEFAULT_SYMMETRY_RTOL, device="cpu") -> HessianReport:
    """Index, nullity, symmetry and excess zero modes and type of the point θ (P,).

    Dense or Lanczos by :func:`choose_method`; Lanczos computes ``lanczos_k`` eigenvalues per
    subset, each to relative residual ``lanczos_tol``, from start blocks seeded ``lanczos_seed``.
    ``tau=None`` uses :func:`default_tau`. Nullity = #{|μ| ≤ τ}; excess = nullity − symmetry
    dimension; ``strict`` is True when there are no excess zero modes. The eigenvectors of the
    negative eigenvalues found are kept in ``negative_vectors`` (P, m) for the saddle descents.
    """
    t0 = time.perf_counter()
    sym = symmetry_space(spec, theta, symmetry_rtol)
    method, why = choose_method(spec.P, dense_limit, dense_budget_s, work=ANALYSIS_DENSE_WORK if spec.P >= TORCH_EIGVALSH_FROM else 1.3,
                                eigvals_only=True)
    k = None
    if method == "dense":
        rep, t, Q, unverified, resid = _dense(spec, theta, sym, tau, tau_rel, noise_mult, device)
    else:
        k = int(min(lanczos_k, spec.P - 2))
        rep, t, Q, unverified, resid = _lanczos(spec, theta, sym, tau, tau_rel, noise_mult, k, lanczos_tol,
                                                lanczos_seed, device)
        if not rep.lanczos_converged and dense_limit is None and dense_fits(spec.P):
            # an unconverged Lanczos answer would leave the point unverified: where the exact
            # spectrum fits in memory, take it instead, whatever the time budget said
            method, why, k = "dense", why + "; Lanczos did not converge: dense instead", None
            rep, t, Q, unverified, resid = _dense(spec, theta, sym, tau, tau_rel, noise_mult, device)
    s = Q.shape[1]
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
    rep.lanczos_k, rep.dense_limit, rep.method_reason = k, dense_limit, why
    rep.lanczos_tol = None if k is None else lanczos_tol
    rep.lanczos_seed = None if k is None else lanczos_seed
    rep.wall_time_s = time.perf_counter() - t0
    return rep
