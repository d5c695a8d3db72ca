"""ReLU MSE structures made of class-private rank-one chains (landscape.analysis.family): the
'4×self' minima of the study big-relu-mse (K=4, n=2, d=8, L=3, λ=1e-3), where a class's two
samples go through separate units in the first one or two ReLU layers, and the structures that
leave samples unserved. Points are rebuilt here from explicit matrices with scales derived here
(AM–GM over each class's factor norms, a scalar root by brentq), then held to the model's own
loss, to Clarke stationarity on their kinks (MODEL.md §10) and to the closed forms."""
import math
import re

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

from landscape.analysis.family import (member_dnc, relu_mse_chains_loss, relu_mse_hexagon,
                                       relu_mse_hexagon_point, relu_mse_split_counts, relu_mse_split_loss,
                                       relu_mse_split_point)
from landscape.analysis.kinks import active_set, clarke_multipliers
from landscape.core.model import DeepUFM
from landscape.core.spec import ModelSpec

K, n, d, L, LAM = 4, 2, 8, 3, 1e-3
N = K * n
SPEC = ModelSpec(K=K, n=n, d=d, L=L, lam=LAM, activation="relu", loss="mse")
# Π_l m_l of one class (‖frame of factor l‖² at unit scale): DNC's class (2,1,1,1); split through
# layer 2 (two W₁ rows, two weights into the merging layer-3 unit): (2,2,2,1); split through layers
# 2 and 3 (merging in the output row): (2,2,2,2); one sample alone: (1,1,1,1)
P = {0: 2, 1: 8, 2: 16}

# losses stored by the study (GD from 256 starts, polished on kinks), per class split pattern
STUDY = {(0, 0, 0, 0): 0.009502316174032509, (1, 0, 0, 0): 0.010484646780834026,
         (2, 0, 0, 0): 0.011118704871803164, (1, 1, 0, 0): 0.011466977387635541,
         (1, 2, 0, 0): 0.012101035478604683, (1, 1, 1, 0): 0.012449307994437058,
         (2, 2, 0, 0): 0.012735093569573823, (1, 1, 2, 0): 0.013083366085406204,
         (1, 2, 2, 0): 0.01371742417637534, (2, 2, 2, 0): 0.014351482267344482}


def _chain_oracle(r, prod):
    """(γ, ℓ) of a rank-one chain on r samples with Π_l m_l = prod at equal λ, derived here:
    ℓ(γ) = r(1−γ)²/(2N) + 2λ(prod·γ²)^{1/4} (L+1 = 4 equal AM–GM terms); its stationary point
    −r(1−γ)/N + λ prod^{1/4} γ^{−1/2} = 0 in ((L−1)/(2L), 1) by brentq."""
    f = lambda g: r * (1 - g) ** 2 / (2 * N) + 2 * LAM * (prod * g * g) ** 0.25  # noqa: E731
    df = lambda g: -r * (1 - g) / N + LAM * prod ** 0.25 / math.sqrt(g)  # noqa: E731
    g = brentq(df, (L - 1) / (2 * L), 1 - 1e-15, xtol=1e-16, rtol=1e-15)
    return g, f(g)


def _build(splits, seed=0):
    """θ of the split structure, built here: class c's feature directions ±e_p (n = 2: the two
    samples' features opposite, so a split unit is strictly off on the other sample), its units in
    reverse order from the top of each layer, then a random rotation of the feature space (the
    H₁|W₁ gauge). Scales: λ m_l s_l² equal, Π s_l = γ."""
    H1, W1, W2, W3 = np.zeros((d, N)), np.zeros((d, d)), np.zeros((d, d)), np.zeros((K, d))
    feat, u2, u3 = 0, d - 1, d - 1
    for c, sp in enumerate(splits):
        m = [2, 1, 1, 1] if sp == 0 else ([2, 2, 2, 1] if sp == 1 else [2, 2, 2, 2])
        g, _ = _chain_oracle(n, P[sp])
        t = (g * g * LAM ** 4 * np.prod(m)) ** 0.25
        a, b, w, z = (math.sqrt(t / (LAM * mi)) for mi in m)
        i0, i1 = c * n, c * n + 1
        if sp == 0:
            H1[feat, [i0, i1]] = a
            W1[u2, feat] = b
            W2[u3, u2] = w
            W3[c, u3] = z
            u2, u3 = u2 - 1, u3 - 1
        else:
            H1[feat, i0], H1[feat, i1] = a, -a
            W1[u2, feat], W1[u2 - 1, feat] = b, -b          # unit u2 on for i0, u2−1 for i1
            if sp == 1:
                W2[u3, [u2, u2 - 1]] = w
                W3[c, u3] = z
                u3 -= 1
            else:
                W2[u3, u2], W2[u3 - 1, u2 - 1] = w, w
                W3[c, [u3, u3 - 1]] = z
                u3 -= 2
            u2 -= 2
        feat += 1
    O = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))[0]
    return SPEC.join([O @ H1, W1 @ O.T, W2, W3])


def _loss_with_slopes(t, slopes, spec=SPEC):
    """The model's loss, computed here, with ReLU'(0) = slopes (one (d, N) tensor per ReLU layer)
    at entries exactly 0: σ(h) = h·(1[h > 0] + slopes·1[h = 0]) has that derivative at 0."""
    H1, W1, W2, W3 = _factors(t, spec)
    x = H1
    for k, W in enumerate((W1, W2)):
        h = W @ x
        x = h * ((h > 0).double() + slopes[k] * (h == 0).double())
    Z = W3 @ x
    Y = torch.kron(torch.eye(K, dtype=torch.float64), torch.ones(1, n, dtype=torch.float64))
    return ((Z - Y) ** 2).sum() / (2 * N) + 0.5 * sum(lam * (f * f).sum() for lam, f in zip(spec.lambdas, (H1, W1, W2, W3)))


def _factors(t, spec=SPEC):
    out, k = [], 0
    for r, c in spec.shapes:
        out.append(t[k:k + r * c].reshape(r, c))
        k += r * c
    return out


def _slopes(aset, s):
    out, k = [], 0
    for a in aset.active:
        x = np.zeros(a.shape)
        x[a] = s[k:k + int(a.sum())]
        k += int(a.sum())
        out.append(torch.from_numpy(x))
    return out


def test_chain_closed_forms_match_the_study_and_the_oracle():
    """Every '4×self' loss of the study is Σ_c ℓ(split_c), to 1e-10 (stored) and 1e-13 (oracle);
    DNC is split (0,0,0,0); the excess over DNC is additive, Δ₁ = 9.8233e-4, Δ₂ = 1.61639e-3."""
    for splits, stored in STUDY.items():
        ref = sum(_chain_oracle(n, P[s])[1] for s in splits)
        assert relu_mse_split_loss(SPEC, splits) == pytest.approx(ref, abs=1e-13)
        assert relu_mse_split_loss(SPEC, splits) == pytest.approx(stored, abs=1e-10)
    assert relu_mse_split_loss(SPEC, (0,) * K) == pytest.approx(member_dnc(SPEC)[-1].loss, abs=1e-15)
    d1 = relu_mse_split_loss(SPEC, (1, 0, 0, 0)) - relu_mse_split_loss(SPEC, (0,) * K)
    d2 = relu_mse_split_loss(SPEC, (2, 0, 0, 0)) - relu_mse_split_loss(SPEC, (0,) * K)
    assert d1 == pytest.approx(9.823306068e-4, abs=1e-12) and d2 == pytest.approx(1.6163886978e-3, abs=1e-12)
    assert [int(np.prod(relu_mse_split_counts(SPEC, s))) for s in (0, 1, 2)] == [2, 8, 16]


def test_structures_with_unserved_samples_match_the_study():
    """A class with one sample served alone (Π m = 1) and the other at logits 0, a null class, and a
    rank-one chain shared by one sample of each of two classes (one effective sample + one unit of
    target mass unserved): the study's 'other' points, to 1e-10 (point 11, unconverged: 3.2e-12)."""
    one, dnc = (1, (1, 1, 1, 1)), (2, relu_mse_split_counts(SPEC, 0))
    p8, p16 = (2, relu_mse_split_counts(SPEC, 1)), (2, relu_mse_split_counts(SPEC, 2))
    c1 = _chain_oracle(1, 1)[1]
    cases = [([one, dnc, dnc, dnc], 1, 0.0716227210042908), ([dnc, p8, one, dnc], 1, 0.0726050516079653),
             ([p8, dnc, p8, one], 1, 0.0735873822147668), ([p16, p8, one, dnc], 1, 0.07422144030573595),
             ([one, dnc, dnc, one], 2, 0.13374312582829503), ([one, dnc, dnc], 3, 0.19424714195765566)]
    for chains, unserved, stored in cases:
        assert relu_mse_chains_loss(SPEC, chains, unserved) == pytest.approx(stored, abs=1e-10)
    dnc_class = _chain_oracle(2, 2)[1]
    assert relu_mse_chains_loss(SPEC, [one, dnc, dnc, dnc], 1) == pytest.approx(3 * dnc_class + c1 + 1 / 16, abs=1e-13)


@pytest.mark.parametrize("splits", [(0, 0, 0, 0), (1, 0, 0, 0), (2, 0, 0, 0), (1, 2, 2, 0), (1, 1, 1, 1)])
def test_split_points_are_clarke_stationary_with_the_closed_form_loss(splits):
    """The point built here (and the family's builder, obtuse and on-kink variants) has the model's
    loss equal to the closed form to 1e-12, is Clarke-stationary on its kinks (residual ≤ 1e-10,
    multipliers in [0, 1]) and the autograd gradient of the loss through a ReLU with those slopes
    at 0, and with slope 0 (torch's convention), vanishes to 1e-10."""
    cf = relu_mse_split_loss(SPEC, splits)
    model = DeepUFM(SPEC)
    for th in (_build(splits), relu_mse_split_point(SPEC, splits), relu_mse_split_point(SPEC, splits, obtuse=False)):
        assert float(model.loss(torch.tensor(th)[None])[0]) == pytest.approx(cf, abs=1e-12)
        aset = active_set(SPEC, th)
        cl = clarke_multipliers(SPEC, th, aset)
        assert cl.residual <= 1e-10 and np.all((cl.s >= 0) & (cl.s <= 1))
        for s in (cl.s, np.zeros(aset.size)):
            t = torch.from_numpy(th).requires_grad_(True)
            g = torch.autograd.grad(_loss_with_slopes(t, _slopes(aset, s)), t)[0]
            assert float(g.norm()) <= 1e-10
        assert float(_loss_with_slopes(torch.from_numpy(th), _slopes(aset, cl.s))) == pytest.approx(cf, abs=1e-12)


def test_a_class_split_through_both_layers_has_a_one_sided_descent():
    """Split 2 (separate units in both ReLU layers) is no minimum: the layer-3 unit of one sample
    sits at a kink on the other sample with outgoing signal W₃[c, v](γ−1)/N < 0, and the weight
    joining it to the other sample's layer-2 unit (decay only, 0 at the point) lowers the loss at
    first order on its positive side — towards split 1. Rate −z·w(1−γ)/N·(a·b), checked here."""
    th = _build((2, 0, 0, 0))
    H1, W1, W2, W3 = (f.copy() for f in SPEC.split(th))
    v0, v1 = d - 1, d - 2                 # class 0's layer-3 units (samples 0, 1)
    u1 = d - 2                            # sample 1's layer-2 unit
    base = float(DeepUFM(SPEC).loss(torch.tensor(th)[None])[0])
    g, _ = _chain_oracle(n, 16)
    a2 = float(np.maximum(W1 @ H1, 0)[u1, 1])
    rate = W3[0, v0] * (g - 1) / N * a2
    assert rate < 0
    for eps in (1e-5, 1e-6):
        W2e = W2.copy()
        W2e[v0, u1] = eps
        up = float(DeepUFM(SPEC).loss(torch.tensor(SPEC.join([H1, W1, W2e, W3]))[None])[0])
        assert (up - base) / eps == pytest.approx(rate, rel=1e-3)
    assert W2[v1, u1] > 0


def _hexagon_build(lams, seed=1):
    """The hexagon point built here (classes 0–2; class 3 a DNC chain), from the derivation in
    relu_mse_hexagon's docstring redone here: ε from ε²(5 − 9ε) = 2√6K²√Πλ by brentq, b = 1 − 2ε,
    z₁ = 1 − ε, Y = z₁/2 + 2b, T = (6ΠλY²)^{1/4}; features ±ρ(cos, sin)(2πa/3 + φ) at a random
    offset φ, units ±ω·(the perpendicular); layer-3 class means Q = a random rotation-free
    nonnegative square root G^{1/2} of G = diag-plus-constant; W₃ = Z̄Q⁻¹. Class 3 goes through
    the last coordinates/units in reverse."""
    lH, l1, l2, l3 = lams
    eps = brentq(lambda e: e * e * (5 - 9 * e) - 2 * math.sqrt(6) * K * K * math.sqrt(lH * l1 * l2 * l3),
                 1e-12, 10 / 27, xtol=1e-18, rtol=1e-15)
    b, z1 = 1 - 2 * eps, 1 - eps
    Yn = z1 / 2 + 2 * b
    T = (6 * lH * l1 * l2 * l3 * Yn * Yn) ** 0.25
    rho, om = math.sqrt(T / (3 * lH)), math.sqrt(T / (3 * l1))
    t = rho * om * math.sqrt(3) / 2
    S = l3 * Yn * Yn / (2 * T)
    p, g1 = b * S / Yn, 2 * z1 * S / Yn
    Jm, I3 = np.ones((3, 3)), np.eye(3)
    Q = math.sqrt(p) * I3 + (math.sqrt(g1) - math.sqrt(p)) / 3 * Jm
    assert Q.min() > 0
    beta = Q @ (Jm / 2 - I3) / t
    phi = np.random.default_rng(seed).uniform(0, 2 * math.pi)
    H1, W1, W2, W3 = np.zeros((d, N)), np.zeros((d, d)), np.zeros((d, d)), np.zeros((K, d))
    for a in range(3):
        ang = 2 * math.pi * a / 3 + phi
        v, w = rho * np.array([math.cos(ang), math.sin(ang)]), om * np.array([-math.sin(ang), math.cos(ang)])
        H1[:2, 2 * a], H1[:2, 2 * a + 1] = v, -v
        W1[2 * a, :2], W1[2 * a + 1, :2] = w, -w
        W2[:3, 2 * a] = W2[:3, 2 * a + 1] = beta[:, a]
    W3[:3, :3] = ((1 - 2 * eps) * I3 + eps / 3 * Jm) @ np.linalg.inv(Q)
    # class 3: a DNC chain with Π m = 2, scales from λ_l m_l s_l² = t₃ equal
    m = [2, 1, 1, 1]
    rhs = (N / n) ** (L + 1) * np.prod([lam * mi for lam, mi in zip(lams, m)])
    g3 = brentq(lambda g: (L - 1) * math.log(g) + (L + 1) * math.log1p(-g) - math.log(rhs), (L - 1) / (2 * L), 1 - 1e-16)
    t3 = (g3 * g3 * np.prod([lam * mi for lam, mi in zip(lams, m)])) ** 0.25
    s0, s1, s2, s3 = (math.sqrt(t3 / (lam * mi)) for lam, mi in zip(lams, m))
    H1[d - 1, 6:8], W1[d - 1, d - 1], W2[d - 1, d - 1], W3[3, d - 1] = s0, s1, s2, s3
    return np.concatenate([f.reshape(-1) for f in (H1, W1, W2, W3)]), eps


@pytest.mark.parametrize("lams", [(LAM,) * 4, (2e-3, 5e-4, 1e-3, 3e-3)])
def test_the_hexagon_point_is_clarke_stationary_with_the_closed_form_loss(lams):
    """Three classes sharing six layer-2 units (the study's 'other' minimum at 0.012256343426836,
    point 13, unconverged by 4.4e-14): built here, its loss is relu_mse_hexagon's closed form to
    1e-12 (and the study's to 1e-10 at equal λ), Clarke-stationary (residual ≤ 1e-10), autograd
    gradient with the Clarke slopes and with slope 0 ≤ 1e-10; the family's builder agrees."""
    spec = ModelSpec(K=K, n=n, d=d, L=L, lam=lams[0], lam_W=tuple(lams[1:]), activation="relu", loss="mse")
    th, eps = _hexagon_build(lams)
    hx = relu_mse_hexagon(spec)
    assert hx["eps"] == pytest.approx(eps, rel=1e-12)
    model = DeepUFM(spec)
    for x in (th, relu_mse_hexagon_point(spec)):
        assert float(model.loss(torch.tensor(x)[None])[0]) == pytest.approx(hx["loss"], abs=1e-12)
        aset = active_set(spec, x)
        cl = clarke_multipliers(spec, x, aset)
        assert cl.residual <= 1e-10
        for s in (cl.s, np.zeros(aset.size)):
            t = torch.from_numpy(x).requires_grad_(True)
            g = torch.autograd.grad(_loss_with_slopes(t, _slopes(aset, s), spec), t)[0]
            assert float(g.norm()) <= 1e-10
    if lams == (LAM,) * 4:
        assert hx["loss"] == pytest.approx(0.01225634342683646, abs=1e-10)
        assert hx["delta"] == pytest.approx(1.3245406027e-3, abs=1e-12)


@pytest.mark.parametrize("splits", [(1, 0, 2, None), (2, 1, 0, 1)])
def test_split_points_with_per_factor_decay_are_critical(splits):
    """Per-factor λ (λ_H = 2e-3, λ_W = (5e-4, 1e-3, 3e-3)) and a null class: the family's point is
    critical for the model's loss (slope 0 at the kinks, the model's own gradient) with the closed
    form loss to 1e-12; the loss is Σ_c of per-class terms computed here from Dang's equation with
    G_c² = K⁴Π λ_l m_l (null class: n/(2N))."""
    spec = ModelSpec(K=K, n=n, d=d, L=L, lam=2e-3, lam_W=(5e-4, 1e-3, 3e-3), activation="relu", loss="mse")
    ref = 0.0
    for sp in splits:
        if sp is None:
            ref += n / (2 * N)
            continue
        m = [2, 1, 1, 1] if sp == 0 else ([2, 2, 2, 1] if sp == 1 else [2, 2, 2, 2])
        G2 = K ** (L + 1) * np.prod([lam * mi for lam, mi in zip(spec.lambdas, m)])
        g = brentq(lambda x: x ** (L - 1) * (1 - x) ** (L + 1) - G2, (L - 1) / (2 * L), 1 - 1e-16, xtol=1e-17)
        ref += (n / N) * ((1 - g) ** 2 / 2 + (L + 1) / 2 * g * (1 - g))
    assert relu_mse_split_loss(spec, splits) == pytest.approx(ref, abs=1e-13)
    th = torch.tensor(relu_mse_split_point(spec, splits))[None]
    loss, grad = DeepUFM(spec).loss_and_grad(th)
    assert float(loss[0]) == pytest.approx(ref, abs=1e-12) and float(grad.norm()) <= 1e-10


@pytest.mark.parametrize("K_, n_, d_, L_", [(3, 3, 9, 2), (3, 2, 8, 4), (2, 4, 10, 3)])
def test_split_points_are_critical_at_other_sizes(K_, n_, d_, L_):
    """Every split pattern that fits in d (n > 2: the class's features a regular simplex, pairwise
    cosine −1/(n−1)) is critical for the model's loss (slope 0 at the kinks) with the closed-form
    loss to 1e-12; all-zero splits are DNC (member_dnc); a pattern needing more than d units is
    refused."""
    import itertools
    spec = ModelSpec(K=K_, n=n_, d=d_, L=L_, lam=1e-3, activation="relu", loss="mse")
    model = DeepUFM(spec)
    built = 0
    for splits in itertools.product(range(L_), repeat=K_):
        try:
            th = relu_mse_split_point(spec, splits)
        except ValueError:
            assert sum(n_ - 1 for s in splits if s >= 1) > d_ - K_
            continue
        loss, grad = model.loss_and_grad(torch.tensor(th)[None])
        assert float(loss[0]) == pytest.approx(relu_mse_split_loss(spec, splits), abs=1e-12)
        assert float(grad.norm()) <= 1e-10
        built += 1
    assert built >= 2
    assert relu_mse_split_loss(spec, (0,) * K_) == pytest.approx(member_dnc(spec)[-1].loss, abs=1e-14)


def test_a_layer_2_split_needs_obtuse_features():
    """Split 1 with orthogonal features (the two samples' layer-2 units at a kink on each other's
    sample) has a one-sided descent: moving sample 1's feature towards unit 0's row; with the
    obtuse features the same move raises the loss at second order only (the entry is strictly
    off). Same loss either way."""
    model = DeepUFM(SPEC)
    rates = {}
    for obtuse in (False, True):
        th = relu_mse_split_point(SPEC, (1, 0, 0, 0), obtuse=obtuse)
        H1, W1, W2, W3 = SPEC.split(th)
        base = float(model.loss(torch.tensor(th)[None])[0])
        eps = 1e-6
        H = H1.copy()
        H[:, 1] += eps * W1[0] / np.linalg.norm(W1[0])
        rates[obtuse] = (float(model.loss(torch.tensor(SPEC.join([H, W1, W2, W3]))[None])[0]) - base) / eps
    assert rates[False] < -5e-4
    assert 0 <= rates[True] < 1e-5


def test_theory_prints_the_split_excesses_of_relu_mse(capsys):
    """`landscape theory --preset relu-mse` lists Δ₁ and Δ₂, the excess over DNC of a class split
    through one and two ReLU layers, equal to the chain oracle written here (Π m = n³ and n⁴
    against DNC's n, the same r = n samples) to 1e-12, and marks split 2 as a saddle."""
    from landscape.cli import main

    assert main(["theory", "--preset", "relu-mse"]) == 0
    out = capsys.readouterr().out
    printed = {int(m.group(1)): float(m.group(2)) for m in re.finditer(r"split (\d): Δ_\d = ([0-9.e+-]+)", out)}
    dnc = _chain_oracle(n, n)[1]
    for s, prod in ((1, n ** 3), (2, n ** 4)):
        assert printed[s] == pytest.approx(_chain_oracle(n, prod)[1] - dnc, abs=1e-12)
    assert "split 2: Δ_2" in out and "a saddle" in out.split("split 2:")[1].splitlines()[0]
