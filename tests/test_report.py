"""The HTML report: content, self-containedness, and rendering in headless Chromium.

The browser tests need Debian's ``chromium`` (installed by ``.ci/run``); without it they skip.
"""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from plotly.offline import get_plotlyjs

from landscape.cli import main as cli_main
from landscape.viz.report import figure_ids, headline_text, load_results, write_report
from study_fixture import N, build_study

ROOT = Path(__file__).resolve().parents[1]

CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (CI installs Debian's chromium in .ci/run)")
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


def test_headline_without_certified_points():
    s = {"headline": {"dnc_fraction": 0.0, "dnc_ci_low": 0.0, "dnc_ci_high": 0.5, "lowest_loss_label": None,
                      "lowest_loss": None, "lowest_loss_point": None}}
    assert headline_text(s) == "DNC reached by 0.0% of starts [0.0%, 50.0%]; no critical point was certified."


def test_load_results_reads_every_file(study):
    res = load_results(study)
    assert res.n_trajectories == N == 32
    assert sorted(res.analyses) == [0, 1, 2, 3, 4] and sorted(res.spectra) == ["0", "1", "2", "3", "4"]
    assert res.tree["roots"] == ["merge:0", "leaf:2"]
    assert res.analyses[0]["label"] == "DNC" and len(res.spectra["0"]["spectrum"]) == 144


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


# ----- headless Chromium -----------------------------------------------------------------------
def _chromium(page, profile, *extra) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--virtual-time-budget=20000", *extra, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


def rendered(page, profile) -> tuple[dict[str, int], str]:
    """Render ``page`` and return (figure id → number of plotly ``main-svg`` elements drawn in its
    section, the text collected in #script-errors)."""
    dom = _chromium(page, profile, "--dump-dom").stdout
    parts = re.split(r'<section class="figure" data-figure-id="([^"]+)">', dom)
    svgs = {fid: body.split("</section>", 1)[0].count('class="main-svg"') for fid, body in zip(parts[1::2], parts[2::2])}
    m = re.search(r'<pre id="script-errors" data-count="(\d+)">(.*?)</pre>', dom, re.S)
    assert m, "the error collector is missing from the rendered page"
    return svgs, m.group(2) if int(m.group(1)) else ""


@needs_chromium
def test_report_renders_every_figure_in_chromium(report, tmp_path):
    svgs, errors = rendered(report, tmp_path / "profile")
    assert errors == ""
    assert list(svgs) == EXPECTED_FIGURES
    missing = [f for f, n in svgs.items() if n == 0]
    assert not missing, f"figures with no rendered plot: {missing}"
    shot = report.with_name("report.png")
    _chromium(report, tmp_path / "profile2", "--hide-scrollbars", "--window-size=1280,7000", f"--screenshot={shot}")
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
