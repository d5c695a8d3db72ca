"""Every threshold of the point analysis, declared once (the ``[analysis]`` table of a study).

:class:`AnalysisSettings` is what :func:`landscape.analysis.point.analyse_point` takes, what a
study stores in its configuration, and what every analysed point records under ``thresholds``.
The defaults are those of :mod:`landscape.analysis.hessian` and :mod:`landscape.analysis.structure`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from ..core.validate import check_int, check_number
from .hessian import (DEFAULT_DENSE_BUDGET_S, DEFAULT_DENSE_LIMIT, DEFAULT_LANCZOS_K, DEFAULT_LANCZOS_SEED,
                      DEFAULT_LANCZOS_TOL, DEFAULT_NOISE_MULT, DEFAULT_TAU_REL)
from .structure import DEFAULT_COLLAPSE_TOL, DEFAULT_PATTERN_RTOL, DEFAULT_RANK_RTOL, DEFAULT_ZERO_ATOL
from .symmetry import DEFAULT_SYMMETRY_RTOL

#: Fields passed to :func:`landscape.analysis.hessian.analyse_hessian`.
HESSIAN_FIELDS = ("tau", "tau_rel", "noise_mult", "dense_limit", "dense_budget_s", "lanczos_k", "lanczos_tol",
                  "lanczos_seed", "symmetry_rtol")
#: Fields passed to :func:`landscape.analysis.structure.analyse_structure`.
STRUCTURE_FIELDS = ("rank_rtol", "pattern_rtol", "collapse_tol", "zero_atol")


@dataclass(frozen=True)
class AnalysisSettings:
    """Hessian: ``tau`` (None: the default rule of :mod:`landscape.analysis.hessian`),
    ``tau_rel``, ``noise_mult``, ``dense_limit`` (None: the measured cost model with
    ``dense_budget_s``), ``lanczos_k``, ``lanczos_tol``, ``lanczos_seed``, ``symmetry_rtol``;
    structure: ``rank_rtol``, ``pattern_rtol``, ``collapse_tol``, ``zero_atol``."""

    tau: float | None = None
    tau_rel: float = DEFAULT_TAU_REL
    noise_mult: float = DEFAULT_NOISE_MULT
    dense_limit: int | None = DEFAULT_DENSE_LIMIT
    dense_budget_s: float = DEFAULT_DENSE_BUDGET_S
    lanczos_k: int = DEFAULT_LANCZOS_K
    lanczos_tol: float = DEFAULT_LANCZOS_TOL
    lanczos_seed: int = DEFAULT_LANCZOS_SEED
    symmetry_rtol: float = DEFAULT_SYMMETRY_RTOL
    rank_rtol: float = DEFAULT_RANK_RTOL
    pattern_rtol: float = DEFAULT_PATTERN_RTOL
    collapse_tol: float = DEFAULT_COLLAPSE_TOL
    zero_atol: float = DEFAULT_ZERO_ATOL

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("tau", "dense_limit") and v is None:
                continue
            if f.name in ("dense_limit", "lanczos_k", "lanczos_seed"):
                check_int(f"analysis.{f.name}", v, 0 if f.name == "lanczos_seed" else 1)
            else:
                object.__setattr__(self, f.name, check_number(f"analysis.{f.name}", v,
                                                              allow_zero=f.name == "zero_atol"))

    def kwargs(self) -> dict:
        """Every field as a keyword argument of :func:`landscape.analysis.point.analyse_point`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def hessian_kwargs(self) -> dict:
        return {k: getattr(self, k) for k in HESSIAN_FIELDS}

    def structure_kwargs(self) -> dict:
        return {k: getattr(self, k) for k in STRUCTURE_FIELDS}

    def to_dict(self) -> dict:
        return {k: v for k, v in self.kwargs().items() if v is not None}
