"""Batched Krylov solver: MINRES on B independent symmetric systems at once.

Used by the Newton-MR engines: each row solves H_b p_b = −g_b with only Hessian-vector products.
MINRES minimises ‖H p − b‖ over the Krylov space, so it copes with the singular (symmetry) and
indefinite (saddle) Hessians of the deep UFM; from p₀ = 0 on a consistent system it returns the
minimum-norm solution, which has no component along the symmetry null space.
"""
from __future__ import annotations

from typing import Callable

import torch


def minres_batched(matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, *,
                   maxiter: int = 200, rtol: float = 1e-10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Solve A_b x_b = b_b for every row b of ``b`` (B, P); ``matvec`` maps (B, P) → (B, P).

    Follows Paige & Saunders' MINRES (the recurrences of ``scipy.sparse.linalg.minres``), with
    per-row scalars. A row stops updating once its residual estimate ‖r‖ ≤ rtol·‖b‖, its Krylov
    space is exhausted, or ‖A r‖ ≤ rtol·‖A‖·‖r‖ (least-squares solution of an inconsistent system).

    Returns (x, residual_norm_estimate, iterations), shapes (B, P), (B,), (B,).
    """
    B, P = b.shape
    dt = b.dtype
    eps = torch.finfo(dt).eps
    x = torch.zeros_like(b)
    beta1 = b.norm(dim=1)
    active = beta1 > 0
    r1 = b.clone()
    r2 = b.clone()
    y = b.clone()
    oldb = torch.zeros(B, dtype=dt)
    beta = beta1.clone()
    dbar = torch.zeros(B, dtype=dt)
    epsln = torch.zeros(B, dtype=dt)
    phibar = beta1.clone()
    cs = -torch.ones(B, dtype=dt)
    sn = torch.zeros(B, dtype=dt)
    w = torch.zeros_like(b)
    w2 = torch.zeros_like(b)
    tnorm2 = torch.zeros(B, dtype=dt)
    iters = torch.zeros(B, dtype=torch.long)
    for itn in range(1, maxiter + 1):
        if not bool(active.any()):
            break
        safe_beta = torch.where(active & (beta > 0), beta, torch.ones_like(beta))
        v = y / safe_beta[:, None]
        y = matvec(v)
        if itn >= 2:
            y = y - (beta / torch.where(oldb > 0, oldb, torch.ones_like(oldb)))[:, None] * r1
        alfa = (v * y).sum(dim=1)
        y = y - (alfa / safe_beta)[:, None] * r2
        r1, r2 = r2, y
        oldb = beta
        beta = y.norm(dim=1)
        tnorm2 = tnorm2 + alfa ** 2 + oldb ** 2 + beta ** 2
        oldeps = epsln
        delta = cs * dbar + sn * alfa
        gbar = sn * dbar - cs * alfa
        epsln = sn * beta
        dbar = -cs * beta
        root = torch.hypot(gbar, dbar)
        gamma = torch.clamp(torch.hypot(gbar, beta), min=eps)
        cs = gbar / gamma
        sn = beta / gamma
        phi = cs * phibar
        phibar_new = sn * phibar
        w1, w2_new = w2, w
        w_new = (v - oldeps[:, None] * w1 - delta[:, None] * w2_new) / gamma[:, None]
        m = active[:, None]
        x = torch.where(m, x + phi[:, None] * w_new, x)
        w2 = torch.where(m, w2_new, w2)
        w = torch.where(m, w_new, w)
        arnorm = phibar * root
        phibar = torch.where(active, phibar_new, phibar)
        iters = iters + active.long()
        anorm = torch.sqrt(tnorm2)
        done = (phibar <= rtol * beta1) | (beta <= eps * anorm) | (arnorm <= rtol * anorm * phibar)
        active = active & ~done
    return x, phibar, iters
