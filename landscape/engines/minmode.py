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

A row **converges** when ‖∇L‖ ≤ ``tol`` with exactly one mode below −t (μ₁ < −t ≤ μ₂); it is
then at an index-1 saddle to the engine's accuracy (the caller polishes it with Newton-MR and counts its index
from the exact spectrum). A row stops ``stalled`` when Δ < ``min_step`` and ``max_iter`` when its
budget runs out. Rows never mix: each row's trajectory is the one it has alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..core.linalg import lanczos_lowest, minres_batched
from ..core.model import DeepUFM
from ..core.thresholds import DEFAULT_TAU_REL
from .curvature import curvature_threshold
from .options import EngineOptions, integer, number
from .outcomes import Outcome

#: Seed of the random part of the first Lanczos start vector (the same on every device).
START_SEED = 20261202


@dataclass(frozen=True)
class MinModeOptions(EngineOptions):
    max_iter: int = integer(100, "iterations (each: one Lanczos estimate and one MINRES solve)")
    tol: float = number(1e-8, "‖∇L‖ at which a row with one negative mode has converged")
    lanczos_steps: int = integer(30, "Lanczos steps per lowest-mode estimate")
    minres_iter: int = integer(200, "MINRES iterations of the complement step")
    minres_rtol: float = number(1e-10, "MINRES relative residual tolerance")
    max_step: float = number(0.5, "largest step (trust radius, Euclidean norm)")
    min_step: float = number(1e-10, "a row whose trust radius falls below this has stalled")
    tau_rel: float = number(DEFAULT_TAU_REL, "a mode is negative below −max(tau_rel·min λ, grad_mult·‖∇L‖)")
    grad_mult: float = number(10.0, "(see tau_rel)")

    def describe(self) -> str:
        return f"min-mode following (Lanczos {self.lanczos_steps}, trust {self.max_step:g})"


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


def follow_min_mode(model: DeepUFM, theta0: torch.Tensor, opts: MinModeOptions | None = None) -> MinModeResults:
    """Run minimum-mode following (module docstring) from every row of ``theta0`` (B, P) until
    each row converges to an index-1 saddle or stops. ``model`` may carry per-row λ."""
    opts = opts or MinModeOptions()
    dev, dt = model.device, model.dtype
    theta = theta0.to(device=dev, dtype=dt).clone()
    B, P = theta.shape
    loss, grad = model.loss_and_grad(theta)
    r = torch.randn(P, generator=torch.Generator().manual_seed(START_SEED), dtype=torch.float64).to(dev, dt)
    rdir = r / r.norm()
    v = grad / grad.norm(dim=1, keepdim=True).clamp(min=torch.finfo(dt).tiny) + rdir[None]
    trust = torch.full((B,), opts.max_step, dtype=dt, device=dev)
    mu1 = torch.full((B,), float("nan"), dtype=dt, device=dev)
    mu2 = mu1.clone()
    reason = np.array([""] * B, dtype=object)
    iters = np.zeros(B, dtype=np.int64)
    n_hvp = np.zeros(B, dtype=np.int64)
    active = torch.arange(B, device=dev)
    for it in range(opts.max_iter + 1):
        if active.numel() == 0:
            break
        m = model.for_rows(active)
        th, g = theta[active], grad[active]
        op = m.hvp_operator(th)
        vals, V = lanczos_lowest(op, v[active] + 1e-2 * rdir[None], opts.lanczos_steps, vectors=2)
        k = vals.shape[1]
        vn, v2 = V[:, 0], (V[:, 1] if V.shape[1] > 1 else torch.zeros_like(V[:, 0]))
        l1 = vals[:, 0]
        l2 = vals[:, 1] if k > 1 else torch.full_like(l1, float("inf"))
        l2 = torch.where(torch.isfinite(l2), l2, torch.zeros_like(l2))
        mu1[active], mu2[active], v[active] = l1, l2, vn
        act_np = active.cpu().numpy()
        n_hvp[act_np] += k
        gn = g.norm(dim=1)
        t = curvature_threshold(m, gn, opts.tau_rel, opts.grad_mult)
        tau = opts.tau_rel * m.min_lambda(gn.shape[0])
        done = (gn <= opts.tol) & (l1 < -t) & (l2 >= -t)   # one negative mode, at a critical point
        neg, neg2 = l1 < -tau, l2 < -tau
        bad = ~torch.isfinite(gn) | ~torch.isfinite(l1)
        out_of_budget = torch.full_like(done, it >= opts.max_iter)
        small = trust[active] < opts.min_step
        stop = done | bad | out_of_budget | small
        if bool(stop.any()):
            sn = stop.cpu().numpy()
            rs = np.where(done.cpu().numpy(), Outcome.CONVERGED.value,
                          np.where(bad.cpu().numpy(), Outcome.DIVERGED.value,
                                   np.where(small.cpu().numpy(), Outcome.STALLED.value, Outcome.MAX_ITER.value)))
            reason[act_np[sn]] = rs[sn]
            keep = ~stop
            active, th, g, vn, v2, l1, l2, neg, neg2, gn, op = (
                active[keep], th[keep], g[keep], vn[keep], v2[keep], l1[keep], l2[keep], neg[keep], neg2[keep],
                gn[keep], None)
            if active.numel() == 0:
                break
            m = model.for_rows(active)
            op = m.hvp_operator(th)
        # ----- the step --------------------------------------------------------------------
        a = (g * vn).sum(dim=1)
        g_perp = g - a[:, None] * vn
        tr = trust[active]
        s_par = torch.where(neg, -a / torch.where(neg, l1, torch.ones_like(l1)),
                            tr * torch.where(a >= 0, torch.ones_like(a), -torch.ones_like(a)))
        sigma = torch.where(l2 < 0, 2 * l2, torch.zeros_like(l2))

        def perp(w, vn=vn):
            return w - (w * vn).sum(dim=1, keepdim=True) * vn

        def shifted(w, op=op, perp=perp, sigma=sigma):
            pw = perp(w)
            return perp(op(pw)) - sigma[:, None] * pw

        s_perp, _, mi = minres_batched(shifted, -g_perp, maxiter=opts.minres_iter, rtol=opts.minres_rtol,
                                       host=getattr(model, "host_gradient", False))
        s_perp = perp(s_perp)
        n_hvp[active.cpu().numpy()] += (mi + 1).cpu().numpy()
        s = s_par[:, None] * vn + s_perp
        # a second negative mode is descended by the shifted solve; at a critical point of index
        # ≥ 2 its gradient component vanishes, so a row whose gradient is already at the
        # tolerance is pushed down along it (by √tol: a change of O(tol) in the loss)
        b2 = (g * v2).sum(dim=1)
        kick = neg2 & (gn <= opts.tol * 1e2)
        push = torch.where(kick, -(opts.tol ** 0.5) * torch.where(b2 >= 0, torch.ones_like(b2), -torch.ones_like(b2)),
                           torch.zeros_like(b2))
        s = s + push[:, None] * v2
        sn_ = s.norm(dim=1)
        capped = sn_ > tr
        s = s * torch.where(capped, tr / sn_.clamp(min=torch.finfo(dt).tiny), torch.ones_like(sn_))[:, None]
        trial = th + s
        Hs = op(s)
        l_t, g_t = m.loss_and_grad(trial)
        n_hvp[active.cpu().numpy()] += 1
        gt = g_t.norm(dim=1)
        # trust region on the quadratic model of the gradient, ∇L(θ+s) ≈ ∇L + Hs (descending a
        # negative mode makes ‖∇L‖ grow, so ‖∇L‖ itself is no merit function here)
        err = (g_t - g - Hs).norm(dim=1) / torch.maximum(gn, gt).clamp(min=torch.finfo(dt).tiny)
        ok = torch.isfinite(l_t) & torch.isfinite(gt) & (err <= 1.0)
        acc = active[ok]
        theta[acc], loss[acc], grad[acc] = trial[ok], l_t[ok], g_t[ok]
        grow = ok & (err < 0.25) & capped
        trust[active] = torch.where(~ok, tr / 4, torch.where(grow, torch.clamp(2 * tr, max=opts.max_step), tr))
        iters[active.cpu().numpy()] += 1
    return MinModeResults(theta=theta.cpu(), loss=loss.detach().cpu().numpy().astype(np.float64),
                          grad_norm=grad.norm(dim=1).detach().cpu().numpy().astype(np.float64),
                          lowest=mu1.cpu().numpy(), second=mu2.cpu().numpy(), stop_reason=reason,
                          iterations=iters, n_hvp=n_hvp)
