"""End states of a batch of trajectories: one record per row, on the host."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .outcomes import STOP_REASONS, Outcome

__all__ = ["STOP_REASONS", "TrajectoryResults"]


@dataclass
class TrajectoryResults:
    """End states of B trajectories (row b ↔ trajectory b of the input batch), on the host.

    ``theta`` (B, P) final parameters (CPU, the model's dtype); ``loss``, ``grad_norm`` (B,)
    float64; ``stop_reason`` (B,) :class:`~landscape.engines.outcomes.Outcome` values from
    :data:`STOP_REASONS`; ``stop_detail`` (B,) :class:`~landscape.engines.outcomes.Detail` values:
    ``gradient_flat``/``plateau`` for stalled rows, ``negative_curvature`` for rows that stopped
    uncertified after the driver found negative curvature where they would have converged, else
    '' (a study adds ``saddle_visits`` and ``kink``); ``iterations``, ``n_grad``, ``n_hvp`` (B,)
    summed over stages; ``wall_time`` (B,) seconds from the start of the batch to the row's final stop; ``last_stage`` (B,) index of the stage
    that decided the stop; ``stages`` the settings of every stage that ran.

    Where the main (first) stage handed over: ``handoff_theta`` (B, P) θ at the end of stage 0,
    ``main_iterations`` (B,) its iterations, ``first_small`` (B,) the stage-0 iteration at which
    ‖∇L‖ first fell to that stage's ``tol`` (−1: never) and ``witnesses`` (B,) how many times a
    negative-curvature witness sent the row back to its dynamics there.

    ``extras``: per-row values an engine reports where a row stops (name → (B, ...) float64; NaN
    for rows no such engine ran), e.g. min-mode following's ``lowest`` and ``second`` Ritz values,
    a band's image ``energies``.
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
    handoff_theta: torch.Tensor | None = None
    main_iterations: np.ndarray | None = None
    first_small: np.ndarray | None = None
    witnesses: np.ndarray | None = None
    extras: dict = field(default_factory=dict)

    def __len__(self):
        return self.theta.shape[0]

    @property
    def converged(self) -> np.ndarray:
        return self.stop_reason == Outcome.CONVERGED

    def counts(self) -> dict:
        return {r.value: int((self.stop_reason == r).sum()) for r in STOP_REASONS}

    def row(self, b: int) -> dict:
        """JSON-safe record of trajectory b (without θ)."""
        out = {"loss": float(self.loss[b]), "grad_norm": float(self.grad_norm[b]),
               "stop_reason": str(self.stop_reason[b]), "stop_detail": str(self.stop_detail[b]),
               "iterations": int(self.iterations[b]), "n_grad": int(self.n_grad[b]), "n_hvp": int(self.n_hvp[b]),
               "wall_time": float(self.wall_time[b]), "last_stage": int(self.last_stage[b])}
        if self.witnesses is not None:
            out["curvature_witnesses"] = int(self.witnesses[b])
        return out

    def take(self, idx) -> "TrajectoryResults":
        """The results of rows ``idx`` (an index array), in that order, as a new object."""
        idx = np.asarray(idx, dtype=np.int64)
        t = torch.from_numpy(idx)

        def pick(v):
            if v is None:
                return None
            return v[t].clone() if torch.is_tensor(v) else v[idx].copy()

        return TrajectoryResults(theta=pick(self.theta), loss=pick(self.loss), grad_norm=pick(self.grad_norm),
                                 stop_reason=pick(self.stop_reason), stop_detail=pick(self.stop_detail),
                                 iterations=pick(self.iterations), n_grad=pick(self.n_grad), n_hvp=pick(self.n_hvp),
                                 wall_time=pick(self.wall_time), last_stage=pick(self.last_stage),
                                 stages=list(self.stages), handoff_theta=pick(self.handoff_theta),
                                 main_iterations=pick(self.main_iterations), first_small=pick(self.first_small),
                                 witnesses=pick(self.witnesses),
                                 extras={k: pick(v) for k, v in self.extras.items()})

    def replace_rows(self, idx: np.ndarray, other: "TrajectoryResults", add_counts: bool = True) -> None:
        """Rows ``idx`` take the values of ``other`` (len(idx) rows); with ``add_counts`` their
        iterations and evaluation counts are added to the ones already here (a continuation)."""
        t = torch.from_numpy(np.asarray(idx, dtype=np.int64))
        self.theta[t] = other.theta
        for k in ("loss", "grad_norm", "stop_reason", "stop_detail", "wall_time", "last_stage"):
            getattr(self, k)[idx] = getattr(other, k)
        for k in ("iterations", "n_grad", "n_hvp"):
            getattr(self, k)[idx] = (getattr(self, k)[idx] if add_counts else 0) + getattr(other, k)
        for k in ("main_iterations", "witnesses"):
            if getattr(self, k) is not None and getattr(other, k) is not None:
                getattr(self, k)[idx] = (getattr(self, k)[idx] if add_counts else 0) + getattr(other, k)
        if self.handoff_theta is not None and other.handoff_theta is not None:
            self.handoff_theta[t] = other.handoff_theta
        if self.first_small is not None and other.first_small is not None:
            self.first_small[idx] = other.first_small
        self.put_extras(idx, other.extras)

    def put_extras(self, idx, extras: dict) -> None:
        """Rows ``idx`` take the per-row values ``extras`` (name → (len(idx), ...)); their values
        of every other name become NaN (they described where those rows no longer are)."""
        for v in self.extras.values():
            v[idx] = np.nan
        for k, v in extras.items():
            self.extras.setdefault(k, np.full((len(self),) + v.shape[1:], np.nan))[idx] = v
