"""The batched driver: runs one engine, or a pipeline of engines, until every row stops.

Every engine advances a (B, P) batch as one tensor computation. The driver keeps all per-row
bookkeeping (iteration counts, stall counters, stop reasons) in tensors on the model's device
and synchronises with the host only every ``sync_every`` iterations (1 on the CPU, where it costs
nothing; 32 on a GPU): a row that stops between synchronisations is frozen (its state no longer
changes, :meth:`~landscape.engines.state.EngineState.merge`), and at a synchronisation stopped
rows are written to the output and dropped from the working tensors, so finished trajectories
cost no further work. Results do not depend on ``sync_every`` except for the wall times.

Stop reasons (exactly one per trajectory, :data:`STOP_REASONS`):

* ``converged``: ‖∇L‖ ≤ ``tol``, below the row's loss ceiling if it has one, and — for a
  descent engine with ``curvature_check`` — no negative-curvature witness
  (:mod:`landscape.engines.curvature`): a row where one is found keeps running.
* ``max_iter``: the row's iteration budget ran out first.
* ``diverged``: the loss or gradient became non-finite, or the loss exceeded ``diverge_loss``.
  The row is frozen where it blew up; other rows are untouched (rows never mix).
* ``stalled``: for ``stall_window`` iterations neither has the loss fallen by more than
  ``stall_loss_rtol``·|L| nor has ‖∇L‖ reached a new minimum by a factor 1 − ``stall_rtol``.
  The detail says ``gradient_flat`` when ‖H∇L‖/‖∇L‖ ≤ ``flat_rtol`` (the gradient lies in a
  near-null direction of the Hessian, Frye et al.'s gradient-flat points) and ``plateau``
  otherwise. A plateau whose loss still falls is not a stall.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from ..core.model import DeepUFM
from ..core.validate import SpecError
from .curvature import curvature_threshold, negative_curvature
from .results import STOP_REASONS, TrajectoryResults
from .stage import ENGINES, StageConfig
from .state import EngineState

_CONVERGED, _MAX_ITER, _DIVERGED, _STALLED = range(4)
#: Stop detail of a row that stopped uncertified after a negative-curvature witness.
NEGATIVE_CURVATURE = "negative_curvature"


def default_sync_every(device: torch.device) -> int:
    """Iterations between host synchronisations: 1 on the CPU, 32 elsewhere."""
    return 1 if torch.device(device).type == "cpu" else 32


def run_engine(model: DeepUFM, theta0: torch.Tensor, cfg: StageConfig, *,
               on_status: Callable[[dict], None] | None = None,
               on_finished: Callable[[int], None] | None = None, t0: float | None = None,
               sync_every: int | None = None, loss_ceiling: torch.Tensor | None = None,
               iter_budget: torch.Tensor | None = None) -> TrajectoryResults:
    """Run one engine on a (B, P) batch until every row stops; see the module docstring.

    ``loss_ceiling`` (B,): a row converges only with a loss below its ceiling (used to continue a
    trajectory past a saddle it was finished at). ``iter_budget`` (B,): per-row iteration budget
    (default ``cfg.max_iter`` for every row). ``on_status(dict)`` hears the engine, iteration
    and active count at every synchronisation; ``on_finished(k)`` hears whenever k rows stop.
    """
    t0 = time.perf_counter() if t0 is None else t0
    engine = ENGINES[cfg.engine]
    dev = model.device
    sync_every = default_sync_every(dev) if sync_every is None else int(sync_every)
    theta0 = theta0.to(device=dev, dtype=model.dtype)
    B, P = theta0.shape
    kw_l = {"dtype": torch.long, "device": dev}
    kw_f = {"dtype": model.dtype, "device": dev}
    loss, grad = model.loss_and_grad(theta0)
    state = engine.init(model, EngineState(theta0.clone(), loss, grad, torch.ones(B, **kw_l), torch.zeros(B, **kw_l)),
                        cfg.options)
    rows = torch.arange(B, device=dev)
    iters = torch.zeros(B, **kw_l)
    budget = torch.full((B,), cfg.max_iter, **kw_l) if iter_budget is None else iter_budget.to(**kw_l).clone()
    ceiling = torch.full((B,), float("inf"), **kw_f) if loss_ceiling is None else loss_ceiling.to(**kw_f).clone()
    best_g = torch.full((B,), float("inf"), **kw_f)
    best_l = torch.full((B,), float("inf"), **kw_f)
    since_g = torch.zeros(B, **kw_l)
    since_l = torch.zeros(B, **kw_l)
    reason = torch.full((B,), -1, **kw_l)
    block_until = torch.zeros(B, **kw_l)
    backoff = torch.full((B,), cfg.curvature_backoff, **kw_l)
    witnesses = torch.zeros(B, **kw_l)
    first_small = torch.full((B,), -1, **kw_l)

    out_theta = theta0.detach().to("cpu").clone()
    out = {k: np.zeros(B) for k in ("loss", "grad_norm", "wall_time")}
    out.update({k: np.zeros(B, dtype=np.int64) for k in ("iterations", "n_grad", "n_hvp", "reason", "witnesses",
                                                          "first_small")})
    detail = np.array([""] * B, dtype=object)
    it = 0
    compact = True  # set at each synchronisation, after which every working row is running
    while True:
        # ----- stop conditions, on the device --------------------------------------------------
        running = reason < 0
        gn = state.grad.norm(dim=1)
        lv = state.loss
        diverged = ~torch.isfinite(lv) | ~torch.isfinite(gn) | (lv > cfg.diverge_loss)
        small = (gn <= cfg.tol) & ~diverged
        first_small = torch.where(small & (first_small < 0) & running, iters, first_small)
        conv = small & (lv < ceiling) & (iters >= block_until)
        improved_g = gn < best_g * (1 - cfg.stall_rtol)
        best_g = torch.where(improved_g & running, gn, best_g)
        since_g = torch.where(improved_g, torch.zeros_like(since_g), since_g + 1)
        l_thr = torch.where(torch.isfinite(best_l), best_l - cfg.stall_loss_rtol * best_l.abs(), best_l)
        improved_l = lv < l_thr
        best_l = torch.where(improved_l & running, lv, best_l)
        since_l = torch.where(improved_l, torch.zeros_like(since_l), since_l + 1)
        stalled = (since_g > cfg.stall_window) & (since_l > cfg.stall_window) & ~conv & ~diverged
        new = torch.full_like(reason, -1)
        new = torch.where(iters >= budget, torch.full_like(new, _MAX_ITER), new)
        new = torch.where(stalled, torch.full_like(new, _STALLED), new)
        new = torch.where(diverged, torch.full_like(new, _DIVERGED), new)
        new = torch.where(conv, torch.full_like(new, _CONVERGED), new)
        reason = torch.where(running, new, reason)

        # ----- host synchronisation: curvature tests, outputs, compaction ---------------------
        if it % sync_every == 0:
            if cfg.curvature_check:
                cand = (reason == _CONVERGED).nonzero().squeeze(1)
                if cand.numel():
                    thr = curvature_threshold(model, gn[cand], cfg.curvature_tau_rel, cfg.curvature_grad_mult)
                    neg, _ = negative_curvature(model, state.theta[cand], state.grad[cand], cfg.curvature_steps, thr)
                    state.n_hvp[cand] += cfg.curvature_steps
                    back = cand[neg]
                    reason[back] = -1
                    block_until[back] = iters[back] + backoff[back]
                    backoff[back] *= 2
                    witnesses[back] += 1
            done = reason >= 0
            if bool(done.any()):
                d_idx = done.nonzero().squeeze(1)
                g_rows = rows[d_idx].cpu()
                gi = g_rows.numpy()
                out_theta[g_rows] = state.theta[d_idx].detach().to("cpu")
                r_d = reason[d_idx]
                out["loss"][gi] = lv[d_idx].cpu().numpy()
                out["grad_norm"][gi] = gn[d_idx].cpu().numpy()
                out["reason"][gi] = r_d.cpu().numpy()
                out["iterations"][gi] = iters[d_idx].cpu().numpy()
                out["n_grad"][gi] = state.n_grad[d_idx].cpu().numpy()
                out["n_hvp"][gi] = state.n_hvp[d_idx].cpu().numpy()
                out["witnesses"][gi] = witnesses[d_idx].cpu().numpy()
                out["first_small"][gi] = first_small[d_idx].cpu().numpy()
                out["wall_time"][gi] = time.perf_counter() - t0
                st = (r_d == _STALLED).nonzero().squeeze(1)
                if st.numel():
                    th, g = state.theta[d_idx[st]], state.grad[d_idx[st]]
                    hg = model.hvp(th, g)
                    ratio = (hg.norm(dim=1) / g.norm(dim=1).clamp(min=1e-300)).cpu().numpy()
                    sgi = gi[st.cpu().numpy()]
                    out["n_hvp"][sgi] += 1
                    detail[sgi] = np.where(ratio <= cfg.flat_rtol, "gradient_flat", "plateau")
                bad = (r_d == _MAX_ITER) & (witnesses[d_idx] > 0)
                if bool(bad.any()):
                    detail[gi[bad.cpu().numpy()]] = NEGATIVE_CURVATURE
                if on_finished is not None:
                    on_finished(int(d_idx.numel()))
                keep = (~done).nonzero().squeeze(1)
                state = state.take(keep)
                rows, iters, budget, ceiling = rows[keep], iters[keep], budget[keep], ceiling[keep]
                best_g, best_l, since_g, since_l = best_g[keep], best_l[keep], since_g[keep], since_l[keep]
                reason, block_until, backoff = reason[keep], block_until[keep], backoff[keep]
                witnesses, first_small = witnesses[keep], first_small[keep]
            if rows.numel() == 0:
                break
            compact = True
            if on_status is not None:
                on_status({"engine": cfg.engine, "iteration": it, "active": int(rows.numel()),
                           "finished": int(B - rows.numel())})
        # ----- one step of every working row ----------------------------------------------------
        new_state = engine.step(model, state, cfg.options)
        if compact:  # just synchronised: every working row is running
            state = new_state
            iters = iters + 1
        else:
            active = reason < 0
            state = state.merge(active, new_state)
            iters = iters + active.long()
        compact = False
        it += 1
    return TrajectoryResults(
        theta=out_theta, loss=out["loss"], grad_norm=out["grad_norm"],
        stop_reason=np.array(STOP_REASONS, dtype=object)[out["reason"]], stop_detail=detail,
        iterations=out["iterations"], n_grad=out["n_grad"], n_hvp=out["n_hvp"], wall_time=out["wall_time"],
        last_stage=np.zeros(B, dtype=np.int64), stages=[cfg.settings()], handoff_theta=out_theta.clone(),
        main_iterations=out["iterations"].copy(), first_small=out["first_small"], witnesses=out["witnesses"])


def admit_to_next_stage(model: DeepUFM, res: TrajectoryResults, prev: StageConfig, nxt: StageConfig,
                        candidates: np.ndarray) -> np.ndarray:
    """Rows of ``candidates`` (indices into ``res``) that enter stage ``nxt``: converged in the
    previous stage, or stopped there (max_iter, stalled) with ‖∇L‖ ≤ ``nxt.entry_grad_norm``.
    After a descent stage with ``curvature_check``, a row that did not converge must also show no
    negative-curvature witness (a finisher may only shorten the last, locally convex stretch);
    rows turned away get the detail ``negative_curvature``."""
    conv = res.converged[candidates]
    ok = conv.copy()
    if nxt.entry_grad_norm is not None:
        ok |= np.isin(res.stop_reason[candidates], ("max_iter", "stalled")) & (res.grad_norm[candidates] <= nxt.entry_grad_norm)
    late = candidates[ok & ~conv]
    if prev.curvature_check and late.size:
        th = res.theta[torch.from_numpy(late)].to(device=model.device, dtype=model.dtype)
        _, g = model.loss_and_grad(th)
        thr = curvature_threshold(model, g.norm(dim=1), prev.curvature_tau_rel, prev.curvature_grad_mult)
        neg, _ = negative_curvature(model, th, g, prev.curvature_steps, thr)
        neg = neg.cpu().numpy()
        res.n_hvp[late] += prev.curvature_steps
        res.stop_detail[late[neg]] = NEGATIVE_CURVATURE
        ok[np.isin(candidates, late[neg])] = False
    return candidates[ok]


def run_pipeline(model: DeepUFM, theta0: torch.Tensor, stages: list[StageConfig], *,
                 on_status: Callable[[dict], None] | None = None,
                 on_finished: Callable[[int], None] | None = None, sync_every: int | None = None,
                 loss_ceiling: torch.Tensor | None = None, iter_budget: torch.Tensor | None = None) -> TrajectoryResults:
    """Run ``stages`` in turn on a (B, P) batch (e.g. GD, then Newton polish).

    Stage s+1 takes the rows :func:`admit_to_next_stage` admits; every other row keeps the stop
    reason it had. Counts and iterations add up over stages. ``loss_ceiling`` and
    ``iter_budget`` apply to the first stage (:func:`run_engine`). ``handoff_theta`` of the result
    is θ where the first stage ended. ``on_finished(k)`` counts trajectory-stages: a row that stops
    in a stage counts 1, and a row that skips the remaining stages counts those too
    (B·len(stages) in all).
    """
    if not stages:
        raise SpecError("stages is empty: a pipeline needs at least one engine stage")
    t0 = time.perf_counter()
    res = run_engine(model, theta0, stages[0], on_status=on_status, on_finished=on_finished, t0=t0,
                     sync_every=sync_every, loss_ceiling=loss_ceiling, iter_budget=iter_budget)
    for s_i, cfg in enumerate(stages[1:], start=1):
        cand = np.nonzero(res.last_stage == s_i - 1)[0]
        idx = admit_to_next_stage(model, res, stages[s_i - 1], cfg, cand)
        if on_finished is not None:
            on_finished((cand.size - idx.size) * (len(stages) - s_i))
        res.stages.append(cfg.settings())
        if idx.size == 0:
            continue
        sub = run_engine(model, res.theta[torch.from_numpy(idx)], cfg, on_status=on_status,
                         on_finished=on_finished, t0=t0, sync_every=sync_every)
        t = torch.from_numpy(idx)
        res.theta[t] = sub.theta
        for k in ("loss", "grad_norm", "stop_reason", "stop_detail", "wall_time"):
            getattr(res, k)[idx] = getattr(sub, k)
        for k in ("iterations", "n_grad", "n_hvp"):
            getattr(res, k)[idx] += getattr(sub, k)
        res.last_stage[idx] = s_i
    return res
