"""Gradient flow dθ/dt = −∇L(θ), integrated by adaptive Dormand–Prince 5(4), one step size per row.

Error control per row: err = RMS over parameters of (θ₅ − θ₄)/(atol + rtol·max(|θ|, |θ_new|));
a step is accepted when err ≤ 1, and h ← h·clip(safety·err^{−1/5}, min_factor, max_factor).
Rejected rows keep their θ. Each iteration is one attempted step (6 gradient evaluations, FSAL).
Basin fractions from this engine follow the flow, not a step size (FIELD.md). No host
synchronisation inside a step.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..core.model import DeepUFM
from .options import FlowOptions  # noqa: F401  (re-exported: flow.FlowOptions)
from .state import EngineState

# Dormand–Prince 5(4) tableau (FSAL).
_DP_A = [[], [1 / 5], [3 / 40, 9 / 40], [44 / 45, -56 / 15, 32 / 9],
         [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
         [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
         [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84]]
_DP_B5 = [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0]
_DP_B4 = [5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40]


@dataclass
class FlowState(EngineState):
    h: torch.Tensor = None   # (B,) current step size
    t: torch.Tensor = None   # (B,) integrated time


def init(model: DeepUFM, s: EngineState, opts: FlowOptions) -> FlowState:
    B = s.batch_size
    kw = {"dtype": s.theta.dtype, "device": s.theta.device}
    return FlowState(**{k: getattr(s, k) for k in ("theta", "loss", "grad", "n_grad", "n_hvp")},
                     h=torch.full((B,), opts.h0, **kw), t=torch.zeros(B, **kw))


def step(model: DeepUFM, s: FlowState, opts: FlowOptions) -> FlowState:
    theta, h = s.theta, s.h[:, None]
    k = [-s.grad]
    for i in range(1, 7):
        y = theta + h * sum(a * kj for a, kj in zip(_DP_A[i], k) if a != 0.0)
        loss_i, grad_i = model.loss_and_grad(y)
        k.append(-grad_i)
    last_loss, last_grad, y5 = loss_i, grad_i, y
    err_vec = h * sum((b5 - b4) * kj for b5, b4, kj in zip(_DP_B5, _DP_B4, k) if b5 != b4)
    scale = opts.atol + opts.rtol * torch.maximum(theta.abs(), y5.abs())
    err = torch.sqrt(((err_vec / scale) ** 2).mean(dim=1))
    err = torch.where(torch.isfinite(err), err, torch.full_like(err, float("inf")))
    ok = err <= 1.0
    factor = torch.clamp(opts.safety * err.clamp(min=1e-10) ** -0.2, opts.min_factor, opts.max_factor)
    m = ok[:, None]
    return replace(s, theta=torch.where(m, y5, theta), loss=torch.where(ok, last_loss, s.loss),
                   grad=torch.where(m, last_grad, s.grad), t=s.t + torch.where(ok, s.h, torch.zeros_like(s.h)),
                   h=s.h * factor, n_grad=s.n_grad + 6)
