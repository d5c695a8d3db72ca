"""One stage of an engine pipeline: the engine, its own options, and the stopping rules.

A stage is written in a study file as one flat table (``[[stages]]``): the engine's options
(:class:`~landscape.engines.gd.GDOptions`, :class:`~landscape.engines.flow.FlowOptions`,
:class:`~landscape.engines.newton.NewtonOptions`, :class:`~landscape.engines.lbfgs.LBFGSOptions`)
and the common fields of :class:`StageConfig` side by side; :meth:`StageConfig.from_dict` routes
each field to its place and :meth:`StageConfig.settings` writes the same flat table back.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
import importlib
from typing import Callable, NamedTuple

from ..core.thresholds import DEFAULT_TAU_REL
from ..core.validate import SpecError, check_bool, check_choice, check_fields, check_integral, check_number
from .options import EngineOptions, FlowOptions, GDOptions, LBFGSOptions, MinModeOptions, NEBOptions, NewtonOptions


class Engine(NamedTuple):
    """An engine: its options type and its (init, step) pair over an
    :class:`~landscape.engines.state.EngineState`, from the module ``landscape.engines.<module>``
    (imported on first use of ``init`` or ``step``: options validate without torch).
    ``descent``: the engine is a descent dynamics (its trajectories end at minima; a finisher may
    only shorten its last convex stretch)."""

    name: str
    options: type
    module: str
    descent: bool

    @property
    def init(self) -> Callable:
        return importlib.import_module(f"landscape.engines.{self.module}").init

    @property
    def step(self) -> Callable:
        return importlib.import_module(f"landscape.engines.{self.module}").step


ENGINES: dict[str, Engine] = {
    "gd": Engine("gd", GDOptions, "gd", True),
    "flow": Engine("flow", FlowOptions, "flow", True),
    "newton": Engine("newton", NewtonOptions, "newton", False),
    "lbfgs": Engine("lbfgs", LBFGSOptions, "lbfgs", True),
    "minmode": Engine("minmode", MinModeOptions, "minmode", False),
}
#: Engines whose rows are not points of the model (a nudged elastic band's row is a whole band,
#: :class:`landscape.engines.neb.BandModel`): driven by :func:`~landscape.engines.driver.run_engine`
#: like the others, but never a stage of a study's pipelines.
BAND_ENGINES: dict[str, Engine] = {"neb": Engine("neb", NEBOptions, "neb", False)}
#: Every engine the driver runs.
ALL_ENGINES: dict[str, Engine] = {**ENGINES, **BAND_ENGINES}


@dataclass(frozen=True, init=False)
class StageConfig:
    """One engine run inside a pipeline, with every tolerance it uses.

    * ``engine`` (one of :data:`ENGINES`) and ``options`` (that engine's options dataclass;
      None: its defaults).
    * ``max_iter``: iteration budget. ``tol``: ‖∇L‖ at which a row converges in this stage.
    * Stalling (a trajectory that has stopped moving): the loss has not fallen by more than
      ``stall_loss_rtol``·|L| *and* ‖∇L‖ has not reached a new minimum by a factor
      1 − ``stall_rtol``, both for ``stall_window`` iterations. A trajectory whose loss still
      falls (a plateau of saddle-to-saddle dynamics) is never stalled. ``flat_rtol``: a stall is
      ``gradient_flat`` when ‖H∇L‖/‖∇L‖ ≤ flat_rtol (Frye et al.), else ``plateau``.
    * ``diverge_loss``: a loss above it (or a non-finite one) stops the row as ``diverged``.
    * ``entry_grad_norm``: for every stage after the first, the rows that enter are those that
      converged in the previous stage, or stopped there (max_iter, stalled) with ‖∇L‖ ≤ this
      value; None admits only converged ones.
    * Negative-curvature test (descent engines; ``curvature_check`` None means on for gd, flow
      and lbfgs, off for newton): before a row of this stage counts as converged, a batched
      Lanczos run of ``curvature_steps`` Hessian-vector products looks for a Ritz value below
      −max(``curvature_tau_rel``·min λ, ``curvature_grad_mult``·‖∇L‖); one found proves negative
      curvature, and the row keeps running (re-tested after ``curvature_backoff`` iterations,
      doubling each time). The ‖∇L‖ term keeps the orbit directions of the symmetry, whose
      curvature is O(‖∇L‖) away from a critical point, from counting. ``curvature_gauge``:
      project those directions out of the Lanczos run instead (exact,
      :class:`landscape.core.gauge.GaugeProjector`; T²P work per tested row, T = d(d−1)/2 per
      gauge interface, so for small models), and drop the ‖∇L‖ term: a saddle's negative
      curvature smaller than 10‖∇L‖ is then seen, which is what lets a finisher take over at a
      larger ‖∇L‖ without changing where the descent ends.
    """

    engine: str = "gd"
    options: EngineOptions | None = None
    max_iter: int = 10000
    tol: float = 1e-10
    stall_window: int = 1000
    stall_rtol: float = 1e-3
    stall_loss_rtol: float = 1e-12
    flat_rtol: float = 1e-3
    diverge_loss: float = 1e8
    entry_grad_norm: float | None = 1e-3
    curvature_check: bool | None = None
    curvature_steps: int = 40
    curvature_tau_rel: float = DEFAULT_TAU_REL
    curvature_grad_mult: float = 10.0
    curvature_backoff: int = 500
    curvature_gauge: bool = False

    def __init__(self, engine: str = "gd", options: EngineOptions | None = None, **fields_):
        """``StageConfig(engine="gd", lr=0.5, max_iter=20000)``: engine options and common fields
        given side by side (as in a study file); or ``options=GDOptions(...)`` explicitly."""
        check_choice("engine", engine, tuple(ALL_ENGINES))
        Opt = ALL_ENGINES[engine].options
        mine = {k: fields_.pop(k) for k in Opt.field_names() if k in fields_}
        if mine:
            if options is not None:
                raise SpecError("give engine options either as fields or as options=, not both")
            options = Opt(**mine)
        check_fields(f"a {engine} stage", fields_, self.common_fields() + Opt.field_names())
        object.__setattr__(self, "engine", engine)
        object.__setattr__(self, "options", options)
        for f in fields(self):
            if f.name not in ("engine", "options"):
                object.__setattr__(self, f.name, fields_.get(f.name, f.default))
        self.__post_init__()

    def __getattr__(self, name):
        # engine options read like fields: stage.lr, stage.memory
        opts = self.__dict__.get("options")
        if opts is not None and name in type(opts).field_names():
            return getattr(opts, name)
        raise AttributeError(f"a {self.__dict__.get('engine')} stage has no field {name!r}")

    def __post_init__(self):
        check_choice("engine", self.engine, tuple(ALL_ENGINES))
        Opt = ALL_ENGINES[self.engine].options
        if self.options is None:
            object.__setattr__(self, "options", Opt())
        elif not isinstance(self.options, Opt):
            raise SpecError(f"options of a {self.engine} stage must be {Opt.__name__}, not {type(self.options).__name__}")
        for f in ("max_iter", "stall_window", "curvature_steps", "curvature_backoff"):
            object.__setattr__(self, f, check_integral(f, getattr(self, f)))
        for f in ("tol", "stall_rtol", "stall_loss_rtol", "flat_rtol", "diverge_loss", "curvature_tau_rel",
                  "curvature_grad_mult"):
            object.__setattr__(self, f, check_number(f, getattr(self, f)))
        if self.entry_grad_norm is not None:
            object.__setattr__(self, "entry_grad_norm", check_number("entry_grad_norm", self.entry_grad_norm))
        if self.curvature_check is None:
            object.__setattr__(self, "curvature_check", ALL_ENGINES[self.engine].descent)
        check_bool("curvature_check", self.curvature_check)
        check_bool("curvature_gauge", self.curvature_gauge)

    # ----- the flat table ------------------------------------------------------------------------
    @classmethod
    def common_fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name not in ("engine", "options"))

    @classmethod
    def from_dict(cls, d: dict) -> "StageConfig":
        """A stage from its flat table (engine options and common fields side by side)."""
        d = dict(d)
        return cls(engine=d.pop("engine", "gd"), **d)

    def settings(self) -> dict:
        """The flat table: what the stage is stored and labelled with (:meth:`from_dict` reads it)."""
        common = {k: v for k, v in asdict(self).items() if k not in ("engine", "options")}
        return {"engine": self.engine, **self.options.to_dict(), **common}

    def describe(self) -> str:
        return self.options.describe()

    @property
    def descent(self) -> bool:
        return ALL_ENGINES[self.engine].descent


def make_stage(engine: str = "gd", **flat) -> StageConfig:
    """``make_stage("gd", lr=0.5, tol=1e-6)``: the same as ``StageConfig(engine="gd", ...)``."""
    return StageConfig(engine=engine, **flat)
