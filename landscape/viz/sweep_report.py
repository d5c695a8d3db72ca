"""The HTML report of a sweep folder: the paper's figures, with intervals.

For every axis of the sweep, and for every combination of the other axes' values (at most
:data:`MAX_GROUPS` per axis), three figures against that axis: the DNC fraction with its Wilson
band, each label's and the uncertified fraction (:func:`landscape.viz.figures.prevalence_figure`,
the paper's Fig. 2 with thousands of starts and intervals), the stacked fractions per label
(:func:`landscape.viz.figures.stacked_fractions_figure`) and the mean logit rank
(:func:`landscape.viz.figures.mean_rank_figure`, the paper's Fig. 5). Reads ``sweep.json`` and
``prevalence.csv``; writes ``report.html`` beside them.
"""
from __future__ import annotations

import itertools
from pathlib import Path

from ..io.results import SWEEP_FILES, atomic_write_text, read_json
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
            out.append((f"rank-{ax}-{gi}", figures.mean_rank_figure(rs, ax, log_x=log, x_title=title)))
    return out


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
    return html_page(f"landscape sweep report: {name}", [
        f"<p class='note'>{len(rows)} of {len(cells)} cells finished; fractions are of all starts of each cell, "
        f"with {float(sweep.get('confidence', 0.95)):.0%} Wilson intervals; dynamics: {_e(' | '.join(dyn))}.</p>",
        "<h2>Cells</h2>", f"<table><tr><th class='l'>cell</th><th>status</th><th>starts</th></tr>{table}</table>",
        "<h2>Figures</h2>", *figure_sections(sweep_figures(sweep, rows))])


def write_sweep_report(out_dir) -> Path:
    """Write ``report.html`` into the sweep folder ``out_dir`` and return its path."""
    return atomic_write_text(Path(out_dir) / SWEEP_FILES["report"], render_sweep_report(out_dir))
