"""Full-batch gradient descent of S networks at once, each with its own stop reason.

One step: θ ← θ − lr·∇θ on the whole training set, for every seed still running (a stopped seed's
parameters stay where its rule stopped it; it still rides in the batch, with a zero step, so the
batch keeps its shape). Every ``check_every`` steps (the only host synchronisation) each running
seed is tested, in this order:

* ``diverged``: a non-finite loss or gradient;
* ``converged_grad``: ‖∇θ‖ ≤ ``grad_tol`` (Euclidean over every parameter of the seed);
* ``converged_loss``: the loss fell by less than ``loss_rtol``·|loss| over the last ``window``
  steps (a plateau: the rest of the descent would change the loss by less than that);
* ``max_iter``: the step budget is spent.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..engines.outcomes import TRAIN_STOP_REASONS, Outcome
from .model import BatchedNet

__all__ = ["TRAIN_STOP_REASONS", "TrainResult", "train"]


@dataclass
class TrainResult:
    """Per seed (arrays of length S): ``stop_reason``, ``iterations``, final ``loss`` (regularised),
    ``ce`` (mean cross-entropy), ``grad_norm``; ``history``: (iteration, losses (S,)) at each check;
    ``wall_time_s`` of the whole batch."""

    stop_reason: list[str]
    iterations: np.ndarray
    loss: np.ndarray
    ce: np.ndarray
    grad_norm: np.ndarray
    history: list[tuple[int, list[float]]] = field(default_factory=list)
    wall_time_s: float = 0.0


def train(net: BatchedNet, X: torch.Tensor, y: torch.Tensor, reg: dict, *, lr: float, max_iter: int,
          grad_tol: float, loss_rtol: float, window: int, check_every: int, on_check=None,
          resume: dict | None = None, on_checkpoint=None, checkpoint_every_s: float = 60.0) -> TrainResult:
    """Train ``net`` in place (see the module docstring); ``on_check(iteration, n_running)`` hears
    each check. ``window`` is rounded up to a multiple of ``check_every``.

    ``on_checkpoint(state)`` receives, at a check at most every ``checkpoint_every_s`` seconds, the
    loop's state (a dict of arrays: with the parameters, which are then those of that check)
    before the step; ``resume=state`` continues from it exactly (GD is deterministic: an
    interrupted run resumed from its last checkpoint ends where the uninterrupted one does)."""
    S = net.S
    params = list(net.params.values())
    running = torch.ones(S, dtype=torch.bool, device=net.device)
    reason = [""] * S
    iters = np.zeros(S, dtype=np.int64)
    last_loss = np.full(S, np.nan)
    last_ce = np.full(S, np.nan)
    last_gn = np.full(S, np.nan)
    hist: list[tuple[int, list[float]]] = []
    it, wall0 = 0, 0.0
    if resume is not None:
        it, wall0 = int(resume["iteration"]), float(resume["wall_time_s"])
        running = torch.as_tensor(np.asarray(resume["running"], dtype=bool), device=net.device)
        reason = [str(r) for r in resume["stop_reason"]]
        iters, last_loss, last_ce, last_gn = (np.array(resume[k]) for k in ("iterations", "loss", "ce", "grad_norm"))
        hist = [(int(i), [float(v) for v in row]) for i, row in zip(resume["history_iter"], resume["history_loss"])]
    lag = max(1, -(-window // check_every))
    t0 = time.perf_counter() - wall0
    t_saved = time.perf_counter()
    while True:
        loss, ce = net.objective(X, y, reg)
        grads = torch.autograd.grad(loss.sum(), params)
        check = it % check_every == 0 or it >= max_iter
        if check and resume is not None and it == int(resume["iteration"]):
            check, resume = False, None     # this check was made before the checkpoint was written
        if check:
            gn = torch.sqrt(sum((g.detach() ** 2).flatten(1).sum(dim=1) for g in grads))
            lv, cv, gv = (t.detach().cpu().numpy() for t in (loss, ce, gn))
            run = running.cpu().numpy()
            hist.append((it, [float(v) for v in lv]))
            for s in np.nonzero(run)[0]:
                last_loss[s], last_ce[s], last_gn[s], iters[s] = lv[s], cv[s], gv[s], it
                why = ""
                if not (np.isfinite(lv[s]) and np.isfinite(gv[s])):
                    why = Outcome.DIVERGED.value
                elif gv[s] <= grad_tol:
                    why = Outcome.CONVERGED_GRAD.value
                elif len(hist) > lag and hist[-1 - lag][1][s] - lv[s] < loss_rtol * abs(lv[s]):
                    why = Outcome.CONVERGED_LOSS.value
                elif it >= max_iter:
                    why = Outcome.MAX_ITER.value
                if why:
                    reason[s] = why
                    running[s] = False
            if on_check is not None:
                on_check(it, int(running.sum()))
            if not bool(running.any()):
                break
            if on_checkpoint is not None and time.perf_counter() - t_saved >= checkpoint_every_s:
                on_checkpoint({"iteration": it, "wall_time_s": time.perf_counter() - t0,
                               "running": running.cpu().numpy(), "stop_reason": np.array(reason),
                               "iterations": iters, "loss": last_loss, "ce": last_ce, "grad_norm": last_gn,
                               "history_iter": np.array([h[0] for h in hist]),
                               "history_loss": np.array([h[1] for h in hist])})
                t_saved = time.perf_counter()
        with torch.no_grad():
            mask = running.to(net.dtype)
            for p, g in zip(params, grads):
                p.sub_(lr * mask.view(-1, *([1] * (p.dim() - 1))) * g)
        it += 1
    return TrainResult(reason, iters, last_loss, last_ce, last_gn, hist, time.perf_counter() - t0)
