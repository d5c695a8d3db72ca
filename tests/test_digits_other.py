"""The "other" minimum of data/net/digits-linear (point 0): antiprism(8)+pair.

The committed study (deep linear CE UFM, K = 10, n = 50, L = 3, λ_W = 5e-3, λ_H = 1e-6) certified
a rank-4 minimum at loss 0.06363828647514153 that no catalogued block matched. Its class-mean
logits are a pair (two classes at ±β) and, on the other eight classes, the vertices of a square
antiprism: the classes on a cycle c_0 … c_7, class c_j's mean feature at (r cos(πj/4), r sin(πj/4),
(−1)^j h), Z̄ on the block their Gram matrix (singular values 4r², 4r², 8h²). Here the structure is
rebuilt from that geometry alone, its three scales (r², h², β) are found by a direct numerical
minimisation of the reduced loss F(Z̄) (MODEL.md §4) that uses nothing of landscape, and the
package's recognition (label ``antiprism(8)+pair``) and closed form (two scale equations for the
antiprism, one for the pair) are held to it.
"""
import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from landscape.analysis import theory as T
from landscape.analysis.point import theory_match
from landscape.analysis.structure import analyse_structure, match_antiprism_block, read_blocks
from landscape.core.model import DeepUFM, ModelSpec

K, N_PER, L = 10, 50, 3
LAM_W, LAM_H = 5e-3, 1e-6
LAM_EFF = (LAM_H * LAM_W ** L) ** (1 / (L + 1))
#: points.loss of point 0 in data/net/digits-linear/study.sqlite (summary.json ufm_points)
STORED_LOSS = 0.06363828647514153
#: its classes: the pair, and the antiprism's cycle (summary.json and the stored θ)
PAIR, CYCLE = (0, 8), (1, 4, 7, 9, 3, 5, 2, 6)


def antiprism_gram(r2, h2, m=8):
    """Gram matrix of m points (√r2 cos(2πj/m), √r2 sin(2πj/m), (−1)^j √h2), j = 0 … m−1."""
    j = np.arange(m)
    V = np.stack([np.sqrt(r2) * np.cos(2 * np.pi * j / m), np.sqrt(r2) * np.sin(2 * np.pi * j / m),
                  np.sqrt(h2) * (-1.0) ** j], axis=1)
    return V @ V.T


def zbar_from_geometry(r2, h2, beta, pair=PAIR, cycle=CYCLE):
    Z = np.zeros((K, K))
    Z[np.ix_(cycle, cycle)] = antiprism_gram(r2, h2, len(cycle))
    Z[np.ix_(pair, pair)] = beta * np.array([[1.0, -1.0], [-1.0, 1.0]])
    return Z


def reduced_loss(Z):
    """F(Z̄) = mean CE of the collapsed logits + (Λ(L+1)/2) Σ σ_i(Z̄ ⊗ 1ᵀ)^{2/(L+1)}, by hand."""
    m = Z.max(axis=0)
    ce = np.mean(np.log(np.exp(Z - m).sum(axis=0)) + m - np.diag(Z))
    s = np.linalg.svd(Z, compute_uv=False)
    s = s[s > 1e-12 * s[0]] * np.sqrt(N_PER)
    return ce + 0.5 * LAM_EFF * (L + 1) * np.sum(s ** (2 / (L + 1)))


@pytest.fixture(scope="module")
def numeric_optimum():
    """(r², h², β) minimising F along the geometry, by Nelder–Mead in log scales (no landscape code)."""
    f = lambda u: reduced_loss(zbar_from_geometry(*np.exp(u)))  # noqa: E731
    res = minimize(f, np.log([6.0, 3.0, 7.0]), method="Nelder-Mead",
                   options={"xatol": 1e-12, "fatol": 1e-17, "maxiter": 20000, "maxfev": 40000})
    return np.exp(res.x), float(res.fun)


def test_the_numeric_optimum_is_the_stored_minimum(numeric_optimum):
    (r2, h2, beta), loss = numeric_optimum
    assert abs(loss - STORED_LOSS) <= 1e-10
    # the stored point's scales (summary.json / θ): r² = 6.7313, h² = 2.5607, β = 7.5820
    assert (r2, h2, beta) == pytest.approx((6.731313745, 2.560722749, 7.581986599), rel=1e-6)
    sv = np.linalg.svd(zbar_from_geometry(r2, h2, beta), compute_uv=False)
    np.testing.assert_allclose(sv[:4], [4 * r2, 4 * r2, 8 * h2, 2 * beta], rtol=1e-12)
    assert sv[4] < 1e-12 * sv[0]


def test_closed_form_scales_and_loss(numeric_optimum):
    (r2, h2, beta), loss = numeric_optimum
    at = T.AntiprismType(8)
    a, b = T.antiprism_scales(at, K, N_PER, L, LAM_EFF, (20.0, 20.0))
    alpha = T.block_type_roots(T.BlockType(2), K, N_PER, L, LAM_EFF)[-1]
    assert np.abs(T.antiprism_scale_residual((a, b), at, K, N_PER, L, LAM_EFF)).max() <= 1e-12
    assert (a, b, alpha) == pytest.approx((4 * r2, 8 * h2, 2 * beta), rel=1e-6)
    cf = T.block_structure_loss([(at, (a, b)), (T.BlockType(2), alpha)], K, N_PER, L, LAM_EFF)
    assert abs(cf - loss) <= 1e-12 and abs(cf - STORED_LOSS) <= 1e-10
    # the block matrix is the geometry's Gram matrix, and the closed form's F is F(Z̄) by hand
    np.testing.assert_allclose(at.matrix((a, b)), antiprism_gram(a / 4, b / 8), atol=1e-12)
    assert cf == pytest.approx(reduced_loss(zbar_from_geometry(a / 4, b / 8, alpha / 2)), abs=1e-14)
    # above subsets(5,2), the catalogue's best at these parameters
    best = T.structure_catalogue(K, N_PER, L, LAM_EFF)[0]
    assert best.pattern == "subsets(5,2)" and best.loss < cf


def test_recognised_matched_and_critical_in_the_full_model(numeric_optimum):
    (r2, h2, beta), _ = numeric_optimum
    spec = ModelSpec(K=K, n=N_PER, d=12, L=L, lam=LAM_W, lam_H=LAM_H, lam_W=LAM_W)
    at = T.AntiprismType(8)
    a, b = T.antiprism_scales(at, K, N_PER, L, LAM_EFF, (4 * r2, 8 * h2))
    alpha = T.block_type_roots(T.BlockType(2), K, N_PER, L, LAM_EFF)[-1]
    rng = np.random.default_rng(3)
    perm = rng.permutation(K)   # any relabelling of the classes
    cycle, pair = tuple(int(perm[c]) for c in CYCLE), tuple(int(perm[c]) for c in PAIR)
    Zb = zbar_from_geometry(a / 4, b / 8, alpha / 2, pair, cycle)
    theta = T.balanced_point(spec, Zb)
    loss, grad = DeepUFM(spec).loss_and_grad(torch.as_tensor(theta).reshape(1, -1))
    assert float(grad.norm()) <= 1e-9          # a critical point of the model, not only of F
    assert abs(float(loss) - STORED_LOSS) <= 1e-10
    s = analyse_structure(spec, theta)
    assert s.label == "antiprism(8)+pair" and s.rank_pattern == (4,) * 7
    anti = [blk for blk in s.blocks if blk.kind == "antiprism"]
    assert len(anti) == 1 and set(anti[0].classes) == set(cycle)
    m = theory_match(spec, s, float(loss))
    assert m["matched"] and m["pattern"] == "antiprism(8)+pair" and m["rank"] == 4
    assert abs(m["loss_difference"]) <= 1e-12 and m["Zbar_rel_error"] <= 1e-9


def test_degenerate_and_perturbed_antiprisms():
    # equal scales: antiprism(4) is simplex(4), antiprism(6) splits into 3×pair
    np.testing.assert_allclose(T.AntiprismType(4).matrix((2.0, 2.0)), 2.0 * T.simplex(4), atol=1e-15)
    six = T.AntiprismType(6).matrix((2.0, 2.0))
    assert sorted(len(b.classes) for b in read_blocks(six)) == [2, 2, 2]
    # a generic antiprism is read whatever the order of its classes; a perturbed one is not
    B = T.AntiprismType(10).matrix((9.0, 4.0))
    p = np.random.default_rng(0).permutation(10)
    got = match_antiprism_block(B[np.ix_(p, p)], 1e-4)
    assert got is not None and got[0].m == 10 and got[1] == pytest.approx((9.0, 4.0), rel=1e-12)
    Bp = B.copy()
    Bp[0, 1] += 0.05
    Bp[1, 0] += 0.05
    assert match_antiprism_block(Bp, 1e-4) is None
    assert [b.kind for b in read_blocks(Bp)] == ["unrecognised"]
