"""Figures on hand-made inputs and on exactly known points: trace counts, values, edge cases."""
import math
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
import pytest

from landscape import figures, theory
from landscape.study import stats
from landscape.analysis import analyse_point
from landscape.study.graph import basin_graph, disconnectivity_tree, tree_to_json
from landscape.study.result import (Accumulation, BasinBarrier, DisconnectivityTree, Fraction, StudyPoint,
                                    Unseen)
from landscape.core.model import ModelSpec

DYN = "gd(lr=0.5) → newton; init gaussian"
POINT_ROWS = [
    {"id": 0, "kind": "minimum", "label": "DNC", "loss": 0.02, "rank_pattern": [3, 3, 3], "index": 0, "type": "minimum",
     "basin_count": 6, "fraction": 0.6, "ci_low": 0.31, "ci_high": 0.83},
    {"id": 1, "kind": "minimum", "label": "pairs", "loss": 0.019, "rank_pattern": [2, 2, 2], "index": 0,
     "type": "minimum", "basin_count": 3, "fraction": 0.3, "ci_low": 0.1, "ci_high": 0.6},
    {"id": 2, "kind": "saddle", "label": "simplex(3)+null", "loss": 0.36, "rank_pattern": [2, 2, 2], "index": 2,
     "type": "saddle", "basin_count": 0, "fraction": 0.0, "ci_low": 0.0, "ci_high": 0.28},
]
POINTS = [StudyPoint.from_row(r) for r in POINT_ROWS]
LABELS = {"DNC": Fraction(count=6, fraction=0.6, ci_low=0.31, ci_high=0.83, n_points=1),
          "pairs": Fraction(count=3, fraction=0.3, ci_low=0.1, ci_high=0.6, n_points=1)}
UNC = {"max_iter": Fraction(count=1, fraction=0.1, ci_low=0.02, ci_high=0.4)}


def test_label_colours_tell_labels_apart_and_keep_each_label_its_colour():
    """What the colours must carry, whatever they are: one colour per label; a label every study
    can produce keeps its colour whatever else a study found; the same labels in any order get the
    same colours; and every figure of a study draws a label in the same colour."""
    labels = ["pairs", "simplex(3)+null", None, "DNC", "pair+2×null", "zero", "other"]
    c = figures.label_colours(labels)
    assert sorted(c) == sorted(str(lab) for lab in labels)
    assert len(set(c.values())) == len(c)                      # distinct: a colour names one label
    alone = figures.label_colours(["DNC", "pairs", "zero", "other", None])
    assert all(alone[k] == c[k] for k in alone)                  # common labels: the same in every study
    assert figures.label_colours(list(reversed(labels))) == c    # order of appearance does not matter
    many = figures.label_colours([f"block{i}" for i in range(40)])
    assert len(many) == 40 and all(isinstance(v, str) and v for v in many.values())   # more labels than colours
    # the basin-fraction bars and the loss-rank markers of one study colour each label alike
    bars = figures.basin_fractions_figure(POINTS, LABELS, n_trajectories=10, dynamics=DYN)
    dots = figures.loss_rank_figure(POINTS, n_trajectories=10, dynamics=DYN)
    bar_colour = {t.name: t.marker.color for t in bars.data if t.name in ("DNC", "pairs")}
    dot_colour = {t.name: t.marker.color for t in dots.data}
    assert bar_colour == {k: dot_colour[k] for k in bar_colour} and set(bar_colour) == {"DNC", "pairs"}
    per_label = next(t for t in bars.data if t.name == "per label")
    assert dict(zip(per_label.x, per_label.marker.color)) == bar_colour


def test_basin_fractions_traces_and_error_bars():
    fig = figures.basin_fractions_figure(POINTS, LABELS, n_trajectories=10, dynamics=DYN, uncertified=UNC)
    assert isinstance(fig, go.Figure)
    # one bar trace per label among reached points (the saddle has no starts), labels, uncertified
    assert [t.name for t in fig.data] == ["DNC", "pairs", "per label", "uncertified"]
    dnc = fig.data[0]
    assert list(dnc.x) == ["#0"] and list(dnc.y) == [0.6]
    np.testing.assert_allclose(dnc.error_y.array, [0.83 - 0.6])
    np.testing.assert_allclose(dnc.error_y.arrayminus, [0.6 - 0.31])
    assert list(fig.data[2].x) == ["DNC", "pairs"]
    assert list(fig.data[3].x) == ["uncertified: max_iter"]
    assert DYN in fig.layout.title.subtitle.text and "all 10 starts" in fig.layout.title.subtitle.text
    assert list(fig.layout.xaxis.categoryarray) == ["#0", "#1"]


def test_basin_fractions_without_uncertified_has_no_grey_trace():
    fig = figures.basin_fractions_figure(POINTS, LABELS, n_trajectories=9, dynamics=DYN)
    assert [t.name for t in fig.data] == ["DNC", "pairs", "per label"]


def _tree():
    from landscape.io.records import EdgeRecord, PointRecord

    pts = [PointRecord(id=i, kind=kind, label=label, loss=loss, grad_norm=0.0, fingerprint={})
           for i, kind, label, loss in ((0, "minimum", "DNC", 0.0), (1, "minimum", "pairs", 0.5),
                                        (2, "minimum", "zero", 1.0), (10, "saddle", None, 2.0))]
    edges = [EdgeRecord(saddle_id=10, direction=0, sign=1, target_id=0),
             EdgeRecord(saddle_id=10, direction=0, sign=-1, target_id=1)]
    G = basin_graph(pts, edges, {0: 6, 1: 2, 2: 2}, 10)
    return tree_to_json(disconnectivity_tree(G))


def test_disconnectivity_layout_and_widths():
    tree = _tree()
    fig = figures.disconnectivity_figure(DisconnectivityTree.from_json(tree), {p.id: p for p in POINTS}, n_trajectories=10, dynamics=DYN)
    # tree: merge:0 (level 2) over leaves 0 and 1; leaf 2 (level 1) is an isolated root, placed first
    # because roots go in order of level
    lines = [t for t in fig.data if t.mode == "lines"]
    assert len(lines) == 4  # leaf 0 → merge, leaf 1 → merge, merge stub, leaf 2 stub
    marks = {t.name: t for t in fig.data if t.mode == "markers"}
    assert set(marks) == {"DNC", "pairs", "zero", "merge (saddle level)"}
    assert list(marks["zero"].x) == [0.0] and list(marks["DNC"].x) == [1.0] and list(marks["pairs"].x) == [2.0]
    assert list(marks["merge (saddle level)"].x) == [1.5] and list(marks["merge (saddle level)"].y) == [2.0]
    # branch from leaf 0 (fraction 0.6): vertical at x=1 from 0 up to the merge level, across to x=1.5
    leaf0 = next(t for t in lines if list(t.x) == [1.0, 1.0, 1.5])
    assert list(leaf0.y) == [0.0, 2.0, 2.0]
    stub = next(t for t in lines if list(t.x) == [1.5, 1.5])
    assert stub.y[0] == 2.0 and stub.y[1] > stub.y[0]          # the root's stub rises above its merge
    # widths grow linearly with the basin fraction below (0.6 for leaf 0, 0.8 at the merge, 0.2 for
    # the isolated leaf 2): equal steps in fraction give equal steps in width
    leaf2 = next(t for t in lines if list(t.x) == [0.0, 0.0])
    w0, w2, ws = leaf0.line.width, leaf2.line.width, stub.line.width
    assert (ws - w0) / (w0 - w2) == pytest.approx((0.8 - 0.6) / (0.6 - 0.2))
    assert "rank pattern (3, 3, 3)" in marks["DNC"].text[0] and "0.6000 [0.3100, 0.8300]" in marks["DNC"].text[0]


def _tree_with_a_small_barrier_and_a_high_saddle():
    """DNC (#0, loss 0.021, 6 starts) and pairs (#1, 0.019, 3 starts) joined by a saddle 5e-4 above
    DNC; a minimum #2 without starts (0.9) joined to them only by an index-6 saddle at 1.5."""
    from landscape.io.records import EdgeRecord, PointRecord

    pts = [PointRecord(id=i, kind=kind, label=label, loss=loss, grad_norm=0.0, fingerprint={})
           for i, kind, label, loss in ((0, "minimum", "DNC", 0.021), (1, "minimum", "pairs", 0.019),
                                        (2, "minimum", "other", 0.9), (10, "saddle", None, 0.0215),
                                        (11, "saddle", None, 1.5))]
    edges = [EdgeRecord(saddle_id=10, direction=0, sign=1, target_id=0),
             EdgeRecord(saddle_id=10, direction=0, sign=-1, target_id=1),
             EdgeRecord(saddle_id=11, direction=0, sign=1, target_id=1),
             EdgeRecord(saddle_id=11, direction=0, sign=-1, target_id=2)]
    G = basin_graph(pts, edges, {0: 6, 1: 3}, 9)
    return tree_to_json(disconnectivity_tree(G))


def test_disconnectivity_small_barrier_is_visible_next_to_a_high_saddle():
    tree = _tree_with_a_small_barrier_and_a_high_saddle()
    nodes = {n["id"]: n for n in tree["nodes"]}
    merges = sorted((n for n in nodes.values() if n["type"] == "merge"), key=lambda n: n["level"])
    low, high = merges
    barrier = low["barriers"]["0"]                    # out of DNC, from the tree
    e_min = min(n["level"] for n in nodes.values() if n["type"] == "leaf")
    assert barrier == pytest.approx(5e-4) and high["level"] - e_min > 1000 * barrier
    fig = figures.disconnectivity_figure(DisconnectivityTree.from_json(tree), {p.id: p for p in POINTS}, n_trajectories=9, dynamics=DYN)
    marks = {t.name: t for t in fig.data if t.mode == "markers"}
    lo_ax, hi_ax = fig.layout.yaxis.range
    y_dnc, y_pairs = marks["DNC"].y[0], marks["pairs"].y[0]
    y_merge = dict(zip(marks["merge (saddle level)"].x, marks["merge (saddle level)"].y))
    y_low = y_merge[0.5 * (marks["DNC"].x[0] + marks["pairs"].x[0])]
    # the loss is drawn relative to the lowest minimum, and linearly over the barriers that matter
    assert y_pairs == pytest.approx(0.0, abs=1e-15)
    assert y_dnc == pytest.approx(nodes["leaf:0"]["level"] - e_min)
    assert y_low - y_dnc == pytest.approx(barrier)
    # the barrier out of DNC takes a visible share of the axis (with loss as is: 5e-4 / 1.5, 0.03 %)
    assert (y_low - y_dnc) / (hi_ax - lo_ax) >= 0.05
    assert (y_low - y_pairs) / (hi_ax - lo_ax) >= 0.05
    # nothing is cut off: the high saddle and the minimum without starts are still drawn, in order
    ys = [y for t in fig.data for y in t.y]
    assert all(lo_ax <= y <= hi_ax for y in ys)
    assert y_low < marks["other"].y[0] < max(y_merge.values()) < hi_ax
    assert "log scale above" in fig.layout.yaxis.title.text
    # hover texts give the true loss; tick labels are increasing values of E − E_min at increasing heights
    assert f"loss {0.021:.10g}" in marks["DNC"].text[0]
    tv, tt = list(fig.layout.yaxis.tickvals), [float(t) for t in fig.layout.yaxis.ticktext]
    assert tv == sorted(tv) and tt == sorted(tt) and tt[-1] == pytest.approx(high["level"] - e_min, rel=1e-2)


def test_disconnectivity_axis_is_linear_when_nothing_is_far_above():
    tree = _tree()   # minima at 0, 0.5 (both with starts, merged at 2.0) and 1.0: no compression
    fig = figures.disconnectivity_figure(DisconnectivityTree.from_json(tree))
    merge = next(t for t in fig.data if t.name == "merge (saddle level)")
    assert list(merge.y) == [2.0] and "log scale" not in fig.layout.yaxis.title.text
    assert [float(t) for t in fig.layout.yaxis.ticktext] == pytest.approx(list(fig.layout.yaxis.tickvals))


def test_disconnectivity_empty_tree_draws_nothing_and_says_so():
    fig = figures.disconnectivity_figure(DisconnectivityTree.from_json({"roots": [], "nodes": []}))
    assert len(fig.data) == 0
    assert "nothing to draw" in fig.layout.annotations[0].text


def test_disconnectivity_deep_chain_does_not_recurse():
    # 3000 minima merged one after another: a chain as deep as the tree has minima
    n = 3000
    nodes = [{"id": f"leaf:{i}", "type": "leaf", "level": float(i), "children": [], "members": [i],
              "basin_count": 1, "fraction": 1 / n, "point_id": i, "label": "DNC", "saddles": None} for i in range(n)]
    prev = "leaf:0"
    for k in range(1, n):
        nodes.append({"id": f"merge:{k}", "type": "merge", "level": n + k, "children": [prev, f"leaf:{k}"],
                      "members": list(range(k + 1)), "basin_count": k + 1, "fraction": (k + 1) / n, "point_id": None,
                      "label": None, "saddles": [n + k]})
        prev = f"merge:{k}"
    x = figures._tree_layout(DisconnectivityTree.from_json({"roots": [prev], "nodes": nodes}))
    assert x["leaf:0"] == 0.0 and x[f"leaf:{n - 1}"] == n - 1
    assert x["merge:1"] == 0.5


def test_symlog_is_odd_and_linear_near_zero():
    tau = 1e-6
    v = np.array([-1.0, -1e-9, 0.0, 1e-9, 1.0])
    y = figures.symlog(v, tau)
    np.testing.assert_allclose(y, -y[::-1])
    assert y[2] == 0.0 and y[3] == pytest.approx(1e-3 / math.log(10), rel=1e-3)  # log10(1+x) ≈ x/ln10
    assert y[4] == pytest.approx(math.log10(1 + 1e6))


@pytest.fixture(scope="module")
def small_dnc_saddle():
    """The small-root DNC point of K=4, n=2, d=6, L=3, λ=1e-3: a saddle of index 6 with 36 symmetry zero modes."""
    spec = ModelSpec(K=4, n=2, d=6, L=3, lam=1e-3, dtype="float64")
    a = theory.dnc_scale_roots(4, 2, 3, 1e-3)[0]
    return analyse_point(spec, theory.dnc_point(spec, a))


def test_hessian_spectrum_marks_negative_symmetry_excess(small_dnc_saddle):
    an = small_dnc_saddle
    h = an.hessian
    assert (h.index, h.symmetry_zero_modes, h.excess_zero_modes) == (6, 36, 0)
    fig = figures.hessian_spectrum_figure(an.spectrum, tau=h.tau, symmetry_zero_modes=h.symmetry_zero_modes)
    assert [t.name for t in fig.data] == ["negative (6)", "symmetry zero modes (36)", "excess zero modes (0)",
                                          "positive (102)"]
    assert sum(len(t.x) for t in fig.data) == 144
    np.testing.assert_allclose(fig.data[0].customdata, an.spectrum[:6])
    assert all(y < 0 for y in fig.data[0].y)


def test_hessian_spectrum_excess_are_the_larger_zero_modes():
    # zero band: 1e-15 and 2e-9 (|μ| ≤ τ = 1e-8); one symmetry mode → the 1e-15 one; 2e-9 is excess
    ev = [-1.0, 1e-15, 2e-9, 3.0]
    fig = figures.hessian_spectrum_figure(ev, tau=1e-8, symmetry_zero_modes=1)
    assert list(fig.data[1].customdata) == [1e-15] and list(fig.data[2].customdata) == [2e-9]
    lz = figures.hessian_spectrum_figure(ev, tau=1e-8, symmetry_zero_modes=1, method="lanczos")
    assert len(lz.data[1].x) == 0 and list(lz.data[2].customdata) == [1e-15, 2e-9]
    with pytest.raises(ValueError, match="tau"):
        figures.hessian_spectrum_figure(ev, tau=0.0, symmetry_zero_modes=0)


def test_singular_values_one_trace_per_layer_and_zeros_counted(small_dnc_saddle):
    sv = {"H1": [3.0, 2.0, 0.0], "W1": [1.0, 1e-12], "Z": [5.0]}
    fig = figures.singular_values_figure(sv, rank_rtol=1e-6)
    assert [t.name for t in fig.data] == ["H1 (1 exact zeros not shown)", "W1", "Z"]
    assert list(fig.data[0].y) == [3.0, 2.0] and list(fig.data[1].x) == [1, 2]
    assert fig.layout.yaxis.type == "log" and "rank_rtol = 1e-06" in fig.layout.title.subtitle.text
    real = figures.singular_values_figure(small_dnc_saddle.singular_values)
    assert len(real.data) == 7  # H1 W1 H2 W2 H3 W3 Z


def test_logits_heatmap_values():
    Zb = 2.0 * theory.simplex(4)
    fig = figures.logits_heatmap_figure(Zb)
    assert len(fig.data) == 1
    np.testing.assert_array_equal(np.asarray(fig.data[0].z), Zb)
    assert fig.data[0].zmid == 0.0 and fig.data[0].zmax == pytest.approx(1.5)


ROWS = [  # as read by landscape.study.sweep.read_prevalence_csv: strings
    {"cell": "d=20", "d": "20", "n_trajectories": "100", "dnc_fraction": "0.5", "dnc_ci_low": "0.4",
     "dnc_ci_high": "0.6", "uncertified_fraction": "0.2", "uncertified_ci_low": "0.13", "uncertified_ci_high": "0.29",
     "count_DNC": "50", "count_pairs": "30", "frac_DNC": "0.5", "frac_pairs": "0.3", "mean_logit_rank": "7.5",
     "dynamics": DYN},
    {"cell": "d=10", "d": "10", "n_trajectories": "100", "dnc_fraction": "0.2", "dnc_ci_low": "0.13",
     "dnc_ci_high": "0.29", "uncertified_fraction": "0.2", "uncertified_ci_low": "0.13", "uncertified_ci_high": "0.29",
     "count_DNC": "20", "count_pairs": "60", "frac_DNC": "0.2", "frac_pairs": "0.6", "mean_logit_rank": "6",
     "dynamics": DYN},
]


def test_prevalence_lines_and_bands_sorted_by_x():
    assert figures.prevalence_labels(ROWS) == ["pairs"]
    fig = figures.prevalence_figure(ROWS, "d")
    assert [t.name for t in fig.data] == ["DNC", "DNC interval", "pairs", "pairs interval", "uncertified",
                                          "uncertified interval"]
    np.testing.assert_array_equal(fig.data[0].x, [10.0, 20.0])
    np.testing.assert_array_equal(fig.data[0].y, [0.2, 0.5])
    np.testing.assert_array_equal(fig.data[1].y, [0.29, 0.6, 0.4, 0.13])  # upper edge, then lower edge reversed
    np.testing.assert_array_equal(fig.data[2].y, [0.6, 0.3])
    # label intervals: Wilson of 60/100 and 30/100
    lo60, hi60 = stats.wilson_interval(60, 100)
    lo30, hi30 = stats.wilson_interval(30, 100)
    np.testing.assert_allclose(fig.data[3].y, [hi60, hi30, lo30, lo60])
    assert all(t.mode == "lines" for t in fig.data if t.name.endswith("interval"))   # bands draw no markers
    assert DYN in fig.layout.title.subtitle.text and "starts per cell: 100" in fig.layout.title.subtitle.text


def test_rank_distribution_against_x():
    """Fig. 5 with its distribution: one marker per (cell, rank) with its count, and the mean."""
    rows = [dict(ROWS[0], logit_rank_counts='{"5": 30, "9": 50}'), dict(ROWS[1], logit_rank_counts={"5": 60, "9": 20})]
    fig = figures.rank_distribution_figure(rows, "d", log_x=True)
    assert [t.name for t in fig.data] == ["starts at this rank", "mean rank"] and fig.layout.xaxis.type == "log"
    np.testing.assert_array_equal(fig.data[0].x, [10, 10, 20, 20])     # sorted by d, then rank
    np.testing.assert_array_equal(fig.data[0].y, [5, 9, 5, 9])
    assert list(fig.data[0].text) == ["60", "20", "30", "50"]
    # each marker carries its count and its fraction of the cell's 100 starts; area grows with it
    np.testing.assert_allclose(np.asarray(fig.data[0].customdata, dtype=float),
                               [[60, 0.6], [20, 0.2], [30, 0.3], [50, 0.5]])
    sizes = list(fig.data[0].marker.size)
    assert sorted(sizes) == [sizes[i] for i in (1, 2, 3, 0)]     # ordered as the fractions 0.2 < 0.3 < 0.5 < 0.6
    np.testing.assert_array_equal(fig.data[1].y, [6.0, 7.5])
    assert DYN in fig.layout.title.subtitle.text


def test_accumulation_curves_of_cells():
    fig = figures.accumulation_cells_figure({"d=10": (Accumulation([1, 2, 3], [1, 2, 2]), Unseen(n1=1, n=3, estimate=1 / 3)),
                                             "d=20": (Accumulation([1, 2], [1, 1]), None)}, dynamics=DYN)
    assert [t.name for t in fig.data] == ["d=10 (unseen 0.333)", "d=20"]
    assert list(fig.data[0].y) == [1, 2, 2] and fig.data[0].line.shape == "hv"


def test_loss_rank_by_label_sized_by_fraction():
    fig = figures.loss_rank_figure(POINTS, n_trajectories=10, dynamics=DYN)
    assert [t.name for t in fig.data] == ["DNC", "pairs", "simplex(3)+null"]
    assert list(fig.data[0].x) == [3] and list(fig.data[1].x) == [2] and list(fig.data[2].x) == [2]
    assert [list(t.y) for t in fig.data] == [[p.loss] for p in POINTS]
    # each point carries its basin fraction and interval; the marker grows with the fraction, and
    # the point no start reached (the saddle) gets the smallest
    for t, p in zip(fig.data, POINTS):
        assert f"fraction {p.fraction:.4f} [{p.ci_low:.4f}, {p.ci_high:.4f}]" in t.text[0]
    sizes = [t.marker.size[0] for t in fig.data]
    assert sizes[2] < sizes[1] < sizes[0]                        # fractions 0.0 < 0.3 < 0.6


def test_accumulation_curve_and_unseen_note():
    fig = figures.accumulation_figure(Accumulation([1, 2, 3, 4], [1, 1, 2, 2]), unseen=Unseen(n1=1, n=4, estimate=0.25),
                                      dynamics=DYN)
    assert len(fig.data) == 1 and list(fig.data[0].y) == [1, 1, 2, 2]
    assert "N₁/n = 1/4 = 0.2500" in fig.layout.title.subtitle.text


def test_prevalence_reads_the_sweep_table(tmp_path):
    """The figure reads what landscape.study.sweep writes (PREVALENCE_FIELDS plus count_ and frac_<label>)."""
    from landscape.study.sweep import read_prevalence_csv, write_prevalence_csv

    rows = [{"cell": f"d={d}", "d": d, "n_trajectories": 10, "dnc_count": k, "dnc_fraction": k / 10,
             "dnc_ci_low": stats.wilson_interval(k, 10)[0], "dnc_ci_high": stats.wilson_interval(k, 10)[1],
             "uncertified_count": 0, "uncertified_fraction": 0.0, "uncertified_ci_low": 0.0,
             "uncertified_ci_high": stats.wilson_interval(0, 10)[1], "mean_logit_rank": 3 - k / 10,
             "n_distinct_points": 2, "dynamics": DYN, "count_DNC": k, "count_pairs": 10 - k, "frac_DNC": k / 10,
             "frac_pairs": 1 - k / 10}
            for d, k in ((8, 4), (4, 1))]
    write_prevalence_csv(tmp_path / "prevalence.csv", rows, ["d"])
    fig = figures.prevalence_figure(read_prevalence_csv(tmp_path / "prevalence.csv"), "d")
    assert [t.name for t in fig.data[::2]] == ["DNC", "pairs", "uncertified"]
    np.testing.assert_allclose(fig.data[0].x, [4, 8])
    np.testing.assert_allclose(fig.data[0].y, [0.1, 0.4])
    np.testing.assert_allclose(fig.data[2].y, [0.9, 0.6])


def test_barrier_basin_figure_plots_the_joined_minima_and_names_the_rest():
    rows = [{"point_id": 0, "label": "DNC", "loss": 0.021, "basin_count": 6, "fraction": 0.6, "barrier": 5.2e-4,
             "to": 1, "to_label": "pairs", "saddle": 9},
            {"point_id": 1, "label": "pairs", "loss": 0.019, "basin_count": 3, "fraction": 0.3, "barrier": 2.2e-3,
             "to": 0, "to_label": "DNC", "saddle": 9},
            {"point_id": 4, "label": "other", "loss": 0.4, "basin_count": 1, "fraction": 0.1, "barrier": None,
             "to": None, "to_label": None, "saddle": None}]
    fig = figures.barrier_basin_figure([BasinBarrier.from_row(r) for r in rows], n_trajectories=10, dynamics=DYN)
    assert [t.name for t in fig.data] == ["DNC", "pairs"]
    assert [list(t.x) for t in fig.data] == [[0.6], [0.3]] and [list(t.y) for t in fig.data] == [[5.2e-4], [2.2e-3]]
    assert fig.layout.yaxis.type == "log"
    assert "no transition state yet out of #4 (other)" in fig.layout.title.subtitle.text


def _groups_record(outliers: Sequence[float], bulk: int = 20, lam: float = 1e-3) -> dict:
    """A structured-spectrum record: ``bulk`` eigenvalues at λ, one zero mode, and one outlier
    group (multiplicity 1) at each value of ``outliers``."""
    ev = sorted([0.0] + [lam] * bulk + list(outliers))
    groups = [{"kind": "zero", "value": 0.0, "min": 0.0, "max": 0.0, "multiplicity": 1, "symmetry": 1, "excess": 0},
              {"kind": "bulk", "value": lam, "min": lam, "max": lam, "multiplicity": bulk}]
    groups += [{"kind": "outlier", "value": v, "min": v, "max": v, "multiplicity": 1} for v in outliers]
    groups.sort(key=lambda g: g["value"])
    return {"point_id": 7, "P": len(ev), "method": "dense", "eigenvalues": ev, "tau": 1e-8,
            "groups": groups, "thresholds": {"group_rtol": 1e-3}}


def _label_pixels(fig) -> list[float]:
    """Heights of the annotation texts, in pixels above the bottom of the plot area."""
    lo, hi = fig.layout.yaxis.range
    plot_px = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    return [(a.ay - lo) / (hi - lo) * plot_px for a in fig.layout.annotations]


@pytest.mark.parametrize("outliers", [
    [-2.0, -1.99] + [1.0 + 0.01 * k for k in range(12)],       # many close groups: labels would pile up
    [0.5 * 1.001 ** k for k in range(40)],                     # more labels than the default height holds
])
def test_spectrum_group_labels_do_not_overlap(outliers):
    rec = _groups_record(outliers)
    fig = figures.spectrum_groups_figure(rec)
    anns = list(fig.layout.annotations)
    ev = np.sort(rec["eigenvalues"])
    assert len(anns) == len(outliers)
    # every label points at its group: first eigenvalue of the group, at the group's value
    for a, v in zip(sorted(anns, key=lambda a: a.y), sorted(outliers)):
        assert a.x == int(np.searchsorted(ev, v)) + 1 and a.y == pytest.approx(float(figures.symlog(v, rec["tau"])))
        assert a.text.startswith(f"{v:.4g} ×1")
    # labels: distinct heights at least a line of their font apart, inside the plot, in value order
    px = _label_pixels(fig)
    plot_px = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    line = 1.2 * max(a.font.size for a in anns)
    by_value = [p for _, p in sorted(zip([a.y for a in anns], px))]
    assert by_value == sorted(by_value)
    assert min(np.diff(sorted(px))) >= line
    assert all(0 <= p <= plot_px for p in px)
