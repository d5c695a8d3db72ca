"""The continuous gauge symmetry of MODEL.md §5, batched: orbit tangents and their projector.

For each interface i between factor F_i (d rows) and F_{i+1} (d columns) and each generator
A = E_ab − E_ba of so(d) (a < b), the objective is constant along F_i → e^{sA}F_i,
F_{i+1} → F_{i+1}e^{−sA}, whose tangent at s = 0 is δF_i = A F_i (row a: F_i[b], row b: −F_i[a]),
δF_{i+1} = −F_{i+1}A (column a: F_{i+1}[:, b], column b: −F_{i+1}[:, a]), every other factor 0.
The linear model has L interfaces; with ReLU only H₁|W₁ (σ is never applied to H₁).

Differentiating L(e^{sA}θ) = L(θ) gives ⟨∇L, t⟩ = 0 for every tangent t at every θ, and twice,
tᵀHt = −⟨∇L, A²θ⟩: away from a critical point the orbit directions carry curvature O(‖∇L‖), of
either sign. :class:`GaugeProjector` removes their span, so that a Lanczos run on P H P sees only
the curvature across the orbit (:mod:`landscape.engines.curvature`).
"""
from __future__ import annotations

import torch

from .spec import ModelSpec


def gauge_interfaces(spec: ModelSpec) -> list[int]:
    """Interfaces i (between factor i and factor i+1, factors [H₁, W₁, …, W_L]) with an O(d) gauge:
    all L for the linear model, only 0 (H₁|W₁) with ReLU."""
    return list(range(spec.L)) if spec.activation == "linear" else [0]


def gauge_tangent_count(spec: ModelSpec) -> int:
    """T, the number of generator tangents per row: d(d−1)/2 per gauge interface."""
    return len(gauge_interfaces(spec)) * spec.d * (spec.d - 1) // 2


def gauge_tangents(spec: ModelSpec, factors: list[torch.Tensor]) -> torch.Tensor:
    """The generator tangents (B, T, P) at a batch given by its factors [(B, d, N), (B, d, d)…,
    (B, K, d)] (:meth:`landscape.core.model.DeepUFM.factors`), T = :func:`gauge_tangent_count`,
    in the flat layout of θ; generators ordered by interface, then (a, b) row-major."""
    B, d = factors[0].shape[0], spec.d
    a, b = torch.triu_indices(d, d, offset=1, device=factors[0].device)
    T_i = a.numel()
    blocks = []
    for i in gauge_interfaces(spec):
        parts = [torch.zeros(B, T_i, f.shape[1] * f.shape[2], dtype=f.dtype, device=f.device) for f in factors]
        Fi, Fn = factors[i], factors[i + 1]
        t = torch.arange(T_i, device=Fi.device)
        dFi = torch.zeros(B, T_i, *Fi.shape[1:], dtype=Fi.dtype, device=Fi.device)
        dFi[:, t, a] = Fi[:, b]
        dFi[:, t, b] = -Fi[:, a]
        FnT = Fn.transpose(1, 2)                               # (B, d, rows): row a is column a of F_{i+1}
        dFnT = torch.zeros(B, T_i, *FnT.shape[1:], dtype=Fn.dtype, device=Fn.device)
        dFnT[:, t, a] = FnT[:, b]
        dFnT[:, t, b] = -FnT[:, a]
        parts[i] = dFi.reshape(B, T_i, -1)
        parts[i + 1] = dFnT.transpose(2, 3).reshape(B, T_i, -1)
        blocks.append(torch.cat(parts, dim=2))
    return torch.cat(blocks, dim=1)


class GaugeProjector:
    """v ↦ v − Q Qᵀ v per row: the orthogonal projector onto the complement of the orbit's
    tangent space at a batch θ (B, P).

    Q (B, P, r) is an orthonormal basis of the span of :func:`gauge_tangents`, found from the
    eigen-decomposition of their Gram matrix: directions with Gram eigenvalue ≤ ``rtol``·largest
    are dropped (a tangent that vanishes or repeats others at a low-rank θ), so the rank r is
    found, not assumed. The operator is symmetric whatever the round-off in Q, so P H P is a
    compression of H: a Ritz value of P H P below −t proves an eigenvalue of H below −t/‖P‖².
    Cost: T²P per row to build (T = :func:`gauge_tangent_count`), 2rP per application.
    """

    def __init__(self, spec: ModelSpec, factors: list[torch.Tensor], rtol: float = 1e-10):
        Tg = gauge_tangents(spec, factors)                      # (B, T, P)
        G = Tg @ Tg.transpose(1, 2)                             # (B, T, T)
        w, V = torch.linalg.eigh(G)
        keep = w > rtol * w[:, -1:].clamp(min=torch.finfo(w.dtype).tiny)
        scale = torch.where(keep, w.clamp(min=torch.finfo(w.dtype).tiny).rsqrt(), torch.zeros_like(w))
        self.Q = Tg.transpose(1, 2) @ (V * scale[:, None, :])  # (B, P, T), zero columns dropped
        self.rank = keep.sum(dim=1)                             # (B,)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """P v for v (B, P)."""
        return v - (self.Q @ (self.Q.transpose(1, 2) @ v.unsqueeze(2))).squeeze(2)
