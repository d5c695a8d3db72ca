"""Engines against the exact results of MODEL.md §6, stop reasons, batching and replay."""
import math
import numpy as np
import pytest
import torch

from conftest import assert_close, assert_same_end_points
from landscape import theory
from landscape.engines import StageConfig, run_engine, run_pipeline
from landscape.core.init import InitScheme, draw_starts
from landscape.core.model import DeepUFM, ModelSpec

POLISH = StageConfig(engine="newton", max_iter=60, stall_window=8, tol=1e-10)


def _balance_residual(model, theta):
    """max over interfaces of ‖λ_{l+1}W_{l+1}ᵀW_{l+1} − λ_l W_l W_lᵀ‖ (H₁H₁ᵀ for the first), MODEL.md §4."""
    F = model.factors(theta.reshape(1, -1))
    lam = model.spec.lambdas
    worst = 0.0
    for l in range(len(F) - 1):
        a = lam[l + 1] * F[l + 1][0].T @ F[l + 1][0]
        b = lam[l] * F[l][0] @ F[l][0].T
        worst = max(worst, float((a - b).abs().max()))
    return worst


@pytest.mark.parametrize("stages", [
    [StageConfig(engine="gd", lr=0.5, max_iter=20000, tol=1e-7), POLISH],
    [StageConfig(engine="lbfgs", max_iter=2000, tol=1e-10, stall_window=100)],
    [StageConfig(engine="flow", max_iter=5000, tol=1e-7), POLISH],
], ids=["gd+polish", "lbfgs", "flow+polish"])
def test_L1_cross_entropy_reaches_closed_form_optimum(stages):
    spec = ModelSpec(K=5, n=3, d=6, L=1, lam_W=3e-3, lam_H=1e-2)
    alpha, best = theory.l1_ce_optimum(5, 3, 3e-3, 1e-2)
    assert_close([alpha, best], [4.619164, 0.213971044560325], atol=1e-6, what="MODEL.md example")
    m = DeepUFM(spec)
    res = run_pipeline(m, draw_starts(spec, InitScheme(), 7, range(12)), stages)
    assert res.converged.all(), res.counts()
    assert_close(res.loss, np.full(12, best), atol=1e-10, what="loss at the L=1 optimum")
    assert (res.grad_norm <= 1e-10).all()


def test_deep_linear_mse_reaches_gamma_optimum():
    spec = ModelSpec(K=3, n=4, d=6, L=3, loss="mse", lam_W=5e-3, lam_H=1e-3)
    gamma, best = theory.mse_optimum(3, 4, 3, 5e-3, 1e-3)
    assert_close([gamma, best], [0.985711426925799, 0.0282709011677], atol=1e-12, what="MODEL.md example")
    m = DeepUFM(spec)
    res = run_pipeline(m, draw_starts(spec, InitScheme(), 3, range(16)),
                       [StageConfig(engine="lbfgs", max_iter=3000, tol=1e-10, stall_window=200)])
    assert res.converged.all(), res.counts()
    at_opt = np.abs(res.loss - best) <= 1e-10
    assert at_opt.sum() >= 12, np.sort(res.loss)   # the global minimum is the typical end point
    assert (res.loss >= best - 1e-10).all()          # and nothing goes below it
    Z = m.logits(res.theta[torch.from_numpy(np.nonzero(at_opt)[0])])
    assert_close(Z, gamma * m.Y.expand_as(Z), atol=1e-8, what="Z* = γY")


@pytest.mark.parametrize("K,n,d,L,lam", [(4, 2, 8, 2, 1e-3), (4, 2, 6, 3, 1e-3), (3, 5, 7, 4, 5e-4), (6, 1, 6, 2, 1e-2)])
def test_dnc_point_from_scale_equation_is_critical(K, n, d, L, lam):
    spec = ModelSpec(K=K, n=n, d=d, L=L, lam=lam)
    m = DeepUFM(spec)
    roots = theory.dnc_scale_roots(K, n, L, lam)
    assert len(roots) == 2
    for a in roots:
        th = torch.from_numpy(theory.dnc_point(spec, a))
        loss, g = m.loss_and_grad(th)
        assert float(g.norm()) <= 1e-12
        assert_close(float(loss), theory.dnc_loss(a, K, n, L, lam), atol=1e-13, what="DNC loss")
    assert_close(roots, [1.28e-7, 7.339167829759595], rtol=1e-3, what="roots") if (K, n, L, lam) == (4, 2, 2, 1e-3) else None


def test_newton_finder_converges_to_small_alpha_dnc_root():
    K, n, d, L, lam = 4, 2, 6, 2, 1e-3
    spec = ModelSpec(K=K, n=n, d=d, L=L, lam=lam)
    m = DeepUFM(spec)
    a_small = theory.dnc_scale_roots(K, n, L, lam)[0]
    gen = torch.Generator().manual_seed(0)
    starts = []
    for s in (0.8, 1.25, 1.5):
        th = torch.from_numpy(theory.dnc_point(spec, s * a_small))
        starts.append(th * (1 + 1e-3 * torch.randn(th.shape, generator=gen)))
    res = run_engine(m, torch.stack(starts), StageConfig(engine="newton", max_iter=100, stall_window=10, tol=1e-14))
    assert (res.stop_reason == "converged").all(), res.stop_reason
    Z = m.logits(res.theta)
    S = torch.from_numpy(np.kron(theory.simplex(K), np.ones((1, n))))
    for z in Z:
        alpha = float((z * S).sum() / (S * S).sum())
        assert_close(alpha, a_small, rtol=1e-6, what="found root α")
        assert_close(z, alpha * S, atol=1e-6 * alpha, what="logits ∝ S")


def test_balance_identities_at_certified_points():
    spec = ModelSpec(K=4, n=2, d=6, L=3, lam=1e-3)
    m = DeepUFM(spec)
    res = run_pipeline(m, draw_starts(spec, InitScheme(), 11, range(24)),
                       [StageConfig(engine="flow", max_iter=3000, tol=1e-6), POLISH])
    assert res.converged.sum() >= 20
    for b in np.nonzero(res.converged)[0]:
        # the residual is of the order of the gradient norm divided by the weakest curvature λ
        assert _balance_residual(m, res.theta[b]) <= 1e-7
        W_L = m.factors(res.theta[b:b + 1])[-1][0]
        assert float(W_L.sum(dim=0).abs().max()) <= 1e-8   # 1ᵀW_L = 0 for CE


@pytest.mark.slow   # long: run by .ci/run's second pass
def test_batch_equals_one_by_one_and_replay():
    spec = ModelSpec(K=3, n=2, d=5, L=2, lam=5e-3)
    m = DeepUFM(spec)
    stages = [StageConfig(engine="gd", lr=0.5, max_iter=20000, tol=1e-7), POLISH]
    idx = list(range(10, 18))
    batch = run_pipeline(m, draw_starts(spec, InitScheme(), 5, idx), stages)
    for b, i in enumerate(idx):
        one = run_pipeline(m, draw_starts(spec, InitScheme(), 5, [i]), stages)
        assert one.stop_reason[0] == batch.stop_reason[b]
        assert_close(one.loss[0], batch.loss[b], atol=1e-10, what=f"replay of trajectory {i}")
        assert_close(m.logits(one.theta), m.logits(batch.theta[b:b + 1]), atol=1e-7, what="same end point")


def test_starts_are_seeded_per_trajectory():
    spec = ModelSpec(K=3, n=2, d=5, L=2)
    a = draw_starts(spec, InitScheme(), 9, [0, 1, 2, 3])
    b = draw_starts(spec, InitScheme(), 9, [3, 1])
    assert torch.equal(a[3], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], draw_starts(spec, InitScheme(), 10, [0])[0])
    F = DeepUFM(spec).factors(draw_starts(spec, InitScheme(), 0, range(400)))
    assert_close(float(F[0].std()), 1.0, atol=0.02, what="H1 ~ N(0,1)")
    assert_close(float(F[1].std()), 1 / np.sqrt(5), atol=0.01, what="W ~ N(0,1/d)")
    small = draw_starts(spec, InitScheme(name="small", alpha=1e-3), 0, [0])
    assert_close(small, 1e-3 * draw_starts(spec, InitScheme(), 0, [0]), atol=1e-18, what="small = alpha·gaussian")


def test_divergence_is_isolated_and_labelled():
    spec = ModelSpec(K=3, n=2, d=4, L=3, lam=1e-2)
    m = DeepUFM(spec)
    th = draw_starts(spec, InitScheme(), 0, range(4))
    th[1] *= 30.0  # a start that GD with lr 0.5 blows up from
    th[2, 0] = float("nan")
    res = run_engine(m, th, StageConfig(engine="gd", lr=0.5, max_iter=20000, tol=1e-6))
    assert res.stop_reason[1] == "diverged" and res.stop_reason[2] == "diverged"
    assert res.stop_reason[0] == "converged" and res.stop_reason[3] == "converged"
    clean = run_engine(m, th[[0, 3]], StageConfig(engine="gd", lr=0.5, max_iter=20000, tol=1e-6))
    assert_close(res.loss[[0, 3]], clean.loss, atol=0, what="other rows untouched")


def test_max_iter_and_stalled_reasons():
    spec = ModelSpec(K=3, n=2, d=4, L=2, lam=1e-2)
    m = DeepUFM(spec)
    th = draw_starts(spec, InitScheme(), 0, range(3))
    r = run_engine(m, th, StageConfig(engine="gd", lr=0.5, max_iter=5, tol=1e-10))
    assert (r.stop_reason == "max_iter").all() and (r.iterations == 5).all() and (r.n_grad == 6).all()
    s = run_engine(m, th, StageConfig(engine="gd", lr=1e-17, max_iter=1000, tol=1e-10, stall_window=20))
    assert (s.stop_reason == "stalled").all() and (s.iterations == 21).all()
    assert set(s.stop_detail) <= {"plateau", "gradient_flat"}


def test_finished_rows_stop_costing_work():
    spec = ModelSpec(K=3, n=2, d=4, L=2, lam=1e-2)
    m = DeepUFM(spec)
    th = draw_starts(spec, InitScheme(), 0, range(4))
    th[0] = 0.0  # the origin is critical: converged at iteration 0
    res = run_engine(m, th, StageConfig(engine="gd", lr=0.5, max_iter=300, tol=1e-10))
    assert res.stop_reason[0] == "converged" and res.iterations[0] == 0 and res.n_grad[0] == 1
    assert (res.n_grad[1:] == 301).all()


def test_orthogonal_init_when_width_equals_sample_count():
    """d = N (the default K=4, n=2, d=8): every W_l is scale_W × orthogonal, H₁ stays Gaussian."""
    spec = ModelSpec(K=4, n=2, d=8, L=3)
    th = draw_starts(spec, InitScheme(name="orthogonal"), 0, [0])
    F = DeepUFM(spec).factors(th)
    for W in F[1:-1]:
        assert_close(W[0] @ W[0].T, torch.eye(8), atol=1e-12, what="W Wᵀ = I")
    assert_close(F[-1][0] @ F[-1][0].T, torch.eye(4), atol=1e-12, what="W_L has orthonormal rows")
    assert float((F[0][0] @ F[0][0].T - torch.eye(8)).abs().max()) > 0.1   # H₁ Gaussian


def test_integer_stage_fields_are_stored_as_integers():
    cfg = StageConfig(engine="newton", max_iter=5.0, minres_iter=1e2, stall_window=3.0)
    assert (cfg.max_iter, cfg.minres_iter, cfg.stall_window) == (5, 100, 3)
    assert all(type(v) is int for v in (cfg.max_iter, cfg.minres_iter, cfg.stall_window, cfg.options.max_halvings))
    lb = StageConfig(engine="lbfgs", memory=7.0)
    assert type(lb.memory) is int and lb.memory == 7


def _refill_cases():
    """The hand-made pipeline from random starts, then every registered engine alone (a new engine
    is tested by being registered in ENGINES) from starts near a point it converges to: the DNC
    minimum, or for min-mode following (which climbs out of minima) an index-1 saddle."""
    from landscape.engines import ENGINES

    cases = [([StageConfig(engine="gd", lr=0.5, max_iter=4000, tol=1e-7), POLISH], "gd+polish", None)]
    cases += [([StageConfig(engine=name, max_iter=150, tol=1e-9, stall_window=150)], name,
               "saddle" if name == "minmode" else "minimum") for name in sorted(ENGINES)]
    return [pytest.param(st, near, id=i) for st, i, near in cases]


def _index_one_saddle(spec, m):
    """An index-1 saddle of ``spec``: min-mode following from beside the small-root DNC point
    (index 3), polished by Newton-MR to ‖∇L‖ ≤ 1e-12; its index is checked from numpy's spectrum."""
    from landscape.engines.minmode import follow_min_mode

    small = torch.as_tensor(theory.dnc_point(spec, theory.dnc_scale_roots(spec.K, spec.n, spec.L, spec.lam)[0]))
    ts = follow_min_mode(m, (small * 1.01)[None]).theta
    ts = run_pipeline(m, ts, [StageConfig(engine="newton", max_iter=60, stall_window=8, tol=1e-12)])
    assert ts.stop_reason[0] == "converged"
    assert int((np.linalg.eigvalsh(m.hessian(ts.theta[0]).numpy()) < -1e-6).sum()) == 1
    return ts.theta[0]


@pytest.mark.parametrize("stages, near", _refill_cases())
def test_working_batch_refill_gives_the_same_trajectories(stages, near):
    """Continuous batching (a working batch of 3 refilled from 10 pending starts) changes nothing:
    every row's stop, iterations, evaluations and end point equal the all-at-once run's. Rows
    never mix, but a batch of another width may round differently (a batched kernel's summation
    order): from random starts a lone Newton or L-BFGS run of 150 steps wanders and amplifies
    such 1e-15 differences (measured: 4e-15 after one Newton step, 5e-3 after 20), so the engines
    alone start near a point they converge to, where their iterations contract (near a minimum,
    min-mode following climbs its lowest mode and wanders in the same way)."""
    spec = ModelSpec(K=3, n=2, d=5, L=2, lam=5e-3)
    m = DeepUFM(spec)
    th = draw_starts(spec, InitScheme(), 3, range(10))
    if near == "minimum":
        centre = torch.as_tensor(theory.dnc_point(spec, theory.dnc_scale_roots(3, 2, 2, 5e-3)[-1]))
    elif near == "saddle":
        centre = _index_one_saddle(spec, m)
    if near is not None:
        th = centre + 1e-3 * th / th.norm(dim=1, keepdim=True)
    th[4] = 0.0 if near != "saddle" else centre  # converged at iteration 0 when it joins
    a = run_pipeline(m, th, stages)
    b = run_pipeline(m, th, stages, working_batch=3)
    assert list(a.stop_reason) == list(b.stop_reason)
    np.testing.assert_array_equal(a.iterations, b.iterations)
    np.testing.assert_array_equal(a.n_grad, b.n_grad)
    # an inner solve that stops at a tolerance (Newton's MINRES) may take one iteration more or
    # less per outer step where the residual sits at that tolerance to round-off
    assert np.all(np.abs(a.n_hvp - b.n_hvp) <= a.iterations), (a.n_hvp, b.n_hvp)
    # at a converged end the Hessian is singular along the symmetry orbit, which the last Newton
    # step leaves undetermined to ~‖∇L‖/λ_min (measured 2e-10): across the orbit the ends agree
    # to 1e-12, along it to that bound
    if near is not None:
        assert_same_end_points(spec, b.theta, a.theta, what="same end points")
    else:
        assert_close(b.theta, a.theta, atol=1e-12, what="same end points")
    assert b.iterations[4] == 0 and b.stop_reason[4] == "converged"  # the origin, critical from the start


def test_a_plateau_whose_loss_still_falls_is_not_stalled():
    """GD at a tiny step: ‖∇L‖ barely changes (the old rule called it stalled), but the loss falls
    by more than stall_loss_rtol·|L| per window, so it runs to its budget, honestly max_iter."""
    spec = ModelSpec(K=3, n=2, d=4, L=2, lam=1e-2)
    m = DeepUFM(spec)
    th = draw_starts(spec, InitScheme(), 0, range(3))
    r = run_engine(m, th, StageConfig(engine="gd", lr=1e-9, max_iter=300, tol=1e-10, stall_window=20))
    assert (r.stop_reason == "max_iter").all() and (r.iterations == 300).all()


def test_fire_minimises_each_system_on_its_own():
    """FIRE on Q quadratics ½xᵀAx (A diagonal, different per system): every system reaches 0, and a
    system advanced in the batch moves as it does alone."""
    from landscape.engines.fire import FIREOptions, FIREState, fire_step
    from landscape.core.validate import SpecError

    torch.manual_seed(0)
    A = torch.stack([torch.linspace(1, 10, 6, dtype=torch.float64), torch.linspace(0.5, 3, 6, dtype=torch.float64)])
    x0 = torch.randn(2, 6, dtype=torch.float64)
    opts = FIREOptions(dt=0.05, dt_max=0.3)

    def run(A, x, steps=600):
        st = FIREState.init(x.shape[0], x.shape[1], opts, x)
        for _ in range(steps):
            x = x + fire_step(st, -A * x, torch.ones(x.shape[0], dtype=torch.bool), opts)
        return x

    xb = run(A, x0.clone())
    assert float(xb.abs().max()) < 1e-8
    assert torch.allclose(run(A[1:], x0[1:].clone()), xb[1:], rtol=0, atol=1e-14)
    with pytest.raises(SpecError, match="f_dec"):
        FIREOptions(f_dec=-1)


@pytest.mark.parametrize("stages", [
    pytest.param([StageConfig(engine="gd", lr=0.5, max_iter=3000, tol=1e-7), POLISH], id="gd+polish"),
    pytest.param([StageConfig(engine="flow", max_iter=400, tol=1e-7), POLISH], id="flow+polish"),
    pytest.param([StageConfig(engine="lbfgs", max_iter=400, tol=1e-8)], id="lbfgs"),
])
def test_a_batch_of_mixed_lambda_gives_each_row_its_own_trajectory(stages):
    """The cells of a λ sweep as one batch: 4 starts × 3 values of λ in one working batch of 5,
    refilled as rows finish, against each λ's plain model run alone on its 4 starts. Every row's
    stop, iteration and evaluation counts are the same, and its end point to round-off."""
    spec = ModelSpec(K=3, n=2, d=5, L=2, lam=1e-3)
    lams = [2e-2, 5e-3, 1e-3]
    th = draw_starts(spec, InitScheme(), 7, range(4))
    joint = DeepUFM(spec).with_row_lambdas(torch.tensor(lams).repeat_interleave(4))
    both = run_pipeline(joint, th.repeat(3, 1), stages, working_batch=5)
    for c, lam in enumerate(lams):
        own = DeepUFM(ModelSpec(K=3, n=2, d=5, L=2, lam=lam))
        alone = run_pipeline(own, th, stages)
        rows = slice(4 * c, 4 * c + 4)
        assert list(both.stop_reason[rows]) == list(alone.stop_reason), lam
        np.testing.assert_array_equal(both.iterations[rows], alone.iterations)
        np.testing.assert_array_equal(both.n_grad[rows], alone.n_grad)
        assert_same_end_points(spec, both.theta[rows], alone.theta, across=1e-9, what=f"end points at λ={lam}")
        assert_close(torch.as_tensor(both.loss[rows]), torch.as_tensor(alone.loss), atol=1e-14, rtol=1e-12,
                     what=f"losses at λ={lam}")


def test_measured_working_batch_takes_the_unit_where_it_is_as_fast_as_the_best(monkeypatch):
    """Throughput still rising at the largest candidate: the unit runs whole (no second pass for
    its last starts); a plateau from 128 on (the smallest width within 10% of the best is 128), with
    the unit as fast: the unit, whole; a peak below it (cache effects at large P): that width,
    whatever the unit."""
    from landscape.engines import batching

    spec = ModelSpec(K=3, n=2, d=5, L=2, lam=1e-3)
    rates = {"rising": lambda m, B: float(B), "plateau": lambda m, B: float(min(B, 128)),
             "peak": lambda m, B: 1e3 / (1 + abs(math.log2(B / 32)))}
    for shape, want in (("rising", (384, 256)), ("plateau", (384, 128)), ("peak", (32, 32))):
        batching._rates.cache_clear()
        monkeypatch.setattr(batching, "_probe", rates[shape])
        assert batching.working_batch(spec, unit=384) == want[0], shape
        assert batching.working_batch(spec) == want[1], shape
        assert batching.working_batch(spec, unit=100) == want[1], shape   # a unit below the width: capped by the driver
    batching._rates.cache_clear()


def test_stop_rules_in_numpy_and_in_torch_agree():
    """The CPU driver tests stops in numpy (check_stops(host=True)); a GPU runs the same rules in
    torch. Rows that converge, stall, diverge (NaN and huge loss) and run out of budget, with a
    random selection of rows tested each time: both give the same book, field by field."""
    from landscape.engines.driver import RowBook, check_stops
    from landscape.engines.state import EngineState

    cfg = StageConfig("gd", lr=0.5, tol=1e-3, stall_window=3)
    B, gen = 50, torch.Generator().manual_seed(0)
    books = [RowBook.fresh(torch.arange(B), torch.full((B,), 7), torch.full((B,), 0.5, dtype=torch.float64), 500,
                           torch.float64) for _ in range(2)]
    seen = set()
    for _ in range(12):
        g = torch.randn(B, 5, dtype=torch.float64, generator=gen) * 10.0 ** -torch.randint(0, 5, (B, 1), generator=gen)
        loss = torch.rand(B, dtype=torch.float64, generator=gen)
        loss[3], loss[4] = float("nan"), 1e9
        st = EngineState(g, loss, g, torch.ones(B, dtype=torch.long), torch.zeros(B, dtype=torch.long))
        sel = torch.rand(B, generator=gen) > 0.2
        for book, host in zip(books, (True, False)):
            check_stops(book, st, cfg, sel, host=host)
            book.iters = book.iters + 1
        for k in ("reason", "first_small", "best_g", "since_g", "best_l", "since_l"):
            a, b = getattr(books[0], k), getattr(books[1], k)
            assert a.dtype == b.dtype and torch.equal(a.nan_to_num(nan=-7.0), b.nan_to_num(nan=-7.0)), k
        seen |= set(books[0].reason.tolist())
    assert seen == {-1, 0, 1, 2, 3}       # running, converged, max_iter, diverged, stalled all occurred


def test_inexact_newton_reaches_the_same_dnc_point_with_fewer_products():
    """Newton-MR with the forcing term η = ‖∇L‖ (MINRES stopped at that relative residual) from
    starts 1e-2 off the DNC minimum: every row certifies at the closed-form DNC loss of MODEL.md
    §6 (theory.dnc_loss at the large root), on the orbit of the point the exact solves reach
    (the same logits, which the rotations leave invariant), with under half their products."""
    spec = ModelSpec(K=3, n=2, d=5, L=2, lam=5e-3)
    m = DeepUFM(spec)
    alpha = theory.dnc_scale_roots(3, 2, 2, 5e-3)[-1]
    th = draw_starts(spec, InitScheme(), 11, range(6))
    th = torch.as_tensor(theory.dnc_point(spec, alpha)) + 1e-2 * th / th.norm(dim=1, keepdim=True)
    runs = {f: run_pipeline(m, th, [StageConfig(engine="newton", max_iter=60, stall_window=8, tol=1e-10,
                                                minres_forcing=f)]) for f in (0.0, 1.0)}
    exact, inexact = runs[0.0], runs[1.0]
    assert (exact.stop_reason == "converged").all() and (inexact.stop_reason == "converged").all()
    assert_close(inexact.loss, np.full(6, theory.dnc_loss(alpha, 3, 2, 2, 5e-3)), atol=1e-13, what="DNC loss")
    # the same point modulo the rotations of MODEL.md §5: their invariant, the logits, agree
    assert_close(m.logits(inexact.theta), m.logits(exact.theta), atol=1e-8, what="logits (rotation invariant)")
    assert inexact.n_hvp.sum() < 0.5 * exact.n_hvp.sum(), (inexact.n_hvp, exact.n_hvp)
