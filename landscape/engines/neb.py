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

The band is an engine of the batched driver (:func:`landscape.engines.driver.run_engine`,
engine ``"neb"``, a *band* engine: its rows are bands, not points of the model), as ASE treats a
band as one optimisable object: :class:`BandModel` gives the driver the band's "loss" (its
highest interior image) and :class:`NEBState` carries the forces, FIRE's velocities and the
climbing switch, and its stop measure is the largest image force once the climbing image is
on. :func:`run_neb` builds the bands and runs them.

:func:`insert_images` grows relaxed bands where their energy profile resolves a maximum worst
(AutoNEB, Kolsbjerg, Groves & Hammer 2016): one image at a time, halving the longest segment
that brackets one of the band's maxima, so a band can be relaxed again with its images
concentrated on its barriers.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch

from ..core.model import DeepUFM
from .driver import run_engine
from .fire import FIREState, fire_step
from .options import NEBOptions
from .stage import StageConfig
from .state import EngineState, scalar_field

__all__ = ["BandModel", "NEBOptions", "NEBResult", "NEBState", "init", "insert_images", "neb_forces", "run_neb",
           "step"]


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


class BandModel:
    """Q bands of the model ``model`` as the driver's rows: row q is band q's M interior images
    flattened, θ_q (M·P,), between its fixed end points ``ends[q]`` (2, P). ``loss_and_grad``
    gives each band's highest interior image energy and minus its NEB force without a climbing
    image (what a row joining the driver starts from; :func:`init` computes the rest)."""

    def __init__(self, model: DeepUFM, ends: torch.Tensor, opts: NEBOptions):
        self.model, self.ends, self.opts = model, ends, opts
        self.device, self.dtype = model.device, model.dtype

    def for_rows(self, rows: torch.Tensor) -> "BandModel":
        return BandModel(self.model, self.ends[rows.to(self.ends.device)], self.opts)

    def bands(self, theta: torch.Tensor) -> torch.Tensor:
        """(b, M+2, P): the end points around the interior images θ (b, M·P)."""
        P = self.ends.shape[2]
        return torch.cat([self.ends[:, :1], theta.reshape(theta.shape[0], -1, P), self.ends[:, 1:]], dim=1)

    def forces(self, theta: torch.Tensor, climbing: torch.Tensor | None):
        """(forces (b, M, P), energies (b, M+2)) of the bands θ (:func:`neb_forces`)."""
        F, E, _ = neb_forces(self.model, self.bands(theta), self.opts, climbing)
        return F, E

    def loss_and_grad(self, theta: torch.Tensor):
        F, E = self.forces(theta, None)
        return E[:, 1:-1].max(dim=1).values, -F.reshape(theta.shape)


@dataclass
class NEBState(EngineState):
    """:class:`EngineState` of Q bands (``theta`` (Q, M·P) interior images, ``loss`` (Q,) the
    highest interior energy, ``grad`` (Q, M·P) minus the NEB force) plus ``energies`` (Q, M+2),
    ``fmax`` (Q,) the largest image force, ``first`` (Q,) that at the start, FIRE's ``v`` (Q, M·P),
    ``fire_dt``, ``alpha`` (Q,) and ``n_pos`` (Q,), ``climbing`` (Q,) bool (the forces were
    computed with the climbing image on), ``steps`` (Q,) iterations taken; scalar ``climb``
    (NEBOptions.climb)."""

    energies: torch.Tensor = None
    fmax: torch.Tensor = None
    first: torch.Tensor = None
    v: torch.Tensor = None
    fire_dt: torch.Tensor = None
    alpha: torch.Tensor = None
    n_pos: torch.Tensor = None
    climbing: torch.Tensor = None
    steps: torch.Tensor = None
    climb: bool = scalar_field(True)

    def stop_measure(self) -> torch.Tensor:
        """The largest image force, once the climbing image is on (a band converges climbing)."""
        if not self.climb:
            return self.fmax
        return torch.where(self.climbing, self.fmax, torch.full_like(self.fmax, torch.finfo(self.fmax.dtype).max))

    def outputs(self) -> dict:
        return {"energies": self.energies, "force": self.fmax}


def _with_forces(model: BandModel, s: NEBState, climbing: torch.Tensor) -> NEBState:
    F, E = model.forces(s.theta, climbing if model.opts.climb else None)
    M = F.shape[1]
    return replace(s, loss=E[:, 1:-1].max(dim=1).values, grad=-F.reshape(s.theta.shape), energies=E,
                   fmax=F.norm(dim=2).max(dim=1).values, climbing=climbing, n_grad=s.n_grad + M)


def init(model: BandModel, s: EngineState, opts: NEBOptions) -> NEBState:
    """The bands' forces without a climbing image, and FIRE at rest. (The driver's first
    evaluation, ``s``, counted one per row, is counted as the M image evaluations it was.)"""
    Q, n = s.theta.shape
    fire = FIREState.init(Q, n, opts.fire(), s.theta)
    M = n // model.ends.shape[2]
    st = NEBState(s.theta, s.loss, s.grad, s.n_grad - 1 + M, s.n_hvp, v=fire.v, fire_dt=fire.dt, alpha=fire.alpha,
                  n_pos=fire.n_pos, steps=torch.zeros(Q, dtype=torch.long, device=s.theta.device), climb=opts.climb)
    st = _with_forces(model, st, torch.zeros(Q, dtype=torch.bool, device=s.theta.device))
    return replace(st, first=st.fmax.clone())


def step(model: BandModel, s: NEBState, opts: NEBOptions) -> NEBState:
    """Switch the climbing image on where due, move every band by FIRE (each image by at most
    ``max_move`` × its band's mean image spacing), and evaluate the new forces."""
    climbing = s.climbing
    if opts.climb:
        climbing = climbing | (s.fmax <= opts.climb_below * s.first) | (s.steps >= opts.climb_after)
    Q = s.theta.shape[0]
    fire = FIREState(s.v, s.fire_dt, s.alpha, s.n_pos)
    R = model.bands(s.theta)
    M, P = R.shape[1] - 2, R.shape[2]
    d = fire_step(fire, -s.grad, torch.ones(Q, dtype=torch.bool, device=R.device), opts.fire()).reshape(Q, M, P)
    cap = opts.max_move * (R[:, 1:] - R[:, :-1]).norm(dim=2).mean(dim=1)  # per band
    dn = d.norm(dim=2, keepdim=True)
    d = d * torch.clamp(cap[:, None, None] / dn.clamp(min=torch.finfo(R.dtype).tiny), max=1.0)
    moved = replace(s, theta=s.theta + d.reshape(Q, M * P), v=fire.v, fire_dt=fire.dt, alpha=fire.alpha,
                    n_pos=fire.n_pos, steps=s.steps + 1)
    return _with_forces(model, moved, climbing)


def run_neb(model: DeepUFM, start: torch.Tensor, end: torch.Tensor, opts: NEBOptions = NEBOptions(),
            initial: torch.Tensor | None = None, *, max_iter: int = 3000, tol: float = 1e-4) -> NEBResult:
    """Relax Q bands between ``start`` (Q, P) and ``end`` (Q, P) (module docstring) for at most
    ``max_iter`` iterations, until the largest image force is at most ``tol`` (climbing image on).
    ``initial`` (Q, M+2, P): starting bands (default: straight lines, seeded noise on the images)."""
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
        M = R.shape[1] - 2
    bands = BandModel(model, R[:, [0, -1]].clone(), opts)
    cfg = StageConfig(engine="neb", options=opts, max_iter=max_iter, tol=tol, stall_window=max_iter + 1,
                      curvature_check=False, entry_grad_norm=None)
    # every iteration synchronised (as the loop before the driver was): a band that stops leaves the
    # batch at once, on a GPU too, so the others' batched round-off is that of the bands still running
    res = run_engine(bands, R[:, 1:-1].reshape(Q, M * P), cfg, sync_every=1)
    dev = model.device
    images = bands.bands(res.theta.to(device=dev, dtype=model.dtype))
    E = torch.from_numpy(res.extras["energies"]).to(device=dev, dtype=model.dtype)
    length = (images[:, 1:] - images[:, :-1]).norm(dim=2).sum(dim=1)
    return NEBResult(images=images, loss=E, climbing=E[:, 1:-1].argmax(dim=1) + 1,
                     force=torch.from_numpy(res.extras["force"]).to(device=dev, dtype=model.dtype),
                     converged=torch.from_numpy(res.converged).to(dev),
                     iterations=torch.from_numpy(res.iterations).to(dev), length=length,
                     n_grad=int(res.n_grad.sum()))


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
