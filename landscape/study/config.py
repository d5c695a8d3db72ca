"""Study configuration: TOML files, presets, command-line overrides, validation.

A study file has top-level fields (``name``, ``seed``, ``trajectories``, ``batch_size`` (starts
per committed unit), ``certify_tol``, ``device`` (:data:`DEVICE_HELP`), ``max_saddle_visits``,
``kink_rounds`` (ReLU models: how many rounds of the first stage's ``max_iter`` steps a descent
may run, each followed by the kink polish, :mod:`landscape.study.kink_finish`; 1: one round),
``working_batch`` (trajectories advanced at once, 0: measured, :mod:`landscape.engines.batching`;
results never depend on it), ``compile`` ("auto", "on", "off": ``torch.compile`` of the gradient,
:class:`landscape.core.model.DeepUFM`)), a ``[model]`` table with the fields of
MODEL.md (``K``, ``n``, ``d``, ``L``, ``activation``, ``loss``, ``lambda``, optional ``lambda_H``
and ``lambda_W``, ``dtype``), an ``[init]`` table (:class:`landscape.core.init.InitScheme`) and an
array ``[[stages]]`` of engine stages (:class:`landscape.engines.StageConfig`, one flat table
each). The last stage's ``tol`` is set to ``certify_tol``: a trajectory is certified only when
its final gradient norm is at most that.

**Layering.** Every study or sweep file is read on top of the embedded default study
(``landscape/configs/default.toml``): what the file does not say is taken from it. Tables merge
field by field; arrays of tables (``[[stages]]``, ``[[saddles.descend]]``) are replaced whole. So
a file holding only ``[model] d = 12`` is the default study at width 12.

Optional tables (every field has a default, and the effective values are stored with the study):

* ``[saddles]`` (:class:`SaddleSearch`): saddle-search starts (Newton-MR by default), seeded as
  trajectories ``index_offset + j``, and the descents that connect every saddle found to the
  points below it.
* ``[dedup]``: :class:`landscape.analysis.dedup.DedupTolerances`.
* ``[analysis]``: :class:`landscape.analysis.settings.AnalysisSettings`.
* ``[transition_states]``: the double-ended transition-state search (:mod:`landscape.study.transition_states`).
* ``[lambda0]``: how a λ = 0 study decides its ends
  (:class:`landscape.study.lambda0_settings.Lambda0Settings`); used only when ``[model]`` has
  ``lambda = 0``, which makes the study a λ = 0 study (:mod:`landscape.study.lambda0`: directions
  and their max-margin certificates, not critical points; the saddle search, the connections and
  the transition states are not run).

**Presets** (:func:`presets`): the embedded studies and sweeps in ``landscape/configs/``, each
a TOML file whose first comment line describes it; ``landscape run --preset NAME``.

Overrides (``--set key=value``): a model field (``d=70``, ``lambda=0.0009765625``), a top-level
field (``trajectories=2000``), ``init.FIELD``, ``stages.I.FIELD``, or ``lr``/``engine`` for the
first stage; ``saddles.FIELD``, ``saddles.init.FIELD``, ``saddles.stages.I.FIELD``,
``saddles.descend.I.FIELD``, ``dedup.FIELD``, ``analysis.FIELD``, ``transition_states.FIELD``,
``cross_check.starts``, ``cross_check.stages.I.FIELD``, ``lambda0.FIELD`` (``connect.…`` and
``check.…``, the former names of ``transition_states`` and ``cross_check``, are still read). Values are
parsed as TOML (``1e-3``, ``"relu"``, ``[1, 2]``); a bare word is a string. A study with overrides
and no ``--set name=…`` is named after them (:func:`override_name`: ``default+d=70+trajectories=2000``,
at most 80 characters), and so is its results folder ``runs/<name>-<time>``.

**Certification tolerance.** ``certify_tol`` must lie in [100·ε, 1e-8] for the model's dtype:
below 100·ε (2.2e-14 in float64) round-off in ∇L alone exceeds it, so nothing would certify;
above 1e-8 the parameter error of a certified point (≈ ‖∇L‖/λ) exceeds what the deduplication
tolerances can absorb, and distinct structures merge or copies of one split. In float32 the two
bounds cross (100·ε = 1.2e-5 > 1e-8): float32 studies cannot certify and are refused.

**Resources.** :func:`load_study` (and a sweep's cells, and ``landscape run --resume``) estimates
the memory of a run before anything is allocated (:func:`study_memory_parts`: the trajectories'
records, a unit of ``batch_size`` starts, the dense symmetry analysis of a critical point, a
nudged elastic band) and refuses a study over the memory budget
(:func:`landscape.core.validate.memory_budget`: ``LANDSCAPE_MEMORY_BUDGET``, else half the RAM)
with the estimate and the largest value of the field that fits. Study indices are signed 64-bit
integers: ``trajectories`` ≤ :data:`CHECK_OFFSET` (main rows stay below the ``[cross_check]`` rows),
saddle-search rows must not overlap the ``[cross_check]`` rows, and seeds and the last saddle-search
index are at most 2⁶³ − 1. A study file is a regular file of at most 1 MiB.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
import stat
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ..analysis.settings import (DENSE_SPECTRUM_MATRICES, AnalysisSettings, DedupTolerances, gauge_rows_bound,
                                 symmetry_matrix_bytes)
from ..core.init import InitScheme
from ..core.spec import DTYPE_NAMES, ModelSpec
from ..core.validate import (INDEX_MAX, SpecError, check_choice, check_fields, check_int, check_memory,
                             check_number, check_table, format_bytes, memory_budget)
from ..engines.stage import BAND_ENGINES, ENGINES, StageConfig
from .transition_state_settings import TransitionStateSettings
from .lambda0_settings import Lambda0Settings

MODEL_KEYS = {"K": "K", "n": "n", "d": "d", "L": "L", "activation": "activation", "loss": "loss",
              "lambda": "lam", "lambda_H": "lam_H", "lambda_W": "lam_W", "dtype": "dtype"}
TOP_KEYS = ("name", "seed", "trajectories", "batch_size", "certify_tol", "device", "max_saddle_visits", "kink_rounds",
            "working_batch", "compile")
#: Optional tables (see the module docstring).
OPTIONAL_TABLES = ("saddles", "dedup", "analysis", "transition_states", "cross_check", "lambda0")
#: Former names of tables, still read in files, ``--set`` keys and stored configurations:
#: ``[connect]`` is ``[transition_states]`` ("connect" also named the descents from saddles) and
#: ``[check]`` is ``[cross_check]`` (both renamed 2026-12-07).
FORMER_TABLES = {"connect": "transition_states", "check": "cross_check"}
#: Most rounds of the first stage a ReLU descent may run (``kink_rounds``).
KINK_ROUNDS_MAX = 100
#: Largest certification tolerance that the default deduplication separates (module docstring).
CERTIFY_TOL_MAX = 1e-8
#: Round-off floor of the certification tolerance, in units of the dtype's ε.
CERTIFY_TOL_EPS_MULT = 100.0
#: Longest study name (a results folder adds a 16-character time stamp; file systems allow 255).
NAME_MAX = 200
#: Longest name a study takes from its overrides (:func:`override_name`; a longer one is cut and
#: ends in ``~`` and 8 hex digits of a hash of the whole).
OVERRIDE_NAME_MAX = 80
#: Devices a study may name (``cuda:N`` for a particular GPU).
DEVICE_HELP = '"auto", "cpu", "cuda" or "cuda:N"'


# ----- files and presets: in .presets, light enough for the command line (re-exported here) ------------
from .presets import default_config_dict, preset_path, presets  # noqa: E402,F401


#: Largest study, sweep or net file (TOML) read; a results folder's JSON record may be larger.
CONFIG_MAX_BYTES = 2 ** 20
#: Largest JSON record (config.json, OUT/sweep.json with its cells) read as a study or sweep file.
CONFIG_JSON_MAX_BYTES = 64 * 2 ** 20


def _read_text(path: Path, what: str) -> str:
    """The text of a study file: a regular file (not a device, pipe or directory) of at most
    :data:`CONFIG_MAX_BYTES` (:data:`CONFIG_JSON_MAX_BYTES` for .json), UTF-8; else a SpecError
    naming it, before more than that is read."""
    limit = CONFIG_JSON_MAX_BYTES if path.suffix == ".json" else CONFIG_MAX_BYTES
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SpecError(f"{what}={str(path)!r} is invalid: no such file") from None
    except OSError as exc:
        raise SpecError(f"{what}={str(path)!r} is invalid: cannot read it ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        if (path / "summary.json").is_file() or (path / "study.sqlite").is_file():
            raise SpecError(f"{what}={str(path)!r} is invalid: it is a directory, not a study file; this is a "
                            f"results folder: open it with landscape.load_results({str(path)!r}) "
                            f"(`landscape inspect {path}` on the command line)")
        raise SpecError(f"{what}={str(path)!r} is invalid: it is a directory, not a study file")
    if not stat.S_ISREG(st.st_mode):
        raise SpecError(f"{what}={str(path)!r} is invalid: not a regular file (a device, pipe or socket); "
                        "a study file must be a regular file")
    kind = ".json record" if path.suffix == ".json" else "study file"
    too_big = SpecError(f"{what}={str(path)!r} is invalid: larger than {format_bytes(limit)} "
                        f"(a {kind} must be at most {limit:,} bytes)")
    if st.st_size > limit:
        raise too_big
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise SpecError(f"{what}={str(path)!r} is invalid: cannot read it ({exc.strerror or exc})") from None
    if len(data) > limit:   # grew since stat
        raise too_big
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{what}={str(path)!r} is invalid: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def load_config_dict(path: str | Path, what: str = "config") -> dict:
    """Read a study or sweep file (.toml, or .json as written to a results folder), as written
    (not yet layered on the default)."""
    path = Path(path)
    text = _read_text(path, what)
    try:
        d = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise SpecError(f"{what}={str(path)!r} is invalid: cannot parse it ({exc})") from None
    if not isinstance(d, dict):
        raise SpecError(f"{what}={str(path)!r} is invalid: must hold a table of study fields")
    return d


def with_current_names(d: dict) -> dict:
    """``d`` (a study's tables) with each former table name (:data:`FORMER_TABLES`) replaced by
    its current one; a SpecError where a table is given under both names."""
    if not isinstance(d, dict) or not any(k in d for k in FORMER_TABLES):
        return d
    out = dict(d)
    for old, new in FORMER_TABLES.items():
        if old in out:
            if new in out:
                raise SpecError(f"[{old}] and [{new}] are one table ([{old}] is its former name): give it once, "
                                f"as [{new}]")
            out[new] = out.pop(old)
    return out


def layered(base: dict, top: dict) -> dict:
    """``top`` on ``base``: tables merged field by field (recursively), everything else (numbers,
    strings, arrays of tables) replaced (module docstring). Former table names are read as the
    current ones (:func:`with_current_names`, at the top level only)."""
    return _merged(with_current_names(base), with_current_names(top))


def _merged(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merged(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_value(text: str):
    """A --set value: TOML syntax (numbers, booleans, quoted strings, arrays), else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


# ----- overrides ------------------------------------------------------------------------------------
def override_name(base: str, overrides) -> str:
    """The name of a study run with ``--set`` overrides and no explicit ``name``: its base name (the
    file's or preset's, "default" for the embedded study) and every override in order,
    ``default+model.loss=mse+trajectories=64``. Safe as a folder name: quotes and white space are
    dropped, anything but letters, digits and ``._=,+-`` becomes ``_``; at most :data:`OVERRIDE_NAME_MAX` characters
    (a longer one is cut and ends in ``~`` and 8 hex digits of a SHA-1 of the whole, so different
    overrides keep different names)."""
    parts = [base]
    for item in overrides:
        key, _, raw = (s.strip() for s in str(item).partition("="))
        parts.append(f"{key}={raw}")
    full = "+".join(parts)
    safe = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9._=,+-]", "_", re.sub(r"[\s\"']", "", full)))
    if safe in (".", ".."):
        safe = "_"
    if len(safe) > OVERRIDE_NAME_MAX:
        digest = hashlib.sha1(full.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        safe = safe[:OVERRIDE_NAME_MAX - 9] + "~" + digest
    return safe


def _names_itself(overrides) -> bool:
    """Whether ``overrides`` set the study's ``name``."""
    return any(isinstance(o, str) and o.split("=", 1)[0].strip() == "name" for o in overrides)


def _table(cfg: dict, name: str) -> dict:
    t = cfg.setdefault(name, {})
    return check_table(name, t)


def apply_overrides(cfg: dict, overrides: list[str]) -> dict:
    """Return a copy of ``cfg`` (former table names read as the current ones) with each
    ``key=value`` of ``overrides`` applied."""
    cfg = copy.deepcopy(with_current_names(cfg))
    for item in overrides or []:
        if "=" not in item:
            raise SpecError(f"--set {item!r} is invalid: must be KEY=VALUE")
        key, raw = (s.strip() for s in item.split("=", 1))
        value = parse_value(raw)
        parts = key.split(".")
        if parts[0] in FORMER_TABLES:   # connect.max_pairs: transition_states.max_pairs
            parts[0] = FORMER_TABLES[parts[0]]
            key = ".".join(parts)
        if key in MODEL_KEYS:
            _table(cfg, "model")[key] = value
        elif key in TOP_KEYS:
            cfg[key] = value
        elif key in ("lr", "engine"):
            _set_stage(cfg.setdefault("stages", [{}]), f"stages.0.{key}", 0, key, value)
        elif parts[0] == "init" and len(parts) == 2:
            _table(cfg, "init")[parts[1]] = value
        elif parts[0] == "model" and len(parts) == 2 and parts[1] in MODEL_KEYS:
            _table(cfg, "model")[parts[1]] = value
        elif parts[0] == "stages" and len(parts) == 3 and parts[1].isdigit():
            _set_stage(cfg.setdefault("stages", []), key, int(parts[1]), parts[2], value)
        elif parts[0] in ("dedup", "analysis", "transition_states", "lambda0") and len(parts) == 2:
            _table(cfg, parts[0])[parts[1]] = value
        elif parts[0] == "cross_check" and len(parts) == 2 and parts[1] == "starts":
            _table(cfg, "cross_check")["starts"] = value
        elif parts[0] == "cross_check" and len(parts) == 4 and parts[1] == "stages" and parts[2].isdigit():
            _set_stage(_table(cfg, "cross_check").setdefault("stages", []), key, int(parts[2]), parts[3], value)
        elif parts[0] == "saddles" and len(parts) == 2:
            _table(cfg, "saddles")[parts[1]] = value
        elif parts[0] == "saddles" and len(parts) == 3 and parts[1] == "init":
            init = _table(cfg, "saddles").setdefault("init", {})
            check_table("saddles.init", init)[parts[2]] = value
        elif parts[0] == "saddles" and len(parts) == 4 and parts[1] in SADDLE_PIPELINES and parts[2].isdigit():
            table = _table(cfg, "saddles")
            if parts[1] not in table:
                table[parts[1]] = copy.deepcopy(SADDLE_DEFAULT_STAGES[parts[1]])
            _set_stage(table[parts[1]], key, int(parts[2]), parts[3], value)
        else:
            raise SpecError(f"--set {key!r} is invalid: not a known field (model fields {sorted(MODEL_KEYS)}, "
                            f"top-level {list(TOP_KEYS)}, init.FIELD, stages.I.FIELD, lr, engine, "
                            f"saddles.FIELD, saddles.init.FIELD, saddles.stages.I.FIELD, saddles.descend.I.FIELD, "
                            f"dedup.FIELD, analysis.FIELD, transition_states.FIELD, cross_check.starts, "
                            f"cross_check.stages.I.FIELD, lambda0.FIELD)")
    return cfg


def _check_stage_list(table: str, stages) -> list:
    if isinstance(stages, dict):
        raise SpecError(f"{table} is invalid: a single [{table}] table; write each stage as [[{table}]] "
                        "(an array of tables)")
    if not isinstance(stages, list) or not all(isinstance(s, dict) for s in stages):
        raise SpecError(f"{table}={stages!r} is invalid: must be an array of [[{table}]] tables")
    return stages


def _set_stage(stages, key: str, i: int, field_name: str, value) -> None:
    """Set one field of stage i. Changing a stage's ``engine`` drops the options only the old
    engine has (``--set engine=lbfgs`` on a gd stage drops its ``lr``)."""
    _check_stage_list(key.rsplit(".", 2)[0], stages)
    if i >= len(stages):
        raise SpecError(f"--set {key}: stage {i} does not exist (that pipeline has {len(stages)} stages)")
    stage = stages[i]
    old = stage.get("engine", "gd")
    if field_name == "engine" and value != old and value in ENGINES and old in ENGINES:
        for k in set(ENGINES[old].options.field_names()) - set(ENGINES[value].options.field_names()):
            stage.pop(k, None)
    stage[field_name] = value


# ----- tables -----------------------------------------------------------------------------------------
def model_spec(m) -> ModelSpec:
    """The :class:`ModelSpec` of a ``[model]`` table (field names of MODEL.md), the one parser of
    that table (studies, sweeps and ``landscape theory`` use it)."""
    check_table("model", m)
    check_fields("[model]", m, MODEL_KEYS)
    missing = [k for k in ("K", "n", "d", "L") if k not in m]
    if missing:
        raise SpecError(f"[model] is missing field(s) {missing}")
    return ModelSpec(**{MODEL_KEYS[k]: (tuple(v) if isinstance(v, list) else v) for k, v in m.items()})


def init_scheme(d, where: str = "init") -> InitScheme:
    """The :class:`InitScheme` of an ``[init]`` table."""
    check_table(where, d)
    check_fields(f"[{where}]", d, [f.name for f in fields(InitScheme)])
    try:
        return InitScheme(**d)
    except SpecError as exc:
        raise SpecError(str(exc).replace("init.", f"{where}.", 1)) from None


#: Pipelines of the ``[saddles]`` table and their defaults (the last stage's ``tol`` becomes
#: ``certify_tol``). ``stages``: Newton-MR from the saddle-search starts, which converges to
#: critical points of any index. ``descend``: from saddle ± eps·v (v a negative-curvature
#: direction), the adaptive gradient flow, then a Newton-MR polish that certifies the end point.
#: A descent starts with ‖∇L‖ ≈ |μ|·eps (μ < −τ the eigenvalue), which rises while it leaves
#: the saddle: so the flow's stall test is off (stall_window = max_iter) and its ``tol`` (1e-9)
#: sits below τ·eps for the default τ and eps, or the flow would stop before it moved. One source:
#: the embedded default study's ``[saddles]`` table (``landscape/configs/default.toml``).
SADDLE_DEFAULT_STAGES = {k: default_config_dict()["saddles"][k] for k in ("stages", "descend")}
SADDLE_PIPELINES = tuple(SADDLE_DEFAULT_STAGES)
#: Default trajectory index of the first saddle-search start (its seed is that of this index).
SADDLE_INDEX_OFFSET = 10 ** 9


def stage_list(table: str, stage_dicts, certify_tol: float) -> tuple[StageConfig, ...]:
    """Validated stages of a pipeline; the last one's ``tol`` is set to ``certify_tol``."""
    _check_stage_list(table, stage_dicts)
    if not stage_dicts:
        raise SpecError(f"{table} is empty: a pipeline needs at least one [[{table}]] table")
    stages = []
    for i, sd in enumerate(stage_dicts):
        sd = dict(sd)
        if sd.get("engine") in BAND_ENGINES:
            raise SpecError(f"{table}[{i}].engine={sd['engine']!r} is invalid: must be one of "
                            f"{', '.join(ENGINES)} (a {sd['engine']} row is a band between two minima, "
                            "which the [transition_states] search relaxes; it is not a stage of a trajectory)")
        if i == len(stage_dicts) - 1:
            sd["tol"] = float(certify_tol)
        try:
            stages.append(StageConfig.from_dict(sd))
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
    * ``descend``: the pipeline run from θ_s ± ``eps``·v (Euclidean step ``eps``) for every saddle
      found by any trajectory; each certified end point becomes an edge of the basin graph. The
      directions v: every negative-curvature eigenvector when the unstable eigenspace has no
      (near-)degenerate eigenvalues; otherwise ``directions`` unit vectors drawn uniformly from the
      unstable eigenspace with a seed fixed by the saddle (so the graph does not depend on which
      basis LAPACK returns, or on the thread count). At most ``max_descents`` descents per saddle.
    * ``max_rounds``: saddles found by those descents are connected in turn, for at most this many
      rounds (each round connects every saddle not yet connected).
    """

    starts: int = 0
    index_offset: int = SADDLE_INDEX_OFFSET
    eps: float = 1e-3
    max_rounds: int = 3
    max_descents: int = 24
    directions: int = 6
    degeneracy_rtol: float = 1e-6
    init: InitScheme | None = None
    stages: tuple[StageConfig, ...] = ()
    descend: tuple[StageConfig, ...] = ()

    FIELDS = ("starts", "index_offset", "eps", "max_rounds", "max_descents", "directions", "degeneracy_rtol", "init")

    @classmethod
    def from_dict(cls, d, certify_tol: float, trajectories: int) -> "SaddleSearch":
        check_table("saddles", d)
        check_fields("[saddles]", d, cls.FIELDS + SADDLE_PIPELINES)
        dflt = cls()
        starts = check_int("saddles.starts", d.get("starts", dflt.starts), 0, maximum=CHECK_OFFSET)
        # the last start's index, index_offset + starts - 1, is a SQLite integer
        offset = check_int("saddles.index_offset", d.get("index_offset", dflt.index_offset), 0,
                           f" (with saddles.starts={starts}: trajectory indices are signed 64-bit integers)",
                           maximum=INDEX_MAX - max(starts, 1) + 1)
        if offset < trajectories:
            raise SpecError(f"saddles.index_offset={offset} is invalid: must be >= trajectories={trajectories}, "
                            "so saddle-search starts never share an index (and seed) with a main trajectory")
        init = None if d.get("init") is None else init_scheme(d["init"], "saddles.init")
        pipes = {k: stage_list(f"saddles.{k}", d.get(k, copy.deepcopy(v)), certify_tol)
                 for k, v in SADDLE_DEFAULT_STAGES.items()}
        return cls(starts=starts, index_offset=offset, eps=check_number("saddles.eps", d.get("eps", dflt.eps)),
                   max_rounds=check_int("saddles.max_rounds", d.get("max_rounds", dflt.max_rounds), 1),
                   max_descents=check_int("saddles.max_descents", d.get("max_descents", dflt.max_descents), 2),
                   directions=check_int("saddles.directions", d.get("directions", dflt.directions), 1),
                   degeneracy_rtol=check_number("saddles.degeneracy_rtol", d.get("degeneracy_rtol", dflt.degeneracy_rtol)),
                   init=init, **pipes)

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in self.FIELDS if k != "init"}
        out.update(stages=[s.settings() for s in self.stages], descend=[s.settings() for s in self.descend])
        if self.init is not None:
            out["init"] = {k: v for k, v in self.init.to_dict().items() if v is not None}
        return out

    def describe(self) -> str:
        return " → ".join(s.describe() for s in self.stages)

    def describe_descent(self) -> str:
        return " → ".join(s.describe() for s in self.descend) + f" from saddle ± {self.eps:g}·v"


def certify_range(dtype: str) -> tuple[float, float]:
    """(lowest, highest) certification tolerance that can separate critical points in ``dtype``
    (module docstring): [100·ε, 1e-8]."""
    return CERTIFY_TOL_EPS_MULT * float(np.finfo(np.dtype(dtype)).eps), CERTIFY_TOL_MAX


def check_certify_tol(value, dtype: str) -> float:
    v = check_number("certify_tol", value)
    lo, hi = certify_range(dtype)
    if lo > hi:
        raise SpecError(f"dtype={dtype!r} cannot certify critical points: its round-off floor of ‖∇L‖ "
                        f"(100·ε = {lo:.2g}) is above the largest tolerance that separates critical points "
                        f"({hi:g}); use dtype=\"float64\"")
    if not lo <= v <= hi:
        raise SpecError(f"certify_tol={value!r} is invalid: must be in [{lo:.2g}, {hi:g}] for {dtype} "
                        "(below: round-off in ∇L exceeds it; above: distinct critical points are not separated)")
    return v


def check_name(value) -> str:
    if not isinstance(value, str) or not value or any(c in value for c in "/\\\0") or len(value) > NAME_MAX \
            or value in (".", ".."):
        raise SpecError(f"name={value!r} is invalid: must be a non-empty string of at most {NAME_MAX} characters "
                        "without path separators or NUL bytes")
    return value


def check_device(value) -> str:
    """``value`` if it is a device a study may name (:data:`DEVICE_HELP`)."""
    if isinstance(value, str) and (value in ("auto", "cpu", "cuda") or (
            value.startswith("cuda:") and value[5:].isdigit())):
        return value
    raise SpecError(f"device={value!r} is invalid: must be {DEVICE_HELP}")


def resolve_device(value: str) -> "torch.device":
    """The torch device of a study's ``device``: ``auto`` takes the first GPU when torch sees one,
    else the CPU; asking for CUDA where there is none is a SpecError naming ``device``."""
    import torch   # only to resolve: a study file is validated without torch

    check_device(value)
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if value.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SpecError(f"device={value!r} is invalid: torch sees no CUDA device here "
                            f"(torch {torch.__version__}, built {'with' if torch.version.cuda else 'without'} CUDA); "
                            "use device=\"cpu\" or \"auto\"")
        idx = int(value[5:]) if ":" in value else 0
        if idx >= torch.cuda.device_count():
            raise SpecError(f"device={value!r} is invalid: torch sees {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(value)


#: Study index of check trajectory j is CHECK_OFFSET + j (it starts where main trajectory j starts).
CHECK_OFFSET = 2_000_000_000


@dataclass(frozen=True)
class CrossCheckSettings:
    """The ``[cross_check]`` table: the first ``starts`` main starts run again by another dynamics
    (``[[cross_check.stages]]``, e.g. the paper's GD beside a main run by the faster gradient flow), so
    each study reports how often the two end at the same point modulo symmetry. Check
    trajectories are stored apart (kind ``check``, index :data:`CHECK_OFFSET` + j) and never
    count in the fractions."""

    starts: int = 0
    stages: tuple = ()

    @classmethod
    def from_dict(cls, d, certify_tol: float, trajectories: int) -> "CrossCheckSettings":
        d = check_table("cross_check", d)
        check_fields("[cross_check]", d, ("starts", "stages"))
        starts = check_int("cross_check.starts", d.get("starts", 0), 0)
        if starts > trajectories:
            raise SpecError(f"cross_check.starts={starts} is invalid: must be at most trajectories={trajectories} "
                            "(the check reruns main starts)")
        stage_dicts = d.get("stages")
        if starts and not stage_dicts:
            raise SpecError("cross_check.stages is empty: [cross_check] starts > 0 needs the dynamics to compare with, "
                            "as [[cross_check.stages]] tables (e.g. engine = \"gd\", lr = 0.5)")
        return cls(starts=starts, stages=stage_list("cross_check.stages", stage_dicts, certify_tol) if stage_dicts else ())

    def to_dict(self) -> dict:
        return {"starts": self.starts, "stages": [s.settings() for s in self.stages]}

    def describe(self) -> str:
        return " → ".join(s.describe() for s in self.stages)


def _check_index_ranges(saddles: SaddleSearch, cross_check: CrossCheckSettings) -> None:
    """A SpecError if the saddle-search starts (``index_offset + j``) share a study index with
    the [cross_check] rows (``CHECK_OFFSET + j``): the run would store two trajectories under one index
    and stop after computing them. (Main rows are below both: ``index_offset >= trajectories``
    and ``trajectories <= CHECK_OFFSET``.)"""
    lo, hi = saddles.index_offset, saddles.index_offset + saddles.starts
    clo, chi = CHECK_OFFSET, CHECK_OFFSET + cross_check.starts
    if saddles.starts and cross_check.starts and lo < chi and clo < hi:
        raise SpecError(f"saddles.index_offset={lo} is invalid: the saddle-search starts {lo}..{hi - 1} overlap "
                        f"the [cross_check] rows {clo}..{chi - 1} (cross_check.starts={cross_check.starts}); must be <= "
                        f"{clo - saddles.starts} or >= {chi}")


def transition_state_settings(d):
    return TransitionStateSettings.from_dict(check_table("transition_states", d))


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
    transition_states: object = None
    device: str = "auto"
    max_saddle_visits: int = 10
    kink_rounds: int = 1
    working_batch: int = 0
    compile: str = "auto"
    cross_check: CrossCheckSettings = CrossCheckSettings()
    lambda0: Lambda0Settings = Lambda0Settings()

    @classmethod
    def from_dict(cls, cfg: dict) -> "StudyConfig":
        if isinstance(cfg, dict) and "net" in cfg and "ufm_spec" in cfg:   # the database of a `landscape net` run
            raise SpecError("this folder holds a `landscape net` run, not a study: read its summary.json, or "
                            "(re)write its report with `landscape report DIR`")
        cfg = copy.deepcopy(with_current_names(check_table("study", cfg)))
        check_fields("study", cfg, TOP_KEYS + ("model", "init", "stages") + OPTIONAL_TABLES)
        spec = model_spec(cfg.get("model", {}))
        init = init_scheme(cfg.get("init", {}))
        init.stds(spec)  # validates per-factor scales against the model
        if spec.dtype not in DTYPE_NAMES:
            raise SpecError(f"dtype={spec.dtype!r} is invalid")
        certify = check_certify_tol(cfg.get("certify_tol", 1e-10), spec.dtype)
        stage_dicts = cfg.get("stages")
        if stage_dicts is None or stage_dicts == []:
            raise SpecError("stages is empty: a study needs at least one [[stages]] table")
        stages = stage_list("stages", stage_dicts, certify)
        name = check_name(cfg.get("name", "study"))
        seed = check_int("seed", cfg.get("seed", 0), 0, maximum=INDEX_MAX)
        trajectories = check_int("trajectories", cfg.get("trajectories", 100), 1,
                                 f" (main trajectory indices stay below the [cross_check] rows at {CHECK_OFFSET})",
                                 maximum=CHECK_OFFSET)
        batch = check_int("batch_size", cfg.get("batch_size", 512), 1)
        saddles = SaddleSearch.from_dict(cfg.get("saddles", {}), certify, trajectories)
        cross_check = CrossCheckSettings.from_dict(cfg.get("cross_check", {}), certify, trajectories)
        _check_index_ranges(saddles, cross_check)
        dedup = DedupTolerances.from_dict(check_table("dedup", cfg.get("dedup", {})))
        ad = check_table("analysis", cfg.get("analysis", {}))
        check_fields("[analysis]", ad, [f.name for f in fields(AnalysisSettings)])
        kink_rounds = check_int("kink_rounds", cfg.get("kink_rounds", 1), 1, maximum=KINK_ROUNDS_MAX)
        if kink_rounds != 1 and spec.activation != "relu":
            raise SpecError(f"kink_rounds={cfg['kink_rounds']!r} is invalid: rounds of the kink polish apply to "
                            f"ReLU models (model.activation = \"relu\"), this one is {spec.activation}")
        return cls(name=name, seed=seed, trajectories=trajectories, batch_size=batch, certify_tol=certify,
                   model=spec, init=init, stages=stages, saddles=saddles, dedup=dedup,
                   analysis=AnalysisSettings(**ad), transition_states=transition_state_settings(cfg.get("transition_states", {})),
                   device=check_device(cfg.get("device", "auto")),
                   max_saddle_visits=check_int("max_saddle_visits", cfg.get("max_saddle_visits", 10), 0),
                   kink_rounds=kink_rounds,
                   working_batch=check_int("working_batch", cfg.get("working_batch", 0), 0),
                   compile=check_choice("compile", cfg.get("compile", "auto"), ("auto", "on", "off")),
                   cross_check=cross_check,
                   lambda0=Lambda0Settings.from_dict(check_table("lambda0", cfg.get("lambda0", {})), trajectories))

    def to_dict(self) -> dict:
        """Effective configuration, in the file layout (loadable by :meth:`from_dict`)."""
        inv = {v: k for k, v in MODEL_KEYS.items()}
        model = {inv[k]: v for k, v in self.model.to_dict().items() if v is not None}
        init = {k: v for k, v in self.init.to_dict().items() if v is not None}
        return {"name": self.name, "seed": self.seed, "trajectories": self.trajectories,
                "batch_size": self.batch_size, "certify_tol": self.certify_tol, "device": self.device,
                "max_saddle_visits": self.max_saddle_visits, "kink_rounds": self.kink_rounds,
                "working_batch": self.working_batch,
                "compile": self.compile,
                "model": model, "init": init,
                "stages": [s.settings() for s in self.stages], "saddles": self.saddles.to_dict(),
                "dedup": self.dedup.to_dict(), "analysis": self.analysis.to_dict(), "transition_states": self.transition_states.to_dict(),
                **({"cross_check": self.cross_check.to_dict()} if self.cross_check.starts else {}),
                **({"lambda0": self.lambda0.to_dict()}
                   if self.model.unregularised or self.lambda0 != Lambda0Settings() else {})}

    @property
    def descent(self) -> bool:
        """The main dynamics is a descent (its first stage's engine is gd, flow or lbfgs): its
        trajectories count only where they end at minima."""
        return self.stages[0].descent

    def describe_dynamics(self) -> str:
        """How the fractions of this study were produced, e.g. 'gd(lr=0.5) → newton-mr; init gaussian'."""
        init = self.init.name + (f"(alpha={self.init.alpha:g})" if self.init.name == "small" else
                                 f"(s={self.init.spectral_value:g})" if self.init.name == "spectral" else "")
        kinks = (f" → kink polish (≤ {self.kink_rounds} × {self.stages[0].max_iter} steps)"
                 if self.model.activation == "relu" else "")
        return " → ".join(s.describe() for s in self.stages) + kinks + f"; init {init}"

    def memory_parts(self, **changes) -> dict[str, int]:
        """Estimated bytes of the parts of a run of this study (module docstring, *Resources*), with
        any of ``d``, ``L``, ``trajectories``, ``batch_size``, ``images`` changed."""
        return study_memory_parts(self, **changes)

    def check_resources(self) -> None:
        """A :class:`landscape.core.validate.ResourceError` if a run of this study is estimated to
        need more memory than the budget (:func:`landscape.core.validate.memory_budget`), naming
        the field, the estimate and the largest value that fits; before anything is allocated."""
        check_study_memory(self)


# ----- resources ------------------------------------------------------------------------------------
#: Bytes one trajectory holds in memory during a run (measured: ~1.4 kB for its record in the
#: summary, ~50 B for its index in the unit lists).
BYTES_PER_TRAJECTORY = 1536
#: (batch_size, P) float64 arrays a committed unit holds at least: its starts, end points and
#: gradients (an engine's state adds more).
UNIT_ARRAYS = 3
#: (P,) float64 arrays per image of a nudged elastic band at least: positions, gradients,
#: tangents, forces, velocities and the previous step.
NEB_ARRAYS = 6


def _pipelines(cfg: "StudyConfig"):
    return (("stages", cfg.stages), ("saddles.stages", cfg.saddles.stages), ("saddles.descend", cfg.saddles.descend),
            ("cross_check.stages", cfg.cross_check.stages))


def study_memory_parts(cfg: "StudyConfig", *, d: int | None = None, L: int | None = None,
                       trajectories: int | None = None, batch_size: int | None = None,
                       images: int | None = None) -> dict[str, int]:
    """Estimated bytes of each part of a run: ``records`` (every trajectory's, held together by
    the summary), and the phases that hold their own large arrays one after the other: ``unit``
    (a committed unit of ``batch_size`` starts), ``symmetry`` (the dense gauge-tangent matrix of
    one critical point and its SVD, :func:`landscape.analysis.settings.gauge_rows_bound` rows),
    ``dense`` (the dense Hessian path, only where ``analysis.dense_limit`` forces it),
    ``gauge_projector`` (a stage with ``curvature_gauge``: the (T, P) tangents of one row) and
    ``band`` (one nudged elastic band, where the ``[transition_states]`` search runs). Closed forms: no
    allocation, microseconds."""
    m = cfg.model
    K, n = m.K, m.n
    d = m.d if d is None else d
    L = m.L if L is None else L
    P = d * K * n + (L - 1) * d * d + K * d
    batch = cfg.batch_size if batch_size is None else batch_size
    starts = (cfg.trajectories if trajectories is None else trajectories) + cfg.cross_check.starts + cfg.saddles.starts
    parts = {"records": BYTES_PER_TRAJECTORY * starts,
             "unit": UNIT_ARRAYS * 8 * batch * P,
             "symmetry": symmetry_matrix_bytes(gauge_rows_bound(K, n, d, L, m.activation), P)}
    if cfg.analysis.dense_limit is not None and P <= cfg.analysis.dense_limit:
        parts["dense"] = DENSE_SPECTRUM_MATRICES * 8 * P * P
    if any(s.curvature_gauge for _, pipe in _pipelines(cfg) for s in pipe):
        T = (L if m.activation == "linear" else 1) * d * (d - 1) // 2
        parts["gauge_projector"] = 8 * T * (P + T)
    c = cfg.transition_states
    if c is not None and (c.max_pairs > 0 or c.pairs):
        parts["band"] = NEB_ARRAYS * 8 * ((c.images if images is None else images) + 2 + c.insert) * P
    return parts


def _peak(parts: dict) -> int:
    """The records stay while each phase runs in turn: records + the largest phase."""
    return parts["records"] + max(v for k, v in parts.items() if k != "records")


def _largest(lo: int, hi: int, fits) -> int | None:
    """The largest integer v in [lo, hi] with ``fits(v)`` (``fits`` true below some value and
    false above it), or None."""
    if hi < lo or not fits(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def check_study_memory(cfg: "StudyConfig") -> None:
    """:meth:`StudyConfig.check_resources`: refuse with the estimate, the field that dominates it
    and the largest value of that field that fits the memory budget."""
    parts = study_memory_parts(cfg)
    need = _peak(parts)
    budget, _ = memory_budget()
    if need <= budget:
        return

    def fits(**kw) -> bool:
        return _peak(study_memory_parts(cfg, **kw)) <= budget

    m = cfg.model
    P = m.P
    phase = max((k for k in parts if k != "records"), key=parts.get)
    part = "records" if parts["records"] >= parts[phase] else phase
    if part == "records":
        v = _largest(1, cfg.trajectories, lambda x: fits(trajectories=x))
        starts = cfg.trajectories + cfg.cross_check.starts + cfg.saddles.starts
        check_memory(f"trajectories={cfg.trajectories}", need,
                     f"a run of {starts:,} trajectories (~{BYTES_PER_TRAJECTORY:,} B each, held by the summary)",
                     f"within it trajectories must be <= {v:,}" if v else "no number of trajectories fits it")
    elif part == "unit":
        v = _largest(1, cfg.batch_size, lambda x: fits(batch_size=x))
        check_memory(f"batch_size={cfg.batch_size}", need,
                     f"a unit of {cfg.batch_size:,} starts at P={P:,} parameters ({UNIT_ARRAYS} arrays of "
                     f"{cfg.batch_size:,} × {P:,} float64)",
                     f"within it batch_size must be <= {v:,}" if v else
                     f"not even one start fits at P={P:,}: choose a smaller model")
    elif part == "band":
        c = cfg.transition_states
        v = _largest(3, c.images, lambda x: fits(images=x))
        check_memory(f"transition_states.images={c.images}", need,
                     f"a nudged elastic band of {c.images + 2 + c.insert:,} images at P={P:,} parameters "
                     f"({NEB_ARRAYS} arrays per image)",
                     f"within it transition_states.images must be in [3, {v:,}]" if v else
                     "not even 3 images fit: choose a smaller model or transition_states.max_pairs = 0")
    elif part == "dense":
        check_memory(f"analysis.dense_limit={cfg.analysis.dense_limit}", need,
                     f"the dense Hessian path it forces at P={P:,} parameters ({DENSE_SPECTRUM_MATRICES} dense "
                     f"{P:,} × {P:,} float64 matrices)",
                     f"set analysis.dense_limit below P={P:,}, or leave it unset (the cost model then keeps the "
                     "dense path within memory)")
    else:   # symmetry or gauge_projector: the model's size
        dmax = _largest(m.K, m.d, lambda x: fits(d=x))
        Lmax = _largest(1, m.L, lambda x: fits(L=x))
        ranges = ([f"d <= {dmax} at L={m.L}"] if dmax else []) + ([f"L <= {Lmax} at d={m.d}"] if Lmax else [])
        what = (f"the symmetry analysis of one critical point (a dense "
                f"{gauge_rows_bound(m.K, m.n, m.d, m.L, m.activation):,} × {P:,} gauge-tangent matrix and its SVD)"
                if part == "symmetry" else
                f"the gauge projector of a stage with curvature_gauge = true (a dense "
                f"{(m.L if m.activation == 'linear' else 1) * m.d * (m.d - 1) // 2:,} × {P:,} tangent matrix per "
                "tested row; curvature_gauge = false avoids it)")
        check_memory(f"the model d={m.d}, L={m.L} (K={m.K}, n={m.n}: P={P:,} parameters)", need, what,
                     ("within it " + " or ".join(ranges)) if ranges else "no width or depth fits it at this K and n")


def load_study(path: str | Path | None = None, overrides: list[str] | None = None, *,
               preset: str | None = None) -> StudyConfig:
    """Study from a file or a preset (the embedded default when neither is given), layered on the
    embedded default study, plus overrides. With overrides and no ``name=`` among them, the study
    is named after them (:func:`override_name`): ``default+d=70``, not "default" for every run."""
    if path is not None and preset is not None:
        raise SpecError("give a study file or a preset, not both")
    base = default_config_dict()
    if preset is not None:
        base = layered(base, tomllib.loads(preset_path(preset).read_text(encoding="utf-8")))
        if "sweep" in base or "net" in base:
            cmd = "sweep" if "sweep" in base else "net"
            raise SpecError(f"preset={preset!r} is a {cmd} preset: run it with `landscape {cmd} --preset {preset}`")
    elif path is not None:
        base = layered(base, load_config_dict(path))
    cfg_dict = apply_overrides(base, overrides or [])
    if overrides and not _names_itself(overrides) and isinstance(cfg_dict.get("name"), str):
        cfg_dict["name"] = override_name(check_name(cfg_dict["name"]), overrides)
    cfg = StudyConfig.from_dict(cfg_dict)
    cfg.check_resources()
    return cfg
