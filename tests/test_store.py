"""The SQLite study database: round trips, atomic units, resumability under SIGKILL, clear errors."""
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from landscape.io import store as store_mod
from landscape.core.model import ModelSpec
from landscape.io.store import SCHEMA_VERSION, StoreError, StudyStore


def missing_indices(store, n_total):
    """Indices in range(n_total) not yet stored (what a resumed run still has to do)."""
    return np.setdiff1d(np.arange(int(n_total), dtype=np.int64), store.completed_indices())

REPO = Path(__file__).resolve().parents[1]
SPEC = ModelSpec(K=4, n=2, d=6, L=2, lam=1e-3)
CONFIG = {"model": SPEC.to_dict(), "init": {"name": "gaussian", "scale_H": 1.0}, "engine": {"name": "gd", "lr": 0.5},
          "tolerances": {"grad_tol": 1e-10, "loss_rtol": 1e-7, "sv_rtol": 1e-4}, "seed": 7, "n_trajectories": 100}


def _point(pid, rng, kind="minimum", label="DNC", spectrum=True):
    return {"id": pid, "kind": kind, "label": label, "loss": float(rng.random()), "grad_norm": 1e-11,
            "hessian_index": 0, "fingerprint": {"loss": 0.1 + pid, "z_sv": [1.0, 1.0 / 3.0, 0.0]},
            "params": rng.standard_normal(SPEC.P), "spectrum": rng.standard_normal(7) if spectrum else None,
            "analysis": {"rank_pattern": [3, 3, 3], "dnc1": np.float64(1e-12)}}


def _traj(i, pid=None, reason="converged"):
    return {"idx": i, "seed": 1000 + i, "stop_reason": reason if pid is not None else "max_iter",
            "certified": pid is not None, "iterations": 10 * i, "n_grad": 10 * i + 1, "n_hvp": 0, "wall_time": 0.25,
            "loss": 0.5 if pid is not None else float("nan"), "grad_norm": 1e-11, "engine": {"name": "gd", "lr": 0.5},
            "point_id": pid}


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    p0, p1 = _point(0, rng), _point(1, rng, kind="saddle", label=None, spectrum=False)
    with StudyStore.create(tmp_path / "study", CONFIG, spec=SPEC) as st:
        assert st.path == tmp_path / "study" / "study.sqlite"
        assert st.schema_version == SCHEMA_VERSION
        assert st.next_point_id() == 0
        n = st.commit_unit(0, [_traj(0, 0), _traj(1, 1), _traj(2, 0), _traj(3)], [p0, p1], wall_time=1.5)
        assert n == 4
        st.add_edges([{"saddle_id": 1, "direction": 0, "sign": -1, "target_id": 0, "eigenvalue": -0.25,
                       "eps": 1e-3, "barrier": p1["loss"] - p0["loss"], "stop_reason": "converged"}])
    with StudyStore.open(tmp_path / "study") as st:
        assert st.config == CONFIG
        row = st._con.execute("SELECT K, n, d, L, activation, loss, lambda_convention FROM config").fetchone()
        assert row == (4, 2, 6, 2, "linear", "ce", "equal")
        assert st.next_point_id() == 2
        assert st.committed_units() == [0]
        np.testing.assert_array_equal(st.completed_indices(), [0, 1, 2, 3])
        np.testing.assert_array_equal(missing_indices(st, 6), [4, 5])
        assert st.basin_counts() == {0: 2, 1: 1}
        got = st.point(0)
        assert got.params.dtype == np.float64 and got.params.shape == (SPEC.P,)
        np.testing.assert_array_equal(got.params, p0["params"])  # bit for bit
        np.testing.assert_array_equal(got.spectrum, p0["spectrum"])
        assert got.fingerprint == p0["fingerprint"]
        assert got.analysis == {"rank_pattern": [3, 3, 3], "dnc1": 1e-12}
        assert st.point(1).spectrum is None and st.point(1).label is None
        meta = st.points()
        assert [p.id for p in meta] == [0, 1] and meta[0].params is None
        trajs = st.trajectories()
        assert [t.idx for t in trajs] == [0, 1, 2, 3]
        assert trajs[3].loss is None and trajs[3].certified is False and trajs[3].point_id is None
        assert trajs[0].engine == {"name": "gd", "lr": 0.5} and trajs[0].seed == 1000
        assert st.edges()[0].barrier == p1["loss"] - p0["loss"]
        st.update_point(1, kind="minimum", label="pairs", hessian_index=0, spectrum=np.arange(3.0),
                        analysis={"rank_pattern": [2, 2, 2]})
        p = st.point(1)
        assert (p.kind, p.label, p.hessian_index) == ("minimum", "pairs", 0)
        np.testing.assert_array_equal(p.spectrum, [0.0, 1.0, 2.0])
        with pytest.raises(StoreError, match="no point with id 9"):
            st.update_point(9, label="x")
    with StudyStore.create(tmp_path / "nospec.sqlite", CONFIG) as st:
        assert st._con.execute("SELECT K, lambda_convention FROM config").fetchone() == (None, None)


def _assert_unchanged(st, n_traj, n_points, units):
    assert st.n_trajectories() == n_traj
    assert len(st.points()) == n_points
    assert st.committed_units() == units


def test_failed_unit_writes_nothing(tmp_path):
    rng = np.random.default_rng(1)
    with StudyStore.create(tmp_path / "s.sqlite", CONFIG) as st:
        st.commit_unit(0, [_traj(0, 0), _traj(1)], [_point(0, rng)])
        with pytest.raises(StoreError, match="unit 0 is already committed"):
            st.commit_unit(0, [_traj(5)])
        _assert_unchanged(st, 2, 1, [0])
        # index 1 already stored: the new point and index 2 of the same unit must not appear either
        with pytest.raises(StoreError, match="UNIQUE"):
            st.commit_unit(1, [_traj(2, 1), _traj(1)], [_point(1, rng)])
        _assert_unchanged(st, 2, 1, [0])
        with pytest.raises(StoreError, match="FOREIGN KEY"):
            st.commit_unit(1, [_traj(2, 7)])  # point 7 does not exist
        with pytest.raises(StoreError, match="CHECK"):
            st.commit_unit(1, [{**_traj(2), "certified": True}])  # certified without a point
        with pytest.raises(StoreError, match="kind"):
            st.commit_unit(1, [_traj(2, 1)], [_point(1, rng, kind="maximum")])
        _assert_unchanged(st, 2, 1, [0])
        st.add_edges([{"saddle_id": 0, "direction": 0, "sign": 1}])
        with pytest.raises(StoreError, match="UNIQUE"):
            st.add_edges([{"saddle_id": 0, "direction": 1, "sign": 1}, {"saddle_id": 0, "direction": 0, "sign": 1}])
        assert len(st.edges()) == 1
        with pytest.raises(StoreError, match="CHECK"):
            st.add_edges([{"saddle_id": 0, "direction": 2, "sign": 0}])


def test_open_errors(tmp_path):
    with pytest.raises(StoreError, match="no study database"):
        StudyStore.open(tmp_path / "missing")
    StudyStore.create(tmp_path / "a", CONFIG).close()
    with pytest.raises(StoreError, match="already exists"):
        StudyStore.create(tmp_path / "a", CONFIG)
    with pytest.raises(TypeError, match="not JSON serialisable"):
        StudyStore.create(tmp_path / "b", {**CONFIG, "engine": object()})
    assert list((tmp_path / "b").iterdir()) == []  # a failed create leaves no half-made database

    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(np.random.default_rng(2).bytes(8192))
    with pytest.raises(StoreError, match="not a readable SQLite database"):
        StudyStore.open(garbage)

    foreign = tmp_path / "foreign.sqlite"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not a landscape study database"):
        StudyStore.open(foreign)

    db = tmp_path / "a" / "study.sqlite"
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        StudyStore.open(db)


def test_corrupt_file(tmp_path):
    rng = np.random.default_rng(3)
    with StudyStore.create(tmp_path / "c.sqlite", CONFIG) as st:
        for u in range(4):
            st.commit_unit(u, [_traj(10 * u + i, None) for i in range(10)], [])
        st.commit_unit(4, [_traj(100, 0)], [_point(0, rng)])
    db = tmp_path / "c.sqlite"
    assert not (tmp_path / "c.sqlite-wal").exists()  # checkpointed on close: the main file is the whole db
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) >= 4 * page
    data[2 * page:3 * page] = rng.bytes(page)  # overwrite one interior page
    db.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="corrupt"):
        StudyStore.open(db)


def test_migration_path(tmp_path, monkeypatch):
    with StudyStore.create(tmp_path / "m.sqlite", CONFIG) as st:
        st.commit_unit(0, [_traj(0)])

    def add_note(con):
        con.execute("ALTER TABLE trajectories ADD COLUMN note TEXT")

    def broken(con):
        con.execute("ALTER TABLE trajectories ADD COLUMN other TEXT")
        raise RuntimeError("migration failed half way")

    v = SCHEMA_VERSION
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", v + 1)
    monkeypatch.setitem(store_mod.MIGRATIONS, v, broken)
    with pytest.raises(RuntimeError, match="half way"):
        StudyStore.open(tmp_path / "m.sqlite")
    con = sqlite3.connect(tmp_path / "m.sqlite")
    assert con.execute("PRAGMA user_version").fetchone()[0] == v  # rolled back as a whole
    assert "other" not in [r[1] for r in con.execute("PRAGMA table_info(trajectories)")]
    con.close()

    monkeypatch.setitem(store_mod.MIGRATIONS, v, add_note)
    with StudyStore.open(tmp_path / "m.sqlite") as st:
        assert st.schema_version == v + 1
        assert "note" in [r[1] for r in st._con.execute("PRAGMA table_info(trajectories)")]
        assert st.n_trajectories() == 1 and st.config == CONFIG


# ----- killed writers ----------------------------------------------------------------------------
UNITS, PER_UNIT = 40, 400
#: The writer's points are large (θ of 20000 values, so that kills land inside transactions): a model
#: with that P (the store refuses a θ that does not match its configuration's model).
BIG_CONFIG = {**CONFIG, "model": ModelSpec(K=4, n=24, d=100, L=2).to_dict()}
assert ModelSpec(K=4, n=24, d=100, L=2).P == 20000

WRITER = textwrap.dedent(f"""
    import sys, time
    import numpy as np
    from landscape.io.store import StudyStore
    path, hang_unit = sys.argv[1], int(sys.argv[2])
    st = StudyStore.open(path)
    done = set(st.committed_units())
    print("START", flush=True)
    for u in range({UNITS}):
        if u in done:
            continue
        rng = np.random.default_rng(u)
        pid = st.next_point_id()
        point = {{"id": pid, "kind": "minimum", "label": None, "loss": 0.1 * u, "grad_norm": 1e-12,
                  "fingerprint": {{"loss": 0.1 * u}}, "params": rng.standard_normal(20000)}}

        def rows():
            for k in range({PER_UNIT}):
                if u == hang_unit and k == {PER_UNIT} // 2:
                    print("MID", u, flush=True)
                    time.sleep(600)
                i = u * {PER_UNIT} + k
                yield {{"idx": i, "seed": i, "stop_reason": "converged" if k % 3 else "max_iter",
                        "certified": bool(k % 3), "point_id": pid if k % 3 else None, "loss": 0.1 * u}}

        st.commit_unit(u, rows(), [point])
        print("UNIT", u, flush=True)
""")


def _spawn(db, hang_unit=-1):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(hang_unit)], stdout=subprocess.PIPE,
                            text=True, env=env)


def _check_consistent(db):
    """Whatever the moment of the kill: opens cleanly, every committed unit is whole, nothing else."""
    with StudyStore.open(db) as st:
        units = st.committed_units()
        idx = st.completed_indices()
        expect = np.concatenate([np.arange(u * PER_UNIT, (u + 1) * PER_UNIT) for u in units]) if units else []
        np.testing.assert_array_equal(idx, expect)
        assert len(np.unique(idx)) == len(idx)
        assert [p.id for p in st.points()] == list(range(len(units)))
        assert sum(st.basin_counts().values()) == sum(1 for t in st.trajectories() if t.certified)
        n_unit_rows = [r[0] for r in st._con.execute("SELECT n_trajectories FROM units")]
        assert n_unit_rows == [PER_UNIT] * len(units)
        return units


@pytest.mark.slow   # long: run by .ci/run's second pass
def test_sigkill_mid_transaction_then_resume(tmp_path):
    db = tmp_path / "k" / "study.sqlite"
    StudyStore.create(db, BIG_CONFIG).close()
    # 1. kill while a unit's transaction is open (half its rows inserted): that unit must vanish
    proc = _spawn(db, hang_unit=5)
    lines = []
    assert proc.stdout.readline() == "START\n"
    for line in proc.stdout:
        lines.append(line.split())
        if line.startswith("MID"):
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert lines[-1] == ["MID", "5"] and lines[:-1] == [["UNIT", str(u)] for u in range(5)]
    assert (tmp_path / "k" / "study.sqlite-wal").exists()  # the killed writer left its WAL behind
    assert _check_consistent(db) == [0, 1, 2, 3, 4]
    # 2. kills at seeded random moments, whatever they interrupt
    rng = np.random.default_rng(4)
    for _ in range(3):
        proc = _spawn(db)
        assert proc.stdout.readline() == "START\n"  # imports done, store open
        time.sleep(float(rng.uniform(0.0, 0.1)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        _check_consistent(db)
    # 3. resume to the end: every index exactly once
    proc = _spawn(db)
    proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert _check_consistent(db) == list(range(UNITS))
    with StudyStore.open(db) as st:
        np.testing.assert_array_equal(missing_indices(st, UNITS * PER_UNIT), [])
        assert st.n_trajectories() == UNITS * PER_UNIT
        with pytest.raises(StoreError, match="already committed"):
            st.commit_unit(3, [_traj(9999)])


def test_records_in_and_out_and_misspelt_fields_refused(tmp_path):
    """The store takes records or mappings with the records' field names and returns frozen records;
    a misspelt or missing field is refused before anything is written."""
    import dataclasses

    from landscape.io.records import EdgeRecord, PointRecord, RecordError, TrajectoryRecord, TransitionStateRecord

    rng = np.random.default_rng(1)
    p0 = PointRecord.from_mapping(_point(0, rng))
    p1 = PointRecord.from_mapping(_point(1, rng, kind="saddle", label=None))
    with StudyStore.create(tmp_path / "study", CONFIG, spec=SPEC) as st:
        with pytest.raises(RecordError, match=r"unknown field\(s\) \['lable'\]"):
            st.commit_unit(0, [_traj(0, 0)], [{**_point(0, rng), "lable": "DNC"}])
        with pytest.raises(RecordError, match=r"missing field\(s\) \['stop_reason'\]"):
            st.commit_unit(0, [{k: v for k, v in _traj(0, 0).items() if k != "stop_reason"}], [p0])
        assert st.committed_units() == [] and st.points() == []
        st.commit_unit(0, [TrajectoryRecord.from_mapping(_traj(0, 0)), _traj(1, 1)], [p0, p1])
        st.add_edges([EdgeRecord(saddle_id=1, direction=0, sign=1, target_id=0, barrier=p1.loss - p0.loss)])
        st.add_transition_states([TransitionStateRecord(saddle_id=1, min1_id=0, min2_id=0, barrier1=0.5,
                                                        barrier2=0.25, details={"method": "test"})])
        got = st.point(1)
        assert isinstance(got, PointRecord) and got.kind == "saddle" and got.unit == 0
        np.testing.assert_array_equal(got.params, p1.params)
        with pytest.raises(dataclasses.FrozenInstanceError):
            got.label = "DNC"
        assert dataclasses.replace(got, label="x").label == "x" and st.point(1).label is None
        (ts,) = st.transition_states()
        assert (ts.barrier1, ts.barrier2, ts.details) == (0.5, 0.25, {"method": "test"})
        (e,) = st.edges()
        assert e.to_dict()["barrier"] == p1.loss - p0.loss and e.stop_reason is None
        assert [t.unit for t in st.trajectories()] == [0, 0]
