"""The rank-3 minimum of data/net/digits-standard (point 0): capped_antiprism(8).

The committed study (deep linear CE UFM, K = 10, n = 50, L = 3, λ_W = 1e-2 on W₁…W₃, λ_H = 1e-6,
so λ_eff = 1e-3) certified a rank-3 minimum at loss 0.10115752241975472, below subsets(5,2) (the
catalogue's best), that no catalogued block matched. Its geometry, read off the stored θ by a
helper session that did not use the package's recognition or loss code: the eight classes of a
square antiprism on a cycle c₀ … c₇ (class-mean logits a·¼cos(π(j−k)/4) in the cycle's plane), and
two *cap* classes p₊, p₋ on the axis, one above each square; the caps' pair direction
e_p = (1_{p₊} − 1_{p₋})/√2 and the cycle's alternation e_a = ((−1)^j/√8)_j are coupled by one
rank-one term s·u vᵀ, u = (cos α, sin α), v = (cos γ, sin γ) in (e_p, e_a). The reduced loss below
is written per class column by hand from that geometry (the helper's derivation: a pole column's
CE log(1 + e^{−x} + 8e^{−x/2}cosh(w/4)), a cycle column's in the six distinct logit gaps) and
minimised with scipy alone; the package's recognition (label ``capped_antiprism(8)``), its
closed form and the full model's gradient are held to it.
"""
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import fsolve

from landscape.analysis import theory as T
from landscape.analysis.point import theory_match
from landscape.analysis.structure import analyse_structure, match_capped_antiprism_block, read_blocks
from landscape.core.model import DeepUFM, ModelSpec

K, N_PER, L = 10, 50, 3
LAM_W, LAM_H = 1e-2, 1e-6
LAM_EFF = (LAM_H * LAM_W ** L) ** (1 / (L + 1))
#: points.loss of point 0 in data/net/digits-standard/study.sqlite
STORED_LOSS = 0.10115752241975472
FOLDER = Path(__file__).resolve().parents[1] / "data" / "net" / "digits-standard"
C_PEN = 0.5 * LAM_EFF * (L + 1) * N_PER ** (1 / (L + 1))
C1, C3 = (1 - 2 ** -0.5) / 4, (1 + 2 ** -0.5) / 4


def _pole(x, w):
    E = 1 + np.exp(-x) + 8 * np.exp(-x / 2) * np.cosh(w / 4)
    return np.log(E), -(np.exp(-x) + 4 * np.exp(-x / 2) * np.cosh(w / 4)) / E, 2 * np.exp(-x / 2) * np.sinh(w / 4) / E


def _cycle(a, y, t):
    e1, e2, e3, e4 = np.exp(-C1 * a - t / 4), np.exp(-a / 4), np.exp(-C3 * a - t / 4), np.exp(-a / 2)
    ep = np.exp(-a / 4 - t / 8)
    E = 1 + 2 * e1 + 2 * e2 + 2 * e3 + e4 + 2 * ep * np.cosh(y / 4)
    dA = -(2 * C1 * e1 + e2 / 2 + 2 * C3 * e3 + e4 / 2 + ep * np.cosh(y / 4) / 2) / E
    dT = -(e1 / 2 + e3 / 2 + ep * np.cosh(y / 4) / 4) / E
    dY = ep * np.sinh(y / 4) / (2 * E)
    return np.log(E), dA, dY, dT


def _coupling(p):
    a, s, al, ga = p
    u, v = np.array([np.cos(al), np.sin(al)]), np.array([np.cos(ga), np.sin(ga)])
    return u, v, s * np.outer(u, v)   # M = [[x, y], [w, t]] on (e_p, e_a)


def reduced_loss(p):
    """F(a, s, α, γ) by hand: (2 CE_pole + 8 CE_cycle)/K + C(2√a + √s) (the balanced penalty at L = 3)."""
    a, s = p[0], p[1]
    _, _, M = _coupling(p)
    (x, y), (w, t) = M
    return (2 * _pole(x, w)[0] + 8 * _cycle(a, y, t)[0]) / K + C_PEN * (2 * np.sqrt(a) + np.sqrt(s))


def stationarity(p):
    a, s = p[0], p[1]
    u, v, M = _coupling(p)
    (x, y), (w, t) = M
    _, px, pw = _pole(x, w)
    _, dA, dY, dT = _cycle(a, y, t)
    G = np.array([[px / 5, 4 * dY / 5], [pw / 5, 4 * dT / 5]])
    return [0.8 * dA + C_PEN / np.sqrt(a), u @ G @ v + C_PEN / (2 * np.sqrt(s)),
            np.array([-u[1], u[0]]) @ G @ v, u @ G @ np.array([-v[1], v[0]])]


@pytest.fixture(scope="module")
def oracle():
    p = fsolve(stationarity, [32.5, 38.3, 0.74, 0.65], xtol=1e-13)
    assert np.abs(stationarity(p)).max() <= 1e-15
    return tuple(float(x) for x in p), float(reduced_loss(p))


def test_the_hand_derived_minimum_is_the_stored_one(oracle):
    p, loss = oracle
    assert abs(loss - STORED_LOSS) <= 1e-12
    # the stored point's factors: W singular values 1.283248, 1.231505 (twice) = (σ(Z̄)√n)^{1/4}/√(λ-ratio)
    assert p[:2] == pytest.approx((32.5281535240, 38.3492605059), rel=1e-9)
    # below subsets(5,2), the best of the catalogue at these parameters
    best = T.structure_catalogue(K, N_PER, L, LAM_EFF)[0]
    assert best.pattern == "subsets(5,2)" and loss < best.loss


def test_the_closed_form_is_the_hand_derived_one(oracle):
    p, loss = oracle
    ct = T.CappedAntiprismType(8)
    got = T.capped_antiprism_params(ct, K, N_PER, L, LAM_EFF, (30.0, 40.0, 0.7, 0.6))
    assert got == pytest.approx(p, rel=1e-9, abs=1e-10)
    assert np.abs(T.capped_antiprism_gradient(got, ct, K, N_PER, L, LAM_EFF)).max() <= 1e-12
    assert abs(T.block_structure_loss([(ct, got)], K, N_PER, L, LAM_EFF) - loss) <= 1e-13
    sv = np.linalg.svd(ct.matrix(got), compute_uv=False)
    np.testing.assert_allclose(sv[:3], [got[1], got[0], got[0]], rtol=1e-12)
    assert sv[3] <= 1e-12 * sv[0]
    # the block's logit entries are the geometry's: cycle column own a/4 + t/8, distance 4 −a/4 + t/8
    Z = ct.matrix(got)
    t = got[1] * np.sin(got[2]) * np.sin(got[3])
    assert Z[0, 0] == pytest.approx(got[0] / 4 + t / 8, rel=1e-12)
    assert Z[4, 0] == pytest.approx(-got[0] / 4 + t / 8, rel=1e-12)


def test_recognised_matched_and_critical_in_the_full_model(oracle):
    p, loss = oracle
    spec = ModelSpec(K=K, n=N_PER, d=12, L=L, lam=LAM_W, lam_H=LAM_H, lam_W=LAM_W)
    ct = T.CappedAntiprismType(8)
    perm = np.random.default_rng(5).permutation(K)   # any relabelling of the classes
    Zb = np.zeros((K, K))
    Zb[np.ix_(perm, perm)] = ct.matrix(p)
    theta = T.balanced_point(spec, Zb)
    F, grad = DeepUFM(spec).loss_and_grad(torch.as_tensor(theta).reshape(1, -1))
    assert float(grad.norm()) <= 1e-9          # a critical point of the model, not only of F(a, s, α, γ)
    assert abs(float(F) - loss) <= 1e-12
    s = analyse_structure(spec, theta)
    assert s.label == "capped_antiprism(8)" and s.rank_pattern == (3,) * 7
    (blk,) = s.blocks
    assert blk.kind == "capped_antiprism" and set(blk.cycle[-2:]) == {int(perm[8]), int(perm[9])}
    m = theory_match(spec, s, float(F))
    assert m["matched"] and m["pattern"] == "capped_antiprism(8)" and m["rank"] == 3
    assert abs(m["loss_difference"]) <= 1e-12 and m["Zbar_rel_error"] <= 1e-9


def test_the_committed_points_are_named_and_matched():
    from landscape.io.store import StudyStore

    files = sorted(p for p in FOLDER.iterdir() if p.is_file())
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files if not p.name.endswith("-shm")}
    with StudyStore.open(FOLDER / "study.sqlite", readonly=True) as store:
        rec, other = store.point(0), store.point(2)
    spec = ModelSpec(K=K, n=N_PER, d=64, L=L, lam=LAM_W, lam_H=LAM_H, lam_W=LAM_W)
    # the folder's other unnamed minimum (rank 4, 0.1032869591) is antiprism(8)+pair
    s2 = analyse_structure(spec, np.asarray(other.params, dtype=np.float64))
    assert other.label == "other" and s2.label == "antiprism(8)+pair"
    assert theory_match(spec, s2, other.loss)["matched"]
    theta = np.asarray(rec.params, dtype=np.float64)
    assert theta.shape == (spec.P,) and rec.loss == STORED_LOSS
    s = analyse_structure(spec, theta)
    assert s.label == "capped_antiprism(8)"
    m = theory_match(spec, s, rec.loss)
    assert m["matched"] and abs(m["loss_difference"]) <= 1e-10
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files if not p.name.endswith("-shm")}
    assert after == before


def test_what_is_not_a_capped_antiprism():
    ct = T.CappedAntiprismType(8)
    B = ct.matrix((30.0, 20.0, 0.7, 0.5))
    p = np.random.default_rng(0).permutation(10)
    got = match_capped_antiprism_block(B[np.ix_(p, p)], 1e-4)
    assert got is not None and got[0].m == 8 and got[1][:2] == pytest.approx((30.0, 20.0), rel=1e-12)
    # the direct sum antiprism(8)+pair (rank 4) is two blocks, neither capped
    Z = np.zeros((10, 10))
    Z[:8, :8] = T.AntiprismType(8).matrix((25.0, 19.0))
    Z[8:, 8:] = 7.0 * np.array([[1.0, -1.0], [-1.0, 1.0]])
    assert sorted(b.kind for b in read_blocks(Z)) == ["antiprism", "pair"]
    assert match_capped_antiprism_block(Z, 1e-4) is None
    # a perturbed one is not matched; equal scales (a = s) leave the plane undefined
    Bp = B.copy()
    Bp[0, 1] += 0.05
    assert match_capped_antiprism_block(Bp, 1e-4) is None
    assert match_capped_antiprism_block(ct.matrix((30.0, 30.0, 0.7, 0.5)), 1e-4) is None
    # no coupling (α = γ = π: the caps a pair of scale s/2 beside the planar square, i.e. 3×pair at
    # m = 4) is a direct sum, not a capped antiprism, even if small entries join it into one block
    plain = T.CappedAntiprismType(4).matrix((6.0, 4.0, np.pi, np.pi))
    assert match_capped_antiprism_block(plain, 1e-4) is None
    assert sorted(b.kind for b in read_blocks(plain)) == ["pair", "pair", "pair"]
    with pytest.raises(ValueError, match="even number m ≥ 4"):
        T.CappedAntiprismType(5)
