"""Hessian spectra read by structure, against the exact results of MODEL.md §6 (and the paper's earlier work)."""
import numpy as np
import pytest
import torch

from landscape.analysis import theory as T
from landscape.analysis.hessian import dense_hessian
from landscape.analysis.spectrum import eigenvalue_groups, inspect_spectrum, log_det_positive
from landscape.core.model import DeepUFM, ModelSpec


def test_origin_is_lambda_times_identity_everywhere():
    spec = ModelSpec(K=3, n=2, d=4, L=2, lam=1e-2)
    r = inspect_spectrum(spec, np.zeros(spec.P))
    np.testing.assert_allclose(r.eigenvalues, 1e-2, rtol=0, atol=1e-15)
    assert [(g["kind"], g["multiplicity"]) for g in r.groups] == [("bulk", spec.P)]
    np.testing.assert_allclose(r.gauss_newton, 1e-2, atol=1e-15)   # J = 0 at the origin (L ≥ 2)
    np.testing.assert_allclose(r.residual, 0.0, atol=1e-15)
    for name, ev in r.blocks.items():
        np.testing.assert_allclose(ev, 1e-2, atol=1e-15, err_msg=name)


def test_deep_linear_mse_optimum_block_of_an_intermediate_weight():
    """Garrod & Keating (arXiv 2404.06106, Thm 4.1, as derived and checked here): the block of an
    intermediate W_l has K² eigenvalues λ_W/(1−γ) and d² − K² at λ_W."""
    K, n, d, L, lw, lh = 3, 4, 6, 3, 5e-3, 1e-3
    spec = ModelSpec(K=K, n=n, d=d, L=L, loss="mse", lam_W=lw, lam_H=lh)
    gamma, _ = T.mse_optimum(K, n, L, lw, lh)
    r = inspect_spectrum(spec, T.balanced_point(spec, gamma * np.eye(K)))
    for name in ("W2",):
        ev = np.sort(r.blocks[name])
        np.testing.assert_allclose(ev[:d * d - K * K], lw, rtol=1e-10)
        np.testing.assert_allclose(ev[d * d - K * K:], lw / (1 - gamma), rtol=1e-10)


@pytest.mark.parametrize("K, n, d, L", [(4, 2, 5, 2), (4, 2, 8, 3), (3, 2, 5, 2), (4, 1, 6, 2)])
def test_dnc_groups_zero_modes_bulk_and_gauss_newton(K, n, d, L):
    lam = 1e-3
    spec = ModelSpec(K=K, n=n, d=d, L=L, lam=lam)
    r_ = K - 1
    rep = inspect_spectrum(spec, T.dnc_point(spec, T.dnc_scale_roots(K, n, L, lam)[-1]))
    kinds = {g["kind"]: g for g in rep.groups if g["kind"] in ("zero", "bulk")}
    assert kinds["zero"]["symmetry"] == T.gauge_orbit_dimension(L, r_, d) and kinds["zero"]["excess"] == 0
    # the bulk at λ: every factor's block that maps the null complement into itself,
    # Σ_l (a_l − r)(b_l − r), decouples from the data term (derived), plus r further modes (measured)
    derived = sum((a - r_) * (b - r_) for a, b in spec.shapes)
    assert kinds["bulk"]["multiplicity"] == derived + r_
    assert sum(g["multiplicity"] for g in rep.groups) == spec.P
    np.testing.assert_allclose(rep.factor_shares.sum(axis=1), 1.0, atol=1e-12)
    assert rep.gauss_newton.min() >= lam * (1 - 1e-9)   # G = λ + a PSD part
    assert rep.eigenvalues.min() >= -rep.tau               # DNC's large root is PSD (Theorem 4)


def test_negative_curvature_lives_in_the_residual_part():
    spec = ModelSpec(K=4, n=2, d=5, L=2, lam=1e-3)
    rep = inspect_spectrum(spec, T.dnc_point(spec, T.dnc_scale_roots(4, 2, 2, 1e-3)[0]))  # the small root: a saddle
    assert rep.eigenvalues.min() < -rep.tau
    assert rep.gauss_newton.min() >= 1e-3 * (1 - 1e-9) and rep.residual.min() < -rep.tau


def test_iterative_path_agrees_with_dense():
    spec = ModelSpec(K=4, n=2, d=6, L=2, lam=1e-3)
    th = T.pairing_point(spec, T.pairing_scales(4, 2, 2, 1e-3)[-1])
    dense = inspect_spectrum(spec, th)
    lan = inspect_spectrum(spec, th, dense_limit=10, lanczos_k=12, slq_vectors=24, slq_steps=60)
    assert lan.method == "lanczos" and lan.symmetry_zero_modes == dense.symmetry_zero_modes
    net = np.sort(np.delete(dense.eigenvalues, np.argsort(np.abs(dense.eigenvalues))[:dense.symmetry_zero_modes]))
    np.testing.assert_allclose(lan.eigenvalues[-12:], dense.eigenvalues[-12:], rtol=1e-8)
    np.testing.assert_allclose(lan.eigenvalues[:12], net[:12], atol=1e-10)
    g, v = lan.density["grid"], lan.density["values"]
    total = float(np.sum(0.5 * (v[1:] + v[:-1]) * np.diff(g)))
    assert abs(total - (spec.P - lan.symmetry_zero_modes)) <= 0.02 * spec.P   # the density counts the eigenvalues
    for name, ev in lan.blocks.items():
        np.testing.assert_allclose(ev, dense.blocks[name], atol=1e-10, err_msg=name)


def test_log_det_by_quadrature_matches_the_dense_sum():
    spec = ModelSpec(K=4, n=2, d=6, L=2, lam=1e-3)
    th = T.dnc_point(spec, T.dnc_scale_roots(4, 2, 2, 1e-3)[-1])
    ev = np.linalg.eigvalsh(dense_hessian(spec, th))
    tau = 1e-6
    exact = float(np.sum(np.log(ev[ev > tau])))
    est = log_det_positive(spec, th, tau=tau, vectors=64, steps=60)
    assert abs(est - exact) <= 0.03 * abs(exact)


def test_groups_by_hand():
    ev = np.array([-1e-3, 1e-12, -1e-12, 1e-3, 1e-3 * (1 + 1e-9), 5e-3])
    g = eigenvalue_groups(ev, tau=1e-6, lambdas=(1e-3,), symmetry_zero_modes=1)
    assert [(x["kind"], x["multiplicity"]) for x in g] == [("outlier", 1), ("zero", 2), ("bulk", 2), ("outlier", 1)]
    assert g[1]["symmetry"] == 1 and g[1]["excess"] == 1


def test_gauss_newton_product_matches_finite_differences_of_the_gradient_map():
    """G v = Jᵀ ∇²g J v + λ v: the JVP against central differences of the logits, and the whole
    G against the Hessian where the residual vanishes (the MSE optimum has ∇_Z g ≠ 0, so check
    H − G there is the cross-factor term: zero on single-factor blocks)."""
    spec = ModelSpec(K=3, n=2, d=4, L=3, lam=1e-2)
    m = DeepUFM(spec)
    rng = np.random.default_rng(1)
    th = torch.tensor(rng.normal(size=(2, spec.P)))
    v = torch.tensor(rng.normal(size=(2, spec.P)))
    e = 1e-6
    fd = (m.logits(th + e * v) - m.logits(th - e * v)) / (2 * e)
    np.testing.assert_allclose(m.logits_jvp(th, v).numpy(), fd.numpy(), atol=1e-7)
    H = dense_hessian(spec, th[0])
    G = torch.stack([m.gauss_newton_vp(th[:1], torch.eye(spec.P)[j:j + 1])[0] for j in range(spec.P)]).numpy()
    o = spec.offsets
    for i in range(spec.L + 1):  # Z is linear in each factor: no residual inside a diagonal block
        np.testing.assert_allclose((H - G)[o[i]:o[i + 1], o[i]:o[i + 1]], 0.0, atol=1e-12)


def test_lanczos_groups_are_lower_bounds_with_slq_counts():
    """On the Lanczos path a group's multiplicity counts Ritz values among the 2k computed: it is
    flagged a lower bound, never more than the dense multiplicity at the same value, and the SLQ
    count of its window estimates the dense multiplicity (the bulk at the default DNC: 83)."""
    from landscape.analysis.spectrum import group_multiplicity_text

    spec = ModelSpec(K=4, n=2, d=8, L=3, lam=1e-3)
    th = T.dnc_point(spec, T.dnc_scale_roots(4, 2, 3, 1e-3)[-1])
    dense = inspect_spectrum(spec, th)
    lan = inspect_spectrum(spec, th, dense_limit=10, lanczos_k=20, slq_vectors=32, slq_steps=80)
    assert all(not g.get("multiplicity_is_lower_bound") for g in dense.groups)
    assert group_multiplicity_text(dense.groups[0]) == f"×{dense.groups[0]['multiplicity']}"
    by_value = {round(g["value"], 7): g for g in dense.groups}
    for g in lan.groups:
        assert g["multiplicity_is_lower_bound"] and g["computed"] == 40
        d = by_value[round(g["value"], 7)]
        assert g["multiplicity"] <= d["multiplicity"]
        assert group_multiplicity_text(g).startswith(f"≥ {g['multiplicity']} of 40 computed")
    bulk = next(g for g in lan.groups if g["kind"] == "bulk")
    assert next(g for g in dense.groups if g["kind"] == "bulk")["multiplicity"] == 83
    assert bulk["multiplicity"] < 83 and bulk["estimated_count"] == pytest.approx(83, rel=0.15)


@pytest.mark.parametrize("bad", [0.0, -1e-6, 1e9, 0.5, float("nan")])
def test_group_rtol_out_of_range_is_refused(bad):
    from landscape.core.validate import SpecError

    spec = ModelSpec(K=3, n=2, d=4, L=2, lam=1e-2)
    with pytest.raises(SpecError, match="group_rtol"):
        inspect_spectrum(spec, np.zeros(spec.P), group_rtol=bad)


def test_spectrum_settings_read_the_study_analysis_table():
    from landscape.analysis.settings import AnalysisSettings, SpectrumSettings
    from landscape.core.validate import SpecError

    a = AnalysisSettings(lanczos_k=7, tau_rel=2e-3, dense_limit=50, lanczos_seed=3)
    s = SpectrumSettings.from_analysis(a, group_rtol=1e-5)
    assert (s.lanczos_k, s.tau_rel, s.dense_limit, s.seed, s.group_rtol) == (7, 2e-3, 50, 3, 1e-5)
    with pytest.raises(SpecError, match=r"spectrum.slq_steps=0 is invalid"):
        SpectrumSettings(slq_steps=0)
