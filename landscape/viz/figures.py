"""Interactive Plotly figures of a study: basins, disconnectivity graph, spectra, structure, sweeps.

A study's figures take the typed records of :mod:`landscape.study.result` (a
:class:`~landscape.study.result.StudyResult`'s points, fractions, headline barriers, accumulation
and :class:`~landscape.study.result.DisconnectivityTree`); spectra, sweeps and continuation take
the layouts of ``spectra.npz``, ``prevalence.csv`` and the stored records, documented per function.
Each returns a :class:`plotly.graph_objects.Figure`; :mod:`landscape.report` reads a results
folder and calls them.

Conventions shared by all figures:

* **Fractions** are of *all* starts of the study (uncertified starts included in the
  denominator, never dropped), with the Wilson interval at the confidence the study used, and
  every fraction figure names the dynamics that produced it (``dynamics``, e.g.
  ``"gd(lr=0.5) → newton; init gaussian"``): basin fractions depend on the integrator.
* **Loss** is the objective of MODEL.md §2: mean cross-entropy (or MSE) plus (λ/2)·Σ‖factor‖²_F.
* **Colours** follow the structure label (:func:`label_colours`), the same in every figure.
"""
from __future__ import annotations

import json
import math
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..analysis.labels import DNC, NAMED, UNLABELLED_COLOUR
from ..analysis.spectrum import group_multiplicity_text
from ..core.validate import check_number
from ..study.result import (Accumulation, BasinBarrier, DisconnectivityTree, Fraction, StudyPoint, TreeNode,
                            Unseen)
from ..study.stats import proportion

#: Fixed colours of the labels every study can produce; other labels (block patterns such as
#: "simplex(3)+pair") take :data:`PALETTE` colours in sorted order.
FIXED_COLOURS = {**{s.name: s.colour for s in NAMED.values()}, "None": UNLABELLED_COLOUR}
PALETTE = ("#2ca02c", "#9467bd", "#e377c2", "#17becf", "#d62728", "#393b79", "#637939", "#8c6d31",
           "#843c39", "#7b4173", "#3182bd", "#e6550d")
UNCERTIFIED_COLOUR = "#c7c7c7"
#: Default figure height in pixels (the report stacks figures vertically).
HEIGHT = 460
#: Figure margins in pixels (the plot area is HEIGHT − top − bottom pixels high).
MARGIN = {"t": 90, "l": 70, "r": 30, "b": 60}


def label_colours(labels: Sequence) -> dict[str, str]:
    """Colour of each label (str(label); ``None`` becomes "None"): fixed for DNC, pairs, zero,
    other and None, :data:`PALETTE` in sorted order for the rest (cycling past its length)."""
    rest = sorted({str(lab) for lab in labels} - set(FIXED_COLOURS))
    out = {str(lab): FIXED_COLOURS[str(lab)] for lab in labels if str(lab) in FIXED_COLOURS}
    out.update({lab: PALETTE[i % len(PALETTE)] for i, lab in enumerate(rest)})
    return out


def _label_order(labels: Sequence) -> list[str]:
    """Labels as strings, fixed ones first (in FIXED_COLOURS order), then sorted."""
    s = {str(lab) for lab in labels}
    return [lab for lab in FIXED_COLOURS if lab in s] + sorted(s - set(FIXED_COLOURS))


def _provenance(dynamics: str | None, n_trajectories: int | None, confidence: float | None = None) -> str:
    parts = []
    if n_trajectories is not None:
        parts.append(f"fractions of all {n_trajectories} starts")
    if confidence is not None:
        parts.append(f"{confidence:.0%} Wilson intervals")
    parts.append(f"dynamics: {dynamics}" if dynamics else "dynamics: not recorded")
    return "; ".join(parts)


def _title(text: str, subtitle: str | None = None) -> dict:
    t = {"text": text, "x": 0.0, "xanchor": "left"}
    if subtitle:
        t["subtitle"] = {"text": subtitle}
    return t


def _finalise(fig: go.Figure, title: str, subtitle: str | None, height: int = HEIGHT) -> go.Figure:
    fig.update_layout(title=_title(title, subtitle), height=height, template="plotly_white",
                      margin=dict(MARGIN), legend={"title": {"text": "label"}})
    return fig


def _err(frac: Sequence[float], lo: Sequence[float], hi: Sequence[float]) -> dict:
    f, lo, hi = (np.asarray(v, dtype=float) for v in (frac, lo, hi))
    return {"type": "data", "symmetric": False, "array": hi - f, "arrayminus": f - lo, "visible": True}


def _fmt_rank(rp) -> str:
    return "(" + ", ".join(str(r) for r in rp) + ")" if rp is not None else "-"


def _fmt_ci(p: StudyPoint) -> str:
    if p.fraction is None:
        return "-"
    return f"{p.fraction:.4f} [{p.ci_low:.4f}, {p.ci_high:.4f}]"


# ----- 1. basin fractions ----------------------------------------------------------------------
def basin_fractions_figure(points: Sequence[StudyPoint], fractions: Mapping[str, Fraction], *,
                           n_trajectories: int, dynamics: str | None,
                           uncertified: Mapping[str, Fraction] | None = None,
                           confidence: float = 0.95) -> go.Figure:
    """Basin fraction of each distinct point (left) and of each label (right), with interval bars.

    ``points``: :class:`~landscape.study.result.StudyPoint` (points no start reached are left out);
    ``fractions``: label → :class:`~landscape.study.result.Fraction` (with ``n_points``);
    ``uncertified``: stop reason → :class:`~landscape.study.result.Fraction`, drawn in grey on
    the right (``StudyResult.points``, ``.fractions``, ``.uncertified``). Left: one bar trace per
    label present among the reached points, bars ordered by descending fraction. Right: one trace
    for the labels, one for the uncertified starts (when there are any).
    """
    reached = sorted((p for p in points if p.basin_count > 0), key=lambda p: (-p.basin_count, p.id))
    colours = label_colours([p.label for p in reached] + list(fractions))
    fig = make_subplots(rows=1, cols=2, column_widths=[0.62, 0.38], horizontal_spacing=0.1,
                        subplot_titles=("per distinct critical point", "per label"))
    for lab in _label_order([p.label for p in reached]):
        ps = [p for p in reached if str(p.label) == lab]
        fig.add_trace(go.Bar(
            x=[f"#{p.id}" for p in ps], y=[p.fraction for p in ps], name=lab, legendgroup=lab,
            marker_color=colours[lab], error_y=_err(*zip(*[(p.fraction, p.ci_low, p.ci_high) for p in ps])),
            customdata=[[p.basin_count, p.ci_low, p.ci_high, p.loss] for p in ps],
            hovertemplate=("point %{x}<br>fraction %{y:.4f} [%{customdata[1]:.4f}, %{customdata[2]:.4f}]"
                           "<br>%{customdata[0]} starts<br>loss %{customdata[3]:.10g}<extra>" + lab + "</extra>")),
            row=1, col=1)
    fig.update_xaxes(categoryorder="array", categoryarray=[f"#{p.id}" for p in reached], title_text="point id",
                     row=1, col=1)
    labs = sorted(fractions.items(), key=lambda kv: (-kv[1].count, str(kv[0])))
    if labs:
        fig.add_trace(go.Bar(
            x=[str(k) for k, _ in labs], y=[f.fraction for _, f in labs], name="per label",
            showlegend=False, marker_color=[colours[str(k)] for k, _ in labs],
            error_y=_err([f.fraction for _, f in labs], [f.ci_low for _, f in labs], [f.ci_high for _, f in labs]),
            customdata=[[f.count, f.ci_low, f.ci_high, f.n_points] for _, f in labs],
            hovertemplate=("%{x}<br>fraction %{y:.4f} [%{customdata[1]:.4f}, %{customdata[2]:.4f}]"
                           "<br>%{customdata[0]} starts, %{customdata[3]} distinct points<extra></extra>")),
            row=1, col=2)
    unc = [(k, u) for k, u in (uncertified or {}).items() if u.count > 0]
    if unc:
        fig.add_trace(go.Bar(
            x=[f"uncertified: {k}" for k, _ in unc], y=[u.fraction for _, u in unc],
            name="uncertified", marker_color=UNCERTIFIED_COLOUR, marker_pattern_shape="/",
            error_y=_err([u.fraction for _, u in unc], [u.ci_low for _, u in unc], [u.ci_high for _, u in unc]),
            customdata=[[u.count] for _, u in unc],
            hovertemplate="%{x}<br>fraction %{y:.4f}<br>%{customdata[0]} starts<extra></extra>"), row=1, col=2)
    fig.update_yaxes(title_text="fraction of starts", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(rangemode="tozero", row=1, col=2)
    return _finalise(fig, "Basin fractions", _provenance(dynamics, n_trajectories, confidence))


# ----- 2. disconnectivity graph ----------------------------------------------------------------
def _tree_layout(tree: DisconnectivityTree) -> dict[str, float]:
    """x position of every tree node: leaves 0, 1, 2, … in depth-first order from the roots (in
    ``tree.roots`` order, children in their listed order); a merge sits at the midpoint of its
    outermost children."""
    nodes = tree.nodes
    x: dict[str, float] = {}
    leaf = 0
    for root in tree.roots:  # iterative post-order: trees can be as deep as they have minima
        stack = [(root, False)]
        while stack:
            nid, expanded = stack.pop()
            ch = nodes[nid].children
            if not ch:
                x[nid] = float(leaf)
                leaf += 1
            elif expanded:
                xs = [x[c] for c in ch]
                x[nid] = 0.5 * (min(xs) + max(xs))
            else:
                stack.append((nid, True))
                stack.extend((c, False) for c in reversed(ch))
    return x


#: Disconnectivity graph: share of the loss axis given to the compressed (logarithmic) band above
#: the levels that matter (the minima holding starts and their first merges).
COMPRESSED_SHARE = 0.2


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values (1, 2 or 5 × 10^k apart) from ``lo`` to ``hi``."""
    if not hi > lo:
        return [lo]
    step = 10.0 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (m * step) <= n:
            step *= m
            break
    k0, k1 = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    return [round(k * step, 12) for k in range(k0, k1 + 1)]


class _LossAxis:
    """The disconnectivity graph's vertical axis: loss relative to the lowest minimum, r = E − E_min,
    drawn linearly up to the *focus* level ``break_at`` and compressed logarithmically above it.

    The focus is what the figure is read for: the barriers of the minima that hold starts. It is
    10 % above the highest of, for every minimum with basin_count > 0, its first merge (the lowest
    saddle level that joins it to another minimum; the minimum itself when nothing joins it); with
    no such minima, every minimum counts. Levels above it (higher saddles, e.g. an index-6 saddle far
    above the barriers) share the top :data:`COMPRESSED_SHARE` of the axis on a log scale of
    r − break_at, so they stay in the graph without flattening the barriers. When nothing lies more
    than 25 % above the focus, the axis is linear throughout (``compressed`` False)."""

    def __init__(self, nodes: Mapping[str, TreeNode], parent: Mapping[str, str]):
        leaves = [n for n in nodes.values() if n.type == "leaf"]
        self.e_min = min(n.level for n in leaves) if leaves else min(n.level for n in nodes.values())
        counted = [n for n in leaves if n.basin_count > 0] or leaves
        focus = max((self.rel(nodes[parent[n.id]].level) if n.id in parent else self.rel(n.level)
                     for n in counted), default=0.0)
        self.r_max = max(self.rel(n.level) for n in nodes.values())
        self.compressed = focus > 0 and self.r_max > 1.25 * focus
        if self.compressed:
            self.break_at = 1.1 * focus
            self.band = COMPRESSED_SHARE / (1 - COMPRESSED_SHARE) * self.break_at   # height of the log band
            self.top = self.break_at + 1.08 * self.band
        else:
            self.break_at = self.r_max
            self.band = 0.0
            self.top = self.r_max + (0.08 * self.r_max if self.r_max > 0 else max(1e-3, 0.05 * abs(self.e_min)))
        self.range = [-0.06 * self.top, self.top]

    def rel(self, level: float) -> float:
        return float(level) - self.e_min

    def y(self, level: float) -> float:
        """Drawing coordinate of a loss level."""
        r = self.rel(level)
        if not self.compressed or r <= self.break_at:
            return r
        return self.break_at + self.band * (math.log10(1 + (r - self.break_at) / self.break_at)
                                            / math.log10(1 + (self.r_max - self.break_at) / self.break_at))

    def ticks(self) -> tuple[list[float], list[str]]:
        """Tick positions (drawing coordinates) and their labels (E − E_min)."""
        vals = _nice_ticks(0.0, self.break_at)
        pos = list(vals)
        if self.compressed:
            gap = 0.05 * (self.range[1] - self.range[0])
            cands = sorted({m * 10.0 ** k for k in range(math.floor(math.log10(self.break_at)),
                                                        math.ceil(math.log10(self.r_max)) + 1) for m in (1, 2, 5)
                            if self.break_at < m * 10.0 ** k < self.r_max} | {self.r_max})
            for v in reversed(cands):   # the highest level first, then lower round values that fit
                yv = self.y(v + self.e_min)
                if all(abs(yv - q) >= gap for q in pos):
                    vals.append(v)
                    pos.append(yv)
        order = sorted(range(len(pos)), key=pos.__getitem__)
        return [pos[i] for i in order], [f"{vals[i]:.3g}" for i in order]


def disconnectivity_figure(tree: DisconnectivityTree, points: Mapping[int, StudyPoint] | None = None, *,
                           n_trajectories: int | None = None, dynamics: str | None = None,
                           max_width: float = 14.0) -> go.Figure:
    """Disconnectivity graph of a basin graph: vertical axis loss above the lowest minimum
    (E − E_min), leaves the minima.

    ``tree``: a :class:`~landscape.study.result.DisconnectivityTree` (tree.json read,
    :meth:`~landscape.study.result.DisconnectivityTree.from_json`). ``points``: point id →
    :class:`~landscape.study.result.StudyPoint`, for the hover text (loss, label, rank pattern,
    index, fraction ± interval); optional.

    The vertical axis (:class:`_LossAxis`) is linear in E − E_min over the barriers of the minima
    that hold starts, and compressed (log) above them, so that a small barrier (say 5e-4 out of
    DNC) stays readable next to a saddle far higher up; a dotted line marks where the compression
    starts, ticks and hover texts give true values. Every branch (child → parent) is drawn as a
    vertical line from the child's level to the parent's level and a horizontal line to the
    parent's x; its width is 1 + ``max_width``·(basin fraction of the child's subtree) pixels and
    its colour the leaf's label (grey above a merge). Each root gets a stub up to the top of the
    plot. Traces: one line trace per branch and root stub, one marker trace per leaf label, one for
    the merge nodes (when there are merges). An empty tree gives a figure with no traces and a note
    saying so.
    """
    points = points or {}
    title = "Disconnectivity graph"
    sub = ("branch width ∝ basin fraction of the minima below; merges at the loss of the joining saddle; "
           + _provenance(dynamics, n_trajectories))
    fig = go.Figure()
    nodes = tree.nodes
    if not nodes:
        fig.add_annotation(text="no minima in the basin graph: nothing to draw", showarrow=False,
                           x=0.5, y=0.5, xref="paper", yref="paper")
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        return _finalise(fig, title, sub)
    x = _tree_layout(tree)
    parent = {c: n.id for n in nodes.values() for c in n.children}
    ax = _LossAxis(nodes, parent)
    leaves = [n for n in nodes.values() if n.type == "leaf"]
    colours = label_colours([n.label for n in leaves])

    def width(n: TreeNode) -> float:
        return 1.0 + max_width * (n.fraction or 0.0)

    def colour(n: TreeNode) -> str:
        return colours[str(n.label)] if n.type == "leaf" else "#555555"

    for nid in sorted(nodes, key=lambda i: (nodes[i].level, i)):
        n = nodes[nid]
        if nid in parent:
            p = nodes[parent[nid]]
            xs, ys = [x[nid], x[nid], x[p.id]], [ax.y(n.level), ax.y(p.level), ax.y(p.level)]
        else:
            xs, ys = [x[nid], x[nid]], [ax.y(n.level), ax.top]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": colour(n), "width": width(n)},
                                 hoverinfo="skip", showlegend=False))
    for lab in _label_order([n.label for n in leaves]):
        ls = [n for n in leaves if str(n.label) == lab]
        text = []
        for n in ls:
            p = points.get(n.point_id)
            text.append(f"point #{n.point_id}<br>loss {n.level:.10g} (E − E_min = {ax.rel(n.level):.4g})"
                        f"<br>label {lab}<br>rank pattern {_fmt_rank(p.rank_pattern if p else None)}"
                        f"<br>index {'-' if p is None else p.index}"
                        f"<br>fraction {_fmt_ci(p) if p else n.fraction}<br>{n.basin_count} starts")
        fig.add_trace(go.Scatter(
            x=[x[n.id] for n in ls], y=[ax.y(n.level) for n in ls], mode="markers", name=lab, legendgroup=lab,
            marker={"color": colours[lab], "size": [8 + 30 * math.sqrt(n.fraction or 0.0) for n in ls],
                    "line": {"color": "white", "width": 1}},
            text=text, hovertemplate="%{text}<extra></extra>"))
    merges = [n for n in nodes.values() if n.type == "merge"]
    if merges:
        fig.add_trace(go.Scatter(
            x=[x[n.id] for n in merges], y=[ax.y(n.level) for n in merges], mode="markers",
            name="merge (saddle level)", marker={"color": "#555555", "size": 6, "symbol": "diamond"},
            text=[f"{n.id}<br>level {n.level:.10g} (E − E_min = {ax.rel(n.level):.4g})<br>minima {n.members}"
                  f"<br>saddles {n.saddles}"
                  + (f"<br>transition states {n.transition_states}" if n.transition_states else "")
                  + "".join(f"<br>barrier from {k}: {v:.4g}" for k, v in (n.barriers or {}).items())
                  + f"<br>fraction {n.fraction if n.fraction is None else format(n.fraction, '.4f')}"
                  for n in merges], hovertemplate="%{text}<extra></extra>"))
    order = sorted(leaves, key=lambda n: x[n.id])
    fig.update_xaxes(tickvals=[x[n.id] for n in order], ticktext=[f"#{n.point_id}" for n in order],
                     title_text="minimum (point id)", showgrid=False, zeroline=False)
    tickvals, ticktext = ax.ticks()
    ytitle = f"loss above the lowest minimum, E − E_min (E_min = {ax.e_min:.6g})"
    if ax.compressed:
        ytitle += f"; log scale above {ax.break_at:.3g}"
        fig.add_hline(y=ax.break_at, line={"color": "#999999", "width": 1, "dash": "dot"})
        n_above = sum(1 for n in nodes.values() if ax.rel(n.level) > ax.break_at)
        fig.add_annotation(text=f"↑ compressed (log): {n_above} node{'s' if n_above != 1 else ''} up to "
                                f"E − E_min = {ax.r_max:.4g}", x=1.0, xref="paper", xanchor="right",
                           y=ax.break_at, yanchor="bottom", showarrow=False, font={"size": 10, "color": "#777777"})
    fig.update_yaxes(title_text=ytitle, range=ax.range, autorange=False, tickvals=tickvals, ticktext=ticktext,
                     zeroline=False)
    return _finalise(fig, title, sub)


# ----- 3. Hessian spectrum ---------------------------------------------------------------------
def symlog(v, tau: float) -> np.ndarray:
    """Signed log transform sign(v)·log10(1 + |v|/τ): linear within |v| ≲ τ, logarithmic beyond."""
    v = np.asarray(v, dtype=float)
    return np.sign(v) * np.log10(1.0 + np.abs(v) / tau)


def _symlog_ticks(vmax: float, tau: float) -> tuple[list[float], list[str]]:
    """Tick positions (transformed) and labels at 0 and ±10^e for decades from τ to vmax."""
    vals, text = [0.0], ["0"]
    lo, hi = math.floor(math.log10(tau)), math.ceil(math.log10(max(vmax, tau)))
    for e in range(lo, hi + 1):
        for s in (1, -1):
            vals.append(float(symlog(s * 10.0 ** e, tau)))
            text.append(f"{'−' if s < 0 else ''}1e{e}")
    return vals, text


def hessian_spectrum_figure(spectrum, *, tau: float, symmetry_zero_modes: int, method: str = "dense",
                            title: str = "Hessian spectrum") -> go.Figure:
    """Sorted Hessian eigenvalues on a signed log scale (:func:`symlog` with threshold τ).

    ``spectrum``: eigenvalues (ascending, or any order: sorted here); ``tau``: the zero threshold
    the analysis used (|μ| ≤ τ is a zero mode); ``symmetry_zero_modes``: the gauge-orbit dimension;
    ``method``: 'dense' (all P eigenvalues; of the zero modes, the ``symmetry_zero_modes`` of
    smallest magnitude are marked as symmetry modes, the rest as excess) or 'lanczos' (the union
    of Lanczos subsets with the symmetry modes deflated out, so every zero mode shown is excess).

    Always four traces, in this order: negative (μ < −τ, red), symmetry zero modes (grey), excess
    zero modes (orange diamonds), positive (μ > τ, blue); names carry the counts. The band |μ| ≤ τ
    is shaded.
    """
    ev = np.sort(np.asarray(spectrum, dtype=float))
    tau = check_number("tau", float(tau))
    idx = np.arange(1, ev.size + 1)
    neg, pos = ev < -tau, ev > tau
    zero_idx = np.nonzero(~neg & ~pos)[0]
    n_sym = min(int(symmetry_zero_modes), zero_idx.size) if method == "dense" else 0
    by_mag = zero_idx[np.argsort(np.abs(ev[zero_idx]), kind="stable")]
    sym = np.zeros(ev.size, dtype=bool)
    sym[by_mag[:n_sym]] = True
    exc = np.zeros(ev.size, dtype=bool)
    exc[by_mag[n_sym:]] = True
    y = symlog(ev, tau)
    fig = go.Figure()
    groups = [("negative", neg, "#d62728", "circle"), ("symmetry zero modes", sym, "#7f7f7f", "circle-open"),
              ("excess zero modes", exc, "#ff7f0e", "diamond"), ("positive", pos, "#1f77b4", "circle")]
    for name, m, c, sym_ in groups:
        fig.add_trace(go.Scatter(x=idx[m], y=y[m], mode="markers", name=f"{name} ({int(m.sum())})",
                                 marker={"color": c, "symbol": sym_, "size": 6}, customdata=ev[m],
                                 hovertemplate="#%{x}: μ = %{customdata:.6g}<extra>" + name + "</extra>"))
    fig.add_hrect(y0=float(symlog(-tau, tau)), y1=float(symlog(tau, tau)), fillcolor="#ff7f0e", opacity=0.12,
                  line_width=0)
    vals, text = _symlog_ticks(float(np.abs(ev).max()) if ev.size else tau, tau)
    fig.update_yaxes(tickvals=vals, ticktext=text, title_text="eigenvalue μ (signed log: sign·log10(1+|μ|/τ))")
    xlab = "eigenvalue number (ascending)" if method == "dense" else "position in the computed Lanczos subsets"
    fig.update_xaxes(title_text=xlab)
    sub = (f"{method} spectrum of {ev.size} eigenvalues; zero modes |μ| ≤ τ = {tau:.3g} (shaded); "
           f"{symmetry_zero_modes} symmetry zero modes (gauge orbit), {int(exc.sum())} excess")
    fig = _finalise(fig, title, sub)
    fig.update_layout(legend={"title": {"text": "eigenvalues"}})
    return fig


# ----- 4. singular values and class-mean logits ------------------------------------------------
def singular_values_figure(singular_values: Mapping[str, Sequence[float]], *,
                           title: str = "Singular values per layer", rank_rtol: float | None = None) -> go.Figure:
    """Singular values (descending) of each factor and feature layer, one trace per layer, log y.

    ``singular_values``: {layer name (H1, W1, …, Z): singular values}, in forward order (the
    ``sv`` group of :func:`landscape.analysis.load_spectra`). Exact zeros cannot sit on a log axis:
    they are left out and counted in the trace name. ``rank_rtol``: the relative rank threshold
    of the analysis, quoted in the subtitle.
    """
    fig = go.Figure()
    for name, s in singular_values.items():
        s = np.asarray(s, dtype=float)
        i = np.arange(1, s.size + 1)
        keep = s > 0
        nz = int((~keep).sum())
        fig.add_trace(go.Scatter(x=i[keep], y=s[keep], mode="lines+markers",
                                 name=name + (f" ({nz} exact zeros not shown)" if nz else ""),
                                 hovertemplate=f"{name}: s_%{{x}} = %{{y:.6g}}<extra></extra>"))
    fig.update_yaxes(type="log", title_text="singular value (log scale)", exponentformat="power")
    fig.update_xaxes(title_text="index i (descending order)", dtick=1)
    sub = "numerical rank: #{s_i > rank_rtol·s_1}" + (f", rank_rtol = {rank_rtol:g}" if rank_rtol is not None else "")
    fig = _finalise(fig, title, sub)
    fig.update_layout(legend={"title": {"text": "layer"}})
    return fig


def logits_heatmap_figure(Zbar, *, title: str = "Class-mean logits Z̄") -> go.Figure:
    """Heatmap of Z̄ (K, K): entry (k, c) = mean over the samples of class c of logit k.

    Diverging colour scale centred at 0; each cell shows its value. One heatmap trace.
    """
    Z = np.asarray(Zbar, dtype=float)
    K = Z.shape[0]
    m = float(np.abs(Z).max()) or 1.0
    fig = go.Figure(go.Heatmap(z=Z, x=[f"class {c}" for c in range(Z.shape[1])], y=[f"logit {k}" for k in range(K)],
                               colorscale="RdBu_r", zmid=0.0, zmin=-m, zmax=m, texttemplate="%{z:.3g}",
                               colorbar={"title": {"text": "Z̄"}},
                               hovertemplate="samples of %{x}, %{y}: %{z:.6g}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title_text="logit k (row)")
    fig.update_xaxes(title_text="class c of the samples (column: mean over its n samples)", side="bottom")
    return _finalise(fig, title, "Z̄ = class means of the logits Z = W_L σ(H_L); columns class-ordered",
                     height=max(360, 60 + 45 * K))


# ----- 5. prevalence from a sweep --------------------------------------------------------------
def _cols(rows: Sequence[Mapping], key: str) -> np.ndarray:
    return np.array([np.nan if r.get(key) in (None, "") else float(r[key]) for r in rows], dtype=float)


def _band(x, lo, hi, colour: str, name: str, group: str) -> go.Scatter:
    rgb = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    # mode="lines": without it plotly draws markers at the polygon's corners in the next default colour
    return go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([hi, lo[::-1]]), fill="toself", mode="lines",
                      fillcolor=f"rgba({rgb[0]},{rgb[1]},{rgb[2]},0.18)", line={"width": 0}, hoverinfo="skip",
                      name=name, legendgroup=group, showlegend=False)


def prevalence_labels(rows: Sequence[Mapping]) -> list[str]:
    """Labels with a ``frac_<label>`` column in a prevalence table, DNC excluded (it has its own
    columns), in label order."""
    return _label_order({k[len("frac_"):] for r in rows for k in r if k.startswith("frac_")} - {DNC.name})


def _dynamics_of(rows: Sequence[Mapping]) -> str | None:
    d = sorted({str(r["dynamics"]) for r in rows if r.get("dynamics")})
    return " | ".join(d) if d else None


def prevalence_figure(rows: Sequence[Mapping], x: str, *, labels: Sequence[str] | None = None,
                      dynamics: str | None = None, confidence: float = 0.95, log_x: bool = False,
                      x_title: str | None = None) -> go.Figure:
    """DNC fraction, each label's fraction and the uncertified fraction against a swept variable,
    with interval bands.

    ``rows``: the rows of ``prevalence.csv`` (:func:`landscape.sweep.read_prevalence_csv`; numbers
    or numeric strings): the axis column ``x``, ``n_trajectories``, ``dnc_fraction``,
    ``dnc_ci_low``, ``dnc_ci_high``, ``uncertified_fraction``, ``uncertified_ci_low``,
    ``uncertified_ci_high``, ``count_<label>`` and ``frac_<label>`` per label and ``dynamics``. A
    label's interval is the Wilson interval at ``confidence`` of its stored count.
    ``labels``: which ``frac_`` columns to draw (default :func:`prevalence_labels`); ``dynamics``:
    default the table's ``dynamics`` column. Rows are sorted by ``x``. Traces: a line and a band
    for DNC, for each label, and for the uncertified starts, in that order.
    """
    rows = sorted(rows, key=lambda r: float(r[x]))
    labels = prevalence_labels(rows) if labels is None else list(labels)
    xs, n = _cols(rows, x), _cols(rows, "n_trajectories")
    colours = label_colours([DNC.name, *labels])
    colours["uncertified"] = "#7f7f7f"
    series = [(DNC.name, _cols(rows, "dnc_fraction"), _cols(rows, "dnc_ci_low"), _cols(rows, "dnc_ci_high"))]
    for lab in labels:
        c = np.nan_to_num(_cols(rows, f"count_{lab}"))
        p = [proportion(int(ci), int(ni), confidence) for ci, ni in zip(c, n)]
        series.append((lab, np.array([q["fraction"] for q in p], dtype=float), np.array([q["ci_low"] for q in p]),
                       np.array([q["ci_high"] for q in p])))
    series.append(("uncertified", _cols(rows, "uncertified_fraction"), _cols(rows, "uncertified_ci_low"),
                   _cols(rows, "uncertified_ci_high")))
    fig = go.Figure()
    for lab, fy, ly, hy in series:
        fig.add_trace(go.Scatter(x=xs, y=fy, mode="lines+markers", name=lab, legendgroup=lab,
                                 line={"color": colours[lab], "dash": {DNC.name: "solid", "uncertified": "dash"}.get(lab, "dot")},
                                 customdata=np.stack([ly, hy, n], axis=1),
                                 hovertemplate=(f"{x} = %{{x:.6g}}<br>{lab}: %{{y:.4f}} [%{{customdata[0]:.4f}}, "
                                                "%{customdata[1]:.4f}]<br>%{customdata[2]:.0f} starts<extra></extra>")))
        fig.add_trace(_band(xs, ly, hy, colours[lab], f"{lab} interval", lab))
    fig.update_yaxes(title_text="fraction of starts", range=[-0.02, 1.02])
    fig.update_xaxes(title_text=x_title or x, type="log" if log_x else "linear")
    ns = sorted({int(v) for v in n if np.isfinite(v)})
    return _finalise(fig, f"Prevalence of DNC against {x_title or x}",
                     _provenance(dynamics or _dynamics_of(rows), None, confidence)
                     + f"; starts per cell: {', '.join(map(str, ns))}")


def _rank_counts(row: Mapping) -> dict[int, int]:
    """{rank: count} of a prevalence row's ``logit_rank_counts`` (a dict, or its JSON text as
    ``prevalence.csv`` stores it)."""
    v = row.get("logit_rank_counts") or {}
    if isinstance(v, str):
        v = json.loads(v) if v.strip() else {}
    return {int(k): int(c) for k, c in v.items()}


def rank_distribution_figure(rows: Sequence[Mapping], x: str, *, dynamics: str | None = None, log_x: bool = False,
                             x_title: str | None = None) -> go.Figure:
    """The paper's Fig. 5 with its distribution: for every sweep cell, how many certified starts
    ended at each numerical rank of the logits Z, against the swept column ``x``. One marker per
    (cell, rank) with area ∝ its fraction of the cell's starts and the count written on it, and
    the mean rank over certified starts as a line (``rows`` as in :func:`prevalence_figure`, with
    ``logit_rank_counts`` and ``mean_logit_rank``). Traces: the markers, then the mean."""
    rows = sorted(rows, key=lambda r: float(r[x]))
    xs, ys, counts, fracs = [], [], [], []
    for r in rows:
        n = int(float(r["n_trajectories"]))
        for rank, c in sorted(_rank_counts(r).items()):
            xs.append(float(r[x]))
            ys.append(rank)
            counts.append(c)
            fracs.append(c / n if n else 0.0)
    fig = go.Figure(go.Scatter(
        x=xs, y=ys, mode="markers+text", name="starts at this rank", text=[str(c) for c in counts],
        textposition="middle right", customdata=np.stack([counts, fracs], axis=1) if xs else None,
        marker={"size": [8 + 30 * math.sqrt(f) for f in fracs], "color": "#1f77b4", "opacity": 0.55,
                "line": {"color": "white", "width": 1}},
        hovertemplate=f"{x} = %{{x:.6g}}<br>rank(Z) = %{{y}}<br>%{{customdata[0]:.0f}} starts "
                      "(%{customdata[1]:.3f})<extra></extra>"))
    fig.add_trace(go.Scatter(x=_cols(rows, x), y=_cols(rows, "mean_logit_rank"), mode="lines+markers",
                             name="mean rank", line={"color": "#d62728"},
                             hovertemplate=f"{x} = %{{x:.6g}}<br>mean rank %{{y:.3f}}<extra></extra>"))
    fig.update_yaxes(title_text="numerical rank of the logits Z", dtick=1)
    fig.update_xaxes(title_text=x_title or x, type="log" if log_x else "linear")
    return _finalise(fig, f"Rank of the solution against {x_title or x}",
                     "certified starts per rank of Z (marker area ∝ fraction of the cell's starts, count written "
                     "beside it) and their mean; " + _provenance(dynamics or _dynamics_of(rows), None),
                     height=HEIGHT + 40)


def accumulation_cells_figure(curves: Mapping[str, tuple[Accumulation, Unseen | None]], *,
                              dynamics: str | None = None) -> go.Figure:
    """Accumulation curves of several studies (sweep cells) in one figure: distinct minima seen
    among the first t starts against t, one step trace per cell. ``curves``: {cell name: (its
    :class:`~landscape.study.result.Accumulation`, its :class:`~landscape.study.result.Unseen` or
    None)}. A curve flat over its last starts with a small unseen mass says the cell's starts
    found its basins."""
    fig = go.Figure()
    for name, (acc, unseen) in curves.items():
        est = None if unseen is None else unseen.estimate
        fig.add_trace(go.Scatter(x=np.asarray(acc.n_trajectories), y=np.asarray(acc.n_distinct), mode="lines",
                                 line_shape="hv", name=name + (f" (unseen {est:.3f})" if est is not None else ""),
                                 hovertemplate=f"{name}<br>%{{x}} starts: %{{y}} distinct minima<extra></extra>"))
    fig.update_xaxes(title_text="starts t (in index order)", rangemode="tozero")
    fig.update_yaxes(title_text="distinct minima seen", rangemode="tozero")
    return _finalise(fig, "Accumulation curves per cell",
                     "legend: Good–Turing unseen mass N₁/n (chance that the next start finds a new minimum); "
                     + _provenance(dynamics, None))


# ----- 6. loss against rank --------------------------------------------------------------------
def loss_rank_figure(points: Sequence[StudyPoint], *, n_trajectories: int | None = None,
                     dynamics: str | None = None) -> go.Figure:
    """Loss of every distinct critical point against the numerical rank of its logits Z (the last
    entry of ``rank_pattern``), coloured by label, marker area ∝ basin fraction (points no start
    reached get the smallest marker). ``points``: :class:`~landscape.study.result.StudyPoint`
    (those without a rank pattern are left out). One trace per label."""
    points = [p for p in points if p.rank_pattern]
    colours = label_colours([p.label for p in points])
    fig = go.Figure()
    for lab in _label_order([p.label for p in points]):
        ps = [p for p in points if str(p.label) == lab]
        fig.add_trace(go.Scatter(
            x=[p.rank_pattern[-1] for p in ps], y=[p.loss for p in ps], mode="markers", name=lab,
            marker={"color": colours[lab], "size": [7 + 40 * math.sqrt(p.fraction or 0.0) for p in ps],
                    "opacity": 0.8, "line": {"color": "white", "width": 1}},
            text=[f"point #{p.id} ({p.kind}, {p.type})<br>loss {p.loss:.10g}"
                  f"<br>rank pattern {_fmt_rank(p.rank_pattern)}<br>index {p.index}"
                  f"<br>fraction {_fmt_ci(p)}" for p in ps],
            hovertemplate="%{text}<extra>" + lab + "</extra>"))
    fig.update_xaxes(title_text="numerical rank of the logits Z", dtick=1)
    fig.update_yaxes(title_text="loss (objective, MODEL.md §2)")
    return _finalise(fig, "Loss against rank of the distinct critical points",
                     "marker area ∝ basin fraction; " + _provenance(dynamics, n_trajectories))


def barrier_basin_figure(rows: Sequence[BasinBarrier], *, n_trajectories: int | None = None,
                         dynamics: str | None = None) -> go.Figure:
    """The lowest transition-state barrier out of each minimum with a basin against its basin
    fraction (``rows``: :class:`~landscape.study.result.BasinBarrier`, ``Headline.basin_barriers``),
    coloured by label, log barrier axis; minima no transition state joins are named in the
    subtitle. One trace per label."""
    joined = [r for r in rows if r.barrier is not None]
    alone = [r for r in rows if r.barrier is None]
    colours = label_colours([r.label for r in rows])
    fig = go.Figure()
    for lab in _label_order([r.label for r in joined]):
        rs = [r for r in joined if str(r.label) == lab]
        fig.add_trace(go.Scatter(
            x=[r.fraction for r in rs], y=[r.barrier for r in rs], mode="markers", name=lab,
            marker={"color": colours[lab], "size": 11, "line": {"color": "white", "width": 1}},
            text=[f"minimum #{r.point_id} (loss {r.loss:.10g})<br>basin {r.basin_count} starts"
                  f"<br>lowest barrier {r.barrier:.4g} via transition state #{r.saddle}"
                  f"<br>to #{r.to} ({r.to_label})" for r in rs],
            hovertemplate="%{text}<extra>" + lab + "</extra>"))
    fig.update_xaxes(title_text="basin fraction (share of all starts)", rangemode="tozero")
    fig.update_yaxes(title_text="lowest barrier out of the basin (loss units)", type="log")
    note = ("; no transition state yet out of " + ", ".join(f"#{r.point_id} ({r.label})" for r in alone)
            if alone else "")
    return _finalise(fig, "Barrier out of each basin against its size",
                     _provenance(dynamics, n_trajectories) + note)


# ----- 7. accumulation curve -------------------------------------------------------------------
def accumulation_figure(accumulation: Accumulation, *, unseen: Unseen | None = None,
                        dynamics: str | None = None) -> go.Figure:
    """Distinct minima seen among the first t trajectories (index order) against t
    (:class:`~landscape.study.result.Accumulation`). One trace. ``unseen``: the Good–Turing
    estimate (:class:`~landscape.study.result.Unseen`), quoted in the subtitle: a flat curve with a
    small estimate means further starts are unlikely to find new minima."""
    t = np.asarray(accumulation.n_trajectories)
    fig = go.Figure(go.Scatter(x=t, y=np.asarray(accumulation.n_distinct), mode="lines", line_shape="hv", name="distinct minima",
                               hovertemplate="%{x} trajectories: %{y} distinct minima<extra></extra>"))
    fig.update_xaxes(title_text="trajectories t (in index order)", rangemode="tozero")
    fig.update_yaxes(title_text="distinct minima seen", rangemode="tozero")
    sub = _provenance(dynamics, None)
    if unseen is not None and unseen.estimate is not None:
        sub = (f"Good–Turing unseen mass N₁/n = {unseen.n1}/{unseen.n} = {unseen.estimate:.4f} "
               "(probability that the next start finds a new minimum); " + sub)
    return _finalise(fig, "Accumulation curve", sub)


def stacked_fractions_figure(rows: Sequence[Mapping], x: str, *, dynamics: str | None = None,
                             log_x: bool = False, x_title: str | None = None) -> go.Figure:
    """Fractions of the starts per label and uncertified, stacked to 1, against the swept column
    ``x`` (``rows`` as in :func:`prevalence_figure`; the labels' ``frac_<label>`` columns, DNC
    included, and ``uncertified_fraction``). One area trace per label, then the uncertified."""
    rows = sorted(rows, key=lambda r: float(r[x]))
    labels = _label_order({k[len("frac_"):] for r in rows for k in r if k.startswith("frac_")})
    colours = label_colours(labels)
    xs = _cols(rows, x)
    fig = go.Figure()
    for lab in labels:
        fig.add_trace(go.Scatter(x=xs, y=np.nan_to_num(_cols(rows, f"frac_{lab}")), mode="lines", name=lab,
                                 stackgroup="one", line={"color": colours[lab], "width": 0.5},
                                 hovertemplate=f"{x} = %{{x:.6g}}<br>{lab}: %{{y:.4f}}<extra></extra>"))
    fig.add_trace(go.Scatter(x=xs, y=np.nan_to_num(_cols(rows, "uncertified_fraction")), mode="lines",
                             name="uncertified", stackgroup="one", line={"color": UNCERTIFIED_COLOUR, "width": 0.5},
                             hovertemplate=f"{x} = %{{x:.6g}}<br>uncertified: %{{y:.4f}}<extra></extra>"))
    fig.update_yaxes(title_text="fraction of starts (stacked)", range=[0, 1.0])
    fig.update_xaxes(title_text=x_title or x, type="log" if log_x else "linear")
    return _finalise(fig, f"Fractions per label against {x_title or x}", _provenance(dynamics or _dynamics_of(rows), None))


# ----- 8. structured spectra (landscape spectrum) ------------------------------------------------
GROUP_COLOURS = {"zero": "#7f7f7f", "bulk": "#1f77b4", "outlier": "#d62728"}


#: Outlier labels of :func:`spectrum_groups_figure`: font size, and the vertical distance in
#: pixels between the centres of two labels (more than a line of that font).
GROUP_LABEL_FONT = 9
GROUP_LABEL_GAP_PX = 14


def _spread(pos: Sequence[float], gap: float, lo: float, hi: float) -> list[float]:
    """Positions as close as possible to ``pos`` (any order; returned in the same order) that are
    at least ``gap`` apart and within [lo, hi] (which must hold len(pos)·gap; order is kept)."""
    order = sorted(range(len(pos)), key=lambda i: (pos[i], i))
    p = [float(pos[i]) for i in order]
    for k in range(len(p)):      # up: away from the one below
        p[k] = max(p[k], lo if k == 0 else p[k - 1] + gap)
    for k in reversed(range(len(p))):   # down: under the top, away from the one above
        p[k] = min(p[k], hi if k == len(p) - 1 else p[k + 1] - gap)
    out = [0.0] * len(p)
    for k, i in enumerate(order):
        out[i] = p[k]
    return out


def spectrum_groups_figure(rec: Mapping, *, title: str | None = None) -> go.Figure:
    """Sorted eigenvalues (signed log scale, :func:`symlog` with the record's τ), one trace per
    group kind (zero, bulk, outlier); every outlier group annotated with its value and
    multiplicity. ``rec``: a :meth:`landscape.analysis.spectrum.SpectrumReport.to_dict` record.

    Outlier labels never overlap: each sits near the height of its group, moved up or down just
    enough to keep :data:`GROUP_LABEL_GAP_PX` pixels from its neighbours (the figure grows taller
    when the plot area cannot hold them all), with a thin line to its group's first eigenvalue;
    labels of groups in the left half of the spectrum are to the right of it, the others to the
    left (where a sorted spectrum leaves room)."""
    ev = np.sort(np.asarray(rec["eigenvalues"], dtype=float))
    tau = float(rec["tau"])
    y = symlog(ev, tau)
    x = np.arange(1, ev.size + 1)
    kind = np.full(ev.size, "outlier", dtype=object)
    for g in rec["groups"]:
        kind[(ev >= g["min"]) & (ev <= g["max"])] = g["kind"]
    fig = go.Figure()
    for k in ("zero", "bulk", "outlier"):
        m = kind == k
        n_groups = sum(1 for g in rec["groups"] if g["kind"] == k)
        what = "eigenvalues" if rec["method"] == "dense" else "computed eigenvalues"
        fig.add_trace(go.Scatter(x=x[m], y=y[m], mode="markers", name=f"{k} ({int(m.sum())} {what}, {n_groups} groups)",
                                 marker={"color": GROUP_COLOURS[k], "size": 5}, customdata=ev[m],
                                 hovertemplate="#%{x}: μ = %{customdata:.8g}<extra>" + k + "</extra>"))
    outliers = [g for g in rec["groups"] if g["kind"] == "outlier"]
    height = HEIGHT
    if ev.size:
        y_lo, y_hi = float(y.min()), float(y.max())
        pad = 0.06 * (y_hi - y_lo) if y_hi > y_lo else 1.0
        y_lo, y_hi = y_lo - pad, y_hi + pad
        plot_px = max(HEIGHT - MARGIN["t"] - MARGIN["b"], (len(outliers) + 1) * GROUP_LABEL_GAP_PX)
        height = plot_px + MARGIN["t"] + MARGIN["b"]
        px_per_y = plot_px / (y_hi - y_lo)
        gx = [int(np.searchsorted(ev, g["min"])) + 1 for g in outliers]
        gy = [float(symlog(g["value"], tau)) for g in outliers]
        half = 0.5 * GROUP_LABEL_GAP_PX
        label_px = _spread([(v - y_lo) * px_per_y for v in gy], GROUP_LABEL_GAP_PX, half, plot_px - half)
        dx = max(1.0, 0.02 * ev.size)
        for g, i, yi, lp in zip(outliers, gx, gy, label_px):
            left = i <= 0.5 * (ev.size + 1)
            fig.add_annotation(x=i, y=yi, ax=i + dx if left else i - dx, ay=y_lo + lp / px_per_y, axref="x", ayref="y",
                               text=f"{g['value']:.4g} {group_multiplicity_text(g)}", xanchor="left" if left else "right",
                               showarrow=True, arrowhead=0, arrowwidth=0.6, arrowcolor="#999999", standoff=3,
                               font={"size": GROUP_LABEL_FONT})
        fig.update_yaxes(range=[y_lo, y_hi], autorange=False)
    vals, text = _symlog_ticks(float(np.abs(ev).max()) if ev.size else tau, tau)
    fig.update_yaxes(tickvals=vals, ticktext=text, title_text="eigenvalue μ (signed log)")
    fig.update_xaxes(title_text="eigenvalue number (ascending)" if rec["method"] == "dense" else "computed eigenvalues")
    zero = next((g for g in rec["groups"] if g["kind"] == "zero"), None)
    partial = any(g.get("multiplicity_is_lower_bound") for g in rec["groups"])
    sub = (f"{rec['method']} spectrum, P = {rec['P']}"
           + (f" (partial: {ev.size} extreme eigenvalues computed, multiplicities are lower bounds)" if partial else "")
           + "; groups: equal within group_rtol = "
           f"{rec['thresholds']['group_rtol']:g}; zero modes |μ| ≤ τ = {tau:.3g}"
           + (f" ({zero['symmetry']} symmetry + {zero['excess']} excess)" if zero else ""))
    return _finalise(fig, title or f"Hessian spectrum by groups, point #{rec['point_id']}", sub, height=height)


def spectral_density_figure(rec: Mapping, *, title: str | None = None) -> go.Figure:
    """The spectral density (exact spectrum smoothed, or stochastic Lanczos quadrature), log y."""
    d = rec["density"]
    fig = go.Figure(go.Scatter(x=d["grid"], y=np.clip(np.asarray(d["values"], dtype=float), 1e-12, None), mode="lines",
                               name="density", hovertemplate="μ = %{x:.6g}: %{y:.4g}<extra></extra>"))
    fig.update_yaxes(type="log", title_text="eigenvalue density (per unit μ)")
    fig.update_xaxes(title_text="eigenvalue μ")
    how = ("exact spectrum" if rec["method"] == "dense" else
           f"stochastic Lanczos quadrature ({rec['thresholds']['slq_vectors']} vectors × {rec['thresholds']['slq_steps']} steps)")
    return _finalise(fig, title or f"Spectral density, point #{rec['point_id']}",
                     f"{how}, Gaussian width {rec['thresholds']['density_width']:g}·(spectral range); symmetry zero modes "
                     + ("included" if rec["method"] == "dense" else "deflated"))


def block_spectra_figure(rec: Mapping, *, title: str | None = None) -> go.Figure:
    """The spectrum of every per-factor diagonal block H_ll side by side (signed log)."""
    tau = float(rec["tau"])
    fig = go.Figure()
    for name, ev in rec["blocks"].items():
        ev = np.sort(np.asarray(ev, dtype=float))
        fig.add_trace(go.Scatter(x=np.linspace(0, 1, ev.size), y=symlog(ev, tau), mode="markers", name=f"{name} ({ev.size})",
                                 marker={"size": 4}, customdata=ev,
                                 hovertemplate=name + ": μ = %{customdata:.8g}<extra></extra>"))
    vmax = max((float(np.abs(np.asarray(v)).max()) for v in rec["blocks"].values() if len(v)), default=tau)
    vals, text = _symlog_ticks(vmax, tau)
    fig.update_yaxes(tickvals=vals, ticktext=text, title_text="eigenvalue of H_ll (signed log)")
    fig.update_xaxes(title_text="position in the block's sorted spectrum (0 … 1)")
    return _finalise(fig, title or f"Per-factor diagonal blocks, point #{rec['point_id']}",
                     "H_ll: the Hessian restricted to one factor (H₁, W₁, …, W_L)")


def gauss_newton_figure(rec: Mapping, *, title: str | None = None) -> go.Figure:
    """Spectra of the Gauss–Newton part G and the residual part H − G (signed log)."""
    tau = float(rec["tau"])
    fig = go.Figure()
    for name, key, c in (("Gauss–Newton G = Jᵀ∇²g J + λ", "gauss_newton", "#2ca02c"), ("residual H − G", "residual", "#d62728"),
                         ("full Hessian H", "eigenvalues", "#7f7f7f")):
        ev = rec.get(key)
        if ev is None:
            continue
        ev = np.sort(np.asarray(ev, dtype=float))
        fig.add_trace(go.Scatter(x=np.arange(1, ev.size + 1), y=symlog(ev, tau), mode="markers", name=f"{name} (min {ev[0]:.3g})",
                                 marker={"size": 4, "color": c}, customdata=ev,
                                 hovertemplate="μ = %{customdata:.8g}<extra></extra>"))
    vals, text = _symlog_ticks(max(float(np.abs(np.asarray(rec["eigenvalues"])).max()), tau), tau)
    fig.update_yaxes(tickvals=vals, ticktext=text, title_text="eigenvalue (signed log)")
    fig.update_xaxes(title_text="eigenvalue number (ascending)")
    return _finalise(fig, title or f"Gauss–Newton and residual parts, point #{rec['point_id']}",
                     "G is λ plus a positive semi-definite matrix: negative curvature can only come from the residual")


# ----- 9. continuation -----------------------------------------------------------------------
INDEX_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def bifurcation_figure(record: Mapping, *, title: str | None = None) -> go.Figure:
    """Loss against the continuation parameter per branch, each segment coloured by the Hessian
    index (net of symmetry) along it; folds (×) and index changes (◆) marked with index before →
    after. ``record``: a ``continuation.json`` record (``param``, ``branches`` with ``steps`` and
    ``events``). x is logarithmic (a weight decay)."""
    param = record["param"]
    fig = go.Figure()
    seen = set()
    for br in record["branches"]:
        steps = br["steps"]
        if not steps:
            continue
        x = [s[param] for s in steps]
        y = [s["loss"] for s in steps]
        idx = [s["index"] for s in steps]
        start = 0
        for i in range(1, len(steps) + 1):
            if i == len(steps) or idx[i] != idx[start]:
                k = idx[start]
                seg = slice(start, min(i + 1, len(steps)))
                fig.add_trace(go.Scatter(x=x[seg], y=y[seg], mode="lines+markers", marker={"size": 3},
                                         line={"color": INDEX_COLOURS[k % len(INDEX_COLOURS)]},
                                         name=f"index {k}", legendgroup=f"index {k}", showlegend=k not in seen,
                                         hovertemplate=(f"point #{br['point_id']} ({br['label']})<br>{param} = %{{x:.6g}}"
                                                        f"<br>loss %{{y:.8g}}<br>index {k}<extra></extra>")))
                seen.add(k)
                start = i
        for e in br["events"]:
            j = min(range(len(x)), key=lambda i: abs(x[i] - e[param]))
            fig.add_trace(go.Scatter(x=[e[param]], y=[y[j]], mode="markers", showlegend=False,
                                     marker={"symbol": "x" if e["kind"] == "fold" else "diamond", "size": 11, "color": "black"},
                                     hovertemplate=(f"{e['kind']} at {param} = {e[param]:.8g}<br>index {e['index_before']} → "
                                                    f"{e['index_after']}<extra>point #{br['point_id']}</extra>")))
    fig.update_xaxes(type="log", title_text=param)
    fig.update_yaxes(title_text="loss (objective, MODEL.md §2)")
    return _finalise(fig, title or f"Bifurcation diagram in {param}",
                     "pseudo-arclength continuation; colour: Hessian index net of symmetry zero modes; "
                     "× fold, ◆ index change (located by bisection)")


def width_figure(record: Mapping, *, L: int, title: str | None = None) -> go.Figure:
    """Symmetry zero modes (the gauge-orbit dimension of each point's critical manifold) against
    the width d per point, with the linear model's L·(r·d − r(r+1)/2) dashed beside each (r the
    rank of its logits at the first width), and the ratio of DNC's to each other point's on a
    second axis. ``record``: a ``continuation-d.json`` record."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    dnc = next((b for b in record["branches"] if b["label"] == DNC.name), None)
    for br in record["branches"]:
        d = [s["d"] for s in br["steps"]]
        z = [s["symmetry_zero_modes"] for s in br["steps"]]
        fig.add_trace(go.Scatter(x=d, y=z, mode="lines+markers", name=f"#{br['point_id']} {br['label']}",
                                 hovertemplate="d = %{x}: %{y} symmetry zero modes<extra></extra>"), secondary_y=False)
        if br["steps"] and br.get("rank") is not None:
            r = br["rank"]
            fig.add_trace(go.Scatter(x=d, y=[L * (r * w - r * (r + 1) // 2) for w in d], mode="lines",
                                     line={"dash": "dash", "width": 1}, name=f"L(rd − r(r+1)/2), r = {r}",
                                     showlegend=True), secondary_y=False)
        if dnc is not None and br is not dnc and br["steps"]:
            zd = {s["d"]: s["symmetry_zero_modes"] for s in dnc["steps"]}
            ratio = [zd[s["d"]] / s["symmetry_zero_modes"] if s["symmetry_zero_modes"] else None for s in br["steps"]]
            fig.add_trace(go.Scatter(x=d, y=ratio, mode="lines", line={"dash": "dot"},
                                     name=f"DNC / #{br['point_id']} {br['label']}"), secondary_y=True)
    fig.update_xaxes(title_text="width d")
    fig.update_yaxes(title_text="symmetry zero modes (gauge-orbit dimension)", secondary_y=False)
    fig.update_yaxes(title_text="ratio DNC : other", secondary_y=True)
    return _finalise(fig, title or "Critical-manifold dimension against width (Theorem 5)",
                     "points embedded into wider nets by zero rows and columns stay critical; their gauge orbits grow")
