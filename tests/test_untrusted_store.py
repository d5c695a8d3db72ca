"""A results folder is untrusted input: a tampered study database is one line naming the file, the
table, the row and the column (never a traceback, never a hang), and the store never stalls or
misleads in the places a study lives (a reader holding a transaction, a read-only mount, a full disk).

Every case starts from a copy of the small real study of :mod:`study_fixture` (built once) whose
database is then tampered with plain :mod:`sqlite3`.
"""
import errno
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from landscape.cli import main
from landscape.io import store as store_mod
from landscape.io.records import PointRecord
from landscape.io.store import StoreError, StudyStore
from study_fixture import build_study

P = 144  # the fixture's model: K=4, n=2, d=6, L=3


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_study(tmp_path_factory.mktemp("untrusted") / "study")


@pytest.fixture
def study(built, tmp_path):
    """A fresh copy of the fixture study (folder), for this test to tamper."""
    out = tmp_path / "study"
    shutil.copytree(built, out)
    return out


def tamper(folder: Path, *sql: str) -> Path:
    db = folder / "study.sqlite"
    con = sqlite3.connect(db, isolation_level=None)
    try:
        con.execute("PRAGMA ignore_check_constraints = ON")   # a tamperer is not held to them
        for s in sql:
            con.execute(s)
    finally:
        con.close()
    return db


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str, *needles) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "error:" in lines[0], err
    for n in needles:
        assert n in lines[0], (n, err)
    return lines[0]


def refused(folder: Path, *needles, readonly: bool = True) -> str:
    with pytest.raises(StoreError) as info:
        StudyStore.open(folder, readonly=readonly).close()
    msg = str(info.value)
    assert "\n" not in msg and str(folder / "study.sqlite") in msg, msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


# ----- 1. the schema: real tables with their columns, no views, no triggers ----------------------------
RECURSIVE_POINTS = ("CREATE VIEW points AS WITH RECURSIVE r(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM r) "
                    "SELECT i AS id, 'minimum' AS kind, NULL AS label, 0.0 AS loss, 0.0 AS grad_norm, "
                    "0 AS hessian_index, '{}' AS fingerprint, zeroblob(1152) AS params, '<f8' AS params_dtype, "
                    "'[144]' AS params_shape, NULL AS spectrum, NULL AS spectrum_dtype, NULL AS spectrum_shape, "
                    "NULL AS analysis, 0 AS unit, NULL AS unstable, NULL AS unstable_shape, NULL AS unstable_values "
                    "FROM r ORDER BY random()")


def _refuse_the_recursive_view(study, capsys) -> float:
    """Every way of opening a study whose points table is a recursive view refuses it (by the
    schema, before any query of it); returns the seconds all of them took."""
    db = tamper(study, "DROP TABLE points", RECURSIVE_POINTS)
    assert sqlite3.connect(db).execute("PRAGMA quick_check").fetchone() == ("ok",)  # passes SQLite's own check
    t = time.perf_counter()
    refused(study, "view 'points'", "altered")
    refused(study, "view 'points'", readonly=False)     # `run --resume` too
    for cmd in (["inspect", study], ["export", study, "--format", "json"], ["run", "--resume", study, "--no-progress"]):
        code, _, err = run_cli(capsys, *cmd)
        assert code == 2
        one_line_error(err, "study.sqlite", "view 'points'")
    return time.perf_counter() - t


def test_a_recursive_view_in_place_of_points_is_refused_at_once(study, capsys):
    _refuse_the_recursive_view(study, capsys)


@pytest.mark.slow   # a wall-clock bound: the slow pass only (a busy machine is not a bug)
def test_the_recursive_view_is_refused_in_seconds(study, capsys):
    assert _refuse_the_recursive_view(study, capsys) < 30


@pytest.mark.parametrize("sql, needles", [
    (["CREATE TRIGGER t AFTER INSERT ON units BEGIN DELETE FROM trajectories; END"], ("trigger 't'", "table 'units'")),
    (["CREATE VIEW extra AS SELECT 1"], ("view 'extra'",)),
    (["DROP TABLE edges"], ("table 'edges' is missing",)),
    (["ALTER TABLE points RENAME TO old_points", "CREATE TABLE points (id INTEGER PRIMARY KEY, loss TEXT)"],
     ("table 'points'", "kind is missing", "loss is declared TEXT, not REAL")),
    (["ALTER TABLE trajectories ADD COLUMN g REAL GENERATED ALWAYS AS (loss * 2) VIRTUAL"],
     ("table 'trajectories'", "generated")),
    (["ALTER TABLE units ADD COLUMN extra TEXT"], ("table 'units'", "extra is unexpected")),
])
def test_tables_that_are_not_the_schema_are_refused(study, sql, needles):
    tamper(study, *sql)
    refused(study, *needles)


def test_a_runaway_query_is_stopped_by_the_read_budget(study, monkeypatch):
    """The progress handler of a read-only store ends any query long past what a study of the
    file's size needs (a budget shrunk here so that the test is quick)."""
    monkeypatch.setattr(store_mod, "_QUERY_MIN_STEPS", 10**7)
    monkeypatch.setattr(store_mod, "_QUERY_STEPS_PER_BYTE", 1)
    with StudyStore.open(study, readonly=True) as st:
        assert len(st.points()) == 5     # the real queries stay far below it
        # the budget counts SQLite's steps, not seconds: the endless query is stopped, on any machine
        with pytest.raises(StoreError, match="ran past .* SQLite steps"):
            st._rows("WITH RECURSIVE r(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM r) SELECT max(i) FROM r")
        assert st.n_trajectories() == 32   # the next query has its own budget


# ----- 2. values: θ of the model's P float64, numbers where numbers belong, JSON that parses ------------
@pytest.mark.parametrize("sql, needles", [
    ("UPDATE points SET params = substr(params, 1, length(params) - 8) WHERE id = 3",
     ("point 3", "column params", "1144 bytes", "P=144")),
    ("UPDATE points SET params = zeroblob(1160) WHERE id = 2", ("point 2", "1160 bytes", "P=144")),
    ("UPDATE points SET params = 'abc' WHERE id = 1", ("point 1", "column params", "text")),
    ("UPDATE points SET params_dtype = '<f4' WHERE id = 0", ("point 0", "params_dtype", "'<f4'")),
    ("UPDATE points SET params_shape = '[12, 12]' WHERE id = 4", ("point 4", "params_shape")),
    ("UPDATE config SET json = '{not json'", ("table config", "column json", "not valid JSON")),
    ("UPDATE config SET json = '[1, 2]'", ("table config", "column json", "not a JSON object")),
    ("UPDATE config SET json = json_set(json, '$.model.K', 'four')", ("column json", "model.K=text 'four'")),
])
def test_a_bad_theta_or_config_is_refused_when_opened(study, capsys, sql, needles):
    tamper(study, sql)
    refused(study, *needles)
    code, _, err = run_cli(capsys, "export", study, "--format", "pathsample", "-o", study.parent / "ps")
    assert code == 2
    one_line_error(err, *needles)
    assert not (study.parent / "ps" / "points.min").exists()   # nothing misaligned was written


@pytest.mark.parametrize("sql, read, needles", [
    ("UPDATE points SET loss = 'abc' WHERE id = 1", "points", ("table points, point 1, column loss", "text 'abc'")),
    ("UPDATE points SET grad_norm = x'00' WHERE id = 2", "points", ("point 2, column grad_norm", "blob")),
    ("UPDATE points SET kind = 'maximum' WHERE id = 0", "points", ("point 0, column kind", "'maximum'")),
    ("UPDATE points SET fingerprint = 'nope' WHERE id = 4", "points", ("point 4, column fingerprint", "JSON")),
    ("UPDATE points SET analysis = '[1]' WHERE id = 3", "points", ("point 3, column analysis", "not a JSON object")),
    ("UPDATE points SET spectrum = substr(spectrum, 9) WHERE id = 0", "point0",
     ("point 0, column spectrum", "bytes", "spectrum_shape")),
    ("UPDATE points SET spectrum_dtype = 'O' WHERE id = 1", "point1", ("point 1, column spectrum_dtype", "'O'")),
    ("UPDATE trajectories SET loss = 'x' WHERE idx = 7", "trajectories", ("trajectory 7, column loss", "text 'x'")),
    ("UPDATE trajectories SET certified = 2 WHERE idx = 30", "trajectories", ("trajectory 30, column certified",)),
    ("UPDATE trajectories SET engine = '{' WHERE idx = 3", "trajectories", ("trajectory 3, column engine", "JSON")),
    ("UPDATE edges SET barrier = 'high' WHERE saddle_id = 3 AND sign = 1", "edges",
     ("table edges, saddle 3", "column barrier")),
])
def test_a_bad_value_is_one_line_naming_row_and_column(study, capsys, sql, read, needles):
    tamper(study, sql)
    with StudyStore.open(study, readonly=True) as st:
        with pytest.raises(StoreError) as info:
            {"points": lambda: st.points(with_params=True), "point0": lambda: st.point(0),
             "point1": lambda: st.point(1), "trajectories": st.trajectories, "edges": st.edges}[read]()
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(study / "study.sqlite")), msg
    for n in needles:
        assert n in msg, (n, msg)
    if read in ("points", "trajectories", "edges"):   # what `inspect` reads: one line, no traceback
        code, _, err = run_cli(capsys, "inspect", study)
        assert code == 2
        one_line_error(err, *needles)


def test_pathsample_export_refuses_a_theta_of_another_length(tmp_path):
    """Even from a store that let it through, a θ that is not (P,) float64 never reaches points.min."""
    from landscape.core.model import ModelSpec
    from landscape.io.pathsample import export_pathsample

    spec = ModelSpec(K=4, n=2, d=6, L=3)
    good = PointRecord(id=0, kind="minimum", loss=0.1, grad_norm=0.0, fingerprint={}, params=np.zeros(spec.P))
    bad = PointRecord(id=1, kind="minimum", loss=0.2, grad_norm=0.0, fingerprint={}, params=np.zeros(spec.P - 1))
    store = SimpleNamespace(path=tmp_path / "study.sqlite", points=lambda with_params: [good, bad],
                            transition_states=lambda: [])
    with pytest.raises(StoreError, match=r"point 1, column params: θ of shape \(143,\).*P=144"):
        export_pathsample(store, spec, tmp_path / "ps")
    assert not (tmp_path / "ps").exists()


# ----- 3. the configuration must match its θ: open (and so `run --resume`) refuses ------------------------
@pytest.mark.parametrize("sql, needles", [
    (["UPDATE config SET json = json_set(json, '$.model.d', 7), d = 7"],
     ("point 0, column params", "1152 bytes", "K=4, n=2, d=7, L=3", "P=182", "does not match")),
    (["UPDATE config SET K = 5"], ("model columns K, n, d, L = (5, 2, 6, 3)", "disagree", "K=4, n=2, d=6, L=3")),
    (["UPDATE config SET json = json_set(json, '$.model.L', 2)"], ("disagree",)),
])
def test_resume_refuses_a_config_that_does_not_match_its_theta(study, capsys, sql, needles):
    db = tamper(study, *sql)
    before = db.read_bytes()
    refused(study, *needles, readonly=False)
    code, _, err = run_cli(capsys, "run", "--resume", study, "--no-progress")
    assert code == 2
    one_line_error(err, "study.sqlite", *needles)
    assert db.read_bytes() == before


def test_a_store_refuses_to_write_a_theta_of_another_length(tmp_path):
    from landscape.core.model import ModelSpec

    spec = ModelSpec(K=4, n=2, d=6, L=2)
    with StudyStore.create(tmp_path / "s", {"model": spec.to_dict()}, spec) as st:
        assert st.P == spec.P
        p = {"id": 0, "kind": "minimum", "loss": 0.1, "grad_norm": 0.0, "fingerprint": {},
             "params": np.zeros(spec.P + 1)}
        t = {"idx": 0, "seed": 0, "stop_reason": "converged", "certified": True, "point_id": 0}
        with pytest.raises(StoreError, match=f"θ has {spec.P + 1} values, but the study's model has P={spec.P}"):
            st.commit_unit(0, [t], [p])
        assert st.committed_units() == [] and st.points() == []


# ----- 4. a reader holding a read transaction never stalls a commit --------------------------------------
def test_a_reader_holding_a_transaction_does_not_stall_commits(study):
    reader = sqlite3.connect(study / "study.sqlite", isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT COUNT(*) FROM trajectories").fetchone() == (32,)
        with StudyStore.open(study) as st:
            # no waiting allowed: a commit (or its checkpoint) that had to wait for the reader's lock
            # fails at once with "database is locked" instead of waiting out the busy timeout
            st._con.execute("PRAGMA busy_timeout = 0")
            for u in (1, 2):
                st.commit_unit(u, [{"idx": 100 + u, "seed": u, "stop_reason": "max_iter", "certified": False}])
            st.set_meta("note", "written while a reader held a transaction")
            assert reader.execute("SELECT COUNT(*) FROM trajectories").fetchone() == (32,)   # its snapshot
            reader.execute("COMMIT")
            st.commit_unit(3, [{"idx": 103, "seed": 3, "stop_reason": "max_iter", "certified": False}])
        # the reader gone, the main file alone holds every committed unit again
        alone = study.parent / "alone.sqlite"
        shutil.copyfile(study / "study.sqlite", alone)
        with StudyStore.open(alone, readonly=True) as st:
            assert st.committed_units()[-3:] == [1, 2, 3] and st.n_trajectories() == 35
    finally:
        reader.close()


@pytest.mark.slow   # a wall-clock bound: the slow pass only (a busy machine is not a bug)
def test_commits_beside_a_reader_take_far_less_than_the_busy_timeout(study):
    """With the store's own busy timeout (60 s), nothing a commit does — its checkpoint included,
    whose errors are ignored and so invisible to the test above — waits for a reader."""
    reader = sqlite3.connect(study / "study.sqlite", isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM trajectories").fetchone()
        with StudyStore.open(study) as st:
            for u in (1, 2):
                t = time.perf_counter()
                st.commit_unit(u, [{"idx": 100 + u, "seed": u, "stop_reason": "max_iter", "certified": False}])
                assert time.perf_counter() - t < 20, "the commit waited for the reader"
        reader.execute("COMMIT")
    finally:
        reader.close()


# ----- 5. messages: read-only places, temporary files, a full disk ------------------------------------------
def test_a_read_only_study_is_read_in_place_and_a_write_says_read_only(study, tmp_path, capsys):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = (os.geteuid() == 0 and shutil.which("mount")
               and subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mnt)], capture_output=True).returncode == 0)
    try:
        if mounted:
            shutil.copytree(study, mnt, dirs_exist_ok=True)
            subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
            folder = mnt
        elif os.geteuid() != 0:
            folder = tmp_path / "ro"
            shutil.copytree(study, folder)
            for f in folder.iterdir():
                f.chmod(0o444)
            folder.chmod(0o555)
        else:
            pytest.skip("cannot mount a tmpfs here and root ignores file modes")
        with StudyStore.open(folder, readonly=True) as st:   # reading works
            assert st.n_trajectories() == 32
        msg = refused(folder, "read-only", "copy the study folder somewhere writable",
                      "inspect and export read it where it is", readonly=False)
        assert "not a readable SQLite database" not in msg
        code, _, err = run_cli(capsys, "run", "--resume", folder, "--no-progress")
        assert code == 2
        one_line_error(err, "read-only")
        assert run_cli(capsys, "inspect", folder)[0] == 0
    finally:
        if mounted and subprocess.run(["umount", str(mnt)]).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)])   # never leave a mount behind, even after a failure
        elif (tmp_path / "ro").exists():
            (tmp_path / "ro").chmod(0o755)


@pytest.mark.parametrize("fmt, target", [("csv", "out.csv"), ("pathsample", "ps")])
def test_an_export_that_cannot_be_written_names_the_file_not_its_temporary(study, tmp_path, capsys, monkeypatch,
                                                                           fmt, target):
    import landscape.io.results as res

    def full(prefix, dir):
        raise OSError(errno.ENOSPC, "No space left on device", os.path.join(dir, prefix + "k3x9q"))

    monkeypatch.setattr(res.tempfile, "mkstemp", full)
    out = tmp_path / target
    code, _, err = run_cli(capsys, "export", study, "--format", fmt, "-o", out)
    assert code == 2
    line = one_line_error(err, "No space left on device", "the disk is full", "study is unchanged")
    assert ".tmp-" not in line and str(out / "min.data" if fmt == "pathsample" else out) in line


def test_a_full_disk_at_commit_names_the_database_and_keeps_the_finished_units(tmp_path):
    from landscape.core.model import ModelSpec

    spec = ModelSpec(K=4, n=2, d=6, L=2)
    row = lambda i: {"idx": i, "seed": i, "stop_reason": "max_iter", "certified": False}  # noqa: E731
    with StudyStore.create(tmp_path / "s", {"model": spec.to_dict()}, spec) as st:
        st.commit_unit(0, [row(0)])
        pages = st._con.execute("PRAGMA page_count").fetchone()[0]
        st._con.execute(f"PRAGMA max_page_count = {pages}")   # the disk is full from here
        with pytest.raises(StoreError) as info:
            st.commit_unit(1, [row(i) for i in range(1, 3000)])
        msg = str(info.value)
        assert "\n" not in msg
        for n in (str(tmp_path / "s" / "study.sqlite"), "disk is full", "unit 1 was not stored",
                  "everything committed before is kept", f"landscape run --resume {tmp_path / 's'}"):
            assert n in msg, (n, msg)
        assert st.committed_units() == [0] and st.n_trajectories() == 1

        def no_space():
            yield row(5)
            raise OSError(errno.ENOSPC, "No space left on device")

        with pytest.raises(StoreError, match="disk is full .*unit 2 was not stored"):
            st.commit_unit(2, no_space())
        st._con.execute("PRAGMA max_page_count = 1000000")   # space again: the run goes on
        assert st.commit_unit(1, [row(1)]) == 1 and st.committed_units() == [0, 1]
    with pytest.raises(StoreError, match="disk is full .*meta 'k' was not stored; everything committed before"):
        with StudyStore.open(tmp_path / "s") as st:
            st._con.execute(f"PRAGMA max_page_count = {st._con.execute('PRAGMA page_count').fetchone()[0]}")
            st.set_meta("k", "x" * 100000)


def test_a_store_without_a_model_takes_P_from_its_first_theta_and_says_how_to_resume(tmp_path):
    from landscape.core.model import ModelSpec

    def point(i, size):
        return {"id": i, "kind": "minimum", "loss": 0.1, "grad_norm": 0.0, "fingerprint": {}, "params": np.zeros(size)}

    with StudyStore.create(tmp_path / "free", {"name": "no model"}) as st:
        assert st.P is None
        st.commit_unit(0, [], [point(0, 10)])
        assert st.P == 10
        with pytest.raises(StoreError, match="θ has 11 values, but the study's model has P=10"):
            st.commit_unit(1, [], [point(1, 11)])
        assert st.resume_command() == f"`landscape run --resume {tmp_path / 'free'}`"
    with StudyStore.open(tmp_path / "free", readonly=True) as st:
        assert st.P == 10 and [p.params.shape for p in st.points(with_params=True)] == [(10,)]
    spec = ModelSpec(K=4, n=2, d=6, L=2)
    with StudyStore.create(tmp_path / "net", {"net": {}, "ufm_spec": spec.to_dict()}) as st:
        assert st.P == spec.P and "landscape net --resume" in st.resume_command()
    with StudyStore.create(tmp_path / "sw" / "cells" / "d=6", {"model": spec.to_dict()}, spec) as st:
        assert "the same `landscape sweep` command again" in st.resume_command()
