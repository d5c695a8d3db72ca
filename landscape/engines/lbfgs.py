"""Batched L-BFGS (two-loop recursion over the last ``memory`` pairs) with an Armijo backtracking
line search per trajectory (α = 1, ½, …, at most ``max_halvings`` halvings).

Every row writes its pair of iteration k into the same history slot k mod m, so the two-loop
recursion reads plain slices of the (B, m, P) history (no per-row gathers); k is a scalar field
of the state (all rows step together), so the engine itself holds no state. A row whose pair
fails the curvature test sᵀy > curvature_eps·‖s‖‖y‖ stores ρ = 0 there, which makes that slot a
no-op; a non-descent direction clears the row's history (ρ = 0 everywhere) and falls back to
−∇L. The initial scaling γ = sᵀy/yᵀy uses the row's last accepted pair; a row with none yet
takes a first step of length min(1, ‖∇L‖). Near convergence the Armijo decrease drops below the
float64 resolution of the loss; a step is then accepted if the loss rises by no more than
round-off (roundoff_mult·ε·|L|) and ‖∇L‖ falls. Fast; its basins are its own (FIELD.md).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..core.model import DeepUFM
from .linesearch import backtrack
from .options import LBFGSOptions  # noqa: F401  (re-exported: lbfgs.LBFGSOptions)
from .state import EngineState, scalar_field


@dataclass
class LBFGSState(EngineState):
    S: torch.Tensor = None      # (B, m, P) steps
    Yh: torch.Tensor = None     # (B, m, P) gradient changes
    rho: torch.Tensor = None    # (B, m) 1/sᵀy (0: empty or rejected slot)
    gamma: torch.Tensor = None  # (B,) initial Hessian scaling (0: none yet)
    k: int = scalar_field(0)    # iterations so far: the next pair goes to slot k mod m


def init(model: DeepUFM, s: EngineState, opts: LBFGSOptions) -> LBFGSState:
    B, P = s.theta.shape
    kw = {"dtype": s.theta.dtype, "device": s.theta.device}
    m = opts.memory
    return LBFGSState(**{k: getattr(s, k) for k in ("theta", "loss", "grad", "n_grad", "n_hvp")},
                      S=torch.zeros(B, m, P, **kw), Yh=torch.zeros(B, m, P, **kw), rho=torch.zeros(B, m, **kw),
                      gamma=torch.zeros(B, **kw), k=0)


def _direction(s: LBFGSState, m: int) -> torch.Tensor:
    g, S, Yh, rho = s.grad, s.S, s.Yh, s.rho
    q = g.clone()
    order = [(s.k - 1 - i) % m for i in range(min(s.k, m))]  # newest → oldest
    alphas = {}
    for j in order:
        a = rho[:, j] * (S[:, j] * q).sum(dim=1)
        alphas[j] = a
        q = q - a[:, None] * Yh[:, j]
    first = torch.clamp(1.0 / g.norm(dim=1).clamp(min=1e-300), max=1.0)
    r = torch.where(s.gamma > 0, s.gamma, first)[:, None] * q
    for j in reversed(order):
        b = rho[:, j] * (Yh[:, j] * r).sum(dim=1)
        r = r + (alphas[j] - b)[:, None] * S[:, j]
    return -r


def step(model: DeepUFM, s: LBFGSState, opts: LBFGSOptions) -> LBFGSState:
    theta, grad, loss = s.theta, s.grad, s.loss
    p = _direction(s, opts.memory)
    gp = (grad * p).sum(dim=1)
    bad = ~(gp < 0) | ~torch.isfinite(gp)
    # rows without a descent direction restart from steepest descent (no host synchronisation)
    p = torch.where(bad[:, None], -grad * torch.clamp(1.0 / grad.norm(dim=1).clamp(min=1e-300), max=1.0)[:, None], p)
    gp = torch.where(bad, (grad * p).sum(dim=1), gp)
    rho = torch.where(bad[:, None], torch.zeros_like(s.rho), s.rho)
    gamma = torch.where(bad, torch.zeros_like(s.gamma), s.gamma)
    gnorm = grad.norm(dim=1)
    roundoff = opts.roundoff_mult * float(np.finfo(np.float64).eps)

    def accept(idx, alpha, l_t, g_t):
        # Armijo, or (once the decrease is below float64 resolution of the loss) no increase
        # beyond round-off together with a smaller gradient.
        armijo = l_t <= loss[idx] + opts.armijo * alpha * gp[idx]
        flat = (l_t <= loss[idx] + roundoff * loss[idx].abs()) & (g_t.norm(dim=1) < gnorm[idx])
        return armijo | flat

    new_theta, new_loss, new_grad, n_grad = backtrack(model, s, p, opts.max_halvings, accept)
    sv, yv = new_theta - theta, new_grad - grad
    sy = (sv * yv).sum(dim=1)
    good = sy > opts.curvature_eps * sv.norm(dim=1) * yv.norm(dim=1)
    j = s.k % opts.memory
    S, Yh, rho = s.S.clone(), s.Yh.clone(), rho.clone()
    S[:, j], Yh[:, j] = sv, yv
    rho[:, j] = torch.where(good, 1.0 / torch.where(good, sy, torch.ones_like(sy)), torch.zeros_like(sy))
    gamma = torch.where(good, sy / (yv * yv).sum(dim=1).clamp(min=1e-300), gamma)
    return replace(s, theta=new_theta, loss=new_loss, grad=new_grad, n_grad=n_grad, S=S, Yh=Yh, rho=rho,
                   gamma=gamma, k=s.k + 1)
