"""The hand-written Hessian-vector product of the layer-by-layer gradient (:meth:`DeepUFM._layers_hvp`):
the ReLU model (masks 1[h > 0] held fixed, ReLU'(0) = 0) and the linear model outside its
bottleneck form (L = 1 or n = 1), in numpy and in torch, against double back-propagation, central
differences of the gradient, symmetry and the independence of a batch's rows."""
import numpy as np
import pytest
import torch

from conftest import assert_close
from landscape.core.model import DeepUFM, ModelSpec
from oracles import hvp_autograd

#: every product computed in numpy (the CPU default at these sizes) and in torch (a GPU's path)
PATHS = pytest.mark.parametrize("host", [True, False], ids=["numpy", "torch"])


def _model(K, n, d, L, loss, act="relu", host=True, lam=3e-2, **kw):
    m = DeepUFM(ModelSpec(K=K, n=n, d=d, L=L, activation=act, loss=loss, lam=lam, **kw))
    assert not m._bottleneck and m.host_hvp   # the layer-by-layer product, in numpy by default
    m.host_hvp = host
    return m


def _points(m, B, seed, margin=1e-3, scale=0.7):
    """B random rows θ (B, P), each resampled until every pre-activation of its hidden layers is
    at least ``margin`` from the kink."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(500 * B):
        th = scale * torch.randn(1, m.P, generator=g, dtype=torch.float64)
        pre = m.forward(th)[0][1:]
        if not pre or min(float(h.abs().min()) for h in pre) > margin:
            rows.append(th)
            if len(rows) == B:
                return torch.cat(rows)
    raise RuntimeError("no points away from ReLU kinks")


def _masks(m, th):
    return [h > 0 for h in m.forward(th)[0][1:]]


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


@PATHS
@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.parametrize("L", [1, 2, 3, 4])
def test_relu_hvp_equals_double_backpropagation(host, loss, L):
    m = _model(4, 2, 5, L, loss, host=host)
    th = _points(m, 6, seed=10 * L)
    v = torch.randn(th.shape, generator=torch.Generator().manual_seed(L), dtype=torch.float64)
    hv, ref = m.hvp(th, v), hvp_autograd(m, th, v)
    assert hv.shape == th.shape and hv.dtype == torch.float64
    assert _rel(hv, ref) <= 1e-12, f"relative error {_rel(hv, ref):.2e}"
    for b in range(th.shape[0]):   # and row by row, each to its own scale
        assert_close(hv[b], ref[b], atol=1e-12 * float(ref[b].abs().max()), what=f"row {b}")


@PATHS
@pytest.mark.parametrize("K, n, d, L, loss", [(3, 2, 4, 1, "ce"), (4, 2, 5, 1, "mse"), (4, 1, 6, 2, "ce"),
                                              (3, 1, 5, 3, "mse"), (5, 1, 5, 4, "ce")])
def test_linear_model_outside_the_bottleneck_form_takes_the_same_product(host, K, n, d, L, loss):
    """L = 1 or n = 1: the linear model has no cheaper bottleneck form and is the layer-by-layer
    product without masks."""
    m = _model(K, n, d, L, loss, act="linear", host=host)
    th = torch.randn(5, m.P, generator=torch.Generator().manual_seed(K + d + L), dtype=torch.float64) * 0.7
    v = torch.randn_like(th)
    ref = hvp_autograd(m, th, v)
    assert _rel(m.hvp(th, v), ref) <= 1e-12


@PATHS
@pytest.mark.parametrize("L, n", [(1, 2), (2, 1), (3, 1)])
def test_linear_ce_without_weight_decay(host, L, n):
    """λ = 0 (CE): the gradient's data term is written without cancellation
    (:attr:`DeepUFM._separable_ce`); the product is still double back-propagation's."""
    m = _model(3, n, 4, L, "ce", act="linear", host=host, lam=0.0)
    assert m._separable_ce
    th = torch.randn(4, m.P, generator=torch.Generator().manual_seed(L), dtype=torch.float64)
    v = torch.randn_like(th)
    assert _rel(m.hvp(th, v), hvp_autograd(m, th, v)) <= 1e-12


@PATHS
@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.parametrize("L", [1, 2, 3, 4])
def test_relu_hvp_matches_central_differences_of_the_gradient(host, loss, L):
    """(∇L(θ + hv) − ∇L(θ − hv))/2h, h = 1e-6, at points whose masks are the same at θ ± hv."""
    m = _model(3, 2, 5, L, loss, host=host)
    th = _points(m, 4, seed=100 + L, margin=1e-2)
    v = torch.randn(th.shape, generator=torch.Generator().manual_seed(7 * L), dtype=torch.float64)
    v = v / v.norm(dim=1, keepdim=True)
    h = 1e-6
    for side in (th + h * v, th - h * v):
        assert all(bool((a == b).all()) for a, b in zip(_masks(m, side), _masks(m, th))), "a kink was crossed"
    fd = (m.grad(th + h * v) - m.grad(th - h * v)) / (2 * h)
    hv = m.hvp(th, v)
    for b in range(th.shape[0]):
        assert_close(hv[b], fd[b], atol=1e-6 * float(fd[b].abs().max()), what=f"HVP vs FD, row {b}")


@PATHS
@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.parametrize("L", [2, 3])
def test_relu_hvp_is_symmetric(host, loss, L):
    """vᵀHw = wᵀHv row by row, and the dense Hessian built from the products equals its transpose
    to round-off before it is symmetrised."""
    m = _model(4, 2, 5, L, loss, host=host)
    th = _points(m, 5, seed=200 + L)
    g = torch.Generator().manual_seed(L)
    v, w = (torch.randn(th.shape, generator=g, dtype=torch.float64) for _ in range(2))
    op = m.hvp_operator(th)
    vHw, wHv = (v * op(w)).sum(dim=1), (w * op(v)).sum(dim=1)
    scale = (v.norm(dim=1) * op(w).norm(dim=1)).clamp(min=1e-300)
    assert float(((vHw - wHv).abs() / scale).max()) <= 1e-13
    H = m.hvp_operator(th[:1]).dense(symmetrize=False)[0]
    assert_close(H, H.T, atol=1e-13 * float(H.abs().max()), what="dense Hessian vs its transpose")


@PATHS
@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_a_rows_product_does_not_depend_on_the_other_rows(host, loss):
    """Row b's H(θ_b)v_b is the same when the other rows' θ and v change (bit for bit: the same
    kernels on the same shapes) and when it is computed alone (to round-off)."""
    m = _model(4, 2, 6, 3, loss, host=host)
    th = _points(m, 6, seed=300)
    g = torch.Generator().manual_seed(1)
    v = torch.randn(th.shape, generator=g, dtype=torch.float64)
    hv = m.hvp(th, v)
    others = torch.arange(6) != 2
    th2, v2 = th.clone(), v.clone()
    th2[others] = _points(m, 5, seed=301)
    v2[others] = torch.randn(5, m.P, generator=g, dtype=torch.float64)
    assert torch.equal(m.hvp(th2, v2)[2], hv[2])
    for b in range(6):
        alone = m.hvp(th[b:b + 1], v[b:b + 1])[0]
        assert_close(hv[b], alone, atol=1e-14 * float(alone.abs().max()), what=f"row {b} in a batch vs alone")


@PATHS
@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_relu_hvp_with_row_lambdas(host, loss):
    """Per-row weight decay: each row's product is the one of the plain model with its λ, and
    double back-propagation's."""
    L = 3
    lams = torch.tensor([[3e-2] * (L + 1), [1e-3] * (L + 1), [0.5, 2e-2, 1e-4, 7e-3]], dtype=torch.float64)
    base = _model(4, 2, 5, L, loss, host=host)
    m = base.with_row_lambdas(lams)
    th = _points(base, 3, seed=400)
    v = torch.randn(th.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    hv = m.hvp(th, v)
    assert _rel(hv, hvp_autograd(m, th, v)) <= 1e-12
    for b in range(3):
        lb = lams[b].tolist()
        own = _model(4, 2, 5, L, loss, host=host, lam=lb[1], lam_H=lb[0], lam_W=tuple(lb[1:]))
        assert_close(hv[b], own.hvp(th[b:b + 1], v[b:b + 1])[0], atol=1e-13 * float(hv[b].abs().max()),
                     what=f"row {b}")


@PATHS
@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_on_a_kink_the_product_keeps_torchs_convention(host, loss):
    """At pre-activations exactly 0 (a zero column of H₁ puts a whole column of every hidden layer
    on the kink, and zeroed rows of W₁ put rows of h₂ there) the mask is 1[h > 0]: ReLU'(0) = 0, as
    in torch's autograd, whose double back-propagation the product equals there too."""
    m = _model(4, 2, 5, 3, loss, host=host)
    th = _points(m, 3, seed=500)
    F = m.factors(th)
    F[0][:, :, 3] = 0.0
    F[1][:, 1, :] = 0.0
    assert all(bool((h == 0).any()) for h in m.forward(th)[0][1:])
    v = torch.randn(th.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert _rel(m.hvp(th, v), hvp_autograd(m, th, v)) <= 1e-12


def test_relu_and_non_bottleneck_linear_models_do_not_use_autograd(monkeypatch):
    """The ReLU model and the linear model of L = 1 take the hand-written product, in numpy on the
    CPU at small sizes and in torch above HOST_HVP_PRODUCT multiply-adds; a subclass that replaces
    the data term (the λ = 0 margin flow) still gets double back-propagation."""
    from landscape.core import model as model_mod
    from landscape.study.lambda0 import MarginFlowUFM

    def refuse(self, theta):
        raise AssertionError("autograd used")

    for spec in (ModelSpec(K=4, n=2, d=8, L=3, activation="relu"), ModelSpec(K=4, n=2, d=8, L=1),
                 ModelSpec(K=4, n=2, d=8, L=2, activation="relu", loss="mse")):
        m = DeepUFM(spec)
        assert m.host_hvp
        th = torch.randn(2, m.P, dtype=torch.float64)
        with monkeypatch.context() as mp:
            mp.setattr(DeepUFM, "hvp_operator_autograd", refuse)
            m.hvp(th, th)
    assert not DeepUFM(ModelSpec(K=10, n=5, d=70, L=2, activation="relu")).host_hvp
    assert model_mod.HOST_HVP_PRODUCT > 8 * 8 * 8
    assert not DeepUFM(ModelSpec(K=4, n=2, d=8, L=3)).host_hvp   # the bottleneck form has its own
    flow = MarginFlowUFM(ModelSpec(K=3, n=1, d=4, L=1, lam=0.0))
    th = torch.randn(2, flow.P, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    v = torch.randn_like(th)
    assert torch.equal(flow.hvp(th, v), hvp_autograd(flow, th, v))
    if torch.cuda.is_available():
        assert not DeepUFM(ModelSpec(K=4, n=2, d=8, L=3, activation="relu"), device="cuda").host_hvp


def test_default_size_dense_hessian_matches_autograd():
    """The default study's ReLU size (K=4, n=2, d=8, L=3): the dense Hessian of one point, built
    from hand-written products, equals the one from double back-propagation."""
    m = DeepUFM(ModelSpec(K=4, n=2, d=8, L=3, activation="relu", lam=1e-3))
    th = _points(m, 1, seed=600, margin=1e-4)
    H = m.hessian(th[0])
    op = m.hvp_operator_autograd(th)
    Ha = torch.cat([op(e[None]) for e in torch.eye(m.P, dtype=torch.float64)])
    Ha = 0.5 * (Ha + Ha.T)
    assert_close(H, Ha, atol=1e-12 * float(Ha.abs().max()), what="dense Hessian")
    assert np.isfinite(H.numpy()).all()
