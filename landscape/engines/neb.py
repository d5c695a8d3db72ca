"""Nudged elastic bands, batched: Q bands of M interior images advanced as one tensor computation.

A band joins two fixed end points (minima, aligned modulo symmetry beforehand) through M images
R_1..R_M. Each iteration evaluates the loss and gradient of all Q·M images in one batched call
(images × bands on the leading dimension) and moves every image along its NEB force
(Henkelman, Uberuaga & Jónsson 2000; Henkelman & Jónsson 2000):

* tangent τ_i: the *improved* tangent, towards the higher neighbour (t⁺ = R_{i+1} − R_i or
  t⁻ = R_i − R_{i−1}), or at an extremum of the energy along the band the blend
  t⁺ΔE_max + t⁻ΔE_min (or the reverse) with ΔE the energy differences to the neighbours; unit norm;
* force: the perpendicular gradient −(∇L − (∇L·τ)τ) plus the spring force along the tangent,
  k(‖t⁺‖ − ‖t⁻‖)τ;
* doubly nudged (Trygubenko & Wales 2004, optional): plus the perpendicular spring force with its
  component along the perpendicular gradient removed;
* climbing image: once the band's largest force is below ``climb_below``·(its first largest
  force) — or after ``climb_after`` iterations — the highest interior image feels
  −∇L + 2(∇L·τ)τ and no spring, and climbs to the saddle.

Every band is minimised by FIRE (Bitzek et al. 2006, :mod:`landscape.engines.fire`) with its own step size and mixing, over the
concatenated coordinates of its images, no image moving more than ``max_move`` × the band's mean
image spacing per iteration; a band whose largest image force (Euclidean norm per
image) is at most ``tol`` is converged and frozen; the others go on, up to ``max_iter``.

:func:`insert_images` grows relaxed bands where their energy profile resolves a maximum worst
(AutoNEB, Kolsbjerg, Groves & Hammer 2016): one image at a time, halving the longest segment
that brackets one of the band's maxima, so a band can be relaxed again with its images
concentrated on its barriers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..core.model import DeepUFM
from .fire import FIREOptions, FIREState, fire_step
from .options import EngineOptions, integer, number


@dataclass(frozen=True)
class NEBOptions(EngineOptions):
    images: int = integer(14, "interior images per band")
    spring: float = number(1.0, "spring constant k")
    max_iter: int = integer(3000, "band iterations")
    tol: float = number(1e-4, "largest image force at which a band has converged")
    dt: float = number(0.02, "FIRE first step")
    dt_max: float = number(0.2, "FIRE largest step")
    max_move: float = number(0.1, "largest displacement of one image per iteration, relative to the image spacing")
    climb_after: int = integer(200, "iterations before the climbing image switches on at the latest")
    climb_below: float = number(0.1, "switch the climbing image on once the largest force fell by this factor")
    perturb: float = number(1e-6, "initial images moved by seeded noise of this size × the image spacing")
    seed: int = integer(1, "seed of that noise")
    climb: bool = True
    doubly_nudged: bool = False

    def fire(self) -> FIREOptions:
        """The band optimiser's options: FIRE with this band's ``dt`` and ``dt_max`` and the
        standard constants of Bitzek et al. (:class:`FIREOptions`)."""
        return FIREOptions(dt=self.dt, dt_max=self.dt_max)

    def describe(self) -> str:
        return (f"{'DNEB' if self.doubly_nudged else 'NEB'}({self.images} images, k={self.spring:g}"
                f"{', climbing' if self.climb else ''})")


@dataclass
class NEBResult:
    """``images`` (Q, M+2, P) the bands, end points included; ``loss`` (Q, M+2);
    ``climbing`` (Q,) index of the highest interior image; ``force`` (Q,) the largest image force
    at the end; ``converged`` (Q,) bool; ``iterations`` (Q,); ``length`` (Q,) the path length
    Σ‖R_{i+1} − R_i‖; ``n_grad`` total image evaluations."""

    images: torch.Tensor
    loss: torch.Tensor
    climbing: torch.Tensor
    force: torch.Tensor
    converged: torch.Tensor
    iterations: torch.Tensor
    length: torch.Tensor
    n_grad: int


def _tangents(R: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
    """Improved unit tangents (Q, M, P) of the interior images of bands R (Q, M+2, P) with
    energies E (Q, M+2)."""
    tp = R[:, 2:] - R[:, 1:-1]
    tm = R[:, 1:-1] - R[:, :-2]
    Ep, Ei, Em = E[:, 2:], E[:, 1:-1], E[:, :-2]
    up = (Ep > Ei) & (Ei > Em)
    down = (Ep < Ei) & (Ei < Em)
    dmax = torch.maximum((Ep - Ei).abs(), (Em - Ei).abs())
    dmin = torch.minimum((Ep - Ei).abs(), (Em - Ei).abs())
    blend_up = tp * dmax[..., None] + tm * dmin[..., None]
    blend_down = tp * dmin[..., None] + tm * dmax[..., None]
    blend = torch.where((Ep > Em)[..., None], blend_up, blend_down)
    tau = torch.where(up[..., None], tp, torch.where(down[..., None], tm, blend))
    return tau / tau.norm(dim=2, keepdim=True).clamp(min=torch.finfo(R.dtype).tiny)


def neb_forces(model: DeepUFM, R: torch.Tensor, opts: NEBOptions, climbing: torch.Tensor | None):
    """(forces (Q, M, P), energies (Q, M+2), gradients (Q, M, P)) of bands R (Q, M+2, P);
    ``climbing`` (Q,) bool: bands whose highest interior image climbs."""
    Q, M2, P = R.shape
    M = M2 - 2
    E_int, G = model.loss_and_grad(R[:, 1:-1].reshape(Q * M, P))
    E_int, G = E_int.reshape(Q, M), G.reshape(Q, M, P)
    with torch.no_grad():
        E_end = model.loss(R[:, [0, -1]].reshape(2 * Q, P)).reshape(Q, 2)
    E = torch.cat([E_end[:, :1], E_int, E_end[:, 1:]], dim=1)
    tau = _tangents(R, E)
    g_par = (G * tau).sum(dim=2, keepdim=True)
    f_perp = -(G - g_par * tau)
    tp = R[:, 2:] - R[:, 1:-1]
    tm = R[:, 1:-1] - R[:, :-2]
    f_spring = opts.spring * (tp.norm(dim=2) - tm.norm(dim=2))[..., None] * tau
    F = f_perp + f_spring
    if opts.doubly_nudged:
        fs = opts.spring * (tp - tm)
        fs_perp = fs - (fs * tau).sum(dim=2, keepdim=True) * tau
        gh = f_perp / f_perp.norm(dim=2, keepdim=True).clamp(min=torch.finfo(R.dtype).tiny)
        F = F + fs_perp - (fs_perp * gh).sum(dim=2, keepdim=True) * gh
    if climbing is not None and bool(climbing.any()):
        top = E_int.argmax(dim=1)
        climb = -G[torch.arange(Q), top] + 2 * g_par[torch.arange(Q), top] * tau[torch.arange(Q), top]
        F = F.clone()
        sel = climbing.nonzero().squeeze(1)
        F[sel, top[sel]] = climb[sel]
    return F, E, G


def run_neb(model: DeepUFM, start: torch.Tensor, end: torch.Tensor, opts: NEBOptions = NEBOptions(),
            initial: torch.Tensor | None = None) -> NEBResult:
    """Relax Q bands between ``start`` (Q, P) and ``end`` (Q, P) (module docstring). ``initial``
    (Q, M+2, P): starting bands (default: straight lines)."""
    start = start.to(device=model.device, dtype=model.dtype)
    end = end.to(device=model.device, dtype=model.dtype)
    Q, P = start.shape
    M = opts.images
    if initial is None:
        t = torch.linspace(0, 1, M + 2, dtype=model.dtype, device=model.device)[None, :, None]
        R = (1 - t) * start[:, None] + t * end[:, None]
        # a straight band between symmetric end points can be a symmetric valley whose
        # perpendicular gradient vanishes: seeded noise lets it relax off it
        gen = torch.Generator().manual_seed(opts.seed)  # the same pattern for every band: bands stay independent
        noise = torch.randn(M, P, generator=gen, dtype=torch.float64).to(R).expand(Q, M, P)
        spacing = (end - start).norm(dim=1) / (M + 1)
        R[:, 1:-1] += opts.perturb * spacing[:, None, None] * noise / (P ** 0.5)
    else:
        R = initial.to(device=model.device, dtype=model.dtype).clone()
    fire = opts.fire()
    state = FIREState.init(Q, M * P, fire, R)
    active = torch.ones(Q, dtype=torch.bool, device=model.device)
    climbing = torch.zeros(Q, dtype=torch.bool, device=model.device)
    iters = torch.zeros(Q, dtype=torch.long, device=model.device)
    first = None
    n_grad = 0
    for it in range(opts.max_iter + 1):
        climbed = climbing.clone()  # the forces below use the climbing image of these bands
        F, E, _ = neb_forces(model, R, opts, climbed if opts.climb else None)
        n_grad += Q * M
        fmax = F.norm(dim=2).max(dim=1).values
        if first is None:
            first = fmax.clone()
        done = (fmax <= opts.tol) & (climbed | (not opts.climb))
        active = active & ~done
        if opts.climb:
            climbing = climbing | (fmax <= opts.climb_below * first) | torch.tensor(it >= opts.climb_after,
                                                                                     device=model.device)
        if not bool(active.any()) or it == opts.max_iter:
            break
        # FIRE, per band over all its images
        a = active[:, None, None]
        step = fire_step(state, F.reshape(Q, -1), active, fire).reshape(Q, M, P)
        cap = opts.max_move * (R[:, 1:] - R[:, :-1]).norm(dim=2).mean(dim=1)  # per band
        sn = step.norm(dim=2, keepdim=True)
        step = step * torch.clamp(cap[:, None, None] / sn.clamp(min=torch.finfo(R.dtype).tiny), max=1.0)
        R = R.clone()
        R[:, 1:-1] = torch.where(a, R[:, 1:-1] + step, R[:, 1:-1])
        iters = iters + active.long()
    length = (R[:, 1:] - R[:, :-1]).norm(dim=2).sum(dim=1)
    return NEBResult(images=R, loss=E, climbing=E[:, 1:-1].argmax(dim=1) + 1, force=fmax, converged=~active,
                     iterations=iters, length=length, n_grad=n_grad)


def insert_images(R: torch.Tensor, E: torch.Tensor, k: int,
                  loss: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Bands R (Q, M+2, P) with energies E (Q, M+2) grown by ``k`` images each: (Q, M+2+k, P)
    and (Q, M+2+k). One image at a time per band, at the midpoint of the segment that brackets a
    maximum worst: every interior local maximum i of E (none: the band's highest image, an end
    point) brackets the true maximum on the side of its higher neighbour (for a locally
    symmetric barrier the higher neighbour is the nearer one), and the longest such segment is
    halved. Repeated, this bisects each barrier's bracket in turn, the worst resolved first.
    ``loss`` maps the (Q, P) new images to their (Q,) losses. Every band gets the same number
    of images, so the bands stay one tensor; each chooses its own segments."""
    Q = R.shape[0]
    rows = torch.arange(Q, device=R.device)
    for _ in range(int(k)):
        n = E.shape[1]                                    # images, end points included
        peak = torch.zeros_like(E, dtype=torch.bool)
        peak[:, 1:-1] = (E[:, 1:-1] >= E[:, :-2]) & (E[:, 1:-1] >= E[:, 2:])
        top = torch.zeros_like(peak)
        top[rows, E.argmax(dim=1)] = True
        peak = torch.where(peak.any(dim=1, keepdim=True), peak, top)
        # segment j joins images j and j+1: a peak at i brackets toward its higher neighbour
        left = torch.ones_like(peak)                      # toward i−1 (segment i−1)
        left[:, 1:-1] = E[:, :-2] >= E[:, 2:]
        left[:, 0] = False
        cand = torch.zeros(Q, n - 1, dtype=torch.bool, device=R.device)
        cand |= (peak & left)[:, 1:]                      # peak i, left: segment i−1
        cand |= (peak & ~left)[:, :-1]                    # peak i, right: segment i
        length = (R[:, 1:] - R[:, :-1]).norm(dim=2)
        seg = torch.where(cand, length, torch.full_like(length, -1.0)).argmax(dim=1)   # (Q,)
        mid = 0.5 * (R[rows, seg] + R[rows, seg + 1])
        e_mid = loss(mid).to(E.dtype)
        pos = torch.arange(n + 1, device=R.device)[None, :]
        src = torch.where(pos <= seg[:, None], pos, pos - 1)      # old image each new slot copies
        R = torch.where((pos == seg[:, None] + 1)[..., None], mid[:, None], R[rows[:, None], src])
        E = torch.where(pos == seg[:, None] + 1, e_mid[:, None], E[rows[:, None], src])
    return R, E
