"""Study configuration: TOML files, command-line overrides, validation, the embedded default.

A study file has top-level fields (``name``, ``seed``, ``trajectories``, ``batch_size``,
``certify_tol``), a ``[model]`` table with the fields of MODEL.md (``K``, ``n``, ``d``, ``L``,
``activation``, ``loss``, ``lambda``, optional ``lambda_H`` and ``lambda_W``), an ``[init]`` table
(:class:`landscape.init.InitScheme`) and an array ``[[stages]]`` of engine stages
(:class:`landscape.flows.StageConfig`). The last stage's ``tol`` is set to ``certify_tol``: a
trajectory is certified only when its final gradient norm is at most that.

Overrides (``--set key=value``): a model field (``d=70``, ``lambda=0.0009765625``), a top-level
field (``trajectories=2000``), ``init.FIELD``, ``stages.I.FIELD``, or ``lr``/``engine`` for the
first stage. Values are parsed as TOML (``1e-3``, ``"relu"``, ``[1, 2]``); a bare word is a string.
"""
from __future__ import annotations

import copy
import json
import math
import tomllib
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path

from .flows import StageConfig
from .init import InitScheme
from .model import ModelSpec, SpecError

MODEL_KEYS = {"K": "K", "n": "n", "d": "d", "L": "L", "activation": "activation", "loss": "loss",
              "lambda": "lam", "lambda_H": "lam_H", "lambda_W": "lam_W", "dtype": "dtype"}
TOP_KEYS = ("name", "seed", "trajectories", "batch_size", "certify_tol")


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
            stages = cfg.setdefault("stages", [])
            i = int(parts[1])
            if i >= len(stages):
                raise SpecError(f"--set {key}: stage {i} does not exist (the study has {len(stages)} stages)")
            stages[i][parts[2]] = value
        else:
            raise SpecError(f"--set {key!r} is invalid: not a known field (model fields {sorted(MODEL_KEYS)}, "
                            f"top-level {list(TOP_KEYS)}, init.FIELD, stages.I.FIELD, lr, engine)")
    return cfg


def _known(table: str, d: dict, allowed) -> None:
    extra = sorted(set(d) - set(allowed))
    if extra:
        raise SpecError(f"{table} has unknown field(s) {extra}: allowed are {sorted(allowed)}")


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

    @classmethod
    def from_dict(cls, cfg: dict) -> "StudyConfig":
        cfg = copy.deepcopy(cfg)
        _known("study", cfg, TOP_KEYS + ("model", "init", "stages"))
        m = cfg.get("model", {})
        _known("[model]", m, MODEL_KEYS)
        missing = [k for k in ("K", "n", "d", "L") if k not in m]
        if missing:
            raise SpecError(f"[model] is missing field(s) {missing}")
        spec = ModelSpec(**{MODEL_KEYS[k]: (tuple(v) if isinstance(v, list) else v) for k, v in m.items()})
        init_d = cfg.get("init", {})
        _known("[init]", init_d, [f.name for f in fields(InitScheme)])
        init = InitScheme(**init_d)
        init.stds(spec)  # validates per-factor scales against the model
        stage_dicts = cfg.get("stages") or []
        if not stage_dicts:
            raise SpecError("stages is empty: a study needs at least one [[stages]] table")
        certify = cfg.get("certify_tol", 1e-10)
        if not (isinstance(certify, (int, float)) and math.isfinite(certify) and certify > 0):
            raise SpecError(f"certify_tol={certify!r} is invalid: must be a finite number > 0")
        stages = []
        for i, sd in enumerate(stage_dicts):
            _known(f"[[stages]][{i}]", sd, [f.name for f in fields(StageConfig)])
            sd = dict(sd)
            if i == len(stage_dicts) - 1:
                sd["tol"] = float(certify)
            try:
                stages.append(StageConfig(**sd))
            except SpecError as exc:
                raise SpecError(f"stages[{i}].{exc}") from None
        name = cfg.get("name", "study")
        if not isinstance(name, str) or not name or any(c in name for c in "/\\"):
            raise SpecError(f"name={name!r} is invalid: must be a non-empty string without path separators")
        seed = cfg.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise SpecError(f"seed={seed!r} is invalid: must be an integer >= 0")
        trajectories = cfg.get("trajectories", 100)
        if isinstance(trajectories, bool) or not isinstance(trajectories, int) or trajectories < 1:
            raise SpecError(f"trajectories={trajectories!r} is invalid: must be an integer >= 1")
        batch = cfg.get("batch_size", 512)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise SpecError(f"batch_size={batch!r} is invalid: must be an integer >= 1")
        return cls(name=name, seed=seed, trajectories=trajectories, batch_size=batch, certify_tol=float(certify),
                   model=spec, init=init, stages=tuple(stages))

    def to_dict(self) -> dict:
        """Effective configuration, in the file layout (loadable by :meth:`from_dict`)."""
        inv = {v: k for k, v in MODEL_KEYS.items()}
        model = {inv[k]: v for k, v in self.model.to_dict().items() if v is not None}
        init = {k: v for k, v in self.init.to_dict().items() if v is not None}
        return {"name": self.name, "seed": self.seed, "trajectories": self.trajectories,
                "batch_size": self.batch_size, "certify_tol": self.certify_tol, "model": model, "init": init,
                "stages": [s.settings() for s in self.stages]}

    def describe_dynamics(self) -> str:
        """How the fractions of this study were produced, e.g. 'gd(lr=0.5) → newton-mr; init gaussian'."""
        init = self.init.name + (f"(alpha={self.init.alpha:g})" if self.init.name == "small" else "")
        return " → ".join(s.describe() for s in self.stages) + f"; init {init}"


def load_study(path: str | Path | None = None, overrides: list[str] | None = None) -> StudyConfig:
    """Study from a file (or the embedded default when ``path`` is None) plus overrides."""
    base = default_config_dict() if path is None else load_config_dict(path)
    return StudyConfig.from_dict(apply_overrides(base, overrides or []))
