"""Every threshold of the point analysis, declared once (the ``[analysis]`` table of a study).

:class:`AnalysisSettings` is what :func:`landscape.analysis.point.analyse_point` takes, what a
study stores in its configuration, and what every analysed point records under ``thresholds``.
The defaults are those of :mod:`landscape.analysis.hessian` and :mod:`landscape.analysis.structure`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Mapping

from ..core.thresholds import DEFAULT_TAU_REL  # noqa: F401  (declared in core: the engines use it too)
from ..core.validate import INDEX_MAX, check_fields, check_int, check_number

# The defaults, declared here (torch-free, so a study file is validated without importing torch)
# and imported by the modules that use them; their meaning is documented there.
#: :mod:`landscape.analysis.hessian`
DEFAULT_DENSE_LIMIT = None
DEFAULT_DENSE_BUDGET_S = 60.0
DEFAULT_NOISE_MULT = 1e4
DEFAULT_LANCZOS_K = 20
DEFAULT_LANCZOS_TOL = 1e-10
DEFAULT_LANCZOS_SEED = 0
#: :mod:`landscape.analysis.structure`
DEFAULT_RANK_RTOL = 1e-6
DEFAULT_PATTERN_RTOL = 1e-4
DEFAULT_COLLAPSE_TOL = 1e-4
DEFAULT_ZERO_ATOL = 1e-12
#: :mod:`landscape.analysis.symmetry`
DEFAULT_SYMMETRY_RTOL = 1e-8
#: :mod:`landscape.analysis.spectrum` (the dense budget of ``landscape spectrum``: a single point,
#: so more than a study's)
DEFAULT_SPECTRUM_BUDGET_S = 600.0
DEFAULT_GROUP_RTOL = 1e-6
DEFAULT_SLQ_VECTORS = 16
DEFAULT_SLQ_STEPS = 80
DEFAULT_DENSITY_POINTS = 400
DEFAULT_DENSITY_WIDTH = 0.005

#: Dense copies of the gauge-tangent matrix T (rows × P float64) alive while
#: :func:`landscape.analysis.symmetry.symmetry_space` takes its SVD: T, LAPACK's copy, Vᵀ and the
#: basis (measured: 4.2 × T's bytes at 600 × 100,000).
SYMMETRY_COPIES = 4
#: Dense P × P float64 matrices of the spectrum's dense path (Hessian, eigenvectors, work), as
#: :func:`landscape.analysis.spectrum.inspect_spectrum` asks :func:`choose_method` for.
DENSE_SPECTRUM_MATRICES = 5


def symmetry_matrix_bytes(rows: int, P: int) -> int:
    """Bytes of the symmetry space of a point whose gauge-tangent matrix has ``rows`` rows at P
    parameters (:data:`SYMMETRY_COPIES` dense copies)."""
    return SYMMETRY_COPIES * 8 * int(rows) * int(P)


def gauge_rows_bound(K: int, n: int, d: int, L: int, activation: str) -> int:
    """Most rows of the gauge-tangent matrix of :func:`landscape.analysis.symmetry.symmetry_tangents`
    at a critical point: r·d − r(r+1)/2 per gauge interface (L of them in the linear model, H₁|W₁
    alone with ReLU), r the rank of the interface's factors. At a critical point with weight decay
    the factors are balanced, so r ≤ K in the linear model (every factor has the rank of W_L) and
    r ≤ min(d, N) at H₁|W₁ with ReLU."""
    linear = activation == "linear"
    r = min(d, K if linear else K * n)
    return (L if linear else 1) * (r * d - r * (r + 1) // 2)


#: Fields passed to :func:`landscape.analysis.hessian.analyse_hessian`.
HESSIAN_FIELDS = ("tau", "tau_rel", "noise_mult", "dense_limit", "dense_budget_s", "lanczos_k", "lanczos_tol",
                  "lanczos_seed", "symmetry_rtol")
#: Fields passed to :func:`landscape.analysis.structure.analyse_structure`.
STRUCTURE_FIELDS = ("rank_rtol", "pattern_rtol", "collapse_tol", "zero_atol")


#: Fields that may be None (meaning: the default rule) in both settings tables.
_OPTIONAL = ("tau", "dense_limit")
#: Seed fields (at most :data:`landscape.core.validate.INDEX_MAX`, as every seed).
_SEEDS = ("lanczos_seed", "seed")


def _check_fields(obj, table: str, integers: tuple[str, ...], zero_allowed: tuple[str, ...]) -> None:
    """Validate every field of a frozen settings dataclass in place: ``integers`` as integers ≥ 1
    (≥ 0 if in ``zero_allowed``), the rest as finite numbers > 0 (≥ 0 if in ``zero_allowed``),
    stored as floats; None only for :data:`_OPTIONAL`. Errors name ``table.field``."""
    for f in fields(obj):
        v = getattr(obj, f.name)
        if f.name in _OPTIONAL and v is None:
            continue
        if f.name in integers:
            object.__setattr__(obj, f.name, check_int(f"{table}.{f.name}", v, 0 if f.name in zero_allowed else 1,
                                                      maximum=INDEX_MAX if f.name in _SEEDS else None))
        else:
            object.__setattr__(obj, f.name, check_number(f"{table}.{f.name}", v, allow_zero=f.name in zero_allowed))


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
        _check_fields(self, "analysis", integers=("dense_limit", "lanczos_k", "lanczos_seed"),
                      zero_allowed=("lanczos_seed", "zero_atol"))

    def kwargs(self) -> dict:
        """Every field as a keyword argument of :func:`landscape.analysis.point.analyse_point`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def hessian_kwargs(self) -> dict:
        return {k: getattr(self, k) for k in HESSIAN_FIELDS}

    def structure_kwargs(self) -> dict:
        return {k: getattr(self, k) for k in STRUCTURE_FIELDS}

    def to_dict(self) -> dict:
        return {k: v for k, v in self.kwargs().items() if v is not None}


@dataclass(frozen=True)
class DedupTolerances:
    """Named tolerances of :func:`same_point`; stored with every study.

    * ``loss_atol``, ``loss_rtol``: |ℓ_a − ℓ_b| ≤ loss_atol + loss_rtol·max(|ℓ_a|, |ℓ_b|).
    * ``sv_atol``, ``sv_rtol``: per factor, |s_a,i − s_b,i| ≤ sv_atol + sv_rtol·max(s_a,1, s_b,1)
      (relative to that factor's largest singular value); the same for z_sv and z_within.
    * ``zbar_atol``, ``zbar_rtol``: a class permutation π with
      |Z̄_a[i, j] − Z̄_b[π i, π j]| ≤ zbar_atol + zbar_rtol·max(max|Z̄_a|, max|Z̄_b|) for all i, j.

    The defaults suit points certified at ‖∇L‖ ≲ 1e-8 in float64 with λ ≳ 1e-4 (parameter error
    ≈ ‖∇L‖ / smallest non-zero curvature ≲ 1e-4 in the worst case) and keep structures whose
    logits differ at O(1), such as DNC and class pairing, far apart.
    """

    loss_atol: float = 1e-10
    loss_rtol: float = 1e-7
    sv_atol: float = 1e-6
    sv_rtol: float = 1e-4
    zbar_atol: float = 1e-6
    zbar_rtol: float = 1e-4

    def __post_init__(self):
        for f in fields(self):
            object.__setattr__(self, f.name, check_number(f"dedup.{f.name}", getattr(self, f.name), allow_zero=True))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "DedupTolerances":
        """Tolerances from their table (``[dedup]``, or as stored); unknown keys are refused."""
        check_fields("[dedup]", d, [f.name for f in fields(cls)])
        return cls(**dict(d))


@dataclass(frozen=True)
class SpectrumSettings:
    """Everything :func:`landscape.analysis.spectrum.inspect_spectrum` uses: the Hessian thresholds
    it shares with the point analysis (``tau``, ``tau_rel``, ``noise_mult``, ``dense_limit``,
    ``lanczos_k``, ``lanczos_seed`` as ``seed``: :meth:`from_analysis` takes them from a study's
    ``[analysis]`` table) and its own: ``dense_budget_s`` (a longer budget than the point
    analysis': a spectrum is asked for), ``group_rtol`` (eigenvalue groups), ``slq_vectors`` and
    ``slq_steps`` (stochastic Lanczos quadrature), ``density_points`` and ``density_width``."""

    tau: float | None = None
    tau_rel: float = DEFAULT_TAU_REL
    noise_mult: float = DEFAULT_NOISE_MULT
    dense_limit: int | None = DEFAULT_DENSE_LIMIT
    dense_budget_s: float = DEFAULT_SPECTRUM_BUDGET_S
    group_rtol: float = DEFAULT_GROUP_RTOL
    lanczos_k: int = DEFAULT_LANCZOS_K
    slq_vectors: int = DEFAULT_SLQ_VECTORS
    slq_steps: int = DEFAULT_SLQ_STEPS
    density_points: int = DEFAULT_DENSITY_POINTS
    density_width: float = DEFAULT_DENSITY_WIDTH
    seed: int = DEFAULT_LANCZOS_SEED

    def __post_init__(self):
        _check_fields(self, "spectrum", integers=("dense_limit", "lanczos_k", "slq_vectors", "slq_steps",
                                                  "density_points", "seed"), zero_allowed=("seed",))

    @classmethod
    def from_analysis(cls, analysis: "AnalysisSettings", **overrides) -> "SpectrumSettings":
        """The spectrum settings of a study: its ``[analysis]`` thresholds, then ``overrides``."""
        shared = {"tau": analysis.tau, "tau_rel": analysis.tau_rel, "noise_mult": analysis.noise_mult,
                  "dense_limit": analysis.dense_limit, "lanczos_k": analysis.lanczos_k, "seed": analysis.lanczos_seed}
        return cls(**{**shared, **overrides})

    def kwargs(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}
