"""Results folders are untrusted input: a tampered summary.json, tree.json, spectra.npz, sweep.json,
prevalence.csv or net summary.json must never put live markup into report.html, nor make the
report read outside the folder or decompress a zip bomb.

Every tampered number or id is refused with a one-line error naming the file and the field;
every tampered string is written escaped. The browser test (skipped without Debian's
``chromium``) opens a report full of payloads and checks that none of them ran.
"""
import csv
import io
import json
import re
import shutil
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from browser import dom, needs_chromium
from landscape.cli import main as cli_main
from landscape.io.results import load_spectra, spectra_member_bound, write_json
from landscape.study.sweep import write_prevalence_csv
from landscape.viz.net_report import render_net_report, write_net_report
from landscape.viz.report import figure_ids, load_results, render_report, write_report
from landscape.viz.safe import ReportInputError, check_fields, contained_path, esc
from landscape.viz.sweep_report import render_sweep_report, write_sweep_report
from study_fixture import build_study

ROOT = Path(__file__).resolve().parents[1]
NET = ROOT / "data" / "net" / "digits-linear"

#: Payloads that, if they reached the page unescaped, would mark <body data-pwned="…">.
SCRIPT = "<script>document.body.setAttribute('data-pwned','script')</script>"
IMG = "<img src=x onerror=\"document.body.setAttribute('data-pwned','img')\">"
PAYLOADS = (SCRIPT, IMG)
#: The same as a number's value: what the probe put into numeric fields.
BAD = "<script>window.__pwned=1</script>"


def assert_inert(text: str) -> None:
    """No payload in ``text`` except as escaped text (or plotly's \\u003c JSON escapes)."""
    for p in PAYLOADS + (BAD,):
        assert p not in text, f"unescaped payload in the page: {p}"
    assert "<img src=x" not in text and "onerror=\"document" not in text
    # the only scripts: the error collector, plotly.js and one Plotly.newPlot call per figure
    starts = re.findall(r"<script[^>]*>\s*(.{0,16})", text, re.S)
    assert starts and all(s.startswith(("(function ()", "/**", "window.PLOTLYENV")) for s in starts), starts


def set_path(doc, path: str, value):
    """doc[...] = value for ``a.b[0].c``."""
    keys = [int(k) if k.isdigit() else k for k in re.findall(r"[^.\[\]]+", path)]
    for k in keys[:-1]:
        doc = doc[k]
    doc[keys[-1]] = value


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("landscape report: error: "), err
    return err


# ----- a study folder ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = build_study(tmp_path_factory.mktemp("study"))
    s = json.loads((out / "summary.json").read_text())
    s["saddle_visits"] = [{"point_id": 3, "label": "other", "kind": "saddle", "index": 1, "loss": 0.5,
                           "n_trajectories": 2, "n_visits": 2, "mean_lingered": 12.0, "max_lingered": 14}]
    (out / "summary.json").write_text(json.dumps(s))
    return out


def copy_study(study, dest, edit=None) -> Path:
    shutil.copytree(study, dest)
    if edit is not None:
        s = json.loads((dest / "summary.json").read_text())
        edit(s)
        (dest / "summary.json").write_text(json.dumps(s))
    return dest


NUMERIC_FIELDS = ["saddle_visits[0].point_id", "saddle_visits[0].index", "saddle_visits[0].n_trajectories",
                  "saddle_visits[0].mean_lingered", "unseen.n1", "unseen.n", "unseen.estimate",
                  "uncertified[0].count", "uncertified[0].fraction", "points[0].id", "points[0].loss",
                  "points[0].index", "points[0].nullity", "points[0].symmetry_zero_modes", "points[0].basin_count",
                  "points[0].fraction", "points[0].smallest_nonzero_eigenvalue", "labels[0].count",
                  "headline.lowest_loss_point", "headline.dnc_fraction", "headline.lowest_loss",
                  "n_trajectories", "wall_time_s", "stop_reasons.converged", "tolerances.confidence",
                  "accumulation.n_distinct", "config.model.L"]


def test_summaries_of_other_versions_render_or_are_refused_in_one_line(study, tmp_path):
    """The report reads a typed view of summary.json: a summary without ``stop_reasons``, with a
    null count, or with a transition-state field this version does not know renders as before;
    a transition-state row missing a field this version needs, or a count of the wrong type, is a
    ReportInputError naming the file (never a bare KeyError or TypeError)."""
    def with_ts(extra):
        def edit(s):
            s["transition_states"] = [{"saddle_id": 3, "min1_id": 0, "min2_id": 1, "barrier1": 0.1, "barrier2": 0.2,
                                       **extra}]
        return edit

    fine = [lambda s: s.pop("stop_reasons"), lambda s: s["stop_reasons"].update(converged=None),
            with_ts({"a_field_of_a_newer_version": 1})]
    for k, edit in enumerate(fine):
        assert "Distinct critical points" in render_report(load_results(copy_study(study, tmp_path / f"ok{k}", edit)))
    refused = [lambda s: with_ts({})(s) or s["transition_states"][0].pop("min1_id"),
               lambda s: s.setdefault("graph", {}).update(n_edges="7"), lambda s: s.update(timings=[1.0])]
    for k, edit in enumerate(refused):
        with pytest.raises(ReportInputError, match=r"summary\.json"):
            load_results(copy_study(study, tmp_path / f"bad{k}", edit))


@pytest.mark.parametrize("field", NUMERIC_FIELDS)
def test_a_string_where_a_number_belongs_is_refused(study, tmp_path, field):
    s = json.loads((study / "summary.json").read_text())
    set_path(s, field, BAD)
    (tmp_path / "summary.json").write_text(json.dumps(s))
    with pytest.raises(ReportInputError) as exc:
        load_results(tmp_path)
    msg = str(exc.value)
    assert msg.startswith(f"{tmp_path / 'summary.json'}: {field} must be "), msg
    assert "\n" not in msg and "<" not in msg


def test_number_checks_name_the_field(study, tmp_path, capsys):
    s = json.loads((study / "summary.json").read_text())
    s["saddle_visits"][0]["point_id"] = BAD
    (tmp_path / "summary.json").write_text(json.dumps(s))
    assert cli_main(["report", str(tmp_path)]) == 2
    err = one_line_error(capsys)
    assert "summary.json: saddle_visits[0].point_id must be an integer, not a string" in err
    s["saddle_visits"][0]["point_id"] = True
    (tmp_path / "summary.json").write_text(json.dumps(s))
    with pytest.raises(ReportInputError, match=r"saddle_visits\[0\]\.point_id must be an integer, not a boolean"):
        load_results(tmp_path)
    s["saddle_visits"][0]["point_id"] = 3
    s["points"][0]["rank_pattern"] = [2, "2<b>"]
    (tmp_path / "summary.json").write_text(json.dumps(s))
    with pytest.raises(ReportInputError, match=r"points\[0\]\.rank_pattern\[1\] must be an integer, not a string"):
        load_results(tmp_path)
    s["points"][0]["rank_pattern"] = None
    s["points"][0]["loss"] = float("nan")
    (tmp_path / "summary.json").write_text(json.dumps(s))
    with pytest.raises(ReportInputError, match=r"points\[0\]\.loss must be a finite number, not nan"):
        load_results(tmp_path)
    (tmp_path / "summary.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ReportInputError, match="summary.json: must be a JSON object, not a list"):
        load_results(tmp_path)


def _inject_strings(s: dict) -> None:
    """A payload in every string field of summary.json the study report shows."""
    s["study"] = SCRIPT
    s["config"]["name"] = IMG
    s["config"]["model"][IMG] = SCRIPT
    s["dynamics"] = SCRIPT
    s["environment"] = {SCRIPT: IMG}
    s["tolerances"][IMG] = SCRIPT
    s["stop_reasons"][SCRIPT] = 0
    for p in s["points"]:
        p["label"] = (SCRIPT if p["id"] % 2 else IMG) + str(p["id"])
        p["kind"], p["type"] = IMG, SCRIPT
        p["theory_match"] = {"matched": False, "reason": SCRIPT}
    s["labels"] = [{**r, "label": SCRIPT + r["label"]} for r in s["labels"]]
    s["uncertified"][0]["stop_reason"] = IMG
    s["saddle_visits"][0]["label"] = SCRIPT
    s["headline"].update({"lowest_loss_label": SCRIPT, "dnc_barrier": 0.01, "dnc_barrier_saddle": 3,
                          "dnc_barrier_to": 1, "dnc_barrier_to_label": IMG})


@pytest.fixture(scope="module")
def tampered_report(study, tmp_path_factory):
    folder = copy_study(study, tmp_path_factory.mktemp("tampered") / "study", _inject_strings)
    tree = json.loads((folder / "tree.json").read_text())
    for n in tree["nodes"]:
        n["label"] = SCRIPT
        if n.get("barriers"):
            n["barriers"] = {IMG: v for v in n["barriers"].values()}
    (folder / "tree.json").write_text(json.dumps(tree))
    return write_report(folder)


def test_strings_are_escaped_in_the_study_report(tampered_report):
    text = tampered_report.read_text(encoding="utf-8")
    assert_inert(text)
    assert esc(SCRIPT) in text and esc(IMG) in text  # shown, as text
    assert f"<title>landscape report: {esc(SCRIPT)}</title>" in text
    assert figure_ids(text)[:3] == ["fig-basins", "fig-disconnectivity", "fig-loss-rank"]
    # the figures carry the payloads as JSON with < > / escaped: no </script> breakout
    assert "\\u003cscript\\u003edocument.body" in text


@needs_chromium
def test_no_payload_runs_in_chromium(tampered_report, tmp_path):
    # the check itself: the same payloads, unescaped, do mark the page
    live = tmp_path / "live.html"
    live.write_text(f"<!DOCTYPE html><html><body><p>{IMG}</p></body></html>", encoding="utf-8")
    assert 'data-pwned="img"' in dom(live, tmp_path / "p0")
    page = dom(tampered_report, tmp_path / "p1")
    assert 'data-pwned="' not in page  # <body> unmarked: no payload ran
    m = re.search(r'<pre id="script-errors" data-count="(\d+)">(.*?)</pre>', page, re.S)
    assert m and m.group(1) == "0", m and m.group(2)
    sections = re.split(r'<section class="figure" data-figure-id="([^"]+)">', page)
    drawn = {fid: body.split("</section>", 1)[0].count('class="main-svg"') for fid, body in zip(sections[1::2], sections[2::2])}
    assert drawn and all(n > 0 for n in drawn.values()), drawn  # plotly drew the payload labels as text


# ----- graph.tree --------------------------------------------------------------------------------
def _with_tree(study, dest, tree) -> Path:
    return copy_study(study, dest, lambda s: s["graph"].__setitem__("tree", tree))


@pytest.mark.parametrize("tree,why", [("/etc/passwd", "no absolute path"), ("../outside/tree.json", "no '..'"),
                                      ("sub/../../outside/tree.json", "no '..'"),
                                      (5, "must be a string or null")])
def test_tree_path_must_stay_in_the_folder(study, tmp_path, capsys, tree, why):
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "tree.json").write_text((study / "tree.json").read_text())
    folder = _with_tree(study, tmp_path / "study", tree)
    with pytest.raises(ReportInputError, match=re.escape(why)):
        load_results(folder)
    assert cli_main(["report", str(folder)]) == 2
    one_line_error(capsys)


def test_tree_path_through_a_symlink_out_is_refused(study, tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "tree.json").write_text((study / "tree.json").read_text())
    folder = _with_tree(study, tmp_path / "study", "link.json")
    (folder / "link.json").symlink_to(tmp_path / "outside" / "tree.json")
    with pytest.raises(ReportInputError, match="leads out of .* through a symbolic link"):
        load_results(folder)
    (folder / "linkdir").symlink_to(tmp_path / "outside")
    assert contained_path(folder, "tree.json", "t") == folder / "tree.json"
    with pytest.raises(ReportInputError, match="symbolic link"):
        contained_path(folder, "linkdir/tree.json", "t")


def test_tree_path_inside_the_folder_is_read(study, tmp_path):
    folder = _with_tree(study, tmp_path / "study", "sub/tree.json")
    (folder / "sub").mkdir()
    shutil.move(folder / "tree.json", folder / "sub" / "tree.json")
    assert load_results(folder).tree.roots == ["merge:0", "leaf:2"]


def test_tampered_tree_numbers_are_refused(study, tmp_path):
    folder = copy_study(study, tmp_path / "study")
    tree = json.loads((folder / "tree.json").read_text())
    tree["nodes"][0]["level"] = BAD
    (folder / "tree.json").write_text(json.dumps(tree))
    with pytest.raises(ReportInputError, match=r"tree\.json: nodes\[0\]\.level must be a finite number, not a string"):
        load_results(folder)


# ----- spectra.npz -------------------------------------------------------------------------------
def _npy_header(shape, dtype="<f8") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def zip_bomb(path: Path, n_bytes: int) -> Path:
    """A valid .npz whose one member is n_bytes of float64 zeros, deflated (about 1/1000 of that on
    disk), written in chunks (no big array in memory)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("0/spectrum.npy", "w", force_zip64=True) as fh:
            fh.write(_npy_header((n_bytes // 8,)))
            chunk = bytes(2**22)
            for _ in range(n_bytes // len(chunk)):
                fh.write(chunk)
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    return zip_bomb(tmp_path_factory.mktemp("bomb") / "spectra.npz", 300 * 2**20)  # 300 MiB > 256 MiB


def test_zip_bomb_is_refused_before_decompressing(study, tmp_path, bomb):
    assert bomb.stat().st_size < 2 * 2**20
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="would decompress to 314572928 bytes, more than the 268435456"):
            load_spectra(bomb)
        folder = copy_study(study, tmp_path / "study")
        shutil.copy(bomb, folder / "spectra.npz")
        with pytest.raises(ValueError, match=rf"more than the {spectra_member_bound(144)} bytes"):
            load_results(folder)  # bounded by the study's P = 144: 8·P + header
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.0f} MiB: something was decompressed"


def test_spectra_members_must_be_what_their_headers_say(tmp_path, study):
    lying = tmp_path / "lying.npz"   # a header declaring 8 TB over 80 bytes of data
    with zipfile.ZipFile(lying, "w") as zf:
        zf.writestr("0/spectrum.npy", _npy_header((10**12,)) + bytes(80))
    with pytest.raises(ValueError, match="header does not match its size"):
        load_spectra(lying)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **{"0/spectrum": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(ValueError, match="Python objects"):
        load_spectra(pickled)
    many = tmp_path / "many.npz"   # each member small, all together over the total bound
    np.savez(many, **{f"{i}/spectrum": np.zeros(100) for i in range(20)})
    with pytest.raises(ValueError, match="would decompress to 18560 bytes in all, more than the 10000 bytes"):
        load_spectra(many, max_total_bytes=10_000)
    good = load_spectra(study / "spectra.npz", max_member_bytes=spectra_member_bound(144))
    assert sorted(good) == ["0", "1", "2", "3", "4"] and good["0"]["spectrum"].shape == (144,)


# ----- a sweep folder ----------------------------------------------------------------------------
def build_sweep(out: Path, cell_summary: dict) -> Path:
    """A two-cell λ sweep folder (sweep.json, prevalence.csv, cells/*/summary.json) as
    ``landscape sweep`` lays it out, with the study fixture's summary as each cell's."""
    names = ["lambda=0.001", "lambda=0.002"]
    out.mkdir(parents=True)
    rows = []
    for k, name in enumerate(names):
        (out / "cells" / name).mkdir(parents=True)
        write_json(out / "cells" / name / "summary.json", cell_summary)
        rows.append({"cell": name, "lambda": 0.001 * (k + 1), "n_trajectories": 32, "dnc_count": 18, "dnc_fraction": 0.5625,
                     "dnc_ci_low": 0.39, "dnc_ci_high": 0.72, "uncertified_count": 3, "uncertified_fraction": 0.09375,
                     "uncertified_ci_low": 0.03, "uncertified_ci_high": 0.24, "mean_logit_rank": 3.3,
                     "n_distinct_points": 3, "dynamics": "gd(lr=0.5) → newton-mr; init gaussian",
                     "logit_rank_counts": {"3": 18, "2": 9}, "uncertified_by_reason": {"max_iter": 3},
                     "unseen_mass": 0.0, "count_DNC": 18, "frac_DNC": 0.5625, "ci_low_DNC": 0.39, "ci_high_DNC": 0.72,
                     "count_pairs": 9, "frac_pairs": 0.28125, "ci_low_pairs": 0.15, "ci_high_pairs": 0.45})
    write_prevalence_csv(out / "prevalence.csv", rows, ["lambda"])
    write_json(out / "sweep.json", {
        "sweep_config": {"name": "tiny", "sweep": {"lambda": [0.001, 0.002]}}, "confidence": 0.95,
        "cells": [{"name": n, "overrides": {"lambda": 0.001 * (k + 1)}, "dir": f"cells/{n}", "status": "ran",
                   "n_trajectories": 32} for k, n in enumerate(names)],
        "prevalence": rows,
        "paired": [{"axis": "lambda", "first": names[0], "second": names[1], "label": "DNC", "both": 16,
                    "first_only": 2, "second_only": 0, "neither": 14, "difference": 0.0625, "ci_low": -0.01,
                    "ci_high": 0.2}]})
    return out


@pytest.fixture(scope="module")
def sweep_dir(study, tmp_path_factory):
    return build_sweep(tmp_path_factory.mktemp("sweep") / "sweep", json.loads((study / "summary.json").read_text()))


def test_the_crafted_sweep_folder_reports(sweep_dir):
    text = render_sweep_report(sweep_dir)
    assert "fig-accumulation-cells" in figure_ids(text) and "<td>16</td><td>2</td><td>0</td><td>14</td>" in text


def _tamper_sweep(sweep_dir, dest, edit=None, edit_rows=None) -> Path:
    shutil.copytree(sweep_dir, dest)
    if edit is not None:
        s = json.loads((dest / "sweep.json").read_text())
        edit(s)
        (dest / "sweep.json").write_text(json.dumps(s))
    if edit_rows is not None:
        with (dest / "prevalence.csv").open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        header = list(rows[0])
        edit_rows(rows, header)
        with (dest / "prevalence.csv").open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=header)
            w.writeheader()
            w.writerows(rows)
    return dest


@pytest.mark.parametrize("field", ["paired[0].both", "paired[0].first_only", "paired[0].neither",
                                   "paired[0].difference", "paired[0].ci_low", "cells[0].n_trajectories",
                                   "confidence"])
def test_sweep_numbers_are_type_checked(sweep_dir, tmp_path, field):
    folder = _tamper_sweep(sweep_dir, tmp_path / "s", lambda s: set_path(s, field, BAD))
    with pytest.raises(ReportInputError, match=rf"sweep\.json: {re.escape(field)} must be "):
        render_sweep_report(folder)


def test_sweep_axis_names_cell_folders_and_csv_numbers_are_checked(sweep_dir, tmp_path, capsys):
    def bad_axis(s):
        s["sweep_config"]["sweep"] = {f"lambda{SCRIPT}": [0.001, 0.002]}
    folder = _tamper_sweep(sweep_dir, tmp_path / "a", bad_axis)
    assert cli_main(["report", str(folder)]) == 2
    assert "sweep.json: sweep_config.sweep has the axis" in one_line_error(capsys)
    for i, where in enumerate(("../../outside", "/etc", "cells/../../x")):
        folder = _tamper_sweep(sweep_dir, tmp_path / f"d{i}", lambda s: set_path(s, "cells[0].dir", where))
        with pytest.raises(ReportInputError, match="relative path inside"):
            render_sweep_report(folder)

    def bad_number(rows, header):
        rows[0]["lambda"] = BAD
    folder = _tamper_sweep(sweep_dir, tmp_path / "c", edit_rows=bad_number)
    with pytest.raises(ReportInputError, match=r'prevalence\.csv: row 1, column "lambda" must be a number'):
        render_sweep_report(folder)

    def bad_ranks(rows, header):
        rows[1]["logit_rank_counts"] = json.dumps({BAD: 3})
    folder = _tamper_sweep(sweep_dir, tmp_path / "r", edit_rows=bad_ranks)
    with pytest.raises(ReportInputError, match="row 2, column logit_rank_counts"):
        render_sweep_report(folder)
    cell = _tamper_sweep(sweep_dir, tmp_path / "u")
    s = json.loads((cell / "cells" / "lambda=0.001" / "summary.json").read_text())
    s["unseen"]["n1"] = BAD
    (cell / "cells" / "lambda=0.001" / "summary.json").write_text(json.dumps(s))
    with pytest.raises(ReportInputError, match=r"lambda=0\.001/summary\.json: unseen\.n1 must be an integer"):
        render_sweep_report(cell)


def test_sweep_strings_are_escaped(sweep_dir, tmp_path):
    def strings(s):
        s["sweep_config"]["name"] = SCRIPT
        for c in s["cells"]:
            c["status"] = "ran" if c is s["cells"][0] else IMG
            c["name"] = c["name"] + IMG
            c["dir"] = f"cells/{c['name'].split('<')[0]}"
        s["paired"][0].update({"axis": SCRIPT, "first": IMG, "second": SCRIPT, "label": IMG})

    def rows(rows, header):
        for r in rows:
            r["dynamics"] = SCRIPT
            r["cell"] = IMG
    folder = _tamper_sweep(sweep_dir, tmp_path / "s", strings, rows)
    text = write_sweep_report(folder).read_text(encoding="utf-8")
    assert_inert(text)
    assert f"<h2>Paired differences of the {esc(IMG)} fraction</h2>" in text and esc(SCRIPT) in text


# ----- a net folder ------------------------------------------------------------------------------
needs_net = pytest.mark.skipif(not (NET / "summary.json").is_file(), reason="data/net/digits-linear is not committed")


def _net_folder(dest: Path, edit=None) -> Path:
    dest.mkdir()
    shutil.copy(NET / "config.json", dest / "config.json")
    s = json.loads((NET / "summary.json").read_text())
    if edit is not None:
        edit(s)
    (dest / "summary.json").write_text(json.dumps(s))
    return dest


@needs_net
@pytest.mark.parametrize("field", ["seeds[0].logit_rank", "seeds[0].seed", "seeds[0].loss", "seeds[0].train_accuracy",
                                   "seeds[0].layers[0].above_atol", "dataset.K", "dataset.n_train", "ufm.P",
                                   "dynamics.training.lr", "handoff_loss_gap.max_abs", "labels.n"])
def test_net_numbers_are_type_checked(tmp_path, field):
    folder = _net_folder(tmp_path / "net", lambda s: set_path(s, field, BAD))
    with pytest.raises(ReportInputError, match=rf"summary\.json: {re.escape(field)} must be "):
        render_net_report(folder)


@needs_net
def test_net_report_refuses_on_the_command_line(tmp_path, capsys):
    folder = _net_folder(tmp_path / "net", lambda s: set_path(s, "seeds[0].logit_rank", BAD))
    assert cli_main(["report", str(folder)]) == 2
    assert "summary.json: seeds[0].logit_rank must be an integer or null, not a string" in one_line_error(capsys)
    folder = _net_folder(tmp_path / "net2", lambda s: set_path(s, "ufm.spec.L", 10**9))
    with pytest.raises(ReportInputError, match="ufm.spec.L must be between 1 and 1000"):
        render_net_report(folder)


@needs_net
def test_net_strings_are_escaped(tmp_path):
    def strings(s):
        s["net"] = SCRIPT
        s["dataset"]["name"] = IMG
        s["dynamics"]["training"]["method"] = SCRIPT
        s["dynamics"]["regularisation"] = {"kind": IMG}
        s["dynamics"]["handoff"][0]["engine"] = SCRIPT
        for x in s["seeds"]:
            x.update({"network_label": SCRIPT, "ufm_label": IMG, "ufm_stop_reason": 7})
        s["labels"]["fractions"] = {SCRIPT: v for v in s["labels"]["fractions"].values()}
    text = write_net_report(_net_folder(tmp_path / "net", strings)).read_text(encoding="utf-8")
    assert_inert(text)
    assert f"<td>{esc(SCRIPT)}</td><td>{esc(IMG)}</td><td>7</td>" in text


# ----- the helpers -------------------------------------------------------------------------------
def test_check_fields_paths():
    doc = {"a": [{"b": 1}, {"b": "x"}], "m": {"k1": {"c": 2}, "k<2>": {"c": 2.5}}, "n": None}
    check_fields(doc, {"a[].c": "int", "n.x": "int", "missing[].y": "num"}, "f.json")  # absent: unchecked
    with pytest.raises(ReportInputError, match=r"^f\.json: a\[1\]\.b must be an integer, not a string$"):
        check_fields(doc, {"a[].b": "int"}, "f.json")
    with pytest.raises(ReportInputError, match=r'^f\.json: m\["k<2>"\]\.c must be an integer or null, not a number$'):
        check_fields(doc, {"m.*.c": "int?"}, "f.json")
    with pytest.raises(ReportInputError, match=r"^f\.json: a must be an object, not a list$"):
        check_fields(doc, {"a.b": "int"}, "f.json")
    check_fields({"x": float("inf")}, {"x": "real"}, "f.json")
    with pytest.raises(ReportInputError, match="must be a finite number, not inf"):
        check_fields({"x": float("inf")}, {"x": "num"}, "f.json")
