"""A λ = 0 study is resumable, and a finished λ = 0 folder reads back (issue 36 §3).

* Interrupted after a batch (an exception from the progress callback, as Ctrl-C would), the
  folder keeps every committed batch in lambda0.sqlite; the same call (or ``landscape run
  --resume DIR``, or the sweep run again) computes only the batches it lacks, and the records,
  summary, directions and their θ̂ equal those of a run never interrupted (everything but wall
  times). A finished folder resumed computes nothing; the hand-off check is committed too.
* A run killed inside a batch's commit (the start rows written, the transaction not committed:
  a hot journal) resumes to the results of a run never interrupted.
* A tampered folder is refused with a message naming the file, table and row: a record of the
  wrong type, an integer beyond the range of a float, a hand-off check that is not one, a θ̂ of
  the wrong length, a table added, a configuration that differs; ``landscape run --resume``
  says so in one line (exit 2, no traceback).
* Every batch records the environment that computed it (resolved device, torch and landscape
  versions); a resume in another environment is refused while anything is left to compute. A
  database of schema version 1 (landscape 12b11c6, no environment) is read and resumed, its
  batches' environment ``unknown``.
* ``landscape.load_results`` on a finished λ = 0 folder: the directions' γ recomputed here with
  numpy from θ̂ (MODEL.md §1's layout: logits Z = W_L ⋯ W₁H₁, min over samples i and classes
  c ≠ y_i of z_{y_i} − z_c, over ‖θ‖^{L+1}) equal the stored γ; tampered files are refused.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

import landscape
from landscape.io.lambda0_store import Lambda0Store, Lambda0StoreError
from landscape.io.results import has_lambda0_database
from landscape.study import lambda0 as l0
from landscape.study.config import load_study

from oracles import numpy_factors

SMALL = ["model.K=4", "model.n=1", "model.d=6", "model.L=3", "trajectories=12", "batch_size=4",
         "stages.0.max_iter=800", "lambda0.continue_iter=300", "lambda0.check_starts=0"]
#: Wall times: the only values a resumed run may change.
SECONDS = ("descent_s", "continue_s", "decide_s")


def _cfg(*extra):
    return load_study(preset="lambda0", overrides=SMALL + list(extra))


class Stop(KeyboardInterrupt):
    pass


def _stop_after(n_done):
    def progress(e):
        if e["done"] >= n_done:
            raise Stop
    return progress


def _timeless_summary(s):
    s = json.loads(json.dumps(s))
    for k in ("wall_time_s", "timings", "environment", "batch_environments"):
        s.pop(k, None)
    s["steps"].pop("seconds_per_start")
    return s


def _timeless_starts(folder):
    doc = json.loads((folder / "directions.json").read_text())
    return [{k: v for k, v in r.items() if k not in SECONDS} for r in doc["starts"]]


def _arrays(folder):
    with np.load(folder / "directions.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture
def computed(monkeypatch):
    """The start indices each batch computed (run_dynamics wrapped)."""
    calls = []
    real = l0.run_dynamics

    def spy(cfg, indices, factor=1, **kw):
        calls.append((list(indices), factor))
        return real(cfg, indices, factor, **kw)

    monkeypatch.setattr(l0, "run_dynamics", spy)
    return calls


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    out = tmp_path_factory.mktemp("lambda0-full")
    s = l0.run_lambda0_study(_cfg(), out, progress=False)
    return out, s


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A folder whose run stopped after its first batch (4 of 12 starts committed)."""
    out = tmp_path_factory.mktemp("lambda0-interrupted")
    with pytest.raises(Stop):
        l0.run_lambda0_study(_cfg(), out, progress=_stop_after(4))
    return out


def _copy(src, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def _assert_same(a, sa, b, sb):
    assert _timeless_summary(sa) == _timeless_summary(sb)
    assert _timeless_starts(a) == _timeless_starts(b)
    x, y = _arrays(a), _arrays(b)
    assert sorted(x) == sorted(y) and all(np.array_equal(x[k], y[k]) for k in x)


# ----- resuming ------------------------------------------------------------------------------------
def test_the_full_run_has_several_directions_over_its_batches(full):
    out, s = full
    assert len(s["directions"]) >= 2 and s["n_trajectories"] == 12, l0.summary_text(s)
    with sqlite3.connect(out / "lambda0.sqlite") as con:
        assert con.execute("SELECT count(*) FROM batches").fetchone()[0] == 3
        assert con.execute("SELECT count(*) FROM starts").fetchone()[0] == 12
        # one θ̂ per direction: the first start of each
        assert con.execute("SELECT count(*) FROM thetas").fetchone()[0] == len(s["directions"])


def test_an_interrupted_run_keeps_its_committed_batch_and_writes_no_summary(interrupted):
    assert not (interrupted / "summary.json").exists() and not (interrupted / "directions.json").exists()
    with pytest.raises(FileNotFoundError, match="--resume"):
        landscape.load_results(interrupted)
    with sqlite3.connect(interrupted / "lambda0.sqlite") as con:
        assert con.execute("SELECT batch, lo, hi FROM batches").fetchall() == [(0, 0, 4)]
        assert [r[0] for r in con.execute("SELECT idx FROM starts ORDER BY idx")] == [0, 1, 2, 3]


def test_resumed_twice_it_equals_the_uninterrupted_run(full, interrupted, tmp_path, computed):
    out = _copy(interrupted, tmp_path)
    with pytest.raises(Stop):   # a second interruption, after batch 1
        l0.run_lambda0_study(_cfg(), out, progress=_stop_after(8))
    events = []
    s = l0.run_lambda0_study(_cfg(), out, progress=events.append)
    assert [c[0] for c in computed] == [[4, 5, 6, 7], [8, 9, 10, 11]]   # nothing computed twice
    assert [e["done"] for e in events] == [12]
    _assert_same(out, s, full[0], full[1])
    assert json.loads((out / "summary.json").read_text())["n_trajectories"] == 12
    computed.clear()
    again = l0.run_lambda0_study(_cfg(), out, progress=False)   # finished: nothing to compute
    assert computed == []
    _assert_same(out, again, full[0], full[1])


def test_landscape_run_resume_continues_an_interrupted_folder(full, interrupted, tmp_path, capsys):
    from landscape.cli import main

    out = _copy(interrupted, tmp_path)
    assert main(["inspect", str(out)]) == 2 and "--resume" in capsys.readouterr().err
    # a new run into it is refused: it holds a study to resume
    assert main(["run", "--preset", "lambda0", *[a for kv in SMALL for a in ("--set", kv)], "--out", str(out),
                 "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    assert "λ = 0 study" in capsys.readouterr().out
    _assert_same(out, json.loads((out / "summary.json").read_text()), full[0], full[1])
    assert main(["inspect", str(out)]) == 0 and "λ = 0 study" in capsys.readouterr().out
    assert main(["report", str(out)]) == 2


def test_a_sweep_run_again_resumes_its_unfinished_lambda_zero_cell(full, tmp_path, computed):
    from landscape.study.sweep import run_sweep
    from landscape.study.sweep_config import load_sweep

    f = tmp_path / "sweep.toml"   # the lambda0 preset made small (SMALL), one cell
    f.write_text('name = "sw"\ntrajectories = 12\nbatch_size = 4\n[model]\nK = 4\nn = 1\nd = 6\nL = 3\n'
                 'lambda = 0\n[init]\nname = "gaussian"\n[[stages]]\nengine = "gd"\nlr = 0.5\nmax_iter = 800\n'
                 '[saddles]\nstarts = 0\n[lambda0]\ncontinue_iter = 300\nrule = "stable"\n[sweep]\nseed = [0]\n')
    sweep = load_sweep(f)
    (cell,) = sweep.cells
    cell_dir = tmp_path / "out" / "cells" / cell.name
    cell_dir.mkdir(parents=True)
    with pytest.raises(Stop):
        l0.run_lambda0_study(cell.config, cell_dir, progress=_stop_after(4))
    computed.clear()
    rec = run_sweep(sweep, tmp_path / "out", progress=False)
    assert [c[0] for c in computed] == [[4, 5, 6, 7], [8, 9, 10, 11]]
    assert rec["cells"][0]["status"] == "ran" and rec["cells"][0]["n_trajectories"] == 12
    s = json.loads((cell_dir / "summary.json").read_text())
    assert s["directions"] == full[1]["directions"] and s["stop_reasons"] == full[1]["stop_reasons"]
    assert _timeless_starts(cell_dir) == _timeless_starts(full[0])


def test_the_hand_off_check_is_committed_and_not_redone(tmp_path, computed, monkeypatch):
    cfg = _cfg("trajectories=4", "lambda0.check_starts=2", "lambda0.check_factor=2")
    real = l0._check

    def check_then_stop(*a):
        real(*a)
        raise Stop   # killed after computing the check, before committing it: it is redone

    monkeypatch.setattr(l0, "_check", check_then_stop)
    with pytest.raises(Stop):
        l0.run_lambda0_study(cfg, tmp_path, progress=False)
    monkeypatch.setattr(l0, "_check", real)
    computed.clear()
    s = l0.run_lambda0_study(cfg, tmp_path, progress=False)
    assert computed == [([0, 1], 2)] and s["check"]["starts"] == 2   # the main batch was not redone
    computed.clear()
    again = l0.run_lambda0_study(cfg, tmp_path, progress=False)
    assert computed == [] and again["check"] == s["check"] and "check_s" in again["timings"]


# ----- tampered folders ----------------------------------------------------------------------------
def _tamper(folder, sql, *args):
    con = sqlite3.connect(folder / "lambda0.sqlite")
    try:
        con.execute(sql, args)
        con.commit()
    finally:
        con.close()


def test_a_record_of_the_wrong_type_is_refused(interrupted, tmp_path):
    out = _copy(interrupted, tmp_path)
    with sqlite3.connect(out / "lambda0.sqlite") as con:
        rec = json.loads(con.execute("SELECT record FROM starts WHERE idx = 2").fetchone()[0])
    rec["descent_iterations"] = "800"
    _tamper(out, "UPDATE starts SET record = ? WHERE idx = 2", json.dumps(rec))
    with pytest.raises(Lambda0StoreError, match=r"table starts, row 2.*descent_iterations.*integer"):
        l0.run_lambda0_study(_cfg(), out, progress=False)
    rec["descent_iterations"], rec["extra"] = 800, 1
    _tamper(out, "UPDATE starts SET record = ? WHERE idx = 2", json.dumps(rec))
    with pytest.raises(Lambda0StoreError, match=r"row 2.*unknown \['extra'\]"):
        l0.run_lambda0_study(_cfg(), out, progress=False)
    assert not (out / "summary.json").exists()


def test_a_theta_of_the_wrong_shape_is_refused(interrupted, tmp_path):
    out = _copy(interrupted, tmp_path)
    P = _cfg().model.P
    _tamper(out, "UPDATE thetas SET theta = zeroblob(?)", 8 * (P - 1))
    with pytest.raises(Lambda0StoreError, match=rf"table thetas.*{P} float64 values"):
        l0.run_lambda0_study(_cfg(), out, progress=False)


def test_a_missing_theta_or_an_added_table_is_refused(interrupted, tmp_path):
    out = _copy(interrupted, tmp_path)
    _tamper(out, "DELETE FROM thetas")
    with pytest.raises(Lambda0StoreError, match="is not stored"):
        l0.run_lambda0_study(_cfg(), out, progress=False)
    out2 = _copy(interrupted, tmp_path / "b")
    _tamper(out2, "CREATE TRIGGER t AFTER INSERT ON starts BEGIN DELETE FROM thetas; END")
    with pytest.raises(Lambda0StoreError, match="tables are not those"):
        l0.run_lambda0_study(_cfg(), out2, progress=False)


def test_a_different_configuration_is_refused(interrupted, tmp_path):
    out = _copy(interrupted, tmp_path)
    with pytest.raises(Lambda0StoreError, match="different configuration"):
        l0.run_lambda0_study(_cfg("seed=1"), out, progress=False)
    with pytest.raises(Lambda0StoreError, match="different configuration"):
        landscape.run_study(_cfg("lambda0.kkt_tol=1e-9"), out, progress=False)
    # a λ > 0 study is never written into a λ = 0 folder
    with pytest.raises(landscape.StoreError, match="λ = 0 study"):
        landscape.run_study(load_study(overrides=["trajectories=2"]), out, progress=False)
    assert json.loads((out / "config.json").read_text())["seed"] == _cfg().seed


# ----- reading a finished folder ---------------------------------------------------------------------
def _numpy_gamma(theta, K, n, d, L):
    """γ of a flat θ with numpy alone (MODEL.md §1: H₁ d×N, W₁ … W_{L−1} d×d, W_L K×d, row-major)."""
    assert theta.size == d * K * n + (L - 1) * d * d + K * d
    F = numpy_factors(theta, K, n, d, L)
    Z = F[0]
    for W in F[1:]:
        Z = W @ Z
    y = np.repeat(np.arange(K), n)   # class-ordered columns: sample fastest, class slowest
    zy = Z[y, np.arange(K * n)]
    other = Z.copy()
    other[y, np.arange(K * n)] = -np.inf
    m = (zy - other.max(axis=0)).min()
    return m / np.linalg.norm(theta) ** (L + 1), m


def test_load_results_reads_a_finished_folder(full):
    out, s = full
    r = landscape.load_results(out)
    assert isinstance(r, landscape.Lambda0Result) and r.summary == json.loads((out / "summary.json").read_text())
    assert r.n_trajectories == 12 and [x["index"] for x in r.starts] == list(range(12))
    assert "λ = 0 study" in r.text()
    m = s["config"]["model"]
    assert len(r.directions) == len(s["directions"]) >= 2
    for d in r.directions:
        assert d.theta.shape == (r.P,) and d.theta.dtype == np.float64
        gamma, mmin = _numpy_gamma(d.theta, m["K"], m["n"], m["d"], m["L"])
        assert abs(gamma - d.gamma) <= 1e-10 * d.gamma and abs(mmin - 1.0) <= 1e-9
        assert d.count == len(d.starts) and all(r.starts[i]["direction_id"] == d.id for i in d.starts)
    assert sum(d.count for d in r.directions) == s["certified"]["count"]
    assert r.direction(r.directions[0].id) is r.directions[0]
    with pytest.raises(ValueError, match="no report page"):
        landscape.write_report(out)


def _rewrite_npz(path, arrays, pickled=False):
    buf = io.BytesIO()
    if pickled:
        with zipfile.ZipFile(buf, "w") as zf:
            for k, v in arrays.items():
                b = io.BytesIO()
                np.save(b, np.array([v], dtype=object), allow_pickle=True)
                zf.writestr(k + ".npy", b.getvalue())
    else:
        np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


def test_load_results_refuses_tampered_files(full, tmp_path):
    out = _copy(full[0], tmp_path)
    arrays = _arrays(out)
    k = sorted(arrays)[0]
    _rewrite_npz(out / "directions.npz", {**arrays, k: arrays[k][:-1]})
    with pytest.raises(ValueError, match=rf"{k} must be .* finite float64"):
        landscape.load_results(out)
    _rewrite_npz(out / "directions.npz", arrays, pickled=True)
    with pytest.raises(ValueError, match="pickle|not a readable"):
        landscape.load_results(out)
    _rewrite_npz(out / "directions.npz", arrays)
    landscape.load_results(out)   # restored: reads again
    doc = json.loads((out / "directions.json").read_text())
    doc["starts"][3]["gamma"] = "0.1"
    (out / "directions.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"starts\[3\].*'gamma' must be a number"):
        landscape.load_results(out)
    doc["starts"][3]["gamma"] = full[1]["directions"][0]["gamma"] * 2
    (out / "directions.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"starts\[3\]"):
        landscape.load_results(out)
    shutil.copy(full[0] / "directions.json", out / "directions.json")
    s = json.loads((out / "summary.json").read_text())
    s["directions"][0]["count"] = "3"
    (out / "summary.json").write_text(json.dumps(s))
    with pytest.raises(ValueError, match=r"directions\[0\].*'count' must be an integer"):
        landscape.load_results(out)


def test_a_huge_integer_in_a_finished_folder_is_refused(full, tmp_path, capsys):
    from landscape.cli import main

    out = _copy(full[0], tmp_path)
    doc = json.loads((out / "directions.json").read_text())
    doc["starts"][3]["gamma_end"] = 10**400
    (out / "directions.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"starts\[3\]: 'gamma_end' must be a number or null, not an integer of "
                                         r"1329 bits, beyond the range of a float"):
        landscape.load_results(out)
    shutil.copy(full[0] / "directions.json", out / "directions.json")
    s = json.loads((out / "summary.json").read_text())
    s["directions"][0]["gamma"] = -10**400
    (out / "summary.json").write_text(json.dumps(s))
    with pytest.raises(ValueError, match=r"directions\[0\]: 'gamma' must be a number.*beyond the range of a float"):
        landscape.load_results(out)
    assert main(["inspect", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "directions[0]" in err and "Traceback" not in err
    s["directions"][0]["gamma"] = full[1]["directions"][0]["gamma"]
    s["config"]["lambda0"]["kkt_tol"] = 10**400
    (out / "summary.json").write_text(json.dumps(s))
    with pytest.raises(ValueError, match=r"config: lambda0\.kkt_tol is an integer of 1329 bits"):
        landscape.load_results(out)


# ----- a run killed inside a commit ----------------------------------------------------------------
#: A fresh run that dies (os._exit: no cleanup, no rollback) inside the commit of batch 1, after
#: its batch row, start rows and θ̂ are inserted and before COMMIT. A page cache of one page makes
#: SQLite write the uncommitted pages into the file itself (the originals in the journal first):
#: the database is left half-written beside a hot journal, as by a crash at the worst moment.
KILLED_IN_COMMIT = r"""
import os, sys
from landscape.io.lambda0_store import Lambda0Store
from landscape.study import lambda0 as l0
from landscape.study.config import load_study

real = Lambda0Store._transaction

def dying(self, what, fn):
    if not what.startswith("batch 1 "):
        return real(self, what, fn)
    before = self.path.read_bytes()
    def write_then_die(con):
        con.execute("PRAGMA cache_size = 1")
        fn(con)
        assert con.execute("SELECT count(*) FROM starts").fetchone()[0] == 8   # batch 1's rows are in
        print("file written:", self.path.read_bytes() != before, flush=True)
        os._exit(17)
    return real(self, what, write_then_die)

Lambda0Store._transaction = dying
l0.run_lambda0_study(load_study(preset="lambda0", overrides=sys.argv[2:]), sys.argv[1], progress=False)
"""


def test_a_run_killed_inside_a_commit_resumes_to_the_uninterrupted_results(full, tmp_path, computed):
    out = tmp_path / "killed"
    p = subprocess.run([sys.executable, "-c", KILLED_IN_COMMIT, str(out), *SMALL], capture_output=True, text=True,
                       timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 17, p.stderr[-2000:]
    assert "file written: True" in p.stdout   # the uncommitted batch is in the file, its originals in the journal
    assert (out / "lambda0.sqlite-journal").is_file()   # the uncommitted batch, left as a hot journal
    assert not (out / "summary.json").exists()
    s = l0.run_lambda0_study(_cfg(), out, progress=False)
    assert [c[0] for c in computed] == [[4, 5, 6, 7], [8, 9, 10, 11]]   # batch 0 kept, batch 1 rolled back
    assert not (out / "lambda0.sqlite-journal").exists()
    _assert_same(out, s, full[0], full[1])


# ----- bad values read back: one line, no traceback ------------------------------------------------
def _cli_refuses(out, capsys, *words):
    from landscape.cli import main

    assert main(["run", "--resume", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and all(w in err for w in words), err


def test_a_huge_integer_is_refused_naming_file_table_and_row(interrupted, tmp_path, capsys):
    out = _copy(interrupted, tmp_path)
    with sqlite3.connect(out / "lambda0.sqlite") as con:
        rec = json.loads(con.execute("SELECT record FROM starts WHERE idx = 1").fetchone()[0])
    rec["gamma"] = 10**400   # 401 digits: JSON reads it, float() cannot
    _tamper(out, "UPDATE starts SET record = ? WHERE idx = 1", json.dumps(rec))
    with pytest.raises(Lambda0StoreError, match=r"lambda0\.sqlite: table starts, row 1: 'gamma' must be a number or "
                                                r"null, not an integer of 1329 bits, beyond the range of a float"):
        l0.run_lambda0_study(_cfg(), out, progress=False)
    _cli_refuses(out, capsys, "lambda0.sqlite: table starts, row 1", "'gamma'", "beyond the range of a float")
    rec["gamma"], rec["index"] = None, 2**70   # an integer field beyond 64 bits
    _tamper(out, "UPDATE starts SET record = ? WHERE idx = 1", json.dumps(rec))
    _cli_refuses(out, capsys, "table starts, row 1", "'index'", "beyond the range of a 64-bit integer")
    # in the stored configuration, which `--resume` reads before anything else
    out2 = _copy(interrupted, tmp_path / "b")
    with sqlite3.connect(out2 / "lambda0.sqlite") as con:
        cfg = json.loads(con.execute("SELECT json FROM config").fetchone()[0])
    cfg["lambda0"]["kkt_tol"] = 10**400
    _tamper(out2, "UPDATE config SET json = ?", json.dumps(cfg))
    _cli_refuses(out2, capsys, "table config, row 1", "lambda0.kkt_tol is an integer of 1329 bits")
    with pytest.raises(Lambda0StoreError, match="table config, row 1"):
        l0.run_lambda0_study(_cfg(), out2, progress=False)


def test_a_stored_check_that_is_not_one_is_refused(interrupted, tmp_path, capsys):
    out = _copy(interrupted, tmp_path)
    _tamper(out, "INSERT INTO check_result (id, json, seconds, committed_at) VALUES (1, '{}', 0.5, 0.0)")
    with pytest.raises(Lambda0StoreError, match=r"table check_result, row 1: .*'dynamics' is missing"):
        l0.run_lambda0_study(_cfg(), out, progress=False)
    _cli_refuses(out, capsys, "table check_result, row 1", "'dynamics' is missing")
    check = {"dynamics": "gd", "starts": 1, "certified_main": 1, "agree": 1, "same_label": 1,
             "agreement": {"count": 1, "fraction": 1.0, "ci_low": 0.2, "ci_high": 1.0},
             "longer_stop_reasons": {"certified": 1},
             "pairs": [{"index": 0, "main": "DNC", "main_gamma": 10**400, "longer": "DNC", "longer_gamma": 0.1,
                        "longer_stop_reason": "certified"}]}
    _tamper(out, "UPDATE check_result SET json = ?", json.dumps(check))
    _cli_refuses(out, capsys, "table check_result, row 1", "pairs[0]", "'main_gamma'", "beyond the range of a float")
    assert not (out / "summary.json").exists()


class _CommitFails:
    """A connection whose COMMIT fails as SQLITE_FULL does, after SQLite has rolled the
    transaction back itself (so an explicit ROLLBACK would find none)."""

    def __init__(self, con):
        self.con = con

    @property
    def in_transaction(self):
        return self.con.in_transaction

    def execute(self, sql, *args):
        if sql == "COMMIT":
            self.con.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")
        return self.con.execute(sql, *args)


def test_a_failed_commit_reports_its_own_error_not_the_rollback(tmp_path):
    store = Lambda0Store.open(tmp_path / "lambda0.sqlite", {"k": 1}, 3, 2, 2, 0)
    real = store._con
    store._con = _CommitFails(real)
    recs = [{"index": i, "gamma": None, "stop_reason": "diverged", "label": None} for i in range(2)]
    with pytest.raises(Lambda0StoreError, match="the disk is full .*database or disk is full.*batch 0"):
        store.commit_batch(0, recs, {}, {})
    store._con = real
    assert not real.in_transaction and store.read()[0] == {}
    store.close()


def test_has_lambda0_database(interrupted, tmp_path):
    assert has_lambda0_database(interrupted) and not has_lambda0_database(tmp_path)
    (tmp_path / "lambda0.sqlite").symlink_to(tmp_path / "nowhere")
    assert has_lambda0_database(tmp_path)   # a dangling link counts (and is refused when opened)


# ----- the environment of every batch ---------------------------------------------------------------
def _environments(folder):
    with sqlite3.connect(folder / "lambda0.sqlite") as con:
        return con.execute("SELECT batch, device, torch, landscape FROM batches ORDER BY batch").fetchall()


def test_every_batch_records_its_environment(full):
    out, s = full
    here = (str(l0.resolve_device(_cfg().device)), torch.__version__, landscape.__version__)
    assert _environments(out) == [(b, *here) for b in range(3)]
    assert s["batch_environments"] == [{"device": here[0], "torch": here[1], "landscape": here[2],
                                        "batches": [0, 1, 2]}]
    assert landscape.load_results(out).summary["batch_environments"] == s["batch_environments"]


def test_a_resume_in_another_environment_is_refused(interrupted, full, tmp_path, capsys, monkeypatch, computed):
    out = _copy(interrupted, tmp_path)
    _tamper(out, "UPDATE batches SET torch = '1.0.0'")   # as if a run with another torch had committed it
    with pytest.raises(Lambda0StoreError, match=rf"lambda0\.sqlite: batch 0 was computed with torch 1\.0\.0 \(this run: "
                                                rf"{re.escape(torch.__version__)}\).*Resume it where it was run .*torch 1\.0\.0.*"
                                                "or write to another folder"):
        l0.run_lambda0_study(_cfg(), out, progress=False)
    _cli_refuses(out, capsys, "torch 1.0.0", "Resume it where it was run", "another folder")
    out2 = _copy(interrupted, tmp_path / "b")
    monkeypatch.setattr(l0, "__version__", "9.9.9")   # this run's landscape differs from the batch's
    with pytest.raises(Lambda0StoreError, match=rf"landscape {re.escape(landscape.__version__)} \(this run: 9\.9\.9\)"):
        l0.run_lambda0_study(_cfg(), out2, progress=False)
    monkeypatch.undo()
    real = l0.run_environment
    monkeypatch.setattr(l0, "run_environment", lambda cfg: {**real(cfg), "device": "cuda:7"})
    recorded = re.escape(_environments(out2)[0][1])
    with pytest.raises(Lambda0StoreError, match=rf"batch 0 was computed with device {recorded} \(this run: cuda:7\)"):
        l0.run_lambda0_study(_cfg(), out2, progress=False)
    assert computed == [] and not (out / "summary.json").exists() and not (out2 / "summary.json").exists()
    # a finished study has nothing left to compute: its files are written again, the batches'
    # environment in the summary
    done = _copy(full[0], tmp_path / "c")
    _tamper(done, "UPDATE batches SET torch = '1.0.0'")
    s = l0.run_lambda0_study(_cfg(), done, progress=False)
    assert computed == [] and [e["torch"] for e in s["batch_environments"]] == ["1.0.0"]


#: sha256 of the tables of landscape 12b11c6 (schema version 1) as its lambda0_store._SCHEMA wrote
#: them: a new database is that schema and the migrations since (lambda0_store._MIGRATIONS), so the
#: text must stay as it was for a version-1 file to be read.
SCHEMA_V1_SHA256 = "47d5b840a4a93540fa43a5f8c1d4c525fe4ad642c0cd2fe72ae9ef100c58be06"


def _as_schema_version_1(folder):
    """Rewrite the folder's database as landscape 12b11c6 wrote it (schema version 1)."""
    from landscape.io import lambda0_store

    assert hashlib.sha256(lambda0_store._SCHEMA.encode()).hexdigest() == SCHEMA_V1_SHA256
    db, old = folder / "lambda0.sqlite", folder / "v1.sqlite"
    con = sqlite3.connect(old)
    con.executescript(lambda0_store._SCHEMA)
    con.execute("ATTACH DATABASE ? AS new", (str(db),))
    con.execute("INSERT INTO config SELECT * FROM new.config")
    con.execute("INSERT INTO batches SELECT batch, lo, hi, descent_s, margin_flow_s, decide_s, committed_at "
                "FROM new.batches")
    for t in ("starts", "thetas", "check_result"):
        con.execute(f"INSERT INTO {t} SELECT * FROM new.{t}")
    con.commit()
    con.execute("DETACH DATABASE new")
    con.execute(f"PRAGMA application_id = {0x4C4E4430}")
    con.execute("PRAGMA user_version = 1")
    con.close()
    os.replace(old, db)


def test_a_schema_version_1_database_is_resumed_with_its_environment_unknown(full, interrupted, tmp_path, capsys,
                                                                             computed):
    from landscape.cli import main

    out = _copy(interrupted, tmp_path)
    _as_schema_version_1(out)
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0, capsys.readouterr().err
    assert [c[0] for c in computed] == [[4, 5, 6, 7], [8, 9, 10, 11]]
    s = json.loads((out / "summary.json").read_text())
    here = {"device": str(l0.resolve_device(_cfg().device)), "torch": torch.__version__,
            "landscape": landscape.__version__}
    assert s["batch_environments"] == [{"device": "unknown", "torch": "unknown", "landscape": "unknown", "batches": [0]},
                                       {**here, "batches": [1, 2]}]
    _assert_same(out, s, full[0], full[1])
    with sqlite3.connect(out / "lambda0.sqlite") as con:   # brought to version 2: the columns added
        assert con.execute("PRAGMA user_version").fetchone()[0] == 2
    assert _environments(out)[0] == (0, None, None, None)
    bad = _copy(interrupted, tmp_path / "b")
    _tamper(bad, "PRAGMA user_version = 3")
    with pytest.raises(Lambda0StoreError, match=r"schema version 3; this version of landscape reads 1 … 2"):
        l0.run_lambda0_study(_cfg(), bad, progress=False)
