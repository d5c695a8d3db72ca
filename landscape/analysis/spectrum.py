"""Hessian spectra read by their structure: full spectra, factor blocks, groups, densities, GN/residual.

:func:`inspect_spectrum` answers, for one point θ:

* **eigenvalues**: the full spectrum by dense eigen-decomposition when the cost model allows
  (:func:`landscape.analysis.hessian.choose_method`, with its own budget); beyond it, the extreme
  eigenvalues by block Lanczos (``method = "lanczos"``) and the spectral density by stochastic
  Lanczos quadrature (SLQ: ``slq_vectors`` Rademacher vectors, ``slq_steps`` Lanczos steps each,
  the Ritz values as quadrature nodes with the squared first eigenvector components as weights,
  smoothed by a Gaussian of width ``density_width``·(spectral range); Ubaru, Chen & Saad 2017, as
  in PyHessian). The symmetry zero modes are deflated from the SLQ operator and counted from the
  symmetry space (:mod:`landscape.analysis.symmetry`).
* **blocks**: the spectrum of every per-factor diagonal block H_ll (H₁, W₁, …, W_L), and, on the
  dense path, for every eigenvector of the full Hessian the share of its squared mass on each factor.
* **groups**: the sorted eigenvalues clustered into groups of (numerically) equal values, with
  their multiplicity: neighbours join a group when they differ by at most
  ``group_rtol``·max(|μ|, λ_min) (single linkage). The group within [−τ, τ] holding the symmetry
  zero modes is ``zero`` (with its symmetry and excess counts), a group at the weight decay
  (|μ − λ| ≤ group_rtol·λ for one of the factors' λ) is the ``bulk``, every other group is an
  ``outlier``; each carries the mean factor shares of its eigenvectors (dense path). On the
  Lanczos path only the 2·``lanczos_k`` extreme eigenvalues are known: every group then carries
  ``multiplicity_is_lower_bound = True`` and ``computed`` (its ``multiplicity`` counts Ritz values
  among those computed, a lower bound of the true multiplicity), and ``estimated_count``, the SLQ
  estimate of the number of eigenvalues in the group's window (± half a density width; the zero
  group adds the deflated symmetry modes). :func:`group_multiplicity_text` prints either form.
* **gauss_newton** and **residual**: the spectra of G = Jᵀ∇²_Z g J + diag(λ)
  (:meth:`landscape.core.model.DeepUFM.gauss_newton_vp`) and of H − G, the residual part that
  couples different factors through ∇_Z g (MODEL.md §7): G is positive semi-definite plus λ, so
  negative curvature can only come from the residual part (dense path only).

The record (:meth:`SpectrumReport.to_dict`) is what ``landscape spectrum`` writes to
``DIR/spectra/point-<id>.json`` and stores in the database.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..core.linalg import block_lanczos, symmetric_eigh
from ..core.model import DeepUFM, ModelSpec, as_theta64
from ..core.spec import require_regularised
from ..core.validate import SpecError, check_number
from .hessian import choose_method, default_tau, dense_hessian, hessian_matmat
from .settings import (DEFAULT_DENSITY_POINTS, DEFAULT_DENSITY_WIDTH, DEFAULT_GROUP_RTOL,  # noqa: F401
                       DEFAULT_SLQ_STEPS, DEFAULT_SLQ_VECTORS, DEFAULT_SPECTRUM_BUDGET_S, SpectrumSettings)
from .symmetry import null_part, symmetry_space

#: The dense spectrum in units of one eigenvalue solve of the same size (the cost model's unit,
#: :func:`landscape.analysis.hessian.dense_cost_s`): the decomposition with eigenvectors (for the
#: factor shares), the factor blocks, the Gauss–Newton build and two more solves (G and H − G).
#: Measured on 2 cores at the paper's DNC minimum: 5.2 solves at P = 2700 (5.6 s), 5.4 at
#: P = 9100 (225 s).
SPECTRUM_DENSE_WORK = 5.5


@dataclass
class SpectrumReport:
    """One point's spectrum (module docstring); every threshold stored with it."""

    point_id: int | None
    P: int
    method: str
    eigenvalues: np.ndarray
    symmetry_zero_modes: int
    tau: float
    blocks: dict
    groups: list
    density: dict
    gauss_newton: np.ndarray | None
    residual: np.ndarray | None
    factor_shares: np.ndarray | None = field(default=None, repr=False)
    thresholds: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        arr = lambda a: None if a is None else [float(x) for x in a]  # noqa: E731
        return {"point_id": self.point_id, "P": self.P, "method": self.method, "eigenvalues": arr(self.eigenvalues),
                "symmetry_zero_modes": self.symmetry_zero_modes, "tau": self.tau,
                "blocks": {k: arr(v) for k, v in self.blocks.items()}, "groups": self.groups,
                "density": {k: arr(v) for k, v in self.density.items()}, "gauss_newton": arr(self.gauss_newton),
                "residual": arr(self.residual), "thresholds": self.thresholds, "timings": self.timings}


# ----- stochastic Lanczos quadrature ---------------------------------------------------------------
def slq_nodes(matmat, P: int, *, vectors: int = DEFAULT_SLQ_VECTORS, steps: int = DEFAULT_SLQ_STEPS,
              seed: int = 0, project=None, dtype=torch.float64, device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes and weights (vectors, steps) of SLQ: for each Rademacher vector z (P,),
    ``steps`` Lanczos steps with full reorthogonalisation on H from z/‖z‖; nodes = Ritz values,
    weights = squared first components of the Ritz vectors. E[zᵀf(H)z]/P ≈ mean Σ w f(node).
    ``project``: an orthogonal projector applied to every vector (deflation)."""
    gen = torch.Generator().manual_seed(int(seed))
    proj = project or (lambda V: V)
    nodes, weights = [], []
    for _ in range(vectors):
        z = (torch.randint(0, 2, (P, 1), generator=gen, dtype=torch.float64) * 2 - 1).to(device=device, dtype=dtype)
        z = proj(z)
        Q = [z / z.norm()]
        alphas, betas = [], []
        for j in range(min(steps, P)):
            w = proj(matmat(Q[-1]))
            a = float((w * Q[-1]).sum())
            alphas.append(a)
            basis = torch.cat(Q, dim=1)
            w = w - basis @ (basis.T @ w)
            w = w - basis @ (basis.T @ w)
            b = float(w.norm())
            if b <= 1e-12 * max(abs(a), 1.0) or j == steps - 1:
                break
            betas.append(b)
            Q.append(w / b)
        T = np.diag(alphas) + np.diag(betas[:len(alphas) - 1], 1) + np.diag(betas[:len(alphas) - 1], -1)
        mu, U = np.linalg.eigh(T)
        nodes.append(mu)
        weights.append(U[0] ** 2)
    m = max(len(x) for x in nodes)
    pad = lambda x: np.pad(x, (0, m - len(x)))  # noqa: E731  (padded weights are 0)
    return np.stack([pad(x) for x in nodes]), np.stack([pad(x) for x in weights])


def slq_density(nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray, sigma: float, scale: float) -> np.ndarray:
    """Gaussian-smoothed spectral density on ``grid`` from SLQ nodes and weights, normalised so it
    integrates to ``scale`` (the number of eigenvalues the SLQ operator represents)."""
    g = grid[:, None, None]
    k = np.exp(-0.5 * ((g - nodes[None]) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    return scale * (k * weights[None]).sum(axis=(1, 2)) / nodes.shape[0]


def exact_density(ev: np.ndarray, grid: np.ndarray, sigma: float) -> np.ndarray:
    """The same Gaussian smoothing of an exact spectrum (integrates to its length)."""
    return np.exp(-0.5 * ((grid[:, None] - ev[None]) / sigma) ** 2).sum(axis=1) / (sigma * np.sqrt(2 * np.pi))


def log_det_positive(spec: ModelSpec, theta, *, tau: float, vectors: int = DEFAULT_SLQ_VECTORS,
                     steps: int = DEFAULT_SLQ_STEPS, seed: int = 0, device="cpu") -> float:
    """Σ log μ over the eigenvalues μ > τ of the Hessian net of the symmetry zero modes, by SLQ
    (for points too large for the dense path)."""
    th = as_theta64(spec, theta)
    mm = hessian_matmat(spec, th, device)
    sym = symmetry_space(spec, th)
    Q = torch.from_numpy(sym.basis).to(device)
    proj = (lambda V: V - Q @ (Q.T @ V)) if sym.dimension else None
    nodes, w = slq_nodes(mm, spec.P, vectors=vectors, steps=steps, seed=seed, project=proj, device=device)
    f = np.where(nodes > tau, np.log(np.clip(nodes, tau, None)), 0.0)
    return float((spec.P - sym.dimension) * (w * f).sum(axis=1).mean())


# ----- groups -------------------------------------------------------------------------------------
def check_group_rtol(value) -> float:
    """``group_rtol`` must be a number in (0, 0.1]: beyond it neighbours of unequal value join."""
    v = check_number("group_rtol", value)
    if not 0 < v <= 0.1:
        raise SpecError(f"group_rtol={value!r} is invalid: must be in (0, 0.1] (a relative tolerance for "
                        f"equal eigenvalues)")
    return v


def group_multiplicity_text(g: dict) -> str:
    """'×83' for a complete spectrum; '≥ 40 of 80 computed, SLQ ≈ 83' on the Lanczos path."""
    if not g.get("multiplicity_is_lower_bound"):
        return f"×{g['multiplicity']}"
    est = g.get("estimated_count")
    return f"≥ {g['multiplicity']} of {g['computed']} computed" + (f", SLQ ≈ {est:.0f}" if est is not None else "")


def slq_window_counts(groups: list[dict], nodes: np.ndarray, weights: np.ndarray, scale: float,
                      halfwidth: float) -> list[float]:
    """SLQ estimate of the number of eigenvalues in each group's window [min − h, max + h]:
    ``scale``·mean over vectors of the quadrature weight of the nodes inside (h = ``halfwidth``,
    clipped so neighbouring windows do not overlap)."""
    out = []
    for i, g in enumerate(groups):
        lo, hi = g["min"] - halfwidth, g["max"] + halfwidth
        if i:
            lo = max(lo, 0.5 * (groups[i - 1]["max"] + g["min"]))
        if i + 1 < len(groups):
            hi = min(hi, 0.5 * (g["max"] + groups[i + 1]["min"]))
        inside = (nodes >= lo) & (nodes <= hi)
        out.append(float(scale * (weights * inside).sum(axis=1).mean()))
    return out


def eigenvalue_groups(ev: np.ndarray, *, tau: float, lambdas, symmetry_zero_modes: int, rtol: float = DEFAULT_GROUP_RTOL,
                      shares: np.ndarray | None = None, names=None, computed: int | None = None) -> list[dict]:
    """Groups of numerically equal eigenvalues (module docstring), ascending by value.
    ``computed``: the number of eigenvalues in ``ev`` when they are a subset of the spectrum
    (Lanczos), so every multiplicity is marked a lower bound; None for a complete spectrum."""
    ev = np.asarray(ev, dtype=np.float64)
    order = np.argsort(ev)
    lam_min = float(min(lambdas))
    groups, cur = [], [order[0]] if ev.size else []
    for a, b in zip(order[:-1], order[1:]):
        if ev[b] - ev[a] <= rtol * max(abs(ev[a]), abs(ev[b]), lam_min):
            cur.append(b)
        else:
            groups.append(np.array(cur))
            cur = [b]
    if cur:
        groups.append(np.array(cur))
    out = []
    for g in groups:
        v = ev[g]
        rec = {"value": float(v.mean()), "min": float(v.min()), "max": float(v.max()), "multiplicity": int(g.size)}
        if np.all(np.abs(v) <= tau):
            rec["kind"] = "zero"
            rec["symmetry"] = int(min(symmetry_zero_modes, g.size))
            rec["excess"] = int(g.size - rec["symmetry"])
        elif any(abs(rec["value"] - lam) <= rtol * lam + 1e-3 * lam for lam in set(lambdas)):
            rec["kind"] = "bulk"
        else:
            rec["kind"] = "outlier"
        if shares is not None:
            rec["factor_shares"] = {n: float(s) for n, s in zip(names, shares[g].mean(axis=0))}
        if computed is not None:
            rec["multiplicity_is_lower_bound"] = True
            rec["computed"] = int(computed)
        out.append(rec)
    return out


# ----- the report -----------------------------------------------------------------------------------
def _factor_slices(spec: ModelSpec):
    o = spec.offsets
    return [(name, o[i], o[i + 1]) for i, name in enumerate(spec.factor_names)]


def inspect_spectrum(spec: ModelSpec, theta, settings: SpectrumSettings | None = None, *,
                     point_id: int | None = None, device="cpu", **overrides) -> SpectrumReport:
    """The structured spectrum of the point θ (P,) (module docstring), with ``settings`` (default
    :class:`SpectrumSettings`(); a study's: ``SpectrumSettings.from_analysis(cfg.analysis)``) and
    any field overridden by keyword, e.g. ``inspect_spectrum(spec, θ, dense_limit=10)``."""
    require_regularised(spec, "inspect_spectrum", "its zero threshold and its eigenvalue groups are "
                        "measured in units of λ")
    st = SpectrumSettings(**{**(settings or SpectrumSettings()).kwargs(), **overrides})
    tau, tau_rel, noise_mult, dense_limit = st.tau, st.tau_rel, st.noise_mult, st.dense_limit
    dense_budget_s, group_rtol, lanczos_k, seed = st.dense_budget_s, st.group_rtol, st.lanczos_k, st.seed
    slq_vectors, slq_steps, density_points, density_width = st.slq_vectors, st.slq_steps, st.density_points, st.density_width
    spec = spec.as_float64()
    th = as_theta64(spec, theta)
    P = spec.P
    timings = {}
    t = time.perf_counter()
    sym = symmetry_space(spec, th)
    method, why = choose_method(P, dense_limit, dense_budget_s, work=SPECTRUM_DENSE_WORK, matrices=5)
    names = spec.factor_names
    slices = _factor_slices(spec)
    shares = gn = res = None
    if method == "dense":
        H = dense_hessian(spec, th, device)
        timings["hessian_s"] = time.perf_counter() - t
        t = time.perf_counter()
        ev, V = symmetric_eigh(H)
        timings["eigh_s"] = time.perf_counter() - t
        rho = float(max(abs(ev[0]), abs(ev[-1])))
        tt = default_tau(spec, rho, tau_rel, noise_mult) if tau is None else float(tau)
        Q, _ = null_part(sym.basis, H @ sym.basis, tt)
        shares = np.stack([(V[a:b] ** 2).sum(axis=0) for _, a, b in slices], axis=1)
        blocks = {n: symmetric_eigh(H[a:b, a:b], vectors=False) for n, a, b in slices}
        t = time.perf_counter()
        model = DeepUFM(spec, device=device)
        thb = th.to(device).unsqueeze(0)
        G = model.gauss_newton_operator(thb).dense()[0].cpu().numpy()   # symmetrised
        gn = symmetric_eigh(G, vectors=False)
        res = symmetric_eigh(H - G, vectors=False)
        timings["gauss_newton_s"] = time.perf_counter() - t
        lo, hi = float(ev[0]), float(ev[-1])
        span = max(hi - lo, tt)
        grid = np.linspace(lo - 0.02 * span, hi + 0.02 * span, density_points)
        density = {"grid": grid, "values": exact_density(ev, grid, density_width * span)}
        s = Q.shape[1]
    else:
        mm = hessian_matmat(spec, th, device)
        t = time.perf_counter()
        big, _, _, _ = block_lanczos(mm, P, lanczos_k, which="LA", seed=seed, device=device)
        big = big.cpu().numpy()
        t_sym = default_tau(spec, abs(float(big[-1])), tau_rel, noise_mult) if tau is None else float(tau)
        HQ = mm(torch.from_numpy(sym.basis).to(device)).cpu().numpy() if sym.dimension else sym.basis
        Q, _ = null_part(sym.basis, HQ, t_sym)
        Qt = torch.from_numpy(np.ascontiguousarray(Q)).to(device)
        proj = (lambda W: W - Qt @ (Qt.T @ W)) if Q.shape[1] else (lambda W: W)
        small, _, _, _ = block_lanczos(lambda W: proj(mm(W)), P, lanczos_k, which="SA", project=proj, seed=seed + 1,
                                       device=device)
        small = small.cpu().numpy()
        rho = float(max(abs(small[0]), abs(big[-1])))
        tt = default_tau(spec, rho, tau_rel, noise_mult) if tau is None else float(tau)
        ev = np.sort(np.concatenate([small, big]))
        timings["lanczos_s"] = time.perf_counter() - t
        t = time.perf_counter()
        nodes, w = slq_nodes(lambda W: proj(mm(W)), P, vectors=slq_vectors, steps=slq_steps, seed=seed, project=proj,
                             device=device)
        lo, hi = float(small[0]), float(big[-1])
        span = max(hi - lo, tt)
        grid = np.linspace(lo - 0.02 * span, hi + 0.02 * span, density_points)
        s = Q.shape[1]
        density = {"grid": grid, "values": slq_density(nodes, w, grid, density_width * span, P - s)}
        timings["slq_s"] = time.perf_counter() - t
        t = time.perf_counter()
        blocks = {}
        for n, a, b in slices:  # per-factor blocks: dense when small enough, else their extremes
            m = b - a
            if m <= 5000:
                cols = []
                for j in range(0, m, 256):
                    k = min(256, m - j)
                    E = torch.zeros(P, k, dtype=torch.float64, device=device)
                    E[a + j + torch.arange(k), torch.arange(k)] = 1.0
                    cols.append(mm(E)[a:b].cpu().numpy())
                Hb = np.concatenate(cols, axis=1)
                blocks[n] = symmetric_eigh(0.5 * (Hb + Hb.T), vectors=False)
        timings["blocks_s"] = time.perf_counter() - t
    group_rtol = check_group_rtol(group_rtol)
    groups = eigenvalue_groups(ev, tau=tt, lambdas=spec.lambdas, symmetry_zero_modes=s, rtol=group_rtol,
                               shares=shares, names=names, computed=None if method == "dense" else int(ev.size))
    if method != "dense":
        counts = slq_window_counts(groups, nodes, w, P - s, 0.5 * density_width * span)
        for g, c in zip(groups, counts):
            g["estimated_count"] = c + (s if g["kind"] == "zero" else 0)
    thresholds = {"tau": tt, "tau_rel": tau_rel, "noise_mult": noise_mult, "group_rtol": group_rtol,
                  "method_reason": why, "lanczos_k": None if method == "dense" else lanczos_k,
                  "slq_vectors": None if method == "dense" else slq_vectors,
                  "slq_steps": None if method == "dense" else slq_steps, "density_width": density_width, "seed": seed}
    return SpectrumReport(point_id=point_id, P=P, method=method, eigenvalues=ev, symmetry_zero_modes=s, tau=tt,
                          blocks=blocks, groups=groups, density=density, gauss_newton=gn, residual=res,
                          factor_shares=shares, thresholds=thresholds, timings=timings)
