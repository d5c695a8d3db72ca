"""Engine options: one frozen dataclass per engine, validated field by field.

A field declared with :func:`number` (a finite number > 0; ≥ 0 with ``allow_zero``) or
:func:`integer` (an integral number ≥ 1, given as 5, 5.0 or 1e2) is checked when the options are
built, and a field annotated ``bool`` must be true or false; the error names the field. Every
option that decides a result (step sizes, tolerances, line-search halvings, curvature tests) is a
field, so it is stored with the study.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..core.thresholds import DEFAULT_TAU_REL
from ..core.validate import check_bool, check_integral, check_number


def number(default: float, doc: str = "", allow_zero: bool = False):
    return field(default=default, metadata={"kind": "number", "doc": doc, "allow_zero": allow_zero})


def integer(default: int, doc: str = ""):
    return field(default=default, metadata={"kind": "integer", "doc": doc})


@dataclass(frozen=True)
class EngineOptions:
    """Base class: validates its fields by their declared kind."""

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            kind = f.metadata.get("kind")
            if kind == "number":
                object.__setattr__(self, f.name, check_number(f.name, v, f.metadata.get("allow_zero", False)))
            elif kind == "integer":
                object.__setattr__(self, f.name, check_integral(f.name, v))
            elif f.type in ("bool", bool):   # a switch (NEBOptions.climb): true or false, not 1
                check_bool(f.name, v)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


# ----- the options of each engine (torch-free, so a study file is validated without importing torch) ----
@dataclass(frozen=True)
class GDOptions(EngineOptions):
    lr: float = number(0.5, "learning rate (step size)")

    def describe(self) -> str:
        return f"gd(lr={self.lr:g})"


@dataclass(frozen=True)
class FlowOptions(EngineOptions):
    rtol: float = number(1e-6, "relative error tolerance per step")
    atol: float = number(1e-9, "absolute error tolerance per step")
    h0: float = number(0.1, "first step size (time units)")
    safety: float = number(0.9, "step-size controller safety factor")
    min_factor: float = number(0.2, "smallest step-size change per step")
    max_factor: float = number(5.0, "largest step-size change per step")

    def describe(self) -> str:
        return f"flow(dopri5, rtol={self.rtol:g})"


@dataclass(frozen=True)
class NewtonOptions(EngineOptions):
    minres_iter: int = integer(200, "MINRES iterations per Newton step")
    minres_rtol: float = number(1e-10, "MINRES relative residual tolerance")
    minres_forcing: float = number(0.0, "inexact Newton: MINRES stops at relative residual "
                                        "max(minres_rtol, min(0.5, minres_forcing·‖∇L‖)); 0: minres_rtol alone",
                                  allow_zero=True)
    minres_atol: float = number(1e-14, "MINRES stops once its residual is below this absolute floor "
                                       "(‖∇L‖ is known to about 1e-15; solving below that amplifies its "
                                       "round-off along the Hessian's null directions)", allow_zero=True)
    max_step: float = number(1.0, "longest step (Euclidean norm in parameter space)")
    max_halvings: int = integer(30, "line-search halvings before a row gives up this step")
    armijo: float = number(1e-4, "sufficient-decrease constant on ‖∇L‖²")

    def describe(self) -> str:
        return "newton-mr"


@dataclass(frozen=True)
class LBFGSOptions(EngineOptions):
    memory: int = integer(10, "stored (s, y) pairs")
    max_halvings: int = integer(40, "line-search halvings before a row gives up this step")
    armijo: float = number(1e-4, "Armijo sufficient-decrease constant c₁")
    curvature_eps: float = number(1e-12, "pairs with sᵀy ≤ curvature_eps·‖s‖‖y‖ are not stored")
    roundoff_mult: float = number(64.0, "round-off allowance on the loss, in units of ε·|L|")

    def describe(self) -> str:
        return f"lbfgs(m={self.memory})"


@dataclass(frozen=True)
class MinModeOptions(EngineOptions):
    """Minimum-mode following (:mod:`landscape.engines.minmode`); its iteration budget and ‖∇L‖
    tolerance are the stage's ``max_iter`` and ``tol``."""

    lanczos_steps: int = integer(30, "Lanczos steps per lowest-mode estimate")
    minres_iter: int = integer(200, "MINRES iterations of the complement step")
    minres_rtol: float = number(1e-10, "MINRES relative residual tolerance")
    max_step: float = number(0.5, "largest step (trust radius, Euclidean norm)")
    min_step: float = number(1e-10, "a row whose trust radius falls below this has stalled")
    tau_rel: float = number(DEFAULT_TAU_REL, "a mode is negative below −max(tau_rel·min λ, grad_mult·‖∇L‖)")
    grad_mult: float = number(10.0, "(see tau_rel)")
    push_tol: float = number(1e-8, "a row with a second negative mode and ‖∇L‖ ≤ 100·push_tol is pushed "
                                   "√push_tol down that mode (beside a critical point of index ≥ 2)")

    def describe(self) -> str:
        return f"min-mode following (Lanczos {self.lanczos_steps}, trust {self.max_step:g})"


@dataclass(frozen=True)
class FIREOptions(EngineOptions):
    """FIRE (:mod:`landscape.engines.fire`), the band optimiser of the nudged elastic band."""

    dt: float = number(0.02, "first step")
    dt_max: float = number(0.2, "largest step")
    n_min: int = integer(5, "steps of positive power before the step grows")
    f_inc: float = number(1.1, "step growth factor")
    f_dec: float = number(0.5, "step shrink factor after uphill motion")
    alpha_start: float = number(0.1, "initial (and reset) velocity mixing")
    f_alpha: float = number(0.99, "mixing decay factor")

    def describe(self) -> str:
        return f"FIRE(dt={self.dt:g}, dt_max={self.dt_max:g})"


@dataclass(frozen=True)
class NEBOptions(EngineOptions):
    """Nudged elastic bands (:mod:`landscape.engines.neb`); the band iterations and the force
    tolerance are the stage's ``max_iter`` and ``tol`` (:func:`landscape.engines.neb.run_neb`)."""

    images: int = integer(14, "interior images per band")
    spring: float = number(1.0, "spring constant k")
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
