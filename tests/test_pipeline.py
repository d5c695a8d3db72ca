"""The library is the command line: ``landscape.run_study`` from Python and ``landscape run`` write
the same results folder, and the StudyResult a notebook gets is what the folder's summary.json says.

One tiny study file (deep linear CE, K=3, n=2, d=4, L=2, 8 L-BFGS starts in units of 4, 2
Newton-MR saddle-search starts) is run once from Python (folder ``a``) and once through
``landscape run --config FILE --out DIR`` in this process (folder ``b``). The two folders may
differ only in what the clock decides: wall times, timings, the environment, creation times and a
cost model's predicted seconds; everything else is compared exactly.
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from landscape.cli import main
from landscape.core.validate import SpecError
from landscape.io.records import TransitionStateRecord
from landscape.study.summary import SUMMARY_KEYS

STUDY = """\
name = "pipeline"
trajectories = 8
batch_size = 4

[model]
K = 3
n = 2
d = 4
L = 2

[[stages]]
engine = "lbfgs"
max_iter = 3000
tol = 1e-6

[[stages]]
engine = "newton"
max_iter = 100
stall_window = 10
entry_grad_norm = 1e-6

[saddles]
starts = 2

[[saddles.descend]]
engine = "flow"
rtol = 1e-4
max_iter = 1500
stall_window = 1500
"""
ROOT = Path(__file__).resolve().parents[1]
#: SQLite's own side files (write-ahead log, shared memory): not results.
SIDE_FILES = ("-wal", "-shm", "-journal")
#: Columns of study.sqlite that hold the clock (when a row was written, how long it took).
CLOCK_COLUMNS = {"created_at", "committed_at", "wall_time"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(the StudyResult of folder a, folder a, folder b, what `landscape run` printed)."""
    from landscape import load_study, run_study

    tmp = tmp_path_factory.mktemp("pipeline")
    study = tmp / "study.toml"
    study.write_text(STUDY)
    result = run_study(load_study(study), tmp / "a", progress=False)      # a notebook
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["run", "--config", str(study), "--out", str(tmp / "b"), "--no-progress", "--timings"]) == 0
    return result, tmp / "a", tmp / "b", printed.getvalue()


def untimed(x):
    """``x`` (JSON) without what the clock decides: keys ending in ``_s`` (seconds) and a cost
    model's ``method_reason`` (it quotes the predicted seconds)."""
    if isinstance(x, dict):
        return {k: untimed(v) for k, v in x.items() if not k.endswith("_s") and k != "method_reason"}
    if isinstance(x, list):
        return [untimed(v) for v in x]
    return x


def summary_of(folder):
    return json.loads((folder / "summary.json").read_text())


def comparable_summary(folder):
    s = summary_of(folder)
    for k in ("environment", "timings"):
        s.pop(k)
    return untimed(s)


def table(folder, name):
    """Every row of one study.sqlite table, in primary-key order, the clock's columns left out and
    JSON texts read (without their timings)."""
    with contextlib.closing(sqlite3.connect(f"file:{folder / 'study.sqlite'}?mode=ro", uri=True)) as con:
        cols = [r[1] for r in con.execute(f"PRAGMA table_info({name})")]
        keep = [c for c in cols if c not in CLOCK_COLUMNS]
        rows = con.execute(f"SELECT {', '.join(keep)} FROM {name} ORDER BY rowid").fetchall()

    def value(v):
        if isinstance(v, str) and v[:1] in "{[":
            return untimed(json.loads(v))
        return v

    return [dict(zip(keep, map(value, r))) for r in rows]


def files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and not p.name.endswith(SIDE_FILES))


# ----- the same folder ------------------------------------------------------------------------------
def test_both_write_the_same_files(runs):
    _, a, b, _ = runs
    assert files(a) == files(b)
    assert {"config.json", "study.sqlite", "spectra.npz", "tree.json", "graph.graphml", "summary.json",
            "report.html"} <= set(files(a))
    assert any(f.startswith("spectra/point-") for f in files(a))   # the featured spectra
    assert (a / "report.html").stat().st_size > 0 and (b / "report.html").stat().st_size > 0


def test_summaries_agree_apart_from_the_clock(runs):
    _, a, b, _ = runs
    assert comparable_summary(a) == comparable_summary(b)
    sa, sb = summary_of(a), summary_of(b)
    assert tuple(sa) == tuple(sb) == SUMMARY_KEYS
    assert set(sa["timings"]) == set(sb["timings"]) and sa["environment"] == sb["environment"]
    assert sa["points"] and sa["graph"]["n_edges"] > 0   # the study found something to compare


@pytest.mark.parametrize("name", ["points", "trajectories", "edges", "transition_states", "spectra", "units"])
def test_databases_hold_the_same_rows(runs, name):
    _, a, b, _ = runs
    rows = table(a, name)
    assert rows == table(b, name)
    if name in ("points", "trajectories", "edges", "spectra"):
        assert rows, name


def test_derived_files_are_the_same(runs):
    _, a, b, _ = runs
    for f in ("config.json", "tree.json", "graph.graphml"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    with np.load(a / "spectra.npz") as x, np.load(b / "spectra.npz") as y:
        assert sorted(x.files) == sorted(y.files)
        for k in x.files:
            np.testing.assert_array_equal(x[k], y[k])
    for p in sorted((a / "spectra").glob("point-*.json")):
        assert untimed(json.loads(p.read_text())) == untimed(json.loads((b / "spectra" / p.name).read_text()))


# ----- the result ----------------------------------------------------------------------------------
def test_the_result_is_what_summary_json_says(runs):
    r, a, _, _ = runs
    s = summary_of(a)
    assert r.folder == a and r.report == a / "report.html" and r.report.is_file()
    assert json.loads(json.dumps(r.summary)) == s
    assert r.n_trajectories == s["n_trajectories"] and r.dynamics == s["dynamics"]
    h = s["headline"]
    assert (r.headline.dnc_fraction, r.headline.dnc_ci_low, r.headline.dnc_ci_high) == \
        (h["dnc_fraction"], h["dnc_ci_low"], h["dnc_ci_high"])
    assert (r.headline.lowest_loss, r.headline.lowest_loss_label, r.headline.lowest_loss_point) == \
        (h["lowest_loss"], h["lowest_loss_label"], h["lowest_loss_point"])
    c = r.headline.certified
    assert (c.n_certified, c.dnc, c.fraction, c.ci_low, c.ci_high) == tuple(
        h["certified"][k] for k in ("n_certified", "dnc", "fraction", "ci_low", "ci_high"))
    assert [p.record for p in r.points] == s["points"]
    assert [(p.id, p.kind, p.label, p.loss, p.grad_norm, p.index, p.nullity, p.basin_count, p.fraction, p.ci_low,
             p.ci_high) for p in r.points] == [(p["id"], p["kind"], p["label"], p["loss"], p["grad_norm"], p["index"],
                                                p["nullity"], p["basin_count"], p["fraction"], p["ci_low"],
                                                p["ci_high"]) for p in s["points"]]
    assert r.point(h["lowest_loss_point"]).loss == h["lowest_loss"]
    assert {k: (f.count, f.fraction, f.ci_low, f.ci_high) for k, f in r.fractions.items()} == \
        {row["label"]: (row["count"], row["fraction"], row["ci_low"], row["ci_high"]) for row in s["labels"]}
    assert {k: (f.count, f.fraction) for k, f in r.uncertified.items()} == \
        {row["stop_reason"]: (row["count"], row["fraction"]) for row in s["uncertified"]}
    assert sum(f.count for f in r.fractions.values()) + sum(f.count for f in r.uncertified.values()) == \
        r.n_trajectories
    assert r.stop_reasons == s["stop_reasons"]
    assert r.transition_states == [TransitionStateRecord.from_mapping(t) for t in s["transition_states"]]
    assert [(d.reason, d.count, d.share, d.advice) for d in r.diagnosis] == \
        [(d["reason"], d["count"], d["share"], d["advice"]) for d in s["diagnosis"]]
    # this run's phases: summary.json's, then the featured spectra and the report
    assert list(r.timings) == list(s["timings"]) + ["featured_spectra_s", "report_s"]
    assert {k: r.timings[k] for k in s["timings"]} == s["timings"]
    assert r.wall_time_s == pytest.approx(s["wall_time_s"] + r.timings["featured_spectra_s"] + r.timings["report_s"])
    assert "StudyResult(" in repr(r) and str(a) in repr(r)


def test_the_result_reads_like_the_summary_dict_it_replaced(runs):
    r, a, _, _ = runs
    s = summary_of(a)
    assert r["headline"]["dnc_fraction"] == s["headline"]["dnc_fraction"] and r["points"] == s["points"]
    assert tuple(r) == SUMMARY_KEYS and len(r) == len(SUMMARY_KEYS) and "points" in r
    assert r.get("check") == s["check"] and r.get("no such key", 7) == 7
    assert json.loads(json.dumps(dict(r))) == s
    with pytest.raises(KeyError):
        r["no such key"]
    with pytest.raises(AttributeError):   # frozen
        r.folder = a


# ----- the command line, a shell around run_study -------------------------------------------------
def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def lines_printed_before(summary) -> list[str]:
    """What `landscape run` printed, formatted as it was when the command read the summary dict
    (before run_study returned a StudyResult), up to the timings."""
    out = []
    c, h, n = summary["stop_reasons"], summary["headline"], summary["n_trajectories"]
    diagnosis = summary.get("diagnosis") or []
    for d in diagnosis:
        out.append(f"warning: {d['count']} of {n} starts {d['reason']} ({_pct(d['share'])}): {d['advice']}")
    out.append(f"{n} trajectories ({summary['dynamics']}): " + ", ".join(f"{k} {v}" for k, v in c.items()))
    cert = h.get("certified") or {}
    if diagnosis and cert.get("n_certified") is not None:
        dnc = (f"DNC {cert['dnc']} of {cert['n_certified']} certified ({_pct(cert['fraction'])} "
               f"[{_pct(cert['ci_low'])}, {_pct(cert['ci_high'])}] of the certified; "
               f"{n - cert['n_certified']} of {n} starts uncertified)")
    else:
        dnc = f"DNC fraction {_pct(h['dnc_fraction'])} [{_pct(h['dnc_ci_low'])}, {_pct(h['dnc_ci_high'])}]"
    out.append(f"{len(summary['points'])} distinct critical points, {summary['graph']['n_edges']} saddle connections, "
               f"{len(summary['transition_states'])} transition states; {dnc}; "
               f"lowest loss {h['lowest_loss']:.10g} ({h['lowest_loss_label']}, point {h['lowest_loss_point']})"
               if h["lowest_loss"] is not None else f"{len(summary['points'])} distinct critical points; {dnc}")
    if summary["saddle_visits"]:
        k = sum(v["n_trajectories"] for v in summary["saddle_visits"])
        out.append(f"saddles passed: {len(summary['saddle_visits'])} saddles finished {k} trajectories' polish and "
                   "were continued past (no saddle holds a basin count)")
    return out


def test_the_command_prints_what_it_printed_before(runs):
    _, _, b, printed = runs
    lines = printed.splitlines()
    head = lines_printed_before(summary_of(b))
    assert lines[:len(head)] == head
    timings, wall = lines[len(head):]
    phases = [part.rsplit(" ", 2)[0] for part in timings[len("timings: "):].split(", ")]
    assert phases[-2:] == ["featured spectra", "report"] and phases[0] == "setup"
    assert wall.startswith("wall time ") and wall.endswith(f" s; results: {b}")


def test_ctrl_c_during_the_report_keeps_the_study_and_says_so(runs, tmp_path, monkeypatch, capsys):
    import landscape.viz.pipeline as pipeline

    _, _, b, _ = runs
    folder = tmp_path / "copy"
    shutil.copytree(b, folder)
    (folder / "report.html").unlink()

    def interrupted(out_dir):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "write_report", interrupted)
    code = main(["run", "--resume", str(folder), "--no-progress"])   # a finished study: nothing to compute
    out, err = capsys.readouterr()
    assert code == 130
    assert out.splitlines() == lines_printed_before(summary_of(folder))
    assert f"interrupted while writing the report: the study is complete in {folder}" in err
    assert f"landscape report {folder}" in err and "Traceback" not in err
    assert not (folder / "report.html").exists()

    from landscape import ReportInterrupted, run_study
    from landscape.study.run import load_config

    with pytest.raises(ReportInterrupted) as info:
        run_study(load_config(folder), folder, progress=False)
    assert isinstance(info.value, KeyboardInterrupt)
    assert info.value.result.folder == folder and info.value.result.report is None
    assert info.value.result.summary == summary_of(folder)


# ----- opening a finished study ---------------------------------------------------------------------
def test_a_results_folder_is_opened_with_load_results(runs):
    from landscape import load_results, load_study

    r, a, _, _ = runs
    with pytest.raises(SpecError, match=r"this is a results folder: open it with landscape\.load_results"):
        load_study(a)
    res = load_results(a)
    assert res.summary == r.summary and res.points == r.points


# ----- the tutorial's example: open a finished study ------------------------------------------------
TUTORIAL = ROOT / "docs" / "tutorial.md"


def tutorial_example(name: str) -> str:
    """The python block after ``<!-- example: NAME … -->`` in docs/tutorial.md."""
    import re

    text = TUTORIAL.read_text(encoding="utf-8")
    m = re.search(rf"<!-- example: {re.escape(name)}\b[^>]*-->\s*```python\n(.*?)^```", text, re.S | re.M)
    assert m, f"docs/tutorial.md has no example {name!r}"
    return m.group(1)


def test_the_tutorial_opens_a_finished_study(runs, tmp_path, monkeypatch):
    """The tutorial's "Open a finished study" runs as written on a folder run_study wrote, and
    prints what the folder's own files hold (read here with json and numpy, not the package)."""
    _, a, _, _ = runs
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "tiny").symlink_to(a, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(tutorial_example("open-a-finished-study"), str(TUTORIAL), "exec"), {"__name__": "tutorial"})
    lines = printed.getvalue().splitlines()

    s = summary_of(a)
    h, m = s["headline"], s["config"]["model"]
    pct = "{:.1%}".format
    assert lines[0] == (f"{s['n_trajectories']} starts ({s['dynamics']}): DNC {pct(h['dnc_fraction'])} "
                        f"[{pct(h['dnc_ci_low'])}, {pct(h['dnc_ci_high'])}]")
    labels, points = s["labels"], sorted(s["points"], key=lambda p: p["loss"])
    assert len(lines) == 1 + len(labels) + len(points) + 2
    for line, row in zip(lines[1:], labels):   # every label with its count and interval
        assert line.split() == [row["label"], str(row["count"]), f"{row['fraction']:.3f}",
                                f"[{row['ci_low']:.3f},", f"{row['ci_high']:.3f}]"]
    for line, p in zip(lines[1 + len(labels):], points):   # every distinct point, by loss
        assert line.split() == [str(p["id"]), p["kind"], p["label"], f"{p['loss']:.10f}", str(p["index"]),
                                str(p["basin_count"])]
    best = h["lowest_loss_point"]
    P = m["d"] * m["K"] * m["n"] + (m["L"] - 1) * m["d"] ** 2 + m["K"] * m["d"]
    with np.load(a / "spectra.npz") as z:
        spectrum = z[f"{best}/spectrum"]
        layers = [k.split("/")[-1] for k in z.files if k.startswith(f"{best}/sv/")]
    point = next(p for p in s["points"] if p["id"] == best)
    assert len(spectrum) == P
    assert lines[-2] == (f"point {best}: dense Hessian spectrum, {P} eigenvalues, index {point['index']}, "
                         f"{point['symmetry_zero_modes']} symmetry zero modes; singular values of {', '.join(layers)}")
    shown = lines[-1].split(", ")
    assert shown[0] == "basins" and f"spectrum-{best}" in shown
    for page in ("spectrum.html", "basins.html"):   # the figures, written
        assert "<html>" in (tmp_path / page).read_text(encoding="utf-8")[:200]
