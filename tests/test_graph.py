"""Basin graph, disconnectivity tree on hand-made graphs, exports, and the ±ε saddle starts."""
import json

import networkx as nx
import numpy as np
import pytest
import torch

from landscape.io.records import EdgeRecord, PointRecord
from landscape.study.descents import descend_from_saddle
from landscape.study.graph import basin_graph, disconnectivity_tree, tree_to_json, write_graphml, write_tree_json
from landscape.core.model import DeepUFM, ModelSpec

# minima A..G = 0..6, saddles S1..S6 = 10..15
MINIMA = {0: 0.0, 1: 0.5, 2: 1.0, 3: 0.2, 4: 0.1, 5: 0.3, 6: 0.4}
SADDLES = {10: 2.0, 11: 3.0, 12: 2.0 + 1e-9, 13: 5.0, 14: 1.5, 15: 4.0}
COUNTS = {0: 4, 1: 2, 2: 1, 3: 1, 4: 1, 5: 1}
N_STARTS = 12
# (saddle, direction, sign, target): S1 joins A,B; S3 joins B,D; S2 joins B,C; S6 leads to S2 and C;
# S4 leads to A along both signs and one descent that did not certify; S5 joins F,G; E is isolated.
EDGES = [(10, 0, 1, 0), (10, 0, -1, 1), (12, 0, 1, 1), (12, 0, -1, 3), (11, 0, 1, 1), (11, 0, -1, 2),
         (15, 0, 1, 11), (15, 0, -1, 2), (13, 0, 1, 0), (13, 0, -1, 0), (13, 1, 1, None), (14, 0, 1, 5), (14, 0, -1, 6)]


def _pt(id, kind, loss, **kw):
    return PointRecord(id=id, kind=kind, loss=loss, grad_norm=0.0, fingerprint={}, **kw)


def _points():
    pts = [_pt(i, "minimum", e, label="DNC" if i == 0 else None, hessian_index=0,
               analysis={"rank_pattern": [3, 3, 3]}) for i, e in MINIMA.items()]
    pts += [_pt(i, "saddle", e, hessian_index=1) for i, e in SADDLES.items()]
    return pts


def _edges():
    loss = {**MINIMA, **SADDLES}
    return [EdgeRecord(saddle_id=s, direction=j, sign=sg, target_id=t, eps=1e-3,
                       barrier=None if t is None else loss[s] - loss[t]) for s, j, sg, t in EDGES]


@pytest.fixture
def G():
    return basin_graph(_points(), _edges(), COUNTS, N_STARTS)


def test_basin_graph_attributes(G):
    assert G.number_of_nodes() == 13 and G.number_of_edges() == 12  # the uncertified descent is no edge
    a = G.nodes[0]
    assert (a["loss"], a["index"], a["kind"], a["label"], a["rank_pattern"]) == (0.0, 0, "minimum", "DNC", [3, 3, 3])
    assert a["basin_count"] == 4 and a["fraction"] == 4 / 12
    assert G.nodes[6]["basin_count"] == 0 and G.nodes[6]["fraction"] == 0.0
    assert G.nodes[13]["n_unresolved"] == 1
    assert G.number_of_edges(13, 0) == 2  # both signs of direction 0 reach A
    e = G.edges[10, 1, "0-"]
    assert (e["direction"], e["sign"], e["barrier"]) == (0, -1, 1.5)
    assert nx.number_connected_components(G) == 3  # {E}, {F, G, S5}, the rest


def _summary(T):
    return {n: (T.nodes[n]["level"], sorted(T.successors(n)), T.nodes[n]["members"]) for n in T if n[0] == "merge"}


def test_disconnectivity_tree_hand_made(G):
    T = disconnectivity_tree(G)
    assert sorted(n[1] for n in T if n[0] == "leaf") == [0, 1, 2, 3, 4, 5, 6]
    assert _summary(T) == {
        ("merge", 0): (1.5, [("leaf", 5), ("leaf", 6)], [5, 6]),
        ("merge", 1): (2.0, [("leaf", 0), ("leaf", 1)], [0, 1]),
        ("merge", 2): (2.0 + 1e-9, [("leaf", 3), ("merge", 1)], [0, 1, 3]),
        ("merge", 3): (3.0, [("leaf", 2), ("merge", 2)], [0, 1, 2, 3]),
    }
    assert T.graph["roots"] == [("leaf", 4), ("merge", 0), ("merge", 3)]  # isolated E, {F, G}, the rest
    top = T.nodes[("merge", 3)]
    assert top["basin_count"] == 8 and top["fraction"] == pytest.approx(8 / 12, abs=1e-15)
    assert top["saddles"] == [11]
    # within a tolerance, S1 and S3 (2.0 and 2.0 + 1e-9) are one merge with three children
    T2 = disconnectivity_tree(G, level_tol=1e-6)
    assert _summary(T2) == {
        ("merge", 0): (1.5, [("leaf", 5), ("leaf", 6)], [5, 6]),
        ("merge", 1): (2.0, [("leaf", 0), ("leaf", 1), ("leaf", 3)], [0, 1, 3]),
        ("merge", 2): (3.0, [("leaf", 2), ("merge", 1)], [0, 1, 2, 3]),
    }
    assert T2.nodes[("merge", 1)]["saddles"] == [10, 12]


def test_tree_folds_merges_at_one_level():
    """Two pairs merged at level 1 and then joined at level 1 form one node with four children."""
    pts = [_pt(i, "minimum", 0.1 * i) for i in range(4)]
    pts += [_pt(10 + k, "saddle", 1.0) for k in range(3)]
    ed = [EdgeRecord(saddle_id=10, direction=0, sign=s, target_id=t) for s, t in ((1, 0), (-1, 1))]
    ed += [EdgeRecord(saddle_id=11, direction=0, sign=s, target_id=t) for s, t in ((1, 2), (-1, 3))]
    ed += [EdgeRecord(saddle_id=12, direction=0, sign=s, target_id=t) for s, t in ((1, 1), (-1, 2))]
    T = disconnectivity_tree(basin_graph(pts, ed))
    assert T.graph["roots"] == [("merge", 0)] and T.number_of_nodes() == 5
    assert sorted(T.successors(("merge", 0))) == [("leaf", i) for i in range(4)]
    assert sorted(T.nodes[("merge", 0)]["saddles"]) == [10, 11, 12]
    assert T.nodes[("merge", 0)]["fraction"] is None  # no n_starts given


def test_empty_and_saddle_only_graphs(tmp_path):
    for G in (basin_graph([], []), basin_graph([_pt(1, "saddle", 1.0)], [])):
        T = disconnectivity_tree(G)
        assert T.number_of_nodes() == 0
        assert tree_to_json(T) == {"roots": [], "level_tol": 0.0, "leaf_kinds": ["minimum"], "nodes": []}
        write_graphml(G, tmp_path / "g.graphml")
        assert nx.read_graphml(tmp_path / "g.graphml").number_of_nodes() == G.number_of_nodes()


def test_exports(G, tmp_path):
    T = disconnectivity_tree(G)
    write_tree_json(T, tmp_path / "tree.json")
    data = json.loads((tmp_path / "tree.json").read_text())
    assert data == json.loads(json.dumps(tree_to_json(T)))
    assert data["roots"] == ["leaf:4", "merge:0", "merge:3"]
    by_id = {n["id"]: n for n in data["nodes"]}
    assert by_id["merge:3"]["children"] == ["leaf:2", "merge:2"]  # by level: 1.0 < 2.0 + 1e-9
    assert by_id["leaf:0"]["label"] == "DNC" and by_id["leaf:0"]["fraction"] == 4 / 12
    assert [n["level"] for n in data["nodes"]] == sorted(n["level"] for n in data["nodes"])

    write_graphml(G, tmp_path / "g.graphml")
    H = nx.read_graphml(tmp_path / "g.graphml", node_type=int)
    assert H.number_of_nodes() == 13 and H.number_of_edges() == 12
    assert json.loads(H.nodes[0]["rank_pattern"]) == [3, 3, 3]
    assert H.nodes[0]["fraction"] == 4 / 12 and H.nodes[0]["label"] == "DNC"
    assert "label" not in H.nodes[1] and "rank_pattern" not in H.nodes[10]  # None attributes left out
    assert H.edges[10, 1, "0-"]["barrier"] == 1.5


def test_descend_from_saddle_at_the_origin():
    """L = 1 and λ√n < 1/K: the origin is a strict saddle (MODEL.md §6)."""
    spec = ModelSpec(K=3, n=1, d=3, L=1, lam=0.1)
    model = DeepUFM(spec)
    theta0 = model.zeros(1)[0]
    evals, evecs = torch.linalg.eigh(model.hessian(theta0))
    neg = evals < 0
    m = int(neg.sum())
    assert m > 0
    eps = 1e-3
    seen = []
    conn = descend_from_saddle(model, theta0, 2.0 * evecs[:, neg], lambda s: seen.append(s.clone()) or "ran", eps=eps)
    assert conn.results == "ran" and torch.equal(seen[0], conn.starts)
    assert conn.starts.shape == (2 * m, spec.P) and conn.starts.dtype == torch.float64
    np.testing.assert_array_equal(conn.directions, [[j, s] for j in range(m) for s in (1, -1)])
    for j in range(m):  # unit-normalised: the factor 2 above is removed
        torch.testing.assert_close(conn.starts[2 * j], eps * evecs[:, neg][:, j], rtol=0, atol=1e-15)
        torch.testing.assert_close(conn.starts[2 * j + 1], -eps * evecs[:, neg][:, j], rtol=0, atol=1e-15)
    assert conn.saddle_loss == pytest.approx(np.log(3), rel=1e-15)
    # gradient zero at the saddle: L(±εv) = L + ε²λ_j/2 + O(ε³)
    predicted = conn.saddle_loss + 0.5 * eps ** 2 * np.repeat(evals[neg].numpy(), 2)
    np.testing.assert_allclose(conn.start_loss - conn.saddle_loss, predicted - conn.saddle_loss, rtol=1e-2)
    assert np.all(conn.start_loss < conn.saddle_loss)

    targets = [(7, 0.25, "converged") if r % 2 == 0 else (None, None, "max_iter") for r in range(2 * m)]
    edges = conn.edges(3, targets, eigenvalues=evals[neg].tolist())
    assert edges[0] == EdgeRecord(saddle_id=3, direction=0, sign=1, target_id=7, eps=eps,
                                  eigenvalue=float(evals[neg][0]), barrier=conn.saddle_loss - 0.25,
                                  stop_reason="converged")
    assert edges[1].target_id is None and edges[1].barrier is None and edges[1].sign == -1
    assert [e.direction for e in conn.edges(3, targets, first_direction=1000)] == [1000 + j for j, _ in conn.directions]
    with pytest.raises(ValueError, match="targets"):
        conn.edges(3, targets[:-1])
    empty = descend_from_saddle(model, theta0, torch.zeros(spec.P, 0), lambda s: tuple(s.shape))
    assert empty.results == (0, spec.P) and empty.directions.shape == (0, 2) and empty.start_loss.shape == (0,)
    with pytest.raises(ValueError, match="zero column"):
        descend_from_saddle(model, theta0, torch.zeros(spec.P, 1), lambda s: None)




def test_tree_barriers_from_each_branch_lowest_minimum(G):
    """A merge's barrier out of a branch is the saddle loss minus that branch's *lowest* minimum
    (MINIMA/SADDLES above, worked by hand), keyed by that minimum's point id as a plain string."""
    T = disconnectivity_tree(G)
    # merge 2 at S3 = 2 + 1e-9 joins D (0.2) with the branch {A, B} whose lowest minimum is A (0.0)
    assert T.nodes[("merge", 2)]["barriers"] == {"3": pytest.approx(2.0 + 1e-9 - 0.2, abs=1e-15),
                                                  "0": pytest.approx(2.0 + 1e-9 - 0.0, abs=1e-15)}
    # merge 3 at S2 = 3.0 joins C (1.0) with {A, B, D}: from A, 3.0, not 3.0 − (2.0 + 1e-9)
    assert T.nodes[("merge", 3)]["barriers"] == {"2": 2.0, "0": 3.0}
    assert T.nodes[("merge", 3)]["lowest_minimum"] == 0 and T.nodes[("merge", 0)]["lowest_minimum"] == 5
    data = tree_to_json(T)
    node = {n["id"]: n for n in data["nodes"]}["merge:3"]
    assert node["merge"] == 3 and node["barriers"] == {"2": 2.0, "0": 3.0}
    assert all("(" not in k for n in data["nodes"] for k in (n["barriers"] or {}))


def test_basin_barriers_by_hand():
    """Minima 0, 1, 2 (losses 0, 0.5, 1.0, basins 5, 3, 2) and minimum 3 (no basin); transition
    states 10 (loss 2.0) joining 0–1 and 11 (loss 1.2) joining 1–2: the lowest wall out of 0 is
    2.0 (to 1), out of 1 is 0.7 (to 2, not 1.5 to 0), out of 2 is 0.2 (to 1)."""
    from landscape.io.records import TransitionStateRecord
    from landscape.study.summary import basin_barriers

    pts = [_pt(i, "minimum", e) for i, e in ((0, 0.0), (1, 0.5), (2, 1.0), (3, 0.1))]
    pts += [_pt(10, "saddle", 2.0, hessian_index=1), _pt(11, "saddle", 1.2, hessian_index=1)]
    ts = [TransitionStateRecord(saddle_id=10, min1_id=0, min2_id=1, barrier1=2.0, barrier2=1.5),
          TransitionStateRecord(saddle_id=11, min1_id=1, min2_id=2, barrier1=1.2 - 0.5, barrier2=1.2 - 1.0)]
    G = basin_graph(pts, [], {0: 5, 1: 3, 2: 2}, 10, ts)
    rows = basin_barriers(G)
    assert [(r["point_id"], r["to"], r["saddle"]) for r in rows] == [(0, 1, 10), (1, 2, 11), (2, 1, 11)]
    assert [r["barrier"] for r in rows] == pytest.approx([2.0, 0.7, 0.2], abs=1e-15)
    assert [r["fraction"] for r in rows] == [0.5, 0.3, 0.2]
    alone = basin_barriers(basin_graph(pts[:1], [], {0: 1}, 1))
    assert alone == [{"point_id": 0, "label": None, "loss": 0.0, "basin_count": 1, "fraction": 1.0, "barrier": None,
                      "to": None, "to_label": None, "saddle": None}]
