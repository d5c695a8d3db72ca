"""docs/configuration-reference.md is generated from the option classes and agrees with them.

* the committed page is the generator's output (drift fails, with the command that regenerates it);
* every dataclass field of every option class is on the page, every class a study or net file
  reaches is documented, and the keys the loaders accept (read from their own "unknown field"
  errors) are exactly the keys documented per table;
* every documented range is the validation's: values just outside it are refused by
  ``load_study`` / ``load_net`` with a SpecError naming the field, values at its edge accepted;
* every documented default is what ``load_study()`` / ``load_net()`` give (and the class default,
  where one is shown, what the bare class gives).

No torch; about a second.
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import json
import re
import subprocess
import sys
import tomllib
import typing
from pathlib import Path

import pytest

from landscape.analysis.settings import AnalysisSettings
from landscape.core.validate import SpecError
from landscape.engines.options import EngineOptions
from landscape.engines.stage import ENGINES, StageConfig
from landscape.net.config import NetConfig, Regularisation, load_net
from landscape.cli import config_reference as ref
from landscape.study.config import CrossCheckSettings, SaddleSearch, StudyConfig, load_study
from landscape.study.transition_state_settings import TransitionStateSettings
from landscape.study.sweep_config import MAX_CELLS, load_sweep

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / ref.REFERENCE_PATH
SECTIONS = ref.sections()


def _page() -> str:
    return PAGE.read_text(encoding="utf-8")


# ----- (a) the committed page is the generator's output ------------------------------------------
def test_committed_reference_is_current():
    want = ref.reference_markdown()
    have = _page() if PAGE.is_file() else ""
    if have != want:
        diff = "".join(list(difflib.unified_diff(have.splitlines(True), want.splitlines(True), "committed",
                                                 "generated", n=1))[:60])
        pytest.fail(f"{ref.REFERENCE_PATH} is out of date with the option classes; regenerate it with\n\n"
                    f"    {ref.REGENERATE}\n\nand commit it. Difference (first lines):\n{diff}")


def test_module_entry_point_prints_the_page(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "landscape.cli.config_reference"], capture_output=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode("utf-8") == ref.reference_markdown()
    out = tmp_path / "page.md"
    assert ref.main(["--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == ref.reference_markdown()


def test_page_is_linked_from_the_site():
    assert re.search(r"^\s*-\s*[^:\n]+:\s*configuration-reference\.md\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert "(configuration-reference.md)" in (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")


# ----- (b) every field, every class, every key -------------------------------------------------
def test_every_field_of_every_option_class_is_on_the_page():
    page = _page()
    missing = [f"{cls.__name__}.{f.name}" for cls in ref.option_classes() for f in dataclasses.fields(cls)
               if f"`{cls.__name__}.{f.name}`" not in page]
    assert not missing, (f"fields missing from {ref.REFERENCE_PATH}: {missing}; describe them in "
                         f"landscape.cli.config_reference.field_docs and run {ref.REGENERATE}")


def test_field_docs_has_no_stale_entries():
    stale = [f"{cls.__name__}.{name}" for cls, table in ref.field_docs().items() for name in table
             if name not in {f.name for f in dataclasses.fields(cls)}]
    assert not stale, f"field_docs describes fields that no longer exist: {stale}"


def test_an_undescribed_field_fails_the_generator():
    """A class that gains a field without a description (or engine-option metadata) is refused
    with the place to describe it."""
    Grown = dataclasses.make_dataclass("Grown", [("new_knob", float, dataclasses.field(default=1.0))])
    with pytest.raises(LookupError, match="field_docs"):
        ref._row(Grown, "new_knob")
    Opt = dataclasses.make_dataclass("Opt", [("step", float, dataclasses.field(default=1.0))], bases=(EngineOptions,),
                                     frozen=True)
    with pytest.raises(LookupError, match="Opt.step is not described"):
        ref._row(Opt, "step")


def _dataclasses_in(hint) -> set[type]:
    out = set()
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        out.add(hint)
    for arg in typing.get_args(hint):
        out |= _dataclasses_in(arg)
    return out


def test_every_class_a_file_reaches_is_documented():
    """The option classes reachable from StudyConfig and NetConfig (field annotations, recursively)
    and every engine's options are on the page."""
    documented = set(ref.option_classes())
    seen, todo = set(), [StudyConfig, NetConfig]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        for hint in typing.get_type_hints(cls).values():
            todo += [c for c in _dataclasses_in(hint) if c not in seen]
    seen |= {e.options for e in ENGINES.values()}
    assert seen - {EngineOptions} <= documented, sorted(c.__name__ for c in seen - {EngineOptions} - documented)
    assert {TransitionStateSettings, CrossCheckSettings, SaddleSearch} <= documented   # annotated as object / defaulted


def _allowed_keys(loader, tmp_path, patch) -> set[str]:
    """The keys a table accepts, read from the loader's own refusal of an unknown one."""
    path = tmp_path / "unknown.json"
    path.write_text(json.dumps(patch))
    with pytest.raises(SpecError, match="unknown field") as exc:
        loader(path)
    return set(ast.literal_eval(str(exc.value).split("allowed are ", 1)[1]))


def _section(file: str, title: str) -> ref.Section:
    return next(s for s in SECTIONS if s.file == file and s.title == title)


def _keys(section: ref.Section) -> set[str]:
    """Documented keys of a section, with table keys as their last name ([[saddles.stages]] → stages)."""
    return {r.key.strip("[]").split(".")[-1] for r in section.rows if r.key}


@pytest.mark.parametrize("file, title", [(s.file, s.title) for s in SECTIONS if s.file != "sweep"])
def test_documented_keys_are_the_accepted_keys(file, title, tmp_path):
    s = _section(file, title)
    loader = load_study if file == "study" else load_net
    if s.table in ("stages",):
        engine = s.engine or "gd"
        accepted = _allowed_keys(loader, tmp_path, {"stages": [{"engine": engine, "zzz": 1}, {"engine": "newton"}]})
        common = _keys(_section("study", "Stage tables: common fields")) - {"engine"}
        documented = common | _keys(_section("study", f'Stage tables: engine = "{engine}"'))
    else:
        accepted = _allowed_keys(loader, tmp_path, s.patch("zzz", 1))
        documented = _keys(s)
        if s.table == "":   # the top level also holds the tables documented in their own sections
            documented |= {t.table for t in SECTIONS if t.file == file and t.table}
    assert documented == accepted, (f"{file} {title}: documented keys differ from the accepted ones "
                                    f"(symmetric difference {sorted(documented ^ accepted)}); regenerate with "
                                    f"{ref.REGENERATE}")


# ----- (c) ranges: values just outside are refused naming the field, values at the edge accepted ---
def _probes():
    for s in SECTIONS:
        if s.file == "sweep":
            continue
        for r in s.rows:
            for kind, values in (("outside", r.allowed.outside), ("inside", r.allowed.inside)):
                for v in values:
                    yield pytest.param(s, r, kind, v, id=f"{s.file}:{s.title}:{r.key or r.field}:{kind}:{v!r:.40}")


def _load(section: ref.Section, row: ref.Row, value, tmp_path):
    path = tmp_path / "probe.json"
    path.write_text(json.dumps(section.patch(row.key.strip("[]").split(".")[-1], value, row.context)))
    return (load_study if section.file == "study" else load_net)(path)


def _field_name(section: ref.Section, row: ref.Row) -> str:
    """How the loaders' errors name the field: ``stages[0].lr``, ``transition_states.images``, ``K``."""
    return section.qualifier + row.key.strip("[]").split(".")[-1]


@pytest.mark.parametrize("section, row, kind, value", list(_probes()))
def test_documented_range_is_the_validated_one(section, row, kind, value, tmp_path):
    if kind == "inside":
        _load(section, row, value, tmp_path)
        return
    with pytest.raises(SpecError) as exc:
        _load(section, row, value, tmp_path)
    name = _field_name(section, row)
    assert re.search(rf"(?<![\w.]){re.escape(name)}(=|\[| )", str(exc.value)), (
        f"{value!r} outside the documented range of {name} ({row.allowed.text}) was refused without naming "
        f"the field: {exc.value}")


def test_every_settable_field_has_a_probe():
    """Each documented key carries values just outside its range (a field without any is a table
    pointer whose contents are probed in its own section, or not a key)."""
    unprobed = [f"{s.title}:{r.key}" for s in SECTIONS if s.file != "sweep" for r in s.rows
                if r.key and not r.allowed.outside]
    assert not unprobed, unprobed


@pytest.mark.parametrize("override, name", [
    ("trajectories=0", "trajectories"),
    ("stages.0.lr=0", "stages[0].lr"),
    ("transition_states.images=2", "transition_states.images"),
    ("d=3", "d"),                           # below K = 4: "integer ≥ K"
    ("analysis.zero_atol=-1e-300", "analysis.zero_atol"),
])
def test_spot_checks_through_set(override, name):
    """Five fields by hand, through ``--set`` as a user writes them: just outside the documented
    range is refused naming the field."""
    with pytest.raises(SpecError, match=rf"^{re.escape(name)}="):
        load_study(None, [override])


def _row_of(file: str, table: str, key: str) -> ref.Row:
    return next(r for s in SECTIONS if s.file == file and s.table == table and s.engine is None
                for r in s.rows if r.key == key)


def test_spot_check_defaults_against_the_page():
    cfg = load_study(None)
    page = _page()
    for table, key, value in (("", "trajectories", cfg.trajectories), ("model", "lambda", cfg.model.lam),
                              ("transition_states", "images", cfg.transition_states.images), ("saddles", "starts", cfg.saddles.starts)):
        row = _row_of("study", table, key)
        assert row.default.startswith(f"`{ref.toml_literal(value)}`"), (key, row.default)
        assert f"| `{key}` | `{row.owner.__name__}.{row.field}` | {row.type} | {row.default} |" in page
    assert (cfg.trajectories, cfg.model.lam, cfg.transition_states.images, cfg.saddles.starts) == (384, 1e-3, 14, 4)


# ----- defaults: the documented ones are the loaders' ------------------------------------------
def _literals(cell: str) -> list:
    return [tomllib.loads(f"v = {m}")["v"] for m in re.findall(r"`([^`]*)`", cell)]


def _holders(file: str, bare: bool):
    """Objects holding each section's fields: the effective configuration, or the bare class's."""
    if file == "study":
        m = load_study(None).model
        cfg = (StudyConfig.from_dict({"model": {"K": m.K, "n": m.n, "d": m.d, "L": m.L}, "stages": [{"engine": "gd"}]})
               if bare else load_study(None))
        return {StudyConfig: cfg, **{type(getattr(cfg, t)): getattr(cfg, t) for t in
                                     ("model", "init", "saddles", "cross_check", "dedup", "analysis", "transition_states",
                                      "lambda0")}}
    net = NetConfig.from_dict({}) if bare else load_net(None)
    return {NetConfig: net, Regularisation: net.reg, AnalysisSettings: net.analysis}


def _norm(v):
    return list(v) if isinstance(v, tuple) else v


@pytest.mark.parametrize("file", ["study", "net"])
def test_documented_defaults_are_the_loaded_ones(file):
    eff, bare = _holders(file, False), _holders(file, True)
    checked = 0
    for s in SECTIONS:
        if s.file != file or s.table == "stages":
            continue
        for r in s.rows:
            if r.default == "—":
                continue
            value = getattr(eff[r.owner], r.field)
            lits = _literals(r.default.split(" (class default")[0])
            if r.default.startswith("unset"):
                assert value is None, (r.key, value)
            else:
                assert lits == [_norm(value)], (f"{s.title} {r.key}: the page says {r.default}, "
                                                f"load_{file}() gives {value!r}")
                checked += 1
            own = getattr(bare[r.owner], r.field)
            if "(class default: none, required)" in r.default:
                assert {f.name: f for f in dataclasses.fields(r.owner)}[r.field].default is dataclasses.MISSING
            elif "(class default:" in r.default:
                shown = r.default.split("(class default:", 1)[1]
                assert (own is None and "unset" in shown) or _literals(shown) == [_norm(own)], (r.key, r.default, own)
            else:
                assert _norm(own) == _norm(value), (f"{s.title} {r.key}: the class default {own!r} differs from "
                                                    f"{value!r} and the page does not say so")
    assert checked > 40 if file == "study" else checked > 20


def test_stage_defaults_are_the_class_defaults():
    for s in SECTIONS:
        if s.table != "stages":
            continue
        stage = StageConfig(engine=s.engine or "gd")
        for r in s.rows:
            if not r.key:
                continue
            if r.default == "unset":   # decided by the engine
                assert r.field == "curvature_check" and stage.curvature_check == ENGINES[stage.engine].descent
                continue
            assert _literals(r.default) == [getattr(stage, r.field)], (s.title, r.key, r.default)


def test_default_pipelines_are_the_default_studys():
    page, cfg = _page(), load_study(None)
    block = page.split("### Default pipelines", 1)[1].split("###", 1)[0]
    assert block.count('`engine = "') == len(cfg.stages) + len(cfg.saddles.stages) + len(cfg.saddles.descend)
    assert '`engine = "gd"`, `max_iter = 30000`, `tol = 0.001`' in block
    assert cfg.stages[0].engine == "gd" and cfg.stages[0].max_iter == 30000 and cfg.stages[0].tol == 1e-3


# ----- sweep files --------------------------------------------------------------------------------
def _sweep(tmp_path, text: str):
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return load_sweep(path)


def test_sweep_table_as_documented(tmp_path):
    row = next(r for r in _section("sweep", "[sweep]").rows if r.field == "name")
    sweep = _sweep(tmp_path, "trajectories = 8\n[saddles]\nstarts = 0\n[sweep]\nd = [8, 9]\n")
    assert _literals(row.default) == [sweep.name]
    assert [c.name for c in sweep.cells] == ["d=8", "d=9"] and sweep.cells[0].config.name == f"{sweep.name}-d=8"
    for text, name in (("[sweep]\nd = [8, 8]\n", "sweep.d"), ("[sweep]\nd = []\n", "sweep.d"),
                       ("[sweep]\nname = [\"a\", \"b\"]\n", "sweep.name"),
                       (f"[sweep]\nd = {list(range(8, 8 + 101))}\nseed = {list(range(MAX_CELLS // 100))}\n",
                        "[sweep]")):
        with pytest.raises(SpecError, match=re.escape(name)):
            _sweep(tmp_path, text)
