"""The basin graph and the disconnectivity tree.

**Basin graph** (:func:`basin_graph`): a :class:`networkx.MultiGraph` whose nodes are distinct
critical points (point ids) and whose edges join a saddle to the point that the descent from
saddle ± ε·v_j certified at (usually a minimum), one edge per (direction j, sign), keyed
``"j+"`` / ``"j-"``. Node attributes: ``loss``, ``index`` (Hessian index, net of symmetry zero
modes), ``kind``, ``label``, ``rank_pattern``, ``basin_count`` (starts that certified there) and
``fraction`` (basin_count / all starts). Edge attributes: ``direction``, ``sign``, ``barrier``
(saddle loss − target loss), ``eigenvalue``, ``eps``. Descents that did not certify are not edges;
they are counted on the saddle as ``n_unresolved``.

**Disconnectivity tree** (:func:`disconnectivity_tree`), computed from the graph alone: minima
are leaves; as a loss threshold E rises, every edge becomes passable at the level
max(loss_u, loss_v) (the saddle's loss), and the minima connected through passable edges merge.
Implemented as a union-find over the edges sorted by level (Kruskal): each merge creates an
internal node at that level, and merges within ``level_tol`` of an existing internal node of the
same component join it, so one saddle joining three minima gives one node with three children.
Empty graphs give an empty tree; isolated minima stay separate roots; disconnected components
give several roots; saddles that join nothing new add no node.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import networkx as nx

from ..io.export import graphml_text, node_name  # noqa: F401  (re-exported: the GraphML form)
from ..io.records import EdgeRecord, PointRecord, TransitionStateRecord
from ..io.results import atomic_write_text


# ----- basin graph -------------------------------------------------------------------------------
def basin_graph(points: Iterable[PointRecord], edges: Iterable[EdgeRecord] = (),
                counts: Mapping[int, int] | None = None, n_starts: int | None = None,
                transition_states: Iterable[TransitionStateRecord] = ()) -> nx.MultiGraph:
    """Basin graph from the store's point, edge and transition-state records
    (:mod:`landscape.io.records`).

    ``counts``: point id → number of starts that certified there (missing ids count 0);
    ``n_starts``: all starts of the study, the denominator of ``fraction`` (None: fractions None).
    A point's ``rank_pattern`` is its analysis' (None before analysis). Each
    transition state adds two edges, saddle–min1 and saddle–min2, keyed ``"ts1"``/``"ts2"`` with
    ``transition_state=True``, the ``barrier`` from that minimum's side and ``other_minimum``.
    """
    counts = counts or {}
    G = nx.MultiGraph(n_starts=n_starts)
    for p in points:
        pid = int(p.id)
        c = int(counts.get(pid, 0))
        G.add_node(pid, loss=float(p.loss), index=p.hessian_index, kind=p.kind, label=p.label,
                   rank_pattern=p.rank_pattern, basin_count=c,
                   fraction=(c / n_starts if n_starts else None), n_unresolved=0)
    for e in edges:
        s = int(e.saddle_id)
        if s not in G:
            raise ValueError(f"edge from saddle {s}, which is not among the points")
        if e.target_id is None:
            G.nodes[s]["n_unresolved"] += 1
            continue
        t = int(e.target_id)
        if t not in G:
            raise ValueError(f"edge to point {t}, which is not among the points")
        barrier = e.barrier
        if barrier is None:
            barrier = G.nodes[s]["loss"] - G.nodes[t]["loss"]
        sign = int(e.sign)
        G.add_edge(s, t, key=f"{int(e.direction)}{'+' if sign > 0 else '-'}", direction=int(e.direction),
                   sign=sign, barrier=float(barrier), eigenvalue=e.eigenvalue, eps=e.eps)
    for ts in transition_states:
        s, a, b = int(ts.saddle_id), int(ts.min1_id), int(ts.min2_id)
        for key, m, other, barrier in (("ts1", a, b, ts.barrier1), ("ts2", b, a, ts.barrier2)):
            if s not in G or m not in G:
                raise ValueError(f"transition state {s} joins point {m}, which is not among the points")
            G.add_edge(s, m, key=key, transition_state=True, barrier=float(barrier), other_minimum=other)
    return G


# ----- disconnectivity tree ----------------------------------------------------------------------
def disconnectivity_tree(G: nx.Graph, level_tol: float = 0.0,
                         leaf_kinds: Sequence[str] = ("minimum",)) -> nx.DiGraph:
    """Disconnectivity tree of a basin graph (module docstring), as a DiGraph parent → child.

    Leaves are ``("leaf", point_id)`` for nodes of G whose ``kind`` is in ``leaf_kinds``; internal
    nodes are ``("merge", k)``, k = 0, 1, … in order of creation. Every tree node has ``level``
    (a leaf's loss; a merge's threshold), ``members`` (sorted point ids of the leaves below),
    ``basin_count`` (sum over members) and ``fraction`` (sum over members, None if any member's
    fraction is None); leaves also carry ``point_id`` and ``label``, merges ``saddles`` (the
    higher-loss endpoint of each edge that caused the merge), ``transition_states`` (those of them
    that are transition states) and ``barriers`` ({str(point id): merge level − that point's loss},
    one entry per child branch, keyed by the child's lowest minimum: the barrier out of that branch
    measured from its lowest minimum, never from a lower merge level). Every node has
    ``lowest_minimum`` (the point id of the lowest leaf below it) and ``lowest_level`` (its loss).
    ``T.graph`` holds ``roots`` (sorted by level), ``level_tol`` and ``leaf_kinds``.
    """
    T = nx.DiGraph(level_tol=level_tol, leaf_kinds=list(leaf_kinds))
    uf = nx.utils.UnionFind(G.nodes)
    top: dict[Any, Any] = {}
    for pid, a in G.nodes(data=True):
        if a["kind"] in leaf_kinds:
            leaf = ("leaf", pid)
            T.add_node(leaf, level=float(a["loss"]), members=[pid], basin_count=int(a.get("basin_count") or 0),
                       fraction=a.get("fraction"), point_id=pid, label=a.get("label"),
                       lowest_minimum=pid, lowest_level=float(a["loss"]))
            top[pid] = leaf

    def level(u, v) -> tuple[float, Any]:
        lu, lv = G.nodes[u]["loss"], G.nodes[v]["loss"]
        return (lu, u) if lu >= lv else (lv, v)

    ts_saddles = {u if G.nodes[u]["loss"] >= G.nodes[v]["loss"] else v
                  for u, v, a in G.edges(data=True) if a.get("transition_state")}
    merges = 0
    for u, v in sorted(G.edges(), key=lambda e: (level(*e)[0], e[0], e[1])):
        ru, rv = uf[u], uf[v]
        if ru == rv:
            continue
        E, saddle = level(u, v)
        tu, tv = top.get(ru), top.get(rv)
        uf.union(ru, rv)
        root = uf[ru]
        top.pop(ru, None)
        top.pop(rv, None)
        if tu is None or tv is None:
            if tu is not None or tv is not None:
                top[root] = tu if tu is not None else tv
            continue
        same = [t for t in (tu, tv) if t[0] == "merge" and abs(T.nodes[t]["level"] - E) <= level_tol]
        if same:
            node = same[0]
            for t in (tu, tv):
                if t == node:
                    continue
                if t in same:  # both at this level: fold t's children into node
                    for child in list(T.successors(t)):
                        T.add_edge(node, child)
                    T.nodes[node]["saddles"] += T.nodes[t]["saddles"]
                    T.remove_node(t)
                else:
                    T.add_edge(node, t)
            T.nodes[node]["saddles"].append(saddle)
        else:
            node = ("merge", merges)
            merges += 1
            T.add_node(node, level=float(E), saddles=[saddle])
            T.add_edge(node, tu)
            T.add_edge(node, tv)
        children = list(T.successors(node))
        fr = [T.nodes[c]["fraction"] for c in children]
        members = sorted(m for c in children for m in T.nodes[c]["members"])
        low = min(children, key=lambda c: (T.nodes[c]["lowest_level"], T.nodes[c]["lowest_minimum"]))
        T.nodes[node].update(members=members, lowest_minimum=T.nodes[low]["lowest_minimum"],
                             lowest_level=T.nodes[low]["lowest_level"],
                             basin_count=sum(T.nodes[c]["basin_count"] for c in children),
                             fraction=None if any(f is None for f in fr) else float(sum(fr)),
                             transition_states=sorted({x for x in T.nodes[node]["saddles"] if x in ts_saddles}),
                             barriers={str(T.nodes[c]["lowest_minimum"]): float(T.nodes[node]["level"] - T.nodes[c]["lowest_level"])
                                       for c in children})
        top[root] = node
    T.graph["roots"] = sorted((n for n in T if T.in_degree(n) == 0), key=lambda n: (T.nodes[n]["level"], str(n)))
    return T


def tree_to_json(T: nx.DiGraph) -> dict:
    """JSON-able flat form of a disconnectivity tree for figures::

        {"roots": [name], "level_tol": float, "leaf_kinds": [...],
         "nodes": [{"id": "leaf:3" | "merge:0", "type": "leaf" | "merge", "merge": int | None,
                    "level", "children": [names], "members": [point ids], "basin_count", "fraction",
                    "point_id", "label", "saddles", "transition_states", "lowest_minimum",
                    "barriers": {"<point id>": float} | None}]}

    Nodes are listed by (level, id); children by (level, id). Fields a node type lacks are None.
    """
    def key(n):
        return T.nodes[n]["level"], node_name(n)

    nodes = []
    for n in sorted(T, key=key):
        a = T.nodes[n]
        nodes.append({"id": node_name(n), "type": n[0], "merge": n[1] if n[0] == "merge" else None, "level": a["level"],
                      "children": [node_name(c) for c in sorted(T.successors(n), key=key)],
                      "members": list(a["members"]), "basin_count": a["basin_count"], "fraction": a["fraction"],
                      "point_id": a.get("point_id"), "label": a.get("label"), "saddles": a.get("saddles"),
                      "transition_states": a.get("transition_states"), "barriers": a.get("barriers"),
                      "lowest_minimum": a["lowest_minimum"]})
    return {"roots": [node_name(r) for r in T.graph["roots"]], "level_tol": T.graph["level_tol"],
            "leaf_kinds": T.graph["leaf_kinds"], "nodes": nodes}


def write_tree_json(T: nx.DiGraph, path: str | Path) -> None:
    """Write :func:`tree_to_json` to ``path``."""
    atomic_write_text(path, json.dumps(tree_to_json(T), indent=1, sort_keys=True))


def write_graphml(G: nx.Graph, path: str | Path) -> None:
    """Write :func:`graphml_text` to ``path`` (atomically)."""
    atomic_write_text(path, graphml_text(G))
