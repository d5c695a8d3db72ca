"""Basin fractions with confidence intervals, the unseen mass, and the accumulation curve.

Every fraction has **all starts** of the study as its denominator: the starts that did not
certify are reported separately, one row per stop reason, and never dropped, so the point rows
plus the uncertified rows always add up to the number of starts. Every result carries the
``provenance`` it was computed for (engine, step size, initialisation), because basin fractions
depend on the integrator (FIELD.md).

Inputs are the records of :class:`landscape.io.store.StudyStore` (:mod:`landscape.io.records`):
trajectories (:class:`TrajectoryRecord`: ``idx``, ``point_id`` (None when not certified),
``stop_reason``) and points (:class:`PointRecord`: ``id``, ``kind``, ``label``, ``loss``).
"""
from __future__ import annotations

import math
from collections import Counter
from statistics import NormalDist
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..io.records import PointRecord, TrajectoryRecord

#: Keys a provenance mapping must have.
PROVENANCE_KEYS = ("engine", "step", "init")


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion p = k/n: (c − h, c + h) with
    c = (p + z²/2n)/(1 + z²/n), h = z/(1 + z²/n)·√(p(1−p)/n + z²/4n²), z the normal quantile at
    (1 + confidence)/2 (the closed form scipy's ``binomtest(...).proportion_ci(method="wilson")``
    computes, without importing scipy.stats: 0.9 s of a run's start). With n = 0 there is no
    information: (0, 1)."""
    k, n = int(k), int(n)
    if not 0 <= k <= n:
        raise ValueError(f"wilson_interval: count k={k} must lie in [0, n={n}]")
    if not 0 < confidence < 1:
        raise ValueError(f"wilson_interval: confidence={confidence!r} must lie in (0, 1)")
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p, zz = k / n, z * z / n
    centre = (p + zz / 2) / (1 + zz)
    half = z / (1 + zz) * math.sqrt(p * (1 - p) / n + zz / (4 * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion(count: int, n: int, confidence: float = 0.95) -> dict:
    """``{"count", "fraction", "ci_low", "ci_high"}`` of count/n with its Wilson interval: the one
    builder of every fraction row (study summaries, prevalence tables, figures). The fraction is
    None for n = 0."""
    lo, hi = wilson_interval(count, n, confidence)
    return {"count": int(count), "fraction": count / n if n else None, "ci_low": lo, "ci_high": hi}


def paired_counts(first: Iterable[bool], second: Iterable[bool]) -> dict:
    """The 2×2 table of paired binary outcomes (the same units in two conditions):
    ``{"both", "first_only", "second_only", "neither"}``, the arguments of
    :func:`paired_difference`."""
    pairs = list(zip(first, second))
    return {"both": sum(1 for x, y in pairs if x and y), "first_only": sum(1 for x, y in pairs if x and not y),
            "second_only": sum(1 for x, y in pairs if y and not x),
            "neither": sum(1 for x, y in pairs if not x and not y)}


def paired_difference(both: int, first_only: int, second_only: int, neither: int,
                      confidence: float = 0.95) -> dict:
    """Difference p₁ − p₂ of two proportions measured on the **same** n units (paired data:
    the same starts run in two sweep cells), with Newcombe's (1998) hybrid score interval for
    paired data (his method 10): the Wilson intervals (l₁, u₁), (l₂, u₂) of the two marginal
    proportions combined with the correlation φ of the paired outcomes,

        δ = √((p₁−l₁)² − 2φ(p₁−l₁)(u₂−p₂) + (u₂−p₂)²),  ε = √((u₁−p₁)² − 2φ(u₁−p₁)(p₂−l₂) + (p₂−l₂)²),

    interval (p₁ − p₂ − δ, p₁ − p₂ + ε); φ = C/√((a+b)(c+d)(a+c)(b+d)) with Newcombe's adjusted
    C = ad − bc − n/2 when ad − bc > n/2, 0 when 0 ≤ ad − bc ≤ n/2, ad − bc when negative (and φ = 0
    where a margin is empty). The 2×2 table: ``both`` = a (the event in both), ``first_only`` = b, ``second_only`` = c,
    ``neither`` = d. Pairing removes the between-start variance the two cells share, so the
    interval is narrower than that of two independent samples whenever φ > 0. Returns
    ``{"difference", "ci_low", "ci_high", "n", "discordant"}`` (difference None for n = 0)."""
    a, b, c, d = (int(v) for v in (both, first_only, second_only, neither))
    if min(a, b, c, d) < 0:
        raise ValueError(f"paired_difference: counts must be ≥ 0, got {(a, b, c, d)}")
    n = a + b + c + d
    if n == 0:
        return {"difference": None, "ci_low": -1.0, "ci_high": 1.0, "n": 0, "discordant": 0}
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_interval(a + b, n, confidence)
    l2, u2 = wilson_interval(a + c, n, confidence)
    den = (a + b) * (c + d) * (a + c) * (b + d)
    cross = a * d - b * c
    adjusted = cross - n / 2 if cross > n / 2 else (cross if cross < 0 else 0.0)
    phi = adjusted / np.sqrt(float(den)) if den else 0.0
    delta = np.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    eps = np.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    diff = p1 - p2
    return {"difference": diff, "ci_low": max(diff - float(delta), -1.0), "ci_high": min(diff + float(eps), 1.0),
            "n": n, "discordant": b + c}


def _check_provenance(provenance: Mapping) -> dict:
    missing = [k for k in PROVENANCE_KEYS if k not in provenance]
    if missing:
        raise ValueError(f"provenance lacks {missing}: every fraction must name its engine, step and init")
    return dict(provenance)


def good_turing_unseen(counts: Iterable[int], n: int) -> dict:
    """Good–Turing estimate N₁/n of the probability that the next start reaches a minimum not
    seen yet. ``counts``: how many of the ``n`` starts reached each distinct minimum seen;
    N₁ (N₂) is the number of minima seen exactly once (twice). Returns
    ``{"estimate", "n1", "n2", "n"}``; the estimate is NaN for n = 0."""
    c = Counter(int(x) for x in counts)
    return {"estimate": c[1] / n if n else float("nan"), "n1": c[1], "n2": c[2], "n": int(n)}


def _points_by_id(points: Iterable[PointRecord]) -> dict[int, PointRecord]:
    return {int(p.id): p for p in points}


def accumulation_curve(trajectories: Iterable[TrajectoryRecord], points: Iterable[PointRecord],
                       species_kinds: Sequence[str] = ("minimum",)) -> dict:
    """Distinct points of a kind in ``species_kinds`` seen among the first t trajectories (in
    index order), t = 1..N. Returns ``{"n_trajectories": int64 (N,), "n_distinct": int64 (N,),
    "species_kinds": list}``."""
    kind = {i: p.kind for i, p in _points_by_id(points).items()}
    seen: set[int] = set()
    curve = []
    for t in sorted(trajectories, key=lambda t: t.idx):
        pid = t.point_id
        if pid is not None and kind[int(pid)] in species_kinds:
            seen.add(int(pid))
        curve.append(len(seen))
    return {"n_trajectories": np.arange(1, len(curve) + 1, dtype=np.int64),
            "n_distinct": np.array(curve, dtype=np.int64), "species_kinds": list(species_kinds)}


def basin_fractions(trajectories: Iterable[TrajectoryRecord], points: Iterable[PointRecord], provenance: Mapping,
                    confidence: float = 0.95, species_kinds: Sequence[str] = ("minimum",)) -> dict:
    """Fraction of all starts that reached each distinct point and each (kind, label), with
    Wilson intervals; uncertified starts by stop reason; the Good–Turing unseen mass.

    Returns::

        {"provenance": {engine, step, init, ...}, "confidence": 0.95, "n_starts": N,
         "n_certified": C, "species_kinds": [...],
         "points":      [{"point_id", "kind", "label", "loss", "count", "fraction", "ci_low", "ci_high"}],
         "labels":      [{"kind", "label", "n_points", "count", "fraction", "ci_low", "ci_high"}],
         "uncertified": [{"stop_reason", "count", "fraction", "ci_low", "ci_high"}],
         "unseen":      {"estimate", "n1", "n2", "n"}}

    Rows are sorted by descending count (ties by id / name); points never reached are omitted.
    ``unseen`` counts only distinct points whose kind is in ``species_kinds`` and divides by N.
    """
    prov = _check_provenance(provenance)
    pts = _points_by_id(points)
    trajs = list(trajectories)
    n = len(trajs)
    reached = Counter(int(t.point_id) for t in trajs if t.point_id is not None)
    stops = Counter(str(t.stop_reason) for t in trajs if t.point_id is None)
    unknown = sorted(set(reached) - set(pts))
    if unknown:
        raise ValueError(f"trajectories reach point ids {unknown[:5]} that are not among the points")

    point_rows = []
    groups: dict[tuple[str, str | None], list[int]] = {}
    for pid, c in sorted(reached.items(), key=lambda kv: (-kv[1], kv[0])):
        p = pts[pid]
        point_rows.append({"point_id": pid, "kind": p.kind, "label": p.label, "loss": p.loss,
                           **proportion(c, n, confidence)})
        groups.setdefault((p.kind, p.label), []).append(pid)
    label_rows = [{"kind": k, "label": lab, "n_points": len(ids), **proportion(sum(reached[i] for i in ids), n, confidence)}
                  for (k, lab), ids in groups.items()]
    label_rows.sort(key=lambda r: (-r["count"], r["kind"], str(r["label"])))
    unc_rows = [{"stop_reason": s, **proportion(c, n, confidence)}
                for s, c in sorted(stops.items(), key=lambda kv: (-kv[1], kv[0]))]
    species = [c for pid, c in reached.items() if pts[pid].kind in species_kinds]
    return {"provenance": prov, "confidence": confidence, "n_starts": n, "n_certified": sum(reached.values()),
            "species_kinds": list(species_kinds), "points": point_rows, "labels": label_rows,
            "uncertified": unc_rows, "unseen": good_turing_unseen(species, n)}
