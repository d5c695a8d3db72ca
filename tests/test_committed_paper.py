"""The committed paper results (data/paper) checked by direct analysis, not by the code that made them.

Every finished study folder under data/paper (sweep cells and the paper-fig2 study) is read with
sqlite3 + numpy only: each distinct minimum's loss is recomputed from MODEL.md §2, the §4
critical-point identities (balance, 1ᵀW_L = 0) are checked on its factors, a point labelled DNC
has the closed-form DNC loss of MODEL.md §6 (its own brentq), and the counts of prevalence.csv and
the paired 2×2 tables of sweep.json are recounted start by start from the databases.
"""
import csv
import json
import sqlite3
from pathlib import Path

import numpy as np
import torch

from landscape.core.model import DeepUFM
from landscape.core.spec import ModelSpec
import pytest

from oracles import dnc_loss_from_model_md, numpy_factors, numpy_ufm_loss

DATA_PAPER = Path(__file__).resolve().parents[1] / "data" / "paper"
STUDIES = sorted(p.parent for p in DATA_PAPER.glob("**/summary.json") if (p.parent / "study.sqlite").is_file()) \
    if DATA_PAPER.is_dir() else []
SWEEPS = sorted(p.parent for p in DATA_PAPER.glob("*/sweep.json")) if DATA_PAPER.is_dir() else []


def _read(folder: Path):
    con = sqlite3.connect(f"file:{folder / 'study.sqlite'}?mode=ro", uri=True)
    cfg = json.loads(con.execute("SELECT json FROM config WHERE id = 1").fetchone()[0])
    points = con.execute("SELECT id, kind, label, loss, grad_norm, params, params_dtype FROM points").fetchall()
    trajs = con.execute("SELECT t.idx, t.certified, p.label FROM trajectories t LEFT JOIN points p "
                        "ON p.id = t.point_id WHERE json_extract(t.engine, '$.kind') = 'main'").fetchall()
    con.close()
    return cfg, points, trajs


@pytest.mark.parametrize("folder", STUDIES, ids=[str(p.relative_to(DATA_PAPER)) for p in STUDIES])
def test_committed_minima_are_balanced_critical_points_with_their_closed_forms(folder):
    cfg, points, _ = _read(folder)
    m = cfg["model"]
    K, n, d, L, lam = m["K"], m["n"], m["d"], m["L"], m["lambda"]
    assert m.get("activation", "linear") == "linear" and "lambda_H" not in m and "lambda_W" not in m
    dnc = dnc_loss_from_model_md(K, n, L, lam)
    minima = [p for p in points if p[1] == "minimum"]
    assert minima
    model = DeepUFM(ModelSpec(K=K, n=n, d=d, L=L, lam=lam))
    tol = cfg["certify_tol"]
    assert 0 < tol <= 1e-8
    for pid, kind, label, loss, gnorm, blob, dt in minima:
        theta = np.frombuffer(blob, dtype=np.dtype(dt))
        assert abs(numpy_ufm_loss(theta, K, n, d, L, lam, lam) - loss) <= 1e-12, pid
        # ‖∇L‖ recomputed from the stored θ with the model, against the study's certification
        # tolerance (the stored grad_norm is not read back)
        assert float(model.grad(torch.from_numpy(theta.astype(np.float64))[None]).norm()) <= tol, pid
        F = numpy_factors(theta, K, n, d, L)
        for l in range(L):     # equal λ: W_{l+1}ᵀW_{l+1} = W_lW_lᵀ (H₁ for l = 0)
            lhs, rhs = F[l + 1].T @ F[l + 1], F[l] @ F[l].T
            assert np.abs(lhs - rhs).max() <= 1e-8 * max(1.0, np.abs(lhs).max()), (pid, l)
        assert np.abs(F[-1].sum(axis=0)).max() <= 1e-8
        if label == "DNC":
            assert loss == pytest.approx(dnc, abs=1e-10), pid


@pytest.mark.parametrize("sweep", SWEEPS, ids=[p.name for p in SWEEPS])
def test_prevalence_and_paired_tables_recount_from_the_databases(sweep):
    rows = list(csv.DictReader((sweep / "prevalence.csv").open()))
    record = json.loads((sweep / "sweep.json").read_text())
    ends = {}
    for r in rows:
        _, _, trajs = _read(sweep / "cells" / r["cell"])
        ends[r["cell"]] = {idx: (label if cert else None) for idx, cert, label in trajs}
        labels = [v for v in ends[r["cell"]].values()]
        assert int(r["n_trajectories"]) == len(labels)
        assert int(r["dnc_count"]) == labels.count("DNC")
        assert int(r["uncertified_count"]) == labels.count(None)
        for key, value in r.items():
            if key.startswith("count_"):
                assert int(value) == labels.count(key[len("count_"):]), (r["cell"], key)
    for r in rows:     # a cell with a [cross_check]: its agreement recounted start by start
        check = json.loads(r.get("check") or "{}")
        if not check:
            continue
        con = sqlite3.connect(f"file:{sweep / 'cells' / r['cell'] / 'study.sqlite'}?mode=ro", uri=True)
        got = con.execute("SELECT t.idx, t.certified, t.point_id, json_extract(t.engine, '$.kind') "
                          "FROM trajectories t").fetchall()
        con.close()
        main = {i: (c, p) for i, c, p, k in got if k == "main"}
        chk = {i - 2_000_000_000: (c, p) for i, c, p, k in got if k == "check"}
        agree = sum(1 for j, (c, p) in chk.items() if c and main[j][0] and main[j][1] == p)
        assert (check["n"], check["agree"]) == (len(chk), agree), r["cell"]
        dnc = [ends[r["cell"]][j] == "DNC" for j in chk]
        assert check["main_dnc"][0] == pytest.approx(sum(dnc) / len(chk), abs=1e-15)
    for p in record.get("paired", []):
        a, b = ends[p["first"]], ends[p["second"]]
        both = sum(a[i] == "DNC" and b[i] == "DNC" for i in a)
        first = sum(a[i] == "DNC" and b[i] != "DNC" for i in a)
        second = sum(a[i] != "DNC" and b[i] == "DNC" for i in a)
        assert (p["both"], p["first_only"], p["second_only"]) == (both, first, second)
        assert p["difference"] == pytest.approx((first - second) / len(a), abs=1e-15)


CONNECTED = [p for p in STUDIES if p.name.startswith("fig2-d70")]


@pytest.mark.parametrize("folder", CONNECTED, ids=[p.name for p in CONNECTED])
def test_committed_transition_states_join_every_minimum_that_holds_a_basin(folder):
    """Issue 20's acceptance, recounted with sqlite3 + numpy: every stored transition state is a
    point whose loss MODEL.md §2 gives (recomputed from its parameters), stored with index 1, and
    whose two barriers are its loss minus those of the minima it joins; the minima holding basin
    counts form one component of the graph those transition states draw."""
    cfg, points, trajs = _read(folder)
    m = cfg["model"]
    K, n, d, L, lam = m["K"], m["n"], m["d"], m["L"], m["lambda"]
    con = sqlite3.connect(f"file:{folder / 'study.sqlite'}?mode=ro", uri=True)
    ts = con.execute("SELECT saddle_id, min1_id, min2_id, barrier1, barrier2 FROM transition_states").fetchall()
    index = dict(con.execute("SELECT id, hessian_index FROM points").fetchall())
    held = {r[0] for r in con.execute("SELECT DISTINCT t.point_id FROM trajectories t JOIN points p ON p.id = t.point_id "
                                      "WHERE t.certified = 1 AND p.kind = 'minimum' "
                                      "AND json_extract(t.engine, '$.kind') = 'main'")}
    con.close()
    loss = {pid: ls for pid, _, _, ls, _, _, _ in points}
    params = {pid: np.frombuffer(blob, dtype=np.dtype(dt)) for pid, _, _, _, _, blob, dt in points}
    assert ts and len(held) >= 2
    parent = {p: p for p in held}

    def root(p):
        while parent[p] != p:
            p = parent[p]
        return p
    for s, a, b, b1, b2 in ts:
        assert index[s] == 1
        assert abs(numpy_ufm_loss(params[s], K, n, d, L, lam, lam) - loss[s]) <= 1e-12
        assert b1 == pytest.approx(loss[s] - loss[a], abs=1e-14) and b2 == pytest.approx(loss[s] - loss[b], abs=1e-14)
        assert min(b1, b2) > 0
        parent.setdefault(a, a), parent.setdefault(b, b)
        parent[root(a)] = root(b)
    assert len({root(p) for p in held}) == 1
