"""The specification of a deep UFM (shape, nonlinearity, loss, weight decay): :class:`ModelSpec`.

Validation only, no torch: a study file is checked (and a bad one refused) without importing
it. The batched objective is :class:`landscape.core.model.DeepUFM`; conventions are those of
``docs/MODEL.md`` §1–§2 (see :mod:`landscape.core.model`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from .validate import SpecError, check_choice, check_int, check_number

ACTIVATIONS = ("linear", "relu")
LOSSES = ("ce", "mse")
#: Floating-point types a model may compute in (torch dtypes: :data:`landscape.core.theta.DTYPES`).
DTYPE_NAMES = ("float64", "float32")
#: Deepest model: its factors are listed one by one (shapes, offsets, the λ of each), so L = 10⁹
#: would take gigabytes and minutes before any estimate could refuse it; a study's memory bound
#: (:meth:`landscape.study.config.StudyConfig.check_resources`) is far below this anyway.
MAX_DEPTH = 1_000_000


def factor_shapes(K: int, n: int, d: int, L: int) -> list[tuple[int, int]]:
    """Shapes of the L+1 factors [H₁ (d, K·n), W₁ … W_{L−1} (d, d), W_L (K, d)] of θ's flat layout."""
    return [(d, K * n)] + [(d, d)] * (L - 1) + [(K, d)]


def factor_offsets(shapes) -> list[int]:
    """Start of each factor in the flat θ, plus P at the end."""
    out = [0]
    for r, c in shapes:
        out.append(out[-1] + r * c)
    return out


def zero_decay_refusal(spec) -> str | None:
    """Why ``spec`` (its resolved per-factor λ) may not have a zero λ, or None when it may.

    λ = 0 is a first-class setting only for the linear CE model with λ = 0 on *every* factor
    (MODEL.md §11): its loss has no finite minimiser and the objects of study are directions, the
    KKT points of the max-margin problem (:mod:`landscape.analysis.margins`). Refused:

    * some factors at 0 and others not: the zero-decay factors can grow without bound while the
      others are held, so there is no critical point and the max-margin problem of §11 (one norm
      on all of θ) is not the limit either;
    * λ = 0 with MSE: the loss has minimisers (Z = Y) but they form a non-compact set (any
      factorisation of Y), with no weight decay to pick one: nothing the instrument certifies;
    * λ = 0 with ReLU: the margins are no longer a polynomial of θ with the linear model's
      gradients, and the certificate of :mod:`landscape.analysis.margins` is of the linear model.
    """
    lams = spec.lambdas
    zero = [x == 0 for x in lams]
    if not any(zero):
        return None
    names = ["lambda_H"] + [f"lambda_W[{i}]" for i in range(spec.L)]
    if not all(zero):
        which = ", ".join(nm for nm, z in zip(names, zero) if z)
        return (f"lambda: {which} = 0 while other factors have λ > 0 ({', '.join(f'{x:g}' for x in lams)}): "
                "λ = 0 must hold on every factor (MODEL.md §11: with mixed zero and non-zero decay there is "
                "no critical point and no max-margin limit); give all factors λ = 0 or all λ > 0")
    if spec.loss != "ce":
        return (f"lambda=0 is invalid with loss={spec.loss!r}: must be > 0 (λ = 0 is supported for loss=\"ce\" only, "
                "MODEL.md §11: unregularised MSE has a non-compact set of minimisers, Z = Y in any factorisation, "
                "and nothing selects one)")
    if spec.activation != "linear":
        return (f"lambda=0 is invalid with activation={spec.activation!r}: must be > 0 (λ = 0 is supported for the "
                "linear CE model only, MODEL.md §11: its max-margin KKT certificate, landscape.analysis.margins, "
                "is of the deep linear model)")
    return None


def require_regularised(spec, what: str, why: str) -> None:
    """A SpecError when ``spec`` has λ = 0 (:attr:`ModelSpec.unregularised`): ``what`` (a
    computation of critical points, a threshold or a closed form in λ) needs λ > 0, because
    ``why``. The λ = 0 instruments are :mod:`landscape.analysis.margins` (directions, KKT
    certificates, closed-form margins) and :mod:`landscape.study.lambda0` (a λ = 0 study)."""
    if getattr(spec, "unregularised", False):
        raise SpecError(f"lambda=0: {what} needs λ > 0 ({why}); at λ = 0 the loss has no finite minimiser and "
                        "the objects of study are directions (MODEL.md §11): landscape.analysis.margins and a "
                        "λ = 0 study (`landscape run --set model.lambda=0`) certify them")


@dataclass(frozen=True)
class ModelSpec:
    """Shape, nonlinearity, loss and regularisation of a deep UFM.

    ``lam`` is the common weight decay λ (MODEL.md §2, the paper's equal-λ setting). ``lam_H``
    overrides it for H₁; ``lam_W`` overrides it for the weights, either one number for every W_l
    or a sequence of L numbers (W₁..W_L). :attr:`lambdas` gives the resolved L+1 values.
    λ = 0 is allowed on every factor at once, for the linear CE model only
    (:func:`zero_decay_refusal`, :attr:`unregularised`); what needs λ > 0 refuses such a spec
    (:func:`require_regularised`).
    """

    K: int
    n: int
    d: int
    L: int
    activation: str = "linear"
    loss: str = "ce"
    lam: float = 1e-3
    lam_H: float | None = None
    lam_W: float | tuple[float, ...] | None = None
    dtype: str = "float64"

    def __post_init__(self):
        object.__setattr__(self, "K", check_int("K", self.K, 2))
        object.__setattr__(self, "n", check_int("n", self.n, 1))
        object.__setattr__(self, "L", check_int("L", self.L, 1, " (the factors are listed one by one: "
                                                "shapes, offsets, λ per factor)", maximum=MAX_DEPTH))
        object.__setattr__(self, "d", check_int("d", self.d, self.K,
                                                f" (K={self.K}): width must be at least the class count"))
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("loss", self.loss, LOSSES)
        check_choice("dtype", self.dtype, DTYPE_NAMES)
        # λ = 0 is checked below, once every factor's λ is known (zero_decay_refusal)
        object.__setattr__(self, "lam", check_number("lambda", self.lam, allow_zero=True))
        if self.lam_H is not None:
            object.__setattr__(self, "lam_H", check_number("lambda_H", self.lam_H, allow_zero=True))
        if self.lam_W is not None:
            if isinstance(self.lam_W, (list, tuple)):
                if len(self.lam_W) != self.L:
                    raise SpecError(
                        f"lambda_W has {len(self.lam_W)} values: must be one number or exactly L={self.L}")
                vals = tuple(check_number(f"lambda_W[{i}]", v, allow_zero=True) for i, v in enumerate(self.lam_W))
                object.__setattr__(self, "lam_W", vals)
            else:
                object.__setattr__(self, "lam_W", check_number("lambda_W", self.lam_W, allow_zero=True))
        refusal = zero_decay_refusal(self)
        if refusal is not None:
            raise SpecError(refusal)

    # ----- derived sizes -------------------------------------------------------------------
    @property
    def N(self) -> int:
        """Number of samples (columns), K·n."""
        return self.K * self.n

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """Shapes of the L+1 factors [H₁, W₁, …, W_L]."""
        return factor_shapes(self.K, self.n, self.d, self.L)

    @property
    def factor_names(self) -> list[str]:
        return ["H1"] + [f"W{l}" for l in range(1, self.L + 1)]

    @property
    def P(self) -> int:
        """Number of scalar parameters in one parameter set."""
        return sum(r * c for r, c in self.shapes)

    @property
    def offsets(self) -> list[int]:
        """Start of each factor in the flat θ, plus P at the end (L+2 entries)."""
        return factor_offsets(self.shapes)

    def split(self, theta) -> list[np.ndarray]:
        """The factors [H₁, W₁, …, W_L] of one flat θ (P,) as float64 numpy arrays (copies), the
        inverse of :meth:`join`. This is the one place the flat layout is read on the host."""
        from .theta import as_theta64   # torch: only once a θ is read, never to validate a spec

        th = as_theta64(self, theta).numpy()
        o = self.offsets
        return [th[o[j]:o[j + 1]].reshape(shape).copy() for j, shape in enumerate(self.shapes)]

    def join(self, factors) -> np.ndarray:
        """Flat θ (P,) float64 from the factors [H₁, W₁, …, W_L] (shapes :attr:`shapes`)."""
        for j, (f, shape) in enumerate(zip(factors, self.shapes)):
            if np.shape(f) != shape:
                raise ValueError(f"factor {self.factor_names[j]} has shape {np.shape(f)}: must be {shape}")
        return np.concatenate([np.asarray(f, dtype=np.float64).reshape(-1) for f in factors])

    @property
    def lambdas(self) -> tuple[float, ...]:
        """Weight decay per factor, in factor order (λ_H, λ_W1, …, λ_WL)."""
        lh = self.lam if self.lam_H is None else self.lam_H
        if self.lam_W is None:
            lw = (self.lam,) * self.L
        elif isinstance(self.lam_W, tuple):
            lw = self.lam_W
        else:
            lw = (self.lam_W,) * self.L
        return (lh,) + tuple(lw)

    @property
    def unregularised(self) -> bool:
        """λ = 0 on every factor (MODEL.md §11): no finite minimiser; gradient descent converges in
        direction to a KKT point of the max-margin problem (:mod:`landscape.study.lambda0`)."""
        return all(x == 0 for x in self.lambdas)

    @property
    def lambda_convention(self) -> str:
        """'equal' (one λ), 'H/W' (one for H₁, one for every W_l) or 'per-factor'."""
        if self.lam_H is None and self.lam_W is None:
            return "equal"
        if not isinstance(self.lam_W, tuple):
            return "H/W"
        return "per-factor"

    @property
    def torch_dtype(self):
        """The torch dtype of :attr:`dtype`."""
        from .theta import DTYPES   # torch: only when asked for

        return DTYPES[self.dtype]

    def to_dict(self) -> dict:
        d = asdict(self)
        if isinstance(d["lam_W"], tuple):
            d["lam_W"] = list(d["lam_W"])
        return d

    def as_float64(self) -> "ModelSpec":
        """The same spec in float64 (analysis is always done in float64)."""
        return self if self.dtype == "float64" else replace(self, dtype="float64")

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        d = dict(d)
        if isinstance(d.get("lam_W"), list):
            d["lam_W"] = tuple(d["lam_W"])
        return cls(**d)
