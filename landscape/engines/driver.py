"""The batched driver: runs one engine, or a pipeline of engines, until every row stops.

Every engine advances a (B, P) batch as one tensor computation. The driver keeps all per-row
bookkeeping (iteration counts, stall counters, stop reasons) in tensors on the model's device
and synchronises with the host only every ``sync_every`` iterations (1 on the CPU, where it costs
nothing; 32 on a GPU): a row that stops between synchronisations is frozen (its state no longer
changes, :meth:`~landscape.engines.state.EngineState.merge`), and at a synchronisation stopped
rows are written to the output and dropped from the working tensors, so finished trajectories
cost no further work. Results do not depend on ``sync_every`` except for the wall times.

Stop reasons (exactly one per trajectory, :data:`STOP_REASONS`, members of
:class:`~landscape.engines.outcomes.Outcome` with their messages; details
:class:`~landscape.engines.outcomes.Detail`):

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
  otherwise. A plateau whose loss still falls is not a stall. An engine may also stop a row
  itself (:meth:`~landscape.engines.state.EngineState.stuck`: min-mode following's trust radius
  below its floor), detail ``trust_region``.

An engine whose convergence asks more than ‖∇L‖ ≤ ``tol`` says so through its state's
:meth:`~landscape.engines.state.EngineState.stop_measure` (min-mode following: +inf unless the
point shows exactly one negative mode), and the per-row values it reports at the end through
:meth:`~landscape.engines.state.EngineState.outputs` (``TrajectoryResults.extras``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Callable

import numpy as np
import torch

from ..core.allocator import retain_freed_host_memory
from ..core.model import DeepUFM
from ..core.validate import SpecError
from .curvature import curvature_threshold, negative_curvature
from .outcomes import STOP_REASONS, Detail, Outcome
from .trajectories import TrajectoryResults
from .stage import ALL_ENGINES, BAND_ENGINES, StageConfig
from .state import EngineState

_CONVERGED, _MAX_ITER, _DIVERGED, _STALLED = (STOP_REASONS.index(o) for o in (
    Outcome.CONVERGED, Outcome.MAX_ITER, Outcome.DIVERGED, Outcome.STALLED))
#: Stop detail of a row that stopped uncertified after a negative-curvature witness.
NEGATIVE_CURVATURE = Detail.NEGATIVE_CURVATURE
#: The stored values of the stop codes (plain strings, as read back from a results folder).
_REASON_VALUES = np.array([o.value for o in STOP_REASONS], dtype=object)


def default_sync_every(device: torch.device) -> int:
    """Iterations between host synchronisations: 1 on the CPU, 32 elsewhere."""
    return 1 if torch.device(device).type == "cpu" else 32


@dataclass
class RowBook:
    """The driver's bookkeeping of the working rows, each field a (b,) tensor on the device:
    ``rows`` (index into the caller's batch), ``iters``, ``budget`` (iteration budget),
    ``ceiling`` (loss a converged row must be below), ``best_g``/``best_l`` (best ‖∇L‖ and loss
    so far) with ``since_g``/``since_l`` (iterations since they improved), ``reason`` (stop code,
    −1 while running), ``block_until`` (no convergence before this iteration: after a curvature
    witness), ``backoff`` (the next such wait), ``witnesses`` (negative-curvature witnesses
    found), ``first_small`` (first iteration with ‖∇L‖ ≤ tol, −1 before)."""

    rows: torch.Tensor
    iters: torch.Tensor
    budget: torch.Tensor
    ceiling: torch.Tensor
    best_g: torch.Tensor
    best_l: torch.Tensor
    since_g: torch.Tensor
    since_l: torch.Tensor
    reason: torch.Tensor
    block_until: torch.Tensor
    backoff: torch.Tensor
    witnesses: torch.Tensor
    first_small: torch.Tensor

    @classmethod
    def fresh(cls, rows: torch.Tensor, budget: torch.Tensor, ceiling: torch.Tensor, backoff: int,
              dtype: torch.dtype) -> "RowBook":
        """The book of rows joining now (``budget``, ``ceiling``: theirs, (k,))."""
        k, dev = rows.numel(), rows.device
        zl = torch.zeros(k, dtype=torch.long, device=dev)
        inf = torch.full((k,), float("inf"), dtype=dtype, device=dev)
        return cls(rows=rows, iters=zl.clone(), budget=budget, ceiling=ceiling, best_g=inf.clone(),
                   best_l=inf.clone(), since_g=zl.clone(), since_l=zl.clone(), reason=torch.full_like(zl, -1),
                   block_until=zl.clone(), backoff=torch.full_like(zl, backoff), witnesses=zl.clone(),
                   first_small=torch.full_like(zl, -1))

    def take(self, keep: torch.Tensor) -> "RowBook":
        return RowBook(**{f.name: getattr(self, f.name)[keep] for f in fields(self)})

    def cat(self, other: "RowBook") -> "RowBook":
        return RowBook(**{f.name: torch.cat([getattr(self, f.name), getattr(other, f.name)]) for f in fields(self)})


#: The fields of a :class:`RowBook` the stop rules read (:func:`_stop_rules` returns those it updates).
_STOP_READS = ("reason", "iters", "first_small", "ceiling", "block_until", "best_g", "since_g", "best_l", "since_l",
               "budget")


def check_stops(book: RowBook, state: EngineState, cfg: StageConfig, sel: torch.Tensor, *,
                host: bool | None = None) -> None:
    """Update ``book`` with the stop conditions of its running rows in ``sel`` (module
    docstring): convergence, divergence, stalling, the budget. ``host`` (default: on the CPU)
    runs the same element-wise rules in numpy on views of the same memory instead of torch:
    about 25 operations on (b,) vectors, whose per-operation overhead in torch was a sixth of a
    GD step at the default size (200 µs against 100 µs in numpy, B = 14–384)."""
    host = state.grad.device.type == "cpu" if host is None else host
    xp = np if host else torch
    f = {k: getattr(book, k).numpy() if host else getattr(book, k) for k in _STOP_READS}
    gn, lv, stuck = state.stop_measure(), state.loss, state.stuck()
    if host:
        gn, lv, sel = gn.numpy(), lv.numpy(), sel.numpy()
        stuck = None if stuck is None else stuck.numpy()
    with np.errstate(invalid="ignore"):   # inf − inf of a fresh row's best loss: not finite, as in torch
        out = _stop_rules(xp, f, gn, lv, sel, cfg, stuck)
    for k, v in out.items():
        setattr(book, k, torch.from_numpy(v) if host else v)


def _stop_rules(xp, f: dict, gn, lv, sel, cfg: StageConfig, stuck=None) -> dict:
    """The stop rules on arrays of namespace ``xp`` (numpy or torch): the updated book fields.
    ``gn``: the state's stop measure (‖∇L‖ for most engines); ``stuck``: rows the engine cannot
    advance (None: none)."""
    reason, iters = f["reason"], f["iters"]
    running = (reason < 0) & sel
    diverged = ~xp.isfinite(lv) | ~xp.isfinite(gn) | (lv > cfg.diverge_loss)
    small = (gn <= cfg.tol) & ~diverged
    first_small = xp.where(small & (f["first_small"] < 0) & running, iters, f["first_small"])
    conv = small & (lv < f["ceiling"]) & (iters >= f["block_until"])
    improved_g = gn < f["best_g"] * (1 - cfg.stall_rtol)
    best_g = xp.where(improved_g & running, gn, f["best_g"])
    since_g = xp.where(running, xp.where(improved_g, 0, f["since_g"] + 1), f["since_g"])
    best_l = f["best_l"]
    l_thr = xp.where(xp.isfinite(best_l), best_l - cfg.stall_loss_rtol * xp.abs(best_l), best_l)
    improved_l = lv < l_thr
    best_l = xp.where(improved_l & running, lv, best_l)
    since_l = xp.where(running, xp.where(improved_l, 0, f["since_l"] + 1), f["since_l"])
    stalled = (since_g > cfg.stall_window) & (since_l > cfg.stall_window)
    if stuck is not None:
        stalled = stalled | stuck
    stalled = stalled & ~conv & ~diverged
    new = xp.where(iters >= f["budget"], _MAX_ITER, -1)
    new = xp.where(stalled, _STALLED, new)
    new = xp.where(diverged, _DIVERGED, new)
    new = xp.where(conv, _CONVERGED, new)
    return {"first_small": first_small, "best_g": best_g, "since_g": since_g, "best_l": best_l, "since_l": since_l,
            "reason": xp.where(running, new, reason)}


def stage_witnesses(model: DeepUFM, theta: torch.Tensor, grad: torch.Tensor, cfg: StageConfig) -> torch.Tensor:
    """Negative-curvature witnesses (B,) bool at θ (B, P) with gradient ``grad``, by the test
    ``cfg`` sets out (its steps, threshold and gauge projection; :mod:`.curvature`)."""
    thr = curvature_threshold(model, grad.norm(dim=1), cfg.curvature_tau_rel, cfg.curvature_grad_mult,
                              cfg.curvature_gauge)
    return negative_curvature(model, theta, grad, cfg.curvature_steps, thr, cfg.curvature_gauge)[0]


def curvature_tests(model: DeepUFM, book: RowBook, state: EngineState, cfg: StageConfig) -> None:
    """Newly converged rows with a negative-curvature witness go back to running (after a wait
    that doubles each time), :mod:`landscape.engines.curvature`."""
    cand = (book.reason == _CONVERGED).nonzero().squeeze(1)
    if not cand.numel():
        return
    neg = stage_witnesses(model.for_rows(book.rows[cand]), state.theta[cand], state.grad[cand], cfg)
    state.n_hvp[cand] += cfg.curvature_steps
    back = cand[neg]
    book.reason[back] = -1
    book.block_until[back] = book.iters[back] + book.backoff[back]
    book.backoff[back] *= 2
    book.witnesses[back] += 1


def curvature_test_batch(width: int) -> int:
    """Converged rows that wait, frozen, for their negative-curvature test until this many have
    converged (or nothing else runs): an eighth of the working batch. Each test is a Lanczos run
    of ``curvature_steps`` Hessian-vector products whose cost at small P is per call, not per
    row (the default study: 351 tests of a few rows took 15 s of its 40 s)."""
    return max(1, width // 8)


class _Outputs:
    """The host-side results of every row of the caller's batch, filled as rows stop."""

    def __init__(self, theta0: torch.Tensor):
        B = theta0.shape[0]
        self.theta = theta0.detach().to("cpu").clone()
        self.arrays = {k: np.zeros(B) for k in ("loss", "grad_norm", "wall_time")}
        self.arrays.update({k: np.zeros(B, dtype=np.int64) for k in ("iterations", "n_grad", "n_hvp", "reason",
                                                                      "witnesses", "first_small")})
        self.detail = np.array([""] * B, dtype=object)
        self.extras: dict[str, np.ndarray] = {}

    def record(self, model: DeepUFM, cfg: StageConfig, book: RowBook, state: EngineState, d_idx: torch.Tensor,
               wall: float) -> None:
        """Write the working rows ``d_idx`` (stopped) out, with the detail of stalled ones."""
        out = self.arrays
        g_rows = book.rows[d_idx].cpu()
        gi = g_rows.numpy()
        self.theta[g_rows] = state.theta[d_idx].detach().to("cpu")
        r_d = book.reason[d_idx]
        out["loss"][gi] = state.loss[d_idx].cpu().numpy()
        out["grad_norm"][gi] = state.grad[d_idx].norm(dim=1).cpu().numpy()
        out["reason"][gi] = r_d.cpu().numpy()
        out["iterations"][gi] = book.iters[d_idx].cpu().numpy()
        out["n_grad"][gi] = state.n_grad[d_idx].cpu().numpy()
        out["n_hvp"][gi] = state.n_hvp[d_idx].cpu().numpy()
        out["witnesses"][gi] = book.witnesses[d_idx].cpu().numpy()
        out["first_small"][gi] = book.first_small[d_idx].cpu().numpy()
        out["wall_time"][gi] = wall
        for k, v in state.outputs().items():
            v = v[d_idx].detach().cpu().numpy()
            self.extras.setdefault(k, np.full((self.theta.shape[0],) + v.shape[1:], np.nan))[gi] = v
        stuck = state.stuck()
        if stuck is not None:   # stopped by the engine itself: no flatness test
            own = ((r_d == _STALLED) & stuck[d_idx]).cpu().numpy()
            self.detail[gi[own]] = Detail.TRUST_REGION.value
            r_d = torch.where(stuck[d_idx], torch.full_like(r_d, -1), r_d)
        st = (r_d == _STALLED).nonzero().squeeze(1)
        if st.numel() and cfg.engine not in BAND_ENGINES:   # a band is no point: no ‖H∇L‖ to read
            th, g = state.theta[d_idx[st]], state.grad[d_idx[st]]
            hg = model.for_rows(book.rows[d_idx[st]]).hvp(th, g)
            ratio = (hg.norm(dim=1) / g.norm(dim=1).clamp(min=1e-300)).cpu().numpy()
            sgi = gi[st.cpu().numpy()]
            out["n_hvp"][sgi] += 1
            self.detail[sgi] = np.where(ratio <= cfg.flat_rtol, Detail.GRADIENT_FLAT.value, Detail.PLATEAU.value)
        bad = (r_d == _MAX_ITER) & (book.witnesses[d_idx] > 0)
        if bool(bad.any()):
            self.detail[gi[bad.cpu().numpy()]] = NEGATIVE_CURVATURE.value

    def results(self, cfg: StageConfig) -> TrajectoryResults:
        out, B = self.arrays, self.theta.shape[0]
        return TrajectoryResults(
            theta=self.theta, loss=out["loss"], grad_norm=out["grad_norm"],
            stop_reason=_REASON_VALUES[out["reason"]], stop_detail=self.detail,
            iterations=out["iterations"], n_grad=out["n_grad"], n_hvp=out["n_hvp"], wall_time=out["wall_time"],
            last_stage=np.zeros(B, dtype=np.int64), stages=[cfg.settings()], handoff_theta=self.theta.clone(),
            main_iterations=out["iterations"].copy(), first_small=out["first_small"], witnesses=out["witnesses"],
            extras=self.extras)


def run_engine(model: DeepUFM, theta0: torch.Tensor, cfg: StageConfig, *,
               on_status: Callable[[dict], None] | None = None,
               on_finished: Callable[[int], None] | None = None, t0: float | None = None,
               sync_every: int | None = None, loss_ceiling: torch.Tensor | None = None,
               iter_budget: torch.Tensor | None = None, working_batch: int | None = None) -> TrajectoryResults:
    """Run one engine on a (B, P) batch until every row stops; see the module docstring.

    ``working_batch``: advance at most this many rows at a time; as rows stop, the next pending
    rows of ``theta0`` join at the following synchronisation (continuous batching: the batch
    stays at its efficient width while a unit's long tail runs, instead of shrinking). None: all
    B at once. Rows never mix, so the results do not depend on it beyond the round-off of batched
    kernels (a batch of another width may sum in another order).
    ``loss_ceiling`` (B,): a row converges only with a loss below its ceiling (used to continue a
    trajectory past a saddle it was finished at). ``iter_budget`` (B,): per-row iteration budget
    (default ``cfg.max_iter`` for every row). ``on_status(dict)`` hears the engine, iteration
    and active count at every synchronisation; ``on_finished(k)`` hears whenever k rows stop.
    """
    t0 = time.perf_counter() if t0 is None else t0
    engine = ALL_ENGINES[cfg.engine]
    dev = model.device
    if dev.type == "cpu":
        retain_freed_host_memory()  # the step's (B, P) temporaries reuse mapped pages (core.allocator)
    sync_every = default_sync_every(dev) if sync_every is None else int(sync_every)
    theta0 = theta0.to(device=dev, dtype=model.dtype)
    B, P = theta0.shape
    width = B if working_batch is None else max(1, min(int(working_batch), B))
    kw_l = {"dtype": torch.long, "device": dev}
    kw_f = {"dtype": model.dtype, "device": dev}
    all_budget = torch.full((B,), cfg.max_iter, **kw_l) if iter_budget is None else iter_budget.to(**kw_l).clone()
    all_ceiling = (torch.full((B,), float("inf"), **kw_f) if loss_ceiling is None
                   else loss_ceiling.to(**kw_f).clone())

    def fresh(idx: torch.Tensor) -> tuple[EngineState, RowBook]:
        """Engine state and book of the rows ``idx`` of theta0, joining now."""
        th = theta0[idx].clone()
        m = model.for_rows(idx)
        loss, grad = m.loss_and_grad(th)
        k = idx.numel()
        st = engine.init(m, EngineState(th, loss, grad, torch.ones(k, **kw_l), torch.zeros(k, **kw_l)), cfg.options)
        return st, RowBook.fresh(idx, all_budget[idx], all_ceiling[idx], cfg.curvature_backoff, model.dtype)

    def synchronise(state: EngineState, book: RowBook) -> tuple[EngineState, RowBook, bool]:
        """Curvature tests of converged rows, once :func:`curvature_test_batch` of them wait (or
        nothing else runs): until then they stay frozen in the batch, so a row a witness sends
        back resumes exactly where it converged, and the tests run as a few wide Lanczos
        batches instead of one narrow one per synchronisation. Stopped rows are written out
        and dropped. The flag: converged rows still wait for their test (the batch is not
        compact)."""
        done = book.reason >= 0
        waiting = False
        if cfg.curvature_check:
            conv = book.reason == _CONVERGED
            n_conv = int(conv.sum())
            if n_conv and (n_conv >= test_batch or not bool((book.reason < 0).any())):
                curvature_tests(model, book, state, cfg)
                done = book.reason >= 0
            else:
                done, waiting = done & ~conv, n_conv > 0
        if not bool(done.any()):
            return state, book, waiting
        d_idx = done.nonzero().squeeze(1)
        outputs.record(model, cfg, book, state, d_idx, time.perf_counter() - t0)
        if on_finished is not None:
            on_finished(int(d_idx.numel()))
        keep = (~done).nonzero().squeeze(1)
        return state.take(keep), book.take(keep), waiting

    outputs = _Outputs(theta0)
    test_batch = curvature_test_batch(width)
    state, book = fresh(torch.arange(width, device=dev))
    next_row = width
    it = 0
    compact = True  # set at each synchronisation: every working row is running (none waits for a test)
    while True:
        check_stops(book, state, cfg, torch.ones(state.batch_size, dtype=torch.bool, device=dev))
        if it % sync_every == 0:
            state, book, waiting = synchronise(state, book)
            while state.batch_size < width and next_row < B:  # refill from the pending rows
                idx = torch.arange(next_row, min(B, next_row + width - state.batch_size), device=dev)
                next_row += idx.numel()
                st_new, book_new = fresh(idx)
                n_old = state.batch_size
                state = state.cat(st_new) if n_old else st_new
                book = book.cat(book_new) if n_old else book_new
                sel = torch.arange(state.batch_size, device=dev) >= n_old
                check_stops(book, state, cfg, sel)  # newcomers are checked before their first step, as without refill
                state, book, waiting = synchronise(state, book)
            if state.batch_size == 0:
                break
            compact = not waiting
            working = model.for_rows(book.rows)   # the model of the working rows (per-row λ follows them)
            if on_status is not None:
                on_status({"engine": cfg.engine, "iteration": it, "active": int(state.batch_size),
                           "finished": int(next_row - state.batch_size)})
        # ----- one step of every working row ----------------------------------------------------
        new_state = engine.step(working, state, cfg.options)
        if compact:  # just synchronised: every working row is running
            state = new_state
            book.iters = book.iters + 1
        else:
            active = book.reason < 0
            state = state.merge(active, new_state)
            book.iters = book.iters + active.long()
        compact = False
        it += 1
    return outputs.results(cfg)


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
        ok |= np.isin(res.stop_reason[candidates], (Outcome.MAX_ITER, Outcome.STALLED)) \
            & (res.grad_norm[candidates] <= nxt.entry_grad_norm)
    late = candidates[ok & ~conv]
    if prev.curvature_check and late.size:
        th = res.theta[torch.from_numpy(late)].to(device=model.device, dtype=model.dtype)
        m = model.for_rows(torch.from_numpy(late))
        _, g = m.loss_and_grad(th)
        neg = stage_witnesses(m, th, g, prev).cpu().numpy()
        res.n_hvp[late] += prev.curvature_steps
        res.stop_detail[late[neg]] = NEGATIVE_CURVATURE.value
        ok[np.isin(candidates, late[neg])] = False
    return candidates[ok]


def run_pipeline(model: DeepUFM, theta0: torch.Tensor, stages: list[StageConfig], *,
                 on_status: Callable[[dict], None] | None = None,
                 on_finished: Callable[[int], None] | None = None, sync_every: int | None = None,
                 loss_ceiling: torch.Tensor | None = None, iter_budget: torch.Tensor | None = None,
                 working_batch: int | None = None) -> TrajectoryResults:
    """Run ``stages`` in turn on a (B, P) batch (e.g. GD, then Newton polish).

    Stage s+1 takes the rows :func:`admit_to_next_stage` admits; every other row keeps the stop
    reason it had. Counts and iterations add up over stages. ``loss_ceiling`` and
    ``iter_budget`` apply to the first stage; ``working_batch`` to every stage (:func:`run_engine`).
    ``handoff_theta`` of the result
    is θ where the first stage ended. ``on_finished(k)`` counts trajectory-stages: a row that stops
    in a stage counts 1, and a row that skips the remaining stages counts those too
    (B·len(stages) in all).
    """
    if not stages:
        raise SpecError("stages is empty: a pipeline needs at least one engine stage")
    t0 = time.perf_counter()
    res = run_engine(model, theta0, stages[0], on_status=on_status, on_finished=on_finished, t0=t0,
                     sync_every=sync_every, loss_ceiling=loss_ceiling, iter_budget=iter_budget,
                     working_batch=working_batch)
    for s_i, cfg in enumerate(stages[1:], start=1):
        cand = np.nonzero(res.last_stage == s_i - 1)[0]
        idx = admit_to_next_stage(model, res, stages[s_i - 1], cfg, cand)
        if on_finished is not None:
            on_finished((cand.size - idx.size) * (len(stages) - s_i))
        res.stages.append(cfg.settings())
        if idx.size == 0:
            continue
        sub = run_engine(model.for_rows(torch.from_numpy(idx)), res.theta[torch.from_numpy(idx)], cfg, on_status=on_status,
                         on_finished=on_finished, t0=t0, sync_every=sync_every, working_batch=working_batch)
        t = torch.from_numpy(idx)
        res.theta[t] = sub.theta
        for k in ("loss", "grad_norm", "stop_reason", "stop_detail", "wall_time"):
            getattr(res, k)[idx] = getattr(sub, k)
        for k in ("iterations", "n_grad", "n_hvp"):
            getattr(res, k)[idx] += getattr(sub, k)
        res.put_extras(idx, sub.extras)
        res.last_stage[idx] = s_i
    return res
