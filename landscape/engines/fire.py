"""FIRE (Bitzek, Koskinen, Gähler, Moseler & Gumbsch 2006), batched: Q independent systems of n
coordinates each, with their own step size and mixing, as one tensor computation.

One :func:`fire_step` with forces F (Q, n) (a force is minus a gradient, or a band's NEB force):

* power P = F·v; mix the velocity towards the force, v ← (1 − α)v + α‖v‖F/‖F‖;
* if P > 0 for more than ``n_min`` steps in a row: dt ← min(dt·``f_inc``, ``dt_max``) and
  α ← α·``f_alpha``; if P ≤ 0: dt ← dt·``f_dec``, α ← ``alpha_start`` and v ← 0;
* v ← v + dt·F; the displacement is dt·v (the caller may cap it, as the NEB caps each image's).

Systems not ``active`` keep their velocity (they are frozen by the caller).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .options import FIREOptions


@dataclass
class FIREState:
    """``v`` (Q, n) velocities, ``dt`` (Q,) steps, ``alpha`` (Q,) mixings, ``n_pos`` (Q,) steps of
    positive power in a row."""

    v: torch.Tensor
    dt: torch.Tensor
    alpha: torch.Tensor
    n_pos: torch.Tensor

    @classmethod
    def init(cls, Q: int, n: int, opts: FIREOptions, like: torch.Tensor) -> "FIREState":
        kw = {"dtype": like.dtype, "device": like.device}
        return cls(torch.zeros(Q, n, **kw), torch.full((Q,), opts.dt, **kw), torch.full((Q,), opts.alpha_start, **kw),
                   torch.zeros(Q, dtype=torch.long, device=like.device))


def fire_step(state: FIREState, F: torch.Tensor, active: torch.Tensor, opts: FIREOptions) -> torch.Tensor:
    """Advance ``state`` by the forces F (Q, n) for the ``active`` (Q,) systems; return the
    displacement dt·v (Q, n) (zero where not active)."""
    v = state.v
    power = (F * v).sum(dim=1)
    fn = F.norm(dim=1).clamp(min=torch.finfo(F.dtype).tiny)
    vb = (1 - state.alpha[:, None]) * v + state.alpha[:, None] * v.norm(dim=1)[:, None] * F / fn[:, None]
    pos = power > 0
    n_pos = torch.where(pos, state.n_pos + 1, torch.zeros_like(state.n_pos))
    grow = pos & (n_pos > opts.n_min)
    dt = torch.where(grow, torch.clamp(state.dt * opts.f_inc, max=opts.dt_max),
                     torch.where(pos, state.dt, state.dt * opts.f_dec))
    alpha = torch.where(grow, state.alpha * opts.f_alpha,
                        torch.where(pos, state.alpha, torch.full_like(state.alpha, opts.alpha_start)))
    vb = torch.where(pos[:, None], vb, torch.zeros_like(vb)) + dt[:, None] * F
    a = active[:, None]
    state.v = torch.where(a, vb, v)
    state.dt, state.alpha, state.n_pos = dt, alpha, n_pos
    return torch.where(a, dt[:, None] * state.v, torch.zeros_like(v))
