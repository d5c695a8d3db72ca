"""Critical points on ReLU kinks (landscape.analysis.kinks, MODEL.md §10), held to values derived
outside the code under test: the family's closed forms (AM–GM), an autograd gradient with a
chosen ReLU derivative at the kinks, one-sided finite differences, and the orbit dimension."""
from pathlib import Path

import numpy as np
import pytest
import torch

from landscape.analysis.family import frame_dnc_point, member_dnc
from landscape.analysis.kinks import (active_set, analyse_kinks, clarke_multipliers, kkt_parts, masked_loss,
                                      _forward, hand_off_to_kinks, output_signals, polish_on_kinks)
from landscape.core.model import DeepUFM
from landscape.core.spec import ModelSpec


def _spec(loss="ce", L=3):
    return ModelSpec(K=4, n=2, d=8, L=L, lam=1e-3, activation="relu", loss=loss)


class _ReluWithSlope(torch.autograd.Function):
    """ReLU whose derivative at exactly 0 is the given per-entry slope s (elsewhere 0 or 1)."""

    @staticmethod
    def forward(ctx, h, s):
        ctx.save_for_backward(h, s)
        return torch.relu(h)

    @staticmethod
    def backward(ctx, g):
        h, s = ctx.saved_tensors
        return g * torch.where(h > 0, 1.0, torch.where(h < 0, 0.0, s)), None


def _loss_with_slopes(spec, theta, slopes):
    """The model's loss written out here, with ReLU'(0) = ``slopes`` per ReLU layer (d, N)."""
    model = DeepUFM(spec)
    F = [f[0] for f in model.factors(theta[None])]
    post = F[0]
    for W, s in zip(F[1:-1], slopes):
        post = _ReluWithSlope.apply(W @ post, s)
    Z = F[-1] @ post
    return model.data_loss(Z[None])[0] + 0.5 * sum(lam * (f * f).sum() for lam, f in zip(spec.lambdas, F))


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_the_relu_dnc_point_is_clarke_stationary_on_its_kinks(loss):
    """The orthogonal-frame DNC point sits on kinks (every off-frame and off-class entry is exactly
    0); it is stationary on its kink manifold (‖∇f₀ − Jᵀμ‖ ≤ 1e-12), Clarke-stationary with
    multipliers in [0, 1] — and the gradient of the loss with those slopes at the kinks, taken by
    autograd through a ReLU written here, vanishes; no negative curvature on the manifold and the
    H₁|W₁ orbit has dimension r·d − r(r+1)/2 = 22 (r = K = 4, d = 8)."""
    spec = _spec(loss)
    th = frame_dnc_point(spec, member_dnc(spec)[-1].scale)
    aset = active_set(spec, th)
    assert aset.size == 2 * (4 * 8 + 4 * 6)          # per ReLU layer: 4 dead units × 8 samples, 4 × 6 off-class
    g, J, c = kkt_parts(spec, th, aset)
    mu = np.linalg.lstsq(J.T, g, rcond=None)[0]
    assert np.linalg.norm(g - J.T @ mu) <= 1e-12 and np.linalg.norm(c) == 0
    assert masked_loss(spec, th, aset) == pytest.approx(member_dnc(spec)[-1].loss, abs=1e-13)
    cl = clarke_multipliers(spec, th, aset)
    assert cl.residual <= 1e-12 and np.all((cl.s >= 0) & (cl.s <= 1))
    slopes, k = [], 0
    for a in aset.active:
        s = np.zeros(a.shape)
        s[a] = cl.s[k:k + int(a.sum())]
        k += int(a.sum())
        slopes.append(torch.from_numpy(s))
    t = torch.from_numpy(th).requires_grad_(True)
    grad = torch.autograd.grad(_loss_with_slopes(spec, t, slopes), t)[0]
    assert float(grad.norm()) <= 1e-12
    rep = analyse_kinks(spec, th, aset)
    assert rep.index == 0 and rep.gauge_zero_modes == 4 * 8 - 4 * 5 // 2
    assert rep.kind in ("minimum", "degenerate", "undecided")


def test_a_perturbed_relu_dnc_point_is_polished_back_onto_its_kinks():
    """1e-6 noise on every coordinate: the active-set Newton method on the kink manifold returns
    to a point of loss ℓ_DNC (the AM–GM closed form) within 1e-12, stationary to 1e-10 and on the
    manifold to 1e-10, with every other entry's sign kept."""
    spec = _spec("ce")
    dnc = member_dnc(spec)[-1]
    th = frame_dnc_point(spec, dnc.scale) + 1e-6 * np.random.default_rng(0).standard_normal(spec.P)
    p = polish_on_kinks(spec, th, aset=active_set(spec, th, rtol=1e-4))
    assert p.converged and p.residual <= 1e-10 and p.constraint <= 1e-10 and p.signs_kept
    loss = float(DeepUFM(spec).loss(torch.from_numpy(p.theta)[None])[0])
    assert loss == pytest.approx(dnc.loss, abs=1e-12)
    # a loss cap above the start changes nothing; one the first iterate exceeds stops it there
    start = float(DeepUFM(spec).loss(torch.from_numpy(th)[None])[0])
    capped = polish_on_kinks(spec, th, aset=active_set(spec, th, rtol=1e-4), loss_cap=start + 1e-3)
    assert capped.converged and np.array_equal(capped.theta, p.theta) and capped.iterations == p.iterations
    stopped = polish_on_kinks(spec, th, aset=active_set(spec, th, rtol=1e-4), loss_cap=start - 1.0)
    assert not stopped.converged and stopped.iterations == 1


@pytest.mark.parametrize("noise, seed", [(5e-4, 0), (1e-3, 1), (3e-3, 2)])
def test_a_stalled_descent_is_read_at_the_amplitude_of_its_bounce(noise, seed):
    """The relu-ce DNC point with noise of 5e-4 … 3e-3 on every coordinate puts its kink entries
    up to ~1e-3 … 6e-3 of the largest entry off 0, as GD bouncing across kinks leaves them: read
    at 1e-4 the active set misses some and the hand-off refuses the row; for a descent
    that stalled it is read again at 1e-3 and 1e-2, and the polish returns to ℓ_DNC (the AM–GM
    closed form) within 1e-10."""
    spec = _spec("ce")
    dnc = member_dnc(spec)[-1]
    th = frame_dnc_point(spec, dnc.scale) + noise * np.random.default_rng(seed).standard_normal(spec.P)
    t = torch.from_numpy(th)[None]
    model = DeepUFM(spec)
    loss, gn = model.loss(t).numpy(), model.grad(t).norm(dim=1).numpy()
    assert not hand_off_to_kinks(spec, th[None], loss, gn).ok[0]
    h = hand_off_to_kinks(spec, th[None], loss, gn, stalled=[True])
    assert h.ok[0] and h.residual[0] <= 1e-10 and h.loss[0] == pytest.approx(dnc.loss, abs=1e-10)


def test_the_first_order_change_across_one_relu_layer_is_the_one_sided_formula():
    """L = 2 (one ReLU layer, so no kink feeds another): for random directions v, the one-sided
    difference (L(θ+εv) − L(θ))/ε at the DNC point equals ∇f₀·v + Σ_a δ_a·max(∇H_a·v, 0) to
    O(ε) — the first-order model behind the bounded least-squares test."""
    spec = _spec("ce", L=2)
    th = frame_dnc_point(spec, member_dnc(spec)[-1].scale)
    aset = active_set(spec, th)
    g, J, _ = kkt_parts(spec, th, aset)
    delta = np.concatenate([d[a] for d, a in zip(output_signals(spec, th, aset), aset.active)])
    model = DeepUFM(spec)
    L0 = float(model.loss(torch.from_numpy(th)[None])[0])
    rng = np.random.default_rng(1)
    for _ in range(5):
        v = rng.standard_normal(spec.P)
        v /= np.linalg.norm(v)
        model_change = g @ v + delta @ np.maximum(J @ v, 0.0)
        for eps in (1e-6,):
            fd = (float(model.loss(torch.from_numpy(th + eps * v)[None])[0]) - L0) / eps
            assert fd == pytest.approx(model_change, abs=1e-8)   # the kink term is ~3e-4


def test_the_small_root_dnc_point_is_a_saddle_on_its_manifold():
    """The small stationary scale of ReLU CE DNC is a maximum of the loss along the scale (the
    origin is a minimum for L ≥ 2): negative curvature on the kink manifold, kind 'saddle'."""
    spec = _spec("ce")
    small = member_dnc(spec)[0]
    rep = analyse_kinks(spec, frame_dnc_point(spec, small.scale))
    assert rep.index >= 1 and rep.kind == "saddle"


def test_the_hand_off_finishes_a_near_kink_end_and_refuses_a_far_one():
    """A ReLU DNC point with 1e-6 noise (a descent's end near its kinks: ‖∇L‖ small, entries a
    hair off 0) is finished at loss ℓ_DNC within 1e-12 with projected gradient ≤ 1e-10; a random
    point (‖∇L‖ far above the hand-off bound) is refused with its reason."""
    from landscape.analysis.kinks import HANDOFF_GRAD, hand_off_to_kinks

    spec = _spec("ce")
    dnc = member_dnc(spec)[-1]
    rng = np.random.default_rng(2)
    near = frame_dnc_point(spec, dnc.scale) + 1e-6 * rng.standard_normal(spec.P)
    far = rng.standard_normal(spec.P)
    th = torch.from_numpy(np.stack([near, far]))
    loss, grad = DeepUFM(spec).loss_and_grad(th)
    gn = grad.norm(dim=1).numpy()
    assert gn[0] <= HANDOFF_GRAD < gn[1]
    h = hand_off_to_kinks(spec, th, loss.numpy(), gn)
    assert h.ok.tolist() == [True, False] and "‖∇L‖" in h.reason[1]
    assert h.loss[0] == pytest.approx(dnc.loss, abs=1e-12) and h.residual[0] <= 1e-10


def test_a_point_on_kinks_is_analysed_on_its_manifold():
    """analyse_point at the ReLU CE DNC point: the kink analysis decides its kind (index 0 on the
    manifold, the second order across its weakly active kinks undecided: 'degenerate', never a
    minimum), its gradient norm is the projected gradient on the manifold, its label DNC."""
    from landscape.analysis.point import analyse_point

    spec = _spec("ce")
    a = analyse_point(spec, frame_dnc_point(spec, member_dnc(spec)[-1].scale))
    assert a.kinks is not None and a.kinks.index == 0
    assert a.kind == "degenerate" and a.label == "DNC" and a.grad_norm <= 1e-12
    assert a.to_dict()["kinks"]["n_active"] == 112


def test_the_kink_finisher_stores_why_it_refused_a_row():
    """finish_on_kinks on a batch of a near-kink end and a far one: the near row becomes
    ``converged`` (stop detail ``kink``) at ℓ_DNC; the far row keeps its stop reason, and its stop
    detail names the refusal (the hand-off's ‖∇L‖ bound), so the study can say why it was left."""
    from types import SimpleNamespace

    from landscape.engines import TrajectoryResults
    from landscape.study.kink_finish import KINK_DETAIL, finish_on_kinks

    spec = _spec("ce")
    dnc = member_dnc(spec)[-1]
    rng = np.random.default_rng(3)
    th = torch.from_numpy(np.stack([frame_dnc_point(spec, dnc.scale) + 1e-6 * rng.standard_normal(spec.P),
                                    rng.standard_normal(spec.P)]))
    loss, grad = DeepUFM(spec).loss_and_grad(th)
    two = np.zeros(2, dtype=np.int64)
    res = TrajectoryResults(theta=th.clone(), loss=loss.numpy().copy(), grad_norm=grad.norm(dim=1).numpy(),
                            stop_reason=np.array(["max_iter"] * 2, dtype=object), stop_detail=np.array(["", ""], dtype=object),
                            iterations=two, n_grad=two, n_hvp=two, wall_time=np.zeros(2), last_stage=two)
    cfg = SimpleNamespace(model=spec, certify_tol=1e-10)
    assert finish_on_kinks(cfg, res) == 1
    assert res.stop_reason.tolist() == ["converged", "max_iter"]
    assert res.stop_detail[0] == KINK_DETAIL and res.loss[0] == pytest.approx(dnc.loss, abs=1e-12)
    assert res.stop_detail[1].startswith(f"{KINK_DETAIL}: ") and "‖∇L‖" in res.stop_detail[1]


def test_the_dense_kink_work_runs_on_one_thread_and_gives_the_threads_back():
    """Inside the kink polish's thread context torch and BLAS have one thread; after it (and
    after an exception inside it) the caller's settings are back."""
    from threadpoolctl import threadpool_info

    from landscape.analysis.kinks import _dense_threads

    before = torch.get_num_threads()
    blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    with pytest.raises(RuntimeError):
        with _dense_threads(224):
            assert torch.get_num_threads() == 1
            assert all(i["num_threads"] == 1 for i in threadpool_info() if i["user_api"] == "blas")
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before
    assert [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] == blas


def test_a_failed_svd_in_the_polish_refuses_the_row_and_keeps_the_batch(monkeypatch):
    """LAPACK's SVD can fail to converge on a near-singular KKT matrix (a 256-start relu-ce study
    died of it after 51 minutes): the hand-off refuses that row with the reason and finishes the
    others."""
    import landscape.analysis.kinks as kinks

    spec = _spec("ce")
    dnc = member_dnc(spec)[-1]
    rng = np.random.default_rng(4)
    th = torch.from_numpy(np.stack([frame_dnc_point(spec, dnc.scale) + 1e-6 * rng.standard_normal(spec.P)
                                    for _ in range(2)]))
    loss, grad = DeepUFM(spec).loss_and_grad(th)
    real, calls = kinks.polish_on_kinks, []

    def failing_first_row(spec_, theta, **kw):
        calls.append(1)
        if np.array_equal(np.asarray(theta), th[0].numpy()):
            raise np.linalg.LinAlgError("SVD did not converge in Linear Least Squares")
        return real(spec_, theta, **kw)

    monkeypatch.setattr(kinks, "polish_on_kinks", failing_first_row)
    h = kinks.hand_off_to_kinks(spec, th, loss.numpy(), grad.norm(dim=1).numpy())
    assert h.ok.tolist() == [False, True]
    assert "least-squares solve failed" in h.reason[0] and "SVD" in h.reason[0]
    assert h.loss[1] == pytest.approx(dnc.loss, abs=1e-12)


def test_descent_kinks_are_entries_with_a_negative_signal_and_an_independent_row():
    """ReLU's kink under an outgoing signal δ < 0 is concave: the one-sided rates δ(1 − s) (on
    side) and s·δ (off side) are both negative for s inside (0, 1), and one of them is for s at a
    bound. Built by hand: entries 0 (δ = −1, s = 0.5) and 2 (δ = −0.5, s = 0) are descents; entry
    1 (δ > 0) and entry 3 (δ = −1e-12: round-off, below the signal floor) are not; and entry 0
    is not once another entry repeats its row (it can no longer move alone)."""
    from landscape.analysis.kinks import SIGNAL_ATOL, ClarkeMultipliers, descent_kinks, signal_floor
    rng = np.random.default_rng(0)
    J = rng.standard_normal((4, 7))
    delta = np.array([-1.0, 2.0, -0.5, -1e-12])
    s = np.array([0.5, 0.5, 0.0, 0.5])
    degen = np.abs(delta) <= signal_floor(delta)
    assert degen.tolist() == [False, False, False, True] and signal_floor(np.array([1e-14, -1e-19])) == SIGNAL_ATOL
    cl = ClarkeMultipliers(s, delta, 0.0, 2, 1, 1, degen, np.array([False, False, True, False]))
    assert descent_kinks(J, cl).tolist() == [True, False, True, False]
    # one-sided rates from the multipliers μ = −s∘δ: on side μ + δ, off side −μ
    mu = -s * delta
    on, off = mu + delta, -mu
    assert on[0] < 0 and off[0] < 0 and on[2] < 0 and on[1] > 0 and off[1] > 0
    J2 = np.vstack([J, 2.0 * J[0]])
    cl2 = ClarkeMultipliers(np.append(s, 0.5), np.append(delta, 1.0), 0.0, 3, 1, 1,
                            np.append(degen, False), np.array([False, False, True, False, False]))
    assert not descent_kinks(J2, cl2)[0]


def test_clarke_multipliers_fall_back_when_bvls_returns_nan(monkeypatch):
    """scipy's BVLS can divide by zero on a rank-deficient system and return NaN: the test then
    solves the same bounded problem by the trust-region reflective method (same residual at the
    ReLU DNC point, ≤ 1e-12), and a NaN residual is never read as stationary."""
    from scipy.optimize import lsq_linear as real
    from landscape.analysis import kinks
    spec = _spec("ce")
    th = frame_dnc_point(spec, member_dnc(spec)[-1].scale)
    aset = active_set(spec, th)
    methods = []

    def nan_bvls(A, b, **kw):
        methods.append(kw["method"])
        sol = real(A, b, **kw)
        if kw["method"] == "bvls":
            sol.x = np.full_like(sol.x, np.nan)
        return sol

    monkeypatch.setattr(kinks, "lsq_linear", nan_bvls)
    cl = clarke_multipliers(spec, th, aset)
    assert methods == ["bvls", "trf"] and cl.residual <= 1e-12 and np.all((cl.s >= 0) & (cl.s <= 1))
    assert cl.stationary_within(1e-8)
    cl.residual = float("nan")
    assert not cl.stationary_within(1e-8)


@pytest.mark.parametrize("splits, descents", [((0, 0, 0, 0), 0), ((1, 1, 1, 0), 0), ((2, 0, 0, 0), 2),
                                              ((2, 2, 2, 0), 6)])
def test_a_relu_mse_class_split_through_both_layers_is_a_saddle_on_its_kinks(splits, descents):
    """relu-mse points built by landscape.analysis.family (K=4, n=2, d=8, L=3): a class whose two
    samples run through separate units in both ReLU layers holds two entries at a kink under a
    negative signal (W₃[c, v](γ − 1)/N: tests/test_relu_mse_family.py measures the one-sided
    descent), so the point is a saddle on its kinks — it held basin counts as `degenerate` before;
    DNC and classes split through one layer (every signal ≥ 0 or round-off) are not."""
    from landscape.analysis.family import relu_mse_split_point

    spec = _spec("mse")
    rep = analyse_kinks(spec, relu_mse_split_point(spec, splits))
    assert rep.clarke.residual <= 1e-12
    assert (rep.kind == "saddle") == (descents > 0)
    if descents:
        assert rep.reason.startswith(f"{descents} active entries on a concave kink")


@pytest.mark.parametrize("splits, n_dirs, scale", [((2, 0, 0, 0), 2, 1.0), ((2, 2, 0, 0), 4, 1.0),
                                                   ((0, 0, 0, 0), 0, 1.0), ((1, 1, 1, 0), 0, 1.0),
                                                   ((0, 0, 0, 0), 1, 1.01)])
def test_kink_descents_fall_at_the_rate_one_sided_differences_of_the_true_loss_measure(splits, n_dirs, scale):
    """Every direction kink_descents returns at a relu-mse point (landscape.analysis.family) is a
    unit vector along which the true ReLU loss (DeepUFM.loss, torch.relu) falls at first order:
    the one-sided difference quotient (L(θ + hu) − L(θ))/h, extrapolated to h → 0 from h and h/2
    (Richardson, the O(h) term cancels), equals the rate reported to 1e-6 relative and is < 0;
    along −u the loss does not fall at that rate (the kink's other side, or the rise of the
    held entry's decay). DNC and one-layer splits have no such direction; DNC with its last
    factor scaled by 1.01 (on the same kinks, no longer stationary) has one, the steepest."""
    from landscape.analysis.family import relu_mse_split_point
    from landscape.analysis.kinks import kink_descents

    spec = _spec("mse")
    th = np.array(relu_mse_split_point(spec, splits), dtype=np.float64)
    th[-spec.K * spec.d:] *= scale   # W_L, the last block of θ (MODEL.md §1's order)
    kd = kink_descents(spec, th)
    assert kd.vectors.shape == (spec.P, n_dirs) and kd.rates.shape == (n_dirs,)
    model = DeepUFM(spec.as_float64())
    t0 = torch.as_tensor(th, dtype=torch.float64)
    L0 = float(model.loss(t0[None])[0])

    def quotient(u, h):
        return (float(model.loss((t0 + h * torch.from_numpy(u))[None])[0]) - L0) / h

    for j in range(n_dirs):
        u = kd.vectors[:, j]
        assert abs(np.linalg.norm(u) - 1) < 1e-12 and kd.rates[j] < -1e-6
        h = 1e-5
        fd = 2 * quotient(u, h / 2) - quotient(u, h)
        assert abs(fd - kd.rates[j]) <= 1e-6 * abs(kd.rates[j]) + 1e-12
        assert 2 * quotient(-u, h / 2) - quotient(-u, h) > kd.rates[j] + 1e-3 * abs(kd.rates[j])
        if kd.entries[j] is not None:   # the moved entry sits on its kink and leaves it to its side
            l, unit, sample = kd.entries[j]
            pre = [p.detach().numpy() for p in _forward(model, t0 + 1e-6 * torch.from_numpy(u), None)[1]]
            base = [p.detach().numpy() for p in _forward(model, t0, None)[1]]
            assert abs(base[l][unit, sample]) <= 1e-9 * np.abs(base[l]).max()
            assert np.sign(pre[l][unit, sample]) == kd.sides[j]
        else:
            assert kd.sides[j] == 0
    assert np.all(np.diff(kd.rates) >= 0)


def test_gradient_descent_leaves_a_concave_kink_saddle_only_once_moved_across_it():
    """A relu-mse class split through both ReLU layers (landscape.analysis.family, K=4, n=2,
    d=8, L=3) is a saddle by a concave kink with no descent on its kink manifold: gradient
    descent (lr 0.5, ReLU'(0) = 0) started on it stays (its loss moves by < 1e-12 in 6,000
    steps), and started where the study resumes it (landscape.study.kink_finish.escape_across_kinks,
    eps = 1e-3) it falls by more than 5e-4 — toward the class split through one layer only,
    Δ₂ − Δ₁ ≈ 6.3e-4 below (tests/test_relu_mse_family.py derives both excesses)."""
    from landscape.analysis.family import relu_mse_split_point
    from landscape.study.kink_finish import escape_across_kinks

    spec = _spec("mse")
    model = DeepUFM(spec.as_float64())
    th = torch.as_tensor(relu_mse_split_point(spec, (2, 0, 0, 0)), dtype=torch.float64)[None]
    L0 = float(model.loss(th)[0])
    starts, moved = escape_across_kinks(spec, torch.cat([th, th]), 1e-3, np.full(2, L0 * (1 - 1e-9)))
    assert moved.tolist() == [True, True] and abs(float((starts[0] - th[0]).norm()) - 1e-3) < 1e-12
    x = torch.cat([th, starts[:1]])
    for _ in range(6000):
        x = x - 0.5 * model.grad(x)
    drop = L0 - model.loss(x).numpy()
    assert abs(drop[0]) < 1e-12 and drop[1] > 5e-4


def test_a_kink_round_runs_the_first_stage_for_its_whole_budget(tmp_path, monkeypatch):
    """A row the kink polish refused runs the pipeline again with the first stage's tol lowered to
    certify_tol (its lr, max_iter and the later stages unchanged): GD that handed over at its tol
    of 1e-3 while bouncing across kinks would hand over again at once (relu-mse starts 156, 197
    and 202 stopped after 5,000–7,000 steps, their rounds changing nothing)."""
    from landscape.engines.outcomes import Detail
    from landscape.io.store import StudyStore
    from landscape.study import run as run_module
    from landscape.study.config import load_study
    from landscape.study.work import run_trajectories

    cfg = load_study(preset="relu-mse", overrides=["stages.0.max_iter=20"])
    res = run_trajectories(cfg, [0])
    seen = []

    def refuse(cfg_, res_, rows=None, budget=None):
        res_.stop_detail[:] = Detail.KINK.explained("polish on the kink manifold did not converge")
        return 0

    class Stop(Exception):
        pass

    def record(model, theta, stages, **kw):
        seen.append(stages)
        raise Stop

    monkeypatch.setattr(run_module, "finish_on_kinks", refuse)
    monkeypatch.setattr(run_module, "run_pipeline", record)
    run = run_module.StudyRun(cfg, StudyStore.create(tmp_path, cfg.to_dict(), cfg.model), lambda e: None)
    with pytest.raises(Stop):
        run.finish_kinks_in_rounds(res, list(cfg.stages))
    (stages,) = seen
    first = stages[0]
    assert cfg.stages[0].tol == 1e-3 and first.tol == cfg.certify_tol == 1e-10
    assert (first.engine, first.lr, first.max_iter) == ("gd", 0.5, 20) and list(stages[1:]) == list(cfg.stages[1:])


def test_a_negative_curvature_is_followed_only_where_the_constrained_set_goes():
    """follows_descent against two hand-worked sets at 0 in the plane, loss x − y²/2, tangent
    vector v = (0, 1) with curvature λ = −1 on ker J: with the one constraint x = 0 the set is
    the y axis and the loss falls by t²/2 along it (followed at the smallest step, t = 1e-4); with
    the dependent pair x = 0, x + y² = 0 (J = [[1, 0], [1, 0]] at 0: ker J is still the y axis)
    the set is the single point 0, every projection returns towards it (y halves per
    Gauss–Newton step) and nothing falls."""
    from landscape.analysis.kinks import follows_descent

    def loss(t):
        return t[0] - 0.5 * t[1] ** 2

    def one(t):
        return np.array([t[0]]), np.array([[1.0, 0.0]])

    def pair(t):
        return np.array([t[0], t[0] + t[1] ** 2]), np.array([[1.0, 0.0], [1.0, 2 * t[1]]])

    zero, v = np.zeros(2), np.array([0.0, 1.0])
    found = follows_descent(loss, one, zero, v, -1.0)
    assert found is not None and found[0] == 1e-4 and loss(found[1]) == pytest.approx(-0.5e-8, rel=1e-12)
    assert follows_descent(loss, pair, zero, v, -1.0) is None


def test_dependent_kinks_give_no_saddle_on_the_kink_set():
    """A relu-mse point of the default size (K=4, n=2, d=8, L=3; loss 0.0122563434, stored
    from a 256-start study, where gradient descent came back to it seven times) whose held
    entries are dependent at first order: the Hessian of the Lagrangian on ker J has negative
    eigenvalues (about −5.6e-7), yet the set where the held entries are 0 does not go along
    them. Projected back onto that set here (Gauss–Newton with the Jacobian of the model's own
    pre-activations, written out in the test), θ + t·v lands within 0.3·t of θ for t = 1e-2 and
    1e-3 and never below the point's loss. The analysis follows the loss on the kink set instead
    of trusting ker J: undecided (a leaf), not a saddle."""
    from landscape.analysis.kinks import _multipliers, _tangent_spectrum

    spec = _spec("mse")
    th = np.load(Path(__file__).parent / "data" / "relu_mse_dependent_kinks.npy")
    model = DeepUFM(spec.as_float64())
    L0 = float(model.loss(torch.from_numpy(th)[None])[0])
    pre0 = torch.cat([h[0].reshape(-1) for h in model.forward(torch.from_numpy(th)[None])[0][1:]]).numpy()
    held = np.abs(pre0) <= 1e-6 * np.abs(pre0).max()

    def held_values(t):
        return torch.cat([h[0].reshape(-1) for h in model.forward(t[None])[0][1:]])[torch.from_numpy(held)]

    aset = active_set(spec, th)
    g, J, _ = kkt_parts(spec, th, aset)
    _, _, ev, vec = _tangent_spectrum(spec.as_float64(), th, aset, J, _multipliers(g, J))
    neg = ev < -1e-8 * np.abs(ev).max()
    assert neg.sum() >= 1
    for v in vec[:, neg].T:
        for t in (1e-2, 1e-3):
            x = th + t * v
            for _ in range(30):
                xt = torch.from_numpy(x)
                c = held_values(xt).numpy()
                Jc = torch.autograd.functional.jacobian(held_values, xt).numpy()
                x = x - np.linalg.lstsq(Jc, c, rcond=1e-8)[0]
            assert np.abs(held_values(torch.from_numpy(x)).numpy()).max() <= 1e-10
            assert np.linalg.norm(x - th) <= 0.3 * t
            assert float(model.loss(torch.from_numpy(x)[None])[0]) >= L0 - 1e-13
    rep = analyse_kinks(spec, th)
    assert rep.index >= 1 and rep.kind == "undecided" and "none followed" in rep.reason


def test_the_escape_from_the_small_root_dnc_saddle_starts_below_it():
    """The small stationary scale of ReLU CE DNC is a maximum along the scale (the closed form's
    smaller root): kink_escape returns a start near it whose loss is below the point's
    ℓ(1 − 1e-9), as the resumed descent needs, within 2e-2 (steps up to 10·eps = 1e-2 along
    its curvature, projected back onto the kink set: ℓ ≈ log 4 there, so the fall must reach
    1.4e-9 and |λ| = 2e-3); below nothing it returns None."""
    from landscape.analysis.kinks import kink_escape

    spec = _spec("ce")
    small = member_dnc(spec)[0]
    th = frame_dnc_point(spec, small.scale)
    model = DeepUFM(spec.as_float64())
    L0 = float(model.loss(torch.as_tensor(th, dtype=torch.float64)[None])[0])
    assert L0 == pytest.approx(small.loss, rel=1e-12)
    start = kink_escape(spec, th, 1e-3, L0 * (1 - 1e-9))
    assert start is not None and np.linalg.norm(start - np.asarray(th)) <= 2e-2
    assert float(model.loss(torch.from_numpy(start)[None])[0]) < L0 * (1 - 1e-9)
    assert kink_escape(spec, th, 1e-3, -np.inf) is None


def test_a_gradient_descent_fixed_point_on_kinks_is_handed_over_unmoved():
    """A relu-mse GD end of the default size (stored from a descent that stalled after 93,772
    steps): a fixed point of GD itself (‖∇L‖ with ReLU'(0) = 0 below 1e-14, checked here), its
    silent entries left at +4e-9 by the decay. The hand-off certifies it where it is (the loss
    unchanged to 1e-15, θ moved < 1e-8): a finisher may not move GD's own end, and a silent
    entry on its on side by less than the active set's threshold is at its kink, not across."""
    spec = _spec("mse")
    th = np.load(Path(__file__).parent / "data" / "relu_mse_gd_fixed_point.npy")
    model = DeepUFM(spec.as_float64())
    t = torch.from_numpy(th)[None]
    L0, g0 = float(model.loss(t)[0]), float(model.grad(t).norm())
    assert g0 < 1e-14
    h = hand_off_to_kinks(spec, t, np.array([L0]), np.array([g0]), tol=1e-10, stalled=np.array([True]))
    assert h.ok.tolist() == [True]
    assert abs(h.loss[0] - L0) < 1e-15 and np.linalg.norm(h.theta[0] - th) < 1e-8


@pytest.mark.parametrize("spent", [False, True])
def test_a_descent_that_spent_its_budget_is_read_at_its_bounce(spent):
    """A relu-ce row at max_iter whose GD ended bouncing across kinks (here: the DNC point with
    1e-3 noise, kink entries ~1e-3 of the largest off 0): while it has budget left, the study's
    finisher reads it at 1e-4 only and refuses it (another round may settle it); once its first
    stage has run the whole budget, no more steps will, and it is read at 1e-3 and 1e-2 as a
    stalled descent is, and polished back to ℓ_DNC (the AM–GM closed form) within 1e-10."""
    from landscape.engines.outcomes import Outcome
    from landscape.study.config import load_study
    from landscape.study.kink_finish import finish_on_kinks
    from landscape.study.work import run_trajectories

    cfg = load_study(preset="relu-ce", overrides=["stages.0.max_iter=20"])
    res = run_trajectories(cfg, [0])
    spec = cfg.model.as_float64()
    dnc = member_dnc(spec)[-1]
    th = frame_dnc_point(spec, dnc.scale) + 1e-3 * np.random.default_rng(1).standard_normal(spec.P)
    t = torch.from_numpy(th)[None]
    model = DeepUFM(spec)
    res.theta[0] = t[0].to(res.theta)
    res.loss[0], res.grad_norm[0] = float(model.loss(t)[0]), float(model.grad(t).norm())
    res.stop_reason[0] = Outcome.MAX_ITER.value
    budget = 180_000
    res.main_iterations[0] = budget if spent else budget - 1
    assert finish_on_kinks(cfg, res, budget=budget) == int(spent)
    if spent:
        assert res.stop_reason[0] == Outcome.CONVERGED.value and res.loss[0] == pytest.approx(dnc.loss, abs=1e-10)
    else:
        assert res.stop_reason[0] == Outcome.MAX_ITER.value and "kink" in str(res.stop_detail[0])
