"""The results folder as a safe place: nothing lost, nothing overwritten, no traceback.

Every case of a hostile or careless use: the file contents are checked before and after, and every
bad input ends with exit status 2 and one line naming the input (no traceback).
"""
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from landscape.cli import main
from landscape.io.store import StudyStore

ROOT = Path(__file__).resolve().parents[1]
TINY = ["K=3", "n=2", "d=4", "L=2", "trajectories=4", "batch_size=2", "name=tiny", "engine=lbfgs",
        "stages.0.max_iter=3000", "stages.0.tol=1e-6", "saddles.starts=0"]


def sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str, *needles) -> None:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "error:" in lines[0], err
    for n in needles:
        assert n in lines[0], (n, err)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("safety") / "study"
    assert main(["run", "--out", str(out), "--no-progress", *sets(TINY)]) == 0
    return out


def snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


# ----- 1. data loss ------------------------------------------------------------------------------
def test_export_never_writes_over_the_study(study, capsys):
    before = snapshot(study)
    for name in ("study.sqlite", "summary.json", "config.json", "report.html"):
        code, _, err = run_cli(capsys, "export", study, "--format", "csv", "-o", study / name, "--force")
        assert code == 2
        one_line_error(err, name, "never write over it")
    assert snapshot(study) == before


def test_export_overwrites_another_file_only_with_force(study, tmp_path, capsys):
    mine = tmp_path / "notes.csv"
    mine.write_text("my notes\n")
    code, _, err = run_cli(capsys, "export", study, "--format", "csv", "-o", mine)
    assert code == 2 and mine.read_text() == "my notes\n"
    one_line_error(err, str(mine), "--force")
    code, _, err = run_cli(capsys, "export", study, "--format", "csv", "-o", mine, "--force")
    assert code == 0, err
    assert mine.read_text().startswith("id,kind,label")
    code, _, err = run_cli(capsys, "export", study, "--format", "csv", "-o", tmp_path)
    assert code == 2
    one_line_error(err, "is a directory")
    code, _, err = run_cli(capsys, "export", study, "--format", "csv", "-o", tmp_path / "missing" / "x.csv")
    assert code == 2
    one_line_error(err, "does not exist")


def test_run_refuses_a_folder_of_someone_elses_files(tmp_path, capsys):
    d = tmp_path / "mine"
    d.mkdir()
    files = {"config.json": "{\"mine\": 1}", "summary.json": "keep", "report.html": "<p>mine</p>", "notes.txt": "n"}
    for k, v in files.items():
        (d / k).write_text(v)
    code, _, err = run_cli(capsys, "run", "--out", d, "--no-progress", *sets(TINY))
    assert code == 2
    one_line_error(err, str(d), "not empty", "config.json", "--force")
    assert {k: (d / k).read_text() for k in files} == files and not (d / "study.sqlite").exists()
    code, _, err = run_cli(capsys, "run", "--out", d, "--no-progress", "--force", *sets(TINY))
    assert code == 0, err
    assert (d / "notes.txt").read_text() == "n"


def test_planted_symlinks_are_replaced_never_followed(study, tmp_path, capsys):
    folder = tmp_path / "received"
    shutil.copytree(study, folder)
    outside = tmp_path / "outside"
    outside.mkdir()
    targets = {}
    for name in ("report.html.tmp", "report.html", "spectra.npz", "graph.graphml", "tree.json", "summary.json.tmp"):
        t = outside / f"victim-{name}"
        t.write_text("precious")
        targets[name] = t
        (folder / name).unlink(missing_ok=True)
        (folder / name).symlink_to(t)
    assert run_cli(capsys, "run", "--resume", folder, "--no-progress")[0] == 0   # rewrites the derived files
    assert run_cli(capsys, "report", folder)[0] == 0
    for name, t in targets.items():
        assert t.read_text() == "precious", name
    for name in ("spectra.npz", "graph.graphml", "tree.json", "report.html"):
        assert not (folder / name).is_symlink() and (folder / name).stat().st_size > 0


def test_a_symlinked_database_is_not_written_through(study, tmp_path, capsys):
    folder = tmp_path / "linked"
    folder.mkdir()
    real = tmp_path / "real.sqlite"
    shutil.copy(study / "study.sqlite", real)
    (folder / "study.sqlite").symlink_to(real)
    before = real.read_bytes()
    code, _, err = run_cli(capsys, "run", "--resume", folder, "--no-progress")
    assert code == 2
    one_line_error(err, "symbolic link")
    assert real.read_bytes() == before


WRITER = textwrap.dedent("""
    import sys
    from landscape.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.slow   # long: run by .ci/run's second pass
def test_the_database_copied_alone_holds_every_committed_unit(tmp_path):
    """A run killed after some units committed: study.sqlite copied without its -wal and -shm
    holds every committed unit (each commit is checkpointed into the main file)."""
    out = tmp_path / "running"
    args = ["run", "--out", str(out), "--no-progress",
            *sets(["K=3", "n=2", "d=4", "L=2", "trajectories=40", "batch_size=4", "engine=gd", "lr=0.5",
                   "stages.0.max_iter=20000", "stages.0.tol=1e-7", "saddles.starts=0"])]
    proc = subprocess.Popen([sys.executable, "-c", WRITER, *args], stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    db = out / "study.sqlite"
    seen = 0
    try:
        deadline = time.time() + 120
        while time.time() < deadline and seen < 2:
            time.sleep(0.1)
            seen = _units_in(db) if db.is_file() else 0
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert seen >= 2, "no unit was committed in time"
    alone = tmp_path / "alone" / "study.sqlite"
    alone.parent.mkdir()
    shutil.copyfile(db, alone)   # the main file only
    with StudyStore.open(alone, readonly=True) as st:
        units = st.committed_units()
        assert len(units) >= seen and st.n_trajectories() == 4 * len(units)


def _units_in(db: Path) -> int:
    try:
        with StudyStore.open(db, readonly=True, check=False) as st:
            return len(st.committed_units())
    except Exception:  # noqa: BLE001  (not created yet)
        return 0


def test_an_empty_database_is_recreated_and_explained(tmp_path, capsys):
    d = tmp_path / "killed-early"
    d.mkdir()
    (d / "study.sqlite").write_bytes(b"")
    code, _, err = run_cli(capsys, "run", "--resume", d, "--no-progress")
    assert code == 2
    one_line_error(err, "empty study database", "delete it")
    assert (d / "study.sqlite").stat().st_size == 0      # inspect/resume never wrote into it
    code, _, err = run_cli(capsys, "inspect", d)
    assert code == 2 and (d / "study.sqlite").stat().st_size == 0
    code, _, err = run_cli(capsys, "run", "--out", d, "--no-progress", *sets(TINY))
    assert code == 0, err
    with StudyStore.open(d, readonly=True) as st:
        assert st.n_trajectories() == 4


# ----- 2. settings that silently give wrong numbers ---------------------------------------------------
@pytest.mark.parametrize("override, needles", [
    ("certify_tol=1", ("certify_tol=1 is invalid", "[2.2e-14, 1e-08]")),
    ("certify_tol=1e-16", ("certify_tol=1e-16 is invalid",)),
    ("dtype=\"float32\"", ("float32", "cannot certify", "float64")),
])
def test_certification_tolerance_outside_the_separable_range_is_refused(override, needles, tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", "--out", tmp_path / "x", "--no-progress", *sets(TINY + [override]))
    assert code == 2
    one_line_error(err, *needles)


# ----- 3. read-only places ----------------------------------------------------------------------------
def test_readers_never_write(study, tmp_path, capsys):
    """inspect, export and report-reading open the database read-only: a checkpointed study gets
    no journal files and no byte changes."""
    folder = tmp_path / "ro"
    shutil.copytree(study, folder)
    for f in folder.glob("study.sqlite-*"):
        f.unlink()
    before = (folder / "study.sqlite").read_bytes()
    assert run_cli(capsys, "inspect", folder)[0] == 0
    assert run_cli(capsys, "inspect", folder, "0")[0] == 0
    assert run_cli(capsys, "export", folder, "--format", "json")[0] == 0
    assert (folder / "study.sqlite").read_bytes() == before


def _readonly_mount(path: Path) -> bool:
    """Mount a read-only tmpfs copy at ``path`` (root only); False where not permitted."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir()
    ok = subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(path)], capture_output=True).returncode == 0
    return ok


def test_a_study_on_a_read_only_mount_can_be_read(study, tmp_path, capsys):
    mnt = tmp_path / "mnt"
    if not _readonly_mount(mnt):
        if os.geteuid() == 0:
            pytest.skip("cannot mount a tmpfs here (no privilege in this sandbox)")
        folder = tmp_path / "ro"
        shutil.copytree(study, folder)
        for f in folder.iterdir():
            f.chmod(0o444)
        folder.chmod(0o555)
        mnt = folder
    try:
        if mnt.name == "mnt":
            shutil.copytree(study, mnt, dirs_exist_ok=True)
            subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        code, out, err = run_cli(capsys, "inspect", mnt)
        assert code == 0, err
        assert "study 'tiny'" in out
        code, out, err = run_cli(capsys, "export", mnt, "--format", "csv")
        assert code == 0, err
        code, _, err = run_cli(capsys, "report", mnt)   # reads fine; cannot write report.html there
        assert code == 2
        one_line_error(err)
    finally:
        if mnt.name == "mnt":
            subprocess.run(["umount", str(mnt)])
        else:
            mnt.chmod(0o755)


# ----- 4. tracebacks → messages -----------------------------------------------------------------------
def _file(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


BAD_RUNS = [
    (["--set", "init.scales=[\"a\"]"], ("init.scales[0]='a' is invalid",)),
    (["--set", "init.scales=3"], ("init.scales=3 is invalid", "list")),
    (["--set", "saddles.init=3"], ("saddles.init=3 is invalid", "table")),
    (["--set", "name=" + "x" * 300], ("name=", "at most 200 characters")),
    ("model = 3\n", ("model=3 is invalid", "table")),
    ("[stages]\nengine = \"gd\"\n", ("stages is invalid", "[[stages]]")),
    ("init = \"gaussian\"\n", ("init='gaussian' is invalid", "table")),
    ("name = \"a\\u0000b\"\n", ("name=", "NUL")),
    (b"name = \"caf\xe9\"\n", ("not UTF-8",)),
    ("[model]\nd = 12\nwidth = 3\n", ("[model] has unknown field(s) ['width']",)),
]


@pytest.mark.parametrize("bad, needles", BAD_RUNS, ids=[f"run-{i}" for i in range(len(BAD_RUNS))])
def test_bad_study_inputs_exit_2_with_one_line(bad, needles, tmp_path, capsys):
    if isinstance(bad, list):
        argv = ["run", "--out", tmp_path / "x", "--no-progress", *bad]
    else:
        argv = ["run", "--config", _file(tmp_path, "bad.toml", bad), "--out", tmp_path / "x", "--no-progress"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    one_line_error(err, *needles)
    assert not (tmp_path / "x" / "study.sqlite").exists()


@pytest.mark.parametrize("cmd", ["run", "theory", "sweep"])
def test_a_directory_as_config(cmd, tmp_path, capsys):
    argv = {"run": ["run", "--config", tmp_path, "--out", tmp_path / "x"], "theory": ["theory", "--config", tmp_path],
            "sweep": ["sweep", tmp_path, "--out", tmp_path / "x"]}[cmd]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    one_line_error(err, "is a directory")


def test_out_is_a_file_or_unwritable(tmp_path, capsys):
    f = _file(tmp_path, "afile", "x")
    code, _, err = run_cli(capsys, "run", "--out", f, "--no-progress", *sets(TINY))
    assert code == 2
    one_line_error(err, "is a file")
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        code, _, err = run_cli(capsys, "run", "--out", ro / "x", "--no-progress", *sets(TINY))
        assert code == 2
        one_line_error(err, "not writable")


def test_report_names_a_damaged_file(study, tmp_path, capsys):
    folder = tmp_path / "damaged"
    shutil.copytree(study, folder)
    (folder / "spectra.npz").write_bytes((folder / "spectra.npz").read_bytes()[:100])
    code, _, err = run_cli(capsys, "report", folder)
    assert code == 2
    one_line_error(err, "spectra.npz", "not a readable spectra file")
    (folder / "summary.json").write_text("{ not json")
    code, _, err = run_cli(capsys, "report", folder)
    assert code == 2
    one_line_error(err, "summary.json", "not valid JSON")


def test_a_second_writer_is_told_who_is_writing(study, tmp_path, capsys):
    folder = tmp_path / "busy"
    shutil.copytree(study, folder)
    with StudyStore.open(folder):   # a writer holds the study
        code, _, err = run_cli(capsys, "run", "--resume", folder, "--no-progress")
    assert code == 2
    one_line_error(err, "another process is writing this study")


def test_theory_with_a_huge_class_count_is_bounded(capsys):
    """Refused by counting the block patterns (the count is in the message), not by enumerating
    them; how long that takes is checked in the slow pass (test_refusals_by_estimate_take_seconds)."""
    code, _, err = run_cli(capsys, "theory", "--K", "100", "--n", "1", "--L", "2")
    assert code == 2
    one_line_error(err, "K=100", "190,569,292 block patterns")


def test_theory_without_arguments_is_the_default_study(capsys):
    code, out, err = run_cli(capsys, "theory")
    assert code == 0, err
    assert "K=4 n=2 d=8 L=3" in out and "DNC" in out and "pairs" in out


@pytest.mark.slow   # long: run by .ci/run's second pass
def test_ctrl_c_during_a_sweep_says_how_to_resume(tmp_path):
    sweep = _file(tmp_path, "s.toml", textwrap.dedent("""
        name = "s"
        trajectories = 40
        batch_size = 4
        [model]
        K = 3
        n = 2
        L = 2
        [[stages]]
        engine = "gd"
        lr = 0.5
        max_iter = 20000
        tol = 1e-7
        [saddles]
        starts = 0
        [sweep]
        d = [4, 5]
    """))
    out = tmp_path / "sw"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, "sweep", str(sweep), "--out", str(out), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.time() + 120
    while time.time() < deadline and not _units_in(out / "cells" / "d=4" / "study.sqlite"):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "re-run the same command to resume" in err and "Traceback" not in err
    with sqlite3.connect(out / "cells" / "d=4" / "study.sqlite") as con:
        assert con.execute("SELECT COUNT(*) FROM units").fetchone()[0] >= 1


# ----- round two (issue 22): sub-folders, other studies, links, special files -----------------------
def _copy(study, tmp_path, name="copy"):
    dst = tmp_path / name
    shutil.copytree(study, dst)
    return dst


def tree_snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_export_never_writes_into_a_study_sub_folder(study, tmp_path, capsys):
    d = _copy(study, tmp_path)
    (d / "spectra").mkdir(exist_ok=True)
    (d / "spectra" / "point-0.json").write_text('{"mine": 1}')
    before = tree_snapshot(d)
    code, _, err = run_cli(capsys, "export", d, "--format", "csv", "-o", d / "spectra" / "point-0.json", "--force")
    assert code == 2
    one_line_error(err, "point-0.json", "never write over it")
    code, _, err = run_cli(capsys, "export", d, "--format", "pathsample", "-o", d / "spectra", "--force")
    assert code == 2
    one_line_error(err, "spectra")
    code, _, err = run_cli(capsys, "export", d, "--format", "csv", "-o", d / "spectra" / "new.csv")
    assert code == 2
    assert tree_snapshot(d) == before


def test_force_never_replaces_another_studys_database(study, tmp_path, capsys):
    other = _copy(study, tmp_path, "other")
    before = (other / "study.sqlite").read_bytes()
    code, _, err = run_cli(capsys, "export", study, "--format", "csv", "-o", other / "study.sqlite", "--force")
    assert code == 2 and (other / "study.sqlite").read_bytes() == before
    one_line_error(err, "study.sqlite")
    loose = tmp_path / "loose.sqlite"    # a database outside any results folder is refused too
    shutil.copy(other / "study.sqlite", loose)
    code, _, err = run_cli(capsys, "export", study, "--format", "csv", "-o", loose, "--force")
    assert code == 2 and loose.read_bytes() == before
    one_line_error(err, "database")


def test_a_fifo_is_no_export_target(study, tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    code, _, err = run_cli(capsys, "export", study, "--format", "csv", "-o", fifo, "--force")
    assert code == 2 and fifo.is_fifo()
    one_line_error(err, "FIFO")


def test_a_planted_spectra_link_is_never_written_through(study, tmp_path, capsys):
    d = _copy(study, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(d / "spectra", ignore_errors=True)
    (d / "spectra").symlink_to(elsewhere, target_is_directory=True)
    code, _, err = run_cli(capsys, "spectrum", d, "0")
    assert code == 2 and list(elsewhere.iterdir()) == []
    one_line_error(err, "symbolic link")


def test_a_planted_cells_link_is_never_written_through(tmp_path, capsys):
    out = tmp_path / "sw"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "cells").symlink_to(elsewhere, target_is_directory=True)
    code, _, err = run_cli(capsys, "sweep", "--preset", "paper-width", "--out", out, "--no-progress",
                           *sets([o for o in TINY if not o.startswith("d=")]), "--set", "sweep.d=[4]", "--force")
    assert code == 2 and list(elsewhere.iterdir()) == []
    one_line_error(err, "symbolic link")


def test_sweep_and_study_folders_are_not_interchangeable(study, tmp_path, capsys):
    d = _copy(study, tmp_path)
    before = tree_snapshot(d)
    code, _, err = run_cli(capsys, "sweep", "--preset", "paper-width", "--out", d, "--no-progress",
                           *sets([o for o in TINY if not o.startswith("d=")]), "--set", "sweep.d=[4]")
    assert code == 2 and tree_snapshot(d) == before
    one_line_error(err, "study folder")
    sw = tmp_path / "sw"
    sw.mkdir()
    (sw / "sweep.json").write_text("{}")
    code, _, err = run_cli(capsys, "run", "--out", sw, "--no-progress", *sets(TINY))
    assert code == 2 and sorted(p.name for p in sw.iterdir()) == ["sweep.json"]
    one_line_error(err, "sweep folder")


def test_the_command_line_answers_without_heavy_imports():
    """--help, --version, presets, an argument error and a configuration error never import torch,
    scipy or plotly (what they take in seconds: test_the_command_line_starts_quickly, slow pass)."""
    probe = ("import sys, landscape.cli as c\n"
             "try:\n    c.main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             "heavy = [m for m in ('torch', 'scipy', 'plotly') if m in sys.modules]\n"
             "print('HEAVY', heavy, file=sys.stderr)\n")
    for argv in (["--help"], ["--version"], ["presets"], ["spectrum", "D", "1.5"], ["export", "D", "--format", "x"],
                 ["run", "--set", "K=1"], ["run", "--set", "engine=foo"], ["run", "--preset", "nope"],
                 ["theory", "--K", "1"], ["sweep", "--preset", "default"], ["sweep", "--preset", "paper-width",
                                                                             "--set", "sweep.q=[1]"]):
        r = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, cwd=ROOT)
        assert "HEAVY []" in r.stderr, (argv, r.stderr[-500:])


#: Start-up: most seconds a light command may take beyond a bare interpreter, both measured side by
#: side (best of 3). About 0.1–0.2 s on an idle machine; the bound is for a loaded one, and still far
#: below the seconds an import of torch, scipy and plotly costs.
STARTUP_MAX_S = 2.0


@pytest.mark.slow   # wall-clock bounds: the slow pass only (a busy machine is not a bug)
def test_the_command_line_starts_quickly():
    def wall(cmd):
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            subprocess.run(cmd, capture_output=True, cwd=ROOT)
            best = min(best, time.perf_counter() - t)
        return best

    bare = wall([sys.executable, "-c", "pass"])
    for argv in (["--version"], ["presets"], ["run", "--set", "K=1"]):
        assert wall([sys.executable, "-m", "landscape", *argv]) - bare < STARTUP_MAX_S, argv


@pytest.mark.slow   # wall-clock bounds: the slow pass only
def test_refusals_by_estimate_take_seconds(study, tmp_path, capsys):
    """What is refused by an estimate would take hours (every block pattern of K = 100, a width
    continuation to d = 5000); the refusal takes seconds even on a loaded machine."""
    for argv, needle in ((["theory", "--K", "100", "--n", "1", "--L", "2"], "190,569,292 block patterns"),
                         (["continue", _copy(study, tmp_path), "--param", "d", "--to", "5000"], "--to=5000")):
        t = time.perf_counter()
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and time.perf_counter() - t < 60, argv
        one_line_error(err, needle)


def test_a_bad_connect_pair_is_no_dead_end(tmp_path, capsys):
    """transition_states.pairs naming a point the study will not hold: the study finishes without that pair,
    says so, and resume and report work (before: exit 2 after every trajectory, forever)."""
    out = tmp_path / "s"
    code, _, err = run_cli(capsys, "run", "--out", out, "--no-progress", *sets(TINY), "--set", "transition_states.pairs=[[0,99]]")
    assert code == 0, err
    assert "transition_states.pairs names point 99" in err and "finished without it" in err
    assert run_cli(capsys, "run", "--resume", out, "--no-progress")[0] == 0
    assert run_cli(capsys, "report", out)[0] == 0
    with StudyStore.open(out / "study.sqlite", readonly=True) as st:
        assert any(a["outcome"].startswith("skipped") for a in st.get_meta("connect_attempts", []))


def test_damaged_sweep_files_and_model_tables_are_one_line_errors(tmp_path, capsys):
    for bad in ("model = 3\n", "model = 'ab'\n", "model = [[1, 2]]\n"):
        cfg = tmp_path / "m.toml"
        cfg.write_text(bad)
        code, _, err = run_cli(capsys, "theory", "--config", cfg)
        assert code == 2
        one_line_error(err, "model")
    from landscape.study.sweep import read_prevalence_csv
    sw = tmp_path / "sw"
    sw.mkdir()
    (sw / "sweep.json").write_text('{"sweep_config": {"sweep": {"d": [4]}}, "cells": [], "prevalence": []}')
    (sw / "prevalence.csv").write_text("cell,n_trajectories\nd=4,\n")
    code, _, err = run_cli(capsys, "report", sw)
    assert code == 2
    one_line_error(err, "prevalence.csv", "damaged")
    with pytest.raises(ValueError, match="damaged"):
        read_prevalence_csv(sw / "prevalence.csv")
    (sw / "sweep.json").write_text("{not json")
    code, _, err = run_cli(capsys, "sweep", "--preset", "paper-width", "--out", sw, "--no-progress",
                           *sets([o for o in TINY if not o.startswith("d=")]), "--set", "sweep.d=[4]")
    assert code == 2
    one_line_error(err, "sweep.json")


def test_width_continuation_is_bounded_before_it_starts(study, tmp_path, capsys):
    d = _copy(study, tmp_path)
    code, _, err = run_cli(capsys, "continue", d, "--param", "d", "--to", "5000")   # (its seconds: slow pass)
    assert code == 2
    one_line_error(err, "--to=5000", "estimated", "--budget")
    code, out, err = run_cli(capsys, "continue", d, "--param", "d", "--to", "6")
    assert code == 0, err
    assert "d=5" in out and "d=6" in out   # progress per width


def test_ctrl_c_in_continue_keeps_the_finished_branches(study, tmp_path, capsys, monkeypatch):
    import landscape.continuation.width as cont

    d = _copy(study, tmp_path)
    monkeypatch.setattr(cont, "analyse_hessian", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    code, _, err = run_cli(capsys, "continue", d, "--param", "d", "--to", "6")
    assert code == 130 and "interrupted" in err and "Traceback" not in err
    # interrupted before the first branch finished: no record of nothing is written
    assert not (d / "continuation-d.json").exists()


def test_disk_full_and_ctrl_c_during_spectrum_are_one_line(study, tmp_path, capsys, monkeypatch):
    import sqlite3 as sq

    import landscape.io.store as st

    d = _copy(study, tmp_path)

    def full(*a, **k):
        raise sq.OperationalError("database or disk is full")

    monkeypatch.setattr(st.StudyStore, "put_spectrum", full)
    code, _, err = run_cli(capsys, "spectrum", d, "0")
    assert code == 2
    one_line_error(err, "disk is full", "committed before is kept")
    monkeypatch.setattr(st.StudyStore, "put_spectrum", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    code, _, err = run_cli(capsys, "spectrum", d, "0")
    assert code == 130 and "interrupted" in err and "Traceback" not in err


def test_spectrum_in_a_read_only_place_fails_before_computing(study, tmp_path, capsys, monkeypatch):
    import landscape.analysis.spectrum as sp
    import landscape.io.results as res

    d = _copy(study, tmp_path)
    monkeypatch.setattr(sp, "inspect_spectrum", lambda *a, **k: pytest.fail("computed before checking the folder"))

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(res.tempfile, "mkstemp", refuse)
    code, _, err = run_cli(capsys, "spectrum", d, "0")
    assert code == 2
    one_line_error(err, str(d), "not writable")
    assert ".tmp-" not in err
