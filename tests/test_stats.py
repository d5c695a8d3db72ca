"""Basin fractions, Wilson intervals, Good–Turing unseen mass and the accumulation curve."""
import math

import numpy as np
import pytest
from scipy.stats import norm

from landscape.io.records import PointRecord, TrajectoryRecord
from landscape.study.stats import (accumulation_curve, basin_fractions, good_turing_unseen, paired_difference,
                                   wilson_interval)

PROV = {"engine": "gd", "step": "lr=0.5", "init": "gaussian(scale_H=1, scale_W=1)"}


def _wilson_by_hand(k, n, z):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(3, 10)
    assert (lo, hi) == pytest.approx((0.1077912674, 0.6032218525), abs=1e-9)  # tabulated 3/10
    z = norm.ppf(0.975)
    for k, n in [(3, 10), (1, 7), (50, 100), (999, 1000)]:
        assert wilson_interval(k, n) == pytest.approx(_wilson_by_hand(k, n, z), abs=1e-12)
    # 0 of n: lower bound 0, upper z²/(n + z²)
    assert wilson_interval(0, 10) == pytest.approx((0.0, z * z / (10 + z * z)), abs=1e-12)
    assert wilson_interval(3, 10, confidence=0.99) == pytest.approx(_wilson_by_hand(3, 10, norm.ppf(0.995)), abs=1e-12)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_interval_equals_scipys_binomtest():
    from scipy.stats import binomtest
    for k, n, conf in [(0, 1, 0.95), (1, 1, 0.95), (37, 256, 0.95), (235, 384, 0.9), (5, 64, 0.99), (0, 256, 0.95)]:
        ci = binomtest(k, n).proportion_ci(confidence_level=conf, method="wilson")
        assert wilson_interval(k, n, conf) == pytest.approx((ci.low, ci.high), abs=1e-14)
    with pytest.raises(ValueError, match="k=5"):
        wilson_interval(5, 4)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 4, confidence=1.5)


def _point(id, kind, label, loss):
    return PointRecord(id=id, kind=kind, label=label, loss=loss, grad_norm=0.0, fingerprint={})


def _traj(idx, point_id, stop_reason="converged"):
    return TrajectoryRecord(idx=idx, seed=idx, stop_reason=stop_reason, certified=point_id is not None,
                            point_id=point_id)


POINTS = [_point(0, "minimum", "DNC", 0.02), _point(1, "minimum", "pairs", 0.01), _point(2, "minimum", "pairs", 0.011),
          _point(3, "saddle", None, 0.5), _point(4, "minimum", "DNC", 0.03)]  # the last never reached


def _trajectories():
    reached = [0] * 5 + [1] * 2 + [2] + [3] + [None] * 3
    reasons = ["converged"] * 9 + ["max_iter", "max_iter", "diverged"]
    order = np.random.default_rng(0).permutation(12)  # index order differs from list order
    return [_traj(int(order[k]), reached[k], reasons[k]) for k in range(12)]


def test_basin_fractions_hand_made():
    r = basin_fractions(_trajectories(), POINTS, PROV)
    assert r["provenance"] == PROV and r["n_starts"] == 12 and r["n_certified"] == 9
    rows = [(p["point_id"], p["count"], p["label"]) for p in r["points"]]
    assert rows == [(0, 5, "DNC"), (1, 2, "pairs"), (2, 1, "pairs"), (3, 1, None)]
    assert r["points"][0]["fraction"] == 5 / 12
    assert (r["points"][0]["ci_low"], r["points"][0]["ci_high"]) == wilson_interval(5, 12)
    labels = [(g["kind"], g["label"], g["n_points"], g["count"]) for g in r["labels"]]
    assert labels == [("minimum", "DNC", 1, 5), ("minimum", "pairs", 2, 3), ("saddle", None, 1, 1)]
    assert r["labels"][1]["fraction"] == 3 / 12
    unc = [(u["stop_reason"], u["count"], u["fraction"]) for u in r["uncertified"]]
    assert unc == [("max_iter", 2, 2 / 12), ("diverged", 1, 1 / 12)]
    # nothing dropped: every start is in exactly one row
    assert sum(p["count"] for p in r["points"]) + sum(u["count"] for u in r["uncertified"]) == 12
    # minima seen once: only point 2 (the saddle seen once is not a minimum) → 1/12
    assert r["unseen"] == {"estimate": 1 / 12, "n1": 1, "n2": 1, "n": 12}


def test_basin_fractions_checks_inputs():
    with pytest.raises(ValueError, match="provenance lacks \\['step'\\]"):
        basin_fractions(_trajectories(), POINTS, {"engine": "gd", "init": "gaussian"})
    with pytest.raises(ValueError, match="not among the points"):
        basin_fractions([_traj(0, 9)], POINTS, PROV)
    empty = basin_fractions([], POINTS, PROV)
    assert empty["n_starts"] == 0 and empty["points"] == [] and math.isnan(empty["unseen"]["estimate"])


def test_good_turing():
    assert good_turing_unseen([1, 1, 2, 5], 10) == {"estimate": 0.2, "n1": 2, "n2": 1, "n": 10}
    assert good_turing_unseen([3, 4], 7)["estimate"] == 0.0


def test_accumulation_curve_in_index_order():
    trajs = [_traj(i, pid) for i, pid in ((4, 1), (0, 0), (2, None), (1, 3), (3, 0), (5, 2))]
    c = accumulation_curve(trajs, POINTS)
    np.testing.assert_array_equal(c["n_trajectories"], [1, 2, 3, 4, 5, 6])
    # idx 0 → min 0 (1), idx 1 → saddle (1), idx 2 → none (1), idx 3 → min 0 again (1), idx 4 → min 1 (2), idx 5 → 3
    np.testing.assert_array_equal(c["n_distinct"], [1, 1, 1, 1, 2, 3])
    c2 = accumulation_curve(trajs, POINTS, species_kinds=("minimum", "saddle"))
    np.testing.assert_array_equal(c2["n_distinct"], [1, 2, 2, 2, 3, 4])


# ----- paired differences (the same starts in two sweep cells) --------------------------------
def test_paired_difference_covers_the_true_difference_at_its_level():
    """Coverage by simulation, independent of the formula: paired outcomes with P(first) = 0.15,
    P(second) = 0.10 and strong agreement (as neighbouring λ cells have), n = 256."""
    rng = np.random.default_rng(1)
    # joint law of (first, second): both, first only, second only, neither
    law = np.array([0.09, 0.06, 0.01, 0.84])
    true = (law[0] + law[1]) - (law[0] + law[2])
    reps, hit, width = 3000, 0, []
    for _ in range(reps):
        a, b, c, d = rng.multinomial(256, law)
        r = paired_difference(a, b, c, d)
        hit += r["ci_low"] <= true <= r["ci_high"]
        width.append(r["ci_high"] - r["ci_low"])
    assert 0.93 <= hit / reps <= 0.975     # nominal 0.95 (Newcombe's method 10 is close to it)
    # pairing pays: narrower than two independent 256-start samples of the same marginals
    # (Wald width of the unpaired difference, 2·1.96·√(p₁q₁/n + p₂q₂/n))
    unpaired = 2 * 1.959964 * math.sqrt((0.15 * 0.85 + 0.10 * 0.90) / 256)
    assert np.mean(width) < 0.8 * unpaired


def test_paired_difference_exact_cases():
    r = paired_difference(36, 12, 2, 0)
    assert r["difference"] == pytest.approx(0.2, abs=1e-15) and r["n"] == 50 and r["discordant"] == 14
    assert r["ci_low"] < 0.2 < r["ci_high"]
    # swapping the two cells negates the interval
    s = paired_difference(36, 2, 12, 0)
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((-r["ci_high"], -r["ci_low"]), abs=1e-15)
    # identical outcomes: difference 0 inside the interval; no discordant pair
    t = paired_difference(30, 0, 0, 226)
    assert t["difference"] == 0 and t["ci_low"] < 0 < t["ci_high"] and t["discordant"] == 0
    # uncorrelated pairs (φ = 0: ad = bc) give Newcombe's unpaired hybrid score interval
    lo1, hi1 = wilson_interval(20, 100)
    lo2, hi2 = wilson_interval(20, 100)
    u = paired_difference(4, 16, 16, 64)    # ad − bc = 256 − 256 = 0
    assert u["ci_low"] == pytest.approx(-math.hypot(0.2 - lo1, hi2 - 0.2), abs=1e-12)
    assert u["ci_high"] == pytest.approx(math.hypot(hi1 - 0.2, 0.2 - lo2), abs=1e-12)
    assert paired_difference(0, 0, 0, 0)["difference"] is None
    with pytest.raises(ValueError, match="≥ 0"):
        paired_difference(-1, 0, 0, 0)
