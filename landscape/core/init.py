"""Random starts, seeded per trajectory.

Every trajectory i of a study with seed s gets its own generator seeded from
``numpy.random.SeedSequence([s, i])``, so trajectory i can be replayed alone (same start, bit for
bit) and the batch it ran in does not matter.

Schemes (each factor drawn i.i.d. Gaussian, entries ``N(0, scale²)``):

* ``gaussian``: H₁ ~ N(0, ``scale_H``²), W_l ~ N(0, ``scale_W``²/d) (defaults 1 and 1, i.e.
  H₁ ~ N(0,1) and W_l ~ N(0, 1/d)); per-factor ``scales`` (L+1 standard deviations) override.
* ``small``: the small-initialisation regime, the ``gaussian`` scheme multiplied by ``alpha``
  (default 1e-3): trajectories start near the origin, where the dynamics are saddle-to-saddle.
* ``orthogonal``: H₁ ~ N(0, scale_H²), weights scale_W × a random matrix with orthonormal rows or
  columns (Haar), the usual deep-linear-network initialisation.
"""
from __future__ import annotations

from dataclasses import dataclass, asdict

import numpy as np

from .spec import ModelSpec
from .validate import SpecError, check_choice, check_number

SCHEMES = ("gaussian", "small", "orthogonal")


@dataclass(frozen=True)
class InitScheme:
    """A named, parameterised random-start distribution (see module docstring)."""

    name: str = "gaussian"
    scale_H: float = 1.0
    scale_W: float = 1.0
    alpha: float = 1e-3
    scales: tuple[float, ...] | None = None

    def __post_init__(self):
        check_choice("init.name", self.name, SCHEMES)
        for f in ("scale_H", "scale_W", "alpha"):
            object.__setattr__(self, f, check_number(f"init.{f}", getattr(self, f)))
        if self.scales is not None:
            if not isinstance(self.scales, (list, tuple)):
                raise SpecError(f"init.scales={self.scales!r} is invalid: must be a list of L+1 standard deviations")
            object.__setattr__(self, "scales", tuple(check_number(f"init.scales[{i}]", x, allow_zero=True)
                                                     for i, x in enumerate(self.scales)))

    def stds(self, spec: ModelSpec) -> tuple[float, ...]:
        """Standard deviation of the entries of each factor [H₁, W₁..W_L]."""
        if self.scales is not None:
            if len(self.scales) != spec.L + 1:
                raise SpecError(f"init.scales has {len(self.scales)} values: must be L+1={spec.L + 1}")
            base = self.scales
        else:
            base = (self.scale_H,) + (self.scale_W / np.sqrt(spec.d),) * spec.L
        if self.name == "small":
            base = tuple(self.alpha * s for s in base)
        return tuple(float(s) for s in base)

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["scales"] is not None:
            d["scales"] = list(d["scales"])
        return d


def trajectory_seed(study_seed: int, index: int) -> int:
    """64-bit seed of trajectory ``index`` in a study seeded ``study_seed``."""
    return int(np.random.SeedSequence([int(study_seed), int(index)]).generate_state(2, np.uint32).view(np.uint64)[0] >> 1)


def draw_start(spec: ModelSpec, scheme: InitScheme, seed: int) -> "torch.Tensor":
    """One start θ₀ of shape (P,) from a generator seeded with ``seed``."""
    import torch   # only to draw: a study file (its [init]) is validated without torch

    gen = torch.Generator().manual_seed(int(seed))  # on the host: the same start on every device
    parts = []
    for i, ((r, c), std) in enumerate(zip(spec.shapes, scheme.stds(spec))):
        if scheme.name == "orthogonal" and i > 0:  # factor 0 is H₁, always Gaussian
            A = torch.randn(max(r, c), min(r, c), generator=gen, dtype=torch.float64)
            Q, R = torch.linalg.qr(A)
            Q = Q * torch.sign(torch.diagonal(R))
            M = Q if r >= c else Q.T
            parts.append((std * np.sqrt(spec.d)) * M.reshape(-1))
        else:
            parts.append(std * torch.randn(r * c, generator=gen, dtype=torch.float64))
    return torch.cat(parts).to(spec.torch_dtype)


def draw_starts(spec: ModelSpec, scheme: InitScheme, study_seed: int, indices, device="cpu") -> "torch.Tensor":
    """Starts for trajectory ``indices`` of a study, shape (len(indices), P), drawn on the host
    with the per-trajectory seeds (so trajectory i starts from the same point on every device)
    and then moved to ``device``."""
    import torch   # only to draw (see draw_start)

    idx = list(indices)
    if not idx:
        return torch.zeros(0, spec.P, dtype=spec.torch_dtype, device=device)
    return torch.stack([draw_start(spec, scheme, trajectory_seed(study_seed, i)) for i in idx]).to(device)
