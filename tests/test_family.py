"""DNC of every member of the family ({linear, ReLU} × {CE, MSE}): closed forms against values
derived here (AM–GM over the factor norms, MODEL.md §9; Dang et al.'s γ equation, MODEL.md §6),
critical points of the model's own loss, and labelled DNC modulo the symmetries of MODEL.md §5."""
import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq, minimize_scalar

from landscape.analysis.family import frame_dnc_point, member_dnc, mse_dnc_scales
from landscape.analysis.structure import analyse_structure
from landscape.core.model import DeepUFM
from landscape.core.spec import ModelSpec
from oracles import grad_autograd

MEMBERS = [("relu", "ce"), ("linear", "mse"), ("relu", "mse")]


def _relu_ce_oracle(K, n, L, lam):
    """ReLU CE DNC at equal λ, derived in the test: hidden means a·e_c (orthogonal frame), W_l = b·I
    on the frame, W_L = c·S; ‖H₁‖² = a²Kn, ‖W_l‖² = b²K, ‖W_L‖² = c²(K−1), α = a·b^{L−1}·c. At equal
    λ‖F‖² (AM–GM) the penalty is (λ(L+1)/2)(α·√(Kn)·K^{(L−1)/2}·√(K−1))^{2/(L+1)}; minimise over α."""
    C = math.sqrt(K * n) * K ** ((L - 1) / 2) * math.sqrt(K - 1)
    f = lambda a: math.log1p((K - 1) * math.exp(-a)) + lam * (L + 1) / 2 * (a * C) ** (2 / (L + 1))  # noqa: E731
    r = minimize_scalar(f, bounds=(1.0, 60.0), method="bounded", options={"xatol": 1e-13})
    return r.x, r.fun


def test_relu_ce_dnc_matches_the_am_gm_closed_form_and_is_critical():
    """Default size (K=4, n=2, d=8, L=3, λ=1e-3): loss 0.0259035395 (the lowest point GD finds in
    the ReLU CE study), to 1e-12; ‖∇L‖ ≤ 1e-12 at the built point, hand-written and autograd."""
    spec = ModelSpec(K=4, n=2, d=8, L=3, lam=1e-3, activation="relu")
    a_ref, l_ref = _relu_ce_oracle(4, 2, 3, 1e-3)
    dnc = member_dnc(spec)[-1]
    assert dnc.geometry == "OF"
    assert dnc.scale == pytest.approx(a_ref, rel=1e-7)       # the scale sits at a flat minimum
    assert dnc.loss == pytest.approx(l_ref, abs=1e-12)
    assert dnc.loss == pytest.approx(0.0259035395, abs=1e-10)
    m = DeepUFM(spec)
    th = torch.tensor(frame_dnc_point(spec, dnc.scale))[None]
    loss, g = m.loss_and_grad(th)
    assert float(loss[0]) == pytest.approx(dnc.loss, abs=1e-13)
    assert float(g.norm()) <= 1e-12 and float(grad_autograd(m, th).norm()) <= 1e-12
    # the frame has no negative pre-activation: ReLU is the identity on it
    pre, _, _ = m.forward(th)
    assert all(float(h.min()) >= 0 for h in pre[1:])


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_mse_dnc_is_dangs_closed_form(activation):
    """MODEL.md §6's example (K=3, n=4, d=6, L=3, λ_W=5e-3, λ_H=1e-3): γ ≈ 0.985711426925799, loss
    ≈ 0.0282709011677, for the linear and the ReLU member alike; the root of Dang's equation is
    recomputed here with brentq; the built point is critical and its loss is the closed form."""
    K, n, L, lw, lh = 3, 4, 3, 5e-3, 1e-3
    rhs = (lw * K) ** L * (lh * K * n)
    g_ref = brentq(lambda g: g ** (L - 1) * (1 - g) ** (L + 1) - rhs, (L - 1) / (2 * L), 1 - 1e-15, xtol=1e-16)
    spec = ModelSpec(K=K, n=n, d=6, L=L, lam=1e-3, lam_W=lw, lam_H=lh, activation=activation, loss="mse")
    dnc = member_dnc(spec)[-1]
    assert dnc.scale == pytest.approx(g_ref, abs=1e-13) and dnc.scale == pytest.approx(0.985711426925799, abs=1e-12)
    assert dnc.loss == pytest.approx((1 - g_ref) ** 2 / 2 + (L + 1) / 2 * g_ref * (1 - g_ref), abs=1e-13)
    assert dnc.loss == pytest.approx(0.0282709011677, abs=1e-12)
    m = DeepUFM(spec)
    th = torch.tensor(frame_dnc_point(spec, dnc.scale))[None]
    loss, g = m.loss_and_grad(th)
    assert float(loss[0]) == pytest.approx(dnc.loss, abs=1e-13) and float(g.norm()) <= 1e-12


def test_mse_l1_scale_is_critical():
    """L = 1 (no γ^{L−1} factor): γ = 1 − √(λ_W K · λ_H K n), and the point is critical."""
    spec = ModelSpec(K=3, n=2, d=5, L=1, lam=2e-2, loss="mse")
    (g,) = mse_dnc_scales(spec)
    assert g == pytest.approx(1 - math.sqrt(2e-2 * 3 * 2e-2 * 3 * 2), abs=1e-14)
    m = DeepUFM(spec)
    assert float(m.grad(torch.tensor(frame_dnc_point(spec, g))[None]).norm()) <= 1e-13


def _symmetry_image(spec, theta, rng):
    """θ moved along the symmetries that survive the member (MODEL.md §5): class relabelling, an
    O(d) rotation of the H₁|W₁ interface, a permutation of the hidden units of every later interface
    (ReLU) or an O(d) rotation of it (linear)."""
    m = DeepUFM(spec)
    F = [f[0].numpy().copy() for f in m.factors(torch.tensor(theta)[None])]
    K, n, d = spec.K, spec.n, spec.d
    pc = rng.permutation(K)
    cols = np.concatenate([np.arange(c * n, (c + 1) * n) for c in pc])
    F[0] = F[0][:, cols]
    F[-1] = F[-1][pc]
    for i in range(spec.L):
        if i == 0 or spec.activation == "linear":
            Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
        else:
            Q = np.eye(d)[rng.permutation(d)]
        F[i] = Q @ F[i]
        F[i + 1] = F[i + 1] @ Q.T
    return np.concatenate([f.reshape(-1) for f in F])


@pytest.mark.parametrize("activation,loss", MEMBERS)
def test_member_dnc_is_labelled_dnc_with_its_geometry_under_every_symmetry(activation, loss):
    spec = ModelSpec(K=4, n=2, d=8, L=3, lam=1e-3, activation=activation, loss=loss)
    th = frame_dnc_point(spec, member_dnc(spec)[-1].scale)
    rng = np.random.default_rng(3)
    m = DeepUFM(spec)
    for k in range(4):
        t = th if k == 0 else _symmetry_image(spec, th, rng)
        assert float(m.loss(torch.tensor(t)[None])[0]) == pytest.approx(member_dnc(spec)[-1].loss, abs=1e-13)
        r = analyse_structure(spec, t)
        assert r.label == "DNC", (activation, loss, k)
        assert all(g == "OF" for nm, g in r.geometry.items() if nm != "Z")   # every hidden layer
        assert r.geometry["Z"] == ("ETF" if loss == "ce" else "OF")


def test_the_linear_ce_dnc_point_keeps_its_etf_geometry():
    import landscape.analysis.theory as T

    spec = ModelSpec(K=4, n=2, d=8, L=3, lam=1e-3)
    r = analyse_structure(spec, T.dnc_point(spec, T.dnc_scale_roots(4, 2, 3, 1e-3)[-1]))
    assert r.label == "DNC" and set(r.geometry.values()) == {"ETF"}


def test_an_mse_point_with_unequal_class_scales_is_not_dnc():
    """Z̄ = diag(γ₁ … γ_K) with unequal γ: every class a ``self`` block, but no orthogonal frame."""
    spec = ModelSpec(K=3, n=2, d=4, L=2, lam=1e-3, loss="mse")
    import landscape.analysis.theory as T

    r = analyse_structure(spec, T.balanced_point(spec, np.diag([0.9, 0.9, 0.5])))
    assert r.label != "DNC"


@pytest.mark.parametrize("r", [1, 2, 3, 4])
def test_linear_mse_rank_r_structures_in_any_class_rotation(r):
    """Z̄ = γ·U Uᵀ (U: r orthonormal columns drawn at random, γ Dang's root recomputed here): a
    critical point of the model's own loss with loss (K−r)/(2K) + (r/K)·((1−γ)²/2 + ((L+1)/2)·γ(1−γ))
    (derived here: r classes as in DNC, K−r null classes at 1/2 each); its symmetry orbit has
    dimension L(rd − r(r+1)/2) + r(K−r) (the gauge, and the class rotations moving U: the
    Grassmannian's r(K−r)), so no excess zero modes; two rotations are one point for the
    deduplication; the label is OF(r), DNC at r = K."""
    from scipy.stats import ortho_group

    import landscape.analysis.theory as T
    from landscape.analysis.dedup import fingerprints, same_point
    from landscape.analysis.family import mse_rank_structures
    from landscape.analysis.point import analyse_point
    from landscape.analysis.symmetry import symmetry_space

    K, n, d, L, lam = 4, 2, 8, 3, 1e-3
    spec = ModelSpec(K=K, n=n, d=d, L=L, lam=lam, loss="mse")
    rhs = (lam * K) ** L * (lam * K * n)
    g = brentq(lambda x: x ** (L - 1) * (1 - x) ** (L + 1) - rhs, (L - 1) / (2 * L), 1 - 1e-15, xtol=1e-16)
    want = (K - r) / (2 * K) + r / K * ((1 - g) ** 2 / 2 + (L + 1) / 2 * g * (1 - g))
    U1, U2 = (ortho_group.rvs(K, random_state=s)[:, :r] for s in (r, 10 + r))
    th1, th2 = (T.balanced_point(spec, g * U @ U.T) for U in (U1, U2))
    loss, grad = DeepUFM(spec).loss_and_grad(torch.from_numpy(th1)[None])
    assert float(loss[0]) == pytest.approx(want, abs=1e-13) and float(grad.norm()) <= 1e-12
    assert next(s["loss"] for s in mse_rank_structures(spec) if s["rank"] == r) == pytest.approx(want, abs=1e-13)
    assert symmetry_space(spec, th1).dimension == L * (r * d - r * (r + 1) // 2) + r * (K - r)
    a = analyse_point(spec, th1)
    assert a.hessian.excess_zero_modes == 0 and a.label == ("DNC" if r == K else f"OF({r})")
    f1, f2 = fingerprints(spec, np.stack([th1, th2]))
    assert same_point(f1, f2)


def test_the_class_rotation_is_a_symmetry_of_linear_mse_only():
    """H₁ → H₁(Qᵀ⊗I), W_L → QW_L for a random Q ∈ O(K): the linear MSE loss is unchanged (to
    round-off), the CE and ReLU losses are not."""
    from scipy.stats import ortho_group

    from landscape.analysis.symmetry import has_class_rotations

    Q = ortho_group.rvs(4, random_state=0)
    for act, loss in (("linear", "mse"), ("linear", "ce"), ("relu", "mse")):
        spec = ModelSpec(K=4, n=2, d=8, L=3, lam=1e-3, activation=act, loss=loss)
        th = np.random.default_rng(0).standard_normal(spec.P)
        F = [f.copy() for f in spec.split(th)]
        F[0], F[-1] = F[0] @ np.kron(Q.T, np.eye(2)), Q @ F[-1]
        th2 = np.concatenate([f.reshape(-1) for f in F])
        m = DeepUFM(spec)
        diff = abs(float(m.loss(torch.from_numpy(th)[None])[0] - m.loss(torch.from_numpy(th2)[None])[0]))
        assert (diff <= 1e-10) == has_class_rotations(spec) and (diff <= 1e-10) == (act == "linear" and loss == "mse")


def test_relu_dnc_is_judged_after_the_relu():
    """A ReLU CE DNC point whose first pre-activation carries a switched-off negative part
    (W₁ = b(I − R∘(11ᵀ − I)) on the frame, R random in [0.1, 0.5]: off-class entries < 0, so σ(H₂)
    is still the orthogonal frame): labelled DNC, σH₂ an orthogonal frame while H₂ is neither OF
    nor ETF (the rule before judged H₂ too and called it no DNC)."""
    spec = ModelSpec(K=4, n=2, d=8, L=3, lam=1e-3, activation="relu")
    th = frame_dnc_point(spec, member_dnc(spec)[-1].scale)
    F = [f.copy() for f in spec.split(th)]
    b = F[1][0, 0]
    R = np.random.default_rng(0).uniform(0.1, 0.5, (4, 4))   # unequal negative parts
    on_frame = np.eye(4) - R * (np.ones((4, 4)) - np.eye(4))
    F[1][:4, :4] = b * on_frame
    th2 = np.concatenate([f.reshape(-1) for f in F])
    r = analyse_structure(spec, th2)
    assert r.label == "DNC" and r.geometry["σH2"] == "OF" and r.geometry["H2"] is None
