"""The SRG low-rank structure of the deep ReLU MSE UFM (landscape.analysis.srg; Súkeník, Lampert &
Mondelli 2024, MODEL.md §9), held to values derived here: the matrices are rebuilt in the test
(incidence matrix, Johnson-scheme projectors from the triangular graph's adjacency), the loss is
minimised numerically over the explicit matrices, stationarity is checked by autograd through a
ReLU with chosen slopes at 0 and a bounded least squares, and by one-sided finite differences."""
import math
from functools import lru_cache
from itertools import combinations

import numpy as np
import pytest
import torch
from scipy.optimize import brentq, lsq_linear, minimize, minimize_scalar

from landscape.analysis.family import member_dnc
from landscape.analysis.kinks import active_set, clarke_multipliers
from landscape.analysis.srg import (check_srg_spec, compare_with_dnc, is_srg_K, srg_point, srg_solution,
                                    triangular_r)
from landscape.cli import main
from landscape.core.model import DeepUFM
from landscape.core.spec import ModelSpec
from landscape.core.validate import SpecError


def _spec(K=10, L=3, n=1, d=None, lam=4e-3):
    return ModelSpec(K=K, n=n, d=d or K, L=L, activation="relu", loss="mse", lam=lam)


# ----- the construction, rebuilt here ------------------------------------------------------------
@lru_cache(maxsize=None)
def _graph(r):
    """(B, A₁, A₀): edge–vertex incidence, and adjacency of edges sharing one / no vertex."""
    E = list(combinations(range(r), 2))
    B = np.array([[1.0 if v in e else 0.0 for v in range(r)] for e in E])
    inter = B @ B.T
    return B, (inter == 1).astype(float), (inter == 0).astype(float)


@lru_cache(maxsize=None)
def _eigenspaces(r):
    """Projectors of A₁ (triangular graph T(r)) for its eigenvalues 2(r−2), r−4, −2, in that order."""
    _, A1, _ = _graph(r)
    w, V = np.linalg.eigh(A1)
    return [V[:, np.abs(w - t) < 1e-9] @ V[:, np.abs(w - t) < 1e-9].T for t in (2 * (r - 2), r - 4, -2)]


def _explicit_factors(r, L, n, d, beta, z):
    """H₁, W₁ (balanced factorisation of Bᵀ), W_l = I_r, W_{L−1} = B + β(J−B), W_L = Σ (z_i/f_i)P_i."""
    B, A1, _ = _graph(r)
    K = B.shape[0]
    U, S, Vt = np.linalg.svd(B.T, full_matrices=False)
    F = [np.zeros((d, K * n))] + [np.zeros((d, d)) for _ in range(L - 1)] + [np.zeros((K, d))]
    F[0][:r] = np.kron(np.diag(np.sqrt(S)) @ Vt, np.ones((1, n)))
    F[1][:r, :r] = U @ np.diag(np.sqrt(S))
    for l in range(2, L - 1):
        F[l][:r, :r] = np.eye(r)
    F[L - 1][:K, :r] = B + beta * (1 - B)
    post = 2 * np.eye(K) + (1 + beta) * A1                      # ReLU(H_L), computed, not assumed
    H_L = (B + beta * (1 - B)) @ B.T
    assert np.allclose(np.maximum(H_L, 0), post)
    P = _eigenspaces(r)
    F[L][:, :K] = sum(zi * Pi for zi, Pi in zip(z, P)) @ np.linalg.inv(post)
    return F


def _explicit_loss(r, L, n, lams, beta, z):
    """Data term of Z̄ = Σ z_i P_i plus the AM–GM penalty ((L+1)/2)(Π λ_l‖F_l‖²)^{1/(L+1)} of the
    explicit factors (the smallest Σ λ_l‖s_l F_l‖²/2 over Π s_l = 1)."""
    F = _explicit_factors(r, L, n, max(r * (r - 1) // 2, 1), beta, z)
    K = r * (r - 1) // 2
    Zbar = sum(zi * Pi for zi, Pi in zip(z, _eigenspaces(r)))
    data = np.sum((Zbar - np.eye(K)) ** 2) / (2 * K)
    logprod = sum(math.log(lam * np.sum(f * f)) for lam, f in zip(lams, F))
    return data + 0.5 * (L + 1) * math.exp(logprod / (L + 1))


def _minimised_srg_loss(K, L, n, lam):
    """min over (β, z₀, z₁, z₂) of :func:`_explicit_loss` by Nelder–Mead from a generic start;
    ``lam``: one λ, or the L+1 per-factor values."""
    r = triangular_r(K)
    lams = list(lam) if isinstance(lam, (list, tuple)) else [lam] * (L + 1)
    f = lambda p: _explicit_loss(r, L, n, lams, p[0], p[1:]) if -1 < p[0] < 0 else 1e9  # noqa: E731
    best = None
    for x0 in ([-0.5, 0.9, 0.9, 0.9], [-0.9, 0.95, 0.9, 0.85]):
        res = minimize(f, x0, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-15, "maxfev": 3000})
        res = minimize(f, res.x, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-15, "maxfev": 3000})
        if best is None or res.fun < best.fun:
            best = res
    return best.fun, best.x


def _dang_dnc_loss(K, L, n, lam):
    """ReLU/linear MSE DNC at equal λ (Dang et al., MODEL.md §6), solved here."""
    rhs = (lam * K) ** L * (lam * K * n)
    g = brentq(lambda g: (L - 1) * math.log(g) + (L + 1) * math.log1p(-g) - math.log(rhs), (L - 1) / (2 * L),
               1 - 1e-15, xtol=1e-16)
    return (1 - g) ** 2 / 2 + (L + 1) / 2 * g * (1 - g)


# ----- stationarity, checked outside the code under test -----------------------------------------
def _kink_masks(spec, theta):
    model = DeepUFM(spec)
    pre, _, _ = model.forward(torch.from_numpy(theta)[None])
    out = []
    for h in pre[1:]:
        h = h[0]
        out.append(h.abs() <= 1e-9 * float(h.abs().max()))
    return out


def _grad_with_slopes(spec, theta, masks, slopes):
    """∇ of the MSE loss (written out here: factors read off the flat θ, Y = I_K ⊗ 1_nᵀ) with
    ReLU'(h) = slopes at the kink entries (and the usual ReLU elsewhere)."""
    K, n, N = spec.K, spec.n, spec.N
    Y = torch.from_numpy(np.kron(np.eye(K), np.ones((1, n))))
    shapes = spec.shapes
    t = torch.from_numpy(theta).clone()

    def f(t, slopes):
        F, i = [], 0
        for r_, c_ in shapes:
            F.append(t[i:i + r_ * c_].reshape(r_, c_))
            i += r_ * c_
        post = F[0]
        for l, W in enumerate(F[1:-1]):
            h = W @ post
            idx = torch.nonzero(masks[l].reshape(-1)).reshape(-1)
            s = torch.zeros(h.numel(), dtype=h.dtype).scatter(0, idx, slopes[l]).reshape(h.shape)
            post = torch.where(masks[l], s * h, torch.relu(h))   # value ≈ 0 (|h| ≤ 1e-15), slope s
        Z = F[-1] @ post
        return ((Z - Y) ** 2).sum() / (2 * N) + 0.5 * sum(lam * (x * x).sum() for lam, x in zip(spec.lambdas, F))

    return torch.func.grad(f)(t, slopes)


def _slope_sizes(masks):
    return [int(m.sum()) for m in masks]


@pytest.mark.parametrize("K,n,d,lam_H,lam_W", [(10, 2, 12, None, None), (6, 1, 7, None, None),
                                               (6, 2, 7, 3e-3, (1e-3, 5e-3, 2e-3))])
def test_the_srg_point_at_L3_is_clarke_stationary_on_its_kinks(K, n, d, lam_H, lam_W):
    """L = 3: one layer of kinks (the vertex layer's zeros), where the gradients with slopes
    s ∈ [0, 1] at the kinks are exactly the Clarke subdifferential: min ‖g₀ + G s‖ over the box
    (lsq_linear, G by autograd through a ReLU with slope s at 0) ≤ 1e-10; the library's
    clarke_multipliers agrees; H_L and the logits have no entry at 0; one-sided finite differences
    in random directions are ≥ 0 (no first-order descent). Equal λ and per-factor λ."""
    spec = ModelSpec(K=K, n=n, d=d, L=3, activation="relu", loss="mse", lam=4e-3, lam_H=lam_H, lam_W=lam_W)
    th = srg_point(spec)
    masks = _kink_masks(spec, th)
    assert not masks[-1][:K].any()                 # H_L: smooth (adjacent > 0, disjoint < 0); rows ≥ K dead
    sizes = _slope_sizes(masks)
    cut = np.cumsum([0] + sizes)

    def grad(s):
        return _grad_with_slopes(spec, th, masks, [s[cut[i]:cut[i + 1]] for i in range(len(sizes))])

    zero = torch.zeros(cut[-1], dtype=torch.float64)
    g0 = grad(zero).numpy()
    G = torch.func.jacrev(grad)(zero).numpy()
    s_rand = torch.from_numpy(np.random.default_rng(1).random(cut[-1]))
    assert np.allclose(grad(s_rand).numpy(), g0 + G @ s_rand.numpy(), atol=1e-14)   # one layer of live kinks
    assert np.linalg.norm(g0) > 1e-4               # not stationary on the smooth piece alone
    sol = lsq_linear(G, -g0, bounds=(0.0, 1.0), method="bvls", tol=1e-15)
    assert np.linalg.norm(g0 + G @ sol.x) <= 1e-10
    cl = clarke_multipliers(spec, th, active_set(spec, th))
    assert cl.residual <= 1e-10
    model = DeepUFM(spec)
    L0 = float(model.loss(torch.from_numpy(th)[None])[0])
    rng = np.random.default_rng(0)
    for _ in range(20):
        v = rng.standard_normal(spec.P)
        v /= np.linalg.norm(v)
        fd = (float(model.loss(torch.from_numpy(th + 1e-7 * v)[None])[0]) - L0) / 1e-7
        assert fd >= -1e-6


@pytest.mark.parametrize("L", [4, 5])
def test_the_srg_point_deeper_has_zero_in_its_chain_rule_hull(L):
    """L ≥ 4: m = L − 2 stacked layers of kinks (the vertex layers H₂ … H_{L−1}; W_l = I_r carries
    each kink into the kink at the same place of the next layer). The gradient with slopes
    s₁ … s_m (one per layer, per kink) is g₀ + Σ_k A_k c_k with c_k = s_k ⊙ … ⊙ s_m (checked at a
    random s), whose hull over the box is c ∈ {0 ≤ c₁ ≤ … ≤ c_m ≤ 1}: with increments q_j ≥ 0,
    Σ_j q_j ≤ 1, it is g₀ + Σ_j (Σ_{k≥j} A_k) q_j, and the bounded least squares over q reaches
    ≤ 1e-10 with Σ_j q_j ≤ 1. (This hull contains the Clarke subdifferential, Clarke's chain rule:
    0 in it is necessary; one-sided finite differences in random directions are ≥ 0 as well.)"""
    spec = _spec(K=10, L=L, n=1, d=11)
    th = srg_point(spec)
    masks = _kink_masks(spec, th)
    assert not masks[-1][:10].any()                # H_L smooth; its dead rows (≥ K) carry nothing
    m = L - 2
    sizes = _slope_sizes(masks)
    S = sizes[0]
    assert all(sz == S and torch.equal(mk, masks[0]) for sz, mk in zip(sizes[:m], masks[:m]))
    zero, one = torch.zeros(S, dtype=torch.float64), torch.ones(S, dtype=torch.float64)
    e = torch.zeros(sizes[-1], dtype=torch.float64)

    def g(slopes, last=e):
        return _grad_with_slopes(spec, th, masks, [*slopes, last])

    assert float(torch.func.jacrev(lambda s: g([one] * m, s))(e).abs().max()) <= 1e-15
    g0 = g([zero] * m).numpy()
    # ∂g/∂s_k with the slopes before k at 0 and after k at 1 is A_k (the terms k' < k vanish)
    A = [torch.func.jacrev(lambda s, k=k: g([zero] * k + [s] + [one] * (m - k - 1)))(zero).numpy() for k in range(m)]
    rng = np.random.default_rng(3)
    s = [torch.from_numpy(rng.random(S)) for _ in range(m)]
    c = [np.prod([x.numpy() for x in s[k:]], axis=0) for k in range(m)]
    assert np.allclose(g(s).numpy(), g0 + sum(A[k] @ c[k] for k in range(m)), atol=1e-14)
    M = np.hstack([sum(A[k] for k in range(j, m)) for j in range(m)])
    sol = lsq_linear(M, -g0, bounds=(0.0, 1.0), method="bvls", tol=1e-15)
    assert np.linalg.norm(g0 + M @ sol.x) <= 1e-10
    assert np.all(sol.x.reshape(m, S).sum(axis=0) <= 1 + 1e-12)
    model = DeepUFM(spec)
    L0 = float(model.loss(torch.from_numpy(th)[None])[0])
    for _ in range(20):
        v = rng.standard_normal(spec.P)
        v /= np.linalg.norm(v)
        fd = (float(model.loss(torch.from_numpy(th + 1e-7 * v)[None])[0]) - L0) / 1e-7
        assert fd >= -1e-6


# ----- the closed form against a direct minimisation --------------------------------------------
@pytest.mark.parametrize("K,L,n,lam_H,lam_W", [(10, 4, 1, None, None), (10, 3, 2, None, None), (6, 5, 1, None, None),
                                               (15, 4, 3, 1e-3, (2e-3, 5e-3, 3e-3, 4e-3))])
def test_the_closed_form_is_the_minimum_over_the_explicit_matrices(K, L, n, lam_H, lam_W):
    """The module's loss (scale and shape roots by brentq) equals (1) the model's own loss at the
    built θ and (2) the minimum over (β, z₀, z₁, z₂) of the explicit matrices' loss (Nelder–Mead
    here), both to 1e-12; along the overall scale of the built matrices (Z̄ → t·Z̄, factors
    rescaled), minimize_scalar finds t = 1 and the same loss."""
    spec = ModelSpec(K=K, n=n, d=K + 1, L=L, activation="relu", loss="mse", lam=4e-3, lam_H=lam_H, lam_W=lam_W)
    sol = srg_solution(spec)
    th = srg_point(spec, sol)
    model_loss = float(DeepUFM(spec).loss(torch.from_numpy(th)[None])[0])
    assert model_loss == pytest.approx(sol.loss, abs=1e-12)
    ref, x = _minimised_srg_loss(K, L, n, spec.lambdas)
    assert sol.loss == pytest.approx(ref, abs=1e-12)
    assert sol.beta == pytest.approx(x[0], abs=1e-6)
    r = triangular_r(K)
    lams = spec.lambdas
    one_d = minimize_scalar(lambda t: _explicit_loss(r, L, n, lams, sol.beta, t * sol.z), bounds=(0.9, 1.02),
                            method="bounded", options={"xatol": 1e-12})
    assert one_d.x == pytest.approx(1.0, abs=1e-6) and one_d.fun == pytest.approx(sol.loss, abs=1e-12)
    # ranks: pre-activation of the last hidden layer r, after ReLU K
    pre, post, _ = DeepUFM(spec).forward(torch.from_numpy(th)[None])
    assert np.linalg.matrix_rank(pre[-1][0].numpy(), tol=1e-9) == r
    assert np.linalg.matrix_rank(post[-1][0].numpy(), tol=1e-9) == K


def test_srg_beats_dnc_for_deep_nets_and_many_classes():
    """The statement of Súkeník et al. that low-rank beats DNC once the net is deep enough or the
    classes many enough, at λ = 0.004, n = 1, with both losses computed here (SRG by Nelder–Mead over
    the explicit matrices, DNC by Dang's γ equation): L = 4 beats DNC already at K = 6 and 10;
    L = 3 does not at K = 21 but does at K = 28. The module's comparison agrees."""
    lam = 4e-3
    for K, L, below in [(6, 4, True), (10, 4, True), (21, 3, False), (28, 3, True)]:
        srg, _ = _minimised_srg_loss(K, L, 1, lam)
        dnc = _dang_dnc_loss(K, L, 1, lam)
        assert bool(srg < dnc) is below, (K, L, srg, dnc)
        c = compare_with_dnc(_spec(K=K, L=L, n=1, lam=lam))
        assert c["srg_lower"] is below
        assert c["srg"]["loss"] == pytest.approx(srg, abs=1e-11) and c["dnc_loss"] == pytest.approx(dnc, abs=1e-12)
    assert member_dnc(_spec(K=10, L=4))[-1].loss == pytest.approx(_dang_dnc_loss(10, 4, 1, lam), abs=1e-13)


# ----- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw,needle", [
    (dict(K=9), "K=9 is invalid"), (dict(K=3), "K=3 is invalid"),
    (dict(activation="linear"), "activation='linear' is invalid"), (dict(loss="ce"), "loss='ce' is invalid"),
    (dict(L=2), "L=2 is invalid"),
])
def test_bad_input_is_refused_naming_the_field(kw, needle):
    base = dict(K=10, n=1, d=10, L=3, activation="relu", loss="mse", lam=4e-3)
    base.update(kw)
    base["d"] = max(base["d"], base["K"])
    spec = ModelSpec(**base)
    with pytest.raises(SpecError, match=needle):
        check_srg_spec(spec)
    with pytest.raises(SpecError, match=needle):
        srg_solution(spec)
    assert [k for k in range(2, 30) if is_srg_K(k)] == [6, 10, 15, 21, 28]


def test_too_large_lambda_has_no_srg_point():
    spec = _spec(K=10, L=3, lam=0.5)
    assert srg_solution(spec) is None
    with pytest.raises(SpecError, match="lambda"):
        srg_point(spec)


# ----- the CLI ------------------------------------------------------------------------------------
def test_theory_prints_the_srg_structure_beside_dnc(capsys):
    """`landscape theory` for a ReLU MSE member with triangular K: the SRG line after DNC, with the
    loss of the closed form and the comparison; in JSON under "srg"; a CE member says why not."""
    argv = ["theory", "--K", "10", "--n", "1", "--d", "30", "--L", "4", "--lambda", "0.004", "--activation", "relu",
            "--loss", "mse"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    sol = srg_solution(_spec(K=10, L=4, d=30))
    line = next(x for x in out.splitlines() if x.startswith("SRG"))
    assert "K = C(5,2)" in line and f"{sol.loss:.10f}" in line and "below DNC" in line
    assert out.index("DNC (OF hidden means)") < out.index("SRG")
    assert main(argv + ["--json"]) == 0
    import json

    d = json.loads(capsys.readouterr().out)
    assert d["srg"]["loss"] == pytest.approx(sol.loss, abs=1e-15) and d["srg"]["difference"] < 0
    assert main(argv[:-1] + ["ce"]) == 0
    assert "not derived here (loss='ce' is invalid" in capsys.readouterr().out
    assert main(["theory", "--K", "9", "--n", "1", "--L", "4", "--lambda", "0.004", "--activation", "relu",
                 "--loss", "mse"]) == 0
    assert "SRG" not in capsys.readouterr().out


def test_the_chain_rule_clarke_test_decides_the_deeper_srg_point():
    """L = 4, K = 6, n = 1, d = 7: the affine model (every other active entry off) reads a
    residual above 1e-3 at the SRG point, whose chain-rule image holds 0 (the test above, by the
    hull over the layers' slope products). The chain-rule test reaches ≤ 1e-10 with slopes in
    [0, 1], its generalised gradient equals the gradient written out here with those slopes
    (_grad_with_slopes) to 1e-13, and the analysis no longer calls the point not stationary."""
    from landscape.analysis.kinks import (ActiveSet, analyse_kinks, chain_rule_gradient, chained_clarke_multipliers,
                                          clarke_multipliers)

    spec = _spec(K=6, L=4, n=1, d=7)
    th = srg_point(spec)
    masks = [m.numpy() for m in _kink_masks(spec, th)]
    model = DeepUFM(spec)
    pre = [h[0].numpy() for h in model.forward(torch.from_numpy(th)[None])[0][1:]]
    aset = ActiveSet(masks, [(h > 0) & ~m for h, m in zip(pre, masks)], [0.0] * len(masks))
    affine = clarke_multipliers(spec, th, aset)
    assert affine.residual > 1e-3
    ch = chained_clarke_multipliers(spec, th, aset, affine)
    assert ch.chained and ch.residual <= 1e-10 and np.all((ch.s >= 0) & (ch.s <= 1))
    sizes = np.cumsum([0] + _slope_sizes(masks))
    slopes = [ch.s[sizes[l]:sizes[l + 1]] for l in range(len(masks))]
    written = _grad_with_slopes(spec, th, _kink_masks(spec, th), [torch.from_numpy(s) for s in slopes]).numpy()
    assert np.abs(chain_rule_gradient(spec, th, aset, slopes) - written).max() <= 1e-13
    assert np.linalg.norm(written) <= 1e-10
    rep = analyse_kinks(spec, th, aset)
    assert rep.kind != "not stationary" and rep.to_dict()["clarke_model"] == "chain rule"
