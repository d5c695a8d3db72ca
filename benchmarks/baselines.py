"""Baselines the benchmarks measure against, side by side with the batched engines.

* :func:`sgd_baseline`: the plain loop a researcher would write: one trajectory at a time,
  ``torch.optim.SGD`` and autograd, single-threaded (its best case on small matrices).
* :func:`pele_quench`: pele's C++ L-BFGS (``pip install pele``, GPL: run as a baseline, never
  copied), one start at a time.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from landscape.core.model import DeepUFM


def single_threaded(fn):
    """Run a one-trajectory-at-a-time baseline with 1 torch thread: on tiny matrices a second
    thread only adds synchronisation (measured here: ~9x slower per step with 2 threads), so this
    is the baseline's best case."""
    def wrapped(*a, **k):
        n = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*a, **k)
        finally:
            torch.set_num_threads(n)
    return wrapped


@single_threaded
def sgd_baseline(model: DeepUFM, theta0: torch.Tensor, lr: float, steps: int) -> tuple[float, np.ndarray]:
    """One trajectory at a time with torch.optim.SGD; returns (seconds, final losses)."""
    spec = model.spec
    losses = []
    t = time.perf_counter()
    for th in theta0:
        params = [torch.nn.Parameter(f[0].clone()) for f in model.factors(th[None])]
        opt = torch.optim.SGD(params, lr=lr)
        Y = model.Y
        for _ in range(steps):
            opt.zero_grad()
            h = params[0]
            for W in params[1:-1]:
                h = W @ h
                if spec.activation == "relu":
                    h = torch.relu(h)
            Z = params[-1] @ h
            if spec.loss == "ce":
                g = torch.nn.functional.cross_entropy(Z.T, model.labels)
            else:
                g = ((Z - Y) ** 2).sum() / (2 * spec.N)
            loss = g + sum(0.5 * lam * (p ** 2).sum() for lam, p in zip(spec.lambdas, params))
            loss.backward()
            opt.step()
        losses.append(float(model.loss(torch.cat([p.detach().reshape(-1) for p in params])[None])[0]))
    return time.perf_counter() - t, np.array(losses)


@single_threaded
def pele_quench(model: DeepUFM, theta0: torch.Tensor, tol: float):
    """pele's C++ L-BFGS, one start at a time; returns (seconds, final θ (B,P), n_steps)."""
    from pele.optimize import lbfgs_cpp
    from pele.potentials import BasePotential

    class UFMPotential(BasePotential):
        def getEnergy(self, x):
            return float(model.loss(torch.from_numpy(x)[None])[0])

        def getEnergyGradient(self, x):
            loss, g = model.loss_and_grad(torch.from_numpy(x)[None])
            return float(loss[0]), g[0].numpy().copy()

    pot = UFMPotential()
    P = model.P
    out, steps = [], []
    t = time.perf_counter()
    for th in theta0:
        # pele stops when rms = ‖∇L‖/√P < tol: tol/√P is the same test as ‖∇L‖ < tol.
        r = lbfgs_cpp(th.numpy().copy(), pot, tol=tol / np.sqrt(P), nsteps=100000, M=10)
        out.append(np.asarray(r.coords))
        steps.append(r.nsteps)
    return time.perf_counter() - t, torch.from_numpy(np.array(out)), np.array(steps)
