"""The HTML report of a sweep folder: the paper's figures, with intervals.

For every axis of the sweep, and for every combination of the other axes' values (at most
:data:`MAX_GROUPS` per axis), three figures against that axis: the DNC fraction with its Wilson
band, each label's and the uncertified fraction (:func:`landscape.viz.figures.prevalence_figure`,
the paper's Fig. 2 with thousands of starts and intervals), the stacked fractions per label
(:func:`landscape.viz.figures.stacked_fractions_figure`) and the distribution of the logit rank
with its mean (:func:`landscape.viz.figures.rank_distribution_figure`, the paper's Fig. 5). Then
the accumulation curve of every finished cell (from its summary.json) and, where neighbouring
cells share their starts, the table of their paired differences (sweep.json ``paired``). Reads
``sweep.json``, ``prevalence.csv`` and the cells' summaries; writes ``report.html`` beside them.

These files are untrusted input (:mod:`landscape.viz.safe`): numbers and ids are type-checked as
they are read, axis names must be plain names, a cell's folder must lie inside the sweep folder,
and every value written into the page is escaped.
"""
from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

from ..analysis.labels import DNC
from ..io.results import FILES, SWEEP_FILES, atomic_write_text, read_json
from ..study.result import Accumulation, Unseen
from ..study.sweep import read_prevalence_csv
from ..study.sweep_result import PairedDifference, SweepCell, SweepRecord
from . import figures
from .report import _e, figure_sections, html_page
from .safe import CELL_SUMMARY_FIELDS, SWEEP_FIELDS, ReportInputError, check_fields, contained_path

#: Largest number of figure groups per axis (combinations of the other axes' values).
MAX_GROUPS = 6
#: Axes drawn on a logarithmic x axis when all their values are positive.
LOG_AXES = ("lambda", "lambda_H", "lambda_W", "init.scale_H", "init.scale_W", "init.alpha")
#: What a sweep axis name may be (it becomes part of figure ids): a config key, dotted.
AXIS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def check_sweep(sweep, source) -> None:
    """Type-check sweep.json (:data:`~landscape.viz.safe.SWEEP_FIELDS`) and its axis names."""
    check_fields(sweep, SWEEP_FIELDS, source)
    cfg = sweep.get("sweep_config")
    axes = cfg.get("sweep") if isinstance(cfg, dict) else None
    if not isinstance(axes, dict):
        raise ReportInputError(f"{source}: sweep_config.sweep must be an object (axis → values)")
    for ax in axes:
        if not AXIS_NAME.fullmatch(ax):
            raise ReportInputError(f"{source}: sweep_config.sweep has the axis {json.dumps(ax)[:60]}, "
                                   "not a configuration key (letters, digits, '_' and '.')")
    if not isinstance(sweep.get("cells", []), list) or not all(isinstance(c, dict) for c in sweep.get("cells", [])):
        raise ReportInputError(f"{source}: cells must be a list of objects")


def check_prevalence_rows(rows: list[dict], axes, source) -> None:
    """Every prevalence.csv column the figures read as a number (the axes, the counts, fractions
    and intervals, the mean logit rank) must parse as one (empty allowed)."""
    numeric = [*axes, "n_trajectories", "dnc_count", "dnc_fraction", "dnc_ci_low", "dnc_ci_high",
               "uncertified_count", "uncertified_fraction", "uncertified_ci_low", "uncertified_ci_high",
               "mean_logit_rank", "n_distinct_points"]
    for i, r in enumerate(rows):
        for col in [*numeric, *(k for k in r if k.split("_", 1)[0] in ("count", "frac") or k.startswith("ci_"))]:
            v = r.get(col)
            if v in (None, ""):
                continue
            try:
                float(v)
            except (TypeError, ValueError):
                raise ReportInputError(f"{source}: row {i + 1}, column {json.dumps(col)[:60]} must be a number") from None
        if r.get("logit_rank_counts"):
            try:
                figures._rank_counts(r)
                ok = True
            except (AttributeError, TypeError, ValueError, OverflowError):
                ok = False
            if not ok:
                raise ReportInputError(f"{source}: row {i + 1}, column logit_rank_counts must be a JSON object "
                                       "rank → count")


def sweep_figures(sweep: SweepRecord, rows: list[dict]) -> list[tuple[str, object]]:
    """(key, figure) for every axis and group of the other axes (module docstring); ``rows``:
    prevalence.csv's rows (a table: one column per axis, count and fraction of each label)."""
    axes = list(sweep.axes)
    out = []
    conf = sweep.confidence
    for ax in axes:
        others = [a for a in axes if a != ax]
        groups: dict[tuple, list[dict]] = {}
        for r in rows:
            groups.setdefault(tuple(r.get(o) for o in others), []).append(r)
        for gi, (key, rs) in enumerate(itertools.islice(sorted(groups.items(), key=lambda kv: str(kv[0])), MAX_GROUPS)):
            if len(rs) < 1:
                continue
            where = ", ".join(f"{o}={v}" for o, v in zip(others, key))
            title = ax + (f" ({where})" if where else "")
            log = ax in LOG_AXES and all(float(r[ax]) > 0 for r in rs)
            out.append((f"prevalence-{ax}-{gi}", figures.prevalence_figure(rs, ax, confidence=conf, log_x=log, x_title=title)))
            out.append((f"stacked-{ax}-{gi}", figures.stacked_fractions_figure(rs, ax, log_x=log, x_title=title)))
            out.append((f"rank-{ax}-{gi}", figures.rank_distribution_figure(rs, ax, log_x=log, x_title=title)))
    return out


def cell_accumulation(out_dir, cells: list[SweepCell]) -> dict[str, tuple[Accumulation, Unseen | None]]:
    """{cell name: (its study summary's accumulation curve, its unseen mass)} for every finished
    cell of ``cells`` whose summary.json is readable."""
    out = {}
    for c in cells:
        rel = c.dir or f"{SWEEP_FILES['cells']}/{c.name}"
        path = contained_path(out_dir, rel, f"{Path(out_dir) / SWEEP_FILES['sweep']}: the folder of cell "
                                            f"{json.dumps(c.name)[:60]}") / FILES["summary"]
        if c.status not in ("ran", "skipped") or not path.is_file():
            continue
        try:
            summary = read_json(path)
        except ValueError:
            continue
        check_fields(summary, CELL_SUMMARY_FIELDS, path)
        acc = Accumulation.from_row(summary.get("accumulation"))
        if acc is not None:
            out[c.name] = (acc, Unseen.from_row(summary.get("unseen")))
    return out


def _paired_table(rows: list[PairedDifference]) -> str:
    """HTML table of the paired differences between neighbouring cells."""
    if not rows:
        return "<p class='note'>No two neighbouring finished cells share their starts.</p>"
    def signed(v) -> str:
        return "-" if v is None else format(v, "+.4f")

    body = "".join(
        f"<tr><td class='l'>{_e(r.axis)}</td><td class='l'>{_e(r.first)}</td>"
        f"<td class='l'>{_e(r.second)}</td><td>{_e(r.both)}</td><td>{_e(r.first_only)}</td>"
        f"<td>{_e(r.second_only)}</td><td>{_e(r.neither)}</td><td>{_e(signed(r.difference))}</td>"
        f"<td>[{_e(signed(r.ci_low))}, {_e(signed(r.ci_high))}]</td></tr>"
        for r in rows if r.difference is not None)
    return ("<table><tr><th class='l'>axis</th><th class='l'>first</th><th class='l'>second</th><th>both</th>"
            "<th>first only</th><th>second only</th><th>neither</th><th>difference</th><th>95% interval</th></tr>"
            f"{body}</table>")


def render_sweep_report(out_dir) -> str:
    out = Path(out_dir)
    record = read_json(out / SWEEP_FILES["sweep"])
    check_sweep(record, out / SWEEP_FILES["sweep"])
    sweep = SweepRecord.from_json(record)
    rows = read_prevalence_csv(out / SWEEP_FILES["prevalence"]) if (out / SWEEP_FILES["prevalence"]).is_file() else []
    if not rows:
        raise ValueError(f"{out / SWEEP_FILES['prevalence']} is missing or empty: the sweep has no finished cell yet")
    check_prevalence_rows(rows, sweep.axes, out / SWEEP_FILES["prevalence"])
    cells = sweep.cells
    table = "".join(f"<tr><td class='l'>{_e(c.name)}</td><td>{_e(c.status)}</td>"
                    f"<td>{_e(c.n_trajectories)}</td></tr>" for c in cells)
    name = sweep.name
    dyn = sorted({r.get("dynamics", "") for r in rows})
    paired = sweep.paired
    label = (paired[0].label or DNC.name) if paired else DNC.name
    figs = sweep_figures(sweep, rows)
    acc = cell_accumulation(out, cells)
    if acc:
        figs.append(("accumulation-cells", figures.accumulation_cells_figure(acc, dynamics=" | ".join(dyn))))
    paired_part = [f"<h2>Paired differences of the {_e(label)} fraction</h2>",
                   "<p class='note'>Neighbouring cells that start from the same points (common random numbers): "
                   "start i is counted in both, so the difference first − second is of paired outcomes "
                   "(Newcombe's paired interval).</p>", _paired_table(paired)] if paired else []
    return html_page(f"landscape sweep report: {name}", [
        f"<p class='note'>{_e(len(rows))} of {_e(len(cells))} cells finished; fractions are of all starts of each "
        f"cell, with {_e(format(sweep.confidence, '.0%'))} Wilson intervals; "
        f"dynamics: {_e(' | '.join(dyn))}.</p>",
        "<h2>Cells</h2>", f"<table><tr><th class='l'>cell</th><th>status</th><th>starts</th></tr>{table}</table>",
        "<h2>Figures</h2>", *figure_sections(figs), *paired_part])


def write_sweep_report(out_dir) -> Path:
    """Write ``report.html`` into the sweep folder ``out_dir`` and return its path."""
    return atomic_write_text(Path(out_dir) / SWEEP_FILES["report"], render_sweep_report(out_dir))
