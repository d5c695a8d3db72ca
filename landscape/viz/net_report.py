"""The figures and HTML report of a ``landscape net`` results folder (from its ``summary.json``).

Figures (the paper's, for a trained network's head, across seeds):

* ``net-singular-values``: the singular values of each head factor W_l per seed, log scale, with
  the paper's absolute threshold (``analysis.sv_atol``, 10⁻⁶) drawn as a line;
* ``net-loss``: each seed's regularised training loss against the closed-form loss of DNC (and of
  the lowest closed-form structure) of the deep UFM with the same K, n, L and λ's;
* ``net-ufm-labels``: the fraction of seeds per UFM label (certified end points of the UFM engines
  run from each head), with 95% Wilson intervals.

summary.json is untrusted input (:mod:`landscape.viz.safe`): its numbers and ids are type-checked
(:data:`~landscape.viz.safe.NET_SUMMARY_FIELDS`), then read as a typed
:class:`~landscape.io.net_summary.NetSummary`, and every value written into the page is escaped.
"""
from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go

from ..analysis.labels import DNC
from ..io.net_summary import NetSummary
from ..io.results import FILES, atomic_write_text, read_json
from .figures import HEIGHT, label_colours
from .report import figure_sections, html_page
from .safe import NET_SUMMARY_FIELDS, ReportInputError, check_fields, esc

#: Most head factors a net summary may declare (``ufm.spec.L``; the report draws one column each).
MAX_LAYERS = 1000


def singular_value_figure(net: NetSummary) -> go.Figure:
    """The singular values of each head factor per seed (log scale), the paper's threshold drawn."""
    fig = go.Figure()
    names = [f"W{l}" for l in range(1, net.L + 1)]
    for s in net.seeds:
        for j, name in enumerate(names):
            sv = [max(v, 1e-18) for v in s.layers[name].singular_values]
            fig.add_trace(go.Scatter(x=[j + 1 + 0.6 * (i / max(len(sv) - 1, 1) - 0.5) for i in range(len(sv))], y=sv,
                                     mode="markers", marker={"size": 5}, name=f"seed {s.seed}",
                                     legendgroup=str(s.seed), showlegend=j == 0,
                                     hovertemplate=f"seed {s.seed} {name}: σ=%{{y:.3g}}<extra></extra>"))
    fig.add_hline(y=net.sv_atol, line_dash="dash", annotation_text=f"{net.sv_atol:g} (the paper's threshold)")
    fig.update_layout(title="Singular values of the head factors, every seed", height=HEIGHT,
                      xaxis={"tickvals": list(range(1, net.L + 1)), "ticktext": names, "title": "head factor"},
                      yaxis={"type": "log", "title": "singular value"})
    return fig


def loss_figure(net: NetSummary) -> go.Figure:
    """Each seed's regularised training loss against the UFM's closed-form losses."""
    fig = go.Figure(go.Scatter(x=[s.seed for s in net.seeds], y=[s.loss for s in net.seeds], mode="markers",
                               name="trained network (regularised loss)", marker={"size": 8}))
    if net.dnc_loss is not None:
        fig.add_hline(y=net.dnc_loss, line_color=label_colours([DNC.name])[DNC.name],
                      annotation_text=f"DNC closed form {net.dnc_loss:.6g}")
    if net.best_loss is not None:
        fig.add_hline(y=net.best_loss, line_dash="dot",
                      annotation_text=f"lowest closed form: {net.best_structure} {net.best_loss:.6g}",
                      annotation_position="bottom right")
    fig.update_layout(title="Training loss against the UFM's closed-form losses (λ_eff = geometric mean of the decays)",
                      height=HEIGHT, xaxis={"title": "seed"}, yaxis={"title": "loss"})
    return fig


def label_figure(net: NetSummary) -> go.Figure:
    """The fraction of certified seeds per UFM label, with Wilson intervals."""
    fr = net.labels
    labs = list(fr)
    col = label_colours(labs)
    fig = go.Figure(go.Bar(
        x=labs, y=[fr[k].fraction for k in labs], marker_color=[col[k] for k in labs],
        error_y={"type": "data", "symmetric": False, "array": [fr[k].ci_high - fr[k].fraction for k in labs],
                 "arrayminus": [fr[k].fraction - fr[k].ci_low for k in labs]},
        text=[f"{fr[k].count}/{net.n_certified}" for k in labs], textposition="outside"))
    fig.update_layout(title=f"UFM structure the heads fall into ({net.n_certified} certified seeds, "
                            f"{net.n_uncertified} uncertified; 95% Wilson intervals)",
                      height=HEIGHT, yaxis={"title": "fraction of seeds", "range": [0, 1.1]})
    return fig


def net_figures(net: NetSummary) -> list[tuple[str, go.Figure]]:
    return [("net-singular-values", singular_value_figure(net)), ("net-loss", loss_figure(net)),
            ("net-ufm-labels", label_figure(net))]


def _table(net: NetSummary) -> str:
    e = esc
    head = "".join(f"<th>#σ(W{l})&gt;atol</th>" for l in range(1, net.L + 1))
    rows = []
    for s in net.seeds:
        cells = "".join(f"<td>{e(s.layers[f'W{l}'].above_atol)}</td>" for l in range(1, net.L + 1))
        test = s.test_accuracy
        rows.append(f"<tr><td>{e(s.seed)}</td><td>{e(format(s.train_accuracy, '.3f'))}</td>"
                    f"<td>{e(test if test is None else format(test, '.3f'))}</td>"
                    f"<td>{e(format(s.loss, '.6g'))}</td>{cells}<td>{e(s.logit_rank)}</td>"
                    f"<td>{e(s.network_label)}</td><td>{e(s.ufm_label)}</td><td>{e(s.ufm_stop_reason)}</td>"
                    f"<td>{e(format(s.ufm_loss, '.6g'))}</td></tr>")
    return ("<h2>Seeds</h2><table><tr><th>seed</th><th>train acc</th><th>test acc</th><th>loss</th>" + head
            + "<th>logit rank</th><th>network label</th><th>UFM label</th><th>UFM stop</th><th>UFM loss</th></tr>"
            + "".join(rows) + "</table>")


def render_net_report(out_dir) -> str:
    path = Path(out_dir) / FILES["summary"]
    summary = read_json(path)
    check_fields(summary, NET_SUMMARY_FIELDS, path)
    L = ((summary.get("ufm") or {}).get("spec") or {}).get("L")
    if L is not None and not 1 <= L <= MAX_LAYERS:
        raise ReportInputError(f"{path}: ufm.spec.L must be between 1 and {MAX_LAYERS}, not {L}")
    net = NetSummary.from_json(summary)
    e = esc
    data = net.dataset
    intro = (f"<p>{e(data.name)}: K={e(data.K)}, {e(data.n_train)} training "
             f"and {e(data.n_test)} test samples per class. Training: {e(net.training_method)}, "
             f"lr {e(net.training_lr)}, regularisation {e(net.regularisation)}. "
             f"Hand-off: the deep UFM (P = {e(net.P)}) from each trained head, engines "
             f"{e(' → '.join(net.handoff_engines))}, certified at ‖∇L‖ ≤ "
             f"{e(format(net.certify_tol, 'g'))}. Max |network loss − UFM loss at hand-off| = "
             f"{e(format(net.handoff_loss_gap, '.3g'))}.</p>")
    return html_page(f"landscape net: {net.name}", [intro, *figure_sections(net_figures(net)), _table(net)])


def write_net_report(out_dir) -> Path:
    path = Path(out_dir) / FILES["report"]
    atomic_write_text(path, render_net_report(out_dir))
    return path
