"""The objective: validation, exact gradients and Hessian-vector products (finite differences)."""
import numpy as np
import pytest
import torch

from conftest import assert_close
from landscape.core.model import DeepUFM, ModelSpec, SpecError
from oracles import grad_autograd, hvp_autograd

CASES = [  # (K, n, d, L, activation, loss)
    (3, 2, 4, 1, "linear", "ce"),
    (4, 2, 5, 2, "linear", "ce"),
    (3, 3, 4, 3, "linear", "mse"),
    (4, 1, 6, 2, "relu", "ce"),
    (3, 2, 5, 3, "relu", "mse"),
    (5, 2, 5, 4, "linear", "ce"),
]


def _point(model, seed, relu_margin=2e-3):
    """A random θ (1, P); for ReLU resampled until every pre-activation is ≥ relu_margin from 0."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(200):
        th = torch.randn(1, model.P, generator=g, dtype=torch.float64)
        pre = model.forward(th)[0][1:]
        if not pre or min(float(h.abs().min()) for h in pre) > relu_margin:
            return th
    raise RuntimeError("no point away from ReLU kinks")


@pytest.mark.parametrize("case", CASES)
def test_gradient_matches_central_differences(case):
    K, n, d, L, act, loss = case
    m = DeepUFM(ModelSpec(K=K, n=n, d=d, L=L, activation=act, loss=loss, lam=3e-2))
    th = _point(m, seed=1)
    _, g = m.loss_and_grad(th)
    h = 1e-6
    E = torch.eye(m.P, dtype=torch.float64)
    fd = (m.loss(th + h * E) - m.loss(th - h * E)) / (2 * h)  # all P directions as one batch
    assert_close(g[0], fd, atol=1e-7, rtol=1e-6, what=f"grad vs FD {case}")
    assert_close(g, grad_autograd(m, th), atol=1e-13, rtol=1e-12, what="grad vs autograd")


@pytest.mark.parametrize("case", CASES)
def test_hvp_matches_central_differences_of_gradient(case):
    K, n, d, L, act, loss = case
    m = DeepUFM(ModelSpec(K=K, n=n, d=d, L=L, activation=act, loss=loss, lam=3e-2))
    th = _point(m, seed=2)
    v = torch.randn(1, m.P, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    h = 1e-5 if act == "linear" else 1e-7
    fd = (m.grad(th + h * v) - m.grad(th - h * v)) / (2 * h)
    hv = m.hvp(th, v)
    assert_close(hv, fd, atol=2e-6 * float(fd.abs().max()), what=f"HVP vs FD {case}")
    H = m.hessian(th[0])
    assert_close(H @ v[0], hv[0], atol=1e-11, what="dense Hessian vs HVP")
    assert_close(H, H.T, atol=0, what="symmetric")


def test_losses_follow_model_conventions():
    """Hand-computed objective at a tiny point: mean CE over class-ordered columns, λ/2 per factor."""
    spec = ModelSpec(K=2, n=2, d=2, L=1, lam=0.1)
    m = DeepUFM(spec)
    H1 = torch.tensor([[1.0, 2.0, 0.0, -1.0], [0.0, 1.0, 1.0, 0.5]])
    W1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    th = m.flatten([H1[None], W1[None]])
    Z = W1 @ H1
    y = torch.tensor([0, 0, 1, 1])  # class-ordered: sample index fastest
    ce = (torch.logsumexp(Z, 0) - Z[y, torch.arange(4)]).mean()
    expected = ce + 0.05 * (H1.pow(2).sum() + W1.pow(2).sum())
    assert_close(m.loss(th), expected, atol=1e-15, what="CE objective")
    mse = DeepUFM(ModelSpec(K=2, n=2, d=2, L=1, lam=0.1, loss="mse"))
    Y = torch.tensor([[1.0, 1, 0, 0], [0, 0, 1, 1]])
    assert_close(mse.loss(th), ((Z - Y) ** 2).sum() / 8 + 0.05 * (H1.pow(2).sum() + W1.pow(2).sum()),
                 atol=1e-15, what="MSE objective")


def test_relu_not_applied_to_features_or_logits():
    """With ReLU, L=1 is Z = W₁H₁ (no σ anywhere), and negative logits survive for L=2."""
    lin = DeepUFM(ModelSpec(K=3, n=2, d=3, L=1))
    relu = DeepUFM(ModelSpec(K=3, n=2, d=3, L=1, activation="relu"))
    th = torch.randn(2, lin.P, generator=torch.Generator().manual_seed(0))
    assert torch.equal(lin.loss(th), relu.loss(th))
    r2 = DeepUFM(ModelSpec(K=3, n=2, d=3, L=2, activation="relu"))
    th2 = torch.randn(1, r2.P, generator=torch.Generator().manual_seed(1))
    assert float(r2.logits(th2).min()) < 0


def test_per_factor_lambda():
    spec = ModelSpec(K=3, n=2, d=4, L=2, lam=1e-3, lam_H=2e-3, lam_W=(3e-3, 4e-3))
    assert spec.lambdas == (2e-3, 3e-3, 4e-3) and spec.lambda_convention == "per-factor"
    assert ModelSpec(K=3, n=2, d=4, L=2, lam_W=5e-3).lambdas == (1e-3, 5e-3, 5e-3)
    m = DeepUFM(spec)
    th = torch.randn(1, m.P, generator=torch.Generator().manual_seed(0))
    F = m.factors(th)
    reg = sum(0.5 * l * float((f ** 2).sum()) for l, f in zip(spec.lambdas, F))
    assert_close(float(m.reg_loss(th)), reg, rtol=1e-14, what="per-factor regulariser")


def test_rows_of_a_batch_are_independent():
    """A NaN row does not change the loss or gradient of any other row."""
    m = DeepUFM(ModelSpec(K=3, n=2, d=4, L=3))
    th = torch.randn(3, m.P, generator=torch.Generator().manual_seed(0))
    l0, g0 = m.loss_and_grad(th)
    th_bad = th.clone()
    th_bad[1, 5] = float("nan")
    l1, g1 = m.loss_and_grad(th_bad)
    assert torch.isnan(l1[1]) and torch.equal(l1[[0, 2]], l0[[0, 2]]) and torch.equal(g1[[0, 2]], g0[[0, 2]])


@pytest.mark.parametrize("kwargs, field", [
    (dict(K=1, n=2, d=4, L=1), "K"), (dict(K=3, n=0, d=4, L=1), "n"), (dict(K=3, n=2, d=2, L=1), "d"),
    (dict(K=3, n=2, d=4, L=0), "L"), (dict(K=3, n=2, d=4, L=1, lam=0.0, loss="mse"), "lambda"),
    (dict(K=3, n=2, d=4, L=1, lam=float("inf")), "lambda"), (dict(K=3, n=2, d=4, L=1, lam_H=-1), "lambda_H"),
    (dict(K=3, n=2, d=4, L=2, lam_W=(1e-3,)), "lambda_W"), (dict(K=3, n=2, d=4, L=1, activation="tanh"), "activation"),
    (dict(K=3, n=2, d=4, L=1, loss="hinge"), "loss"), (dict(K=3.5, n=2, d=4, L=1), "K"),
])
def test_bad_spec_names_the_field_and_range(kwargs, field):
    with pytest.raises(SpecError) as e:
        ModelSpec(**kwargs)
    msg = str(e.value)
    assert msg.startswith(field) and ("must" in msg)


@pytest.mark.parametrize("K, n, d, L, loss", [(10, 5, 12, 2, "ce"), (4, 2, 8, 3, "ce"), (3, 4, 6, 3, "mse"),
                                              (4, 2, 6, 4, "ce")])
def test_bottleneck_gradient_equals_the_layerwise_one_and_autograd(K, n, d, L, loss):
    """The linear model's gradient through the logits' K-row bottleneck (fewer flops when K < N)
    is the layer-by-layer gradient and the autograd gradient up to round-off."""
    spec = ModelSpec(K=K, n=n, d=d, L=L, lam=1e-3, lam_H=2e-3, loss=loss)
    m = DeepUFM(spec)
    assert m._bottleneck
    th = torch.tensor(np.random.default_rng(K + d).normal(size=(3, spec.P))) * 0.5
    la, ga = m._loss_and_grad_layers(th)
    lb, gb = m._loss_and_grad_bottleneck(th)
    np.testing.assert_allclose(lb.numpy(), la.numpy(), rtol=1e-14)
    np.testing.assert_allclose(gb.numpy(), ga.numpy(), rtol=0, atol=1e-13 * float(ga.abs().max()))
    np.testing.assert_allclose(gb.numpy(), grad_autograd(m, th).numpy(), rtol=0, atol=1e-13 * float(ga.abs().max()))


@pytest.mark.parametrize("case", CASES)
def test_one_theta_is_the_row_of_a_batch(case):
    """loss_and_grad of one θ (P,) gives a scalar and a (P,) gradient equal to that θ's row of a
    batch, whichever backward pass the model chose (bottleneck or layer by layer)."""
    K, n, d, L, act, loss = case
    m = DeepUFM(ModelSpec(K=K, n=n, d=d, L=L, activation=act, loss=loss, lam=3e-2))
    th = torch.cat([_point(m, seed=4), _point(m, seed=5)])
    lb, gb = m.loss_and_grad(th)
    l1, g1 = m.loss_and_grad(th[1])
    assert l1.dim() == 0 and g1.shape == (m.P,)
    assert_close(l1, lb[1], atol=1e-15, what="loss of one θ")
    assert_close(g1, gb[1], atol=1e-14, what="gradient of one θ")


# ----- per-row weight decay (the cells of a λ sweep as one batch) -------------------------------
@pytest.mark.parametrize("case", [CASES[1], CASES[2], CASES[3]], ids=["linear-ce", "linear-mse", "relu-ce"])
def test_row_lambdas_give_each_row_its_own_objective(case):
    """Row b of a model with per-row λ has the loss, gradient, Hessian-vector and Gauss–Newton
    products of the plain model built with λ_b: written here from the spec's own factors, the
    regulariser Σ_l ½λ_{b,l}‖F_l‖² added by hand to the λ-free data term."""
    K, n, d, L, act, loss = case
    lams = torch.tensor([[3e-2] * (L + 1), [1e-3] * (L + 1), [0.5, *([2e-2] * L)]], dtype=torch.float64)
    base = DeepUFM(ModelSpec(K=K, n=n, d=d, L=L, activation=act, loss=loss, lam=1e-3))
    m = base.with_row_lambdas(lams)
    th = torch.cat([_point(base, seed=s) for s in (3, 4, 5)])
    v = torch.randn(th.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    l_rows, g_rows = m.loss_and_grad(th)
    hv_rows, gn_rows = m.hvp(th, v), m.gauss_newton_vp(th, v)
    for b in range(3):
        lam_b = lams[b].tolist()
        own = DeepUFM(ModelSpec(K=K, n=n, d=d, L=L, activation=act, loss=loss, lam=lam_b[1], lam_H=lam_b[0],
                                lam_W=tuple(lam_b[1:])))
        data = float(own.data_loss(own.logits(th[b:b + 1]))[0])
        reg = sum(0.5 * lb * float((F ** 2).sum()) for lb, F in zip(lam_b, own.factors(th[b:b + 1])))
        assert float(l_rows[b]) == pytest.approx(data + reg, rel=1e-13)
        l_own, g_own = own.loss_and_grad(th[b:b + 1])
        assert_close(g_rows[b], g_own[0], atol=1e-13, rtol=1e-12, what=f"row {b} gradient")
        assert_close(hv_rows[b], own.hvp(th[b:b + 1], v[b:b + 1])[0], atol=1e-12, rtol=1e-11, what=f"row {b} HVP")
        assert_close(gn_rows[b], own.gauss_newton_vp(th[b:b + 1], v[b:b + 1])[0], atol=1e-12, rtol=1e-11,
                     what=f"row {b} GN")
    # and against central differences of the row's own loss, in every direction of row 0
    h, E = 1e-6, torch.eye(m.P, dtype=torch.float64)
    many = m.for_rows(torch.zeros(m.P, dtype=torch.long))   # row 0's λ, P times
    fd = (many.loss(th[:1] + h * E) - many.loss(th[:1] - h * E)) / (2 * h)
    assert_close(g_rows[0], fd, atol=1e-7, rtol=1e-6, what="row-λ grad vs FD")


def test_row_lambdas_refuse_what_does_not_fit():
    base = DeepUFM(ModelSpec(K=3, n=2, d=4, L=2, lam=1e-3))
    with pytest.raises(ValueError, match=r"must be \(B,\) or \(B, L\+1=3\)"):
        base.with_row_lambdas(torch.ones(2, 2))
    with pytest.raises(ValueError, match="finite numbers > 0"):
        base.with_row_lambdas([1e-3, 0.0])
    m = base.with_row_lambdas([1e-3, 2e-3])
    assert m.for_rows([1]).row_lambdas.tolist() == [[2e-3] * 3] and base.for_rows([0, 1]) is base
    with pytest.raises(ValueError, match="a batch of 3 rows given to a model with per-row λ for 2 rows"):
        m.loss_and_grad(torch.zeros(3, base.P, dtype=torch.float64))
    with pytest.raises(ValueError, match="take a model without per-row λ"):
        m.hessian(torch.zeros(base.P, dtype=torch.float64))


@pytest.mark.parametrize("host", [True, False], ids=["numpy", "torch"])
@pytest.mark.parametrize("K, n, d, L, loss, row_lam", [(4, 2, 8, 3, "ce", False), (3, 4, 6, 3, "mse", False),
                                                       (4, 2, 6, 4, "ce", True), (10, 5, 12, 2, "ce", True)])
def test_the_linear_gradient_and_hvp_are_the_same_in_numpy_and_torch(host, K, n, d, L, loss, row_lam):
    """The linear model's hand-written gradient and Hessian-vector product, computed in numpy or in
    torch (:attr:`DeepUFM.host_gradient`), equal autograd's gradient and double back-propagation
    through the loss written layer by layer, with one λ or per-row λ."""
    spec = ModelSpec(K=K, n=n, d=d, L=L, lam=1e-3, lam_H=2e-3, loss=loss)
    m = DeepUFM(spec)
    if row_lam:
        m = m.with_row_lambdas(torch.tensor([[3e-2] * (L + 1), [1e-3] * (L + 1), [0.5, *([2e-2] * L)]]))
    m.host_gradient = host
    rng = np.random.default_rng(K + d + L)
    th = torch.tensor(rng.normal(size=(3, spec.P))) * 0.5
    v = torch.tensor(rng.normal(size=(3, spec.P)))
    l, g = m.loss_and_grad(th)
    assert isinstance(g, torch.Tensor) and g.shape == th.shape and l.shape == (3,)
    assert_close(l, m.loss(th), atol=0, rtol=1e-13, what="loss")
    assert_close(g, grad_autograd(m, th), atol=1e-13 * float(g.abs().max()), what="gradient vs autograd")
    ref = hvp_autograd(m, th, v)
    assert_close(m.hvp(th, v), ref, atol=1e-13 * float(ref.abs().max()), what="HVP vs double backward")


def test_the_gradient_runs_in_numpy_only_where_every_product_is_tiny():
    """The default study's size (every product 256 multiply-adds) runs in numpy; the paper's
    (K=10, d=70, N=50), the ReLU model and a GPU model do not."""
    assert DeepUFM(ModelSpec(K=4, n=2, d=8, L=3)).host_gradient
    assert not DeepUFM(ModelSpec(K=10, n=5, d=70, L=3)).host_gradient
    assert not DeepUFM(ModelSpec(K=4, n=2, d=8, L=3, activation="relu")).host_gradient
    if torch.cuda.is_available():
        assert not DeepUFM(ModelSpec(K=4, n=2, d=8, L=3), device="cuda").host_gradient


def test_an_integral_float_is_an_integer_like_every_count_field():
    """K = 3.0 reads as 3 (as trajectories = 1e4 and stages.0.max_iter = 1e4 do); 3.5 is refused."""
    s = ModelSpec(K=3.0, n=2.0, d=4, L=1)
    assert (s.K, s.n) == (3, 2) and isinstance(s.K, int) and s.P == ModelSpec(K=3, n=2, d=4, L=1).P
