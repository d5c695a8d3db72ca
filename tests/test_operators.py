"""Curvature operators (landscape.core.operators): the algebra (``@``, ``.T``), the one dense
builder against the builders it replaced, finite differences and autograd, the Gauss–Newton
operator against Jᵀ∇²g J from autograd, and the gauge projector's algebra."""
import numpy as np
import pytest
import torch

from conftest import assert_close
from landscape.analysis.hessian import dense_hessian, hessian_matmat
from landscape.core.gauge import GaugeProjector
from landscape.core.model import DeepUFM, ModelSpec
from landscape.core.operators import (ComposedOperator, CurvatureOperator, GaugeProjectorOperator,
                                      GaussNewtonOperator, HessianOperator)

CASES = [  # (K, n, d, L, activation, loss): the bottleneck (numpy) path, autograd ones, CE and MSE
    (3, 2, 4, 2, "linear", "ce"),
    (3, 2, 4, 1, "linear", "mse"),
    (3, 2, 4, 3, "relu", "ce"),
    (4, 1, 5, 2, "relu", "mse"),
]


def _model(case, lam=3e-2):
    K, n, d, L, act, loss = case
    return DeepUFM(ModelSpec(K=K, n=n, d=d, L=L, activation=act, loss=loss, lam=lam))


def _points(m, B, seed, relu_margin=2e-3):
    """B random θ (B, P), every ReLU pre-activation ≥ relu_margin from 0 (finite differences)."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    while len(rows) < B:
        th = torch.randn(1, m.P, generator=g, dtype=torch.float64)
        pre = m.forward(th)[0][1:]
        if not pre or min(float(h.abs().min()) for h in pre) > relu_margin:
            rows.append(th)
    return torch.cat(rows)


def _replaced_dense_hessian(m, th, chunk=256):
    """The builder DeepUFM.hessian and analysis.hessian.dense_hessian used before the operators:
    chunks of unit vectors through the HVP of θ expanded, stacked, symmetrised."""
    P = th.numel()
    eye = torch.eye(P, dtype=th.dtype)
    cols = [m._hvp_function(th.reshape(1, -1).expand(min(chunk, P - j), P).contiguous())(eye[j:j + chunk])
            for j in range(0, P, chunk)]
    H = torch.cat(cols, dim=0)
    return 0.5 * (H + H.T)


def _replaced_dense_gauss_newton(m, th, chunk=256):
    """The Gauss–Newton builder of analysis.spectrum before the operators (one forward per product)."""
    P, N = th.numel(), m.spec.N
    eye = torch.eye(P, dtype=th.dtype)
    out = []
    for j in range(0, P, chunk):
        t = th.reshape(1, -1).expand(min(chunk, P - j), P)
        v = eye[j:j + chunk]
        JV = m.logits_jvp(t, v)
        if m.spec.loss == "ce":
            p = torch.softmax(m.logits(t), dim=1)
            U = (p * JV - p * (p * JV).sum(dim=1, keepdim=True)) / N
        else:
            U = JV / N
        out.append(m.logits_vjp(t, U) + m._lam_of_rows(t.shape[0]) * v)
    G = torch.cat(out).numpy()
    return 0.5 * (G + G.T)


@pytest.mark.parametrize("case", CASES)
def test_the_dense_builder_gives_the_replaced_builders_numbers_and_finite_differences(case):
    """``.dense()`` of the Hessian is bit for bit the builder it replaced (also through
    DeepUFM.hessian and analysis.hessian.dense_hessian, and with chunks smaller than P), and
    agrees with central differences of the gradient and with autograd's Hessian of the loss."""
    m = _model(case)
    th = _points(m, 1, seed=5)
    old = _replaced_dense_hessian(m, th[0])
    H = m.hvp_operator(th).dense()
    assert H.shape == (1, m.P, m.P)
    assert torch.equal(H[0], old)
    assert torch.equal(m.hessian(th[0]), old)
    assert np.array_equal(dense_hessian(m.spec, th[0]), old.numpy())
    assert torch.equal(m.hvp_operator(th).dense(chunk=7)[0], _replaced_dense_hessian(m, th[0], chunk=7))
    h = 1e-5 if case[4] == "linear" else 1e-7
    E = torch.eye(m.P, dtype=torch.float64)
    fd = (m.grad(th + h * E) - m.grad(th - h * E)) / (2 * h)          # row j: H e_j
    assert_close(H[0], 0.5 * (fd + fd.T), atol=2e-6 * float(fd.abs().max()), what=f"dense vs FD {case}")
    auto = torch.autograd.functional.hessian(lambda x: m.loss(x[None])[0], th[0])
    assert_close(H[0], auto, atol=1e-12 * float(auto.abs().max()), what="dense vs autograd")


@pytest.mark.parametrize("case", CASES[:3])
def test_a_batch_of_rows_gives_each_row_its_own_dense_matrix_and_matmat_is_the_dense_product(case):
    """B rows (with per-row λ): row b of ``.dense()`` is the Hessian of row b's own model, at every
    chunk size; ``matmat`` of one row is the dense product; ``hessian_matmat`` is that ``matmat``."""
    m = _model(case)
    th = _points(m, 3, seed=6)
    lam = torch.tensor([1e-2, 3e-2, 1e-1])
    mr = m.with_row_lambdas(lam)
    for chunk in (256, 5, 1):
        D = mr.hvp_operator(th).dense(chunk=chunk)
        for b in range(3):
            own = _model(case, lam=float(lam[b]))
            assert_close(D[b], own.hessian(th[b]), atol=1e-13, what=f"row {b} chunk {chunk}")
    V = torch.randn(m.P, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    op = m.hvp_operator(th[:1])
    assert_close(op.matmat(V, chunk=4), op.dense(symmetrize=False)[0] @ V, atol=1e-13, what="matmat")
    assert torch.equal(hessian_matmat(m.spec, th[0], chunk=4)(V), op.matmat(V, chunk=4))


@pytest.mark.parametrize("case", CASES)
def test_gauss_newton_is_jacobian_transpose_loss_hessian_jacobian_from_autograd(case):
    """G = Jᵀ (∇²_Z g) J + diag(λ) with J the autograd Jacobian of the logits and ∇²_Z g autograd's
    Hessian of the data loss in Z; ``.dense()`` is bit for bit the builder it replaced, and
    ``gauss_newton_vp`` is the operator applied."""
    m = _model(case)
    th = _points(m, 2, seed=7)
    G = m.gauss_newton_operator(th)
    assert isinstance(G, GaussNewtonOperator) and G.T is G
    D = G.dense()
    K, N = m.spec.K, m.spec.N
    for b in range(2):
        J = torch.autograd.functional.jacobian(lambda x: m.logits(x[None])[0], th[b]).reshape(K * N, m.P)
        Z = m.logits(th[b:b + 1])[0]
        Hz = torch.autograd.functional.hessian(lambda z: m.data_loss(z.reshape(1, K, N))[0], Z).reshape(K * N, K * N)
        ref = J.T @ Hz @ J + torch.diag(m._lam_vec)
        assert_close(D[b], ref, atol=1e-12 * float(ref.abs().max()), what=f"GN row {b} {case}")
        assert np.array_equal(m.gauss_newton_operator(th[b:b + 1]).dense()[0].numpy(),
                              _replaced_dense_gauss_newton(m, th[b]))
    v = torch.randn(2, m.P, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert torch.equal(m.gauss_newton_vp(th, v), G @ v)


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_the_gauge_projector_is_symmetric_idempotent_and_composes_with_the_hessian(activation):
    """P is symmetric and idempotent, its trace is P − rank; ``P @ H @ P`` is applied lazily and its
    dense matrix is the product of the dense ones to 1e-12; the transpose of a composition is the
    reversed composition; repeating a projector's rows repeats it, with nothing recomputed."""
    m = DeepUFM(ModelSpec(K=3, n=2, d=4, L=3, activation=activation, lam=1e-2))
    th = _points(m, 2, seed=8)
    Pr = GaugeProjectorOperator(m, th)
    Dp = Pr.dense(symmetrize=False)
    assert Pr.T is Pr and Pr.symmetric
    assert_close(Dp, Dp.transpose(1, 2), atol=1e-14, what="Pᵀ = P")
    assert_close(Dp @ Dp, Dp, atol=1e-13, what="P² = P")
    assert_close(torch.diagonal(Dp, dim1=1, dim2=2).sum(1), m.P - Pr.rank.double(), atol=1e-11, what="trace")
    H = m.hvp_operator(th)
    assert isinstance(H, HessianOperator) and H.T is H
    PHP = Pr @ H @ Pr
    assert isinstance(PHP, ComposedOperator) and len(PHP.ops) == 3 and PHP.symmetric
    dense_product = Dp @ H.dense() @ Dp
    scale = float(dense_product.abs().max())
    assert_close(PHP.dense(symmetrize=False), dense_product, atol=1e-12 * scale, what="P H P")
    assert_close(PHP.dense(), dense_product, atol=1e-12 * scale, what="P H P symmetrised")
    v = torch.randn(2, m.P, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.equal(PHP @ v, Pr(H(Pr(v))))
    PH = Pr @ H
    assert not PH.symmetric
    assert_close(PH.T.dense(), PH.dense().transpose(1, 2), atol=1e-13 * scale, what="(P H)ᵀ = H P")
    rep = Pr.repeat_rows(3)
    assert rep.batch == 6 and rep is Pr.repeat_rows(3)
    ref = GaugeProjector(m.spec, m.factors(th.repeat_interleave(3, dim=0)))
    w = torch.randn(6, m.P, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    assert_close(rep @ w, ref(w), atol=1e-13, what="repeated rows")


def test_an_operator_refuses_what_does_not_fit_and_takes_one_theta():
    """A (P,) θ is one row whose operator maps (P,) vectors; ``@`` refuses a tensor of the wrong
    shape and operators of different shapes; a transpose that is not known is refused."""
    m = _model(CASES[0])
    th = _points(m, 2, seed=9)
    op = m.hvp_operator(th[0])
    v = torch.randn(m.P, dtype=torch.float64)
    assert_close(op(v), m.hvp(th[:1], v[None])[0], atol=0, what="one θ")
    with pytest.raises(ValueError, match="must be"):
        m.hvp_operator(th) @ v
    with pytest.raises(ValueError, match="cannot compose"):
        m.hvp_operator(th) @ m.hvp_operator(th[:1])
    with pytest.raises(ValueError, match="one row"):
        m.hvp_operator(th).matmat(v[:, None])

    class Plain(CurvatureOperator):
        def _matvec(self, v):
            return 2 * v

    with pytest.raises(NotImplementedError):
        Plain(1, 3, "cpu", torch.float64).T
