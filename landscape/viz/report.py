"""The HTML report of a results folder: one self-contained page, readable with no network.

:func:`load_results` reads a results folder (``summary.json`` and, when present, ``tree.json``,
``spectra.npz`` and the per-point analyses in ``study.sqlite``); :func:`study_figures` builds the
figures of :mod:`landscape.figures` from it; :func:`write_report` writes ``report.html``: the
diagnosis of a study whose starts mostly failed (summary.json ``diagnosis``: one line per stop
reason with its advice, first on the page), the headline answer (the DNC fraction of the certified
starts, ``headline.certified``, when there is a diagnosis; of all starts otherwise), the
configuration, the figures and a table of the distinct critical points. A summary.json written
before ``diagnosis`` and ``headline.certified`` existed renders as before.

The page embeds plotly.js once (one inline ``<script>``), then one ``<div>`` per figure inside a
``<section data-figure-id=…>``. A small script placed before plotly.js collects every script error
into ``<pre id="script-errors">`` (shown in red at the top of the page when not empty), so a
reader, or a headless-browser test, sees when a figure failed to draw.

A results folder is untrusted input (:mod:`landscape.viz.safe`): :func:`load_results` type-checks
the numbers and ids of summary.json and tree.json, keeps the tree file inside the folder and
bounds what spectra.npz may decompress to; every value written into the page is escaped.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import plotly.graph_objects as go

from ..io.results import (DB_NAME, FILES, atomic_write_text, has_lambda0_database, load_spectra, read_json,
                          spectra_member_bound)
from ..io.store import StudyStore
from ..study.lambda0 import Lambda0Result, is_lambda0_folder
from ..study.result import DisconnectivityTree, StudyPoint, StudyResult
from ..study.summary import featured_points as pick
from . import figures
from .safe import (FIGURE_KEY, STUDY_SUMMARY_FIELDS, TREE_FIELDS, ReportInputError, check_fields, contained_path,
                   esc)

REPORT_NAME = FILES["report"]


@dataclass
class Results:
    """A results folder, read (:func:`load_results`): ``summary`` (summary.json), ``tree``
    (tree.json as a :class:`~landscape.study.result.DisconnectivityTree`, or None), ``spectra`` (point id → its entry of spectra.npz,
    :func:`landscape.io.results.load_spectra`: ``spectrum``, ``method``, ``parts``, ``sv``; {} when
    absent), ``analyses`` (point id → :meth:`landscape.analysis.point.PointAnalysis.to_dict` from
    study.sqlite, {} when absent), ``structured`` (point id → the ``landscape spectrum`` record)
    and ``continuation`` (the stored ``landscape continue`` runs). Every mapping is keyed by the
    integer point id of ``points``.

    :attr:`result` is the typed view of the same study, the
    :class:`~landscape.study.result.StudyResult` :func:`landscape.run_study` returns (headline,
    points, fractions with their intervals, transition states); :func:`study_figures` draws the
    report's figures from a ``Results``, and the page reads the typed records only."""

    path: Path
    summary: dict
    tree: DisconnectivityTree | None = None
    spectra: dict = field(default_factory=dict)
    analyses: dict = field(default_factory=dict)
    structured: dict = field(default_factory=dict)
    continuation: list = field(default_factory=list)

    @cached_property
    def result(self) -> StudyResult:
        """The study as :func:`landscape.run_study` returns it: a
        :class:`~landscape.study.result.StudyResult` read from the same summary.json (``report``:
        the folder's report.html where it exists)."""
        report = self.path / REPORT_NAME
        return StudyResult.from_summary(self.path, self.summary, report=report if report.is_file() else None)

    @property
    def points(self) -> list[StudyPoint]:
        return self.result.points

    @property
    def dynamics(self) -> str | None:
        return self.result.dynamics

    @property
    def confidence(self) -> float:
        """Confidence level of the intervals (summary ``tolerances.confidence``; 0.95 if absent)."""
        return self.result.confidence

    @property
    def n_trajectories(self) -> int:
        return self.result.n_trajectories

    def point(self, point_id: int) -> StudyPoint:
        """The distinct point ``point_id``."""
        try:
            return self.result.point(point_id)
        except KeyError:
            raise KeyError(f"no point with id {point_id} in {self.path / 'summary.json'}") from None


def load_results(out_dir) -> "Results | Lambda0Result":
    """Read a results folder written by ``landscape run`` (the files of the module docstring).

    A λ = 0 study's folder (summary.json ``"kind": "lambda0"``) is read as what
    :func:`landscape.run_study` returned for it: a :class:`~landscape.study.lambda0.Lambda0Result`
    (the summary, every start's record, the certified directions with their θ̂;
    :meth:`~landscape.study.lambda0.Lambda0Result.load`, every value checked); it has no points,
    figures or report page.

    Raises FileNotFoundError without ``summary.json`` and ValueError when it has no ``points``
    (a run that stopped before its analysis stage), or a :class:`~landscape.viz.safe.ReportInputError`
    (a ValueError) for a value the report refuses: a number or id of the wrong type, a tree file
    outside the folder, a spectra file that would decompress past its bound."""
    out = Path(out_dir)
    sp = out / FILES["summary"]
    if not sp.is_file():
        if has_lambda0_database(out):
            raise FileNotFoundError(f"{sp} does not exist: {out} is a λ = 0 run that has not finished; continue it "
                                    f"with `landscape run --resume {out}`")
        raise FileNotFoundError(f"{sp} does not exist: {out} is not a finished results folder")
    if is_lambda0_folder(out):
        return Lambda0Result.load(out)
    summary = read_json(sp)
    if isinstance(summary, dict) and "points" not in summary:
        raise ValueError(f"{sp} has no 'points': the run that wrote it did not analyse its critical points")
    check_summary(summary, sp)
    tree_name = (summary.get("graph") or {}).get("tree") or FILES["tree"]
    tree_path = contained_path(out, tree_name, f"{sp}: graph.tree")
    tree = read_json(tree_path) if tree_path.is_file() else None
    try:
        if tree is not None:
            check_fields(tree, TREE_FIELDS, tree_path)
            tree = DisconnectivityTree.from_json(tree)
        res = Results(out, summary, tree)
        res.result   # the typed view, read once here: a value it cannot read is the file's fault
    except (KeyError, TypeError, ValueError) as exc:   # RecordError is a ValueError
        if isinstance(exc, ReportInputError):
            raise
        raise ReportInputError(f"{sp} (or its tree.json): a value this version cannot read "
                               f"({type(exc).__name__}: {exc})") from None
    spectra = (point_spectra(load_spectra(out / FILES["spectra"],
                                          max_member_bytes=spectra_member_bound(res.result.model.P)),
                             out / FILES["spectra"])
               if (out / FILES["spectra"]).is_file() else {})
    analyses, structured, continuation = {}, {}, []
    if (out / DB_NAME).is_file():
        with StudyStore.open(out / DB_NAME, readonly=True) as store:
            pts = store.points()
            analyses = {int(p.id): p.analysis for p in pts if p.analysis is not None}
            structured = {int(p.id): r.data for p in pts if (r := store.spectrum_record(p.id)) is not None}
            continuation = store.continuations()
    res.spectra, res.analyses, res.structured, res.continuation = spectra, analyses, structured, continuation
    return res


def point_spectra(spectra: dict, source) -> dict[int, dict]:
    """The entries of :func:`landscape.io.results.load_spectra` keyed by integer point id, as
    ``points`` and ``analyses`` are (spectra.npz names its members by the decimal id,
    ``"3/spectrum"``, in every folder ever written). A member whose id is not a non-negative
    decimal integer, or a second entry of one point (``"03"`` beside ``"3"``), is a
    :class:`~landscape.viz.safe.ReportInputError` naming ``source``."""
    out: dict[int, dict] = {}
    for key, entry in spectra.items():
        if not (isinstance(key, str) and key.isascii() and key.isdigit()):
            raise ReportInputError(f"{source}: member id {key!r} is not a point id (a non-negative integer)")
        if int(key) in out:
            raise ReportInputError(f"{source}: point {int(key)} has two entries (member id {key!r})")
        out[int(key)] = entry
    return out


def check_summary(summary, source) -> None:
    """Type-check the numbers and ids of a study's summary.json (:data:`~landscape.viz.safe.STUDY_SUMMARY_FIELDS`);
    ``source`` names the file in the message of the :class:`~landscape.viz.safe.ReportInputError`."""
    check_fields(summary, STUDY_SUMMARY_FIELDS, source)
    if not isinstance(summary.get("points"), list):
        raise ReportInputError(f"{source}: points must be a list")
    if not isinstance(summary.get("config"), dict) or not isinstance(summary["config"].get("model"), dict):
        raise ReportInputError(f"{source}: config.model must be an object")


def featured_points(res: Results) -> list[tuple[int, str]]:
    """Points the report shows in detail (:func:`landscape.study.summary.featured_points`), only
    those whose spectrum and analysis are stored."""
    return [(pid, why) for pid, why in pick(res.points) if pid in res.spectra and pid in res.analyses]


def point_figures(res: Results, point_id: int) -> list[tuple[str, go.Figure]]:
    """Hessian spectrum, singular values per layer and Z̄ heatmap of one point, as (key, figure)."""
    a, s, p = res.analyses[int(point_id)], res.spectra[int(point_id)], res.point(point_id)
    name = f"point #{point_id} ({p.label}, loss {p.loss:.8g})"
    return [
        (f"spectrum-{point_id}", figures.hessian_spectrum_figure(
            s["spectrum"], tau=a["tau"], symmetry_zero_modes=a["symmetry_zero_modes"], method=s["method"],
            title=f"Hessian spectrum, {name}")),
        (f"sv-{point_id}", figures.singular_values_figure(
            s["sv"], title=f"Singular values per layer, {name}", rank_rtol=(a.get("thresholds") or {}).get("rank_rtol"))),
        (f"logits-{point_id}", figures.logits_heatmap_figure(a["Zbar"], title=f"Class-mean logits Z̄, {name}")),
    ] + structured_figures(res, point_id)


def structured_figures(res: Results, point_id: int) -> list[tuple[str, go.Figure]]:
    """The ``landscape spectrum`` figures of one point (groups, density, blocks, GN/residual),
    when its record is stored."""
    rec = res.structured.get(int(point_id))
    if rec is None:
        return []
    out = [(f"groups-{point_id}", figures.spectrum_groups_figure(rec)),
           (f"density-{point_id}", figures.spectral_density_figure(rec))]
    if rec.get("blocks"):
        out.append((f"blocks-{point_id}", figures.block_spectra_figure(rec)))
    if rec.get("gauss_newton") is not None:
        out.append((f"gn-{point_id}", figures.gauss_newton_figure(rec)))
    return out


def study_figures(res: Results) -> list[tuple[str, go.Figure]]:
    """Every figure of the report, as (key, figure), in page order."""
    r = res.result
    n, dyn = r.n_trajectories, r.dynamics
    out = [("basins", figures.basin_fractions_figure(r.points, r.fractions, n_trajectories=n, dynamics=dyn,
                                                     uncertified=r.uncertified, confidence=r.confidence))]
    if res.tree is not None:
        out.append(("disconnectivity", figures.disconnectivity_figure(
            res.tree, {p.id: p for p in r.points}, n_trajectories=n, dynamics=dyn)))
    out.append(("loss-rank", figures.loss_rank_figure(r.points, n_trajectories=n, dynamics=dyn)))
    bb = r.headline.basin_barriers
    if any(b.barrier is not None for b in bb):
        out.append(("barrier-basin", figures.barrier_basin_figure(bb, n_trajectories=n, dynamics=dyn)))
    if r.accumulation is not None:
        out.append(("accumulation", figures.accumulation_figure(r.accumulation, unseen=r.unseen, dynamics=dyn)))
    for pid, _ in featured_points(res):
        out += point_figures(res, pid)
    for k, c in enumerate(res.continuation):
        rec = c.record
        out.append((f"continuation-{k}", figures.width_figure(rec, L=r.model.L) if rec["param"] == "d"
                    else figures.bifurcation_figure(rec)))
    return out


# ----- HTML -------------------------------------------------------------------------------------
_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } .headline { font-size: 1.25em; background: #eef4fb; padding: 0.7em 1em;
border-left: 5px solid #1f77b4; } table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 2px 6px; text-align: right; } th { background: #f3f3f3; }
td.l, th.l { text-align: left; } section.figure { margin: 1.5em 0; border-top: 1px solid #eee; }
#script-errors { color: #b00; background: #fee; padding: 0.5em; white-space: pre-wrap; }
#script-errors:empty { display: none; } .note { color: #555; font-size: 0.9em; }
.diagnosis { background: #fff4e5; border-left: 5px solid #e67e22; padding: 0.5em 1em; margin: 0.7em 0; }
.diagnosis ul { margin: 0.3em 0; }
"""

# Collects script errors into the page before anything else runs (module docstring).
_ERROR_COLLECTOR = """<pre id="script-errors" data-count="0"></pre>
<script>
(function () {
  var el = document.getElementById("script-errors");
  function add(msg) { el.textContent += msg + "\\n"; el.dataset.count = String(Number(el.dataset.count) + 1); }
  window.addEventListener("error", function (e) { add("error: " + e.message + " (" + e.filename + ":" + e.lineno + ")"); });
  window.addEventListener("unhandledrejection", function (e) { add("unhandled rejection: " + e.reason); });
})();
</script>"""


def _e(x) -> str:
    """Every value written into the page goes through this (:func:`landscape.viz.safe.esc`)."""
    return esc(x)


def _num(v, fmt: str = ".6g") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, fmt)


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _certified(result: StudyResult):
    """``headline.certified`` when the headline reports DNC of the certified starts: the study has
    a diagnosis (its starts mostly failed) and the certified counts; else None."""
    cert = result.headline.certified
    if not result.diagnosis or cert is None or not isinstance(cert.n_certified, int):
        return None
    return cert


def headline_text(result: StudyResult) -> str:
    """'DNC reached by X% of starts [lo%, hi%]; the lowest-loss structure is Y (…)', and the lowest
    transition-state barrier out of DNC when one is known, as plain text. A study with a diagnosis
    (most starts uncertified) reports DNC 'of N certified starts' (``headline.certified``), with the
    count that did not certify and the fraction of all starts beside it. ``result``: a
    :class:`~landscape.study.result.StudyResult` (``Results.result``, or what ``run_study`` returns)."""
    h = result.headline
    all_starts = f"{_pct(h.dnc_fraction)} of starts [{_pct(h.dnc_ci_low)}, {_pct(h.dnc_ci_high)}]"
    cert = _certified(result)
    if cert is None:
        txt = f"DNC reached by {all_starts}"
    else:
        n, k = result.n_trajectories, cert.n_certified
        txt = (f"DNC reached by {_pct(cert.fraction)} of {k} certified starts [{_pct(cert.ci_low)}, "
               f"{_pct(cert.ci_high)}] ({n - k} of {n} starts did not certify; "
               f"DNC {all_starts.replace('of starts', 'of all starts')})" if k else
               f"DNC: none of the {n} starts certified")
    if h.lowest_loss_point is None:
        return txt + "; no critical point was certified."
    txt += (f"; the lowest-loss structure is {h.lowest_loss_label} "
            f"(loss {h.lowest_loss:.10g}, point #{h.lowest_loss_point}).")
    if h.dnc_barrier is not None:
        txt += (f" The lowest barrier out of DNC is {h.dnc_barrier:.4g} (transition state #{h.dnc_barrier_saddle}),"
                f" leading to {h.dnc_barrier_to_label} (point #{h.dnc_barrier_to}).")
    return txt


def _config_html(summary: dict) -> str:
    c = summary["config"]
    m = c.get("model", {})
    rows = [("study", c.get("name")), ("model", ", ".join(f"{k}={v}" for k, v in m.items())),
            ("dynamics", summary.get("dynamics")), ("trajectories", summary.get("n_trajectories")),
            ("seed", c.get("seed")), ("certify_tol (‖∇L‖)", c.get("certify_tol")),
            ("stop reasons", ", ".join(f"{k} {v}" for k, v in (summary.get("stop_reasons") or {}).items())),
            ("wall time", f"{summary['wall_time_s']:.1f} s" if summary.get("wall_time_s") is not None else "-")]
    for k, v in (summary.get("tolerances") or {}).items():
        rows.append((f"tolerance: {k}", json.dumps(v) if isinstance(v, (dict, list)) else v))
    env = summary.get("environment") or {}
    rows.append(("environment", ", ".join(f"{k} {v}" for k, v in env.items())))
    body = "".join(f"<tr><th class='l'>{_e(k)}</th><td class='l'>{_e(v)}</td></tr>" for k, v in rows)
    full = _e(json.dumps(c, indent=2))
    return f"<table>{body}</table><details><summary>full configuration (JSON)</summary><pre>{full}</pre></details>"


_POINT_COLS = ("id", "kind", "label", "loss", "‖∇L‖", "rank pattern", "index", "nullity (sym + excess)", "type",
               "verified", "smallest non-zero μ", "theory", "starts", "fraction [interval]")


def _verified_cell(p: StudyPoint) -> str:
    if p.verified:
        return "yes" + (" (index ≥)" if p.index_is_lower_bound else "")
    why = [w for w, bad in (("Lanczos not converged", p.lanczos_converged is False),
                            ("symmetry modes not null", p.symmetry_verified is False)) if bad]
    return "NO: " + ", ".join(why)


def _theory_cell(t) -> str:
    if t is None:
        return "-"
    if not t.matched:
        return f"no match ({t.reason or ''})"
    return f"{t.pattern} (Δloss {_num(t.loss_difference, '.2e')})"


def _points_html(points: list[StudyPoint]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in _POINT_COLS)
    rows = []
    for p in sorted(points, key=lambda p: p.loss):
        frac = (f"{_num(p.fraction, '.4f')} [{_num(p.ci_low, '.4f')}, {_num(p.ci_high, '.4f')}]"
                if p.fraction is not None else "-")
        cells = [p.id, p.kind, p.label, _num(p.loss, ".10g"), _num(p.grad_norm, ".2e"),
                 figures._fmt_rank(p.rank_pattern), p.index,
                 f"{p.nullity} ({p.symmetry_zero_modes} + {p.excess_zero_modes})", p.type,
                 _verified_cell(p), _num(p.smallest_nonzero_eigenvalue, ".3g"), _theory_cell(p.theory_match),
                 p.basin_count, frac]
        rows.append("<tr>" + "".join(f"<td{' class=l' if i in (1, 2, 8, 9, 11) else ''}>{_e(v)}</td>"
                                     for i, v in enumerate(cells)) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _uncertified_html(result: StudyResult) -> str:
    parts = []
    if result.uncertified:
        parts.append("<p>Starts that did not certify (counted in every denominator): " + "; ".join(
            f"{_e(k)} {_e(u.count)} ({_e(_pct(u.fraction))} [{_e(_pct(u.ci_low))}, "
            f"{_e(_pct(u.ci_high))}])" for k, u in result.uncertified.items()) + ".</p>")
    un = result.unseen
    if un is not None and un.estimate is not None:
        parts.append(f"<p>Good–Turing estimate of the unseen mass (probability that the next start reaches a "
                     f"minimum not seen yet): N₁/n = {_e(un.n1)}/{_e(un.n)} = "
                     f"{_e(format(un.estimate, '.4f'))}.</p>")
    return "".join(parts)


def figure_sections(figs: list[tuple[str, go.Figure]]) -> list[str]:
    """One ``<section data-figure-id=…>`` per (key, figure), plotly.js not included. A key becomes
    an element id and a JavaScript string, so it must match :data:`~landscape.viz.safe.FIGURE_KEY`."""
    bad = [key for key, _ in figs if not FIGURE_KEY.fullmatch(key)]
    if bad:
        raise ReportInputError(f"figure key {bad[0]!r} holds characters other than letters, digits and '_.=-'")
    return [f'<section class="figure" data-figure-id="fig-{key}">'
            + fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{key}",
                          config={"displaylogo": False, "responsive": True})
            + "</section>" for key, fig in figs]


def html_page(title: str, parts: list[str]) -> str:
    """A self-contained page: the error collector, plotly.js inline (once), a title, ``parts``."""
    from plotly.offline import get_plotlyjs

    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style></head><body>", _ERROR_COLLECTOR,
        f'<script type="text/javascript">{get_plotlyjs()}</script>', f"<h1>{_e(title)}</h1>", *parts,
        "</body></html>"])


def render_report(res: Results) -> str:
    """The report page of :func:`write_report` as a string."""
    s, r = res.summary, res.result
    check_summary(s, res.path / FILES["summary"])
    featured = featured_points(res)
    sections = figure_sections(study_figures(res))
    feat = ("<p class='note'>Shown in detail: " + "; ".join(f"point #{_e(pid)} ({_e(why)})" for pid, why in featured)
            + ".</p>") if featured else "<p class='note'>No stored spectra: no point is shown in detail.</p>"
    missing = [] if res.tree is not None else ["tree.json (no disconnectivity graph)"]
    note = f"<p class='note'>Not in this folder: {_e('; '.join(missing))}.</p>" if missing else ""
    title = f"landscape report: {s.get('study') or s['config'].get('name')}"
    of = ("The headline's DNC fraction is of the certified starts; the other fractions are of all "
          if _certified(r) is not None else "Fractions are of all ")
    return html_page(title, [
        _diagnosis_html(r),
        f'<p class="headline" id="headline">{_e(headline_text(r))}</p>',
        f"<p class='note'>{of}{_e(res.n_trajectories)} starts, with {_e(format(res.confidence, '.0%'))} "
        f"Wilson intervals, under the dynamics {_e(res.dynamics)}.</p>",
        _uncertified_html(r), _saddle_visits_html(r), "<h2>Configuration</h2>", _config_html(s), "<h2>Figures</h2>",
        note, feat, *sections, f"<h2>Distinct critical points ({_e(len(r.points))})</h2>", _points_html(r.points)])


def _diagnosis_html(result: StudyResult) -> str:
    """The diagnosis of a study whose starts mostly failed (summary.json ``diagnosis``), one line
    per stop reason with its advice; "" when there is none (or an older summary without it)."""
    if not result.diagnosis:
        return ""
    n = result.n_trajectories
    cert = _certified(result)
    bad = f"{n - cert.n_certified} of {n}" if cert is not None else "Most"
    items = "".join(
        f"<li><b>{_e(d.reason)}</b>: {_e(d.count)} of {_e(n)} starts ({_e(_pct(d.share))}) — "
        f"{_e(d.advice)}</li>" for d in result.diagnosis)
    return (f'<div class="diagnosis" id="diagnosis"><p><b>{_e(bad)} starts did not certify</b>, by stop reason, '
            f"with what to change:</p><ul>{items}</ul></div>")


def _saddle_visits_html(result: StudyResult) -> str:
    if not result.saddle_visits:
        return ""
    return ("<p>Saddles the dynamics passed near (a finisher stopped there; the trajectory was continued past it, "
            "so these hold no basin count): " + "; ".join(
                f"point #{_e(v.point_id)} ({_e(v.label)}, index {_e(v.index)}): "
                f"{_e(v.n_trajectories)} trajectories, lingered {_e(format(v.mean_lingered, '.0f'))} iterations "
                "on average" for v in result.saddle_visits) + ".</p>")


def write_report(out_dir) -> Path:
    """Write ``report.html`` into the results folder ``out_dir`` and return its path."""
    res = load_results(out_dir)
    if not isinstance(res, Results):
        raise ValueError(f"{out_dir} is a λ = 0 study: it has no report page; `landscape inspect {out_dir}` "
                         "prints its summary, landscape.load_results reads it")
    return atomic_write_text(Path(out_dir) / REPORT_NAME, render_report(res))


def figure_ids(html_text: str) -> list[str]:
    """The figure div ids of a report page, in page order (for tests and tools)."""
    return re.findall(r'<section class="figure" data-figure-id="([^"]+)">', html_text)

