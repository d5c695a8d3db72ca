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
* ``spectral``: a *balanced* start with prescribed singular values (the spectral initialisation
  of the λ = 0 literature, Garrod, Keating & Thrampoulidis 2026, as this instrument defines it).
  With r = min(K, N) (the largest rank of Z = W_L⋯W₁H₁), draw Haar-random frames (orthonormal
  columns) V (N × r), Q₀, …, Q_{L−1} (d × r, one per interface: H₁|W₁, W₁|W₂, …) and U (K × r),
  and set, with s = ``singular_value``,

      H₁ = s·Q₀Vᵀ,   W_l = s·Q_lQ_{l−1}ᵀ (l = 1 … L−1),   W_L = s·UQ_{L−1}ᵀ.

  Every factor has exactly r singular values s (the rest 0), the singular vectors of consecutive
  factors are aligned (W_{l+1}ᵀW_{l+1} = s²Q_lQ_lᵀ = W_lW_lᵀ, and W₁ᵀW₁ = H₁H₁ᵀ: balanced, the
  invariant that gradient flow conserves, so the flow stays balanced) and the logits are
  Z = s^{L+1}·UVᵀ, r singular values s^{L+1} with random singular vectors. ``scale_H``,
  ``scale_W``, ``alpha`` and ``scales`` are not used.

``singular_value`` (spectral only; unset: 1) is written to a study's configuration only when
set, so configurations written before it existed read back unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, asdict

import numpy as np

from .spec import ModelSpec
from .validate import SpecError, check_choice, check_number

SCHEMES = ("gaussian", "small", "orthogonal", "spectral")


@dataclass(frozen=True)
class InitScheme:
    """A named, parameterised random-start distribution (see module docstring)."""

    name: str = "gaussian"
    scale_H: float = 1.0
    scale_W: float = 1.0
    alpha: float = 1e-3
    scales: tuple[float, ...] | None = None
    singular_value: float | None = None

    def __post_init__(self):
        check_choice("init.name", self.name, SCHEMES)
        for f in ("scale_H", "scale_W", "alpha"):
            object.__setattr__(self, f, check_number(f"init.{f}", getattr(self, f)))
        if self.scales is not None:
            if not isinstance(self.scales, (list, tuple)):
                raise SpecError(f"init.scales={self.scales!r} is invalid: must be a list of L+1 standard deviations")
            object.__setattr__(self, "scales", tuple(check_number(f"init.scales[{i}]", x, allow_zero=True)
                                                     for i, x in enumerate(self.scales)))
        if self.singular_value is not None:
            if self.name != "spectral":
                raise SpecError(f"init.singular_value={self.singular_value!r} is invalid with init.name="
                                f"{self.name!r}: it is the singular value of the spectral scheme (name = \"spectral\")")
            object.__setattr__(self, "singular_value", check_number("init.singular_value", self.singular_value))
        if self.name == "spectral" and self.scales is not None:
            raise SpecError("init.scales is invalid with init.name=\"spectral\": the spectral start sets every "
                            "factor's singular values to init.singular_value")

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

    @property
    def spectral_value(self) -> float:
        """s of the spectral scheme (``singular_value``, default 1)."""
        return 1.0 if self.singular_value is None else float(self.singular_value)

    def describe(self) -> str:
        """The scheme in words, e.g. ``gaussian(scale_H=1, scale_W=1)``, ``spectral(s=0.5)``."""
        if self.name == "spectral":
            return f"spectral(s={self.spectral_value:g})"
        if self.scales is not None:
            return f"{self.name}(scales=[{', '.join(f'{x:g}' for x in self.scales)}])"
        extra = f", alpha={self.alpha:g}" if self.name == "small" else ""
        return f"{self.name}(scale_H={self.scale_H:g}, scale_W={self.scale_W:g}{extra})"

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
    if scheme.name == "spectral":
        return _spectral_start(spec, scheme.spectral_value, gen).to(spec.torch_dtype)
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


def _frame(rows: int, cols: int, gen) -> "torch.Tensor":
    """A Haar-random (rows × cols) matrix with orthonormal columns (cols ≤ rows), from ``gen``."""
    import torch

    Q, R = torch.linalg.qr(torch.randn(rows, cols, generator=gen, dtype=torch.float64))
    return Q * torch.sign(torch.diagonal(R))


def _spectral_start(spec: ModelSpec, s: float, gen) -> "torch.Tensor":
    """The ``spectral`` start (module docstring), float64 (P,)."""
    import torch

    K, N, d, L = spec.K, spec.N, spec.d, spec.L
    r = min(K, N)
    V = _frame(N, r, gen)
    Q = [_frame(d, r, gen) for _ in range(L)]
    U = _frame(K, r, gen)
    F = [s * Q[0] @ V.T] + [s * Q[l] @ Q[l - 1].T for l in range(1, L)] + [s * U @ Q[L - 1].T]
    return torch.cat([f.reshape(-1) for f in F])


def draw_starts(spec: ModelSpec, scheme: InitScheme, study_seed: int, indices, device="cpu") -> "torch.Tensor":
    """Starts for trajectory ``indices`` of a study, shape (len(indices), P), drawn on the host
    with the per-trajectory seeds (so trajectory i starts from the same point on every device)
    and then moved to ``device``."""
    import torch   # only to draw (see draw_start)

    idx = list(indices)
    if not idx:
        return torch.zeros(0, spec.P, dtype=spec.torch_dtype, device=device)
    return torch.stack([draw_start(spec, scheme, trajectory_seed(study_seed, i)) for i in idx]).to(device)
