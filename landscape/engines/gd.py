"""Full-batch gradient descent, θ ← θ − lr·∇L(θ): the paper's dynamics (lr 0.5).

One gradient evaluation per iteration and no host synchronisation: the step is three tensor
operations on the whole batch, so it is the engine the driver can run for many iterations
between synchronisations on a GPU.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from ..core.model import DeepUFM
from .options import GDOptions  # noqa: F401  (re-exported: gd.GDOptions)
from .state import EngineState


def init(model: DeepUFM, s: EngineState, opts: GDOptions) -> EngineState:
    return s


def step(model: DeepUFM, s: EngineState, opts: GDOptions) -> EngineState:
    theta = torch.add(s.theta, s.grad, alpha=-opts.lr)  # one pass over (B, P)
    loss, grad = model.loss_and_grad(theta)
    return replace(s, theta=theta, loss=loss, grad=grad, n_grad=s.n_grad + 1)
