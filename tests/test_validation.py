"""Validation in one style (landscape.core.validate), every settings table validated.

* :class:`ContinuationSettings`: every field checked, a bad value refused with a SpecError naming
  ``continuation.FIELD`` and its allowed range;
* every integer field, of every settings class and of every table a study or net file sets,
  reads an integral float (5.0, 1e4: how TOML writes ten thousand) as that integer and refuses a
  fractional one naming the field (property-style, over the fields found, not listed);
* the zero threshold ``tau_rel`` is one constant (landscape.core.thresholds), restated nowhere;
* the other tables brought to the style: dedup tolerances, engine switches, transition_states.pairs,
  executor counts.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import math
import re
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

import landscape
from landscape.analysis.settings import AnalysisSettings, DedupTolerances, SpectrumSettings
from landscape.cli import config_reference as ref
from landscape.continuation import ContinuationSettings
from landscape.core.spec import ModelSpec
from landscape.core.thresholds import DEFAULT_TAU_REL
from landscape.core.validate import SpecError
from landscape.engines.fire import FIREOptions
from landscape.engines.minmode import MinModeOptions
from landscape.engines.neb import NEBOptions
from landscape.engines.stage import ENGINES, StageConfig
from landscape.net.config import load_net
from landscape.study.config import load_study

ROOT = Path(__file__).resolve().parent.parent


# ----- ContinuationSettings ------------------------------------------------------------------------
#: field → (values refused, the allowed range as the error states it).
CONTINUATION_RANGES = {
    "h0": ((0, -0.1, 1.5, math.inf, math.nan, True, "0.1"), "must be a finite number > 0 and <= 1"),
    "h_min": ((0, -1e-9, 2.0, math.inf), "must be a finite number > 0 and <= 1"),
    "h_max": ((0, 1.01, math.nan), "must be a finite number > 0 and <= 1"),
    "max_steps": ((0, -1, 2.5, math.inf, True, "400"), "must be an integer >= 1"),
    "newton_iter": ((0, 1.5, False), "must be an integer >= 1"),
    "certify_tol": ((0, -1e-10, math.inf, None), "must be a finite number > 0"),
    "event_rtol": ((0, 1.5, math.nan), "must be a finite number > 0 and <= 1"),
    "tau_rel": ((0, -1e-3, math.inf), "must be a finite number > 0"),
    "noise_mult": ((0, -1.0, math.inf), "must be a finite number > 0"),
    "max_drift": ((0, -0.5, math.nan), "must be a finite number > 0"),
    "max_turn": ((0, 3.2, -0.1, math.inf), "must be a finite number > 0 and <= 3.14159"),
    "origin_rtol": ((-1e-6, 1.5, math.nan), "must be a finite number >= 0 and <= 1"),
    "p_floor_rtol": ((-1e-9, 2.0, math.inf), "must be a finite number >= 0 and <= 1"),
}


def test_every_continuation_field_has_a_stated_range():
    assert set(CONTINUATION_RANGES) == {f.name for f in dataclasses.fields(ContinuationSettings)}


@pytest.mark.parametrize("name, value", [(n, v) for n, (bad, _) in CONTINUATION_RANGES.items() for v in bad])
def test_a_bad_continuation_setting_is_refused_naming_the_field_and_its_range(name, value):
    with pytest.raises(SpecError) as exc:
        ContinuationSettings(**{name: value})
    msg = str(exc.value)
    assert msg.startswith(f"continuation.{name}={value!r} is invalid: "), msg
    assert CONTINUATION_RANGES[name][1] in msg, msg


def test_continuation_settings_accept_their_edges_and_integral_floats():
    s = ContinuationSettings(max_steps=1e4, newton_iter=5.0, origin_rtol=0, p_floor_rtol=1.0, max_turn=math.pi,
                             h0=1.0, h_max=1.0, event_rtol=1.0)
    assert s.max_steps == 10_000 and type(s.max_steps) is int and type(s.newton_iter) is int
    assert type(s.origin_rtol) is float and s.origin_rtol == 0.0
    assert ContinuationSettings.from_dict(s.to_dict()) == s
    assert ContinuationSettings().to_dict()["tau_rel"] == DEFAULT_TAU_REL


def test_the_first_step_lies_between_the_smallest_and_the_largest():
    for kw in ({"h0": 0.5, "h_max": 0.25}, {"h0": 1e-10, "h_min": 1e-9}):
        with pytest.raises(SpecError, match=r"continuation\.h0=.* is invalid: must lie in \[h_min, h_max\]"):
            ContinuationSettings(**kw)
    assert ContinuationSettings(h0=0.25, h_max=0.25, h_min=0.25).h0 == 0.25


def test_stored_continuation_settings_with_an_unknown_key_are_refused():
    with pytest.raises(SpecError, match=r"\[continuation\] has unknown field\(s\) \['h_zero'\]"):
        ContinuationSettings.from_dict({"h_zero": 0.1})


def test_continuation_arguments_are_checked_before_any_work():
    from landscape.continuation import continue_in_lambda, continue_in_width, embed_width, param_value

    spec = ModelSpec(K=2, n=1, d=2, L=1)
    for to in (0, -1.0, math.inf, math.nan, "1"):
        with pytest.raises(SpecError, match=r"^--to=.* is invalid: must be a finite number > 0$"):
            continue_in_lambda(spec, [0.0] * spec.P, to=to)
    with pytest.raises(SpecError, match=r"^param='lam' is invalid: must be one of"):
        continue_in_lambda(spec, [0.0] * spec.P, param="lam", to=1e-2)
    with pytest.raises(SpecError, match=r"^param='lam' is invalid"):
        param_value(spec, "lam")
    for to in (1, 2.5, math.inf):
        with pytest.raises(SpecError, match=r"^--to=.* is invalid: must be an integer >= 2 \(a width"):
            continue_in_width(spec, [0.0] * spec.P, to=to)
    with pytest.raises(SpecError, match=r"^d=1 is invalid: must be an integer >= 2 \(the point's width\)"):
        embed_width(spec, [0.0] * spec.P, 1)
    big, th = embed_width(spec, list(range(spec.P)), 3.0)   # an integral float is a width
    assert big.d == 3 and type(big.d) is int and th.size == big.P
    try:   # λ = 0 (the max-margin setting, where the model allows it) has no λ-family to follow
        zero = ModelSpec(K=2, n=1, d=2, L=1, lam=0.0)
    except SpecError:
        zero = None
    if zero is not None:
        with pytest.raises(SpecError, match=r"^the start's lambda=0\.0 is invalid: must be a finite number > 0$"):
            continue_in_lambda(zero, [0.0] * zero.P, to=1e-3)


def test_the_continuation_settings_validate_without_torch():
    code = ("import sys; import landscape.continuation as c; c.ContinuationSettings(max_steps=10); "
            "c.param_value; assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


# ----- every integer field: integral floats are integers, fractions are refused ------------------
def _is_int_field(cls, f) -> bool:
    hint = typing.get_type_hints(cls).get(f.name)
    return hint is int or (typing.get_origin(hint) in (typing.Union, types.UnionType) and int in typing.get_args(hint)
                           and bool not in typing.get_args(hint))


#: Every settings class built directly by code (a study or net file reaches them through the
#: loaders, tested below), with the other fields it needs.
SETTINGS_CLASSES = ({e.options for e in ENGINES.values()} | {MinModeOptions, NEBOptions, FIREOptions, AnalysisSettings,
                                                             SpectrumSettings, ContinuationSettings})
INT_FIELDS = sorted([(cls, f.name) for cls in SETTINGS_CLASSES for f in dataclasses.fields(cls) if _is_int_field(cls, f)]
                    + [(StageConfig, f.name) for f in dataclasses.fields(StageConfig) if _is_int_field(StageConfig, f)]
                    + [(ModelSpec, f.name) for f in dataclasses.fields(ModelSpec) if _is_int_field(ModelSpec, f)],
                    key=lambda x: (x[0].__name__, x[1]))


def _build(cls, name, value):
    if cls is ModelSpec:
        base = {"K": 2, "n": 1, "d": 2, "L": 1}
        if name == "K" and isinstance(value, (int, float)) and value == value // 1:
            base["d"] = int(value)   # d ≥ K
        return ModelSpec(**{**base, name: value})
    return cls(**{name: value})


def test_the_integer_fields_are_found():
    found = {f"{c.__name__}.{n}" for c, n in INT_FIELDS}
    assert {"StageConfig.max_iter", "ContinuationSettings.max_steps", "AnalysisSettings.lanczos_k", "ModelSpec.d",
            "NEBOptions.images", "NewtonOptions.minres_iter", "SpectrumSettings.slq_steps"} <= found, found


@pytest.mark.parametrize("cls, name", INT_FIELDS, ids=[f"{c.__name__}.{n}" for c, n in INT_FIELDS])
@settings(max_examples=25, deadline=None)
@given(v=st.integers(min_value=10, max_value=10 ** 6))
def test_every_integer_field_reads_an_integral_float_and_refuses_a_fraction(cls, name, v):
    got = getattr(_build(cls, name, float(v)), name)
    assert got == v and type(got) is int, (cls.__name__, name, got)
    with pytest.raises(SpecError) as exc:
        _build(cls, name, v + 0.5)
    assert re.search(rf"(?<![\w]){re.escape(name)}={v + 0.5!r} is invalid: must be an integer", str(exc.value)), exc.value


def _integer_rows():
    try:
        secs = ref.sections()
    except LookupError as exc:   # a field the reference does not describe yet: one failure, not the module's
        yield pytest.param(None, str(exc), None, id="configuration-reference-incomplete")
        return
    for s in secs:
        if s.file == "sweep":
            continue
        for r in s.rows:
            if r.key and r.allowed.text.startswith("integer"):
                values = set(r.allowed.inside)
                default = re.match(r"`(\d+)`", r.default)
                if default:
                    values.add(int(default.group(1)))
                for v in sorted(values):
                    yield pytest.param(s, r, v, id=f"{s.file}:{s.title}:{r.key}={v}")


def _typed(obj, path="") -> list:
    """Every leaf of a loaded configuration as (path, type, value): a float where an int belongs
    shows up here although 5.0 == 5."""
    if dataclasses.is_dataclass(obj):
        return [x for f in dataclasses.fields(obj) if f.name != "raw" for x in _typed(getattr(obj, f.name), f"{path}.{f.name}")]
    if isinstance(obj, (list, tuple)):
        return [x for i, v in enumerate(obj) for x in _typed(v, f"{path}[{i}]")]
    if isinstance(obj, dict):
        return [x for k, v in sorted(obj.items()) for x in _typed(v, f"{path}.{k}")]
    return [(path, type(obj).__name__, obj)]


def _load(section, row, value, tmp_path):
    path = tmp_path / "probe.json"
    path.write_text(json.dumps(section.patch(row.key.strip("[]").split(".")[-1], value, row.context)))
    return (load_study if section.file == "study" else load_net)(path)


@pytest.mark.parametrize("section, row, v", list(_integer_rows()))
def test_every_integer_key_of_a_file_reads_an_integral_float_as_that_integer(section, row, v, tmp_path):
    if section is None:
        pytest.fail(row)
    as_int = _typed(_load(section, row, v, tmp_path))
    as_float = _typed(_load(section, row, float(v), tmp_path))
    assert as_float == as_int


def test_ten_thousand_written_as_1e4_is_ten_thousand_everywhere():
    cfg = load_study(None, ["trajectories=1e4", "stages.0.max_iter=1e4", "transition_states.neb_iter=1e4",
                            "analysis.lanczos_k=1e1", "saddles.max_descents=1e2", "transition_states.pairs=[[0.0, 1e0]]"])
    assert (cfg.trajectories, cfg.stages[0].max_iter, cfg.transition_states.neb_iter) == (10_000,) * 3
    assert type(cfg.trajectories) is type(cfg.stages[0].max_iter) is type(cfg.transition_states.neb_iter) is int
    assert cfg.transition_states.pairs == ((0, 1),) and all(type(i) is int for i in cfg.transition_states.pairs[0])
    with pytest.raises(SpecError, match=r"transition_states\.pairs\[0\]\[1\]=1\.5 is invalid: must be an integer in \[0, "):
        load_study(None, ["transition_states.pairs=[[0, 1.5]]"])


# ----- one zero threshold ----------------------------------------------------------------------
def test_every_default_tau_rel_is_the_one_constant():
    from landscape.analysis.hessian import analyse_hessian, default_tau

    defaults = [AnalysisSettings().tau_rel, SpectrumSettings().tau_rel, StageConfig().curvature_tau_rel,
                MinModeOptions().tau_rel, ContinuationSettings().tau_rel,
                inspect.signature(analyse_hessian).parameters["tau_rel"].default,
                inspect.signature(default_tau).parameters["tau_rel"].default]
    assert all(d == DEFAULT_TAU_REL for d in defaults), defaults


def test_no_module_restates_tau_rel():
    """No ``tau_rel = 1e-3`` (or ``tau_rel: float = number(1e-3, …)``, ``tau_rel=1e-3`` in a call,
    a ``tau_rel=1e-3`` default) anywhere but landscape.core.thresholds."""
    def literal(node) -> bool:
        return any(isinstance(n, ast.Constant) and n.value == DEFAULT_TAU_REL for n in ast.walk(node))

    found = []
    for f in Path(landscape.__file__).parent.rglob("*.py"):
        if f.name == "thresholds.py":
            continue
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            pairs = []
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                pairs = [(node.target.id, node.value)]
            elif isinstance(node, ast.Assign):
                pairs = [(t.id, node.value) for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.keyword) and node.arg:
                pairs = [(node.arg, node.value)]
            elif isinstance(node, ast.arguments):
                args = node.posonlyargs + node.args
                pairs = list(zip([a.arg for a in args[len(args) - len(node.defaults):]], node.defaults))
                pairs += [(a.arg, d) for a, d in zip(node.kwonlyargs, node.kw_defaults) if d is not None]
            found += [f"{f.relative_to(ROOT)}:{v.lineno} {name}" for name, v in pairs if "tau_rel" in name and literal(v)]
    assert not found, found


# ----- the other tables, in the same style -------------------------------------------------------
def test_dedup_tolerances_name_their_table_once():
    with pytest.raises(SpecError, match=r"^dedup\.zbar_atol=-1\.0 is invalid: must be a finite number >= 0$"):
        DedupTolerances(zbar_atol=-1.0)
    with pytest.raises(SpecError, match=r"^dedup\.loss_rtol=-1 is invalid: must be a finite number >= 0$"):
        load_study(None, ["dedup.loss_rtol=-1"])
    with pytest.raises(SpecError, match=r"\[dedup\] has unknown field\(s\) \['loss_tol'\]"):
        DedupTolerances.from_dict({"loss_tol": 1e-9})
    assert type(DedupTolerances(loss_atol=0).loss_atol) is float


def test_an_engine_switch_is_true_or_false():
    for name in ("climb", "doubly_nudged"):
        with pytest.raises(SpecError, match=rf"^{name}=1 is invalid: must be true or false$"):
            NEBOptions(**{name: 1})
    assert NEBOptions(climb=False).climb is False


def test_executor_counts_read_integral_floats():
    from landscape.study.executors import ExecutorError, _count

    assert _count("workers", 2.0) == 2 and type(_count("workers", 2.0)) is int
    for bad in (0, 1.5, True, "2"):
        with pytest.raises(ExecutorError, match=r"^workers=.* is invalid: must be an integer >= 1$"):
            _count("workers", bad)


def test_the_spectrum_figure_refuses_a_threshold_that_is_not_positive():
    from landscape.viz.figures import hessian_spectrum_figure

    for tau in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(SpecError, match=r"^tau=.* is invalid: must be a finite number > 0$"):
            hessian_spectrum_figure([1.0, -1.0], tau=tau, symmetry_zero_modes=0)
