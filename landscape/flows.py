"""Trajectory engines, batched over B trajectories, and their stop reasons.

Every engine advances a (B, P) batch of parameter vectors as one tensor computation. The driver
(:func:`run_engine`) keeps a per-trajectory *active* set: a trajectory that stops is written to
the output and removed from the working tensors, so finished trajectories cost no further work.

Stop reasons (exactly one per trajectory):

* ``converged``: ‖∇L‖ ≤ ``tol`` (default 1e-10 in float64).
* ``max_iter``: the iteration budget ran out first.
* ``diverged``: the loss or gradient became non-finite, or the loss exceeded ``diverge_loss``.
  The row is frozen where it blew up; other rows are untouched (rows never mix).
* ``stalled``: ‖∇L‖ has not reached a new minimum (by a factor 1 − ``stall_rtol``) for
  ``stall_window`` iterations. The detail says ``gradient_flat`` when ‖H∇L‖/‖∇L‖ ≤ ``flat_rtol``
  (the gradient lies in a near-null direction of the Hessian, Frye et al.'s gradient-flat points)
  and ``plateau`` otherwise.

Engines (``ENGINES``): ``gd`` (fixed learning rate), ``flow`` (adaptive Dormand–Prince 5(4)
integration of dθ/dt = −∇L with per-trajectory error control), ``newton`` (Newton-MR: MINRES on
H p = −∇L with a backtracking line search on ‖∇L‖², which converges to critical points of any
index; the same engine polishes nearly converged trajectories), and ``lbfgs`` (batched L-BFGS with
a per-trajectory Armijo backtracking line search; fast, its basins are its own).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, asdict
from typing import Callable

import numpy as np
import torch

from .linalg import minres_batched
from .model import DeepUFM, SpecError, check_number

STOP_REASONS = ("converged", "max_iter", "diverged", "stalled")
_CONVERGED, _MAX_ITER, _DIVERGED, _STALLED = range(4)


# ----------------------------------------------------------------------------------------------
# Engine settings
# ----------------------------------------------------------------------------------------------
def _positive(name: str, value, integer: bool = False):
    """A finite number > 0 (:func:`landscape.model.check_number`); with ``integer``, one with an
    integral value ≥ 1 (5, 5.0 or 1e2), returned as int."""
    if not integer:
        return check_number(name, value)
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and value >= 1 and float(value).is_integer()):
        raise SpecError(f"{name}={value!r} is invalid: must be an integer >= 1")
    return int(value)


@dataclass(frozen=True)
class StageConfig:
    """One engine run inside a pipeline, with every tolerance it uses.

    ``engine`` is one of ``ENGINES``. ``tol`` is the gradient-norm tolerance at which a trajectory
    counts as converged for this stage. ``entry_grad_norm``: for every stage after the first, the
    trajectories that enter are those that converged in the previous stage, or stopped (max_iter,
    stalled) with ‖∇L‖ ≤ this value; ``None`` admits only converged ones.
    Engine parameters: ``lr`` (gd), ``rtol``/``atol``/``h0`` (flow), ``minres_iter``/
    ``minres_rtol``/``max_step`` (newton), ``memory`` (lbfgs).
    """

    engine: str = "gd"
    max_iter: int = 10000
    tol: float = 1e-10
    lr: float = 0.5
    rtol: float = 1e-6
    atol: float = 1e-9
    h0: float = 0.1
    minres_iter: int = 200
    minres_rtol: float = 1e-10
    max_step: float = 1.0
    memory: int = 10
    stall_window: int = 1000
    stall_rtol: float = 1e-3
    flat_rtol: float = 1e-3
    diverge_loss: float = 1e8
    entry_grad_norm: float | None = 1e-3

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise SpecError(f"engine={self.engine!r} is invalid: must be one of {tuple(ENGINES)}")
        for f in ("max_iter", "minres_iter", "memory", "stall_window"):
            object.__setattr__(self, f, _positive(f, getattr(self, f), integer=True))
        for f in ("tol", "lr", "rtol", "atol", "h0", "minres_rtol", "max_step", "stall_rtol",
                  "flat_rtol", "diverge_loss"):
            object.__setattr__(self, f, _positive(f, getattr(self, f)))
        if self.entry_grad_norm is not None:
            object.__setattr__(self, "entry_grad_norm", _positive("entry_grad_norm", self.entry_grad_norm))

    def settings(self) -> dict:
        """The parameters that matter for this engine (what a result is labelled with)."""
        keys = {"gd": ["lr"], "flow": ["rtol", "atol", "h0"], "newton": ["minres_iter", "minres_rtol", "max_step"],
                "lbfgs": ["memory"]}[self.engine]
        common = ["max_iter", "tol", "stall_window", "stall_rtol", "flat_rtol", "diverge_loss", "entry_grad_norm"]
        d = asdict(self)
        return {"engine": self.engine, **{k: d[k] for k in keys + common}}

    def describe(self) -> str:
        s = self.settings()
        if self.engine == "gd":
            return f"gd(lr={s['lr']:g})"
        if self.engine == "flow":
            return f"flow(dopri5, rtol={s['rtol']:g})"
        if self.engine == "newton":
            return "newton-mr"
        return f"lbfgs(m={s['memory']})"


# ----------------------------------------------------------------------------------------------
# Engines: init(model, theta, loss, grad) -> state; step(model, state) -> state.
# State is a dict of tensors with a leading batch dimension (so the driver can drop rows);
# it always holds theta, loss, grad, n_grad and n_hvp.
# ----------------------------------------------------------------------------------------------
class GradientDescent:
    """θ ← θ − lr ∇L(θ): full-batch gradient descent (the paper's dynamics, lr 0.5)."""

    def __init__(self, cfg: StageConfig):
        self.lr = cfg.lr

    def init(self, model, state):
        return state

    def step(self, model: DeepUFM, s: dict) -> dict:
        theta = s["theta"] - self.lr * s["grad"]
        loss, grad = model.loss_and_grad(theta)
        return {**s, "theta": theta, "loss": loss, "grad": grad, "n_grad": s["n_grad"] + 1}


# Dormand–Prince 5(4) tableau (FSAL).
_DP_C = [0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0]
_DP_A = [[], [1 / 5], [3 / 40, 9 / 40], [44 / 45, -56 / 15, 32 / 9],
         [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
         [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
         [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84]]
_DP_B5 = [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0]
_DP_B4 = [5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40]


class GradientFlow:
    """Adaptive Dormand–Prince 5(4) integration of dθ/dt = −∇L(θ), one step size per trajectory.

    Error control per row: err = RMS over parameters of (θ₅ − θ₄)/(atol + rtol·max(|θ|, |θ_new|));
    a step is accepted when err ≤ 1, and h ← h·clip(0.9·err^{−1/5}, 0.2, 5). Rejected rows keep
    their θ. Each iteration is one attempted step (6 gradient evaluations, FSAL).
    Basin fractions from this engine follow the flow, not a step size (FIELD.md).
    """

    def __init__(self, cfg: StageConfig):
        self.rtol, self.atol, self.h0 = cfg.rtol, cfg.atol, cfg.h0

    def init(self, model, s):
        B = s["theta"].shape[0]
        return {**s, "h": torch.full((B,), self.h0, dtype=s["theta"].dtype), "t": torch.zeros(B, dtype=s["theta"].dtype)}

    def step(self, model: DeepUFM, s: dict) -> dict:
        theta, h = s["theta"], s["h"][:, None]
        k = [-s["grad"]]
        last_loss = last_grad = None
        for i in range(1, 7):
            y = theta + h * sum(a * kj for a, kj in zip(_DP_A[i], k) if a != 0.0)
            loss_i, grad_i = model.loss_and_grad(y)
            k.append(-grad_i)
            if i == 6:
                last_loss, last_grad, y5 = loss_i, grad_i, y
        err_vec = h * sum((b5 - b4) * kj for b5, b4, kj in zip(_DP_B5, _DP_B4, k) if b5 != b4)
        scale = self.atol + self.rtol * torch.maximum(theta.abs(), y5.abs())
        err = torch.sqrt(((err_vec / scale) ** 2).mean(dim=1))
        err = torch.where(torch.isfinite(err), err, torch.full_like(err, float("inf")))
        ok = err <= 1.0
        factor = torch.clamp(0.9 * err.clamp(min=1e-10) ** -0.2, 0.2, 5.0)
        m = ok[:, None]
        return {**s,
                "theta": torch.where(m, y5, theta),
                "loss": torch.where(ok, last_loss, s["loss"]),
                "grad": torch.where(m, last_grad, s["grad"]),
                "t": s["t"] + torch.where(ok, s["h"], torch.zeros_like(s["h"])),
                "h": s["h"] * factor,
                "n_grad": s["n_grad"] + 6}


def backtrack(model: DeepUFM, s: dict, p: torch.Tensor, max_halvings: int, accept) -> tuple:
    """Per-trajectory backtracking along p (B, P): try α = 1, ½, ¼, … (at most ``max_halvings``
    halvings) until ``accept(idx, alpha, loss, grad)`` holds for row idx at θ + αp (a non-finite
    loss never does). Only rows still searching are evaluated. Rows that never accept keep θ.

    Returns (θ, loss, grad, n_grad) with the accepted values and the evaluation counts updated.
    """
    theta = s["theta"]
    alpha = torch.ones(theta.shape[0], dtype=theta.dtype)
    todo = torch.ones(theta.shape[0], dtype=torch.bool)
    new_theta, new_loss, new_grad = theta.clone(), s["loss"].clone(), s["grad"].clone()
    n_grad = s["n_grad"].clone()
    for _ in range(max_halvings + 1):
        idx = todo.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        trial = theta[idx] + alpha[idx, None] * p[idx]
        l_t, g_t = model.loss_and_grad(trial)
        n_grad[idx] += 1
        ok = accept(idx, alpha[idx], l_t, g_t) & torch.isfinite(l_t)
        acc = idx[ok]
        new_theta[acc], new_loss[acc], new_grad[acc] = trial[ok], l_t[ok], g_t[ok]
        todo[acc] = False
        alpha[idx[~ok]] *= 0.5
    return new_theta, new_loss, new_grad, n_grad


class NewtonMR:
    """Newton-MR (Roosta et al.): p = MINRES solution of H p = −∇L, then backtracking on ‖∇L‖².

    Accept θ + αp (α = 1, ½, ¼, … at most 30 halvings) once ‖∇L(θ+αp)‖² ≤ ‖∇L‖² + 2ρα⟨Hp, ∇L⟩
    with ρ = 1e-4 (⟨Hp, ∇L⟩ from one more Hessian-vector product, Hp). Steps longer
    than ``max_step`` are scaled to that length. A row that finds no acceptable α keeps θ (and the
    driver eventually calls it stalled). Converges to critical points of any index; the singular
    symmetry directions of H are handled by MINRES's minimum-norm solution.
    """

    RHO = 1e-4

    def __init__(self, cfg: StageConfig):
        self.minres_iter, self.minres_rtol, self.max_step = cfg.minres_iter, cfg.minres_rtol, cfg.max_step

    def init(self, model, s):
        return s

    def step(self, model: DeepUFM, s: dict) -> dict:
        theta, grad = s["theta"], s["grad"]
        op = model.hvp_operator(theta)
        p, _, it = minres_batched(op, -grad, maxiter=self.minres_iter, rtol=self.minres_rtol)
        Hp = op(p)
        n_hvp = s["n_hvp"] + it + 1
        pn = p.norm(dim=1)
        shrink = torch.clamp(self.max_step / pn.clamp(min=1e-300), max=1.0)
        p, Hp = p * shrink[:, None], Hp * shrink[:, None]
        g2 = (grad ** 2).sum(dim=1)
        slope = (Hp * grad).sum(dim=1)  # d/dα ½‖∇L(θ+αp)‖² at α = 0
        new_theta, new_loss, new_grad, n_grad = backtrack(
            model, s, p, 30,
            lambda idx, alpha, l_t, g_t: (g_t ** 2).sum(dim=1) <= g2[idx] + 2 * self.RHO * alpha * slope[idx])
        return {**s, "theta": new_theta, "loss": new_loss, "grad": new_grad, "n_grad": n_grad, "n_hvp": n_hvp}


class LBFGS:
    """Batched L-BFGS (two-loop recursion over the last ``memory`` pairs) with an Armijo
    backtracking line search per trajectory (c₁ = 1e-4, α = 1, ½, …, at most 40 halvings).

    Every row writes its pair of iteration k into the same history slot k mod m, so the two-loop
    recursion reads plain slices of the (B, m, P) history (no per-row gathers). A row whose pair
    fails the curvature test sᵀy > 1e-12·‖s‖‖y‖ stores ρ = 0 there, which makes that slot a no-op;
    a non-descent direction clears the row's history (ρ = 0 everywhere) and falls back to −∇L.
    The initial scaling γ = sᵀy/yᵀy uses the row's last accepted pair; a row with none yet takes
    a first step of length min(1, ‖∇L‖).
    Near convergence the Armijo decrease drops below the float64 resolution of the loss; a step is
    then accepted if the loss rises by no more than round-off (64·eps·|L|) and ‖∇L‖ falls.
    """

    C1 = 1e-4
    ROUNDOFF = 64 * float(np.finfo(np.float64).eps)

    def __init__(self, cfg: StageConfig):
        self.m = cfg.memory
        self.k = 0  # iterations so far: the slot of the next pair is k mod m, the same for every row

    def init(self, model, s):
        B, P = s["theta"].shape
        dt = s["theta"].dtype
        self.k = 0
        return {**s, "S": torch.zeros(B, self.m, P, dtype=dt), "Yh": torch.zeros(B, self.m, P, dtype=dt),
                "rho": torch.zeros(B, self.m, dtype=dt), "gamma": torch.zeros(B, dtype=dt)}

    def _direction(self, s):
        g, S, Yh, rho = s["grad"], s["S"], s["Yh"], s["rho"]
        q = g.clone()
        order = [(self.k - 1 - i) % self.m for i in range(min(self.k, self.m))]  # newest → oldest
        alphas = {}
        for j in order:
            a = rho[:, j] * (S[:, j] * q).sum(dim=1)
            alphas[j] = a
            q = q - a[:, None] * Yh[:, j]
        first = torch.clamp(1.0 / g.norm(dim=1).clamp(min=1e-300), max=1.0)
        r = torch.where(s["gamma"] > 0, s["gamma"], first)[:, None] * q
        for j in reversed(order):
            b = rho[:, j] * (Yh[:, j] * r).sum(dim=1)
            r = r + (alphas[j] - b)[:, None] * S[:, j]
        return -r

    def step(self, model: DeepUFM, s: dict) -> dict:
        theta, grad, loss = s["theta"], s["grad"], s["loss"]
        p = self._direction(s)
        gp = (grad * p).sum(dim=1)
        bad = ~(gp < 0) | ~torch.isfinite(gp)
        rho, gamma = s["rho"], s["gamma"]
        if bool(bad.any()):
            p = torch.where(bad[:, None], -grad * torch.clamp(1.0 / grad.norm(dim=1).clamp(min=1e-300), max=1.0)[:, None], p)
            gp = (grad * p).sum(dim=1)
            rho = torch.where(bad[:, None], torch.zeros_like(rho), rho)
            gamma = torch.where(bad, torch.zeros_like(gamma), gamma)
        gnorm = grad.norm(dim=1)

        def accept(idx, alpha, l_t, g_t):
            # Armijo, or (once the decrease is below float64 resolution of the loss) no increase
            # beyond round-off together with a smaller gradient.
            armijo = l_t <= loss[idx] + self.C1 * alpha * gp[idx]
            flat = (l_t <= loss[idx] + self.ROUNDOFF * loss[idx].abs()) & (g_t.norm(dim=1) < gnorm[idx])
            return armijo | flat

        new_theta, new_loss, new_grad, n_grad = backtrack(model, s, p, 40, accept)
        sv = new_theta - theta
        yv = new_grad - grad
        sy = (sv * yv).sum(dim=1)
        good = sy > 1e-12 * sv.norm(dim=1) * yv.norm(dim=1)
        j = self.k % self.m
        S, Yh, rho = s["S"].clone(), s["Yh"].clone(), rho.clone()
        S[:, j], Yh[:, j] = sv, yv
        rho[:, j] = torch.where(good, 1.0 / torch.where(good, sy, torch.ones_like(sy)), torch.zeros_like(sy))
        gamma = torch.where(good, sy / (yv * yv).sum(dim=1).clamp(min=1e-300), gamma)
        self.k += 1
        return {**s, "theta": new_theta, "loss": new_loss, "grad": new_grad, "n_grad": n_grad,
                "S": S, "Yh": Yh, "rho": rho, "gamma": gamma}


ENGINES: dict[str, type] = {"gd": GradientDescent, "flow": GradientFlow, "newton": NewtonMR, "lbfgs": LBFGS}


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------
@dataclass
class TrajectoryResults:
    """End states of B trajectories (row b ↔ trajectory b of the input batch).

    ``theta`` (B, P) final parameters; ``loss``, ``grad_norm`` (B,) float64; ``stop_reason`` (B,)
    strings from ``STOP_REASONS``; ``stop_detail`` (B,) ``gradient_flat``/``plateau`` for stalled
    rows, else ''; ``iterations``, ``n_grad``, ``n_hvp`` (B,) summed over stages; ``wall_time``
    (B,) seconds from the start of the batch to the row's final stop; ``stages`` the settings of
    every stage that ran; ``last_stage`` (B,) index of the stage that decided the stop.
    """

    theta: torch.Tensor
    loss: np.ndarray
    grad_norm: np.ndarray
    stop_reason: np.ndarray
    stop_detail: np.ndarray
    iterations: np.ndarray
    n_grad: np.ndarray
    n_hvp: np.ndarray
    wall_time: np.ndarray
    last_stage: np.ndarray
    stages: list = field(default_factory=list)

    def __len__(self):
        return self.theta.shape[0]

    @property
    def converged(self) -> np.ndarray:
        return self.stop_reason == "converged"

    def counts(self) -> dict:
        return {r: int((self.stop_reason == r).sum()) for r in STOP_REASONS}

    def row(self, b: int) -> dict:
        """JSON-safe record of trajectory b (without θ)."""
        return {"loss": float(self.loss[b]), "grad_norm": float(self.grad_norm[b]),
                "stop_reason": str(self.stop_reason[b]), "stop_detail": str(self.stop_detail[b]),
                "iterations": int(self.iterations[b]), "n_grad": int(self.n_grad[b]), "n_hvp": int(self.n_hvp[b]),
                "wall_time": float(self.wall_time[b]), "last_stage": int(self.last_stage[b])}


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------
def run_engine(model: DeepUFM, theta0: torch.Tensor, cfg: StageConfig, *,
               on_status: Callable[[dict], None] | None = None,
               on_finished: Callable[[int], None] | None = None, t0: float | None = None) -> TrajectoryResults:
    """Run one engine on a (B, P) batch until every row stops; see the module docstring.

    ``on_status(dict)`` hears the engine, iteration and active count once per iteration;
    ``on_finished(k)`` hears whenever k rows stop.
    """
    t0 = time.perf_counter() if t0 is None else t0
    engine = ENGINES[cfg.engine](cfg)
    theta0 = theta0.to(model.dtype)
    B, P = theta0.shape
    loss, grad = model.loss_and_grad(theta0)
    state = engine.init(model, {"theta": theta0.clone(), "loss": loss, "grad": grad,
                                "n_grad": torch.ones(B, dtype=torch.long), "n_hvp": torch.zeros(B, dtype=torch.long)})
    rows = torch.arange(B)
    best = torch.full((B,), float("inf"), dtype=model.dtype)
    since = torch.zeros(B, dtype=torch.long)
    out_theta = theta0.clone()
    out = {k: np.zeros(B) for k in ("loss", "grad_norm", "wall_time")}
    out.update({k: np.zeros(B, dtype=np.int64) for k in ("iterations", "n_grad", "n_hvp", "reason")})
    detail = np.array([""] * B, dtype=object)
    it = 0
    while True:
        gn = state["grad"].norm(dim=1)
        l = state["loss"]
        diverged = ~torch.isfinite(l) | ~torch.isfinite(gn) | (l > cfg.diverge_loss)
        conv = (gn <= cfg.tol) & ~diverged
        improved = gn < best * (1 - cfg.stall_rtol)
        best = torch.where(improved, gn, best)
        since = torch.where(improved, torch.zeros_like(since), since + 1)
        stalled = (since > cfg.stall_window) & ~conv & ~diverged
        at_max = torch.full_like(conv, it >= cfg.max_iter)
        reason = torch.full((rows.numel(),), -1, dtype=torch.long)
        reason = torch.where(at_max, torch.full_like(reason, _MAX_ITER), reason)
        reason = torch.where(stalled, torch.full_like(reason, _STALLED), reason)
        reason = torch.where(diverged, torch.full_like(reason, _DIVERGED), reason)
        reason = torch.where(conv, torch.full_like(reason, _CONVERGED), reason)
        done = reason >= 0
        if bool(done.any()):
            d_idx = done.nonzero().squeeze(1)
            g_rows = rows[d_idx]
            out_theta[g_rows] = state["theta"][d_idx]
            gi = g_rows.numpy()
            out["loss"][gi] = l[d_idx].numpy()
            out["grad_norm"][gi] = gn[d_idx].numpy()
            out["reason"][gi] = reason[d_idx].numpy()
            out["iterations"][gi] = it
            out["n_grad"][gi] = state["n_grad"][d_idx].numpy()
            out["n_hvp"][gi] = state["n_hvp"][d_idx].numpy()
            out["wall_time"][gi] = time.perf_counter() - t0
            st = (reason[d_idx] == _STALLED).nonzero().squeeze(1)
            if st.numel():
                th, g = state["theta"][d_idx[st]], state["grad"][d_idx[st]]
                hg = model.hvp(th, g)
                ratio = (hg.norm(dim=1) / g.norm(dim=1).clamp(min=1e-300)).numpy()
                out["n_hvp"][gi[st.numpy()]] += 1
                detail[gi[st.numpy()]] = np.where(ratio <= cfg.flat_rtol, "gradient_flat", "plateau")
            if on_finished is not None:
                on_finished(int(d_idx.numel()))
            keep = (~done).nonzero().squeeze(1)
            state = {k: v[keep] for k, v in state.items()}
            rows, best, since = rows[keep], best[keep], since[keep]
        if rows.numel() == 0:
            break
        if on_status is not None:
            on_status({"engine": cfg.engine, "iteration": it, "active": int(rows.numel()),
                       "finished": int(B - rows.numel())})
        state = engine.step(model, state)
        it += 1
    return TrajectoryResults(
        theta=out_theta, loss=out["loss"], grad_norm=out["grad_norm"],
        stop_reason=np.array(STOP_REASONS, dtype=object)[out["reason"]], stop_detail=detail,
        iterations=out["iterations"], n_grad=out["n_grad"], n_hvp=out["n_hvp"], wall_time=out["wall_time"],
        last_stage=np.zeros(B, dtype=np.int64), stages=[cfg.settings()])


def run_pipeline(model: DeepUFM, theta0: torch.Tensor, stages: list[StageConfig], *,
                 on_status: Callable[[dict], None] | None = None,
                 on_finished: Callable[[int], None] | None = None) -> TrajectoryResults:
    """Run ``stages`` in turn on a (B, P) batch (e.g. GD, then Newton polish).

    Stage s+1 takes the rows that converged in stage s, or stopped there with ‖∇L‖ ≤ its
    ``entry_grad_norm``; every other row keeps the stop reason it had. Counts and iterations add
    up over stages. ``on_finished(k)`` counts trajectory-stages: a row that stops in a stage
    counts 1, and a row that skips the remaining stages counts those too (B·len(stages) in all).
    """
    if not stages:
        raise SpecError("stages is empty: a pipeline needs at least one engine stage")
    t0 = time.perf_counter()
    res = run_engine(model, theta0, stages[0], on_status=on_status, on_finished=on_finished, t0=t0)
    for s_i, cfg in enumerate(stages[1:], start=1):
        ok = res.converged.copy()
        if cfg.entry_grad_norm is not None:
            ok |= np.isin(res.stop_reason, ("max_iter", "stalled")) & (res.grad_norm <= cfg.entry_grad_norm)
        ok &= res.last_stage == s_i - 1
        idx = np.nonzero(ok)[0]
        if on_finished is not None:
            on_finished(int(((res.last_stage == s_i - 1) & ~ok).sum()) * (len(stages) - s_i))
        res.stages.append(cfg.settings())
        if idx.size == 0:
            continue
        sub = run_engine(model, res.theta[torch.from_numpy(idx)], cfg, on_status=on_status,
                         on_finished=on_finished, t0=t0)
        res.theta[torch.from_numpy(idx)] = sub.theta
        for k in ("loss", "grad_norm", "stop_reason", "stop_detail", "wall_time"):
            getattr(res, k)[idx] = getattr(sub, k)
        for k in ("iterations", "n_grad", "n_hvp"):
            getattr(res, k)[idx] += getattr(sub, k)
        res.last_stage[idx] = s_i
    return res
