"""Study configuration: TOML files, command-line overrides, validation, the embedded default.

A study file has top-level fields (``name``, ``seed``, ``trajectories``, ``batch_size``,
``certify_tol``), a ``[model]`` table with the fields of MODEL.md (``K``, ``n``, ``d``, ``L``,
``activation``, ``loss``, ``lambda``, optional ``lambda_H`` and ``lambda_W``), an ``[init]`` table
(:class:`landscape.init.InitScheme`) and an array ``[[stages]]`` of engine stages
(:class:`landscape.flows.StageConfig`). The last stage's ``tol`` is set to ``certify_tol``: a
trajectory is certified only when its final gradient norm is at most that.

Optional tables (every field has a default, and the effective values are stored with the study):

* ``[saddles]`` (:class:`SaddleSearch`): saddle-search starts (Newton-MR by default, which
  converges to critical points of any index), seeded as trajectories ``index_offset + j`` so they
  never share a seed with the main trajectories, and the descent used to connect every saddle
  found to the points below it (``[[saddles.stages]]``, ``[[saddles.descend]]``, ``[saddles.init]``).
* ``[dedup]``: the tolerances of :class:`landscape.dedup.DedupTolerances`.
* ``[analysis]`` (:class:`AnalysisSettings`): the thresholds of
  :func:`landscape.analysis.analyse_point`.

Overrides (``--set key=value``): a model field (``d=70``, ``lambda=0.0009765625``), a top-level
field (``trajectories=2000``), ``init.FIELD``, ``stages.I.FIELD``, or ``lr``/``engine`` for the
first stage; ``saddles.FIELD``, ``saddles.init.FIELD``, ``saddles.stages.I.FIELD``,
``saddles.descend.I.FIELD``, ``dedup.FIELD``, ``analysis.FIELD``. Values are parsed as TOML
(``1e-3``, ``"relu"``, ``[1, 2]``); a bare word is a string.
"""
from __future__ import annotations

import copy
import json
import tomllib
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path

from .dedup import DedupTolerances
from .flows import StageConfig
from .hessian import (DEFAULT_DENSE_LIMIT, DEFAULT_LANCZOS_K, DEFAULT_LANCZOS_SEED, DEFAULT_LANCZOS_TOL,
                      DEFAULT_NOISE_MULT, DEFAULT_SYMMETRY_RTOL, DEFAULT_TAU_REL)
from .init import InitScheme
from .model import ModelSpec, SpecError, check_int, check_number
from .structure import DEFAULT_COLLAPSE_TOL, DEFAULT_PATTERN_RTOL, DEFAULT_RANK_RTOL, DEFAULT_ZERO_ATOL

MODEL_KEYS = {"K": "K", "n": "n", "d": "d", "L": "L", "activation": "activation", "loss": "loss",
              "lambda": "lam", "lambda_H": "lam_H", "lambda_W": "lam_W", "dtype": "dtype"}
TOP_KEYS = ("name", "seed", "trajectories", "batch_size", "certify_tol")
#: Optional tables (see the module docstring).
OPTIONAL_TABLES = ("saddles", "dedup", "analysis")


def default_config_dict() -> dict:
    """The embedded default study (``landscape/configs/default.toml``) as a dict."""
    return tomllib.loads(resources.files("landscape").joinpath("configs/default.toml").read_text())


def load_config_dict(path: str | Path) -> dict:
    """Read a study file (.toml, or .json as written to a results folder)."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"config={str(path)!r} is invalid: no such file")
    text = path.read_text()
    try:
        return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise SpecError(f"config={str(path)!r} is invalid: cannot parse it ({exc})") from None


def parse_value(text: str):
    """A --set value: TOML syntax (numbers, booleans, quoted strings, arrays), else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(cfg: dict, overrides: list[str]) -> dict:
    """Return a copy of ``cfg`` with each ``key=value`` of ``overrides`` applied."""
    cfg = copy.deepcopy(cfg)
    for item in overrides or []:
        if "=" not in item:
            raise SpecError(f"--set {item!r} is invalid: must be KEY=VALUE")
        key, raw = (s.strip() for s in item.split("=", 1))
        value = parse_value(raw)
        parts = key.split(".")
        if key in MODEL_KEYS:
            cfg.setdefault("model", {})[key] = value
        elif key in TOP_KEYS:
            cfg[key] = value
        elif key in ("lr", "engine"):
            cfg.setdefault("stages", [{}])[0][key] = value
        elif parts[0] == "init" and len(parts) == 2:
            cfg.setdefault("init", {})[parts[1]] = value
        elif parts[0] == "model" and len(parts) == 2 and parts[1] in MODEL_KEYS:
            cfg.setdefault("model", {})[parts[1]] = value
        elif parts[0] == "stages" and len(parts) == 3 and parts[1].isdigit():
            _set_stage(cfg.setdefault("stages", []), key, int(parts[1]), parts[2], value)
        elif parts[0] in ("dedup", "analysis") and len(parts) == 2:
            cfg.setdefault(parts[0], {})[parts[1]] = value
        elif parts[0] == "saddles" and len(parts) == 2:
            cfg.setdefault("saddles", {})[parts[1]] = value
        elif parts[0] == "saddles" and len(parts) == 3 and parts[1] == "init":
            cfg.setdefault("saddles", {}).setdefault("init", {})[parts[2]] = value
        elif parts[0] == "saddles" and len(parts) == 4 and parts[1] in SADDLE_PIPELINES and parts[2].isdigit():
            table = cfg.setdefault("saddles", {})
            if parts[1] not in table:
                table[parts[1]] = copy.deepcopy(SADDLE_DEFAULT_STAGES[parts[1]])
            _set_stage(table[parts[1]], key, int(parts[2]), parts[3], value)
        else:
            raise SpecError(f"--set {key!r} is invalid: not a known field (model fields {sorted(MODEL_KEYS)}, "
                            f"top-level {list(TOP_KEYS)}, init.FIELD, stages.I.FIELD, lr, engine, "
                            f"saddles.FIELD, saddles.init.FIELD, saddles.stages.I.FIELD, saddles.descend.I.FIELD, "
                            f"dedup.FIELD, analysis.FIELD)")
    return cfg


def _set_stage(stages: list, key: str, i: int, field_name: str, value) -> None:
    if i >= len(stages):
        raise SpecError(f"--set {key}: stage {i} does not exist (that pipeline has {len(stages)} stages)")
    stages[i][field_name] = value


def check_fields(table: str, d: dict, allowed) -> None:
    extra = sorted(set(d) - set(allowed))
    if extra:
        raise SpecError(f"{table} has unknown field(s) {extra}: allowed are {sorted(allowed)}")


#: Pipelines of the ``[saddles]`` table and their defaults (the last stage's ``tol`` becomes
#: ``certify_tol``). ``stages``: Newton-MR from the saddle-search starts, which converges to
#: critical points of any index. ``descend``: from saddle ± eps·v (v a negative-curvature
#: eigenvector), the adaptive gradient flow, then a Newton-MR polish that certifies the end point.
#: A descent starts with ‖∇L‖ ≈ |μ|·eps (μ < −τ the eigenvalue), which rises while it leaves
#: the saddle: so the flow's stall test is off (stall_window = max_iter) and its ``tol`` (1e-9)
#: sits below τ·eps for the default τ and eps, or the flow would stop before it moved. Rows
#: that reach max_iter with ‖∇L‖ ≤ entry_grad_norm go on to the polish.
SADDLE_DEFAULT_STAGES = {
    "stages": [{"engine": "newton", "max_iter": 200, "stall_window": 20}],
    "descend": [{"engine": "flow", "max_iter": 20000, "tol": 1e-9, "stall_window": 20000},
                {"engine": "newton", "max_iter": 100, "stall_window": 10, "entry_grad_norm": 1e-3}],
}
SADDLE_PIPELINES = tuple(SADDLE_DEFAULT_STAGES)
#: Default trajectory index of the first saddle-search start (its seed is that of this index).
SADDLE_INDEX_OFFSET = 10 ** 9


def _stage_list(table: str, stage_dicts, certify_tol: float) -> tuple[StageConfig, ...]:
    """Validated stages of a pipeline; the last one's ``tol`` is set to ``certify_tol``."""
    if not isinstance(stage_dicts, list) or not stage_dicts:
        raise SpecError(f"{table} is empty: a pipeline needs at least one stage table")
    stages = []
    for i, sd in enumerate(stage_dicts):
        if not isinstance(sd, dict):
            raise SpecError(f"{table}[{i}] is invalid: must be a table of stage fields")
        check_fields(f"{table}[{i}]", sd, [f.name for f in fields(StageConfig)])
        sd = dict(sd)
        if i == len(stage_dicts) - 1:
            sd["tol"] = float(certify_tol)
        try:
            stages.append(StageConfig(**sd))
        except SpecError as exc:
            raise SpecError(f"{table}[{i}].{exc}") from None
    return tuple(stages)


@dataclass(frozen=True)
class SaddleSearch:
    """The ``[saddles]`` table: where saddles come from and how they are connected.

    * ``starts``: saddle-search trajectories (0: none). Start j is trajectory index
      ``index_offset + j``, drawn from ``init`` (None: the study's ``[init]``) with that index's
      seed, and runs the ``stages`` pipeline. These trajectories are stored with the study but
      never count in the basin fractions of the main dynamics.
    * ``descend``: the pipeline run from θ_s ± ``eps``·v_j (Euclidean step ``eps``, v_j each unit
      negative-curvature eigenvector) for every saddle found by any trajectory; each certified end
      point becomes an edge of the basin graph.
    * ``max_rounds``: saddles found by those descents are connected in turn, for at most this many
      rounds (each round connects every saddle not yet connected).
    """

    starts: int = 0
    index_offset: int = SADDLE_INDEX_OFFSET
    eps: float = 1e-3
    max_rounds: int = 3
    init: InitScheme | None = None
    stages: tuple[StageConfig, ...] = ()
    descend: tuple[StageConfig, ...] = ()

    @classmethod
    def from_dict(cls, d: dict, certify_tol: float, trajectories: int) -> "SaddleSearch":
        check_fields("[saddles]", d, ("starts", "index_offset", "eps", "max_rounds", "init") + SADDLE_PIPELINES)
        starts = check_int("saddles.starts", d.get("starts", 0), 0)
        offset = check_int("saddles.index_offset", d.get("index_offset", SADDLE_INDEX_OFFSET), 0)
        if offset < trajectories:
            raise SpecError(f"saddles.index_offset={offset} is invalid: must be >= trajectories={trajectories}, "
                            "so saddle-search starts never share an index (and seed) with a main trajectory")
        init = None
        if d.get("init") is not None:
            check_fields("[saddles.init]", d["init"], [f.name for f in fields(InitScheme)])
            try:
                init = InitScheme(**d["init"])
            except SpecError as exc:
                raise SpecError(f"saddles.{exc}") from None
        pipes = {k: _stage_list(f"saddles.{k}", d.get(k, copy.deepcopy(v)), certify_tol)
                 for k, v in SADDLE_DEFAULT_STAGES.items()}
        return cls(starts=starts, index_offset=offset, eps=check_number("saddles.eps", d.get("eps", 1e-3)),
                   max_rounds=check_int("saddles.max_rounds", d.get("max_rounds", 3), 1), init=init, **pipes)

    def to_dict(self) -> dict:
        out = {"starts": self.starts, "index_offset": self.index_offset, "eps": self.eps,
               "max_rounds": self.max_rounds,
               "stages": [s.settings() for s in self.stages], "descend": [s.settings() for s in self.descend]}
        if self.init is not None:
            out["init"] = {k: v for k, v in self.init.to_dict().items() if v is not None}
        return out

    def describe(self) -> str:
        return " → ".join(s.describe() for s in self.stages)

    def describe_descent(self) -> str:
        return " → ".join(s.describe() for s in self.descend) + f" from saddle ± {self.eps:g}·v"


@dataclass(frozen=True)
class AnalysisSettings:
    """The ``[analysis]`` table: thresholds passed to :func:`landscape.analysis.analyse_point`
    (Hessian: ``tau`` (None: the default rule of :mod:`landscape.hessian`), ``tau_rel``,
    ``noise_mult``, ``dense_limit``, ``lanczos_k``, ``lanczos_tol``, ``lanczos_seed``,
    ``symmetry_rtol``; structure: ``rank_rtol``,
    ``pattern_rtol``, ``collapse_tol``, ``zero_atol``)."""

    tau: float | None = None
    tau_rel: float = DEFAULT_TAU_REL
    noise_mult: float = DEFAULT_NOISE_MULT
    dense_limit: int = DEFAULT_DENSE_LIMIT
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
            if f.name in ("dense_limit", "lanczos_k", "lanczos_seed"):
                check_int(f"analysis.{f.name}", v, 0 if f.name == "lanczos_seed" else 1)
            elif not (f.name == "tau" and v is None):
                v = check_number(f"analysis.{f.name}", v, allow_zero=f.name == "zero_atol")
                object.__setattr__(self, f.name, v)

    def kwargs(self) -> dict:
        """Keyword arguments of :func:`landscape.analysis.analyse_point`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_dict(self) -> dict:
        return {k: v for k, v in self.kwargs().items() if v is not None}


@dataclass(frozen=True)
class StudyConfig:
    """A validated study: model, random starts, engine stages and certification tolerance."""

    name: str
    seed: int
    trajectories: int
    batch_size: int
    certify_tol: float
    model: ModelSpec
    init: InitScheme
    stages: tuple[StageConfig, ...]
    saddles: SaddleSearch = SaddleSearch()
    dedup: DedupTolerances = DedupTolerances()
    analysis: AnalysisSettings = AnalysisSettings()

    @classmethod
    def from_dict(cls, cfg: dict) -> "StudyConfig":
        cfg = copy.deepcopy(cfg)
        check_fields("study", cfg, TOP_KEYS + ("model", "init", "stages") + OPTIONAL_TABLES)
        for table in OPTIONAL_TABLES:
            if not isinstance(cfg.get(table, {}), dict):
                raise SpecError(f"{table} is invalid: must be a table")
        m = cfg.get("model", {})
        check_fields("[model]", m, MODEL_KEYS)
        missing = [k for k in ("K", "n", "d", "L") if k not in m]
        if missing:
            raise SpecError(f"[model] is missing field(s) {missing}")
        spec = ModelSpec(**{MODEL_KEYS[k]: (tuple(v) if isinstance(v, list) else v) for k, v in m.items()})
        init_d = cfg.get("init", {})
        check_fields("[init]", init_d, [f.name for f in fields(InitScheme)])
        init = InitScheme(**init_d)
        init.stds(spec)  # validates per-factor scales against the model
        stage_dicts = cfg.get("stages") or []
        if not stage_dicts:
            raise SpecError("stages is empty: a study needs at least one [[stages]] table")
        certify = check_number("certify_tol", cfg.get("certify_tol", 1e-10))
        stages = _stage_list("stages", stage_dicts, certify)
        name = cfg.get("name", "study")
        if not isinstance(name, str) or not name or any(c in name for c in "/\\"):
            raise SpecError(f"name={name!r} is invalid: must be a non-empty string without path separators")
        seed = check_int("seed", cfg.get("seed", 0), 0)
        trajectories = check_int("trajectories", cfg.get("trajectories", 100), 1)
        batch = check_int("batch_size", cfg.get("batch_size", 512), 1)
        saddles = SaddleSearch.from_dict(cfg.get("saddles", {}), float(certify), trajectories)
        dd = cfg.get("dedup", {})
        check_fields("[dedup]", dd, [f.name for f in fields(DedupTolerances)])
        try:
            dedup = DedupTolerances(**dd)
        except ValueError as exc:
            raise SpecError(f"dedup.{exc}") from None
        ad = cfg.get("analysis", {})
        check_fields("[analysis]", ad, [f.name for f in fields(AnalysisSettings)])
        return cls(name=name, seed=seed, trajectories=trajectories, batch_size=batch, certify_tol=float(certify),
                   model=spec, init=init, stages=stages, saddles=saddles, dedup=dedup,
                   analysis=AnalysisSettings(**ad))

    def to_dict(self) -> dict:
        """Effective configuration, in the file layout (loadable by :meth:`from_dict`)."""
        inv = {v: k for k, v in MODEL_KEYS.items()}
        model = {inv[k]: v for k, v in self.model.to_dict().items() if v is not None}
        init = {k: v for k, v in self.init.to_dict().items() if v is not None}
        return {"name": self.name, "seed": self.seed, "trajectories": self.trajectories,
                "batch_size": self.batch_size, "certify_tol": self.certify_tol, "model": model, "init": init,
                "stages": [s.settings() for s in self.stages], "saddles": self.saddles.to_dict(),
                "dedup": self.dedup.to_dict(), "analysis": self.analysis.to_dict()}

    def describe_dynamics(self) -> str:
        """How the fractions of this study were produced, e.g. 'gd(lr=0.5) → newton-mr; init gaussian'."""
        init = self.init.name + (f"(alpha={self.init.alpha:g})" if self.init.name == "small" else "")
        return " → ".join(s.describe() for s in self.stages) + f"; init {init}"


def load_study(path: str | Path | None = None, overrides: list[str] | None = None) -> StudyConfig:
    """Study from a file (or the embedded default when ``path`` is None) plus overrides."""
    base = default_config_dict() if path is None else load_config_dict(path)
    return StudyConfig.from_dict(apply_overrides(base, overrides or []))
