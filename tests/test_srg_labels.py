"""The SRG structure (landscape.analysis.srg) is recognised in a point's class-mean logits
(``srg(r)``, landscape.analysis.structure.match_srg_block) and matched to its closed form
(landscape.analysis.point.srg_match): the point is built with srg.py, its classes relabelled at random
(H₁'s class blocks of columns and W_L's rows together), and analysed as a study would; near misses
(one entry off by 1 %, a random symmetric matrix) stay unrecognised, and the other labels are
unchanged (DNC, a one-scale subsets(r,2) block of the same scheme)."""
import math
from itertools import combinations

import networkx as nx
import numpy as np
import pytest

from landscape.analysis.family import frame_dnc_point, member_dnc
from landscape.analysis.point import analyse_point, theory_match
from landscape.analysis.srg import SRGType, srg_point, srg_solution, triangular_r
from landscape.analysis.structure import analyse_structure, blocks_pattern, match_srg_block, read_blocks
from landscape.analysis.theory import BlockType
from landscape.core.model import DeepUFM, as_theta64
from landscape.core.spec import ModelSpec


def _spec(K, L, n=2, lam=4e-3, loss="mse", activation="relu"):
    return ModelSpec(K=K, n=n, d=K, L=L, activation=activation, loss=loss, lam=lam)


def _factors(spec, theta):
    out, i = [], 0
    for shp in spec.shapes:
        size = math.prod(shp)
        out.append(theta[i:i + size].reshape(shp))
        i += size
    assert i == theta.size
    return out


def _relabel(spec, theta, perm):
    """θ with class c holding what class perm[c] held: H₁'s column block c ← block perm[c], W_L's row
    c ← row perm[c]; the new logits are Z̄'[c', c] = Z̄[perm[c'], perm[c]]."""
    F = [f.copy() for f in _factors(spec, theta)]
    K, n = spec.K, spec.n
    cols = (np.asarray(perm)[:, None] * n + np.arange(n)[None, :]).reshape(-1)
    F[0] = F[0][:, cols]
    F[-1] = F[-1][perm]
    return np.concatenate([f.reshape(-1) for f in F])


def _loss(spec, theta):
    return float(DeepUFM(spec).loss_and_grad(as_theta64(spec, theta))[0])


def _zbar(spec, theta):
    return analyse_structure(spec, theta).Zbar


@pytest.fixture(scope="module", params=[(6, 3), (10, 4)], ids=["K6-L3", "K10-L4"])
def relabelled(request):
    K, L = request.param
    spec = _spec(K, L)
    sol = srg_solution(spec)
    perm = np.random.default_rng(K + L).permutation(K)
    theta = _relabel(spec, srg_point(spec, sol), perm)
    return spec, sol, perm, theta


# ----- the type ----------------------------------------------------------------------------------
def test_srg_type():
    t = SRGType(5)
    assert (t.size, t.rank, t.name) == (10, 10, "srg(5)")
    assert SRGType(4).name == "srg(4)" and SRGType(4).size == 6
    with pytest.raises(ValueError):
        SRGType(3)
    z = (0.9, 0.5, -0.2)
    ev = np.sort(np.linalg.eigvalsh(t.matrix(z)))
    assert np.allclose(ev, np.sort([0.9] + [0.5] * 4 + [-0.2] * 5), atol=1e-13)


# ----- the relabelled SRG point, as a study analyses it ------------------------------------------
def test_relabelling_permutes_the_logits(relabelled):
    spec, sol, perm, theta = relabelled
    Z = _zbar(spec, theta)
    assert np.allclose(Z[np.ix_(np.argsort(perm), np.argsort(perm))], sol.Zbar, atol=1e-13)
    assert not np.allclose(Z, sol.Zbar, atol=1e-6)   # the relabelling moved something
    loss = _loss(spec, theta)
    assert abs(loss - sol.loss) <= 1e-12


def test_the_point_is_labelled_srg_and_matches_its_closed_form(relabelled):
    spec, sol, perm, theta = relabelled
    r = triangular_r(spec.K)
    a = analyse_point(spec, theta)
    assert a.label == f"srg({r})" and a.structure.pattern == f"srg({r})"
    (b,) = a.structure.blocks
    assert b.kind == "srg" and b.classes == tuple(range(spec.K)) and b.shape == (r,)
    assert b.block_type == SRGType(r) and b.residual <= 1e-10
    assert np.allclose(b.scales, sol.z, rtol=1e-10, atol=0)
    # the class ↔ edge map: in ``order`` the logits are the closed form's Σ z_i P_i (edges lexicographic)
    Zo = a.structure.Zbar[np.ix_(b.order, b.order)]
    assert np.abs(Zo - sol.Zbar).max() <= 1e-12
    m = a.match
    assert m["matched"] is True and m["kind"] == "srg" and m["pattern"] == f"srg({r})"
    assert abs(m["loss_difference"]) <= 1e-10 and m["scale_rel_error"] <= 1e-10 and m["Zbar_rel_error"] <= 1e-10
    assert abs(m["loss"] - sol.loss) <= 1e-15 and np.allclose(m["scales"], sol.z, rtol=1e-15)
    assert m["rank"] == spec.K and m["rank_pattern_consistent"] is True
    d = a.to_dict()
    assert d["label"] == f"srg({r})" and d["theory"]["matched"] is True and d["structure"]["blocks"][0]["kind"] == "srg"
    assert "srg match to srg" in a.format_text()


def test_a_point_of_another_lambda_is_named_but_not_matched(relabelled):
    spec, sol, perm, theta = relabelled
    other = _spec(spec.K, spec.L, lam=5e-3)
    s = analyse_structure(other, theta)
    m = theory_match(other, s, _loss(other, theta))
    assert s.label == f"srg({triangular_r(spec.K)})"
    assert m["matched"] is False and m["kind"] == "srg" and "differs" in m["reason"]


@pytest.mark.parametrize("loss, activation", [("ce", "relu"), ("mse", "linear"), ("ce", "linear")])
def test_other_members_name_it_without_a_closed_form(relabelled, loss, activation):
    spec, sol, perm, theta = relabelled
    other = _spec(spec.K, spec.L, loss=loss, activation=activation)
    Z = _zbar(spec, theta)
    blocks = read_blocks(Z)
    assert [b.kind for b in blocks] == ["srg"]
    s = analyse_structure(other, theta)
    m = theory_match(other, s, 1.0)
    assert m["matched"] is False and m["kind"] == "srg" and "no closed form" in m["reason"]


# ----- near misses stay unrecognised -------------------------------------------------------------
def test_perturbed_adjacent_entry_is_not_recognised(relabelled):
    spec, sol, perm, theta = relabelled
    Z = _zbar(spec, theta)
    r = triangular_r(spec.K)
    edges = list(combinations(range(r), 2))
    inv = np.argsort(perm)   # class c of the relabelled point is edge inv[c]
    adj = [(c, d) for c in range(spec.K) for d in range(spec.K)
           if c != d and len(set(edges[inv[c]]) & set(edges[inv[d]])) == 1]
    assert len(adj) == spec.K * 2 * (r - 2)
    for sym in (False, True):
        c, d = adj[0]
        Zq = Z.copy()
        Zq[c, d] *= 1.01
        if sym:
            Zq[d, c] *= 1.01
        assert match_srg_block(Zq, 1e-4) is None
        assert [b.kind for b in read_blocks(Zq)] == ["unrecognised"]
    assert match_srg_block(Z, 1e-4) is not None


@pytest.mark.parametrize("K", [6, 10, 15])
def test_random_symmetric_matrix_is_not_recognised(K):
    rng = np.random.default_rng(K)
    A = rng.normal(size=(K, K))
    A = A + A.T
    assert match_srg_block(A, 1e-4) is None
    assert all(b.kind != "srg" for b in read_blocks(A))
    # two off-diagonal values on a random regular graph of the right degree: not the line graph
    r = triangular_r(K)
    G = nx.random_regular_graph(2 * (r - 2), K, seed=K)
    M = np.eye(K) + 0.01 * nx.to_numpy_array(G, nodelist=range(K)) - 0.005
    if not nx.is_isomorphic(G, nx.line_graph(nx.complete_graph(r))):
        assert match_srg_block(M, 1e-4) is None


def test_srg_block_read_from_a_larger_line_graph():
    # K = 15 (r = 6), arbitrary three scales, classes shuffled: recognised, scales recovered
    t = SRGType(6)
    z = (1.3, 0.4, -0.7)
    perm = np.random.default_rng(3).permutation(15)
    Z = t.matrix(z)[np.ix_(perm, perm)]
    (b,) = read_blocks(Z)
    assert b.kind == "srg" and b.shape == (6,) and np.allclose(b.scales, z, atol=1e-12)
    assert blocks_pattern([b]) == "srg(6)"
    assert np.abs(Z[np.ix_(b.order, b.order)] - t.matrix(z)).max() <= 1e-12


# ----- other labels unchanged --------------------------------------------------------------------
@pytest.mark.parametrize("K, L", [(6, 3), (10, 4)])
def test_dnc_is_still_dnc(K, L):
    spec = _spec(K, L)
    pts = member_dnc(spec)
    theta = frame_dnc_point(spec, pts[-1].scale)
    s = analyse_structure(spec, theta)
    assert s.label == "DNC" and all(b.kind == "self" for b in s.blocks)
    assert theory_match(spec, s, 0.0) is None
    # Z̄ = γI read directly: K self blocks, no SRG
    assert [b.kind for b in read_blocks(0.9 * np.eye(K))] == ["self"] * K


def test_one_scale_subsets_block_of_the_same_scheme_stays_subsets():
    # αP₁ of J(5,2) is the one-scale subsets(5,2) block (two off-diagonal values too): still subsets
    M = 2.0 * BlockType(5, 2).matrix()
    perm = np.random.default_rng(1).permutation(10)
    (b,) = read_blocks(M[np.ix_(perm, perm)])
    assert b.kind == "subsets" and b.shape == (5, 2)
