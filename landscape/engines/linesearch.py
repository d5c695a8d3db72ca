"""Per-trajectory backtracking line search, shared by Newton-MR and L-BFGS."""
from __future__ import annotations

from typing import Callable

import torch

from ..core.model import DeepUFM
from .state import EngineState


def backtrack(model: DeepUFM, s: EngineState, p: torch.Tensor, max_halvings: int,
              accept: Callable) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Try θ + αp for α = 1, ½, ¼, … (at most ``max_halvings`` halvings) per row until
    ``accept(idx, alpha, loss, grad)`` holds for row idx at θ + αp (a non-finite loss never
    does). Only rows still searching are evaluated (one host synchronisation per trial). Rows that
    never accept keep θ.

    Returns (θ, loss, grad, n_grad) with the accepted values and the evaluation counts updated.
    """
    theta = s.theta
    B = theta.shape[0]
    alpha = torch.ones(B, dtype=theta.dtype, device=theta.device)
    todo = torch.ones(B, dtype=torch.bool, device=theta.device)
    new_theta, new_loss, new_grad = theta.clone(), s.loss.clone(), s.grad.clone()
    n_grad = s.n_grad.clone()
    for _ in range(max_halvings + 1):
        idx = todo.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        trial = theta[idx] + alpha[idx, None] * p[idx]
        l_t, g_t = model.for_rows(idx).loss_and_grad(trial)
        n_grad[idx] += 1
        ok = accept(idx, alpha[idx], l_t, g_t) & torch.isfinite(l_t)
        acc = idx[ok]
        new_theta[acc], new_loss[acc], new_grad[acc] = trial[ok], l_t[ok], g_t[ok]
        todo[acc] = False
        alpha[idx[~ok]] *= 0.5
    return new_theta, new_loss, new_grad, n_grad
