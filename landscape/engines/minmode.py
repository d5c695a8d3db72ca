"""Minimum-mode following to index-1 saddles (transition states), batched.

Newton-MR converges to whatever critical point is near its start; from a band's climbing image at
the paper's size that is often a saddle of index 2–5. This engine instead climbs along the lowest
eigenvector of the Hessian and descends in its complement (hybrid eigenvector following as in
OPTIM and pele, with a partitioned rational-function shift in the complement, Baker 1986), so an
index-2 saddle is *not* a fixed point: its second negative mode is descended. Per row and
iteration:

1. the lowest eigenpair (μ₁, v) and the second Ritz value μ₂ of H(θ) by Lanczos with full
   reorthogonalisation (:func:`landscape.core.linalg.lanczos_lowest`), warm-started from the
   previous v;
2. with a = ∇L·v and g⊥ = ∇L − a v: along v the stationary point of the quadratic model,
   s∥ = −(a/μ₁) v, when μ₁ < −τ (a negative mode; τ = ``tau_rel``·min λ); otherwise a push
   uphill, s∥ = Δ·sign(a) v;
3. in the complement the shifted Newton step s⊥ = −(H⊥ − σ)⁺ g⊥ (MINRES on P⊥HP⊥ − σP⊥ with
   P⊥ = I − vvᵀ), σ = 2μ₂ when μ₂ < 0 (which makes every complement direction a descent
   direction: a second negative mode is descended, not climbed) and 0 otherwise; a row with
   μ₂ < −τ whose ‖∇L‖ is already within 100× the tolerance (beside a critical point of index ≥ 2,
   where the gradient has no component left to descend) is also pushed √tol down the second Ritz
   vector;
4. the step s∥ + s⊥ is capped at the trust radius Δ, with a trust region on the quadratic model
   of the gradient (descending a negative mode makes ‖∇L‖ grow, so ‖∇L‖ is no merit function):
   with e = ‖∇L(θ+s) − ∇L(θ) − Hs‖ / max(‖∇L(θ)‖, ‖∇L(θ+s)‖), a step with e > 1 is refused and Δ
   quartered; a capped step with e < ¼ doubles Δ (up to ``max_step``).

**Gauge directions.** The continuous symmetries make the Hessian singular along the orbit at a
critical point; away from one the orbit's curvature is O(‖∇L‖) (differentiate L(gθ) = L(θ)
twice), and the gradient is orthogonal to the orbit, so climbing a gauge direction moves
nothing (s∥ = −(a/μ₁)v with a = 0); in the complement the orbit is a null space of P⊥HP⊥, which
MINRES's minimum-norm solution leaves alone. Convergence counts a mode as negative only below
−t with t = max(τ, ``grad_mult``·‖∇L‖), the bound of the driver's curvature witnesses
(:mod:`landscape.engines.curvature`), so gauge modes never count.

An engine of the batched driver (:func:`landscape.engines.driver.run_engine`, engine
``"minmode"``): its state carries the lowest Ritz pair of the current point, so the driver's stop
rules read it. A row **converges** when ‖∇L‖ ≤ the stage's ``tol`` with exactly one mode below −t
(μ₁ < −t ≤ μ₂, :meth:`MinModeState.stop_measure`); it is then at an index-1 saddle to the engine's
accuracy (the caller polishes it with Newton-MR and counts its index from the exact spectrum). A
row stops ``stalled`` (detail ``trust_region``) when Δ < ``min_step``, ``diverged`` when its
gradient or lowest Ritz value is not finite, and ``max_iter`` when its budget runs out. Rows never
mix: each row's trajectory is the one it has alone. :func:`follow_min_mode` runs it alone.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..core.linalg import lanczos_lowest, minres_batched
from ..core.model import DeepUFM
from .curvature import curvature_threshold
from .driver import run_engine
from .options import MinModeOptions
from .outcomes import Outcome
from .stage import StageConfig
from .state import EngineState, scalar_field

__all__ = ["MinModeOptions", "MinModeResults", "MinModeState", "follow_min_mode", "init", "step"]

#: Seed of the random part of the first Lanczos start vector (the same on every device).
START_SEED = 20261202


def _random_direction(P: int, like: torch.Tensor) -> torch.Tensor:
    """The fixed unit vector (P,) mixed into every Lanczos start (seeded by :data:`START_SEED`)."""
    r = torch.randn(P, generator=torch.Generator().manual_seed(START_SEED), dtype=torch.float64).to(like)
    return r / r.norm()


@dataclass
class MinModeState(EngineState):
    """:class:`EngineState` plus, per row, the lowest Ritz pairs of H at ``theta``: ``v`` (B, P)
    the lowest Ritz vector, ``v2`` (B, P) the second (zero where Lanczos found one value),
    ``mu1``, ``mu2`` (B,) their values (μ₂ = 0 where it is not finite), ``trust`` (B,) the trust
    radius Δ, and ``residual`` (B,): ‖∇L‖ where exactly one mode lies below −t, the largest finite
    number where not, NaN where μ₁ is not finite (the driver's convergence and divergence measure)."""

    v: torch.Tensor = None
    v2: torch.Tensor = None
    mu1: torch.Tensor = None
    mu2: torch.Tensor = None
    trust: torch.Tensor = None
    residual: torch.Tensor = None
    min_step: float = scalar_field(0.0)

    def stop_measure(self) -> torch.Tensor:
        return self.residual

    def stuck(self) -> torch.Tensor:
        return self.trust < self.min_step

    def outputs(self) -> dict:
        return {"lowest": self.mu1, "second": self.mu2}


def _lowest_modes(model: DeepUFM, s: MinModeState, v0: torch.Tensor, opts: MinModeOptions) -> MinModeState:
    """``s`` with the lowest Ritz pairs at its θ (Lanczos from ``v0`` (B, P)) and the residual."""
    vals, V = lanczos_lowest(model.hvp_operator(s.theta), v0, opts.lanczos_steps, vectors=2)
    k = vals.shape[1]
    l1 = vals[:, 0]
    l2 = vals[:, 1] if k > 1 else torch.full_like(l1, float("inf"))
    l2 = torch.where(torch.isfinite(l2), l2, torch.zeros_like(l2))
    v2 = V[:, 1] if V.shape[1] > 1 else torch.zeros_like(V[:, 0])
    gn = s.grad.norm(dim=1)
    t = curvature_threshold(model, gn, opts.tau_rel, opts.grad_mult)
    one = (l1 < -t) & (l2 >= -t)   # one negative mode
    residual = torch.where(one | ~torch.isfinite(gn), gn, torch.full_like(gn, torch.finfo(gn.dtype).max))
    residual = torch.where(torch.isfinite(l1), residual, torch.full_like(gn, float("nan")))
    return replace(s, v=V[:, 0], v2=v2, mu1=l1, mu2=l2, residual=residual, n_hvp=s.n_hvp + k)


def init(model: DeepUFM, s: EngineState, opts: MinModeOptions) -> MinModeState:
    """The state at the start: Lanczos from the normalised gradient plus the fixed random direction."""
    g = s.grad
    rdir = _random_direction(g.shape[1], g)
    v0 = g / g.norm(dim=1, keepdim=True).clamp(min=torch.finfo(g.dtype).tiny) + rdir[None]
    trust = torch.full((g.shape[0],), opts.max_step, dtype=g.dtype, device=g.device)
    st = MinModeState(s.theta, s.loss, s.grad, s.n_grad, s.n_hvp, trust=trust, min_step=opts.min_step)
    return _lowest_modes(model, st, v0 + 1e-2 * rdir[None], opts)


def step(model: DeepUFM, s: MinModeState, opts: MinModeOptions) -> MinModeState:
    """One trust-region step (module docstring, 2–4), then the lowest modes at the new point,
    Lanczos warm-started from the current lowest vector."""
    th, g, vn, v2, l1, l2, tr = s.theta, s.grad, s.v, s.v2, s.mu1, s.mu2, s.trust
    dt = th.dtype
    gn = g.norm(dim=1)
    tau = opts.tau_rel * model.min_lambda(gn.shape[0])
    neg, neg2 = l1 < -tau, l2 < -tau
    op = model.hvp_operator(th)
    a = (g * vn).sum(dim=1)
    g_perp = g - a[:, None] * vn
    s_par = torch.where(neg, -a / torch.where(neg, l1, torch.ones_like(l1)),
                        tr * torch.where(a >= 0, torch.ones_like(a), -torch.ones_like(a)))
    sigma = torch.where(l2 < 0, 2 * l2, torch.zeros_like(l2))

    def perp(w):
        return w - (w * vn).sum(dim=1, keepdim=True) * vn

    def shifted(w):
        pw = perp(w)
        return perp(op(pw)) - sigma[:, None] * pw

    s_perp, _, mi = minres_batched(shifted, -g_perp, maxiter=opts.minres_iter, rtol=opts.minres_rtol,
                                   host=getattr(model, "host_gradient", False))
    s_perp = perp(s_perp)
    d = s_par[:, None] * vn + s_perp
    # a second negative mode is descended by the shifted solve; at a critical point of index
    # ≥ 2 its gradient component vanishes, so a row whose gradient is already small is pushed
    # down along it (by √push_tol: a change of O(push_tol) in the loss)
    b2 = (g * v2).sum(dim=1)
    kick = neg2 & (gn <= opts.push_tol * 1e2)
    push = torch.where(kick, -(opts.push_tol ** 0.5) * torch.where(b2 >= 0, torch.ones_like(b2), -torch.ones_like(b2)),
                       torch.zeros_like(b2))
    d = d + push[:, None] * v2
    dn = d.norm(dim=1)
    capped = dn > tr
    d = d * torch.where(capped, tr / dn.clamp(min=torch.finfo(dt).tiny), torch.ones_like(dn))[:, None]
    trial = th + d
    Hd = op(d)
    l_t, g_t = model.loss_and_grad(trial)
    gt = g_t.norm(dim=1)
    # trust region on the quadratic model of the gradient, ∇L(θ+s) ≈ ∇L + Hs (descending a
    # negative mode makes ‖∇L‖ grow, so ‖∇L‖ itself is no merit function here)
    err = (g_t - g - Hd).norm(dim=1) / torch.maximum(gn, gt).clamp(min=torch.finfo(dt).tiny)
    ok = torch.isfinite(l_t) & torch.isfinite(gt) & (err <= 1.0)
    grow = ok & (err < 0.25) & capped
    trust = torch.where(~ok, tr / 4, torch.where(grow, torch.clamp(2 * tr, max=opts.max_step), tr))
    moved = replace(s, theta=torch.where(ok[:, None], trial, th), loss=torch.where(ok, l_t, s.loss),
                    grad=torch.where(ok[:, None], g_t, g), trust=trust, n_grad=s.n_grad + 1,
                    n_hvp=s.n_hvp + mi + 2)
    return _lowest_modes(model, moved, vn + 1e-2 * _random_direction(th.shape[1], th)[None], opts)


@dataclass
class MinModeResults:
    """Per row: ``theta`` (B, P) final point (CPU), ``loss``, ``grad_norm``, ``lowest`` (μ₁, the
    lowest Ritz value at the end), ``second`` (μ₂), ``stop_reason`` (:class:`~landscape.engines.outcomes.Outcome`
    values: converged, max_iter, stalled, diverged), ``iterations`` and ``n_hvp`` (numpy arrays)."""

    theta: torch.Tensor
    loss: np.ndarray
    grad_norm: np.ndarray
    lowest: np.ndarray
    second: np.ndarray
    stop_reason: np.ndarray
    iterations: np.ndarray
    n_hvp: np.ndarray

    @property
    def converged(self) -> np.ndarray:
        return self.stop_reason == Outcome.CONVERGED


def follow_min_mode(model: DeepUFM, theta0: torch.Tensor, opts: MinModeOptions | None = None, *,
                    max_iter: int = 100, tol: float = 1e-8) -> MinModeResults:
    """Run minimum-mode following (module docstring) from every row of ``theta0`` (B, P) until
    each row converges to an index-1 saddle (‖∇L‖ ≤ ``tol``, one negative mode) or stops, at most
    ``max_iter`` iterations: the ``"minmode"`` engine in the batched driver, with no stall window
    and no curvature test (it climbs on purpose). ``model`` may carry per-row λ."""
    opts = opts or MinModeOptions()
    cfg = StageConfig(engine="minmode", options=opts, max_iter=max_iter, tol=tol, stall_window=max_iter + 1,
                      curvature_check=False, entry_grad_norm=None)
    res = run_engine(model, theta0, cfg, sync_every=1)   # a stopped row leaves the batch at once, on a GPU too
    return MinModeResults(theta=res.theta, loss=res.loss.astype(np.float64), grad_norm=res.grad_norm,
                          lowest=res.extras["lowest"], second=res.extras["second"],
                          stop_reason=res.stop_reason.astype(str).astype(object), iterations=res.iterations,
                          n_hvp=res.n_hvp)
