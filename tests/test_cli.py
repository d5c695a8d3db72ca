"""Command line: run (with --set, --out, --resume), inspect, export, and clear errors (exit 2).

The tiny study of test_study.py is run once through ``landscape run``; a second copy is killed
(SIGKILL) after its first committed unit and resumed with ``landscape run --resume``.
"""
import csv
import io
import json
import signal
import subprocess
import sys
import time

import networkx as nx
import pytest

from landscape.cli import main
from landscape.io.store import StoreError, StudyStore

TINY = ["K=3", "n=2", "d=4", "L=2", "trajectories=24", "batch_size=8", "name=tiny", "engine=lbfgs",
        "stages.0.max_iter=3000", "stages.0.tol=1e-6", "saddles.starts=2", "saddles.descend.0.max_iter=1500",
        "saddles.descend.0.stall_window=1500"]


def sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


def run_cli(capsys, *argv):
    """(exit status, stdout, stderr) of ``landscape ARGV`` run in this process."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "study"
    assert main(["run", "--out", str(out), "--no-progress", *sets(TINY)]) == 0
    return out


def test_run_applies_overrides_and_writes_the_folder(finished):
    cfg = json.loads((finished / "config.json").read_text())
    assert cfg["model"] == {"K": 3, "n": 2, "d": 4, "L": 2, "activation": "linear", "loss": "ce", "lambda": 1e-3,
                            "dtype": "float64"}
    assert cfg["stages"][0]["engine"] == "lbfgs" and cfg["saddles"]["starts"] == 2
    summary = json.loads((finished / "summary.json").read_text())
    assert summary["n_trajectories"] == 24 and summary["config"] == cfg
    for f in ("study.sqlite", "spectra.npz", "tree.json", "graph.graphml", "report.html"):
        assert (finished / f).is_file(), f


def test_run_prints_the_headline(tmp_path, capsys):
    code, out, err = run_cli(capsys, "run", "--out", str(tmp_path / "s"), "--no-progress", "--timings",
                             *sets(["K=3", "n=2", "d=4", "L=2", "trajectories=4", "engine=lbfgs", "saddles.starts=0"]))
    assert code == 0, err
    assert "4 trajectories (lbfgs(m=10) → newton-mr; init gaussian)" in out and "DNC fraction" in out
    assert f"results: {tmp_path / 's'}" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("timings: "))
    phases = [part.rsplit(" ", 2)[0] for part in line[len("timings: "):].split(", ")]
    assert phases == ["setup", "trajectories", "saddle search", "saddle descents", "transition states", "summary",
                      "featured spectra", "report"]


def test_inspect_lists_points_and_shows_one(finished, capsys):
    summary = json.loads((finished / "summary.json").read_text())
    code, out, err = run_cli(capsys, "inspect", str(finished))
    assert code == 0, err
    assert "24 of 24 trajectories" in out and "saddle search: 2 of 2 starts" in out
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:3] == ["id", "kind", "label"])
    table = lines[head + 2:head + 2 + len(summary["points"])]
    assert [int(line.split()[0]) for line in table] == [p["id"] for p in summary["points"]]
    saddle = next(p for p in summary["points"] if p["kind"] == "saddle")
    code, out, err = run_cli(capsys, "inspect", str(finished), str(saddle["id"]))
    assert code == 0, err
    assert f"point {saddle['id']} (saddle)" in out and f"index {saddle['index']}," in out
    assert "collapse metrics" in out and "class-mean logits" in out and "descent direction 0+" in out
    code, out, err = run_cli(capsys, "inspect", str(finished), "999")
    assert code == 2 and "POINT=999 is invalid" in err and "Traceback" not in err


def test_export_csv_graphml_json(finished, capsys, tmp_path):
    summary = json.loads((finished / "summary.json").read_text())
    code, out, _ = run_cli(capsys, "export", str(finished), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [int(r["id"]) for r in rows] == [p["id"] for p in summary["points"]]
    assert [float(r["loss"]) for r in rows] == [p["loss"] for p in summary["points"]]
    assert [int(r["basin_count"]) for r in rows] == [p["basin_count"] for p in summary["points"]]
    code, out, _ = run_cli(capsys, "export", str(finished), "--format", "graphml")
    G = nx.parse_graphml(out)
    assert code == 0 and (G.number_of_nodes(), G.number_of_edges()) == (summary["graph"]["n_nodes"],
                                                                         summary["graph"]["n_edges"])
    target = tmp_path / "export.json"
    code, out, _ = run_cli(capsys, "export", str(finished), "--format", "json", "--output", str(target))
    data = json.loads(target.read_text())
    assert code == 0 and out == ""
    assert data["tree"] == json.loads((finished / "tree.json").read_text())
    assert data["points"] == summary["points"] and data["n_trajectories"] == 24
    code, out, _ = run_cli(capsys, "export", str(finished), "--format", "tree-graphml")
    T = nx.parse_graphml(out)
    assert code == 0 and T.is_directed() and T.number_of_nodes() == len(data["tree"]["nodes"])


@pytest.mark.parametrize("argv, message", [
    (["run", "--set", "d=2", "--set", "K=3"], "d=2 is invalid"),
    (["run", "--set", "trajectories=zero"], "trajectories='zero' is invalid"),
    (["run", "--set", "saddles.starts=-3"], "saddles.starts=-3 is invalid"),
    (["run", "--resume", "{missing}"], "no study database at"),
    (["inspect", "{missing}"], "no study database at"),
    (["export", "{missing}", "--format", "csv"], "no study database at"),
])
def test_bad_input_gives_a_clear_error(tmp_path, capsys, argv, message):
    argv = [a.format(missing=tmp_path / "nowhere") for a in argv]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and f"landscape {argv[0]}: error: " in err and message in err and "Traceback" not in err


def test_corrupted_database_gives_a_clear_error(tmp_path, capsys):
    (tmp_path / "study.sqlite").write_bytes(b"this is not a database" * 100)
    for argv in (["inspect", str(tmp_path)], ["run", "--resume", str(tmp_path)]):
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and "error:" in err and "study.sqlite" in err and "Traceback" not in err


def test_existing_study_needs_resume_and_resume_takes_no_overrides(finished, capsys):
    code, _, err = run_cli(capsys, "run", "--out", str(finished), *sets(TINY))
    assert code == 2 and f"landscape run --resume {finished}" in err
    code, _, err = run_cli(capsys, "run", "--resume", str(finished), "--set", "d=5")
    assert code == 2 and "takes no --config, --set or --out" in err


def _start(out, *extra):
    argv = ["run", "--out", str(out), *sets(TINY), *extra]
    # Ctrl-C raises KeyboardInterrupt even where this test runs with SIGINT ignored (a background job)
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            f"from landscape.cli import main; sys.exit(main({argv!r}))")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_first_unit(proc, out, timeout=120.0):
    """Poll the database until a unit is committed while ``proc`` still runs."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        assert proc.poll() is None, "the run finished before it could be interrupted"
        try:
            with StudyStore.open(out, check=False, readonly=True) as store:
                if store.committed_units():
                    return
        except StoreError:  # not created yet, or its creating transaction not yet committed
            pass
        time.sleep(0.05)
    raise AssertionError("no unit committed in time")


@pytest.mark.slow   # long: run by .ci/run's second pass
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, finished, capsys):
    out = tmp_path / "killed"
    proc = _start(out, "--no-progress")
    _wait_for_first_unit(proc, out)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists()
    with StudyStore.open(out) as store:
        n_done = store.n_trajectories()
    assert n_done in (8, 16, 24, 26)  # whole units only (3 of 8 main starts, then 2 saddle starts)
    code, _, err = run_cli(capsys, "run", "--resume", str(out), "--no-progress")
    assert code == 0, err
    with StudyStore.open(out) as a, StudyStore.open(finished) as b:
        ta, tb = a.trajectories(), b.trajectories()
        assert [t.idx for t in ta] == [t.idx for t in tb]
        assert [(t.stop_reason, t.point_id, t.loss) for t in ta] == \
               [(t.stop_reason, t.point_id, t.loss) for t in tb]
        assert [(p.id, p.kind, p.label, p.loss) for p in a.points()] == \
               [(p.id, p.kind, p.label, p.loss) for p in b.points()]
        assert a.edges() == b.edges()
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (out, finished))
    for k in ("n_trajectories", "stop_reasons", "points", "labels", "uncertified", "unseen", "accumulation", "graph",
              "headline"):
        assert sa[k] == sb[k], k


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path):
    out = tmp_path / "interrupted"
    # 25 units of 8, so that the signal lands while units remain however fast the machine is
    proc = _start(out, "--no-progress", "--set", "trajectories=200")
    _wait_for_first_unit(proc, out)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"landscape run --resume {out}" in err and "Traceback" not in err
    with StudyStore.open(out) as store:
        n = store.n_trajectories()
        assert 8 <= n < 200 and n % 8 == 0  # whole committed units only


# ----- names of runs made with --set ---------------------------------------------------------------
def test_a_run_with_overrides_is_named_after_them():
    from landscape.study.config import OVERRIDE_NAME_MAX, load_study, override_name

    assert load_study(None, ["model.loss=mse", "trajectories=64"]).name == "default+model.loss=mse+trajectories=64"
    assert load_study(None, ["trajectories=64", " name = mine "]).name == "mine"     # an explicit name wins
    assert load_study(None, []).name == "default" and load_study(preset="linear-mse").name == "linear-mse"
    assert load_study(preset="linear-mse", overrides=["d=9"]).name == "linear-mse+d=9"
    # safe as one folder name: quotes and white space dropped, separators and the rest made '_'
    assert load_study(None, ['init.name="small"', "lambda = 0.0009765625"]).name == \
        "default+init.name=small+lambda=0.0009765625"
    assert override_name("default", ['x="a/b\\\\c"', "y=[1, 2]", "z=\x00.."]) == "default+x=a_b_c+y=_1,2_+z=_.."
    # bounded, and two long lists that share their first 71 characters keep different names
    long = ["K=3", "n=2", "d=4", "L=2", "trajectories=4", "batch_size=4", "saddles.starts=0", "transition_states.max_pairs=0"]
    a, b = load_study(None, long + ["seed=1"]).name, load_study(None, long + ["seed=2"]).name
    assert len(a) == len(b) == OVERRIDE_NAME_MAX and a != b and a[:-9] == b[:-9]
    assert a.startswith("default+K=3+n=2+d=4+L=2+trajectories=4") and a[-9] == "~"
    assert all(c.isalnum() or c in "._=,+-~" for c in a)


def test_run_without_out_names_its_folder_after_the_overrides(tmp_path, capsys, monkeypatch):
    import landscape.study.run as study_run

    def stop(cfg, out, progress):   # the folder's name is all this test needs: stop before any work
        raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(study_run, "run_study", stop)
    code, _, err = run_cli(capsys, "run", "--no-progress", *sets(["K=3", "n=2", "d=4", "L=2", "trajectories=4"]))
    assert code == 130
    assert "runs/default+K=3+n=2+d=4+L=2+trajectories=4-2" in err   # runs/<name>-<YYYYmmdd-HHMMSS>
