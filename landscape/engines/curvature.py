"""Negative-curvature witnesses: does the Hessian at θ have an eigenvalue below −t?

A descent dynamics does not end at a saddle, so before a descent trajectory counts as converged
(or is handed to a finisher such as the Newton polish, which converges to critical points of
any index) the driver asks this question for every row at once: ``steps`` Lanczos iterations on
the batched Hessian-vector product (:func:`landscape.core.linalg.lanczos_ritz_values`) from a
fixed start vector (the normalised gradient plus a seeded random vector). A Ritz value below −t
*proves* an eigenvalue below −t (up to O(ε‖H‖)); not finding one proves nothing, which is why the
study also checks the Hessian index of every certified end point it stores.
"""
from __future__ import annotations

import torch

from ..core.operators import GaugeProjectorOperator
from ..core.linalg import lanczos_ritz_values
from ..core.model import DeepUFM
from ..core.spec import require_regularised

#: Seed of the random part of the Lanczos start vector (the same for every row and device).
START_SEED = 20251201


def start_vectors(theta: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Lanczos start vectors (B, P): ĝ + r̂ with ĝ the unit gradient and r̂ one unit random vector
    drawn on the host with :data:`START_SEED` (so every device starts from the same vector)."""
    P = theta.shape[1]
    r = torch.randn(P, generator=torch.Generator().manual_seed(START_SEED), dtype=torch.float64)
    r = (r / r.norm()).to(device=theta.device, dtype=theta.dtype)
    g = grad / grad.norm(dim=1, keepdim=True).clamp(min=torch.finfo(grad.dtype).tiny)
    return g + r.unsqueeze(0)


def curvature_threshold(model: DeepUFM, grad_norm: torch.Tensor, tau_rel: float, grad_mult: float,
                        gauge: bool = False) -> torch.Tensor:
    """t = max(tau_rel·min_l λ_l, grad_mult·‖∇L‖) per row (B,) (λ of the row where the model has
    per-row λ): τ is the analysis' zero threshold
    (landscape.analysis.hessian); the ‖∇L‖ term covers the symmetry-orbit directions, whose
    curvature away from a critical point is O(‖∇L‖) (differentiate L(gθ) = L(θ) twice).
    ``gauge``: the witness projects those directions out (:func:`negative_curvature`), so
    t = tau_rel·min_l λ_l alone. Refused for a model with λ = 0 and no per-row λ: its floor would
    be 0 (round-off would prove negative curvature); a λ = 0 study runs its descents without the
    test (:mod:`landscape.study.lambda0`)."""
    if getattr(model, "row_lambdas", None) is None and hasattr(model, "spec"):   # (duck-typed models have no spec)
        require_regularised(model.spec, "the negative-curvature test (curvature_check)", "its threshold is "
                            "tau_rel·min λ; set curvature_check = false")
    floor = tau_rel * model.min_lambda(grad_norm.shape[0])
    return floor.expand_as(grad_norm).clone() if gauge else torch.maximum(grad_mult * grad_norm, floor)


def negative_curvature(model: DeepUFM, theta: torch.Tensor, grad: torch.Tensor, steps: int,
                       threshold: torch.Tensor, gauge: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(witness (B,) bool, smallest Ritz value (B,)): witness[b] when a Ritz value of the Hessian
    at θ_b falls below −threshold[b]. Costs ``steps`` Hessian-vector products per row.

    ``gauge``: Lanczos on ``P @ H @ P``, P the projector across the symmetry orbit at θ
    (:class:`landscape.core.operators.GaugeProjectorOperator`, T²P per row to build): the orbit directions'
    O(‖∇L‖) curvature no longer masks a saddle's, and a witness still proves negative curvature
    of H itself (P H P is a compression of H)."""
    if theta.shape[0] == 0:
        empty = torch.zeros(0, dtype=theta.dtype, device=theta.device)
        return empty.bool(), empty
    op = model.hvp_operator(theta)
    v0 = start_vectors(theta, grad)
    if gauge:
        proj = GaugeProjectorOperator(model, theta)
        op, v0 = proj @ op @ proj, proj @ v0
    rmin = lanczos_ritz_values(op, v0, steps)[:, 0]
    return rmin < -threshold, rmin
