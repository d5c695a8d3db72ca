"""The batched gauge tangents and their projector (landscape.core.gauge), and the negative-curvature
witness that projects the orbit out (landscape.engines.curvature)."""
import numpy as np
import pytest
import torch

from conftest import assert_close
from landscape import theory
from landscape.analysis.hessian import dense_hessian
from landscape.analysis.symmetry import symmetry_tangents
from landscape.core.gauge import GaugeProjector, gauge_tangent_count, gauge_tangents
from landscape.core.model import DeepUFM, ModelSpec
from landscape.engines import StageConfig, run_engine
from landscape.engines.curvature import curvature_threshold, negative_curvature

SMALL = ModelSpec(K=4, n=2, d=6, L=3, lam=1e-3)   # its small-root DNC point is a saddle of index 6


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_gauge_tangents_are_orthogonal_to_the_gradient_and_span_the_orbit(activation, rng):
    """⟨∇L(θ), t⟩ = 0 at every θ for every tangent t (L is constant along the orbit), and the span
    is the one analysis.symmetry builds from singular vectors (a different construction)."""
    spec = ModelSpec(K=3, n=2, d=5, L=3, activation=activation, lam=1e-2)
    m = DeepUFM(spec)
    th = torch.as_tensor(rng.standard_normal((3, spec.P)))
    T = gauge_tangents(spec, m.factors(th))
    assert T.shape == (3, gauge_tangent_count(spec), spec.P)
    assert gauge_tangent_count(spec) == (3 if activation == "linear" else 1) * 10
    g = m.grad(th)
    assert_close((T @ g.unsqueeze(2)).squeeze(2), np.zeros(T.shape[:2]), atol=1e-13 * float(g.abs().max()),
                 what="<∇L, tangent>")
    for b in range(3):
        mine, theirs = T[b].numpy(), symmetry_tangents(spec, th[b].numpy())
        r = np.linalg.matrix_rank(mine)
        assert r == np.linalg.matrix_rank(theirs) == np.linalg.matrix_rank(np.vstack([mine, theirs]))


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_the_structured_projector_equals_the_complement_of_the_svd_built_orbit(activation, rng):
    """The projector applies T and Tᵀ from their structure: at random points (and at a rank-one
    one, where tangents repeat) T v and Tᵀ c equal the products with the explicit (B, T, P)
    tangents, and P v equals v minus its orthogonal projection onto the orbit's span built by
    numpy from analysis.symmetry's singular vectors (another construction)."""
    spec = ModelSpec(K=3, n=2, d=5, L=3, activation=activation, lam=1e-2)
    m = DeepUFM(spec)
    th = torch.as_tensor(rng.standard_normal((3, spec.P)))
    F = m.factors(th)
    F1 = [f.clone() for f in F]
    for f in F1:                                      # row 2: every factor of rank one
        f[2] = torch.outer(f[2][:, 0], f[2][0])
    th[2] = torch.cat([f[2].reshape(-1) for f in F1])
    proj = GaugeProjector(spec, m.factors(th))
    T = gauge_tangents(spec, m.factors(th))
    v = torch.as_tensor(rng.standard_normal((3, spec.P)))
    c = torch.as_tensor(rng.standard_normal((3, T.shape[1])))
    assert_close(proj.tangent_coefficients(v), (T @ v.unsqueeze(2)).squeeze(2), atol=1e-12, what="T v")
    assert_close(proj.combine(c), (T.transpose(1, 2) @ c.unsqueeze(2)).squeeze(2), atol=1e-12, what="Tᵀ c")
    pv = proj(v)
    for b in range(3):
        U, sv, _ = np.linalg.svd(symmetry_tangents(spec, th[b].numpy()).T, full_matrices=False)
        U = U[:, sv > 1e-8 * sv[0]]
        assert int(proj.rank[b]) == U.shape[1]
        want = v[b].numpy() - U @ (U.T @ v[b].numpy())
        assert_close(pv[b], want, atol=1e-11, what=f"P v at row {b}")
    assert int(proj.rank[2]) < int(proj.rank[0])


def test_projector_is_an_orthogonal_projector_of_the_rank_MODEL_gives_at_a_critical_point(rng):
    """At the DNC point (logits of rank r = K−1 = 3) the orbit has dimension L·(r·d − r(r+1)/2) =
    3·(18 − 6) = 36 (MODEL.md §5): the projector finds that rank, is idempotent and symmetric."""
    m = DeepUFM(SMALL)
    star = torch.as_tensor(theory.dnc_point(SMALL, theory.dnc_scale_roots(4, 2, 3, 1e-3)[-1]))[None]
    proj = GaugeProjector(SMALL, m.factors(star))
    assert int(proj.rank[0]) == 36
    v, w = (torch.as_tensor(rng.standard_normal((1, SMALL.P))) for _ in range(2))
    pv = proj(v)
    assert_close(proj(pv), pv, atol=1e-13, what="P² = P")
    assert_close((proj(w) * v).sum(), (w * pv).sum(), atol=1e-13, what="Pᵀ = P")
    T = gauge_tangents(SMALL, m.factors(star))
    assert_close(T @ pv.unsqueeze(2), np.zeros((1, T.shape[1], 1)), atol=1e-12, what="P v ⟂ orbit")


def _perturbed(alpha_index: int, size: float, seed: int) -> torch.Tensor:
    star = theory.dnc_point(SMALL, theory.dnc_scale_roots(4, 2, 3, 1e-3)[alpha_index])
    u = np.random.default_rng(seed).standard_normal(SMALL.P)
    return torch.as_tensor(star + size * u / np.linalg.norm(u))[None]


def _lowest_across_orbit(th: torch.Tensor) -> float:
    """The lowest eigenvalue of H compressed to the orbit's complement, by numpy: dense Hessian
    and the SVD-built tangents of analysis.symmetry (not the code under test)."""
    H = dense_hessian(SMALL, th[0].numpy())
    U, s, _ = np.linalg.svd(symmetry_tangents(SMALL, th[0].numpy()).T, full_matrices=True)
    C = U[:, int(np.sum(s > 1e-8 * s[0])):]
    return float(np.linalg.eigvalsh(C.T @ H @ C)[0])


def test_the_projected_witness_sees_a_saddle_that_the_gradient_term_hides():
    """0.5 away from the index-6 DNC saddle: the curvature across the orbit is about −1e-2 while
    10‖∇L‖ is larger, so the unprojected test (threshold max(τλ, 10‖∇L‖)) misses it; the projected
    one (threshold τλ = 1e-6) finds it, to the dense value."""
    m = DeepUFM(SMALL)
    th = _perturbed(0, 0.5, 1)
    g = m.grad(th)
    truth = _lowest_across_orbit(th)
    assert truth < -10 * 1e-6 and 10 * float(g.norm()) > -truth   # the premise: the gradient term hides it
    hidden, _ = negative_curvature(m, th, g, 40, curvature_threshold(m, g.norm(dim=1), 1e-3, 10.0), False)
    seen, rmin = negative_curvature(m, th, g, 40, curvature_threshold(m, g.norm(dim=1), 1e-3, 10.0, True), True)
    assert not bool(hidden[0]) and bool(seen[0])
    assert_close(float(rmin[0]), truth, rtol=1e-6, what="lowest Ritz value across the orbit")


def test_the_projected_witness_finds_nothing_near_a_minimum_where_the_orbit_curves_down():
    """0.03 away from the DNC minimum, the full Hessian has eigenvalues below −τλ (the orbit's
    O(‖∇L‖) curvature), which a plain test at threshold τλ takes for a saddle; across the orbit the
    curvature is ≈ λ > 0 and the projected test finds nothing."""
    m = DeepUFM(SMALL)
    th = _perturbed(-1, 0.03, 1)
    g = m.grad(th)
    tau_lam = torch.full((1,), 1e-6)
    assert np.linalg.eigvalsh(dense_hessian(SMALL, th[0].numpy()))[0] < -1e-6 < 0 < _lowest_across_orbit(th)
    plain, _ = negative_curvature(m, th, g, 40, tau_lam, False)
    projected, _ = negative_curvature(m, th, g, 40, tau_lam, True)
    assert bool(plain[0]) and not bool(projected[0])


def test_gd_handed_off_near_a_saddle_keeps_descending_only_with_the_projected_test():
    """GD with tol 2e-3 started 0.5 from the saddle (‖∇L‖ ≈ 1.4e-3): with the unprojected test it
    'converges' at iteration 0 beside the saddle; with ``curvature_gauge`` a witness sends it on,
    and it ends far below the saddle's loss (the closed form of the small-root DNC point). Where
    below is not asserted: past the saddle GD at lr 0.5 is chaotic here (a 1e-14 change of the
    start, or the round-off of another matrix-product kernel, sends it to a DNC minimum at loss
    ≈ 0.020 or to a plateau at ≈ 0.61 where it stalls)."""
    m = DeepUFM(SMALL)
    th = _perturbed(0, 0.5, 1)
    saddle_loss = float(m.loss(torch.as_tensor(theory.dnc_point(SMALL, theory.dnc_scale_roots(4, 2, 3, 1e-3)[0]))))
    runs = {gauge: run_engine(m, th, StageConfig(engine="gd", lr=0.5, max_iter=20000, tol=2e-3, curvature_gauge=gauge))
            for gauge in (False, True)}
    assert runs[False].stop_reason[0] == "converged" and runs[False].iterations[0] == 0
    assert runs[True].witnesses[0] >= 1 and runs[True].iterations[0] > 0
    assert runs[True].stop_reason[0] in ("converged", "stalled") and runs[True].loss[0] < saddle_loss - 0.5


def test_the_projector_of_linear_mse_removes_its_class_rotations_too(rng):
    """Linear MSE is invariant under H₁ → H₁(Qᵀ ⊗ I_n), W_L → Q W_L (Q ∈ O(K)): the loss at a
    rotated θ (Q = expm of a random skew matrix, built here) equals the loss at θ to 1e-13. The
    batched rotation tangents equal the Kronecker-product ones built here from the generators
    (the analysis' symmetry space uses the batched ones); the projector annihilates them and the O(d) gauge tangents,
    is idempotent and symmetric, and its structured T v and Tᵀ c equal the explicit products.
    CE keeps no rotation tangents."""
    from scipy.linalg import expm

    from landscape.core.gauge import class_rotation_tangents

    spec = ModelSpec(K=4, n=3, d=6, L=3, lam=1e-3, loss="mse")
    model = DeepUFM(spec)
    th = torch.from_numpy(rng.standard_normal((3, spec.P)))
    F = model.factors(th)
    S = rng.standard_normal((spec.K, spec.K))
    Q = expm(S - S.T)
    G = [f.clone() for f in F]
    G[0] = torch.from_numpy(F[0].numpy() @ np.kron(Q.T, np.eye(spec.n)))
    G[-1] = torch.from_numpy(Q) @ F[-1]
    assert_close(model.loss(model.flatten(G)), model.loss(th), rtol=1e-13, what="loss after a class rotation")
    R = class_rotation_tangents(spec, F)
    assert R.shape == (3, 6, spec.P)
    # the tangents built here from the generators: δH₁ = H₁(Aᵀ ⊗ I_n), δW_L = A W_L, A = E_ab − E_ba
    offs, kron = spec.offsets, []
    for a in range(spec.K):
        for b in range(a + 1, spec.K):
            A = np.zeros((spec.K, spec.K))
            A[a, b], A[b, a] = 1.0, -1.0
            t = np.zeros(spec.P)
            t[offs[0]:offs[1]] = (F[0][1].numpy() @ np.kron(A.T, np.eye(spec.n))).reshape(-1)
            t[offs[-2]:offs[-1]] = (A @ F[-1][1].numpy()).reshape(-1)
            kron.append(t)
    assert_close(R[1].numpy(), np.array(kron), atol=1e-14, what="tangents")
    proj = GaugeProjector(spec, F)
    T = torch.cat([gauge_tangents(spec, F), R], dim=1)
    v = torch.from_numpy(rng.standard_normal((3, spec.P)))
    w = torch.from_numpy(rng.standard_normal((3, spec.P)))
    c = proj.tangent_coefficients(v)
    assert_close(c, (T @ v[:, :, None])[:, :, 0], atol=1e-12, what="T v")
    assert_close(proj.combine(c), (T.transpose(1, 2) @ c[:, :, None])[:, :, 0], atol=1e-12, what="Tᵀ c")
    for k in range(T.shape[1]):
        assert float(proj(T[:, k]).abs().max()) <= 1e-12
    Pv = proj(v)
    assert_close(proj(Pv), Pv, atol=1e-12, what="idempotent")
    assert_close((proj(w) * v).sum(1), (w * Pv).sum(1), atol=1e-12, what="symmetric")
    ce = ModelSpec(K=4, n=3, d=6, L=3, lam=1e-3, loss="ce")
    assert class_rotation_tangents(ce, DeepUFM(ce).factors(th)).shape == (3, 0, spec.P)
