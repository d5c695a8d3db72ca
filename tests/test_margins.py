"""λ = 0 margins of the deep linear CE UFM (landscape.analysis.margins, MODEL.md §11).

Every expected value is derived here, not read from the module: the closed forms are written out
in the tests, balanced points come from landscape.analysis.theory, margin gradients from torch
autograd through DeepUFM.logits, multipliers from scipy's linprog / lsq_linear, and the GD run
below is a hand-written numpy loop.
"""
import math

import numpy as np
import pytest
import torch
from scipy.optimize import linprog, lsq_linear

from landscape.analysis import margins as mg
from landscape.analysis.theory import balanced_point, pairing_Zbar, simplex
from landscape.core.model import DeepUFM
from landscape.core.spec import ModelSpec

from conftest import assert_close


def spec_of(K, n, d, L):
    return ModelSpec(K=K, n=n, d=d, L=L, lam=1e-3)   # λ ignored by margins


def gamma_nc(K, n, L):
    # S = I − 11ᵀ/K: K−1 singular values 1, margins 1; min ‖θ‖² = (L+1)(K−1)(√n)^{2/(L+1)}
    return ((L + 1) * (K - 1) * n ** (1 / (L + 1))) ** (-(L + 1) / 2)


def gamma_pairs(K, n, L):
    # β = 1: min margin 1 (2 against the partner); K/2 singular values 2√n
    return ((L + 1) * (K // 2) * (2 * math.sqrt(n)) ** (2 / (L + 1))) ** (-(L + 1) / 2)


def autograd_margin_jacobian(spec, theta):
    """(N(K−1), P) margin gradients by autograd, rows ordered (sample, class c ≠ y ascending)."""
    model = DeepUFM(spec)
    t = torch.tensor(theta, dtype=torch.float64)
    JZ = torch.autograd.functional.jacobian(lambda x: model.logits(x[None])[0], t).numpy()  # (K, N, P)
    rows = []
    for i in range(spec.N):
        y = i // spec.n
        rows += [JZ[y, i] - JZ[c, i] for c in range(spec.K) if c != y]
    return np.array(rows)


def expected_support(K, n, code):
    """Flat indices of the constraints at the minimum margin: all for NC, the non-partners for pairs."""
    out, k = [], 0
    for i in range(K * n):
        y = i // n
        for c in range(K):
            if c == y:
                continue
            if code == "nc" or c != (y ^ 1):
                out.append(k)
            k += 1
    return np.array(out)


# ----- (a) closed forms against balanced points ---------------------------------------------------
@pytest.mark.parametrize("L", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [1, 3])
def test_closed_forms_equal_normalised_margin_of_balanced_points(L, n):
    K, d = 4, 6
    spec = spec_of(K, n, d, L)
    # scales are arbitrary: γ is scale-free
    th_nc = balanced_point(spec, 2.7 * simplex(K))
    th_pairs = balanced_point(spec, pairing_Zbar(K, 0.6))
    assert_close(mg.normalised_margin(spec, th_nc), gamma_nc(K, n, L), rtol=1e-12, what="NC")
    assert_close(mg.normalised_margin((K, n, d, L), th_pairs), gamma_pairs(K, n, L), rtol=1e-12,
                 what="pairs")
    assert_close(mg.nc_code_margin(K, n, L), gamma_nc(K, n, L), rtol=1e-13, what="nc_code_margin")
    assert_close(mg.pairs_code_margin(K, n, L), gamma_pairs(K, n, L), rtol=1e-13, what="pairs_code_margin")
    assert_close(mg.code_margin(simplex(K), n, L), gamma_nc(K, n, L), rtol=1e-12, what="code_margin NC")
    assert_close(mg.code_margin(pairing_Zbar(K, 3.0), n, L), gamma_pairs(K, n, L), rtol=1e-12,
                 what="code_margin pairs")
    # the pairs code of the module is theory's pairing structure at β = 1 (min margin 1)
    assert_close(mg.pairs_code(K), pairing_Zbar(K, 1.0), atol=0, what="pairs_code")
    assert mg.code_min_margin(pairing_Zbar(K, 0.6)) == pytest.approx(0.6, rel=1e-15)


def test_depth_makes_pairs_beat_nc_at_K4():
    """γ_pairs/γ_NC = (2(K−1)/K)^{(L+1)/2}/2 = (3/2)^{(L+1)/2}/2 at K = 4: NC wins at L = 1, 2,
    the pairs code at L = 3, 4 (measured on balanced points)."""
    K, n, d = 4, 2, 6
    for L in (1, 2, 3, 4):
        spec = spec_of(K, n, d, L)
        g_nc = mg.normalised_margin(spec, balanced_point(spec, simplex(K)))
        g_p = mg.normalised_margin(spec, balanced_point(spec, pairing_Zbar(K, 1.0)))
        assert_close(g_p / g_nc, 1.5 ** ((L + 1) / 2) / 2, rtol=1e-12, what=f"ratio L={L}")
        assert (g_nc > g_p) == (L <= 2), (L, g_nc, g_p)


def test_code_margin_is_the_smallest_norm_of_a_factorisation():
    """A balanced factorisation of a generic Z̄ attains the closed form; random (unbalanced)
    factorisations of the same Z never beat it (AM–GM + Schatten Hölder)."""
    rng = np.random.default_rng(7)
    K, n, d, L = 4, 2, 6, 2
    spec = spec_of(K, n, d, L)
    Zb = simplex(K) + 0.2 * rng.standard_normal((K, K)) @ simplex(K)
    th = balanced_point(spec, Zb)
    g = mg.code_margin(Zb, n, L)
    assert_close(mg.normalised_margin(spec, th), g, rtol=1e-12, what="balanced generic code")
    H1, W1, W2 = spec.split(th)
    for _ in range(5):
        A = rng.standard_normal((d, d)) + 3 * np.eye(d)
        B = rng.standard_normal((d, d)) + 3 * np.eye(d)
        th2 = spec.join([B @ H1, A @ W1 @ np.linalg.inv(B), W2 @ np.linalg.inv(A)])
        assert_close(mg.logits(spec, th2), mg.logits(spec, th), atol=1e-10, what="same Z")
        assert mg.normalised_margin(spec, th2) <= g * (1 + 1e-12)


# ----- Jacobian and Hessian against autograd -----------------------------------------------------
@pytest.mark.parametrize("L", [1, 3])
def test_margin_derivatives_match_autograd(L):
    K, n, d = 3, 2, 4
    spec = spec_of(K, n, d, L)
    rng = np.random.default_rng(L)
    th = rng.standard_normal(spec.P)
    assert_close(mg.margin_jacobian(spec, th), autograd_margin_jacobian(spec, th), atol=1e-12,
                 what="margin Jacobian")
    mu = rng.standard_normal(spec.N * (K - 1))
    model = DeepUFM(spec)
    Zm = mg.margins(spec, th)
    Z = model.logits(torch.tensor(th)[None])[0].numpy()
    assert_close(Zm[0], [Z[0, 0] - Z[1, 0], Z[0, 0] - Z[2, 0]], atol=1e-13, what="margins layout")

    def phi(x):
        Zx = model.logits(x[None])[0]
        m = torch.stack([Zx[i // n, i] - Zx[c, i] for i in range(spec.N) for c in range(K) if c != i // n])
        return (torch.tensor(mu) * m).sum()

    H = torch.autograd.functional.hessian(phi, torch.tensor(th)).numpy()
    assert_close(mg.margin_hessian(spec, th, mu), H, atol=1e-12, what="Σμ∇²m")


# ----- (b) KKT certificates at balanced points ---------------------------------------------------
@pytest.mark.parametrize("code", ["nc", "pairs"])
@pytest.mark.parametrize("L", [1, 2, 3])
def test_kkt_certificate_at_balanced_points(code, L):
    K, n, d = 4, 2, 6
    spec = spec_of(K, n, d, L)
    Zb = simplex(K) if code == "nc" else pairing_Zbar(K, 1.0)
    th = 1.9 * balanced_point(spec, Zb)
    cert = mg.kkt_certificate(spec, th)
    assert cert.residual <= 1e-10 and cert.euler_gap <= 1e-10
    assert np.all(cert.multipliers >= 0)
    np.testing.assert_array_equal(cert.support, expected_support(K, n, code))
    assert_close(cert.gamma, gamma_nc(K, n, L) if code == "nc" else gamma_pairs(K, n, L), rtol=1e-12,
                 what="certificate γ")
    th_hat = cert.theta_hat
    assert_close(mg.margins(spec, th_hat).min(), 1.0, atol=1e-13, what="unit margin")

    # independent multipliers: autograd Jacobian, bounded least squares and an LP feasibility solve
    A = autograd_margin_jacobian(spec, th_hat)[cert.support].T            # (P, |S|)
    ref = lsq_linear(A, th_hat, bounds=(0, np.inf), tol=1e-14, lsmr_tol="auto", method="bvls")
    assert np.linalg.norm(A @ ref.x - th_hat) <= 1e-10 * np.linalg.norm(th_hat)
    lp = linprog(np.zeros(A.shape[1]), A_eq=A, b_eq=th_hat, bounds=(0, None), method="highs")
    assert lp.status == 0, lp.message
    assert np.all(lp.x >= -1e-12)
    # at K = 4 the support's gradients are independent: the multipliers are unique
    assert np.linalg.matrix_rank(A) == A.shape[1]
    assert_close(cert.multipliers, ref.x, atol=1e-10, what="NNLS vs BVLS")
    assert_close(cert.multipliers, lp.x, atol=1e-8, what="NNLS vs LP")
    # closed forms: θ = JᵀU, U = U_Z Σ^{(1−L)/(L+1)} V_Zᵀ at the unit-margin point
    if code == "nc":
        assert_close(cert.multipliers, n ** (-L / (L + 1)) / K, rtol=1e-12, what="NC multipliers")
    else:
        per_sample = (2 * math.sqrt(n)) ** ((1 - L) / (L + 1)) / math.sqrt(n)
        assert_close(cert.multipliers, per_sample / 2, rtol=1e-12, what="pairs multipliers")
        assert_close(cert.slack, 1.0, rtol=1e-12, what="partner margins are 2")
    # Euler: ⟨θ, ∇m⟩ = (L+1)m, so Σα = ‖θ̂‖²/(L+1)
    assert_close(cert.multipliers.sum(), th_hat @ th_hat / (L + 1), rtol=1e-12, what="Euler")


def test_certificate_rejects_a_non_kkt_direction():
    K, n, d, L = 4, 1, 6, 2
    spec = spec_of(K, n, d, L)
    rng = np.random.default_rng(3)
    th = balanced_point(spec, simplex(K)) + 0.05 * rng.standard_normal(spec.P)
    cert = mg.kkt_certificate(spec, th)
    assert cert.residual > 1e-4
    with pytest.raises(ValueError, match="does not separate"):
        mg.kkt_certificate(spec, balanced_point(spec, -simplex(K)))


# ----- (c) gradient descent at λ = 0 goes to NC for L = 1, and polishes there --------------------
def normalised_gd(K, n, d, steps, eta, seed):
    """Plain float64 GD on the mean CE of Z = WH, λ = 0, with steps η·∇/‖∇‖. The gradient's
    direction is taken in the log domain (P − Y with the tiny probabilities rescaled by their
    largest), so it does not underflow when the margins are in the thousands."""
    N = K * n
    y = np.repeat(np.arange(K), n)
    cols = np.arange(N)
    rng = np.random.default_rng(seed)
    W = 0.3 * rng.standard_normal((K, d))
    H = 0.3 * rng.standard_normal((d, N))
    for _ in range(steps):
        Z = W @ H
        Z = Z - Z.max(axis=0)
        logp = Z - np.log(np.exp(Z).sum(axis=0))
        logp[y, cols] = -np.inf
        G = np.exp(logp - logp.max())          # p_c for c ≠ y, over a common positive factor
        G[y, cols] = -G.sum(axis=0)            # p_y − 1 = −Σ_{c≠y} p_c
        gW, gH = G @ H.T, W.T @ G
        nrm = math.sqrt((gW ** 2).sum() + (gH ** 2).sum())
        W -= eta * gW / nrm
        H -= eta * gH / nrm
    return np.concatenate([H.reshape(-1), W.reshape(-1)])


@pytest.mark.parametrize("seed", [0, 1])
def test_gd_direction_approaches_nc_and_polishes_to_it(seed):
    K, n, d, L = 4, 1, 8, 1
    th = normalised_gd(K, n, d, steps=3000, eta=0.05, seed=seed)
    g_end = mg.normalised_margin((K, n, d, L), th)
    g_star = gamma_nc(K, n, L)
    assert g_end <= g_star * (1 + 1e-12)              # L = 1: NC is the global max-margin code
    assert g_end >= g_star * (1 - 1e-3), (g_end, g_star)
    th_hat, cert = mg.polish_direction((K, n, d, L), th, tol=1e-10, fallback=None)
    assert cert.polish["converged"] and cert.polish["stage"] == "newton"
    assert abs(cert.gamma - g_star) <= 1e-9 * g_star
    assert cert.residual <= 1e-10
    assert cert.support_size == K * n * (K - 1)
    assert_close(mg.normalised_margin((K, n, d, L), th_hat), g_star, rtol=1e-9, what="polished γ")
    # the polished logits are the simplex: Z = S ⊗ 1ᵀ at unit margin
    assert_close(mg.logits((K, n, d, L), th_hat), np.kron(simplex(K), np.ones((1, n))), atol=1e-9,
                 what="NC logits")


def test_polish_from_perturbed_codes():
    """Newton alone from a perturbed pairs point at L = 3 (K = 4, a strict KKT point); the SLSQP
    fallback from a perturbed K = 6 pairs point, whose support's gradients are dependent."""
    K, n, d, L = 4, 2, 6, 3
    spec = spec_of(K, n, d, L)
    rng = np.random.default_rng(1)
    th = balanced_point(spec, pairing_Zbar(K, 1.0))
    th = th + 0.02 * np.abs(th).max() * rng.standard_normal(th.size)
    _, cert = mg.polish_direction(spec, th, support_rtol=0.1, fallback=None)
    assert cert.polish["converged"] and cert.polish["stage"] == "newton"
    assert abs(cert.gamma - gamma_pairs(K, n, L)) <= 1e-10 * gamma_pairs(K, n, L)
    assert cert.residual <= 1e-10

    K, n, d, L = 6, 1, 8, 2
    spec = spec_of(K, n, d, L)
    th = balanced_point(spec, pairing_Zbar(K, 1.0))
    th = th + 0.02 * np.abs(th).max() * rng.standard_normal(th.size)
    _, first = mg.polish_direction(spec, th, support_rtol=0.1, fallback=None)
    assert not first.polish["converged"]                  # Newton alone stalls from here
    _, cert = mg.polish_direction(spec, th, support_rtol=0.1)
    assert cert.polish["converged"] and cert.polish["stage"] == "slsqp+newton"
    assert abs(cert.gamma - gamma_pairs(K, n, L)) <= 1e-10 * gamma_pairs(K, n, L)
    assert cert.residual <= 1e-10 and cert.support_size == K * n * (K - 2)


def test_polish_at_the_used_width_matches_the_full_width(monkeypatch):
    """A balanced pairs point (rank 2 at K = 4) uses 2 of d = 8 hidden units per interface; with
    its units scattered by a permutation and its used entries perturbed, the polish runs at width
    2 (compact_width) and reaches what the full-width polish reaches: γ_pairs (derived above) to
    1e-10 and the same polished margins; compact then expand gives θ back exactly."""
    K, n, d, L = 4, 1, 8, 3
    spec = spec_of(K, n, d, L)
    rng = np.random.default_rng(5)
    F = spec.split(balanced_point(spec, pairing_Zbar(K, 1.0)))
    for l in range(L):                                 # move the used units to random places
        p = rng.permutation(d)
        F[l], F[l + 1] = F[l][p], F[l + 1][:, p]
    F = [f + 0.02 * (f != 0) * rng.standard_normal(f.shape) for f in F]
    th = spec.join(F)
    narrow = mg.compact_width(spec, th)
    assert narrow is not None and narrow.shape.d == K // 2
    assert np.array_equal(narrow.expand(mg.as_shape(spec), narrow.theta), th)
    assert_close(mg.margins(narrow.shape, narrow.theta), mg.margins(spec, th), rtol=1e-14)
    th_c, cert_c = mg.polish_direction(spec, th, support_rtol=0.1)
    assert cert_c.polish["width"] == K // 2
    monkeypatch.setattr(mg, "compact_width", lambda shape, theta: None)
    th_f, cert_f = mg.polish_direction(spec, th, support_rtol=0.1)
    assert cert_f.polish["width"] == d
    for cert in (cert_c, cert_f):
        assert abs(cert.gamma - gamma_pairs(K, n, L)) <= 1e-10 * gamma_pairs(K, n, L)
        assert cert.residual <= 1e-10
    assert_close(mg.margins(spec, th_c), mg.margins(spec, th_f), atol=1e-9)
    assert mg.compact_width(spec, np.ones(spec.P)) is None   # every unit used: nothing to compact


def test_polish_at_the_used_width_keeps_the_second_order_test_at_full_width():
    """At L = 1 the max-margin problem is convex in Z (min 2‖Z‖_* s.t. margins ≥ 1: the balanced
    factorisation's ‖θ‖² is twice the nuclear norm), so every local maximum of the margin is global
    and the pairs code (γ = 1/8 < γ_NC = 1/6) must be a saddle at full width, where the rank can
    grow; restricted to the 2 units it uses it is a local maximum. The polish runs at width 2 and
    the certificate and second-order test at d = 6 see the saddle. With unequal used widths
    (2, 3 units at the two interfaces of L = 2), compact then expand gives θ back exactly."""
    K, n, d, L = 4, 1, 6, 1
    spec = spec_of(K, n, d, L)
    th = balanced_point(spec, pairing_Zbar(K, 1.0))
    th_hat, cert = mg.polish_direction(spec, th)
    assert cert.polish["width"] == 2 and cert.residual <= 1e-10
    assert abs(cert.gamma - 1 / 8) <= 1e-12 and abs(gamma_nc(K, n, L) - 1 / 6) <= 1e-15
    full = mg.second_order(spec, th_hat, cert.support, cert.multipliers)
    assert full["negative"] >= 1                          # a saddle of the margin at d = 6
    narrow = mg.compact_width(spec, th_hat)
    assert narrow is not None and narrow.shape.d == 2
    assert mg.second_order(narrow.shape, narrow.theta, cert.support, cert.multipliers)["negative"] == 0

    spec = spec_of(4, 1, 5, 2)
    rng = np.random.default_rng(3)
    F = [np.zeros(f.shape) for f in spec.split(np.zeros(spec.P))]
    F[0][[1, 4], :] = rng.standard_normal((2, 4))         # interface 1 uses units 1 and 4
    F[1][np.ix_([0, 2, 3], [1, 4])] = rng.standard_normal((3, 2))   # interface 2 uses units 0, 2, 3
    F[2][:, [0, 2, 3]] = rng.standard_normal((4, 3))
    th = spec.join(F)
    narrow = mg.compact_width(spec, th)
    assert narrow.shape.d == 3
    assert np.array_equal(narrow.expand(mg.as_shape(spec), narrow.theta), th)
    assert_close(mg.logits(narrow.shape, narrow.theta), mg.logits(spec, th), rtol=1e-14)


def smallest_code_margin(Zb):
    """min over classes c and c' ≠ c of Z̄[c, c] − Z̄[c', c] (column c: class c's logits)."""
    marg = np.diag(Zb)[None, :] - Zb
    return marg[~np.eye(Zb.shape[0], dtype=bool)].min()


def brute_force_gamma(Zb, n, L):
    """γ of a unit-margin code: ((L+1)Σσ^{2/(L+1)})^{−(L+1)/2} over numpy's singular values of Z̄ ⊗ 1_nᵀ."""
    sv = np.linalg.svd(np.kron(Zb, np.ones((1, n))), compute_uv=False)
    sv = sv[sv > 1e-10]
    return ((L + 1) * np.sum(sv ** (2 / (L + 1)))) ** (-(L + 1) / 2)


@pytest.mark.parametrize("K,n,L", [(10, 1, 2), (10, 2, 3), (6, 1, 4), (5, 3, 2)])
def test_pairs_and_classes_alone_code_margin(K, n, L):
    """The centred code of p pairs and s = K − 2p classes alone, built here: a paired class's
    logits +1 on itself, −1 on its partner, 0 elsewhere; a class alone 1 − 1/K on itself, −1/K
    elsewhere. Its margins are 1 (2 to the partner), and γ by brute force — the balanced
    factorisation's ‖θ‖² = (L+1)Σσ^{2/(L+1)} from numpy's SVD of Z̄ ⊗ 1_nᵀ — equals the closed form;
    p = 0 is γ_NC and p = K/2 γ_pairs (derived above)."""
    for p in range(K // 2 + 1):
        Zb = np.zeros((K, K))
        for j in range(p):
            Zb[2 * j, 2 * j] = Zb[2 * j + 1, 2 * j + 1] = 1.0
            Zb[2 * j + 1, 2 * j] = Zb[2 * j, 2 * j + 1] = -1.0
        for c in range(2 * p, K):
            Zb[:, c] = -1.0 / K
            Zb[c, c] = 1.0 - 1.0 / K
        assert_close(mg.pairs_self_code(K, p), Zb, atol=1e-15)
        assert smallest_code_margin(Zb) == pytest.approx(1.0, abs=1e-14)
        brute = brute_force_gamma(Zb, n, L)
        assert mg.pairs_self_code_margin(K, n, L, p) == pytest.approx(brute, rel=1e-12)
        if p == 0:
            assert brute == pytest.approx(gamma_nc(K, n, L), rel=1e-12)
        if 2 * p == K:
            assert brute == pytest.approx(gamma_pairs(K, n, L), rel=1e-12)


@pytest.mark.parametrize("m,j,n,L", [(5, 2, 1, 2), (5, 2, 1, 3), (5, 2, 2, 4), (6, 2, 1, 3), (4, 1, 3, 2)])
def test_subsets_code_margin(m, j, n, L):
    """The code of the j-subsets of an m-set, built here from |S∩T| (centred by j²/m, the Gram of
    the centred indicator vectors), scaled to unit margin by its own smallest margin; γ by brute
    force (numpy's SVD of Z̄ ⊗ 1_nᵀ) against the closed form; j = 1 is NC."""
    import itertools

    subsets = list(itertools.combinations(range(m), j))
    K = len(subsets)
    Zb = np.array([[len(set(a) & set(b)) - j * j / m for b in subsets] for a in subsets], float)
    brute = brute_force_gamma(Zb / smallest_code_margin(Zb), n, L)
    assert mg.subsets_code_margin(m, j, n, L) == pytest.approx(brute, rel=1e-12)
    if j == 1:
        assert brute == pytest.approx(gamma_nc(K, n, L), rel=1e-12)


def test_a_balanced_pairs_and_alone_code_is_labelled_and_certified():
    """K = 10, L = 2: the balanced point of 4 pairs + 2 classes alone reads as "4×pair+2×self"
    (the centred reading of the structure table), is a KKT point at its closed-form γ, and the
    λ = 0 study's closed form for that label is the same number."""
    from landscape.analysis.structure import analyse_structure
    from landscape.study.lambda0 import closed_form

    K, n, d, L = 10, 1, 12, 2
    spec = spec_of(K, n, d, L)
    th = balanced_point(spec, mg.pairs_self_code(K, 4))
    assert analyse_structure(spec, th).label == "4×pair+2×self"
    cert = mg.kkt_certificate(spec, th, support_rtol=1e-9)
    g = mg.pairs_self_code_margin(K, n, L, 4)
    assert cert.residual <= 1e-10 and cert.gamma == pytest.approx(g, rel=1e-12)
    assert closed_form(spec, "4×pair+2×self")[1] == pytest.approx(g, rel=1e-15)


# ----- (d) invariances ---------------------------------------------------------------------------
def random_orthogonal(rng, d):
    Q, R = np.linalg.qr(rng.standard_normal((d, d)))
    return Q * np.sign(np.diag(R))


def gauge_and_relabel(spec, theta, rng):
    """Rotate every interface (F_l → O_l F_l, F_{l+1} → F_{l+1} O_lᵀ) and permute the classes
    (rows of W_L, column blocks of H₁) by a random permutation."""
    F = spec.split(theta)
    for l in range(spec.L):
        O = random_orthogonal(rng, spec.d)
        F[l] = O @ F[l]
        F[l + 1] = F[l + 1] @ O.T
    perm = rng.permutation(spec.K)
    WL = np.empty_like(F[-1])
    WL[perm] = F[-1]
    H = np.empty_like(F[0])
    for c in range(spec.K):
        H[:, perm[c] * spec.n:(perm[c] + 1) * spec.n] = F[0][:, c * spec.n:(c + 1) * spec.n]
    F[0], F[-1] = H, WL
    return spec.join(F)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_gamma_invariant_under_gauge_relabelling_and_scale(seed):
    rng = np.random.default_rng(100 + seed)
    K, n, d, L = 4, 2, 6, 1 + seed % 3
    spec = spec_of(K, n, d, L)
    th = rng.standard_normal(spec.P)                       # any direction, margins of any sign
    th2 = gauge_and_relabel(spec, th, rng)
    assert_close(np.sort(mg.margins(spec, th2).ravel()), np.sort(mg.margins(spec, th).ravel()),
                 atol=1e-11, what="margin multiset")
    g = mg.normalised_margin(spec, th)
    assert_close(mg.normalised_margin(spec, th2), g, rtol=1e-11, atol=1e-14, what="gauge + relabel")
    assert_close(mg.normalised_margin(spec, 3.1 * th), g, rtol=1e-12, atol=1e-14, what="scale")
    # a separable direction: the certificate is invariant too
    base = balanced_point(spec, simplex(K)) + 0.03 * rng.standard_normal(spec.P)
    c1 = mg.kkt_certificate(spec, base, support_rtol=1e-2)
    c2 = mg.kkt_certificate(spec, gauge_and_relabel(spec, base, rng), support_rtol=1e-2)
    assert_close(c2.gamma, c1.gamma, rtol=1e-11, what="certificate γ")
    assert c2.support_size == c1.support_size
    assert_close(c2.residual, c1.residual, rtol=1e-6, atol=1e-12, what="certificate residual")


def test_shape_arguments():
    spec = spec_of(4, 1, 6, 2)
    th = balanced_point(spec, simplex(4))
    assert mg.normalised_margin(spec, th) == mg.normalised_margin((4, 1, 6, 2), th)
    assert mg.normalised_margin(spec, torch.tensor(th)) == mg.normalised_margin(spec, th)
    with pytest.raises(ValueError, match="linear CE"):
        mg.margins(ModelSpec(K=4, n=1, d=6, L=2, activation="relu"), th)
    with pytest.raises(ValueError, match="P="):
        mg.margins((4, 1, 6, 2), th[:-1])
    with pytest.raises(ValueError, match="even K"):
        mg.pairs_code_margin(5, 1, 2)
