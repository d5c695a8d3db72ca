"""One set of outcomes (landscape.engines.outcomes): every stop reason and detail the code writes is
a member with a message, the docs list exactly the members, and folders written with plain strings
still read."""
from __future__ import annotations

import ast
import json
import re
import sqlite3
import shutil
from pathlib import Path

import numpy as np
import pytest

import landscape
from landscape.engines import STOP_REASONS as ENGINE_STOP_REASONS
from landscape.engines.outcomes import (EDGE_STOP_REASONS, LAMBDA0_STOP_REASONS, STOP_REASONS,
                                        TRAIN_STOP_REASONS, Detail, Outcome, markdown_table, split_detail,
                                        with_detail)
from landscape.io.store import StoreError, StudyStore

REPO = Path(__file__).resolve().parents[1]
PACKAGE = Path(landscape.__file__).parent
DATA = REPO / "data"
FOLDERS = sorted(p.parent for p in DATA.glob("**/study.sqlite")) if DATA.is_dir() else []
SUMMARIES = sorted(DATA.glob("**/summary.json")) if DATA.is_dir() else []
VALUES = {m.value for m in Outcome} | {m.value for m in Detail}
#: String literals equal to a member's value that are something else: (file, value) → what it is.
NOT_OUTCOMES = {
    ("analysis/hessian.py", "strict"): "an eigen-solver option",
    ("analysis/hessian.py", "stable"): "a sort kind",
    ("analysis/point.py", "converged"): "Lanczos convergence in a printout",
    ("cli/config_reference.py", "strict"): "the λ = 0 rule option's choices",
    ("cli/config_reference.py", "stable"): "the λ = 0 rule option's choices",
    ("engines/stage.py", "max_iter"): "a stage field name",
    ("io/store.py", "certified"): "a column name",
    ("net/config.py", "max_iter"): "a [train] field name",
    ("study/lambda0.py", "stable"): "the λ = 0 rule option",
    ("study/lambda0_settings.py", "strict"): "the λ = 0 rule option",
    ("study/lambda0_settings.py", "stable"): "the λ = 0 rule option",
    ("study/summary.py", "saddle_visits"): "a summary.json key",
    ("viz/figures.py", "stable"): "a sort kind",
}


def _literals(tree: ast.AST):
    """String constants of ``tree`` that are not docstrings, dict keys, subscripts or the key of a
    ``.get``/``getattr``: the ones that can be a value the code writes or compares."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            skip.add(id(node.value))       # docstrings and other bare strings
        elif isinstance(node, ast.Dict):
            skip |= {id(k) for k in node.keys if k is not None}
        elif isinstance(node, ast.Subscript):
            skip.add(id(node.slice))
        elif isinstance(node, ast.Call) and node.args:
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if name in ("get", "pop", "setdefault"):
                skip.add(id(node.args[0]))
            elif name in ("getattr", "hasattr", "setattr") and len(node.args) > 1:
                skip.add(id(node.args[1]))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            yield node


def test_no_stop_reason_or_detail_is_spelled_outside_the_enumeration():
    """Every stop reason and detail the package writes or compares comes from the enumeration: a
    string literal equal to a member's value (or a detail's ``value: …`` head) anywhere else fails,
    except the few listed in NOT_OUTCOMES, which mean something else."""
    found, used = [], set()
    for f in sorted(PACKAGE.rglob("*.py")):
        rel = f.relative_to(PACKAGE).as_posix()
        if rel == "engines/outcomes.py":
            continue
        for node in _literals(ast.parse(f.read_text(encoding="utf-8"))):
            v = node.value
            if v in VALUES and (rel, v) in NOT_OUTCOMES:
                used.add((rel, v))
            elif v in VALUES or any(v.startswith(d.value + ": ") for d in Detail):
                found.append(f"{rel}:{node.lineno}: {v!r}")
    assert not found, "spell these as Outcome/Detail members:\n" + "\n".join(found)
    assert used, "the scan found none of the known other uses: is it still reading the package?"


def test_every_member_has_a_one_line_message_and_a_string_value():
    for cls in (Outcome, Detail):
        for m in cls:
            assert isinstance(m.message, str) and m.message.strip() and "\n" not in m.message, m
            assert isinstance(m.advice, str) and "\n" not in m.advice, m
            assert m == m.value and str(m) == m.value and f"{m}" == m.value and f"{m:>30}" == f"{m.value:>30}"
            assert json.dumps({m: m}) == json.dumps({m.value: m.value})
            assert cls(m.value) is m and cls.lookup(m.value) is m and cls.parse(m.value) is m
    assert Outcome.lookup("no such reason") is None
    with pytest.raises(ValueError, match="not an Outcome value.*converged"):
        Outcome.parse("no such reason")
    # the diagnosis' advice lives on the members it is about
    assert all(Outcome[k].advice for k in ("MAX_ITER", "DIVERGED", "STALLED")) and Detail.KINK.advice
    assert "{budget}" in Outcome.MAX_ITER.advice


def test_the_groups_keep_their_stored_order():
    """The order the summaries list their counts in (summary.json's ``stop_reasons``)."""
    assert [r.value for r in STOP_REASONS] == ["converged", "max_iter", "diverged", "stalled"]
    assert ENGINE_STOP_REASONS is STOP_REASONS
    assert [r.value for r in LAMBDA0_STOP_REASONS] == ["certified", "direction_unsettled", "margin_saddle",
                                                       "kkt_unconverged", "not_separated", "diverged"]
    assert [r.value for r in TRAIN_STOP_REASONS] == ["converged_grad", "converged_loss", "max_iter", "diverged"]
    from landscape.net.train import TRAIN_STOP_REASONS as net_reasons
    from landscape.study.lambda0 import STOP_REASONS as lambda0_reasons
    assert net_reasons is TRAIN_STOP_REASONS and lambda0_reasons is LAMBDA0_STOP_REASONS
    every = set(STOP_REASONS) | set(LAMBDA0_STOP_REASONS) | set(TRAIN_STOP_REASONS) | set(EDGE_STOP_REASONS)
    assert every == set(Outcome)


def test_reason_with_detail_round_trips():
    assert with_detail(Outcome.STALLED, Detail.PLATEAU) == "stalled (plateau)"
    assert with_detail("max_iter", "") == "max_iter"
    for text, want in [("stalled (plateau)", (Outcome.STALLED, "plateau")), ("converged", (Outcome.CONVERGED, "")),
                       ("returned to the saddle", (Outcome.RETURNED, "")),
                       ("max_iter (kink: the active set (1 entry) moved)",
                        (Outcome.MAX_ITER, "kink: the active set (1 entry) moved"))]:
        assert split_detail(text) == want
    for bad in ("", "plateau", "stalled (plateau", "finished (plateau)"):
        with pytest.raises(ValueError):
            split_detail(bad)
    refused = Detail.KINK.explained("‖∇L‖ rose")
    assert refused == "kink: ‖∇L‖ rose" and Detail.KINK.heads(refused) and Detail.KINK.heads("kink")
    assert not Detail.KINK.heads("kinky") and not Detail.STABLE.heads("strict")


def test_the_driver_writes_members_only():
    import torch

    from landscape.core.model import DeepUFM, ModelSpec
    from landscape.engines import make_stage, run_engine
    spec = ModelSpec(K=3, n=2, d=4, L=2, lam=1e-3)
    model = DeepUFM(spec)
    theta = 0.3 * torch.randn(6, spec.P, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    theta[0] *= 1e6                                                 # diverges
    res = run_engine(model, theta, make_stage("gd", lr=0.1, max_iter=30, stall_window=5))
    assert set(res.stop_reason) <= set(STOP_REASONS) and all(type(r) is str for r in res.stop_reason)
    assert all(d == "" or Detail.lookup(str(d).split(": ")[0]) for d in res.stop_detail)
    assert res.counts() == {r.value: int((res.stop_reason == r).sum()) for r in STOP_REASONS}
    assert sum(res.counts().values()) == 6 and res.counts()["diverged"] >= 1


def test_the_docs_list_exactly_the_members():
    doc = (REPO / "docs" / "results-folder.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- outcomes: generated from [^>]*-->\n(.*?)\n<!-- outcomes: end -->", doc, re.S)
    assert block, "docs/results-folder.md lost its generated table of stop reasons"
    assert block.group(1) == markdown_table(), "regenerate the table from landscape.engines.outcomes.markdown_table()"
    listed = re.findall(r"^\| `([^`]+)` \|", block.group(1), re.M)
    assert listed == [m.value for m in Outcome] + [m.value for m in Detail]
    lam0 = re.search(r"`stop_reasons` \(((?:`\w+`,?\s*)+)\)", doc)
    assert lam0 and re.findall(r"`(\w+)`", lam0.group(1)) == [r.value for r in LAMBDA0_STOP_REASONS]


# ----- folders written with plain strings ----------------------------------------------------------
@pytest.mark.skipif(not FOLDERS, reason="no committed results folders")
@pytest.mark.parametrize("folder", FOLDERS, ids=[str(p.relative_to(DATA)) for p in FOLDERS])
def test_committed_databases_read_and_hold_members_only(folder):
    with StudyStore.open(folder / "study.sqlite", readonly=True) as st:
        trajs, edges = st.trajectories(), st.edges()
    assert trajs and {t.stop_reason for t in trajs} <= set(STOP_REASONS)
    assert all(type(t.stop_reason) is str for t in trajs)
    for t in trajs:
        d = str((t.engine or {}).get("stop_detail") or "")
        assert d == "" or Detail.lookup(d.split(": ")[0]) is not None, d
    for e in edges:
        assert e.stop_reason is None or split_detail(e.stop_reason)


@pytest.mark.skipif(not SUMMARIES, reason="no committed results folders")
def test_committed_summaries_name_members_only():
    for f in SUMMARIES:
        s = json.loads(f.read_text(encoding="utf-8"))
        for k in s.get("stop_reasons") or {}:
            assert Outcome.lookup(k) is not None, (f, k)
        for u in s.get("uncertified") or []:
            reason, detail = split_detail(u["stop_reason"])
            assert detail == "" or Detail.lookup(detail.split(": ")[0]) is not None, (f, detail)


def test_an_old_results_folder_loads(tmp_path):
    """The example folder (written before the enumeration, plain strings) opens through the
    public API with its stop reasons as plain strings equal to the members."""
    from landscape.viz.report import load_results
    src = DATA / "example_study"
    if not (src / "summary.json").is_file():
        pytest.skip("no example study")
    shutil.copytree(src, tmp_path / "ex")
    r = load_results(tmp_path / "ex").result
    assert set(r.stop_reasons) == {o.value for o in STOP_REASONS}
    assert all(type(k) is str for k in r.stop_reasons)
    assert r.stop_reasons[Outcome.CONVERGED] == r.stop_reasons["converged"] > 0
    for reason in r.uncertified:
        assert split_detail(reason)[0] in STOP_REASONS


def _store_with(tmp_path, reason: str, edge_reason: str | None):
    from landscape.core.model import ModelSpec
    spec = ModelSpec(K=4, n=2, d=6, L=2, lam=1e-3)
    cfg = {"model": spec.to_dict(), "seed": 7, "n_trajectories": 2}
    db = tmp_path / f"s{abs(hash((reason, edge_reason)))}.sqlite"
    rng = np.random.default_rng(0)
    pt = {"id": 0, "kind": "saddle", "label": None, "loss": 0.5, "grad_norm": 1e-11, "hessian_index": 1,
          "fingerprint": {"loss": 0.5}, "params": rng.standard_normal(spec.P), "analysis": {}}
    with StudyStore.create(db, cfg, spec=spec) as st:
        st.commit_unit(0, [{"idx": 0, "seed": 0, "stop_reason": "max_iter", "certified": False}], [pt])
    con = sqlite3.connect(db)      # what an old (or altered) file holds, written without the code
    con.execute("UPDATE trajectories SET stop_reason = ?", (reason,))
    con.execute("INSERT INTO edges (saddle_id, direction, sign, target_id, eigenvalue, eps, barrier, stop_reason) "
                "VALUES (0, 0, 1, NULL, -1.0, 0.1, NULL, ?)", (edge_reason,))
    con.commit()
    con.close()
    return db


@pytest.mark.parametrize("reason, edge", [("stalled", "stalled (gradient_flat)"), ("converged", None),
                                          ("diverged", "returned to the saddle"),
                                          ("max_iter", "max_iter (kink: the loss rose)")])
def test_plain_strings_read_back(tmp_path, reason, edge):
    with StudyStore.open(_store_with(tmp_path, reason, edge), readonly=True) as st:
        (t,), (e,) = st.trajectories(), st.edges()
    assert t.stop_reason == reason and type(t.stop_reason) is str and e.stop_reason == edge


@pytest.mark.parametrize("reason, edge, column", [("finished", None, "trajectories"),
                                                  ("certified", None, "trajectories"),
                                                  ("max_iter", "wandered off", "edges"),
                                                  ("max_iter", "plateau (stalled)", "edges")])
def test_an_unknown_stop_reason_is_refused_when_read(tmp_path, reason, edge, column):
    with StudyStore.open(_store_with(tmp_path, reason, edge), readonly=True) as st:
        with pytest.raises(StoreError, match=f"table {column}.*column stop_reason.*not a stop reason"):
            st.trajectories() if column == "trajectories" else st.edges()


def test_the_store_refuses_to_write_an_unknown_stop_reason(tmp_path):
    from landscape.core.model import ModelSpec
    spec = ModelSpec(K=4, n=2, d=6, L=2, lam=1e-3)
    with StudyStore.create(tmp_path / "w.sqlite", {"model": spec.to_dict()}, spec=spec) as st:
        with pytest.raises(StoreError, match="stop reason 'finished' is invalid: must be one of converged"):
            st.commit_unit(0, [{"idx": 0, "seed": 0, "stop_reason": "finished", "certified": False}])
        st.commit_unit(0, [{"idx": 0, "seed": 0, "stop_reason": Outcome.STALLED, "certified": False}])
        (t,) = st.trajectories()
    assert t.stop_reason == "stalled" and type(t.stop_reason) is str
