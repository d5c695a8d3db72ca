"""λ = 0 as a first-class setting (MODEL.md §11, issue 36 §1–§2): the spec, the refusals of what
needs λ > 0, the spectral start, the margin flow, and a λ = 0 study's decided and certified ends.

The oracles are derived here, outside the code under test: the NC code's normalised margin from
its balanced factorisation built by hand (numpy SVD, explicit product and norm), and the KKT
certificate of a polished direction re-checked with margin gradients from torch autograd and
scipy's NNLS; L = 1 must end NC for every start (gradient flow provably converges to NC there,
arXiv 2512.04006).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.optimize import nnls

from landscape.analysis import margins as mg
from landscape.core.init import InitScheme, draw_starts
from landscape.core.model import DeepUFM
from landscape.core.spec import ModelSpec
from landscape.core.validate import SpecError
from landscape.study.config import load_study
from landscape.study.lambda0 import KIND, START_KEYS, MarginFlowUFM, is_lambda0_folder, run_lambda0_study, summary_text
from oracles import grad_autograd


def _small(overrides=(), **kw):
    """The lambda0 preset, made small (a few starts, short descent and flow)."""
    base = ["trajectories=6", "batch_size=6", "stages.0.max_iter=3000", "lambda0.continue_iter=600"]
    return load_study(preset="lambda0", overrides=base + list(overrides))


# ----- the spec --------------------------------------------------------------------------------------
def test_lambda_zero_is_accepted_for_the_linear_ce_model_on_every_factor():
    s = ModelSpec(K=4, n=1, d=8, L=3, lam=0.0)
    assert s.unregularised and s.lambdas == (0.0,) * 4
    assert ModelSpec(K=4, n=1, d=8, L=3, lam=0.0, lam_H=0.0, lam_W=(0.0, 0.0, 0.0)).unregularised
    assert not ModelSpec(K=4, n=1, d=8, L=3, lam=1e-3).unregularised
    cfg = load_study(overrides=["model.lambda=0"])
    assert cfg.model.unregularised and "lambda0" in cfg.to_dict()
    assert type(cfg).from_dict(cfg.to_dict()) == cfg
    assert "lambda0" not in load_study().to_dict()   # λ > 0 configurations read back unchanged


@pytest.mark.parametrize("kw, names", [
    (dict(lam=0.0, lam_H=1e-3), ("lambda_W[0]", "every factor")),
    (dict(lam=1e-3, lam_W=(1e-3, 0.0, 1e-3)), ("lambda_W[1]", "every factor")),
    (dict(lam=1e-3, lam_H=0.0), ("lambda_H", "every factor")),
    (dict(lam=0.0, loss="mse"), ("loss='mse'", "non-compact")),
    (dict(lam=0.0, activation="relu"), ("activation='relu'", "linear CE")),
    (dict(lam=-1e-3), ("lambda=-0.001", ">= 0")),
])
def test_lambda_zero_refusals_name_the_field_and_why(kw, names):
    with pytest.raises(SpecError) as exc:
        ModelSpec(K=4, n=1, d=8, L=3, **kw)
    for name in names:
        assert name in str(exc.value), str(exc.value)


def test_what_needs_lambda_positive_refuses_lambda_zero():
    from landscape.analysis.family import member_dnc
    from landscape.analysis.hessian import default_tau
    from landscape.analysis.point import analyse_point
    from landscape.analysis.spectrum import inspect_spectrum
    from landscape.analysis.theory import balanced_point, effective_lambda, simplex
    from landscape.engines.curvature import curvature_threshold

    spec = ModelSpec(K=4, n=1, d=8, L=3, lam=0.0)
    th = draw_starts(spec, InitScheme(), 0, [0])[0]
    for call in (lambda: default_tau(spec, 1.0), lambda: effective_lambda(spec), lambda: member_dnc(spec),
                 lambda: analyse_point(spec, th), lambda: inspect_spectrum(spec, th),
                 lambda: curvature_threshold(DeepUFM(spec), torch.ones(1), 1e-3, 10.0)):
        with pytest.raises(SpecError, match="needs λ > 0"):
            call()
    # the balanced factorisation of a code is defined at λ = 0: every factor the same singular values
    F = spec.split(balanced_point(spec, 2.0 * simplex(4)))
    for a, b in zip(F[:-1], F[1:]):
        assert np.allclose(b.T @ b, a @ a.T, atol=1e-12)


def test_a_descent_with_the_curvature_test_is_refused_at_lambda_zero():
    from landscape.engines import StageConfig, run_pipeline

    spec = ModelSpec(K=3, n=1, d=3, L=1, lam=0.0)
    th = draw_starts(spec, InitScheme(), 0, [0, 1])
    with pytest.raises(SpecError, match="curvature"):   # a row reaching tol would be tested against 0
        run_pipeline(DeepUFM(spec), th, [StageConfig(engine="gd", lr=0.5, max_iter=50, tol=10.0)])


def test_a_lambda_zero_cell_is_never_pooled_with_lambda_positive_cells():
    from landscape.study.executor_base import Unit
    from landscape.study.lambda_batch import LambdaBatchExecutor
    from landscape.study.work import run_trajectories

    ex = LambdaBatchExecutor()
    ex.prefetch(run_trajectories, [Unit("x", 0, (load_study(overrides=["model.lambda=0"]), [0, 1]))])
    assert not ex._pending


# ----- the model at λ = 0 --------------------------------------------------------------------------
def test_the_gradient_at_lambda_zero_is_exact_where_p_y_minus_1_cancels():
    spec = ModelSpec(K=4, n=2, d=8, L=2, lam=0.0)
    model = DeepUFM(spec)
    th = draw_starts(spec, InitScheme(), 3, [0, 1])
    assert torch.allclose(model.grad(th), grad_autograd(model, th), rtol=1e-12, atol=1e-15)
    # an NC point with every margin ~40: 1 − p_y < ε, so p_y − 1 would be 0 or noise; here the
    # true class's entry is minus the sum of the others, and the gradient is −Σ e^{−m}∇m to 1e-9
    nc, _ = _nc_by_hand(4, 2, 8, 2)
    nc = nc + 1e-2 * np.random.default_rng(1).standard_normal(nc.size)
    th64 = nc * (40.0 / float(mg.margins(spec, nc).min())) ** (1 / 3)
    big = torch.from_numpy(th64).unsqueeze(0)
    m = mg.margins(spec, th64).reshape(-1)
    J = mg.margin_jacobian(spec, th64)
    # ∇L = (1/N) Σ_i −Σ_c p_ic ∇m_ic with p_ic = e^{−m_ic}/(1 + Σ_c' e^{−m_ic'}); to first order e^{−m}
    want = -(np.exp(-m) @ J) / spec.N
    got = model.grad(big)[0].numpy()
    assert np.linalg.norm(got - want) <= 1e-9 * np.linalg.norm(want)


def test_the_margin_flow_is_the_gradient_flow_reparametrised():
    """∇log L = ∇L/L where L is representable, and finite, in the direction of the smallest
    margins' gradients, where it is not (margins ~ 3000)."""
    spec = ModelSpec(K=4, n=1, d=8, L=3, lam=0.0)
    base, flow = DeepUFM(spec), MarginFlowUFM(spec)
    th = draw_starts(spec, InitScheme(name="spectral", singular_value=1.5), 1, [0, 1, 2])
    loss, g = base.loss_and_grad(th)
    logl, g2 = flow.loss_and_grad(th)
    assert torch.allclose(logl, torch.log(loss), rtol=1e-13)
    assert torch.allclose(g2, g / loss[:, None], rtol=1e-11, atol=1e-14)
    for b in range(3):
        t = th[b].numpy()
        if mg.margins(spec, t).min() <= 0:
            continue
        far = torch.from_numpy(t * (3000.0 / mg.margins(spec, t).min()) ** 0.25)
        _, gf = flow.loss_and_grad(far)
        assert torch.isfinite(gf).all() and float(gf.norm()) > 0
        m = mg.margins(spec, far.numpy()).reshape(-1)
        J = mg.margin_jacobian(spec, far.numpy())
        w = np.exp(-(m - m.min()))
        want = -(w @ J) / w.sum()
        assert np.linalg.norm(gf.numpy() - want) <= 1e-10 * np.linalg.norm(want)


# ----- the spectral start ----------------------------------------------------------------------------
def test_the_spectral_start_is_balanced_with_the_given_singular_values():
    spec = ModelSpec(K=4, n=2, d=8, L=3, lam=0.0)
    th = draw_starts(spec, InitScheme(name="spectral", singular_value=0.7), 5, [0, 1])
    assert torch.equal(th[1], draw_starts(spec, InitScheme(name="spectral", singular_value=0.7), 5, [1])[0])
    F = spec.split(th[0])
    for f in F:
        s = np.linalg.svd(f, compute_uv=False)
        assert np.allclose(s[:4], 0.7, atol=1e-14) and np.all(s[4:] < 1e-14)
    assert np.allclose(F[1].T @ F[1], F[0] @ F[0].T, atol=1e-14)
    for a, b in zip(F[1:-1], F[2:]):
        assert np.allclose(b.T @ b, a @ a.T, atol=1e-14)
    assert np.allclose(np.linalg.svd(mg.logits(spec, th[0]), compute_uv=False), 0.7 ** 4, atol=1e-14)
    with pytest.raises(SpecError, match="init.singular_value"):
        InitScheme(name="gaussian", singular_value=1.0)
    with pytest.raises(SpecError, match="init.scales"):
        InitScheme(name="spectral", scales=(1.0,) * 4)
    assert "spectral(s=0.7)" in load_study(overrides=["init.name=spectral", "init.singular_value=0.7"]).describe_dynamics()


# ----- closed forms, certified directions ------------------------------------------------------------
def _nc_by_hand(K, n, d, L):
    """θ of the NC code's balanced factorisation, built here: Z = S⊗1ₙᵀ = UΣVᵀ, every factor
    Σ^{1/(L+1)} between aligned orthonormal frames; its γ from the explicit product and norm."""
    S = np.eye(K) - 1.0 / K
    Z = np.kron(S, np.ones((1, n)))
    U, s, Vt = np.linalg.svd(Z)
    r = K - 1
    U, s, Vt = U[:, :r], s[:r], Vt[:r]
    R = np.diag(s ** (1 / (L + 1)))
    E = np.eye(d)[:, :r]
    F = [E @ R @ Vt] + [E @ R @ E.T] * (L - 1) + [U @ R @ E.T]
    prod = F[0]
    for W in F[1:]:
        prod = W @ prod
    y = np.repeat(np.arange(K), n)
    marg = min(prod[y[i], i] - prod[c, i] for i in range(K * n) for c in range(K) if c != y[i])
    norm2 = sum(float((f * f).sum()) for f in F)
    return np.concatenate([f.ravel() for f in F]), marg / norm2 ** ((L + 1) / 2)


@pytest.mark.parametrize("K, n, L", [(4, 1, 3), (4, 2, 2), (5, 3, 1)])
def test_nc_code_margin_is_the_hand_built_balanced_factorisation(K, n, L):
    _, gamma = _nc_by_hand(K, n, K + 2, L)
    assert abs(mg.nc_code_margin(K, n, L) - gamma) <= 1e-12 * gamma
    # the algebra: ‖θ‖² = (L+1)(K−1)n^{1/(L+1)} at unit margin
    assert abs(gamma - ((L + 1) * (K - 1) * n ** (1 / (L + 1))) ** (-(L + 1) / 2)) <= 1e-12 * gamma


def _autograd_kkt_residual(spec, th_hat, rtol=1e-8):
    """The KKT residual of θ̂ (unit min margin) from margin gradients by torch autograd and NNLS:
    independent of landscape.analysis.margins."""
    K, n = spec.K, spec.n
    t = torch.tensor(th_hat, requires_grad=True)
    Z = DeepUFM(spec).logits(t.unsqueeze(0))[0]
    y = torch.arange(K).repeat_interleave(n)
    rows = []
    for i in range(K * n):
        for c in range(K):
            if c != int(y[i]):
                rows.append(Z[y[i], i] - Z[c, i])
    m = torch.stack(rows)
    mv = m.detach().numpy()
    act = [j for j in range(len(rows)) if mv[j] <= mv.min() * (1 + rtol)]
    J = torch.stack([torch.autograd.grad(m[j], t, retain_graph=True)[0] for j in act]).numpy()
    alpha, _ = nnls(J.T, th_hat)
    return np.linalg.norm(th_hat - J.T @ alpha) / np.linalg.norm(th_hat), float(mv.min())


def test_scipy_slsqp_from_the_nc_code_finds_its_margin():
    """An independent max-margin solve (scipy SLSQP, autograd constraint Jacobian) from a perturbed
    NC point returns to the hand-built γ_NC."""
    from scipy.optimize import minimize

    spec = ModelSpec(K=3, n=1, d=4, L=2, lam=0.0)
    th0, gamma = _nc_by_hand(3, 1, 4, 2)
    th0 = th0 + 1e-3 * np.random.default_rng(0).standard_normal(th0.size)
    model = DeepUFM(spec)

    def cons(x):
        t = torch.tensor(x, requires_grad=True)
        Z = model.logits(t.unsqueeze(0))[0]
        m = torch.stack([Z[i, i] - Z[c, i] for i in range(3) for c in range(3) if c != i]) - 1.0
        J = torch.stack([torch.autograd.grad(m[j], t, retain_graph=True)[0] for j in range(m.numel())])
        return m.detach().numpy(), J.numpy()

    res = minimize(lambda x: (0.5 * x @ x, x), th0, jac=True, method="SLSQP",
                   constraints=[{"type": "ineq", "fun": lambda x: cons(x)[0], "jac": lambda x: cons(x)[1]}],
                   options={"ftol": 1e-15, "maxiter": 500})
    x = res.x
    got = float(cons(x)[0].min() + 1.0) / float(np.linalg.norm(x)) ** 3
    assert abs(got - gamma) <= 1e-7 * gamma


@pytest.fixture(scope="module")
def l3_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lambda0-l3")
    cfg = _small()
    return cfg, out, run_lambda0_study(cfg, out, progress=False)


def test_a_lambda_zero_study_writes_its_folder(l3_run):
    cfg, out, s = l3_run
    assert s["kind"] == KIND and s["n_trajectories"] == 6 and is_lambda0_folder(out)
    assert sum(s["stop_reasons"].values()) == 6
    assert json.loads((out / "summary.json").read_text())["certified"]["count"] == s["certified"]["count"]
    starts = json.loads((out / "directions.json").read_text())["starts"]
    assert [r["index"] for r in starts] == list(range(6)) and all(set(r) == set(START_KEYS) for r in starts)
    assert all(r["descent_iterations"] == 3000 for r in starts if r["descent_stop"] != "diverged")
    arrays = np.load(out / "directions.npz")
    assert sorted(arrays.files) == sorted(f"direction-{d['id']}" for d in s["directions"])
    assert "gd(lr=0.5) 3000 steps" in s["dynamics"] and "init gaussian" in s["dynamics"]
    text = summary_text(s)
    assert "NC (label DNC)" in text and "certified" in text


def test_certified_nc_directions_have_the_hand_built_margin_and_an_independent_kkt_certificate(l3_run):
    cfg, out, s = l3_run
    spec = cfg.model
    _, gamma_nc = _nc_by_hand(spec.K, spec.n, spec.d, spec.L)
    arrays = np.load(out / "directions.npz")
    nc = [d for d in s["directions"] if d["label"] == "DNC"]
    assert nc, s["directions"]
    for d in s["directions"]:
        th = arrays[f"direction-{d['id']}"]
        res, mmin = _autograd_kkt_residual(spec, th)
        assert res <= 1e-9 and abs(mmin - 1.0) <= 1e-12
        if d["label"] == "DNC":
            prod = mg.logits(spec, th)   # γ from θ itself: min margin / ‖θ‖^{L+1}
            got = float(mg.margins(spec, th).min()) / float(np.linalg.norm(th)) ** (spec.L + 1)
            assert abs(got - gamma_nc) <= 1e-10 * gamma_nc and abs(d["gamma"] - gamma_nc) <= 1e-10 * gamma_nc
            assert np.linalg.matrix_rank(prod, tol=1e-8) == spec.K - 1


def test_the_nc_code_is_a_local_maximum_of_the_margin_and_the_mixed_code_a_saddle():
    """Second order at two hand-built codes (K = 4, n = 1, L = 3): NC has no negative direction
    and exactly the gauge orbit's zero modes; 0.6·pairs + 0.4·NC (a KKT point with the pairs'
    support, γ = 1/160) has one negative direction."""
    spec = ModelSpec(K=4, n=1, d=8, L=3, lam=0.0)
    th_nc = mg.rescale_to_unit_margin(spec, mg.balanced_factorisation(spec, mg.nc_code(4)))
    c = mg.kkt_certificate(spec, th_nc)
    so = mg.second_order(spec, th_nc, c.support, c.multipliers)
    assert so["negative"] == 0 and so["excess_zero_modes"] == 0 and so["gauge_zero_modes"] == 3 * (3 * 8 - 6)
    mixed = 0.6 * mg.pairs_code(4) + 0.4 * mg.nc_code(4)
    th_m = mg.rescale_to_unit_margin(spec, mg.balanced_factorisation(spec, mixed))
    c = mg.kkt_certificate(spec, th_m)
    assert c.residual <= 1e-12 and abs(c.gamma - 1 / 160) <= 1e-12
    assert mg.second_order(spec, th_m, c.support, c.multipliers)["negative"] == 1


def test_depth_one_ends_nc_for_every_start(tmp_path):
    """L = 1: gradient flow converges to NC (arXiv 2512.04006); every start certified NC."""
    cfg = _small(["model.L=1", "model.d=6", "stages.0.max_iter=2000", "lambda0.continue_iter=300",
                  "lambda0.rule=strict"])
    s = run_lambda0_study(cfg, tmp_path, progress=False)
    assert s["certified"]["count"] == 6 and s["nc"]["count"] == 6, summary_text(s)
    (d,) = s["directions"]
    assert d["label"] == "DNC" and d["closed_form_rel_error"] <= 1e-10


def test_the_hand_off_agrees_with_gd_run_ten_times_longer(tmp_path):
    """The check: starts 0–3 rerun with GD 10× longer (2,000 → 20,000 steps) and decided the same
    way reach the same direction as the main run."""
    cfg = load_study(preset="lambda0", overrides=["trajectories=4", "batch_size=4", "stages.0.max_iter=2000",
                                                  "lambda0.continue_iter=1000", "lambda0.check_starts=4"])
    s = run_lambda0_study(cfg, tmp_path, progress=False)
    chk = s["check"]
    assert chk["starts"] == 4 and chk["certified_main"] >= 3, summary_text(s)
    assert chk["same_label"] == chk["certified_main"] and chk["agree"] == chk["certified_main"], chk["pairs"]
    assert "20000 steps" in chk["dynamics"]


_EXTEND = ["trajectories=16", "batch_size=16", "stages.0.max_iter=1000", "lambda0.continue_iter=100",
           "lambda0.rule=stable"]
#: Record keys that are wall times (they differ between two runs of the same starts).
_TIMES = ("descent_s", "continue_s", "decide_s")


def test_extension_rounds_decide_an_unsettled_end_again_after_more_flow(tmp_path):
    """[lambda0] extend_rounds: an end left unsettled flows continue_iter/2 more steps and is
    decided again with the end it came from as its midpoint. Starts the first decision certifies
    are untouched (the same record); the others either certify after r ≤ R rounds (their flow
    steps 100 + 50·r) or keep the last round's reason after all R; the extended decision equals
    the one made by hand from the flow continued from the end (run separately, batch of one)."""
    from dataclasses import replace

    from landscape.engines import run_pipeline
    from landscape.study.lambda0 import EXTENDED_MARK, continuation_stage, decide, run_dynamics

    rounds = 3
    s0 = run_lambda0_study(load_study(preset="lambda0", overrides=_EXTEND), tmp_path / "a", progress=False)
    cfg = load_study(preset="lambda0", overrides=_EXTEND + [f"lambda0.extend_rounds={rounds}"])
    s1 = run_lambda0_study(cfg, tmp_path / "b", progress=False)
    a = json.loads((tmp_path / "a" / "directions.json").read_text())["starts"]
    b = json.loads((tmp_path / "b" / "directions.json").read_text())["starts"]
    unsettled = [r["index"] for r in a if r["stop_reason"] != "certified"]
    assert unsettled, "the short flow leaves some end unsettled (else this test tests nothing)"
    extended = []
    for ra, rb in zip(a, b):
        if ra["stop_reason"] == "certified":
            assert {k: v for k, v in ra.items() if k not in _TIMES + ("direction_id",)} == \
                {k: v for k, v in rb.items() if k not in _TIMES + ("direction_id",)}
            continue
        r = (rb["continue_iterations"] - 100) // 50
        assert rb["continue_iterations"] == 100 + 50 * r and 1 <= r <= rounds, rb
        if rb["stop_reason"] == "certified":
            assert f"after {r} {EXTENDED_MARK} of 50 steps" in rb["detail"], rb["detail"]
            extended.append(rb["index"])
        else:
            assert r == rounds
    assert s1["certified"]["after_extension"] == len(extended) > 0
    assert s1["certified"]["count"] == s0["certified"]["count"] + len(extended)
    assert "extend_rounds" in summary_text(s1) and "up to 3 more rounds of 50" in s1["dynamics"]
    # the first extended start, by hand: its end, the flow continued r rounds of 50 steps, decided
    i = extended[0]
    rb = b[i]
    r = (rb["continue_iterations"] - 100) // 50
    dyn = run_dynamics(replace(cfg, lambda0=replace(cfg.lambda0, extend_rounds=0)), [i])
    fm = MarginFlowUFM(cfg.model)
    ends = [torch.from_numpy(dyn.theta)]
    for _ in range(r):
        ends.append(run_pipeline(fm, ends[-1], [continuation_stage(replace(cfg.lambda0, continue_iter=50))]).theta.detach())
    rec, _ = decide(cfg, ends[-1][0].numpy(), ends[-2][0].numpy())
    assert rec["stop_reason"] == "certified" and rec["label"] == rb["label"]
    assert rec["gamma"] == pytest.approx(rb["gamma"], rel=1e-9)


@pytest.mark.parametrize("over, names", [
    (["lambda0.extend_rounds=-1"], ("lambda0.extend_rounds=-1", "[0, 100]")),
    (["lambda0.extend_rounds=101"], ("lambda0.extend_rounds=101", "[0, 100]")),
    (["lambda0.extend_rounds=2", "lambda0.continue_iter=1", "lambda0.rule=strict"],
     ("lambda0.extend_rounds=2", "continue_iter >= 2")),
])
def test_extension_rounds_out_of_range_are_refused_by_name(over, names):
    with pytest.raises(SpecError) as exc:
        load_study(preset="lambda0", overrides=over)
    for name in names:
        assert name in str(exc.value), str(exc.value)


# ----- the command line ----------------------------------------------------------------------------
def test_theory_prints_the_closed_form_margins_at_lambda_zero(capsys):
    from landscape.cli import main

    assert main(["theory", "--lambda", "0", "--K", "4", "--n", "1", "--d", "8", "--L", "3"]) == 0
    out = capsys.readouterr().out
    assert f"{mg.nc_code_margin(4, 1, 3):.15g}" in out and f"{mg.pairs_code_margin(4, 1, 3):.15g}" in out
    assert main(["theory", "--preset", "lambda0", "--json"]) == 0
    codes = json.loads(capsys.readouterr().out)["codes"]
    assert math.isclose(codes[0]["gamma"], 1 / 144, rel_tol=1e-14) and math.isclose(codes[1]["gamma"], 1 / 128,
                                                                                      rel_tol=1e-14)


def test_run_and_inspect_a_lambda_zero_study(tmp_path, capsys):
    from landscape.cli import main

    out = tmp_path / "run"
    assert main(["run", "--preset", "lambda0", "--set", "trajectories=3", "--set", "batch_size=3",
                 "--set", "stages.0.max_iter=500", "--set", "lambda0.continue_iter=200", "--out", str(out),
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "λ = 0 study" in text and "NC (label DNC)" in text
    assert main(["inspect", str(out)]) == 0
    assert "λ = 0 study" in capsys.readouterr().out
    assert main(["report", str(out)]) == 2


def test_a_sweep_pairs_a_lambda_zero_cell_with_a_regularised_one_start_by_start(tmp_path):
    """A λ sweep through 0: the λ = 0 cell runs its own study (never pooled with the per-row-λ
    batch), its row has the prevalence table's keys, and its starts are paired with the λ > 0
    cell's (the same seeds, so the same starts)."""
    from landscape.study.sweep import run_sweep
    from landscape.study.sweep_config import load_sweep

    f = tmp_path / "sweep.toml"
    f.write_text('name = "sw0"\ntrajectories = 3\nbatch_size = 3\n[model]\nK = 4\nn = 1\nd = 8\nL = 2\n'
                 '[[stages]]\nengine = "gd"\nlr = 0.5\nmax_iter = 500\n[saddles]\nstarts = 0\n[connect]\nmax_pairs = 0\n'
                 '[lambda0]\ncontinue_iter = 200\n[sweep]\nlambda = [0, 0.001]\n')
    rec = run_sweep(load_sweep(f), tmp_path / "out", progress=False)
    rows = {r["cell"]: r for r in rec["prevalence"]}
    assert set(rows["lambda=0"]) >= {"dnc_fraction", "dnc_ci_low", "uncertified_count", "mean_logit_rank"}
    (pair,) = rec["paired"]
    assert pair["first"] == "lambda=0" and pair["n"] == 3
