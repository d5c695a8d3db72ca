"""Configuration of ``landscape net``: TOML files, presets, ``--set`` overrides, validation.

No torch: a bad file is refused before anything is imported or trained. A net file has the
top-level fields ``name``, ``seed`` (seeds are ``seed, seed+1, …``), ``seeds`` (how many networks,
trained as one batch), ``device``, ``dtype`` (of training; the UFM hand-off and its analysis are
float64), ``certify_tol`` (‖∇L‖ of a certified UFM critical point), and the tables

* ``[net]``: ``dataset`` (a name of :data:`landscape.net.data.DATASETS` or an ``.npz`` path),
  ``n_train``/``n_test`` (samples per class), ``standardise``, ``split_seed``, ``backbone``
  (``mlp`` or ``cnn``), ``hidden`` (MLP widths or CNN channels), ``d``, ``L``, ``activation``
  (of the head: ``linear`` or ``relu``);
* ``[regularisation]``: ``kind = "ufm"`` with ``lambda_W`` (head), ``lambda_H`` (features H₁,
  MODEL.md's convention) and ``backbone_decay`` (0: the backbone is free), or ``kind =
  "standard"`` with one ``lambda`` on every parameter and ``handoff_lambda_H``, the feature decay
  of the deep UFM the trained head is handed to (the network itself decays no feature);
* ``[train]``: ``lr``, ``max_iter``, ``grad_tol``, ``loss_rtol``, ``window``, ``check_every``
  (:mod:`landscape.net.train`);
* ``[[handoff]]``: the engine stages run on the deep UFM from the trained network's head, as a
  study's ``[[stages]]`` (the last one's ``tol`` is ``certify_tol``);
* ``[analysis]``: ``sv_atol`` (the paper's absolute threshold 1e-6 on singular values),
  ``sv_rtol`` (a relative one: σ > sv_rtol·σ_max) and the study analysis fields.
"""
from __future__ import annotations

import copy
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..analysis.settings import AnalysisSettings
from ..core.spec import MAX_DEPTH
from ..core.validate import (INDEX_MAX, SpecError, check_bool, check_choice, check_fields, check_int, check_integral,
                             check_number, check_table)
from ..study.config import (check_certify_tol, check_device, check_name, layered, load_config_dict, parse_value,
                            stage_list)
from ..study.presets import preset_path

BACKBONES = ("mlp", "cnn")
REGULARISATIONS = ("ufm", "standard")
TRAIN_DTYPES = ("float64", "float32")
_TOP = ("name", "seed", "seeds", "device", "dtype", "certify_tol")
_TABLES = ("net", "regularisation", "train", "handoff", "analysis")
_NET = ("dataset", "n_train", "n_test", "standardise", "split_seed", "backbone", "hidden", "d", "L", "activation")
_REG = ("kind", "lambda_W", "lambda_H", "backbone_decay", "lambda", "handoff_lambda_H")
_TRAIN = ("lr", "max_iter", "grad_tol", "loss_rtol", "window", "check_every")
_ANALYSIS_OWN = ("sv_atol", "sv_rtol")


@dataclass(frozen=True)
class Regularisation:
    """``kind`` ``ufm`` (``lambda_W``, ``lambda_H``, ``backbone_decay``) or ``standard``
    (``lam``; ``handoff_lambda_H``); see the module docstring."""

    kind: str = "ufm"
    lambda_W: float = 5e-3
    lambda_H: float = 1e-6
    backbone_decay: float = 0.0
    lam: float = 1e-2
    handoff_lambda_H: float = 1e-6

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lambda"] = d.pop("lam")
        return d

    @property
    def ufm_lambdas(self) -> tuple[float, float]:
        """(λ_H, λ_W) of the deep UFM the head is handed to."""
        if self.kind == "ufm":
            return self.lambda_H, self.lambda_W
        return self.handoff_lambda_H, self.lam


@dataclass(frozen=True)
class NetConfig:
    """A validated net file (see the module docstring); ``raw`` is the layered dict it came from."""

    raw: dict
    name: str
    seed: int
    seeds: int
    device: str
    dtype: str
    certify_tol: float
    dataset: str
    n_train: int
    n_test: int
    standardise: bool
    split_seed: int
    backbone: str
    hidden: tuple[int, ...]
    d: int
    L: int
    activation: str
    reg: Regularisation
    lr: float
    max_iter: int
    grad_tol: float
    loss_rtol: float
    window: int
    check_every: int
    handoff: tuple          # StageConfig, …
    sv_atol: float
    sv_rtol: float
    analysis: AnalysisSettings

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seed, self.seed + self.seeds))

    def to_dict(self) -> dict:
        return copy.deepcopy(self.raw)

    @classmethod
    def from_dict(cls, d: dict) -> "NetConfig":
        d = copy.deepcopy(d)
        check_fields("a net file", d, _TOP + _TABLES)
        net = check_table("net", d.get("net", {}))
        check_fields("[net]", net, _NET)
        reg = check_table("regularisation", d.get("regularisation", {}))
        check_fields("[regularisation]", reg, _REG)
        tr = check_table("train", d.get("train", {}))
        check_fields("[train]", tr, _TRAIN)
        an = dict(check_table("analysis", d.get("analysis", {})))
        dtype = check_choice("dtype", d.get("dtype", "float64"), TRAIN_DTYPES)
        certify_tol = check_certify_tol(d.get("certify_tol", 1e-10), "float64")
        K_unknown_d = check_int("net.d", net.get("d", 64), 2)
        backbone = check_choice("net.backbone", net.get("backbone", "mlp"), BACKBONES)
        hidden = net.get("hidden", [128] if backbone == "mlp" else [8, 16])
        if not isinstance(hidden, list) or not hidden:
            raise SpecError(f"net.hidden={hidden!r} is invalid: must be a non-empty list of integers >= 1")
        hidden = tuple(check_int(f"net.hidden[{i}]", h, 1) for i, h in enumerate(hidden))
        kind = check_choice("regularisation.kind", reg.get("kind", "ufm"), REGULARISATIONS)
        extra = {"ufm": ("lambda", "handoff_lambda_H"), "standard": ("lambda_W", "lambda_H", "backbone_decay")}[kind]
        wrong = sorted(set(reg) & set(extra))
        if wrong:
            raise SpecError(f"regularisation.{wrong[0]} is invalid with kind={kind!r}: "
                            f"kind 'ufm' takes lambda_W, lambda_H, backbone_decay; 'standard' takes lambda, handoff_lambda_H")
        regularisation = Regularisation(
            kind=kind, lambda_W=check_number("regularisation.lambda_W", reg.get("lambda_W", 5e-3)),
            lambda_H=check_number("regularisation.lambda_H", reg.get("lambda_H", 1e-6)),
            backbone_decay=check_number("regularisation.backbone_decay", reg.get("backbone_decay", 0.0), allow_zero=True),
            lam=check_number("regularisation.lambda", reg.get("lambda", 1e-2)),
            handoff_lambda_H=check_number("regularisation.handoff_lambda_H", reg.get("handoff_lambda_H", 1e-6)))
        check_every = check_integral("train.check_every", tr.get("check_every", 500))
        own = {k: an.pop(k) for k in _ANALYSIS_OWN if k in an}
        check_fields("[analysis]", an, _ANALYSIS_OWN + tuple(f.name for f in fields(AnalysisSettings)))
        seeds = check_int("seeds", d.get("seeds", 16), 1)
        # seeds seed..seed+seeds-1 each seed a torch generator and are stored: signed 64-bit integers
        seed = check_int("seed", d.get("seed", 0), 0, f" (with seeds={seeds}: seeds are signed 64-bit integers)",
                         maximum=INDEX_MAX - seeds + 1)
        dataset = net.get("dataset", "digits")
        if not isinstance(dataset, str) or not dataset:
            raise SpecError(f"net.dataset={dataset!r} is invalid: must be a dataset name or an .npz path")
        return cls(
            raw=d, name=check_name(d.get("name", "net")), seed=seed, seeds=seeds,
            device=check_device(d.get("device", "cpu")),
            dtype=dtype, certify_tol=certify_tol, dataset=dataset,
            n_train=check_int("net.n_train", net.get("n_train", 50), 1),
            n_test=check_int("net.n_test", net.get("n_test", 50), 0),
            standardise=check_bool("net.standardise", net.get("standardise", True)),
            split_seed=check_int("net.split_seed", net.get("split_seed", 0), 0),
            backbone=backbone, hidden=hidden, d=K_unknown_d,
            L=check_int("net.L", net.get("L", 3), 1, maximum=MAX_DEPTH),
            activation=check_choice("net.activation", net.get("activation", "linear"), ("linear", "relu")),
            reg=regularisation, lr=check_number("train.lr", tr.get("lr", 0.05)),
            max_iter=check_integral("train.max_iter", tr.get("max_iter", 20000)),
            grad_tol=check_number("train.grad_tol", tr.get("grad_tol", 1e-6)),
            loss_rtol=check_number("train.loss_rtol", tr.get("loss_rtol", 1e-7), allow_zero=True),
            window=check_integral("train.window", tr.get("window", 2000)), check_every=check_every,
            handoff=stage_list("handoff", d.get("handoff", DEFAULT_HANDOFF), certify_tol),
            sv_atol=check_number("analysis.sv_atol", own.get("sv_atol", 1e-6)),
            sv_rtol=check_number("analysis.sv_rtol", own.get("sv_rtol", 1e-3), maximum=1.0),
            analysis=AnalysisSettings(**an))


#: The UFM stages run from a trained head when a file gives no ``[[handoff]]``.
DEFAULT_HANDOFF = [
    {"engine": "lbfgs", "max_iter": 20000, "tol": 1e-6, "stall_window": 2000},
    {"engine": "newton", "max_iter": 100, "stall_window": 10, "entry_grad_norm": 1e-3},
]

_TOP_KEYS = set(_TOP)


def apply_net_overrides(cfg: dict, overrides: list[str]) -> dict:
    """``cfg`` with each ``KEY=VALUE`` applied: a top-level field (``seeds=4``), ``TABLE.FIELD``
    (``net.d=32``, ``train.max_iter=1000``) or ``handoff.I.FIELD``."""
    cfg = copy.deepcopy(cfg)
    for item in overrides or []:
        if "=" not in item:
            raise SpecError(f"--set {item!r} is invalid: must be KEY=VALUE")
        key, raw = (s.strip() for s in item.split("=", 1))
        value, parts = parse_value(raw), key.split(".")
        if key in _TOP_KEYS:
            cfg[key] = value
        elif len(parts) == 2 and parts[0] in ("net", "regularisation", "train", "analysis"):
            check_table(parts[0], cfg.setdefault(parts[0], {}))[parts[1]] = value
        elif len(parts) == 3 and parts[0] == "handoff" and parts[1].isdigit():
            stages = cfg.setdefault("handoff", copy.deepcopy(DEFAULT_HANDOFF))
            i = int(parts[1])
            if i >= len(stages):
                raise SpecError(f"--set {key!r} is invalid: handoff has {len(stages)} stages (0..{len(stages) - 1})")
            stages[i][parts[2]] = value
        else:
            raise SpecError(f"--set {key!r} is invalid: not a known field (top-level {list(_TOP)}, "
                            "net.FIELD, regularisation.FIELD, train.FIELD, analysis.FIELD, handoff.I.FIELD)")
    return cfg


def _layer(base: dict, top: dict) -> dict:
    """``top`` on ``base`` (:func:`layered`), except that a ``[regularisation]`` of another ``kind``
    replaces the base's table instead of merging with it (the two kinds take different fields)."""
    reg = top.get("regularisation")
    if isinstance(reg, dict) and reg.get("kind", "ufm") != base.get("regularisation", {}).get("kind", "ufm"):
        base = {**base, "regularisation": {}}
    return layered(base, top)


def load_net(path: str | Path | None = None, overrides: list[str] | None = None, *,
             preset: str | None = None) -> NetConfig:
    """A net configuration from a file or a preset (default ``digits-linear``), layered on the
    preset ``digits-linear``, with ``overrides`` applied last."""
    if path is not None and preset is not None:
        raise SpecError("give a net file or a preset, not both")
    base = tomllib.loads(preset_path("digits-linear").read_text(encoding="utf-8"))
    if preset is not None:
        top = tomllib.loads(preset_path(preset).read_text(encoding="utf-8"))
        if "net" not in top:
            raise SpecError(f"preset={preset!r} is not a net preset: run it with `landscape "
                            f"{'sweep' if 'sweep' in top else 'run'} --preset {preset}`")
        base = _layer(base, top)
    if path is not None:
        base = _layer(base, load_config_dict(path, "net file"))
    return NetConfig.from_dict(apply_net_overrides(base, overrides or []))
