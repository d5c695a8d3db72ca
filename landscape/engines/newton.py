"""Newton-MR (Roosta et al.): p = MINRES solution of H p = −∇L, then backtracking on ‖∇L‖².

Accept θ + αp (α = 1, ½, ¼, …, at most ``max_halvings`` halvings) once
‖∇L(θ+αp)‖² ≤ ‖∇L‖² + 2·armijo·α⟨Hp, ∇L⟩ (⟨Hp, ∇L⟩ from one more Hessian-vector product).
Steps longer than ``max_step`` are scaled to that length. A row that finds no acceptable α keeps
θ (and the driver eventually calls it stalled). Converges to critical points of any index: as a
main engine its fractions are those of a critical-point finder, not of a descent; as a finisher
the driver admits it only where the descent it finishes has no negative curvature. The singular
symmetry directions of H are handled by MINRES's minimum-norm solution.

``minres_forcing`` > 0 makes it an inexact Newton method (Eisenstat & Walker): row b's MINRES
stops at relative residual η_b = max(minres_rtol, min(0.5, minres_forcing·‖∇L_b‖)), so a solve
far from convergence is not carried to 1e-10; η ∝ ‖∇L‖ keeps the local convergence quadratic.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from ..core.linalg import minres_batched
from ..core.model import DeepUFM
from .linesearch import backtrack
from .options import NewtonOptions  # noqa: F401  (re-exported: newton.NewtonOptions)
from .state import EngineState


def init(model: DeepUFM, s: EngineState, opts: NewtonOptions) -> EngineState:
    return s


def step(model: DeepUFM, s: EngineState, opts: NewtonOptions) -> EngineState:
    op = model.hvp_operator(s.theta)
    rtol = opts.minres_rtol
    if opts.minres_forcing > 0:   # Eisenstat–Walker: η ∝ ‖∇L‖ keeps local convergence quadratic
        rtol = torch.clamp(opts.minres_forcing * s.grad.norm(dim=1), min=opts.minres_rtol, max=0.5)
    p, _, it = minres_batched(op, -s.grad, maxiter=opts.minres_iter, rtol=rtol, atol=opts.minres_atol,
                              host=getattr(model, "host_gradient", False))
    Hp = op(p)
    n_hvp = s.n_hvp + it + 1
    shrink = torch.clamp(opts.max_step / p.norm(dim=1).clamp(min=1e-300), max=1.0)
    p, Hp = p * shrink[:, None], Hp * shrink[:, None]
    g2 = (s.grad ** 2).sum(dim=1)
    slope = (Hp * s.grad).sum(dim=1)  # d/dα ½‖∇L(θ+αp)‖² at α = 0
    theta, loss, grad, n_grad = backtrack(
        model, s, p, opts.max_halvings,
        lambda idx, alpha, l_t, g_t: (g_t ** 2).sum(dim=1) <= g2[idx] + 2 * opts.armijo * alpha * slope[idx])
    return replace(s, theta=theta, loss=loss, grad=grad, n_grad=n_grad, n_hvp=n_hvp)
