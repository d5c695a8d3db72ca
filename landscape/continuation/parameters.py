"""The continuation parameter p and the weight decay it sets.

p is ``lambda`` (every factor's weight decay scaled together, λ_l = p·λ_l⁰/λ⁰), ``lambda_H``
(H₁'s only), ``lambda_W`` (the weights', scaled together) or ``ratio`` (λ_H = p·λ_W). Only the
regulariser depends on p, so ∂F/∂p = (dλ/dp)∘θ for F = ∇L. Torch-free.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..core.spec import ModelSpec
from ..core.validate import check_choice

#: The parameters continuation in λ follows (``landscape continue --param``).
PARAMS = ("lambda", "lambda_H", "lambda_W", "ratio")


def lambdas_at(spec: ModelSpec, param: str, p: float) -> np.ndarray:
    """Per-factor weight decay (L+1,) at parameter value p (module docstring)."""
    check_choice("param", param, PARAMS)
    lam = np.array(spec.lambdas, dtype=np.float64)
    if param == "lambda":
        return lam * (p / spec.lam if spec.lam_H is None and spec.lam_W is None else p / lam.mean())
    if param == "lambda_H":
        return np.concatenate([[p], lam[1:]])
    if param == "lambda_W":
        w = lam[1:]
        return np.concatenate([lam[:1], w * (p / w.mean())])
    return np.concatenate([[p * lam[1:].mean()], lam[1:]])


def param_value(spec: ModelSpec, param: str) -> float:
    """The parameter's value at the spec (the inverse of :func:`lambdas_at`)."""
    check_choice("param", param, PARAMS)
    lam = np.array(spec.lambdas, dtype=np.float64)
    if param == "lambda":
        return float(spec.lam if spec.lam_H is None and spec.lam_W is None else lam.mean())
    if param == "lambda_H":
        return float(lam[0])
    if param == "lambda_W":
        return float(lam[1:].mean())
    return float(lam[0] / lam[1:].mean())


def spec_at(spec: ModelSpec, param: str, p: float) -> ModelSpec:
    """``spec`` (in float64) with the weight decay of parameter value p."""
    lam = lambdas_at(spec, param, p)
    return replace(spec.as_float64(), lam=float(lam.mean()), lam_H=float(lam[0]), lam_W=tuple(float(x) for x in lam[1:]))
