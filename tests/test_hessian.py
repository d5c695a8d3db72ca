"""Hessian eigen-analysis: dense vs HVP vs Lanczos, symmetry zero modes, index/nullity/type."""
import numpy as np
import pytest
import torch
from scipy.stats import ortho_group

from landscape import theory as T
from landscape.analysis.hessian import analyse_hessian, dense_hessian, hessian_matmat
from landscape.analysis.symmetry import apply_gauge, gauge_interfaces, relabel_classes, symmetry_space
from landscape.core.model import DeepUFM, ModelSpec

SYM_RESID_ATOL = 1e-12     # ‖H q‖ for symmetry tangents q at exact balanced critical points
LANCZOS_ATOL = 1e-10       # dense vs Lanczos eigenvalue agreement


def large_dnc(spec):
    return T.dnc_point(spec, T.dnc_scale_roots(spec.K, spec.n, spec.L, spec.lam)[-1])


def small_dnc(spec):
    return T.dnc_point(spec, T.dnc_scale_roots(spec.K, spec.n, spec.L, spec.lam)[0])


@pytest.mark.parametrize("L, lams", [(2, None), (3, None), (2, (2e-3, 5e-3, 7e-3))])
def test_origin_hessian_is_lambda_identity(L, lams):
    """MODEL.md §6: at θ = 0 with L ≥ 2 the Hessian is exactly diag(λ_l I) (λ·I for equal λ)."""
    spec = ModelSpec(K=3, n=2, d=4, L=L, lam=1e-3) if lams is None else \
        ModelSpec(K=3, n=2, d=4, L=L, lam_H=lams[0], lam_W=lams[1:])
    H = dense_hessian(spec, np.zeros(spec.P))
    expected = np.concatenate([np.full(r * c, lam) for (r, c), lam in zip(spec.shapes, spec.lambdas)])
    np.testing.assert_array_equal(H, np.diag(expected))
    rep = analyse_hessian(spec, np.zeros(spec.P))
    assert (rep.index, rep.nullity, rep.symmetry_zero_modes, rep.type) == (0, 0, 0, "minimum")
    assert rep.smallest_nonzero_eigenvalue == min(spec.lambdas)


def test_dense_hessian_matches_hvp():
    spec = ModelSpec(K=3, n=2, d=4, L=3, lam=1e-2)
    rng = np.random.default_rng(0)
    th = rng.normal(size=spec.P)
    V = rng.normal(size=(spec.P, 3))
    H = dense_hessian(spec, th)
    hv = DeepUFM(spec).hvp(torch.tensor(th).expand(3, -1).contiguous(), torch.tensor(V.T)).numpy().T
    np.testing.assert_allclose(H @ V, hv, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(hessian_matmat(spec, th)(torch.tensor(V)).numpy(), hv, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("K, n, d, L, lam", [(3, 2, 3, 2, 1e-3), (4, 2, 4, 2, 1e-3), (3, 2, 5, 3, 1e-3),
                                            (4, 1, 6, 2, 1e-2), (3, 1, 4, 4, 1e-2), (5, 1, 6, 2, 1e-3)])
def test_dnc_nullity_equals_gauge_orbit_dimension(K, n, d, L, lam):
    """MODEL.md §5: at the DNC points (both roots) nullity = L·(r·d − r(r+1)/2), r = K−1, and every
    symmetry tangent is in the Hessian's null space."""
    spec = ModelSpec(K=K, n=n, d=d, L=L, lam=lam)
    expected = T.gauge_orbit_dimension(L, K - 1, d)
    for th in (small_dnc(spec), large_dnc(spec)):
        rep = analyse_hessian(spec, th)
        assert rep.symmetry_zero_modes == expected
        assert rep.nullity == expected and rep.excess_zero_modes == 0
        assert rep.symmetry_residual < SYM_RESID_ATOL and rep.symmetry_verified


def test_symmetry_dimension_formula_at_pairing_and_generic_points():
    """Tangent span dimension by SVD equals L·(r·d − r(r+1)/2): rank r = K/2 at the pairing point,
    r = d (full gauge, L·d(d−1)/2) at a generic point; with ReLU only H₁|W₁ remains."""
    spec = ModelSpec(K=4, n=2, d=5, L=3, lam=1e-3)
    beta = T.pairing_scales(4, 2, 3, 1e-3)[-1]
    assert symmetry_space(spec, T.pairing_point(spec, beta)).dimension == T.gauge_orbit_dimension(3, 2, 5)
    th = np.random.default_rng(1).normal(size=spec.P)
    assert symmetry_space(spec, th).dimension == 3 * 5 * 4 // 2
    relu = ModelSpec(K=4, n=2, d=5, L=3, lam=1e-3, activation="relu")
    assert gauge_interfaces(relu) == [0]
    assert symmetry_space(relu, th).dimension == 5 * 4 // 2


def test_large_root_dnc_is_minimum_small_root_is_saddle():
    """Theorem 4 (MODEL.md §6): the large-α DNC point at small λ has index 0; the small root near the
    origin has negative curvature."""
    for K, n, d, L in [(4, 2, 4, 2), (3, 2, 5, 3)]:
        spec = ModelSpec(K=K, n=n, d=d, L=L, lam=1e-3)
        big = analyse_hessian(spec, large_dnc(spec))
        assert big.index == 0 and big.type == "minimum" and big.strict
        small = analyse_hessian(spec, small_dnc(spec))
        assert small.index > 0 and small.type == "saddle"


def test_default_tau_separates_symmetry_modes_from_genuine_modes():
    """Zero modes ≤ 1e-14, genuine modes ≥ λ/2 at DNC points: τ = 1e-3·λ sits between by ≥ 1e8."""
    for K, n, d, L, lam in [(4, 2, 4, 2, 1e-3), (3, 2, 5, 3, 1e-4), (4, 1, 6, 2, 1e-2)]:
        spec = ModelSpec(K=K, n=n, d=d, L=L, lam=lam)
        for th in (small_dnc(spec), large_dnc(spec)):
            rep = analyse_hessian(spec, th)
            ev = np.abs(rep.spectrum)
            assert rep.tau == pytest.approx(1e-3 * lam)
            assert np.sort(ev)[rep.nullity - 1] < 1e-14
            assert np.sort(ev)[rep.nullity] > lam / 2


def test_l1_ce_optimum_is_minimum_without_excess_zero_modes():
    """MODEL.md §6 oracle K=5, n=3, λ_W=3e-3, λ_H=1e-2: α* ≈ 4.619164, loss 0.213971044560325."""
    spec = ModelSpec(K=5, n=3, d=6, L=1, lam_W=3e-3, lam_H=1e-2)
    a, loss = T.l1_ce_optimum(5, 3, 3e-3, 1e-2)
    th = T.dnc_point(spec, a)
    assert float(DeepUFM(spec).loss(torch.tensor(th))) == pytest.approx(0.213971044560325, abs=1e-13)
    rep = analyse_hessian(spec, th)
    assert rep.type == "minimum" and rep.excess_zero_modes == 0
    assert rep.nullity == T.gauge_orbit_dimension(1, 4, 6)


def test_l1_origin_saddle_and_degenerate_threshold():
    """L = 1 origin: Hessian eigenvalues λ ± 1/(K√n) on (K−1)·d directions, so it is a strict saddle of
    index (K−1)·d when λ√n < 1/K and a degenerate case (index 0, (K−1)·d excess zero modes) at
    λ√n = 1/K exactly."""
    K, n, d = 3, 4, 4
    spec = ModelSpec(K=K, n=n, d=d, L=1, lam=0.05)
    rep = analyse_hessian(spec, np.zeros(spec.P))
    assert (rep.index, rep.nullity, rep.type, rep.strict) == ((K - 1) * d, 0, "saddle", True)
    assert rep.spectrum[0] == pytest.approx(0.05 - 1 / (K * np.sqrt(n)), abs=1e-15)
    crit = ModelSpec(K=K, n=n, d=d, L=1, lam=1 / (K * np.sqrt(n)))
    rep = analyse_hessian(crit, np.zeros(crit.P))
    assert (rep.index, rep.nullity, rep.symmetry_zero_modes) == (0, (K - 1) * d, 0)
    assert rep.type == "degenerate_minimum_or_saddle" and not rep.strict


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_index_and_nullity_invariant_under_gauge_and_relabelling(seed):
    rng = np.random.default_rng(seed)
    spec = ModelSpec(K=4, n=2, d=5, L=2, lam=1e-3)
    beta = T.pairing_scales(4, 2, 2, 1e-3)
    for th in (small_dnc(spec), large_dnc(spec), T.pairing_point(spec, beta[0]), T.pairing_point(spec, beta[-1])):
        ref = analyse_hessian(spec, th)
        rot = {i: ortho_group.rvs(spec.d, random_state=rng) for i in gauge_interfaces(spec)}
        moved = relabel_classes(spec, apply_gauge(spec, th, rot), rng.permutation(spec.K))
        rep = analyse_hessian(spec, moved)
        assert (rep.index, rep.nullity, rep.symmetry_zero_modes, rep.type) == \
            (ref.index, ref.nullity, ref.symmetry_zero_modes, ref.type)
        np.testing.assert_allclose(rep.spectrum, ref.spectrum, atol=1e-12)


@pytest.mark.parametrize("which", ["saddle", "minimum"])
def test_lanczos_agrees_with_dense(which):
    spec = ModelSpec(K=4, n=2, d=5, L=2, lam=1e-3)
    th = small_dnc(spec) if which == "saddle" else large_dnc(spec)
    k = 8
    dense = analyse_hessian(spec, th)
    lan = analyse_hessian(spec, th, dense_limit=spec.P - 1, lanczos_k=k)
    assert lan.method == "lanczos" and lan.lanczos_converged
    for f in ("index", "nullity", "symmetry_zero_modes", "excess_zero_modes", "type"):
        assert getattr(lan, f) == getattr(dense, f), f
    ev = dense.spectrum
    np.testing.assert_allclose(lan.parts["largest"], ev[-k:], atol=LANCZOS_ATOL)
    # Lanczos 'most_negative' and 'smallest_magnitude' are net of the s symmetry zero modes
    s = dense.symmetry_zero_modes
    net = np.sort(np.delete(ev, np.argsort(np.abs(ev))[:s]))
    np.testing.assert_allclose(lan.parts["most_negative"], net[:k], atol=LANCZOS_ATOL)
    np.testing.assert_allclose(np.sort(np.abs(lan.parts["smallest_magnitude"])), np.sort(np.abs(net))[:k],
                               atol=LANCZOS_ATOL)
    assert lan.smallest_nonzero_eigenvalue == pytest.approx(dense.smallest_nonzero_eigenvalue, abs=LANCZOS_ATOL)


def test_tangents_span_the_orbit_derivative():
    """(g_t·θ − θ)/t for g_t = exp(tA) at one interface lies in the computed tangent span up to O(t)."""
    from scipy.linalg import expm
    spec = ModelSpec(K=3, n=2, d=4, L=2, lam=1e-3)
    rng = np.random.default_rng(3)
    th = T.dnc_point(spec, 4.0) + 1e-3 * rng.normal(size=spec.P)  # generic, full gauge orbit
    Q = symmetry_space(spec, th).basis
    t = 1e-6
    for i in gauge_interfaces(spec):
        A = rng.normal(size=(4, 4))
        A = A - A.T
        v = (apply_gauge(spec, th, {i: expm(t * A)}) - th) / t
        assert np.linalg.norm(v - Q @ (Q.T @ v)) < 1e-5 * np.linalg.norm(v)


def test_near_origin_tangents_are_not_counted_as_zero_modes():
    """θ within certification noise of the origin: H ≈ λI, so no zero modes at all, although the
    gauge tangents there are numerically resolvable (they are ~1e-9 long)."""
    from landscape.analysis.hessian import analyse_hessian
    from landscape.core.model import ModelSpec

    spec = ModelSpec(K=3, n=2, d=4, L=2, lam=1e-3)
    theta = 1e-9 * np.random.default_rng(0).standard_normal(spec.P)
    rep = analyse_hessian(spec, theta)
    assert rep.index == 0 and rep.nullity == 0
    assert rep.symmetry_zero_modes == 0 and rep.excess_zero_modes == 0 and rep.type == "minimum"
    assert rep.symmetry_unverified > 0
    np.testing.assert_allclose(rep.spectrum, 1e-3, atol=1e-8)  # O(‖θ‖) corrections


def test_symmetric_eigh_on_large_clusters():
    """The dense eigen-solver on a Hessian-like matrix with large exact clusters (zero modes, a bulk
    at λ, a few outliers): eigenvalues to round-off, orthonormal eigenvectors, H V = V Λ, and a
    subset equal to the head of the whole decomposition."""
    from landscape.core.linalg import symmetric_eigh

    rng = np.random.default_rng(0)
    P = 400
    lam = np.concatenate([np.zeros(120), np.full(250, 1e-3), rng.uniform(1e-2, 2e-2, 27), [-3e-4, -3e-4, -1e-4]])
    Q, _ = np.linalg.qr(rng.standard_normal((P, P)))
    H = (Q * lam) @ Q.T
    H = 0.5 * (H + H.T)
    ev, V = symmetric_eigh(H)
    np.testing.assert_allclose(ev, np.sort(lam), atol=1e-14)
    np.testing.assert_allclose(V.T @ V, np.eye(P), atol=1e-12)
    np.testing.assert_allclose(H @ V, V * ev, atol=1e-14)
    np.testing.assert_allclose(symmetric_eigh(H, vectors=False), ev, atol=1e-14)
    e3, V3 = symmetric_eigh(H, subset=(0, 2))
    np.testing.assert_allclose(e3, [-3e-4, -3e-4, -1e-4], atol=1e-14)
    np.testing.assert_allclose(np.abs(V3[:, 2] @ V[:, 2]), 1.0, atol=1e-10)  # the simple one is unique


def test_symmetric_eigh_eigenvalues_alone_above_the_torch_threshold():
    """Eigenvalues alone of a matrix at TORCH_EIGVALSH_FROM rows (the torch branch): the known
    spectrum (zero cluster, bulk at λ, outliers, a double negative pair) to round-off, in order."""
    from landscape.core.linalg import TORCH_EIGVALSH_FROM, symmetric_eigh

    rng = np.random.default_rng(1)
    P = TORCH_EIGVALSH_FROM
    lam = np.concatenate([np.zeros(600), np.full(1300, 1e-3), rng.uniform(1e-2, 2e-2, P - 1904),
                          [-3e-4, -3e-4, -1e-4, 5.0]])
    Q, _ = np.linalg.qr(rng.standard_normal((P, P)))
    H = (Q * lam) @ Q.T
    H = 0.5 * (H + H.T)
    np.testing.assert_allclose(symmetric_eigh(H, vectors=False), np.sort(lam), atol=5e-14)


def test_an_unconverged_lanczos_answer_falls_back_to_the_exact_spectrum():
    """The cost model sends a point to Lanczos (a budget of 1 ns), whose runs cannot converge to a
    relative residual of 1e-300: rather than storing the point as unverified, the analysis takes
    the dense spectrum, and answers exactly as the dense path does (index of the small-root DNC
    saddle, nullity, type). With a fixed ``dense_limit`` (the user chose Lanczos) it does not."""
    spec = ModelSpec(K=4, n=2, d=5, L=2, lam=1e-3)
    th = small_dnc(spec)
    dense = analyse_hessian(spec, th)
    fb = analyse_hessian(spec, th, dense_budget_s=1e-9, lanczos_tol=1e-300, lanczos_k=4)
    assert fb.method == "dense" and "Lanczos did not converge" in fb.method_reason and fb.verified
    for f in ("index", "nullity", "symmetry_zero_modes", "excess_zero_modes", "type"):
        assert getattr(fb, f) == getattr(dense, f), f
    assert dense.index > 0
    kept = analyse_hessian(spec, th, dense_limit=spec.P - 1, lanczos_tol=1e-300, lanczos_k=4)
    assert kept.method == "lanczos" and kept.lanczos_converged is False and not kept.verified
