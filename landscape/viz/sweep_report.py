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
"""
from __future__ import annotations

import itertools
from pathlib import Path

from ..analysis.labels import DNC
from ..io.results import FILES, SWEEP_FILES, atomic_write_text, read_json
from . import figures
from .report import _e, html_page

#: Largest number of figure groups per axis (combinations of the other axes' values).
MAX_GROUPS = 6
#: Axes drawn on a logarithmic x axis when all their values are positive.
LOG_AXES = ("lambda", "lambda_H", "lambda_W", "init.scale_H", "init.scale_W", "init.alpha")


def sweep_figures(sweep: dict, rows: list[dict]) -> list[tuple[str, object]]:
    """(key, figure) for every axis and group of the other axes (module docstring)."""
    axes = list(sweep["sweep_config"]["sweep"])
    out = []
    conf = float(sweep.get("confidence", 0.95))
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


def cell_accumulation(out_dir, cells) -> dict[str, dict]:
    """{cell name: its study summary's ``accumulation`` record with ``unseen`` added} for every
    finished cell of ``cells`` (sweep.json records) whose summary.json is readable."""
    out = {}
    for c in cells:
        path = Path(out_dir) / c.get("dir", f"{SWEEP_FILES['cells']}/{c['name']}") / FILES["summary"]
        if c.get("status") not in ("ran", "skipped") or not path.is_file():
            continue
        try:
            summary = read_json(path)
        except ValueError:
            continue
        if summary.get("accumulation"):
            out[c["name"]] = {**summary["accumulation"], "unseen": summary.get("unseen")}
    return out


def _paired_table(rows: list[dict]) -> str:
    """HTML table of sweep.json's ``paired`` rows (paired differences between neighbouring cells)."""
    if not rows:
        return "<p class='note'>No two neighbouring finished cells share their starts.</p>"
    body = "".join(
        f"<tr><td class='l'>{_e(r['axis'])}</td><td class='l'>{_e(r['first'])}</td><td class='l'>{_e(r['second'])}</td>"
        f"<td>{r['both']}</td><td>{r['first_only']}</td><td>{r['second_only']}</td><td>{r['neither']}</td>"
        f"<td>{r['difference']:+.4f}</td><td>[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]</td></tr>"
        for r in rows if r.get("difference") is not None)
    return ("<table><tr><th class='l'>axis</th><th class='l'>first</th><th class='l'>second</th><th>both</th>"
            "<th>first only</th><th>second only</th><th>neither</th><th>difference</th><th>95% interval</th></tr>"
            f"{body}</table>")


def render_sweep_report(out_dir) -> str:
    from ..study.sweep import read_prevalence_csv

    out = Path(out_dir)
    sweep = read_json(out / SWEEP_FILES["sweep"])
    rows = read_prevalence_csv(out / SWEEP_FILES["prevalence"]) if (out / SWEEP_FILES["prevalence"]).is_file() else []
    if not rows:
        raise ValueError(f"{out / SWEEP_FILES['prevalence']} is missing or empty: the sweep has no finished cell yet")
    from .report import figure_sections

    cells = sweep.get("cells", [])
    table = "".join(f"<tr><td class='l'>{_e(c['name'])}</td><td>{_e(c['status'])}</td>"
                    f"<td>{_e(c.get('n_trajectories'))}</td></tr>" for c in cells)
    name = sweep["sweep_config"].get("name", "sweep")
    dyn = sorted({r.get("dynamics", "") for r in rows})
    label = (sweep.get("paired") or [{}])[0].get("label", DNC.name)
    figs = sweep_figures(sweep, rows)
    acc = cell_accumulation(out, cells)
    if acc:
        figs.append(("accumulation-cells", figures.accumulation_cells_figure(acc, dynamics=" | ".join(dyn))))
    paired = sweep.get("paired") or []
    paired_part = [f"<h2>Paired differences of the {_e(label)} fraction</h2>",
                   "<p class='note'>Neighbouring cells that start from the same points (common random numbers): "
                   "start i is counted in both, so the difference first − second is of paired outcomes "
                   "(Newcombe's paired interval).</p>", _paired_table(paired)] if paired else []
    return html_page(f"landscape sweep report: {name}", [
        f"<p class='note'>{len(rows)} of {len(cells)} cells finished; fractions are of all starts of each cell, "
        f"with {float(sweep.get('confidence', 0.95)):.0%} Wilson intervals; dynamics: {_e(' | '.join(dyn))}.</p>",
        "<h2>Cells</h2>", f"<table><tr><th class='l'>cell</th><th>status</th><th>starts</th></tr>{table}</table>",
        "<h2>Figures</h2>", *figure_sections(figs), *paired_part])


def write_sweep_report(out_dir) -> Path:
    """Write ``report.html`` into the sweep folder ``out_dir`` and return its path."""
    return atomic_write_text(Path(out_dir) / SWEEP_FILES["report"], render_sweep_report(out_dir))
