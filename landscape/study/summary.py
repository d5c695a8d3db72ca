"""What a study's database says: basin fractions, the graph, the tree, and the derived files.

:func:`summarise` is a function of the database alone: it returns a :class:`StudySummary` whose
``record`` is the JSON content of ``summary.json`` (without wall time, environment or files)
and whose ``graph`` and ``tree`` are the networkx basin graph and disconnectivity tree.
:func:`finish` writes the derived files of a results folder: ``spectra.npz``, ``tree.json``,
``graph.graphml`` and ``summary.json``.

Fractions have all main trajectories as denominator (:func:`landscape.study.stats.basin_fractions`);
saddle-search trajectories never count. Under a descent dynamics no saddle holds a basin count
(:mod:`landscape.study.run`); the saddles that trajectories passed near are reported under
``saddle_visits``.
"""
from __future__ import annotations

import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

import networkx as nx
import numpy as np
import torch

from .. import __version__
from ..analysis.point import LEAF_KINDS
from ..engines.outcomes import STOP_REASONS, with_detail
from ..analysis.labels import DNC
from ..analysis.settings import SpectrumSettings
from ..analysis.spectrum import inspect_spectrum
from ..io.results import FILES, own_subfolder, read_json, stored_spectra, write_json, write_spectra
from ..io.records import PointRecord, TrajectoryRecord
from ..io.store import StudyStore
from .config import CHECK_OFFSET, StudyConfig, resolve_device
from .diagnosis import certified_headline, diagnose
from .result import StudyPoint
from .graph import basin_graph, disconnectivity_tree, tree_to_json, write_graphml
from .stats import accumulation_curve, basin_fractions, paired_counts, paired_difference, proportion

#: Kinds of stored trajectories (the ``kind`` entry of their ``engine`` record).
MAIN = "main"
#: Kind of the stored check trajectories (``[cross_check]``: main starts rerun by another dynamics).
CHECK = "check"
#: Confidence level of every interval.
CONFIDENCE = 0.95
#: Merges of the disconnectivity tree within this loss of each other become one node.
TREE_LEVEL_TOL = 0.0
#: Top-level keys of summary.json, in order.
SUMMARY_KEYS = ("study", "config", "dynamics", "environment", "wall_time_s", "timings", "trajectory_time_s",
                "n_trajectories", "stop_reasons",
                "tolerances", "points", "labels", "uncertified", "unseen", "accumulation", "saddle_visits",
                "transition_states", "transition_search", "check", "graph", "headline", "diagnosis", "files")
#: Keys of each summary.json point record.
POINT_KEYS = ("id", "kind", "label", "loss", "grad_norm", "rank_pattern", "index", "nullity", "symmetry_zero_modes",
              "excess_zero_modes", "type", "verified", "lanczos_converged", "symmetry_verified", "index_is_lower_bound",
              "smallest_nonzero_eigenvalue", "dnc_metrics", "theory_match", "basin_count", "fraction", "ci_low", "ci_high")
#: Files a study run writes (``report.html`` is written by ``landscape run``/``report``).
STUDY_FILES = {k: v for k, v in FILES.items() if k != "report"}


@dataclass
class StudySummary:
    """``record``: the summary fields (JSON); ``graph``: the basin graph; ``tree``: the
    disconnectivity tree (both networkx, not JSON)."""

    record: dict
    graph: nx.MultiGraph
    tree: nx.DiGraph


def main_trajectories(store: StudyStore) -> list[TrajectoryRecord]:
    """Stored trajectories of the main dynamics (those that count in the fractions)."""
    return [t for t in store.trajectories() if (t.engine or {}).get("kind") == MAIN]


def _uncertified_reason(t: TrajectoryRecord) -> str:
    detail = (t.engine or {}).get("stop_detail")
    return with_detail(t.stop_reason, detail)


def saddle_visits(trajs: list[TrajectoryRecord], points: Mapping[int, PointRecord]) -> list[dict]:
    """Per saddle that main trajectories were finished at and then continued past: how many
    trajectories, how many visits, and how long they lingered (iterations with ‖∇L‖ at the
    hand-off tolerance before the hand-off), sorted by trajectories."""
    by: dict[int, list[int]] = {}
    who: dict[int, set[int]] = {}
    for t in trajs:
        for v in (t.engine or {}).get("saddle_visits", []):
            by.setdefault(v["point_id"], []).append(int(v.get("lingered", 0)))
            who.setdefault(v["point_id"], set()).add(t.idx)
    rows = []
    for pid, lingered in by.items():
        p = points.get(pid)
        rows.append({"point_id": pid, "label": p and p.label, "kind": p and p.kind,
                     "index": p and p.hessian_index, "loss": p and p.loss, "n_trajectories": len(who[pid]),
                     "n_visits": len(lingered), "mean_lingered": float(np.mean(lingered)),
                     "max_lingered": int(np.max(lingered))})
    return sorted(rows, key=lambda r: (-r["n_trajectories"], r["point_id"]))


def point_record(p: PointRecord, count: int, n: int) -> dict:
    """The summary.json record of one stored point (keys :data:`POINT_KEYS`)."""
    a = p.analysis or {}
    theory = a.get("theory")
    row = proportion(count, n, CONFIDENCE)
    return {"id": p.id, "kind": p.kind, "label": p.label, "loss": p.loss, "grad_norm": p.grad_norm,
            "rank_pattern": a.get("rank_pattern"), "index": a.get("index"), "nullity": a.get("nullity"),
            "symmetry_zero_modes": a.get("symmetry_zero_modes"), "excess_zero_modes": a.get("excess_zero_modes"),
            "type": a.get("type"), "verified": a.get("verified", True),
            "lanczos_converged": a.get("lanczos_converged"), "symmetry_verified": a.get("symmetry_verified"),
            "index_is_lower_bound": a.get("index_is_lower_bound"),
            "smallest_nonzero_eigenvalue": a.get("smallest_nonzero_eigenvalue"), "dnc_metrics": a.get("dnc"),
            "theory_match": None if theory is None else {k: v for k, v in theory.items() if k != "Zbar"},
            "basin_count": row["count"], "fraction": row["fraction"], "ci_low": row["ci_low"],
            "ci_high": row["ci_high"]}


def summarise(cfg: StudyConfig, store: StudyStore) -> StudySummary:
    """Everything summary.json derives from the database (module docstring)."""
    trajs = main_trajectories(store)
    n = len(trajs)
    points = store.points()
    by_id = {p.id: p for p in points}
    # "stalled" splits by detail (gradient_flat / plateau) in the uncertified rows
    detailed = [replace(t, stop_reason=_uncertified_reason(t)) if t.point_id is None else t for t in trajs]
    prov = {"engine": " → ".join(s.engine for s in cfg.stages), "step": cfg.describe_dynamics(),
            "init": cfg.init.to_dict()}
    bf = basin_fractions(detailed, points, prov, CONFIDENCE, species_kinds=LEAF_KINDS)
    counts = {r["point_id"]: r["count"] for r in bf["points"]}
    rows = [point_record(p, counts.get(p.id, 0), n) for p in sorted(points, key=lambda p: (p.loss, p.id))]
    labels: dict[str, list[dict]] = {}
    for r in rows:
        labels.setdefault(r["label"], []).append(r)
    label_rows = [{"label": lab, "n_points": len(rs), **proportion(sum(r["basin_count"] for r in rs), n, CONFIDENCE)}
                  for lab, rs in labels.items()]
    label_rows.sort(key=lambda r: (-r["count"], str(r["label"])))
    acc = accumulation_curve(trajs, points, species_kinds=LEAF_KINDS)
    G = basin_graph(points, store.edges(), counts, n, store.transition_states())
    T = disconnectivity_tree(G, level_tol=TREE_LEVEL_TOL, leaf_kinds=LEAF_KINDS)
    dnc = next((r for r in label_rows if r["label"] == DNC.name), None) or proportion(0, n, CONFIDENCE)
    best = rows[0] if rows else None
    ts = store.transition_states()
    record = {
        "n_trajectories": n,
        "stop_reasons": {r.value: sum(1 for t in trajs if t.stop_reason == r) for r in STOP_REASONS},
        "tolerances": {"certify_tol": cfg.certify_tol, "dedup": cfg.dedup.to_dict(), "analysis": cfg.analysis.to_dict(),
                       "confidence": CONFIDENCE, "saddle_eps": cfg.saddles.eps, "tree_level_tol": TREE_LEVEL_TOL},
        "points": rows,
        "labels": label_rows,
        "uncertified": bf["uncertified"],
        "unseen": {k: bf["unseen"][k] for k in ("estimate", "n1", "n")},
        "accumulation": {"n_trajectories": acc["n_trajectories"].tolist(), "n_distinct": acc["n_distinct"].tolist()},
        "saddle_visits": saddle_visits(trajs, by_id),
        "transition_states": [{k: getattr(t, k) for k in ("saddle_id", "min1_id", "min2_id", "barrier1", "barrier2")}
                              for t in ts],
        "headline": {"dnc_fraction": dnc["fraction"], "dnc_ci_low": dnc["ci_low"], "dnc_ci_high": dnc["ci_high"],
                     "lowest_loss_label": best and best["label"], "lowest_loss": best and best["loss"],
                     "lowest_loss_point": best and best["id"], **lowest_barrier_out_of(G, DNC.name),
                     "basin_barriers": basin_barriers(G)},
    }
    return StudySummary(record, G, T)


def featured_points(points: list[StudyPoint]) -> list[tuple[int, str]]:
    """Points a report shows in detail, as (id, why): the lowest-loss point, the point the most
    starts reached, and the lowest-loss DNC point, without repeats (:class:`StudyPoint`)."""
    picks = []
    if points:
        picks.append((min(points, key=lambda p: p.loss), "lowest loss"))
        picks.append((max(points, key=lambda p: (p.basin_count, -p.loss)), "most starts"))
        dnc = [p for p in points if p.label == DNC.name]
        if dnc:
            picks.append((min(dnc, key=lambda p: p.loss), "lowest-loss DNC"))
    out: dict[int, list[str]] = {}
    for p, why in picks:
        out.setdefault(p.id, []).append(why)
    return [(pid, ", ".join(whys)) for pid, whys in out.items()]


def featured_spectra(cfg: StudyConfig, out: Path, budget_s: float) -> list[int]:
    """Structured spectra (:func:`landscape.analysis.spectrum.inspect_spectrum`) of the featured
    points not yet holding one, with the dense path only where its predicted cost is at most
    ``budget_s``; stored in the database and in ``out/spectra/point-<id>.json``. Returns the ids
    done."""
    summary = read_json(out / FILES["summary"])
    done = []
    with StudyStore.open(out) as store:
        for pid, _ in featured_points([StudyPoint.from_row(p) for p in summary["points"]]):
            if store.spectrum_record(pid) is not None:
                continue
            p = store.point(pid)
            own_subfolder(out, "spectra")   # before the computation: a planted link is refused at once
            rec = inspect_spectrum(cfg.model, p.params, SpectrumSettings.from_analysis(cfg.analysis,
                                                                                         dense_budget_s=budget_s),
                                   point_id=pid, device=resolve_device(cfg.device)).to_dict()
            write_json(out / "spectra" / f"point-{pid}.json", rec)
            store.put_spectrum(pid, rec)
            done.append(pid)
    return done


def lowest_barrier_out_of(G: nx.MultiGraph, label: str) -> dict:
    """The lowest transition-state barrier out of the lowest-loss minimum labelled ``label``:
    ``{"dnc_barrier", "dnc_barrier_to", "dnc_barrier_to_label", "dnc_barrier_saddle"}`` (None when
    no transition state joins it)."""
    out = {"dnc_barrier": None, "dnc_barrier_to": None, "dnc_barrier_to_label": None, "dnc_barrier_saddle": None}
    mins = [u for u, a in G.nodes(data=True) if a.get("label") == label and a.get("kind") in LEAF_KINDS]
    if not mins:
        return out
    m = min(mins, key=lambda u: G.nodes[u]["loss"])
    best = _lowest_transition_state(G, m)
    if best is not None:
        out.update(dnc_barrier=best[0], dnc_barrier_to=best[1],
                   dnc_barrier_to_label=G.nodes[best[1]].get("label") if best[1] in G else None,
                   dnc_barrier_saddle=best[2])
    return out


def _lowest_transition_state(G: nx.MultiGraph, m) -> tuple[float, int, int] | None:
    """(barrier = saddle loss − loss of m, the minimum on the other side, the saddle) of the lowest
    transition state of the basin graph out of minimum ``m``; None when none joins it."""
    best = None
    for _, s, e in G.edges(m, data=True):
        if not e.get("transition_state"):
            continue
        barrier = G.nodes[s]["loss"] - G.nodes[m]["loss"]
        if best is None or barrier < best[0]:
            best = (barrier, e.get("other_minimum"), s)
    return best


def basin_barriers(G: nx.MultiGraph) -> list[dict]:
    """For every minimum that holds a basin count (most starts first, ties by id): the lowest
    transition-state barrier out of it (saddle loss − its loss), the minimum on the other side and
    the saddle; ``barrier`` None where no stored transition state joins it. Rows: ``{"point_id",
    "label", "loss", "basin_count", "fraction", "barrier", "to", "to_label", "saddle"}`` — the
    paper's question: do the large basins have low walls?"""
    rows = []
    for m, a in G.nodes(data=True):
        if a.get("kind") not in LEAF_KINDS or not a.get("basin_count"):
            continue
        best = _lowest_transition_state(G, m)
        rows.append({"point_id": m, "label": a.get("label"), "loss": a["loss"], "basin_count": a["basin_count"],
                     "fraction": a.get("fraction"), "barrier": best and best[0], "to": best and best[1],
                     "to_label": G.nodes[best[1]].get("label") if best and best[1] in G else None,
                     "saddle": best and best[2]})
    return sorted(rows, key=lambda r: (-r["basin_count"], r["point_id"]))


def environment(device: str | None = None) -> dict:
    out = {"landscape": __version__, "torch": torch.__version__, "numpy": np.__version__,
           "python": platform.python_version(), "threads": torch.get_num_threads()}
    if device is not None:
        out["device"] = device
        if device.startswith("cuda") and torch.cuda.is_available():
            out["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return out


def cross_check_record(cfg: StudyConfig, store: StudyStore) -> dict | None:
    """How the ``[cross_check]`` dynamics ends from the same starts as the main one (None without a
    check): over the starts j that both ran, ``agree`` counts those that certified at the same
    distinct point (modulo symmetry: one deduplicated point id); ``main_dnc`` and ``check_dnc``
    are the DNC fractions of the two on those starts with Wilson intervals; ``dnc_difference`` is
    main − check, paired start by start (Newcombe's interval), and ``disagree`` says whether that
    interval excludes 0; ``check_labels`` counts the check's ends per label and
    ``check_uncertified`` its uncertified starts."""
    if not cfg.cross_check.starts:
        return None
    labels = {p.id: p.label for p in store.points()}
    main, chk = {}, {}
    for t in store.trajectories():
        kind = (t.engine or {}).get("kind")
        if kind == MAIN:
            main[t.idx] = t
        elif kind == CHECK:
            chk[t.idx - CHECK_OFFSET] = t
    common = sorted(set(main) & set(chk))
    n = len(common)

    def end(t):
        return t.point_id if t.certified else None

    agree = sum(1 for j in common if end(main[j]) is not None and end(main[j]) == end(chk[j]))
    a = [labels.get(end(main[j])) == DNC.name for j in common]
    b = [labels.get(end(chk[j])) == DNC.name for j in common]
    diff = paired_difference(**paired_counts(a, b))
    check_labels: dict[str, int] = {}
    for j in common:
        lab = labels.get(end(chk[j])) if end(chk[j]) is not None else None
        if lab is not None:
            check_labels[str(lab)] = check_labels.get(str(lab), 0) + 1
    return {"dynamics": cfg.cross_check.describe(), "n": n, "agree": agree, "agreement": proportion(agree, n),
            "main_dnc": proportion(sum(a), n), "check_dnc": proportion(sum(b), n), "dnc_difference": diff,
            "disagree": bool(n and (diff["ci_low"] > 0 or diff["ci_high"] < 0)), "check_labels": check_labels,
            "check_uncertified": sum(1 for j in common if end(chk[j]) is None)}


def trajectory_time(store: StudyStore) -> float:
    """Seconds the stored units' trajectories took, over every process that wrote them: per
    committed unit the latest stop of its trajectories (each trajectory's ``wall_time`` counts from
    the start of its unit's batch), summed over units. Unlike ``wall_time_s`` (this process's run)
    it does not shrink when a study is resumed; it excludes the point analysis."""
    last: dict[int, float] = {}
    for t in store.trajectories():
        if t.unit is not None and t.wall_time is not None:
            last[t.unit] = max(last.get(t.unit, 0.0), float(t.wall_time))
    return float(sum(last.values()))


def finish(cfg: StudyConfig, store: StudyStore, out: Path, wall: float, timings: dict | None = None) -> dict:
    """Write spectra.npz, tree.json, graph.graphml and summary.json into ``out``; return the
    summary (keys :data:`SUMMARY_KEYS`). ``timings``: seconds per phase of this process's run
    (``setup_s``, ``trajectories_s``, ``saddle_search_s``, ``saddle_descents_s``,
    ``transition_states_s``; ``summary_s`` is added here)."""
    t0 = time.perf_counter()
    s = summarise(cfg, store)
    # from the stored analyses, so points analysed by an earlier (interrupted) process cost nothing
    points = store.points(with_params=True)
    write_spectra(out / FILES["spectra"], [stored_spectra(p.analysis, p.spectrum) for p in points],
                  [p.id for p in points])
    write_json(out / FILES["tree"], tree_to_json(s.tree))
    write_graphml(s.graph, out / FILES["graphml"])
    r = s.record
    timings = {**(timings or {}), "summary_s": time.perf_counter() - t0}
    summary = {"study": cfg.name, "config": cfg.to_dict(), "dynamics": cfg.describe_dynamics(),
               "environment": environment(str(resolve_device(cfg.device))), "wall_time_s": wall + timings["summary_s"],
               "timings": timings, "trajectory_time_s": trajectory_time(store),
               **{k: r[k] for k in ("n_trajectories", "stop_reasons", "tolerances", "points", "labels", "uncertified",
                                    "unseen", "accumulation", "saddle_visits", "transition_states")},
               "transition_search": store.get_meta("connect_report"), "check": cross_check_record(cfg, store),
               "graph": {"n_nodes": s.graph.number_of_nodes(), "n_edges": s.graph.number_of_edges(),
                         "tree": FILES["tree"], "graphml": FILES["graphml"]},
               "headline": {**r["headline"], "certified": certified_headline(r, CONFIDENCE)},
               "diagnosis": diagnose(cfg, r), "files": dict(STUDY_FILES)}
    write_json(out / FILES["summary"], summary)
    return summary
