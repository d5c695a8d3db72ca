"""A λ = 0 study is resumable, and a finished λ = 0 folder reads back (issue 36 §3).

* Interrupted after a batch (an exception from the progress callback, as Ctrl-C would), the
  folder keeps every committed batch in lambda0.sqlite; the same call (or ``landscape run
  --resume DIR``, or the sweep run again) computes only the batches it lacks, and the records,
  summary, directions and their θ̂ equal those of a run never interrupted (everything but wall
  times). A finished folder resumed computes nothing; the hand-off check is committed too.
* A tampered folder is refused with a message naming the file, table and row: a record of the
  wrong type, a θ̂ of the wrong length, a table added, a configuration that differs.
* ``landscape.load_results`` on a finished λ = 0 folder: the directions' γ recomputed here with
  numpy from θ̂ (MODEL.md §1's layout: logits Z = W_L ⋯ W₁H₁, min over samples i and classes
  c ≠ y_i of z_{y_i} − z_c, over ‖θ‖^{L+1}) equal the stored γ; tampered files are refused.
"""
from __future__ import annotations

import io
import json
import shutil
import sqlite3
import zipfile

import numpy as np
import pytest

import landscape
from landscape.io.lambda0_store import Lambda0StoreError
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
    for k in ("wall_time_s", "timings", "environment"):
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
    with pytest.raises(ValueError, match=r"directions\[0\].*'count' must be int"):
        landscape.load_results(out)
