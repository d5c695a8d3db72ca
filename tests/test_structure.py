"""Singular values and ranks, collapse metrics against hand-derived values, labels and their invariance."""
import numpy as np
import pytest
from scipy.stats import ortho_group

from landscape import theory as T
from landscape.analysis.symmetry import apply_gauge, gauge_interfaces, relabel_classes
from landscape.core.model import ModelSpec
from landscape.analysis.structure import analyse_structure, layer_metrics, numerical_rank, read_blocks


def test_numerical_rank_and_gap():
    A = np.diag([3.0, 2.0, 1e-9, 0.0])
    info = numerical_rank(A, rtol=1e-6)
    assert info.rank == 2 and info.gap == pytest.approx(2.0 / 1e-9)
    np.testing.assert_allclose(info.singular_values, [3.0, 2.0, 1e-9, 0.0])
    assert numerical_rank(A, rtol=1e-12).rank == 3
    assert numerical_rank(np.zeros((2, 3))).rank == 0


def test_dnc1_at_explicit_rank_hand_value():
    """K=2, n=2, means (±1, 0), within-class deviations ±0.1 along x and ±ε along y:
    Σ_B = diag(1, 0), Σ_W = diag(0.01, ε²), rank(M_c) = 1, so DNC1 = 0.01/K = 0.005 (finite, the
    y-variability outside the between-class span is ignored) and tr Σ_W/tr Σ_B = 0.01 + ε²."""
    eps = 0.3
    H = np.array([[1.1, 0.9, -0.9, -1.1],
                  [eps, -eps, eps, -eps]])
    m = layer_metrics("H", H, K=2, n=2)
    assert m.dnc1_rank == 1
    assert m.dnc1 == pytest.approx(0.005, rel=1e-12)
    assert m.dnc1_trace_ratio == pytest.approx(0.01 + eps ** 2, rel=1e-12)


def test_dnc2_etf_versus_orthogonal_frame():
    """Class means = orthogonal frame I_K: centred Gram ∝ S (ETF distance 0), uncentred ∝ I (OF
    distance 0), ‖μ_G‖/rms‖μ_c‖ = 1/√K. Class means = simplex columns of S: ETF 0, OF > 0, μ_G = 0."""
    K, n = 4, 3
    of = layer_metrics("OF", np.kron(np.eye(K), np.ones((1, n))), K, n)
    assert of.dnc2_etf < 1e-15 and of.dnc2_of < 1e-15
    assert of.global_mean_ratio == pytest.approx(1 / np.sqrt(K), rel=1e-14)
    etf = layer_metrics("ETF", np.kron(T.simplex(K), np.ones((1, n))), K, n)
    assert etf.dnc2_etf < 1e-15 and etf.global_mean_ratio < 1e-15
    # uncentred Gram = S, normalised distance to I/√K is ‖S/√(K−1) − I/√K‖_F
    expected = np.linalg.norm(T.simplex(K) / np.sqrt(K - 1) - np.eye(K) / np.sqrt(K))
    assert etf.dnc2_of == pytest.approx(expected, rel=1e-12)


def test_dnc3_inside_and_outside_the_class_mean_span():
    K, n = 3, 2
    H = np.vstack([np.kron(T.simplex(K), np.ones((1, n))), np.zeros((2, K * n))])  # means span e1..e3 (rank 2)
    W_in = np.hstack([T.simplex(K), np.zeros((K, 2))])
    W_out = np.zeros((K, 5))
    W_out[:, 4] = [1.0, -1.0, 0.0]
    assert layer_metrics("H", H, K, n, W=W_in, weight_name="W").dnc3 < 1e-15
    assert layer_metrics("H", H, K, n, W=W_out, weight_name="W").dnc3 == pytest.approx(1.0)
    half = W_in / np.linalg.norm(W_in) + W_out / np.linalg.norm(W_out)
    assert layer_metrics("H", H, K, n, W=half, weight_name="W").dnc3 == pytest.approx(np.sqrt(0.5))


def test_dnc_point_label_ranks_and_zbar():
    spec = ModelSpec(K=4, n=2, d=5, L=3, lam=1e-3)
    a = T.dnc_scale_roots(4, 2, 3, 1e-3)[-1]
    rep = analyse_structure(spec, T.dnc_point(spec, a))
    assert rep.label == "DNC" and rep.dnc_holds
    assert rep.rank_names == ("H1", "W1", "H2", "W2", "H3", "W3", "Z")
    assert rep.rank_pattern == (3,) * 7
    np.testing.assert_allclose(rep.Zbar, a * T.simplex(4), atol=1e-12)
    # each factor has K−1 singular values (α√n)^{1/(L+1)} (MODEL.md §6)
    np.testing.assert_allclose(rep.ranks["W2"].singular_values[:3], (a * np.sqrt(2)) ** 0.25, rtol=1e-12)
    for m in rep.layers:
        assert m.dnc1 < 1e-25 and m.dnc2_etf < 1e-12 and m.global_mean_ratio < 1e-12
        assert m.weight is None or m.dnc3 < 1e-12


def test_labels_zero_pairs_blocks_other():
    spec = ModelSpec(K=4, n=2, d=4, L=2, lam=1e-3)
    assert analyse_structure(spec, np.zeros(spec.P)).label == "zero"
    assert analyse_structure(spec, T.pairing_point(spec, 3.0)).label == "pairs"
    assert analyse_structure(spec, np.random.default_rng(0).normal(size=spec.P)).label == "other"
    odd = ModelSpec(K=5, n=1, d=5, L=2, lam=1e-3)
    rep = analyse_structure(odd, T.pairing_point(odd, 3.0))
    assert rep.label == "pairs" and rep.pattern == "2×pair+self"
    big = ModelSpec(K=10, n=1, d=10, L=2, lam=1e-3)
    Zb = T.block_Zbar(10, [((0, 3, 5, 9), 6.0), ((1, 7), 4.0), ((2, 4), 4.0), ((6, 8), 5.0)])
    rep = analyse_structure(big, T.balanced_point(big, Zb))
    assert rep.label == "simplex(4)+3×pair"
    assert rep.rank_pattern == (6,) * 5
    assert [b.classes for b in rep.blocks] == [(0, 3, 5, 9), (1, 7), (2, 4), (6, 8)]
    assert [b.scale for b in rep.blocks] == pytest.approx([6.0, 4.0, 4.0, 5.0], rel=1e-12)
    rep = analyse_structure(big, T.balanced_point(big, T.block_Zbar(10, [((0, 1, 2), 5.0), ((4, 5), 3.0)])))
    assert rep.label == "simplex(3)+pair+5×null"


def test_read_blocks_rejects_non_simplex_block():
    Zb = T.block_Zbar(4, [((0, 1, 2), 5.0)])
    Zb[0, 1] += 0.5
    kinds = [b.kind for b in read_blocks(Zb)]
    assert kinds == ["unrecognised", "null"]


def _random_transform(spec, th, rng):
    """Random gauge rotation at every gauge interface, hidden-unit permutation at every interface,
    and a class relabelling."""
    rot = {i: ortho_group.rvs(spec.d, random_state=rng) for i in gauge_interfaces(spec)}
    th = apply_gauge(spec, th, rot)
    perms = {i: np.eye(spec.d)[rng.permutation(spec.d)] for i in range(spec.L)}
    th = apply_gauge(spec, th, perms)
    return relabel_classes(spec, th, rng.permutation(spec.K))


def _points():
    lin = ModelSpec(K=5, n=2, d=6, L=2, lam=1e-3)
    a3 = T.block_scale_roots(3, 5, 2, 2, 1e-3)[-1]
    a2 = T.block_scale_roots(2, 5, 2, 2, 1e-3)[-1]
    yield lin, T.balanced_point(lin, T.block_Zbar(5, [((0, 2, 4), a3), ((1, 3), a2)]))
    yield lin, T.dnc_point(lin, 7.0)
    yield lin, T.pairing_point(lin, 4.0)
    yield lin, np.random.default_rng(5).normal(size=lin.P)
    relu = ModelSpec(K=4, n=2, d=6, L=3, lam=1e-3, activation="relu")
    yield relu, np.random.default_rng(6).normal(size=relu.P)


@pytest.mark.parametrize("seed", range(4))
def test_structure_invariant_under_symmetries(seed):
    rng = np.random.default_rng(seed)
    for spec, th in _points():
        ref = analyse_structure(spec, th)
        rep = analyse_structure(spec, _random_transform(spec, th, rng))
        assert rep.label == ref.label and rep.pattern == ref.pattern
        assert rep.rank_pattern == ref.rank_pattern
        for k in ref.rank_names:
            np.testing.assert_allclose(rep.ranks[k].singular_values, ref.ranks[k].singular_values,
                                       rtol=1e-10, atol=1e-12)
        for a, b in zip(rep.layers, ref.layers):
            for f in ("dnc1", "dnc1_trace_ratio", "dnc2_etf", "dnc2_of", "global_mean_ratio", "dnc3"):
                x, y = getattr(a, f), getattr(b, f)
                assert (x is None) == (y is None)
                if x is not None:
                    assert x == pytest.approx(y, rel=1e-7, abs=1e-10), (spec, a.name, f)
        assert sorted(len(b.classes) for b in rep.blocks) == sorted(len(b.classes) for b in ref.blocks)


def test_point_within_round_off_of_the_origin_has_rank_zero_everywhere():
    """A certified origin (‖θ‖ ~ 1e-17, as Newton-MR finds it) is 'zero' with rank pattern all 0,
    while the tiny-but-genuine small-root DNC point keeps rank K−1 in every layer."""
    from landscape.core.model import ModelSpec
    from landscape.analysis.structure import analyse_structure
    from landscape.analysis.theory import dnc_point, dnc_scale_roots

    spec = ModelSpec(K=4, n=2, d=6, L=3, lam=1e-3)
    noise = 1e-17 * np.random.default_rng(0).standard_normal(spec.P)
    rep = analyse_structure(spec, noise)
    assert rep.label == "zero" and set(rep.rank_pattern) == {0}
    small = dnc_point(spec, dnc_scale_roots(4, 2, 3, 1e-3)[0])
    rep = analyse_structure(spec, small)
    assert rep.label == "DNC" and set(rep.rank_pattern) == {3}


def test_two_class_dnc_is_labelled_dnc():
    """For K = 2 the simplex is a pair (±α/2): one block of every class is DNC, not 'pairs'."""
    from landscape.core.model import ModelSpec
    from landscape.analysis.structure import analyse_structure
    from landscape.analysis.theory import dnc_point, dnc_scale_roots

    spec = ModelSpec(K=2, n=3, d=4, L=2, lam=1e-3)
    rep = analyse_structure(spec, dnc_point(spec, dnc_scale_roots(2, 3, 2, 1e-3)[1]))
    assert rep.label == "DNC" and set(rep.rank_pattern) == {1}
