"""Oracles shared by the tests: the deep UFM's loss and factors in plain numpy, the DNC loss of
MODEL.md §6 solved with scipy, and autograd's gradient and Hessian-vector product of a model's own
loss — written outside the package, so tests hold the code to them."""
import numpy as np
import torch
from scipy.optimize import brentq


def grad_autograd(model, theta):
    """∇L (B, P) of ``model.loss`` (a :class:`landscape.core.model.DeepUFM`) at θ (B, P) by autograd
    through the loss: the reference for the hand-written gradient."""
    with torch.enable_grad():
        th = theta.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(model.loss(th).sum(), th)
    return g


def hvp_autograd(model, theta, v):
    """H(θ)v (B, P) by double back-propagation through ``model.loss`` (the model's own
    ``hvp_operator_autograd``, its fallback where no hand-written product applies)."""
    return model.hvp_operator_autograd(theta)(v)


def numpy_factors(theta, K, n, d, L):
    """[H₁ (d, N), W₁ … W_{L−1} (d, d), W_L (K, d)] of a flat θ, row-major (MODEL.md §1)."""
    shapes = [(d, K * n)] + [(d, d)] * (L - 1) + [(K, d)]
    F, i = [], 0
    for r, c in shapes:
        F.append(theta[i:i + r * c].reshape(r, c))
        i += r * c
    return F


def numpy_ufm_loss(theta, K, n, d, L, lam_H, lam_W, relu=False):
    """MODEL.md §2 written out: mean CE of Z = W_L σ(… W₁H₁) + (λ_H/2)‖H₁‖² + (λ_W/2)Σ‖W_l‖²."""
    N = K * n
    F = numpy_factors(theta, K, n, d, L)
    h = F[0]
    for W in F[1:-1]:
        h = W @ h
        if relu:
            h = np.maximum(h, 0)
    Z = F[-1] @ h
    y = np.repeat(np.arange(K), n)
    Zs = Z - Z.max(axis=0)
    ce = np.mean(np.log(np.exp(Zs).sum(axis=0)) - Zs[y, np.arange(N)])
    return ce + 0.5 * lam_H * np.sum(F[0] ** 2) + 0.5 * lam_W * sum(np.sum(W ** 2) for W in F[1:])


def dnc_loss_from_model_md(K, n, L, lam):
    """MODEL.md §6: the large root of λ n^{1/(L+1)} = α^{(L−1)/(L+1)}/(e^α + K − 1) and ℓ_DNC there."""
    from scipy.optimize import brentq

    f = lambda a: np.log(a) * (L - 1) / (L + 1) - np.log(np.exp(a) + K - 1) - np.log(lam * n ** (1 / (L + 1)))
    a = brentq(f, 1.0, 200.0)
    return np.log(1 + (K - 1) * np.exp(-a)) + lam * (L + 1) / 2 * (K - 1) * (a * np.sqrt(n)) ** (2 / (L + 1))
