"""The HTML report: content, self-containedness, and rendering in headless Chromium.

The browser tests need Debian's ``chromium`` (installed by ``.ci/run``); without it they skip.
"""
import json
import re
import shutil
from pathlib import Path

import pytest
from plotly.offline import get_plotlyjs

from landscape.cli import main as cli_main
from landscape.study.result import StudyResult
from landscape.viz.report import figure_ids, headline_text, load_results, write_report
from browser import chromium, needs_chromium, rendered
from study_fixture import N, build_study

ROOT = Path(__file__).resolve().parents[1]

EXAMPLE = ROOT / "data" / "example_study"
EXPECTED_FIGURES = ["fig-basins", "fig-disconnectivity", "fig-loss-rank", "fig-accumulation",
                    "fig-spectrum-1", "fig-sv-1", "fig-logits-1",   # point 1: pairs, the lowest loss
                    "fig-spectrum-0", "fig-sv-0", "fig-logits-0"]   # point 0: DNC, most starts


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return build_study(tmp_path_factory.mktemp("study"))


@pytest.fixture(scope="module")
def report(study):
    return write_report(study)


def test_report_content(report):
    text = report.read_text(encoding="utf-8")
    assert figure_ids(text) == EXPECTED_FIGURES
    assert text.count(get_plotlyjs()[:200]) == 1  # plotly.js embedded exactly once
    assert not re.search(r"<script[^>]+src=", text)  # nothing fetched: opens with no network
    assert "DNC reached by 56.2% of starts [39.3%, 71.8%]; the lowest-loss structure is pairs" in text
    table = text[text.index("Distinct critical points (5)"):]
    assert table.count("<tr>") == 6  # header + 5 points
    assert "gd(lr=0.5) → newton-mr; init gaussian" in text
    assert "max_iter 3 (9.4%" in text


def _result(summary: dict) -> StudyResult:
    """The typed view of a summary.json content (the keys a test leaves out: none, empty)."""
    return StudyResult.from_summary(".", {"n_trajectories": 2, "points": [], "stop_reasons": {}, **summary})


def test_headline_without_certified_points():
    s = {"headline": {"dnc_fraction": 0.0, "dnc_ci_low": 0.0, "dnc_ci_high": 0.5, "lowest_loss_label": None,
                      "lowest_loss": None, "lowest_loss_point": None}}
    assert headline_text(_result(s)) == "DNC reached by 0.0% of starts [0.0%, 50.0%]; no critical point was certified."


def test_load_results_reads_every_file(study):
    res = load_results(study)
    assert res.n_trajectories == N == 32
    # spectra, analyses and points share one key: the integer point id
    assert sorted(res.analyses) == sorted(res.spectra) == [p.id for p in res.points] == [0, 1, 2, 3, 4]
    assert res.tree.roots == ["merge:0", "leaf:2"]
    assert res.analyses[0]["label"] == "DNC" and len(res.spectra[0]["spectrum"]) == 144


def test_spectra_ids_that_are_not_point_ids_are_refused(study, tmp_path):
    import numpy as np
    from landscape.viz.safe import ReportInputError

    folder = Path(shutil.copytree(study, tmp_path / "study"))
    np.savez(folder / "spectra.npz", **{"p0/spectrum": np.zeros(3), "p0/method": np.array("dense")})
    with pytest.raises(ReportInputError, match=r"spectra\.npz: member id 'p0' is not a point id"):
        load_results(folder)
    np.savez(folder / "spectra.npz", **{"3/method": np.array("dense"), "03/method": np.array("dense")})
    with pytest.raises(ReportInputError, match=r"spectra\.npz: point 3 has two entries"):
        load_results(folder)


def test_load_results_gives_the_result_run_study_returns(study):
    res = load_results(study)
    r = res.result
    assert r.folder == study and r.summary == res.summary and r.n_trajectories == N
    assert [p.id for p in r.points] == [p["id"] for p in res.summary["points"]]
    assert {k: (f.count, f.ci_low, f.ci_high) for k, f in r.fractions.items()} == \
        {row["label"]: (row["count"], row["ci_low"], row["ci_high"]) for row in res.summary["labels"]}


def test_load_results_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="summary.json"):
        load_results(tmp_path)
    (tmp_path / "summary.json").write_text(json.dumps({"n_trajectories": 3}))
    with pytest.raises(ValueError, match="no 'points'"):
        load_results(tmp_path)


def test_cli_report(study, tmp_path, capsys):
    assert cli_main(["report", str(study)]) == 0
    assert f"report: {study / 'report.html'}" in capsys.readouterr().out
    assert cli_main(["report", str(tmp_path)]) == 2
    assert "is not a finished results folder" in capsys.readouterr().err


# ----- a study that mostly failed: the diagnosis first, DNC of the certified starts -----------------
PAYLOAD = '<script>alert("x")</script><img src=x onerror=alert(1)>'
DIAGNOSIS = [{"reason": "max_iter", "count": 3, "share": 3 / 32,
              "advice": "raise the iteration budget (stages.0.max_iter=5000) " + PAYLOAD},
             {"reason": "diverged" + PAYLOAD, "count": 1, "share": 1 / 32, "advice": "use --set stages.0.lr=0.1"}]
CERTIFIED = {"n_certified": 29, "dnc": 18, "fraction": 18 / 29, "ci_low": 0.44, "ci_high": 0.77}


def _diagnosed(study, tmp_path, **changes):
    """A copy of the fixture study whose summary.json holds ``changes`` (top level; ``certified``
    goes into the headline)."""
    out = tmp_path / "diagnosed"
    shutil.copytree(study, out)
    s = json.loads((study / "summary.json").read_text())
    if "certified" in changes:
        s["headline"]["certified"] = changes.pop("certified")
    s.update(changes)
    (out / "summary.json").write_text(json.dumps(s))
    return out


def test_report_shows_the_diagnosis_first_and_dnc_of_the_certified(study, tmp_path):
    text = write_report(_diagnosed(study, tmp_path, diagnosis=DIAGNOSIS, certified=CERTIFIED)).read_text()
    diag = text[text.index('<div class="diagnosis" id="diagnosis">'):text.index('id="headline"')]
    assert text.index('id="diagnosis"') < text.index('id="headline"') < text.index("<h2>Configuration</h2>")
    assert diag.count("<li>") == 2 and "<b>3 of 32 starts did not certify</b>" in diag
    assert ("<li><b>max_iter</b>: 3 of 32 starts (9.4%) — raise the iteration budget (stages.0.max_iter=5000) "
            in diag)
    assert "use --set stages.0.lr=0.1" in diag
    # the payloads in advice and reason are text, never markup
    assert "<script>alert" not in text and "<img src=x" not in text
    assert diag.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;") == 2
    headline = text[text.index('id="headline">'):]
    headline = headline[:headline.index("</p>")]
    assert ("DNC reached by 62.1% of 29 certified starts [44.0%, 77.0%] (3 of 32 starts did not certify; "
            "DNC 56.2% of all starts [39.3%, 71.8%]); the lowest-loss structure is pairs") in headline
    assert "The headline's DNC fraction is of the certified starts; the other fractions are of all 32 starts" in text


def test_a_summary_without_diagnosis_or_with_an_empty_one_renders_as_before(study, tmp_path, report):
    old = report.read_text()   # the fixture's summary.json has neither key
    assert 'id="diagnosis"' not in old and "certified starts" not in old
    text = write_report(_diagnosed(study, tmp_path, diagnosis=[], certified=CERTIFIED)).read_text()
    assert 'id="diagnosis"' not in text and "certified starts" not in text
    assert "DNC reached by 56.2% of starts [39.3%, 71.8%]; the lowest-loss structure is pairs" in text
    s = json.loads((study / "summary.json").read_text())
    # a diagnosis without headline.certified (a partial summary): the fractions of all starts
    assert headline_text(_result({**s, "diagnosis": DIAGNOSIS})).startswith("DNC reached by 56.2% of starts")
    nothing = {**s, "diagnosis": DIAGNOSIS, "n_trajectories": 32,
               "headline": {**s["headline"], "lowest_loss_point": None,
                            "certified": {"n_certified": 0, "dnc": 0, "fraction": None, "ci_low": None,
                                          "ci_high": None}}}
    assert headline_text(_result(nothing)) == "DNC: none of the 32 starts certified; no critical point was certified."


@pytest.mark.parametrize("change, message", [
    ({"diagnosis": [{**DIAGNOSIS[0], "count": "3"}]}, "diagnosis[0].count must be an integer, not a string"),
    ({"diagnosis": [{**DIAGNOSIS[0], "share": "9%"}]}, "diagnosis[0].share must be a finite number or null"),
    ({"diagnosis": [{**DIAGNOSIS[0], "advice": ["<b>"]}]}, "diagnosis[0].advice must be a string, not a list"),
    ({"diagnosis": "max_iter"}, "diagnosis must be a list or null, not a string"),
    ({"diagnosis": ["max_iter"]}, "diagnosis[0] must be an object, not a string"),
    ({"certified": {**CERTIFIED, "n_certified": 29.5}}, "headline.certified.n_certified must be an integer"),
    ({"certified": {**CERTIFIED, "fraction": "0.6"}}, "headline.certified.fraction must be a finite number"),
])
def test_the_new_summary_fields_are_type_checked(study, tmp_path, change, message):
    from landscape.viz.safe import ReportInputError

    with pytest.raises(ReportInputError, match=re.escape(message)):
        load_results(_diagnosed(study, tmp_path, **change))


# ----- headless Chromium -----------------------------------------------------------------------
@needs_chromium
def test_report_renders_every_figure_in_chromium(report, tmp_path):
    svgs, errors = rendered(report, tmp_path / "profile")
    assert errors == ""
    assert list(svgs) == EXPECTED_FIGURES
    missing = [f for f, n in svgs.items() if n == 0]
    assert not missing, f"figures with no rendered plot: {missing}"
    shot = report.with_name("report.png")
    chromium(report, tmp_path / "profile2", "--hide-scrollbars", "--window-size=1280,7000", f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    print(f"screenshot: {shot}")


@needs_chromium
def test_example_study_report_renders(tmp_path):
    """The real finished study in data/example_study (pairs 58/96, DNC 38/96, saddle connections and
    one transition state DNC ↔ pairs; structured spectra of both minima)."""
    study = tmp_path / "example"
    shutil.copytree(EXAMPLE, study)
    page = write_report(study)
    text = page.read_text(encoding="utf-8")
    assert "DNC reached by 39.6% of starts [30.4%, 49.6%]; the lowest-loss structure is pairs" in text
    assert "The lowest barrier out of DNC is 0.001201 (transition state #4), leading to pairs (point #1)" in text
    svgs, errors = rendered(page, tmp_path / "profile")
    assert errors == ""
    per_point = ["spectrum", "sv", "logits", "groups", "density", "blocks", "gn"]
    assert list(svgs) == (["fig-basins", "fig-disconnectivity", "fig-loss-rank", "fig-accumulation"]
                          + [f"fig-{f}-1" for f in per_point] + [f"fig-{f}-0" for f in per_point])
    assert all(n > 0 for n in svgs.values()), svgs


@needs_chromium
def test_render_check_catches_a_broken_figure(report, tmp_path):
    text = report.read_text(encoding="utf-8")
    broken = tmp_path / "broken.html"
    i = re.search(r'Plotly\.newPlot\(\s*"fig-sv-0"', text).start()
    broken.write_text(text[:i] + text[i:].replace("Plotly.newPlot(", "Plotly.noSuchFunction(", 1), encoding="utf-8")
    svgs, errors = rendered(broken, tmp_path / "profile")
    assert "noSuchFunction" in errors
    assert [f for f, n in svgs.items() if n == 0] == ["fig-sv-0"]
