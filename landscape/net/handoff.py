"""The hand-off from a trained network to the deep UFM: its head *is* a UFM point.

With the training set's features H₁ = backbone(X) ∈ ℝ^{d×N} (class-ordered columns) and the
head's W₁ … W_L, θ = [H₁, W₁, …, W_L] (row-major, :mod:`landscape.core.model`'s layout) is a point
of the deep UFM with K classes, n = n_train, width d, depth L, the head's activation, CE loss
and weight decay λ_H on H₁, λ_W on every W_l (:attr:`landscape.net.config.Regularisation.ufm_lambdas`).
Under ``ufm`` regularisation with a free backbone its UFM loss *equals* the network's regularised
loss (the same cross-entropy, the same two penalties). From there the study's engines run freely
in the UFM (features no longer tied to a backbone) to a certified critical point, analysed as
``landscape run`` analyses its points.
"""
from __future__ import annotations

import numpy as np
import torch

from ..core.model import DeepUFM, ModelSpec
from ..engines.driver import run_pipeline
from .config import NetConfig
from .model import BatchedNet


def ufm_spec(cfg: NetConfig, K: int, n: int) -> ModelSpec:
    """The float64 deep UFM the heads of ``cfg``'s networks are points of (K classes, n per class)."""
    lam_H, lam_W = cfg.reg.ufm_lambdas
    return ModelSpec(K=K, n=n, d=cfg.d, L=cfg.L, activation=cfg.activation, loss="ce", lam=lam_W,
                     lam_H=lam_H, lam_W=lam_W, dtype="float64")


def ufm_points(net: BatchedNet, X: torch.Tensor) -> torch.Tensor:
    """θ (S, P), float64 on the CPU: each seed's [H₁ = features of X, W₁, …, W_L] flattened row-major."""
    with torch.no_grad():
        H1 = net.features(X)
        parts = [H1] + [net.params[k] for k in net.head_names]
        return torch.cat([p.detach().reshape(net.S, -1) for p in parts], dim=1).to("cpu", torch.float64)


def ufm_losses(spec: ModelSpec, theta: torch.Tensor) -> np.ndarray:
    """The UFM loss (MODEL.md §2) of each row of θ (S, P)."""
    with torch.no_grad():
        return DeepUFM(spec).loss(theta).numpy()


def run_handoff(cfg: NetConfig, spec: ModelSpec, theta0: torch.Tensor, *, on_finished=None):
    """The ``[[handoff]]`` stages from every row of θ₀ (S, P) as one batch (:func:`run_pipeline`);
    returns (the :class:`TrajectoryResults`, the certified mask (S,): converged with
    ‖∇L‖ ≤ ``certify_tol``)."""
    model = DeepUFM(spec, device=cfg.device)
    res = run_pipeline(model, theta0.to(model.device), list(cfg.handoff), on_finished=on_finished)
    certified = res.converged & (res.grad_norm <= cfg.certify_tol)
    return res, certified
